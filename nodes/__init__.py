"""The node registry. ComfyUI is imported only inside node functions (see ``_host.py``)."""

from __future__ import annotations

from .apply import ApplyControlNet
from .loaders import ControlNetLoader
from .preprocess import NODES as _SIMPLE_PREPROCESSORS
from .preprocess_learned import LEARNED_NODES as _LEARNED_PREPROCESSORS
from .reuse import ControlResidualReuse
from .scribble import ScribbleCanvas
from .weights import ControlWeightsNode, StrengthScheduleNode

_PREPROCESSORS = {**_SIMPLE_PREPROCESSORS, **_LEARNED_PREPROCESSORS}

NODE_CLASS_MAPPINGS = {
    "AST_ControlNetLoader": ControlNetLoader,
    "AST_ApplyControlNet": ApplyControlNet,
    "AST_ControlWeights": ControlWeightsNode,
    "AST_StrengthSchedule": StrengthScheduleNode,
    "AST_ControlResidualReuse": ControlResidualReuse,
    "AST_ScribbleCanvas": ScribbleCanvas,
    **{node_id: cls for node_id, (cls, _) in _PREPROCESSORS.items()},
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "AST_ControlNetLoader": "Load ControlNet (Affordance)",
    "AST_ApplyControlNet": "Apply ControlNet (Affordance)",
    "AST_ControlWeights": "ControlNet Weights (Affordance)",
    "AST_StrengthSchedule": "Strength Schedule (Affordance)",
    "AST_ControlResidualReuse": "ControlNet Residual Reuse (Affordance, lossy)",
    "AST_ScribbleCanvas": "Scribble Canvas (Affordance)",
    **{node_id: name for node_id, (_, name) in _PREPROCESSORS.items()},
}

"""Inputs fed by a link arrive as the other node made them: ComfyUI converts and range-checks only widget values.

Found by fuzzing every node's inputs in process: a linked value of another type (a float from a math node where
an INT goes, None or a list from a node with an untyped output, malformed conditioning) failed with bare Python
errors ('<=' not supported, not enough values to unpack, 'str' object has no attribute 'at' at the first sampling
step...) or, for a huge linked strength, silently made infinite residuals. Each is now the node's own error,
naming the input, before anything runs; values that mean the same (64.0 for 64) are taken.
"""

from __future__ import annotations

import math

import pytest
import torch

from affordance.controlnet.errors import InputError
from affordance.controlnet.reuse import ReuseError
from affordance.controlnet.schedule import ScheduleError, parse_keyframes
from affordance.controlnet.weights import WeightsError, parse_weight_list
from affordance.nodes import NODE_CLASS_MAPPINGS
from affordance.nodes.apply import apply_control
from affordance.nodes.reuse import reuse_residuals
from affordance.preprocessors import ParameterError
from affordance.preprocessors.drawing import DrawingError


def _cond(n: int = 1) -> list:
    return [[torch.zeros(1, 77, 768), {"pooled_output": None}] for _ in range(n)]


@pytest.mark.parametrize("resolution", ["512", [512], math.nan, math.inf, torch.tensor(512), 10**30])
@pytest.mark.parametrize("node_id", ["AST_CannyPreprocessor", "AST_TilePreprocessor"])
def test_a_linked_resolution_that_is_not_a_whole_number_in_range(node_id, resolution, image, stub_comfy):
    node = NODE_CLASS_MAPPINGS[node_id]()
    spec = node.INPUT_TYPES()["required"]
    args = {k: v[1]["default"] for k, v in spec.items() if k not in ("image", "resolution") and "default" in v[1]}
    with pytest.raises(ParameterError, match=r"resolution must be an integer between \d+ and \d+, got "):
        getattr(node, node.FUNCTION)(image(h=16, w=16), resolution=resolution, **args)


def test_scribble_canvas_linked_size(stub_comfy):
    node = NODE_CLASS_MAPPINGS["AST_ScribbleCanvas"]()
    for bad in ("64", None, [64], 64.5, math.nan):
        with pytest.raises(DrawingError, match="the drawing width must be a whole number of pixels"):
            node.draw(bad, 48, "")
    out = node.draw(64.0, 48, "")  # from a float node: the same size
    assert out["result"][0].shape == (1, 48, 64, 3)
    with pytest.raises(DrawingError, match=r"background must be a ComfyUI IMAGE .*got \(1, 0, 32, 3\)"):
        node.draw(64, 48, "", background=torch.zeros(1, 0, 32, 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"start_percent": None}, ScheduleError, "start_percent and end_percent must be numbers within 0..1"),
        ({"end_percent": "0.5"}, ScheduleError, "start_percent and end_percent must be numbers within 0..1"),
        ({"strength": 1e308}, ScheduleError, r"strength must be within -10..10 \(the widget takes 0 to 10\)"),
        ({"strength": "1"}, ScheduleError, "strength must be a finite number, got a str"),
        ({"strength": True}, ScheduleError, "strength must be a finite number, got True"),
        ({"positive": None}, InputError, "positive must be a CONDITIONING"),
        ({"negative": [torch.zeros(1)]}, InputError, r"negative must be a CONDITIONING .*entry #1 is a Tensor"),
        ({"positive": [[torch.zeros(1)]]}, InputError, r"entry #1 is a list of 1 that is not one"),
        ({"negative": [["a photo", {}]]}, InputError, r"negative must be a .*entry #1 is a list of 2 that is not one"),
        ({"positive": [5]}, InputError, r"positive must be a CONDITIONING .*entry #1 is a int that is not one"),
        ({"positive": [[torch.zeros(1), None]]}, InputError, "positive must be a CONDITIONING"),
        ({"positive": [[torch.zeros(1), {"model_conds": None}]]}, InputError, "positive must be a CONDITIONING"),
        ({"weights": "balanced"}, InputError, "weights must come from a 'ControlNet Weights"),
        ({"schedule": "0:1"}, InputError, "schedule must come from a 'Strength Schedule"),
        ({"positive": [[torch.zeros(1), {"control": "x"}]]}, InputError, "carries a control of type str"),
    ],
)
def test_apply_refuses_linked_values_of_another_kind(control, image, kwargs, error, words):
    args = {"positive": _cond(), "negative": _cond(), "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}
    args.update(kwargs)
    extras = {k: args.pop(k) for k in ("weights", "schedule") if k in args}
    with pytest.raises(error, match=words):
        apply_control(args["positive"], args["negative"], control, image(), args["strength"],
                      args["start_percent"], args["end_percent"], **extras)  # fmt: skip


def test_reuse_refuses_malformed_conditioning_and_a_looping_chain(control, image):
    for bad in ([torch.zeros(1)], [[torch.zeros(1)]], [{"a": 1}], [[torch.zeros(1), None]], ["ab"]):
        with pytest.raises(ReuseError, match="positive must be a CONDITIONING"):
            reuse_residuals(bad, _cond(), 2)
    pos, neg = apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0)
    looped = pos[0][1]["control"]
    looped.previous_controlnet = looped  # no node makes this; a broken one could
    with pytest.raises(ReuseError, match="the control chain loops back"):
        reuse_residuals(pos, neg, 2)


@pytest.mark.parametrize("text", [None, 5, ["1, 2"]])
def test_weights_and_keyframes_linked_text_that_is_not_text(text):
    with pytest.raises(WeightsError, match="custom weights must be text"):
        parse_weight_list(text)
    with pytest.raises(ScheduleError, match="keyframes must be text"):
        parse_keyframes(text)


def test_loader_linked_name_or_pooling_of_another_kind(stub_comfy):
    cls = NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]
    for name in (None, 5, ["tiny.safetensors"]):
        with pytest.raises(FileNotFoundError, match="the ControlNet file name must be text"):
            cls().load(name)
    with pytest.raises(FileNotFoundError, match=r"\(5000 characters\) is not a file name ComfyUI lists"):
        cls().load("a" * 5000)
    for choice in ("bogus", None, ["on"]):
        with pytest.raises(InputError, match=r"global_average_pooling must be one of \['from file', 'on', 'off'\]"):
            cls().load("tiny.safetensors", global_average_pooling=choice)


def test_messages_quote_a_megabyte_of_text_by_its_start_and_end(image):
    from affordance.controlnet.schedule import StrengthSchedule
    from affordance.controlnet.weights import make_weights
    from affordance.preprocessors.geometry import _mode as parse_mode

    huge = "x" * 1_000_000
    for call in (
        lambda: make_weights(huge, 0.825, 1.0, ""),
        lambda: make_weights("custom", 0.825, 1.0, "9" * 1_000_000),
        lambda: StrengthSchedule.parse("0:1", huge),
        lambda: parse_keyframes("0.5:" + "9" * 1_000_000),
        lambda: parse_mode(huge),
        lambda: NODE_CLASS_MAPPINGS["AST_CannyPreprocessor"]().process(
            image(h=16, w=16), low_threshold=100, high_threshold=200, resolution=512, output_size=huge
        ),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert len(str(info.value)) < 400 and "..." in str(info.value), str(info.value)[:200]


def test_a_hint_beyond_half_precision_is_refused(control, image):
    """A finite hint of 1e30 made every residual infinite at the first step, with no error (node fuzzing)."""
    from affordance.controlnet.errors import HintError

    for scale in (1e30, 1e5):
        with pytest.raises(HintError, match=r"values beyond 65504 \(the largest half-precision number\)"):
            apply_control(_cond(), _cond(), control, image() * scale, 1.0, 0.0, 1.0)
    apply_control(_cond(), _cond(), control, image() * 255, 1.0, 0.0, 1.0)  # wrong, but finite everywhere: taken

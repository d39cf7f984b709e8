"""What every learned preprocessor node declares and honours: its memory estimate and output_size."""

from __future__ import annotations

import pytest
import torch

from affordance.nodes import NODE_CLASS_MAPPINGS, preprocess_learned
from affordance.nodes.preprocess_learned import _Learned


# Round 10 (mutant 072): every learned preprocessor sets its own measured WORK_BYTES_PER_PIXEL; none falls back on
# the base class's worst case (4500, NormalBAE's), which would chunk Lineart 2.5x finer and refuse images that fit.
def test_every_learned_node_sets_its_own_memory_estimate():
    nodes = [c for c in vars(preprocess_learned).values() if isinstance(c, type) and issubclass(c, _Learned) and c is not _Learned]
    assert nodes
    for cls in nodes:
        assert "WORK_BYTES_PER_PIXEL" in vars(cls), cls.__name__
    assert preprocess_learned.LineartPreprocessor.WORK_BYTES_PER_PIXEL < _Learned.WORK_BYTES_PER_PIXEL


# Round 10 (mutant 099): every learned node passes output_size on; 'detection' gives the hint at the detection size
# (for M-LSD, PiDiNet, NormalBAE, MiDaS as for OpenPose), not silently the image's size.
@pytest.mark.parametrize(
    ("node_id", "kwargs"),
    [
        ("AST_HEDPreprocessor", {"safe": False}),
        ("AST_PiDiNetPreprocessor", {"safe": True}),
        ("AST_MLSDPreprocessor", {"score_threshold": 0.1, "distance_threshold": 0.1}),
        ("AST_NormalBAEPreprocessor", {}),
        ("AST_MiDaSDepthPreprocessor", {}),
        ("AST_MiDaSNormalPreprocessor", {"a": 6.28, "bg_threshold": 0.1}),
    ],
)
def test_learned_nodes_give_the_detection_size_when_asked(stub_comfy, image, node_id, kwargs):
    from affordance.nodes import annotators
    from affordance.preprocessors.hed import HED_FILE, HEDNet
    from affordance.preprocessors.midas import MIDAS_FILE, DPTHybridNet
    from affordance.preprocessors.mlsd import MLSD_FILE, MLSDNet
    from affordance.preprocessors.normalbae import NORMALBAE_FILE, NormalBaeNet
    from affordance.preprocessors.pidinet import PIDINET_FILE, PiDiNet

    files = {
        "AST_HEDPreprocessor": (HED_FILE, HEDNet),
        "AST_PiDiNetPreprocessor": (PIDINET_FILE, PiDiNet),
        "AST_MLSDPreprocessor": (MLSD_FILE, MLSDNet),
        "AST_NormalBAEPreprocessor": (NORMALBAE_FILE, NormalBaeNet),
        "AST_MiDaSDepthPreprocessor": (MIDAS_FILE, DPTHybridNet),
        "AST_MiDaSNormalPreprocessor": (MIDAS_FILE, DPTHybridNet),
    }
    name, build = files[node_id]
    annotators.clear_cache()
    folder = stub_comfy / "models" / "annotators"
    folder.mkdir(parents=True)
    torch.save(build().state_dict(), folder / name)
    node = NODE_CLASS_MAPPINGS[node_id]()
    (out,) = node.process(image(h=48, w=80), resolution=64, output_size="detection", **kwargs)["result"]
    assert out.shape == (1, 64, 107, 3)
    (out,) = node.process(image(h=48, w=80), resolution=64, **kwargs)["result"]
    assert out.shape == (1, 48, 80, 3)
    annotators.clear_cache()

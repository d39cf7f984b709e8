"""VALIDATE_INPUTS with values ComfyUI could not convert (API prompts): ComfyUI reports those itself
("Failed to convert an input value to a FLOAT value") and still passes them on raw; ours must leave them to
that report, never fail on them with a bare Python error (which ComfyUI shows instead of its own)."""

from __future__ import annotations

import pytest

from affordance.nodes.apply import ApplyControlNet
from affordance.nodes.preprocess import CannyPreprocessor
from affordance.nodes.scribble import ScribbleCanvas
from affordance.nodes.weights import ControlWeightsNode, StrengthScheduleNode

GOOD = {
    ApplyControlNet: {"start_percent": 0.0, "end_percent": 1.0},
    CannyPreprocessor: {"low_threshold": 100, "high_threshold": 200, "resolution": 512},
    ControlWeightsNode: {"preset": "balanced", "base_multiplier": 1.0, "uncond_multiplier": 1.0, "custom_weights": ""},
    StrengthScheduleNode: {"keyframes": "0:1, 1:1", "interpolation": "linear"},
    ScribbleCanvas: {"width": 512, "height": 512, "drawing": ""},
}
RAW = ["abc", [1, 2, 3], {"a": 1}, True, 1.5j]
# ComfyUI converts INT, FLOAT and STRING values (and reports those it cannot); a string is a text widget's own
# type (validated as usual elsewhere). List widgets and our own types it neither converts nor checks.
STRINGS = ("custom_weights", "keyframes")
NOT_CONVERTED = ("preset", "interpolation", "drawing")
CASES = [
    (cls, name, raw)
    for cls, good in GOOD.items()
    for name in good
    for raw in RAW
    if name not in NOT_CONVERTED and not (isinstance(raw, str) and name in STRINGS)
]


@pytest.mark.parametrize("cls", list(GOOD), ids=lambda c: c.__name__)
def test_good_values_pass(cls):
    assert cls.VALIDATE_INPUTS(**GOOD[cls]) is True


@pytest.mark.parametrize(("cls", "name", "raw"), CASES, ids=lambda v: getattr(v, "__name__", repr(v)))
def test_values_comfyui_could_not_convert_are_left_to_its_report(cls, name, raw):
    assert cls.VALIDATE_INPUTS(**{**GOOD[cls], name: raw}) is True


@pytest.mark.parametrize(
    ("cls", "name"), [(ControlWeightsNode, "preset"), (StrengthScheduleNode, "interpolation"), (ScribbleCanvas, "drawing")]
)
@pytest.mark.parametrize("raw", [5, ["x"], {"a": 1}, 2.5])
def test_values_of_list_widgets_and_our_types_are_still_checked(cls, name, raw):
    """ComfyUI neither converts nor checks a list widget's value (nor our drawing's) when VALIDATE_INPUTS takes it:
    a value of the wrong kind gets our message, naming it."""
    message = cls.VALIDATE_INPUTS(**{**GOOD[cls], name: raw})
    assert isinstance(message, str) and name in message and repr(raw) in message


def test_checks_still_run_on_converted_values():
    assert "swap them" in ApplyControlNet.VALIDATE_INPUTS(start_percent=0.8, end_percent=0.2)
    assert "between 0 and 255" in CannyPreprocessor.VALIDATE_INPUTS(low_threshold=300, high_threshold=200, resolution=512)


def test_a_linked_custom_weights_is_checked_when_the_node_runs():
    """ComfyUI passes None for a linked widget at validation: the weights are checked when the node runs."""
    for preset in ("custom", "balanced"):
        assert (
            ControlWeightsNode.VALIDATE_INPUTS(preset=preset, base_multiplier=0.8, uncond_multiplier=1.0, custom_weights=None)
            is True
        )

"""Per-residual weights: presets equal their formulas; custom lists are parsed and counted."""

from __future__ import annotations

import pytest

from affordance.controlnet.weights import ControlWeights, Preset, WeightsError, parse_weight_list, soft_weights


def test_soft_weights_formula_a1111():
    w = soft_weights(13)
    assert w == tuple(0.825 ** (12 - i) for i in range(13))
    assert w[-1] == 1.0 and w[0] == pytest.approx(0.0994, abs=1e-4)


def test_diffusers_guess_mode_scales_match_soft_weights():
    import torch

    guess = torch.logspace(-1, 0, 13).tolist()  # diffusers' guess-mode scales
    for a, b in zip(soft_weights(13), guess):
        assert a == pytest.approx(b, rel=1e-2)  # 0.825 vs 10 ** (-1 / 12) = 0.8254


@pytest.mark.parametrize(
    ("preset", "uncond", "cond_only"),
    [
        (Preset.BALANCED, 1.0, False),
        (Preset.PROMPT_MORE_IMPORTANT, 1.0, False),
        (Preset.CONTROLNET_MORE_IMPORTANT, 0.0, True),
    ],
)
def test_presets(preset, uncond, cond_only):
    w = ControlWeights(preset)
    assert w.effective_uncond_multiplier == uncond and w.cond_only is cond_only
    expected = (1.0,) * 10 if preset is Preset.BALANCED else soft_weights(10)
    assert w.resolve(10) == expected


def test_custom_count_checked_against_family():
    w = ControlWeights(Preset.CUSTOM, custom=(1.0,) * 13)
    assert w.resolve(13) == (1.0,) * 13
    with pytest.raises(WeightsError, match=r"got 13 custom weights but this SDXL ControlNet has 10 residuals"):
        w.resolve(10, "this SDXL ControlNet")


def test_parse_weight_list():
    assert parse_weight_list("1, 0.5;0.25\n0") == (1.0, 0.5, 0.25, 0.0)
    with pytest.raises(WeightsError, match=r"custom weight #2 is 'x', not a number"):
        parse_weight_list("1, x")
    with pytest.raises(WeightsError, match="empty"):
        parse_weight_list(" , ")
    with pytest.raises(WeightsError, match="finite"):
        parse_weight_list("1, nan")
    with pytest.raises(WeightsError, match=r"custom weight #2 is '1e300'; .* from -10 to 10"):
        parse_weight_list("1, 1e300")  # overflowed half precision in the UNet
    assert parse_weight_list("1, 0.5,") == (1.0, 0.5)  # a trailing comma is harmless
    for lines in ("1.0,\n0.5", "1;\n0.5", "1, 0.5\n\n", "1\n0.5"):  # a comma at a line end is not a gap
        assert parse_weight_list(lines) == (1.0, 0.5), lines
    for gap in ("1,,0.5", ",1, 0.5", "1, ,0.5"):
        with pytest.raises(WeightsError, match="field #[12] between commas is empty .*would move to another residual"):
            parse_weight_list(gap)  # used to be dropped, shifting every later weight


def test_custom_needs_values():
    with pytest.raises(WeightsError, match="needs custom weights"):
        ControlWeights(Preset.CUSTOM)


@pytest.mark.parametrize("field", ["base_multiplier", "uncond_multiplier"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_built_directly_refuse_non_finite_multipliers(field, value):
    """The Python API builds ControlWeights without the nodes' 0..1 check: NaN would make every residual NaN."""
    with pytest.raises(WeightsError, match="base_multiplier and uncond_multiplier must be finite numbers"):
        ControlWeights(**{field: value})


def test_the_nodes_multipliers_are_checked_each_and_up_to_1():
    from affordance.controlnet.weights import make_weights

    assert make_weights("balanced", 1.0, 1.0, "").base_multiplier == 1.0
    with pytest.raises(WeightsError, match="base_multiplier must be within 0..1, got 1.005"):
        make_weights("balanced", 1.005, 1.0, "")
    with pytest.raises(WeightsError, match="uncond_multiplier must be a number within 0..1, got 'abc'"):
        make_weights("balanced", 0.5, "abc", "")


def test_an_unconditional_multiplier_of_0_is_cond_only():
    assert ControlWeights(uncond_multiplier=0.0).cond_only
    assert not ControlWeights(uncond_multiplier=0.5).cond_only
    assert ControlWeights(Preset.CONTROLNET_MORE_IMPORTANT).cond_only


@pytest.mark.parametrize("field", ["base_multiplier", "uncond_multiplier"])
@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_multiplier_is_refused_like_a_boolean_strength(field, value):
    """float(False) is 0.0: uncond_multiplier=False would switch the negative side's control off unnoticed, where
    strength and the window refuse booleans. Refused by the node's reader and by ControlWeights itself."""
    from affordance.controlnet.weights import make_weights

    args = {"preset": "prompt_more_important", "base_multiplier": 0.825, "uncond_multiplier": 1.0, "custom_weights": ""}
    args[field] = value
    with pytest.raises(WeightsError, match=f"{field} must be a number, got the boolean {value}; give 0.0 or 1.0"):
        make_weights(**args)
    with pytest.raises(WeightsError, match=f"{field} must be a number, got the boolean {value}"):
        ControlWeights(**{field: value})


def test_weights_are_immutable_and_hashable():
    """Shared by every control a graph's cached output reaches (as strength schedules are): none may change them."""
    import dataclasses

    w = ControlWeights(Preset.CUSTOM, custom=(1.0, 0.5))
    assert hash(w) == hash(ControlWeights(Preset.CUSTOM, custom=(1.0, 0.5)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.custom = (0.0, 0.0)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.uncond_multiplier = 0.0  # type: ignore[misc]

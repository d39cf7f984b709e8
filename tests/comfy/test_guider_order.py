"""The negative side of ``uncond_multiplier`` / "ControlNet is more important" under every guider of ComfyUI.

ComfyUI tells a control only each chunk's index in the guider's call; KSampler passes (positive, negative), but
SelfAttentionGuidance's extra pass sends the negative alone, DualCFGGuider sends (negative, middle, positive) and
PerpNegGuider (positive, negative, empty). Our Apply node marks the conditioning it returns, so the control finds
the negative by the input it came through. Each case samples with ComfyUI's own sampler and guider, and compares
with an oracle built without any uncond logic: the positive and negative get separate controls (full strength,
or none / the uncond strength), which ComfyUI then runs in separate chunks.
"""

from __future__ import annotations

import pytest
import torch

from affordance.nodes.apply import apply_control
from affordance.nodes.control import AffordanceControl
from affordance.nodes.negative_rows import KEY
from affordance.nodes.weights import ControlWeightsNode

pytestmark = pytest.mark.comfy

TOL = 1e-3  # max |ours - oracle| over sampled latents (fp32, CPU), as in test_sampling_parity
STEPS = 3
LATENT = 8  # SAG blurs the latent: 8x8 leaves room for its kernel


@pytest.fixture(scope="module")
def sd15(tiny_family):
    return tiny_family("sd15")


def weights(preset: str, uncond: float = 1.0):
    return ControlWeightsNode().build(preset, 0.825, uncond, "1")[0]


def controlled(fam, case: str, positive: list, negative: list, oracle: bool) -> tuple[list, list]:
    """``(positive, negative)`` with our control; ``oracle`` builds the same without uncond logic."""
    control, image = fam.our_controls[0], fam.image(11)
    if case == "uncond_multiplier":
        if not oracle:
            return apply_control(positive, negative, control, image, 1.0, 0.0, 1.0, weights=weights("balanced", 0.5))
        return (
            apply_control(positive, negative, control, image, 1.0, 0.0, 1.0)[0],
            apply_control(positive, negative, control, image, 0.5, 0.0, 1.0)[1],
        )
    if not oracle:
        return apply_control(positive, negative, control, image, 1.0, 0.0, 1.0, weights=weights("controlnet_more_important"))
    soft = apply_control(positive, negative, control, image, 1.0, 0.0, 1.0, weights=weights("prompt_more_important"))
    return soft[0], negative


def record_calls(monkeypatch, what) -> list:
    """Every ``get_control`` call of our controls, as ``what(x, cond, batched_number, transformer_options)``."""
    seen = []
    original = AffordanceControl.get_control

    def spy(self, x, t, cond, batched_number, transformer_options):
        seen.append(what(x, cond, batched_number, transformer_options))
        return original(self, x, t, cond, batched_number, transformer_options)

    monkeypatch.setattr(AffordanceControl, "get_control", spy)
    return seen


def sample(comfy, fam, guider_kind: str, positive: list, negative: list, other: list, batch: int = 1) -> torch.Tensor:
    """Sampled latents of ComfyUI's ``guider_kind`` (euler, normal schedule, fixed noise)."""
    from comfy import samplers
    from comfy_extras import nodes_custom_sampler, nodes_perpneg, nodes_sag

    patcher = fam.patcher
    if guider_kind == "sag":
        patcher = nodes_sag.SelfAttentionGuidance.execute(patcher, 0.8, 0.5).result[0]
    if guider_kind in ("ksampler", "sag"):
        guider = samplers.CFGGuider(patcher)
        guider.set_conds(positive, negative)
        guider.set_cfg(6.0)
    elif guider_kind == "dualcfg":
        guider = nodes_custom_sampler.Guider_DualCFG(patcher)
        guider.set_conds(positive, other, negative)
        guider.set_cfg(6.0, 3.0)
    else:
        guider = nodes_perpneg.Guider_PerpNeg(patcher)
        guider.set_conds(positive, negative, other)
        guider.set_cfg(6.0, 1.0)
    latent = torch.zeros(batch, 4, LATENT, LATENT)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(7))
    sigmas = samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), "normal", STEPS)
    with torch.inference_mode():
        return guider.sample(noise, latent, samplers.sampler_object("euler"), sigmas, disable_pbar=True, seed=7)


@pytest.mark.parametrize("guider_kind", ["ksampler", "sag", "dualcfg", "perpneg"])
@pytest.mark.parametrize("case", ["uncond_multiplier", "controlnet_more_important"])
def test_the_negative_is_the_negative_input_whatever_the_guider(
    comfy, sd15, record_sampling, guider_kind, case
):
    positive, negative, other = sd15.conditioning(1), sd15.conditioning(2), sd15.conditioning(3)
    ours = sample(comfy, sd15, guider_kind, *controlled(sd15, case, positive, negative, False), other)
    oracle = sample(comfy, sd15, guider_kind, *controlled(sd15, case, positive, negative, True), other)
    uniform = sample(  # control of full strength on both sides: what the multiplier must change
        comfy, sd15, guider_kind, *apply_control(positive, negative, sd15.our_controls[0], sd15.image(11), 1.0, 0.0, 1.0), other
    )
    effect = (oracle.double() - uniform.double()).abs().max().item()
    diff = record_sampling(f"guider {guider_kind} {case}", ours, oracle, effect)
    assert effect > 50 * TOL, f"the uncond setting changed the {guider_kind} result by only {effect}"
    assert diff <= TOL, f"{guider_kind}: control meant for one side reached the other (max diff {diff}, effect {effect})"


@pytest.mark.parametrize("batch", [1, 2])
def test_marks_keep_cond_and_uncond_in_one_model_call(comfy, sd15, monkeypatch, batch):
    """Marked positive and negative still share each model call (no extra UNet call per step), and the
    control gets one flag per row of the latent batch."""
    seen = record_calls(monkeypatch, lambda x, cond, chunks, options: (chunks, x.shape[0], cond.get(KEY)))
    positive, negative = sd15.conditioning(1), sd15.conditioning(2)
    pair = apply_control(positive, negative, sd15.our_controls[0], sd15.image(11), 1.0, 0.0, 1.0, weights=weights("balanced", 0.5))
    sample(comfy, sd15, "ksampler", *pair, [], batch=batch)
    assert len(seen) == STEPS
    for chunks, rows, flags in seen:
        assert chunks == 2 and rows == 2 * batch
        assert sorted(flags) == [False] * batch + [True] * batch


def unmarked(conditioning: list) -> list:
    """The same conditioning without our marks: the control falls back to ComfyUI's per-call index."""
    out = []
    for tensor, options in conditioning:
        d = dict(options, model_conds={k: v for k, v in options["model_conds"].items() if k != KEY})
        out.append([tensor, d])
    return out


@pytest.mark.parametrize("region", ["area", "mask"])
def test_area_and_mask_conditioning_keep_the_sides(comfy, comfy_nodes, sd15, record_sampling, monkeypatch, region):
    """A positive split into a full and a regional entry: ComfyUI adds regional copies of the negative (a copy
    of the positive's entry, the control included, with the negative's ``model_conds``), which must count as
    the negative, as KSampler's index says: the marks agree with it on every call and sample the same latents.
    (So an oracle with no control on the negative differs here: ComfyUI gives those copies the positive's
    control.)"""
    positive, negative, other = sd15.conditioning(1), sd15.conditioning(2), sd15.conditioning(3)
    if region == "area":
        part = comfy_nodes.ConditioningSetArea().append(other, 32, 16, 0, 16, 1.0)[0]
    else:
        mask = torch.zeros(1, LATENT * 8, LATENT * 8)
        mask[:, :, : LATENT * 4] = 1.0
        part = comfy_nodes.ConditioningSetMask().append(other, mask, "mask bounds", 1.0)[0]
    positive = comfy_nodes.ConditioningCombine().combine(positive, part)[0]
    pair = controlled(sd15, "controlnet_more_important", positive, negative, False)

    def flags(x, cond, chunks, options):  # our marks, and what KSampler's index says for the same rows
        order = options["cond_or_uncond"]
        return cond.get(KEY), tuple(c == 1 for c in order for _ in range(x.shape[0] // len(order)))

    seen = record_calls(monkeypatch, flags)
    ours = sample(comfy, sd15, "ksampler", *pair, [])
    # area: full and regional entries in two calls per step; mask: all four entries in one
    assert len(seen) == (2 if region == "area" else 1) * STEPS, seen
    assert all(flags == by_index and True in flags and False in flags for flags, by_index in seen), seen
    by_index = sample(comfy, sd15, "ksampler", *map(unmarked, pair), [])
    uniform = sample(
        comfy, sd15, "ksampler", *apply_control(positive, negative, sd15.our_controls[0], sd15.image(11), 1.0, 0.0, 1.0), []
    )
    effect = (by_index.double() - uniform.double()).abs().max().item()
    diff = record_sampling(f"guider ksampler {region} controlnet_more_important, marks vs index", ours, by_index, effect)
    assert effect > 50 * TOL and diff <= TOL, (diff, effect)

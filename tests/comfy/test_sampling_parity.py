"""End-to-end parity with ComfyUI: the same ControlNet file sampled through our nodes and through ComfyUI's.

A tiny SD1.x-family base model (and a tiny SDXL-family one) with seeded random weights is sampled by ComfyUI's
own ``comfy.sample.sample`` on the CPU in fp32 (euler, normal schedule, 4 steps, latent 4x4). The same
ControlNet files are loaded by ComfyUI (``comfy.controlnet.load_controlnet`` + ``ControlNetApplyAdvanced``) and
by us (``load_control`` + ``apply_control``, the logic of AST_ControlNetLoader and AST_ApplyControlNet); the
sampled latents must agree within 1e-3 (their magnitude is ~100: the SD latent scale factor divides them by
0.18215). Every case also checks that the control changed the result by far more than the tolerance, so the
comparisons can fail. See ``conftest.py`` for the tiny models.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from affordance.controlnet.weights import soft_weights
from affordance.nodes.apply import apply_control
from affordance.nodes.control import AffordanceControl
from affordance.nodes.weights import ControlWeightsNode

pytestmark = pytest.mark.comfy

TOL = 1e-3  # max |ours - ComfyUI| over sampled latents (fp32, CPU)
MIN_EFFECT = 50 * TOL  # a control must move the sampled latents by at least this much
STEPS = 4  # sigmas 14.6, 2.92, 0.93, 0.03: window (0, 0.5) keeps the first two, (0.3, 1) the last three


# ----- helpers ---------------------------------------------------------------------------------------------
def apply_theirs(comfy_nodes, positive, negative, control, image, strength=1.0, start=0.0, end=1.0):
    """ComfyUI's ``Apply ControlNet`` node (ControlNetApplyAdvanced)."""
    return comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(
        positive, negative, control, image, strength, start, end
    )


def apply_ours(positive, negative, control, image, strength=1.0, start=0.0, end=1.0, **extras):
    """The logic of AST_ApplyControlNet."""
    return apply_control(positive, negative, control, image, strength, start, end, **extras)


def control_of(conditioning: list):
    """The control object the sampler will see (the same for every entry here)."""
    controls = {id(options.get("control")) for _, options in conditioning}
    assert len(controls) == 1
    return conditioning[0][1]["control"]


def residuals(fam, control, *, percent: float = 0.4, batch: int = 2, cond_or_uncond=(1, 0), seed: int = 5):
    """``control.get_control`` after ``pre_run`` with the model, as the sampler calls them, then ``cleanup``."""
    model = fam.model
    x, t, cond = fam.model_inputs(seed, batch=batch, percent=percent)
    with torch.inference_mode():
        control.pre_run(model, lambda p: model.model_sampling.percent_to_sigma(p))
        try:
            out = control.get_control(x, t, cond, len(cond_or_uncond), {"cond_or_uncond": list(cond_or_uncond)})
        finally:
            control.cleanup()
    if out is not None:
        assert set(out) == {"input", "middle", "output"}
    return out


def sum_residuals(parts: list) -> dict | None:
    """Index-wise sum of residual dicts (``None`` parts and entries are absent)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    total: dict[str, list] = {"input": [], "middle": [], "output": []}
    for part in parts:
        for key in total:
            for i, r in enumerate(part[key]):
                if i >= len(total[key]):
                    total[key].append(r)
                elif r is not None:
                    total[key][i] = r if total[key][i] is None else total[key][i] + r
    return total


def max_residual_diff(a: dict | None, b: dict | None) -> float:
    assert (a is None) == (b is None)
    if a is None:
        return 0.0
    worst = 0.0
    for key in ("input", "middle", "output"):
        assert len(a[key]) == len(b[key]), f"{key}: {len(a[key])} vs {len(b[key])} residuals"
        for x, y in zip(a[key], b[key]):
            assert (x is None) == (y is None)
            if x is not None:
                assert x.shape == y.shape
                worst = max(worst, (x.double() - y.double()).abs().max().item())
    return worst


def effect_of(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# ----- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd15(tiny_family):
    return tiny_family("sd15")


@pytest.fixture(scope="module")
def prompts(sd15):
    """Positive and negative conditioning without control."""
    return sd15.conditioning(1), sd15.conditioning(2)


@pytest.fixture(scope="module")
def plain(sd15, prompts, comfy_sample):
    """``plain(cfg, batch=1)``: sampled latents without any ControlNet (cached)."""
    cache: dict[tuple, torch.Tensor] = {}

    def get(cfg: float, batch: int = 1) -> torch.Tensor:
        if (cfg, batch) not in cache:
            cache[cfg, batch] = comfy_sample(sd15.patcher, *prompts, sd15.latent(batch), steps=STEPS, cfg=cfg)
        return cache[cfg, batch]

    return get


# ----- 1. ours = ComfyUI's, for strength, window and cfg ---------------------------------------------------
def test_tiny_models_are_what_the_loaders_expect(sd15):
    """Both loaders read the file as a 5-residual SD1.x ControlNet in fp32; ComfyUI's picks its SD15 config."""
    theirs, ours = sd15.comfy_controls[0], sd15.our_controls[0]
    assert isinstance(ours, AffordanceControl)
    assert ours.num_residuals == 5 and ours.family_label == "SD1.x"
    assert ours.network.dtype == torch.float32 and ours.manual_cast_dtype is None
    assert theirs.control_model.dtype == torch.float32 and theirs.manual_cast_dtype is None
    assert len(theirs.control_model.zero_convs) == 4 == len(sd15.model.diffusion_model.input_blocks)
    assert theirs.control_model.input_blocks[1][1].transformer_blocks[0].attn1.heads == 8
    assert ours.network.input_blocks[1][1].transformer_blocks[0].attn1.heads == 8


@pytest.mark.parametrize("cfg", [7.0, 1.0], ids=["cfg7", "cfg1"])
@pytest.mark.parametrize("window", [(0.0, 0.5), (0.3, 1.0)], ids=["w0-0.5", "w0.3-1"])
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_same_latents_as_comfyui(
    sd15, prompts, plain, comfy_nodes, comfy_sample, record_sampling, strength, window, cfg
):
    image = sd15.image(11, height=48, width=40)  # not the latent size x8: both sides crop and resize
    ours = apply_ours(*prompts, sd15.our_controls[0], image, strength, *window)
    theirs = apply_theirs(comfy_nodes, *prompts, sd15.comfy_controls[0], image, strength, *window)
    mine = comfy_sample(sd15.patcher, *ours, sd15.latent(), steps=STEPS, cfg=cfg)
    ref = comfy_sample(sd15.patcher, *theirs, sd15.latent(), steps=STEPS, cfg=cfg)
    effect = effect_of(ref, plain(cfg))
    diff = record_sampling(f"sd15 strength {strength} window {window} cfg {cfg:g}", mine, ref, effect)
    assert effect > MIN_EFFECT, f"the ControlNet changed the latents by only {effect:.3g}"
    assert diff <= TOL, f"ours differs from ComfyUI's by {diff:.3g}"


def test_full_window_differs_from_partial_windows(sd15, prompts, comfy_sample):
    """The window matters (so the window cases above test the gate): (0, 1) differs from (0, 0.5) and (0.3, 1)."""
    image = sd15.image(11)
    out = {}
    for window in [(0.0, 1.0), (0.0, 0.5), (0.3, 1.0)]:
        cond = apply_ours(*prompts, sd15.our_controls[0], image, 1.0, *window)
        out[window] = comfy_sample(sd15.patcher, *cond, sd15.latent(), steps=STEPS, cfg=1.0)
    assert effect_of(out[0.0, 1.0], out[0.0, 0.5]) > MIN_EFFECT
    assert effect_of(out[0.0, 1.0], out[0.3, 1.0]) > MIN_EFFECT


# ----- 2. strength 0 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [7.0, 1.0], ids=["cfg7", "cfg1"])
def test_strength_zero_is_bit_identical_to_no_controlnet(sd15, prompts, plain, comfy_sample, cfg):
    image = sd15.image(11)
    # The node returns its inputs untouched ...
    positive, negative = apply_ours(*prompts, sd15.our_controls[0], image, 0.0, 0.0, 1.0)
    assert positive is prompts[0] and negative is prompts[1]
    # ... and a control object set to strength 0 anyway (ComfyUI's set_cond_hint accepts it) adds nothing.
    control = sd15.our_controls[0].copy().set_cond_hint(image.movedim(-1, 1), 0.0, (0.0, 1.0))
    attached = [[[t, {**o, "control": control, "control_apply_to_uncond": False}] for t, o in c] for c in prompts]
    out = comfy_sample(sd15.patcher, *attached, sd15.latent(), steps=STEPS, cfg=cfg)
    assert torch.equal(out, plain(cfg))


# ----- 3. chains -------------------------------------------------------------------------------------------
# (side, control index, hint seed, strength, window): ours A, ComfyUI's B, ours C
CHAIN = [("ours", 0, 21, 0.8, (0.0, 1.0)), ("comfy", 1, 22, 0.6, (0.2, 0.9)), ("ours", 2, 23, 1.3, (0.0, 0.6))]


def apply_link(fam, comfy_nodes, conditioning, link, *, side=None):
    kind, index, seed, strength, window = link
    side = side or kind
    control = (fam.our_controls if kind == "ours" else fam.comfy_controls)[index]
    image = fam.image(seed)
    if side == "ours":
        return apply_ours(*conditioning, control, image, strength, *window)
    return apply_theirs(comfy_nodes, *conditioning, control, image, strength, *window)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda o: "".join("ABC"[i] for i in o))
@pytest.mark.parametrize("percent", [0.1, 0.4, 0.8])  # at 0.1 B is off, at 0.8 C is off
@pytest.mark.parametrize("cond_or_uncond", [(1, 0), (0,)], ids=["cond+uncond", "cond-only"])
def test_chain_is_the_sum_of_its_parts(sd15, prompts, comfy_nodes, order, percent, cond_or_uncond):
    conditioning = prompts
    for i in order:
        conditioning = apply_link(sd15, comfy_nodes, conditioning, CHAIN[i])
    # positive and negative share one object per link, chained onto the previous link's
    top = control_of(conditioning[0])
    assert control_of(conditioning[1]) is top
    chained = residuals(sd15, top, percent=percent, cond_or_uncond=cond_or_uncond)

    parts = []
    for link in CHAIN:
        alone = apply_link(sd15, comfy_nodes, prompts, link)
        parts.append(residuals(sd15, control_of(alone[0]), percent=percent, cond_or_uncond=cond_or_uncond))
    assert sum(p is not None for p in parts) == (3 if percent == 0.4 else 2)
    expected = sum_residuals(parts)
    assert len(chained["output"]) == 4 and len(chained["middle"]) == 1 and chained["input"] == []
    assert max_residual_diff(chained, expected) <= 1e-5


def test_apply_nodes_are_interchangeable(sd15, prompts, comfy_nodes):
    """ComfyUI's Apply node on our ControlNet, and ours on ComfyUI's, give the natural nodes' residuals."""
    for link in CHAIN[:2]:
        natural = apply_link(sd15, comfy_nodes, prompts, link)
        swapped = apply_link(sd15, comfy_nodes, prompts, link, side="comfy" if link[0] == "ours" else "ours")
        a = residuals(sd15, control_of(natural[0]))
        b = residuals(sd15, control_of(swapped[0]))
        assert max_residual_diff(a, b) == 0.0


def test_mixed_chain_samples_like_comfyui_chain(sd15, prompts, plain, comfy_nodes, comfy_sample, record_sampling):
    """ours A -> ComfyUI B -> ours C samples like ComfyUI A -> B -> C on the same files and settings."""
    mixed = theirs = prompts
    for link in CHAIN:
        mixed = apply_link(sd15, comfy_nodes, mixed, link)
        theirs = apply_link(sd15, comfy_nodes, theirs, ("comfy", *link[1:]))
    mine = comfy_sample(sd15.patcher, *mixed, sd15.latent(), steps=STEPS, cfg=7.0)
    ref = comfy_sample(sd15.patcher, *theirs, sd15.latent(), steps=STEPS, cfg=7.0)
    effect = effect_of(ref, plain(7.0))
    diff = record_sampling("sd15 chain ours-comfy-ours vs comfy x3, cfg 7", mine, ref, effect)
    assert effect > MIN_EFFECT
    assert diff <= TOL


# ----- 4. weights presets and masks ------------------------------------------------------------------------
def weights(preset: str):
    return ControlWeightsNode().build(preset, 0.825, 1.0, "1")[0]


@pytest.mark.parametrize("cond_or_uncond", [(1, 0), (0, 1)], ids=["uncond-first", "cond-first"])
def test_soft_presets_follow_their_formulas(sd15, prompts, cond_or_uncond):
    image = sd15.image(11)
    control = sd15.our_controls[0]
    base = residuals(sd15, control_of(apply_ours(*prompts, control, image, 0.9)[0]), cond_or_uncond=cond_or_uncond)
    soft = residuals(
        sd15,
        control_of(apply_ours(*prompts, control, image, 0.9, weights=weights("prompt_more_important"))[0]),
        cond_or_uncond=cond_or_uncond,
    )
    guess = residuals(
        sd15,
        control_of(apply_ours(*prompts, control, image, 0.9, weights=weights("controlnet_more_important"))[0]),
        cond_or_uncond=cond_or_uncond,
    )
    n = 5
    factors = [0.825 ** (n - 1 - i) for i in range(n)]
    assert soft_weights(n) == pytest.approx(factors)
    flat = lambda out: [*out["output"], *out["middle"]]  # noqa: E731  residual order: input blocks, middle last
    uncond_row = cond_or_uncond.index(1)
    for i, (b, s, g) in enumerate(zip(flat(base), flat(soft), flat(guess))):
        torch.testing.assert_close(s, b * factors[i], rtol=1e-6, atol=1e-6)
        assert torch.count_nonzero(g[uncond_row]) == 0, f"residual {i}: control on the unconditional chunk"
        cond_row = 1 - uncond_row
        # the cond row computed alone (the uncond row is skipped) against it within a batch of two: equal up to
        # the rounding of another batch size (bit-equal with torch 2.14, not with 2.9); residuals are ~0.1-1 here
        torch.testing.assert_close(g[cond_row], s[cond_row], rtol=1e-4, atol=1e-5)
        assert torch.count_nonzero(b[uncond_row]) > 0


def test_controlnet_more_important_without_uncond_equals_prompt_more_important(sd15, prompts, comfy_sample):
    """At cfg 1 there is no unconditional batch, so both soft presets sample the same latents."""
    image = sd15.image(11)
    out = [
        comfy_sample(
            sd15.patcher,
            *apply_ours(*prompts, sd15.our_controls[0], image, weights=weights(preset)),
            sd15.latent(),
            steps=STEPS,
            cfg=1.0,
        )
        for preset in ("prompt_more_important", "controlnet_more_important")
    ]
    assert effect_of(*out) <= 1e-6


def test_mask_of_ones_is_no_mask_and_mask_of_zeros_is_no_controlnet(
    sd15, prompts, plain, comfy_sample, record_sampling
):
    image = sd15.image(11)
    control = sd15.our_controls[0]
    size = 8 * 4

    def run(**extras):
        return comfy_sample(sd15.patcher, *apply_ours(*prompts, control, image, **extras), sd15.latent(), steps=STEPS)

    unmasked = run()
    ones = run(mask=torch.ones(1, size, size))
    zeros = run(mask=torch.zeros(1, size, size))
    effect = effect_of(unmasked, plain(7.0))
    assert effect > MIN_EFFECT
    assert record_sampling("sd15 mask of ones vs no mask", ones, unmasked, effect) == 0.0
    assert record_sampling("sd15 mask of zeros vs no ControlNet", zeros, plain(7.0), effect) <= 1e-6


# ----- 5. batches, img2img, SDXL ---------------------------------------------------------------------------
@pytest.mark.parametrize("hint_batch", [2, 1])
def test_latent_batch_of_two(sd15, prompts, plain, comfy_nodes, comfy_sample, record_sampling, hint_batch):
    images = torch.cat([sd15.image(11), sd15.image(12)])[:hint_batch]
    ours = apply_ours(*prompts, sd15.our_controls[0], images, 1.0, 0.0, 1.0)
    theirs = apply_theirs(comfy_nodes, *prompts, sd15.comfy_controls[0], images, 1.0, 0.0, 1.0)
    mine = comfy_sample(sd15.patcher, *ours, sd15.latent(2), steps=STEPS)
    ref = comfy_sample(sd15.patcher, *theirs, sd15.latent(2), steps=STEPS)
    effect = effect_of(ref, plain(7.0, batch=2))
    diff = record_sampling(f"sd15 latent batch 2, hint batch {hint_batch}", mine, ref, effect)
    assert effect > MIN_EFFECT
    assert diff <= TOL
    if hint_batch == 2:  # two different hints give two different images
        assert effect_of(mine[0], mine[1]) > MIN_EFFECT


def test_img2img(sd15, prompts, comfy_nodes, comfy_sample, record_sampling):
    image = sd15.image(11)
    latent = sd15.latent(seed=3)
    ours = apply_ours(*prompts, sd15.our_controls[0], image, 1.0, 0.0, 1.0)
    theirs = apply_theirs(comfy_nodes, *prompts, sd15.comfy_controls[0], image, 1.0, 0.0, 1.0)
    mine = comfy_sample(sd15.patcher, *ours, latent, steps=STEPS, denoise=0.6)
    ref = comfy_sample(sd15.patcher, *theirs, latent, steps=STEPS, denoise=0.6)
    effect = effect_of(ref, comfy_sample(sd15.patcher, *prompts, latent, steps=STEPS, denoise=0.6))
    diff = record_sampling("sd15 img2img denoise 0.6", mine, ref, effect)
    assert effect > MIN_EFFECT
    assert diff <= TOL


@pytest.mark.parametrize("cfg", [7.0, 1.0], ids=["cfg7", "cfg1"])
def test_sdxl(tiny_family, comfy_nodes, comfy_sample, record_sampling, cfg):
    fam = tiny_family("sdxl")
    ours_control, theirs_control = fam.our_controls[0], fam.comfy_controls[0]
    assert ours_control.family_label == "SDXL" and ours_control.num_residuals == 5
    assert theirs_control.control_model.label_emb is not None
    prompts = fam.conditioning(1), fam.conditioning(2)
    image = fam.image(11)
    ours = apply_ours(*prompts, ours_control, image, 1.0, 0.0, 0.8)
    theirs = apply_theirs(comfy_nodes, *prompts, theirs_control, image, 1.0, 0.0, 0.8)
    mine = comfy_sample(fam.patcher, *ours, fam.latent(), steps=STEPS, cfg=cfg)
    ref = comfy_sample(fam.patcher, *theirs, fam.latent(), steps=STEPS, cfg=cfg)
    effect = effect_of(ref, comfy_sample(fam.patcher, *prompts, fam.latent(), steps=STEPS, cfg=cfg))
    diff = record_sampling(f"sdxl-family cfg {cfg:g}", mine, ref, effect)
    assert effect > MIN_EFFECT
    assert diff <= TOL

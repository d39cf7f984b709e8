"""End to end with diffusers as an independent host: a UNet2DConditionModel and a DDIM scheduler denoise
with classifier-free guidance, steered once by diffusers' ControlNetModel and once by our ControlNet
loaded from the same weights. The final latents must agree, at plain weights, at half strength, and in
"ControlNet is more important" mode against diffusers' guess mode (soft weights, conditional side only).
"""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet import load_controlnet
from affordance.controlnet.weights import ControlWeights, Preset

diffusers = pytest.importorskip("diffusers")

UNET = dict(
    sample_size=8,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.copy_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(**UNET).eval()
    _randomize(unet, 1)
    ref = diffusers.ControlNetModel.from_unet(unet).eval()
    _randomize(ref, 2)  # zero convs included, so control changes the result
    folder = tmp_path_factory.mktemp("cn")
    ref.save_pretrained(folder)
    ours, report = load_controlnet(folder)
    assert report.family.value == "sd1"
    g = torch.Generator().manual_seed(3)
    inputs = dict(
        latents=torch.randn(2, 4, 8, 8, generator=g),
        hint=torch.rand(2, 3, 64, 64, generator=g),
        cond=torch.randn(2, 7, 768, generator=g),
        uncond=torch.randn(2, 7, 768, generator=g),
    )
    return unet, ref, ours, inputs


def _denoise(unet, control, inputs, cfg: float = 7.0, steps: int = 4) -> torch.Tensor:
    """A DDIM loop with classifier-free guidance; ``control(x, t, ctx, n)`` returns (down, mid) or None."""
    sched = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    sched.set_timesteps(steps)
    x = inputs["latents"].clone()
    n = x.shape[0]
    ctx = torch.cat([inputs["uncond"], inputs["cond"]])
    with torch.no_grad():
        for t in sched.timesteps:
            xin = torch.cat([x, x])
            res = control(xin, t, ctx, n)
            kwargs = {}
            if res is not None:
                kwargs = {"down_block_additional_residuals": res[0], "mid_block_additional_residual": res[1]}
            eps = unet(xin, t, encoder_hidden_states=ctx, **kwargs).sample
            e_u, e_c = eps.chunk(2)
            x = sched.step(e_u + cfg * (e_c - e_u), t, x).prev_sample
    return x


def _theirs(ref, hint, scale=1.0, guess=False):
    def control(xin, t, ctx, n):
        if guess:  # diffusers pipelines: the ControlNet sees the conditional half only, zeros for the rest
            down, mid = ref(xin[n:], t, ctx[n:], hint, conditioning_scale=scale, guess_mode=True, return_dict=False)
            return [torch.cat([torch.zeros_like(d), d]) for d in down], torch.cat([torch.zeros_like(mid), mid])
        return ref(xin, t, ctx, torch.cat([hint, hint]), conditioning_scale=scale, return_dict=False)

    return control


def _ours(model, hint, strength=1.0, weights: ControlWeights | None = None):
    weights = weights or ControlWeights()

    def control(xin, t, ctx, n):
        res = model(xin, torch.cat([hint, hint]), t.expand(xin.shape[0]).float(), ctx)
        w = weights.resolve(len(res))
        rows = torch.tensor([weights.effective_uncond_multiplier] * n + [1.0] * n).view(-1, 1, 1, 1)
        out = [r * strength * wi * rows for r, wi in zip(res.as_list(), w)]
        return out[:-1], out[-1]

    return control


def test_plain_control_equals_diffusers(setup):
    unet, ref, ours, inp = setup
    none = _denoise(unet, lambda *a: None, inp)
    theirs = _denoise(unet, _theirs(ref, inp["hint"]), inp)
    mine = _denoise(unet, _ours(ours, inp["hint"]), inp)
    assert (theirs - none).abs().max() > 1e-2  # the ControlNet really steers
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)


def test_half_strength_equals_conditioning_scale(setup):
    unet, ref, ours, inp = setup
    theirs = _denoise(unet, _theirs(ref, inp["hint"], scale=0.5), inp)
    mine = _denoise(unet, _ours(ours, inp["hint"], strength=0.5), inp)
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)


def test_controlnet_more_important_equals_guess_mode(setup):
    unet, ref, ours, inp = setup
    n = ours.config.num_residuals
    # diffusers' guess mode uses logspace(-1, 0, n): the soft weights with base 10 ** (-1 / (n - 1)).
    weights = ControlWeights(Preset.CONTROLNET_MORE_IMPORTANT, base_multiplier=10 ** (-1 / (n - 1)))
    theirs = _denoise(unet, _theirs(ref, inp["hint"], guess=True), inp)
    mine = _denoise(unet, _ours(ours, inp["hint"], weights=weights), inp)
    plain = _denoise(unet, _theirs(ref, inp["hint"]), inp)
    assert (theirs - plain).abs().max() > 1e-3
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)

"""A video sampled in context windows by ComfyUI's own Context Windows (Manual) node: every frame gets its hint.

ComfyUI samples a long latent batch a window of frames at a time when the model carries a context handler. Its
own ControlNet is handed each window's rows (cond and uncond) and lays the hint batch onto them from its first
image, whatever frames the window holds (here frames 4-7 came out 6.0 off sampling them with their own hints);
ours takes the window's frames from the transformer options.
With windows that do not overlap and flat fusing, each frame is sampled once, by one window; the windowed run
must then equal sampling each window's frames alone, with their own noise and hints, without windows.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from affordance.nodes.apply import apply_control

pytestmark = pytest.mark.comfy

TOL = 1e-3  # as test_sampling_parity: max |diff| of sampled latents, fp32 on the CPU
MIN_EFFECT = 50 * TOL
# This ComfyUI's handler finds the step by comparing its sample_sigmas (steps + 1 values) with the per-row
# timestep elementwise (context_windows.set_step), so along the batch it runs only with steps + 1 = frames.
FRAMES, WINDOW, STEPS = 8, 4, 7


@pytest.fixture(scope="module")
def sd15(tiny_family):
    return tiny_family("sd15")


def _windowed(patcher, schedule: str = "standard_static", fuse: str = "flat"):
    """The model as ComfyUI's Context Windows (Manual) node returns it (windows along the batch, dim 0)."""
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode

    args = dict(
        context_length=WINDOW, context_overlap=0, context_schedule=schedule, context_stride=1, closed_loop=False,
        fuse_method=fuse, dim=0,
    )
    # later ComfyUI versions add inputs: FreeNoise off; the causal window fix (0.21+: every window but the first
    # is sampled with the frame before it in front) on, as by default, so that path is tested where it exists
    params = inspect.signature(ContextWindowsManualNode.execute).parameters
    args.update({k: v for k, v in (("freenoise", False), ("causal_window_fix", True)) if k in params})
    out = ContextWindowsManualNode.execute(patcher, **args)
    return out.result[0]


def _sample(patcher, positive, negative, noise: torch.Tensor, cfg: float = 7.0) -> torch.Tensor:
    from comfy import sample

    latent = torch.zeros_like(noise)
    with torch.inference_mode():
        return sample.sample(
            patcher, noise, STEPS, cfg, "euler", "normal", positive, negative, latent, disable_pbar=True, seed=0
        )


def test_each_window_is_controlled_by_its_own_frames_hints(sd15, record_sampling):
    """Frames 4-7 get hints 4-7. This was refused ("a batch of 8 hint images fits no latent batch of 4")."""
    prompts = sd15.conditioning(1), sd15.conditioning(2)
    noise = torch.randn(FRAMES, 4, 4, 4, generator=torch.Generator().manual_seed(7))
    hints = sd15.image(31, batch=FRAMES)
    control = sd15.our_controls[0]
    windowed = _sample(_windowed(sd15.patcher), *apply_control(*prompts, control, hints, 1.0, 0.0, 1.0), noise)
    alone = [
        _sample(sd15.patcher, *apply_control(*prompts, control, hints[s : s + WINDOW], 1.0, 0.0, 1.0), noise[s : s + WINDOW])
        for s in range(0, FRAMES, WINDOW)
    ]
    reference = torch.cat(alone)
    # what the first frames' hints give the second window: how much getting the frames right matters
    shifted = _sample(sd15.patcher, *apply_control(*prompts, control, hints[:WINDOW], 1.0, 0.0, 1.0), noise[WINDOW:])
    effect = (shifted.double() - alone[1].double()).abs().max().item()
    diff = record_sampling("sd15 context windows (4 of 8 frames), ours vs each window alone", windowed, reference, effect)
    assert effect > MIN_EFFECT, f"the hints of other frames changed the latents by only {effect:.3g}"
    assert diff <= TOL, f"windowed sampling differs from each window sampled alone by {diff:.3g}"


def test_per_frame_masks_under_context_windows(sd15, record_sampling):
    """A mask per frame follows its frame into its window, as the hints do."""
    prompts = sd15.conditioning(3), sd15.conditioning(4)
    noise = torch.randn(FRAMES, 4, 4, 4, generator=torch.Generator().manual_seed(8))
    hints = sd15.image(32, batch=FRAMES)
    masks = torch.zeros(FRAMES, 32, 32)
    for i in range(FRAMES):
        masks[i, :, : 4 * (i + 1)] = 1.0
    control = sd15.our_controls[1]
    cond = apply_control(*prompts, control, hints, 1.0, 0.0, 1.0, mask=masks)
    windowed = _sample(_windowed(sd15.patcher), *cond, noise)
    alone = []
    for s in range(0, FRAMES, WINDOW):
        part = slice(s, s + WINDOW)
        cond = apply_control(*prompts, control, hints[part], 1.0, 0.0, 1.0, mask=masks[part])
        alone.append(_sample(sd15.patcher, *cond, noise[part]))
    unmasked = _sample(_windowed(sd15.patcher), *apply_control(*prompts, control, hints, 1.0, 0.0, 1.0), noise)
    effect = (unmasked.double() - windowed.double()).abs().max().item()
    diff = record_sampling("sd15 context windows with per-frame masks", windowed, torch.cat(alone), effect)
    assert effect > MIN_EFFECT, f"the masks changed the latents by only {effect:.3g}"
    assert diff <= TOL, f"windowed sampling with masks differs from each window alone by {diff:.3g}"

"""Sliding context windows (a long video sampled a few frames at a time): each frame keeps its own hint and mask.

Two hosts window a video: ComfyUI's Context Windows nodes put the window in the transformer options
(``context_window.index_list`` along ``dim``), AnimateDiff-Evolved's sliding context sets ``sub_idxs`` on every
control object (and refuses one without that attribute). A model call then holds ``chunks x window`` rows while
the hint batch holds one image per frame of the whole video.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from affordance.controlnet.errors import HintError
from affordance.controlnet.reuse import ReusePolicy
from affordance.nodes.control import AffordanceControl

FRAMES = 6


def _hints(frames: int = FRAMES) -> torch.Tensor:
    """``(frames, 3, 64, 64)``: every frame a different picture."""
    return torch.rand(frames, 3, 64, 64, generator=torch.Generator().manual_seed(11))


def _ready(control: AffordanceControl, fake_model, hints: torch.Tensor, **extras) -> AffordanceControl:
    c = control.copy().set_cond_hint(hints)
    if extras:
        c.configure(**extras)
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    return c


def _inputs(rows: int, sigma: float, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 4, 8, 8, generator=g)
    return x, torch.full((rows,), sigma), {"c_crossattn": torch.randn(rows, 5, 768, generator=g)}


def _native(frames, dim: int = 0) -> dict:
    """Transformer options as ComfyUI's context handler leaves them for one window's model call."""
    return {"cond_or_uncond": [1, 0], "context_window": SimpleNamespace(index_list=list(frames), dim=dim)}


def _all(out: dict) -> list[torch.Tensor]:
    return out["output"] + out["middle"]


@pytest.mark.parametrize("frames", [(3, 4, 5), (4, 1, 5), (5, 0, 1)], ids=["last", "any order", "closed loop"])
def test_native_window_takes_its_frames_hints(control, fake_model, sigma, frames):
    """A window of frames (3, 4, 5) gets hints 3, 4, 5 for its cond rows and again for its uncond rows; it was
    refused ("a batch of 6 hint images fits no latent batch of 3")."""
    hints = _hints()
    x, t, cond = _inputs(2 * len(frames), sigma(0.4))
    got = _ready(control, fake_model, hints).get_control(x, t, cond, 2, _native(frames))
    ref = _ready(control, fake_model, hints[list(frames)]).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    for g, r in zip(_all(got), _all(ref)):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)


def test_native_window_with_its_causal_anchor_takes_the_anchor_frames_hint_first(control, fake_model, sigma):
    """ComfyUI 0.21+'s causal window fix (on by default) samples window (3, 4, 5) with frame 2 in front: the call
    holds 4 frames and takes hints 2, 3, 4, 5 (it was refused: "a batch of 6 hint images fits no latent batch of
    4"). A window starting at frame 0 has no anchor (-1 is never set)."""
    hints = _hints()
    x, t, cond = _inputs(2 * 4, sigma(0.4))
    options = _native((3, 4, 5))
    options["context_window"].causal_anchor_index = 2
    got = _ready(control, fake_model, hints).get_control(x, t, cond, 2, options)
    ref = _ready(control, fake_model, hints[[2, 3, 4, 5]]).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    for g, r in zip(_all(got), _all(ref)):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)


def test_animatediff_evolved_protocol(control, fake_model, sigma):
    """AnimateDiff-Evolved refuses a control object without ``sub_idxs``; it sets the window's frames there (with
    the video's and the window's lengths) before each window, and never clears them: the next run must not
    inherit them."""
    hints = _hints()
    c = _ready(control, fake_model, hints)
    assert hasattr(c, "sub_idxs") and c.sub_idxs is None
    c.sub_idxs, c.full_latent_length, c.context_length = [2, 3, 4], FRAMES, 3
    x, t, cond = _inputs(6, sigma(0.4))
    got = c.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    ref = _ready(control, fake_model, hints[2:5]).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    for g, r in zip(_all(got), _all(ref)):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)
    c.cleanup()
    assert (c.full_latent_length, c.context_length) == (0, 0) and not hasattr(c, "sub_idxs")
    c.sub_idxs = [0, 1, 2]  # left by a run that ended without cleanup
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    assert c.sub_idxs is None


def test_per_frame_masks_follow_the_window(control, fake_model, sigma):
    """A mask batch with one mask per frame of the video: each window's frames get their own masks."""
    hints = _hints()
    masks = torch.zeros(FRAMES, 64, 64)
    for i in range(FRAMES):
        masks[i, :, : 8 * (i + 1)] = 1.0  # frame i's control covers a strip of its own width
    frames = (1, 3, 5)
    x, t, cond = _inputs(6, sigma(0.4))
    got = _ready(control, fake_model, hints, mask=masks).get_control(x, t, cond, 2, _native(frames))
    ref = _ready(control, fake_model, hints[list(frames)], mask=masks[list(frames)])
    ref = ref.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    for g, r in zip(_all(got), _all(ref)):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)
    assert torch.count_nonzero(got["output"][0][0, :, :, 2:]) == 0 and torch.count_nonzero(got["output"][0][0, :, :, :2])


@pytest.mark.parametrize("batch", [1, 3], ids=["one hint for all frames", "one hint per window frame"])
def test_batches_that_fit_the_window_are_used_as_before(control, fake_model, sigma, batch):
    """A single hint, or a batch no larger than the window, is laid out as without windows (as
    Advanced-ControlNet does when the hint batch is shorter than the video)."""
    hints = _hints(batch)
    x, t, cond = _inputs(6, sigma(0.4))
    got = _ready(control, fake_model, hints).get_control(x, t, cond, 2, _native((3, 4, 5)))
    ref = _ready(control, fake_model, hints).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    for g, r in zip(_all(got), _all(ref)):
        torch.testing.assert_close(g, r, atol=0, rtol=0)


def test_a_batch_shorter_than_the_video_is_a_typed_error(control, fake_model, sigma):
    c = _ready(control, fake_model, _hints(4))
    x, t, cond = _inputs(6, sigma(0.4))
    with pytest.raises(HintError, match=r"a batch of 4 hint images cannot follow this context window: it samples "
                       r"frames 3 to 5 of the video\. Give one hint image per frame"):
        c.get_control(x, t, cond, 2, _native((3, 4, 5)))


@pytest.mark.parametrize(
    "options",
    [_native((0, 1, 2), dim=1), _native((0, 1)), {"cond_or_uncond": [1, 0], "context_window": None}],
    ids=["window along another dim", "window of another length", "no window"],
)
def test_only_a_batch_window_of_the_calls_length_selects_frames(control, fake_model, sigma, options):
    """A window along another dimension, or one that does not match the call (ComfyUI leaves the last window in
    the options), selects nothing: the batch is checked as without windows."""
    c = _ready(control, fake_model, _hints())
    x, t, cond = _inputs(6, sigma(0.4))
    with pytest.raises(HintError, match="a batch of 6 hint images fits no latent batch of 3"):
        c.get_control(x, t, cond, 2, options)


def test_reused_residuals_stay_with_their_window(control, fake_model, sigma):
    """Lossy reuse keys residuals by window: two windows at one noise level, then the first window at the next
    level reuses its own residuals, not the other window's (it did: windows have the same shapes)."""
    c = _ready(control, fake_model, _hints(1))
    c.set_reuse(ReusePolicy(every_k=2))
    first, second = (0, 1, 2), (3, 4, 5)
    x0, t0, cond = _inputs(6, sigma(0.3), seed=3)
    x1, _, _ = _inputs(6, sigma(0.3), seed=4)
    a = [r.clone() for r in _all(c.get_control(x0, t0, cond, 2, _native(first)))]
    b = [r.clone() for r in _all(c.get_control(x1, t0, cond, 2, _native(second)))]
    t1 = torch.full((6,), sigma(0.35))
    again = _all(c.get_control(x0, t1, cond, 2, _native(first)))
    assert c.reuse_stats.reused == 1
    for g, r, other in zip(again, a, b):
        torch.testing.assert_close(g, r, atol=0, rtol=0)
        assert not torch.equal(g, other)


def test_sub_idxs_exists_only_while_sampling(control, fake_model):
    """Advanced-ControlNet takes any object with ``sub_idxs`` for one of its own: its Apply node then called its
    own objects' methods on ours (AttributeError: no ``disarm``). Outside a run the attribute is absent, so ACN's
    nodes treat ours as a foreign control as they did before; from pre_run to cleanup it is there for
    AnimateDiff-Evolved."""
    fresh = control.copy()
    assert not hasattr(fresh, "sub_idxs") and not hasattr(control, "sub_idxs")
    c = fresh.set_cond_hint(_hints(1))
    assert not hasattr(c, "sub_idxs")
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    assert hasattr(c, "sub_idxs") and not hasattr(c.copy(), "sub_idxs")
    c.cleanup()
    assert not hasattr(c, "sub_idxs")


def _equal_outputs(got: dict, ref: dict, atol: float = 1e-5) -> None:
    for g, r in zip(_all(got), _all(ref), strict=True):
        torch.testing.assert_close(g, r, atol=atol, rtol=0)


def test_a_causal_anchor_at_frame_0_is_taken_in_front(control, fake_model, sigma):
    """Frame 0 is a valid anchor (the window 1..3 samples frame 0 in front of it)."""
    hints = _hints()
    x, t, cond = _inputs(2 * 4, sigma(0.4))
    window = SimpleNamespace(index_list=[1, 2, 3], dim=0, causal_anchor_index=0)
    got = _ready(control, fake_model, hints).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0], "context_window": window})
    ref = _ready(control, fake_model, hints[[0, 1, 2, 3]]).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    _equal_outputs(got, ref)


def test_a_negative_causal_anchor_is_no_anchor(control, fake_model, sigma):
    """ComfyUI's own windows read a negative ``causal_anchor_index`` as none: the window's frames alone."""
    hints = _hints()
    x, t, cond = _inputs(2 * 3, sigma(0.4))
    window = SimpleNamespace(index_list=[3, 4, 5], dim=0, causal_anchor_index=-1)
    got = _ready(control, fake_model, hints).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0], "context_window": window})
    ref = _ready(control, fake_model, hints[[3, 4, 5]]).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    _equal_outputs(got, ref)


def test_a_window_that_does_not_say_its_dim_is_along_the_batch(control, fake_model, sigma):
    hints = _hints()
    x, t, cond = _inputs(6, sigma(0.4))
    bare = {"cond_or_uncond": [1, 0], "context_window": SimpleNamespace(index_list=[3, 4, 5])}
    got = _ready(control, fake_model, hints).get_control(x, t, cond, 2, bare)
    _equal_outputs(got, _ready(control, fake_model, hints).get_control(x, t, cond, 2, _native((3, 4, 5))), atol=0)


def test_a_window_without_frames_is_no_window(control, fake_model, sigma):
    c = _ready(control, fake_model, _hints(1))
    x, t, cond = _inputs(6, sigma(0.4))
    got = c.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0], "context_window": SimpleNamespace(dim=0)})
    _equal_outputs(got, c.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]}), atol=0)


def test_one_chunk_under_a_window_takes_the_windows_hints_and_masks(control, fake_model, sigma):
    """cfg 1 (one chunk): the window's frames' hints and masks, as with cond and uncond batched."""
    hints = _hints()
    masks = torch.zeros(FRAMES, 64, 64)
    for i in range(FRAMES):
        masks[i, :, : 8 * (i + 1)] = 1.0
    frames = [1, 3, 5]
    x, t, cond = _inputs(3, sigma(0.4))
    opts = {"cond_or_uncond": [0], "context_window": SimpleNamespace(index_list=frames, dim=0)}
    got = _ready(control, fake_model, hints, mask=masks).get_control(x, t, cond, 1, opts)
    ref = _ready(control, fake_model, hints[frames], mask=masks[frames]).get_control(x, t, cond, 1, {"cond_or_uncond": [0]})
    _equal_outputs(got, ref)
    # hints exactly as many as the window's frames are the window's own (a batch that fits is used as before)
    got = _ready(control, fake_model, hints[:3]).get_control(x, t, cond, 1, opts)
    _equal_outputs(got, _ready(control, fake_model, hints[:3]).get_control(x, t, cond, 1, {"cond_or_uncond": [0]}), atol=0)


@pytest.mark.parametrize("masks", [1, 3], ids=["one for all frames", "one per window frame"])
def test_masks_that_fit_the_window_are_used_as_they_are(control, fake_model, sigma, masks):
    hints = _hints()
    mask = torch.rand(masks, 64, 64, generator=torch.Generator().manual_seed(2))
    x, t, cond = _inputs(6, sigma(0.4))
    got = _ready(control, fake_model, hints, mask=mask).get_control(x, t, cond, 2, _native((3, 4, 5)))
    ref = _ready(control, fake_model, hints[[3, 4, 5]], mask=mask).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    _equal_outputs(got, ref)


def test_sub_idxs_reads_back_what_the_host_set(control, fake_model):
    c = _ready(control, fake_model, _hints())
    assert c.sub_idxs is None
    c.sub_idxs = [2, 3, 4]
    assert c.sub_idxs == [2, 3, 4]

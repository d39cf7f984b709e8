"""Hint geometry: centre crop to the latent's aspect, batch broadcasting, masks per residual."""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet.errors import HintError
from affordance.controlnet.hint import (
    broadcast_batch,
    center_crop_to_aspect,
    check_hint_batch,
    fit_hint,
    mask_for,
    window_batch,
)


def test_crop_keeps_centre_of_wider_image():
    img = torch.arange(4 * 8, dtype=torch.float32).view(1, 1, 4, 8)
    out = center_crop_to_aspect(img, 4, 4)
    assert out.shape[-2:] == (4, 4)
    assert torch.equal(out, img[..., 2:6])


def test_crop_keeps_centre_of_taller_image():
    img = torch.arange(8 * 4, dtype=torch.float32).view(1, 1, 8, 4)
    assert torch.equal(center_crop_to_aspect(img, 4, 4), img[..., 2:6, :])


@pytest.mark.parametrize(("h", "w"), [(1, 4), (1, 6), (4, 1), (1, 2000), (3, 2000), (2000, 1)])
def test_thin_strip_keeps_its_middle_instead_of_cropping_to_nothing(h, w):
    img = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    out = center_crop_to_aspect(img, 64, 64)
    assert min(out.shape[-2:]) >= 1
    assert out.shape[-2] == h if h <= w else out.shape[-1] == w
    # the kept pixels are the strip's middle
    mid = img[..., (h - out.shape[-2]) // 2 :, (w - out.shape[-1]) // 2 :][..., : out.shape[-2], : out.shape[-1]]
    assert torch.equal(out, mid)
    assert abs(out.shape[-1] - out.shape[-2]) <= 1  # as near the square target as whole pixels allow
    assert fit_hint(img, 64, 48).shape == (1, 1, 48, 64)


@pytest.mark.parametrize(("h", "w"), [(64, 64), (48, 96), (96, 48)])
def test_fit_hint_sizes(h, w):
    hint = torch.rand(2, 3, 100, 70)
    assert fit_hint(hint, w, h).shape == (2, 3, h, w)


def test_fit_hint_same_size_is_identity():
    hint = torch.rand(1, 3, 64, 64)
    assert fit_hint(hint, 64, 64) is hint or torch.equal(fit_hint(hint, 64, 64), hint)


def test_fit_hint_nearest_exact_upscale():
    hint = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    out = fit_hint(hint, 4, 4)
    assert torch.equal(out[0, 0], torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]))


def test_a_shrunk_hint_takes_the_pixels_comfyui_takes():
    """nearest-exact, as ComfyUI's common_upscale: halving takes the second pixel of each pair (plain nearest takes
    the first); whole-factor enlarging cannot tell the two apart."""
    hint = torch.rand(1, 3, 128, 96, generator=torch.Generator().manual_seed(0))
    out = fit_hint(hint, 48, 64)
    assert torch.equal(out, torch.nn.functional.interpolate(hint, size=(64, 48), mode="nearest-exact"))
    assert torch.equal(out, hint[..., 1::2, 1::2])


def test_broadcast_batch_layout():
    t = torch.arange(2).view(2, 1)
    # 2 latents, cond+uncond: each chunk gets both hints in order
    assert broadcast_batch(t, 4, 2).flatten().tolist() == [0, 1, 0, 1]
    # 1 hint broadcasts by shape
    assert broadcast_batch(t[:1], 6, 2).shape[0] == 1
    # 4 latents with 2 hints repeat cyclically
    assert broadcast_batch(t, 8, 2).flatten().tolist() == [0, 1, 0, 1, 0, 1, 0, 1]


def test_hint_batch_must_fit():
    check_hint_batch(1, 3)
    check_hint_batch(3, 3)
    check_hint_batch(2, 4)
    with pytest.raises(HintError, match=r"a batch of 3 hint images fits no latent batch of 4: use 1, 4 \(one per latent\), or a number that divides 4\.$"):
        check_hint_batch(3, 4)
    with pytest.raises(HintError, match="a batch of 5 masks fits no latent batch of 2"):
        check_hint_batch(5, 2, "masks")
    with pytest.raises(HintError, match=r"a batch of 2 hint images fits no latent batch of 1: use 1\.$"):
        check_hint_batch(2, 1)


def test_mask_area_average():
    mask = torch.zeros(1, 8, 8)
    mask[:, :, :4] = 1.0
    m = mask_for(mask, 2, 2)
    assert m.shape == (1, 1, 2, 2)
    assert m.flatten().tolist() == [1.0, 0.0, 1.0, 0.0]
    assert mask_for(mask, 16, 16).shape == (1, 1, 16, 16)


class _Ops(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the operators a call dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("frames", "chunks"), [((2, 3, 4), 1), ((2, 3, 4), 2), ((4, 5, 0, 1), 1), ((5, 0, 3), 2)], ids=str
)
def test_window_batch_takes_the_windows_rows_without_an_index_tensor(frames, chunks):
    """A context window's rows, repeated per chunk, taken as slices: an index tensor would be copied to the GPU
    at every model call, which waits for the work queued before it. One chunk of consecutive frames is a view."""
    t = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 2, 3, 3).contiguous()
    with _Ops() as ops:
        out = window_batch(t, frames, chunks)
    assert out[:, 0, 0, 0].tolist() == [float(f) for f in frames] * chunks
    assert not any("index" in n or "lift_fresh" in n or "_to_copy" in n for n in ops.names), ops.names
    assert (out.data_ptr() == t[frames[0]].data_ptr()) == (chunks == 1 and frames == tuple(range(frames[0], frames[-1] + 1)))


def test_window_batch_refuses_frames_outside_the_batch():
    with pytest.raises(HintError, match=r"a batch of 4 masks cannot follow this context window: it samples frames 2 to 5"):
        window_batch(torch.zeros(4, 1, 8, 8), (2, 3, 4, 5), 2, "masks")


def test_window_batch_refuses_a_window_of_no_frames():
    with pytest.raises(HintError, match="at least one frame"):
        window_batch(torch.zeros(4, 1, 8, 8), (), 2, "masks")


def test_fit_hint_refuses_other_ranks_and_empty_hints():
    with pytest.raises(HintError, match=r"a hint must be \(B, C, H, W\), got shape \(3, 8, 8\)"):
        fit_hint(torch.rand(3, 8, 8), 16, 16)
    for shape in [(0, 3, 8, 8), (1, 0, 8, 8), (1, 3, 0, 8), (1, 3, 8, 0)]:
        for size in (16, 8):  # resized, or already at the size
            with pytest.raises(HintError, match=r"the hint is empty \(shape"):
                fit_hint(torch.rand(shape), size, size)


def test_broadcast_batch_keeps_the_first_images_of_a_larger_batch():
    assert broadcast_batch(torch.arange(4), 4, 2).tolist() == [0, 1, 0, 1]
    assert broadcast_batch(torch.arange(5), 2, 1).tolist() == [0, 1]


def test_mask_already_at_the_residual_size_is_kept_as_it_is():
    m = torch.rand(2, 8, 12, dtype=torch.float16)
    out = mask_for(m, 8, 12)
    assert out.shape == (2, 1, 8, 12) and out.dtype == torch.float32
    assert torch.equal(out[:, 0], m.float())


@pytest.mark.parametrize(("target", "chunks"), [(5, 2), (4, 0), (4, -1)])
def test_broadcast_refuses_batches_that_do_not_split_into_chunks(target, chunks):
    with pytest.raises(HintError, match=rf"a batch of {target} cannot be split into {chunks} equal chunks"):
        broadcast_batch(torch.rand(3, 2), target, chunks)


def test_masks_are_area_averaged_when_any_side_shrinks_and_bilinear_only_when_both_grow():
    """A side equal to the target's and the other larger still averages (a region's share is kept); upsampling
    interpolates between pixel centres (align_corners False)."""
    m = torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])  # 1 x 6 -> 1 x 2: columns averaged in threes
    torch.testing.assert_close(mask_for(m, 1, 2).flatten(), torch.tensor([1 / 3, 0.0]))
    tall = torch.tensor([[[1.0], [0.0], [0.0]]]).expand(1, 3, 2)  # 3 x 2 -> 1 x 2: rows averaged
    torch.testing.assert_close(mask_for(tall, 1, 2).flatten(), torch.full((2,), 1 / 3))
    up = mask_for(torch.tensor([[[1.0, 0.0]]]), 1, 4).flatten().tolist()
    assert up == [1.0, 0.75, 0.25, 0.0]

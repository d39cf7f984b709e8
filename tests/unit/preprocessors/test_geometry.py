"""Resize modes (sizes and where the content lands) and pixel-perfect resolution."""

from __future__ import annotations

import pytest
import torch

from affordance.preprocessors import ParameterError, ResizeMode, pixel_perfect_resolution, resize_hint
from affordance.preprocessors.base import at_resolution, detection_size


def _marked(h: int, w: int) -> torch.Tensor:
    """Grey image with a white centre pixel block and a black 1 px frame."""
    x = torch.full((1, 3, h, w), 0.5)
    x[..., h // 2 - 2 : h // 2 + 2, w // 2 - 2 : w // 2 + 2] = 1.0
    x[..., 0, :] = x[..., -1, :] = 0.0
    x[..., :, 0] = x[..., :, -1] = 0.0
    return x


@pytest.mark.parametrize(("h", "w"), [(96, 64), (64, 96), (80, 80)], ids=["portrait", "landscape", "square"])
@pytest.mark.parametrize(("th", "tw"), [(64, 64), (64, 128), (128, 64)])
@pytest.mark.parametrize("mode", list(ResizeMode))
def test_sizes_and_centre(h, w, th, tw, mode):
    out = resize_hint(_marked(h, w), tw, th, mode)
    assert out.shape == (1, 3, th, tw)
    # The centre of the image lands in the centre of the target in every mode.
    assert out[0, 0, th // 2 - 1 : th // 2 + 1, tw // 2 - 1 : tw // 2 + 1].min() > 0.75


def test_just_resize_keeps_all_content_and_stretches():
    out = resize_hint(_marked(96, 64), 128, 64, "just_resize")
    assert out[0, 0, 0].max() < 0.3 and out[0, 0, :, 0].max() < 0.3  # the frame is still on every side


def test_crop_and_resize_crops_the_long_side():
    out = resize_hint(_marked(96, 64), 64, 64, "crop_and_resize")  # portrait into square: top/bottom cut
    assert out[0, 0, 0, 1:-1].min() > 0.4  # the top frame row was cropped away
    assert out[0, 0, :, 0].max() < 0.3  # the left frame is kept


def test_resize_and_fill_pads_with_border_median():
    x = _marked(64, 128)
    x[..., 0, :] = x[..., -1, :] = 0.25  # border: mostly 0.25, so its median is 0.25
    out = resize_hint(x, 64, 64, "resize_and_fill")  # landscape into square: bands above and below
    assert torch.allclose(out[0, :, 0], torch.full_like(out[0, :, 0], 0.25))
    assert torch.allclose(out[0, :, -1], torch.full_like(out[0, :, -1], 0.25))
    assert out[0, 0, 32, 32] > 0.75  # content in the middle


def test_binary_hints_stay_binary():
    x = (torch.rand(1, 3, 50, 70) > 0.5).float()
    for mode in ResizeMode:
        assert set(resize_hint(x, 123, 77, mode).unique().tolist()) <= {0.0, 1.0}


def test_pixel_perfect():
    assert pixel_perfect_resolution(480, 640, 512, 512) == 512
    assert pixel_perfect_resolution(480, 640, 512, 512, "resize_and_fill") == 384
    assert pixel_perfect_resolution(1024, 1024, 768, 512) == 768
    assert pixel_perfect_resolution(1024, 1024, 768, 512, "just_resize") == 768
    with pytest.raises(ParameterError, match="resize mode must be one of"):
        pixel_perfect_resolution(8, 8, 8, 8, "stretch")


def test_bad_target_size():
    with pytest.raises(ParameterError, match="width must be an integer between 8 and 16384, got 3"):
        resize_hint(torch.rand(1, 3, 16, 16), 3, 16, "just_resize")


def test_detection_size_short_side():
    assert detection_size(480, 640, 512) == (512, 683)
    assert detection_size(1024, 512, 256) == (512, 256)


def test_at_resolution_returns_input_size_and_pads_to_64():
    seen = []

    def fn(x):
        seen.append(tuple(x.shape[-2:]))
        return x[:, :1]

    out = at_resolution(torch.rand(2, 3, 300, 451), 200, fn)
    assert out.shape == (2, 3, 300, 451)
    assert seen == [(256, 320)]  # (200, 301) padded up to multiples of 64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", list(ResizeMode))
def test_half_precision_hints_resize_like_float32(dtype, mode):
    x = _marked(16, 24)
    ref = resize_hint(x, 64, 40, mode)
    out = resize_hint(x.to(dtype), 64, 40, mode)  # resize_and_fill's median raised a raw error here
    assert out.dtype == dtype and out.shape == ref.shape
    assert (out.float() - ref).abs().max() < 0.02


def test_crop_and_resize_of_extreme_aspect_crops_first():
    """An 8x8 image cropped to 16384x8 px would be scaled to 16384x16384 first (3 GB); the same centre is
    cropped in source pixels instead."""
    x = torch.rand(1, 3, 8, 8)
    out = resize_hint(x, 16384, 8, "crop_and_resize")
    assert out.shape == (1, 3, 8, 16384)
    # the kept source row band is the centre one (rows 3..4 of 8 at this scale): its colours, stretched
    centre = x[..., 4:5, :].mean(dim=(-2, -1))
    assert (out.mean(dim=(-2, -1)) - centre).abs().max() < 0.15
    # ordinary sizes keep A1111's order (scale, then crop): unchanged results
    y = torch.rand(1, 3, 48, 64)
    assert resize_hint(y, 64, 64, "crop_and_resize").shape == (1, 3, 64, 64)


def test_pixel_perfect_stays_within_what_a_resolution_input_takes():
    assert pixel_perfect_resolution(8, 8, 16384, 16384) == 4096
    assert pixel_perfect_resolution(8, 256, 16384, 8, "resize_and_fill") == 64
    assert pixel_perfect_resolution(64, 64, 64.0, 64.0) == 64  # whole floats are fine
    with pytest.raises(ParameterError, match="height must be an integer between 8 and 16384, got None"):
        pixel_perfect_resolution(64, 64, None, 64)


def test_detection_size_has_a_ceiling():
    from affordance.preprocessors import ImageInputError

    with pytest.raises(ImageInputError, match="above the 16384 px limit per side"):
        detection_size(8, 8192, 512)
    assert max(detection_size(8, 8192, 16)) == 16384

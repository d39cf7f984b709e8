"""Bad images and parameters get typed errors with the value and the fix; odd formats are converted."""

from __future__ import annotations

import pytest
import torch

from affordance.preprocessors import (
    GALLERY,
    MAX_SIDE,
    ImageInputError,
    ParameterError,
    binary,
    canny,
    check_image,
    inpaint,
    lineart_standard,
    scribble_xdog,
    tile,
)


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_every_preprocessor_converts_rgba_and_greyscale(name):
    fn = GALLERY[name]
    rgba = torch.rand(2, 4, 40, 56)
    grey = torch.rand(2, 1, 40, 56)
    assert fn(rgba, 64).shape == (2, 3, 40, 56)
    assert fn(grey, 64).shape == (2, 3, 40, 56)


def test_rgba_is_composited_over_white():
    """A cut-out (transparent surround whose hidden pixels are black) reads as paper, as the peers' HWC3 has it.

    Dropping the alpha made the surround black: a dark drawing on it turned into ink everywhere.
    """
    rgba = torch.zeros(1, 4, 64, 64)
    rgba[:, :3, 16:48, 16:48] = 1.0  # an opaque white card ...
    rgba[:, :3, 31:33, 20:44] = 0.0  # ... with a dark stroke on it
    rgba[:, 3, 16:48, 16:48] = 1.0
    rgba[:, 3, 0, 0] = 0.25  # a quarter-opaque black pixel
    rgb = check_image(rgba)
    assert rgb.shape == (1, 3, 64, 64)
    assert rgb[0, :, 0, 0].tolist() == [0.75] * 3 and rgb[0, :, 1, 1].tolist() == [1.0] * 3
    assert torch.equal(rgb[..., 16:48, 16:48], rgba[:, :3, 16:48, 16:48])
    assert torch.equal(check_image((rgba * 255).round().to(torch.uint8)), (rgb * 255).round() / 255)
    lines = binary(rgba, 100, 64)  # bright = white: the card and the paper around it, the stroke black
    assert lines.mean() > 0.98


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_every_preprocessor_rejects_tiny_images(name):
    with pytest.raises(ImageInputError, match="is 1x1 px; preprocessors need at least 8x8 px"):
        GALLERY[name](torch.rand(1, 3, 1, 1), 64)


def test_too_large():
    big = torch.empty(1, 3, 8, MAX_SIDE + 1, device="meta")
    with pytest.raises(ImageInputError, match=f"above the {MAX_SIDE} px limit"):
        check_image(big)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", sorted(GALLERY))
def test_every_preprocessor_rejects_nan_and_inf(name, bad):
    """NaN, +Inf and -Inf each (an Inf alone, without a NaN, too)."""
    x = torch.rand(1, 3, 32, 32)
    x[0, 1, 3, 4] = bad
    with pytest.raises(ImageInputError, match="contains NaN or Inf"):
        GALLERY[name](x, 64)


def test_empty_batch_and_bad_rank():
    with pytest.raises(ImageInputError, match="batch is empty"):
        canny(torch.rand(0, 3, 32, 32))
    with pytest.raises(ImageInputError, match=r"must be a batch of shape \(B, C, H, W\), got \(3, 32, 32\)"):
        canny(torch.rand(3, 32, 32))
    with pytest.raises(ImageInputError, match="has 2 channels"):
        canny(torch.rand(1, 2, 32, 32))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: binary(x, 300), "threshold must be between 0 and 255, got 300"),
        (lambda x: scribble_xdog(x, -1), "threshold must be between 0 and 255, got -1"),
        (lambda x: lineart_standard(x, sigma=0), "sigma must be between 0.1 and 100.0, got 0"),
        (lambda x: tile(x, 9), "pyrup_iters must be between 0 and 6, got 9"),
        (lambda x: tile(x, 1.5), "pyrup_iters must be an integer"),
        (lambda x: canny(x, resolution=4), "resolution must be an integer between 8 and 4096, got 4"),
    ],
)
def test_parameters_out_of_range(call, message):
    with pytest.raises((ParameterError, ImageInputError), match=message):
        call(torch.rand(1, 3, 32, 32))


def test_inpaint_mask_checks():
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ImageInputError, match=r"mask must be a non-empty \(B, H, W\) or \(H, W\)"):
        inpaint(x, torch.ones(1, 1, 1, 32, 32))
    with pytest.raises(ImageInputError, match=r"non-empty .*got shape \(1, 0, 5\)"):
        inpaint(x, torch.ones(1, 0, 5))
    with pytest.raises(ImageInputError, match="mask must be a tensor .*got list"):
        inpaint(x, [[1.0]])
    with pytest.raises(ImageInputError, match=r"a batch of 3 masks does not fit 2 image\(s\); use 1 mask or 2"):
        inpaint(x, torch.ones(3, 32, 32))
    assert inpaint(x, torch.zeros(32, 32)).shape == x.shape


def test_uint8_input_is_scaled():
    x = (torch.rand(1, 3, 32, 32) * 255).to(torch.uint8)
    assert check_image(x).max() <= 1.0


def test_odd_dtypes_are_taken_or_refused_and_float_values_kept():
    x = torch.rand(1, 3, 16, 16) * 3 - 1
    assert torch.equal(check_image(x), x)  # not clamped: the inpaint hint's -1 must survive Resize Hint
    assert torch.equal(check_image(torch.ones(1, 3, 16, 16, dtype=torch.bool)), torch.ones(1, 3, 16, 16))
    with pytest.raises(ImageInputError, match="holds int16 values; give a float image in \\[0, 1\\]"):
        check_image(torch.full((1, 3, 16, 16), 1000, dtype=torch.int16))  # was divided by 255: 3.9


@pytest.mark.parametrize("bad", [None, "100", True])
def test_non_numbers_are_parameter_errors(bad):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ParameterError, match="must be between 0 and 255, got"):
        canny(x, bad, 200, 64)
    with pytest.raises(ParameterError, match="resolution must be an integer"):
        canny(x, 100, 200, bad)


def test_extreme_aspect_is_refused_before_it_is_processed():
    x = torch.rand(1, 3, 8, 8192)
    with pytest.raises(ImageInputError, match=r"would be processed at 524288x512 px, above the 16384 px limit.*Crop the image"):
        canny(x, 100, 200, 512)
    assert canny(x, 100, 200, 16).shape == x.shape
    with pytest.raises(ImageInputError, match="Lower the resolution to at most 128, or crop"):
        canny(torch.rand(1, 3, 64, 8192), 100, 200, 512)  # 128 fits exactly: 128 x 16384


@pytest.mark.parametrize("mode", ["just_resize", "crop_and_resize", "resize_and_fill"])
def test_inpaint_hint_keeps_its_marks_through_resize(mode):
    from affordance.preprocessors import resize_hint

    x = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1.0
    out = resize_hint(inpaint(x, mask), 128, 128, mode)
    assert out.min() == -1.0 and (out == -1.0).float().mean() > 0.1


def test_numpy_numbers_are_numbers_and_non_finite_ones_parameter_errors():
    import numpy as np

    from affordance.preprocessors import pixel_perfect_resolution
    from affordance.preprocessors.base import check_resolution

    x = torch.rand(1, 3, 32, 32)
    assert canny(x, np.int64(100), np.int64(200), np.int64(64)).shape == x.shape
    for bad in (float("inf"), float("nan"), np.float32("nan")):
        with pytest.raises(ParameterError, match="resolution must be an integer"):
            check_resolution(bad)
        with pytest.raises((ParameterError, ImageInputError)):
            pixel_perfect_resolution(bad, 64, 512, 512)
        with pytest.raises(ParameterError, match="height must be an integer"):
            pixel_perfect_resolution(64, 64, bad, 512)


def test_messages_quote_up_to_80_characters_whole_and_cut_longer_text():
    """The preprocessors' own copy of the clipping rule (the layers share no code): 80 characters whole, 81 cut
    to the first 60 and the last 16 around '...'."""
    from affordance.preprocessors.base import clip, shown

    assert clip("x" * 80) == "x" * 80
    assert clip("a" * 60 + "m" * 5 + "z" * 16) == "a" * 60 + "..." + "z" * 16
    assert shown("y" * 78) == repr("y" * 78)  # 80 with its quotes
    assert shown("y" * 79).startswith("'yyy") and "..." in shown("y" * 79)


def _learned(name: str):
    """``image -> hint`` of one learned preprocessor (the main job's gallery entry) with seeded random networks (CPU,
    detection at 64 px)."""
    from affordance.preprocessors.networks import LEARNED_GALLERY, NETWORK_FOR_FILE

    files, run = LEARNED_GALLERY[name]
    torch.manual_seed(0)
    nets = [NETWORK_FOR_FILE[f]().eval() for f in files]
    return lambda x: run(x, nets, 64)


LEARNED = ("hed", "fake_scribble", "pidinet", "mlsd", "lineart", "lineart_anime", "midas_depth", "midas_normal", "normalbae", "openpose")


@pytest.mark.parametrize("name", LEARNED)
def test_every_learned_preprocessor_takes_odd_formats_and_refuses_nan(name):
    """Like the others: RGBA (opaque), greyscale and 8-bit levels give what the same RGB float image gives, and a NaN
    is a typed ImageInputError (the networks would have raised their own errors, or drawn from NaN)."""
    run = _learned(name)
    g = torch.Generator().manual_seed(1)
    levels = torch.randint(0, 256, (1, 3, 40, 48), generator=g, dtype=torch.uint8)
    rgb = levels.float() / 255.0
    with torch.no_grad():
        expected = run(rgb)
        assert torch.equal(run(torch.cat([rgb, torch.ones_like(rgb[:, :1])], 1)), expected)  # RGBA, opaque
        assert torch.equal(run(levels), expected)  # uint8
        grey = rgb[:, :1]
        assert torch.equal(run(grey), run(grey.expand(-1, 3, -1, -1)))
        bad = rgb.clone()
        bad[0, 1, 3, 4] = float("nan")
        with pytest.raises(ImageInputError, match="NaN or Inf"):
            run(bad)

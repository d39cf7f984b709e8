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


def _label_map(h_blocks: int, w_blocks: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A segmentation-like map: 4 colours on the 8-bit grid in 8 px blocks, ``(1, 3, 8 h_blocks, 8 w_blocks)``."""
    palette = torch.tensor([[0.47, 0.47, 0.47], [0.71, 0.47, 0.0], [0.02, 0.9, 0.55], [0.8, 0.1, 0.3]])
    labels = torch.randint(0, 4, (1, h_blocks, w_blocks), generator=torch.Generator().manual_seed(1))
    labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
    return ((palette[labels].permute(0, 3, 1, 2) * 255).round() / 255).to(dtype)


def _colours(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(c) for c in x[0].flatten(1).T.tolist()}


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


def _grid_lines(size: int, every: int) -> torch.Tensor:
    """White one-pixel lines on black, every ``every`` px in both directions: an edge hint."""
    x = torch.zeros(1, 3, size, size)
    x[..., ::every, :] = 1.0
    x[..., :, ::every] = 1.0
    return x


@pytest.mark.parametrize("target", [384, 512, 700])
def test_thin_lines_survive_a_binary_resize(target):
    """Nearest neighbour dropped about half the one-pixel lines of an edge hint shrunk 1024 -> 384 or 512.

    Every line must still be there (shrinking: any ink in a cell is ink) and the result stays binary.
    """
    x = _grid_lines(1024, 37)
    out = resize_hint(x, target, target, "just_resize")
    assert ((out == 0) | (out == 1)).all()
    k = target / 1024
    for i in range(0, 1024, 37):
        row = min(target - 1, int(i * k))
        assert out[0, 0, row].mean() > 0.9, f"line at {i} lost"  # a horizontal line is (nearly) all ink


def test_each_image_of_a_batch_is_resized_on_its_own():
    """An edge hint batched with a photo was resized like a photo (bicubic, no longer binary), and the photo
    was clamped to the batch's range instead of its own."""
    edges = _grid_lines(96, 9)
    photo = 0.25 + 0.5 * torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    for mode in ResizeMode:
        both = resize_hint(torch.cat([edges, photo]), 200, 136, mode)
        assert torch.equal(both[:1], resize_hint(edges, 200, 136, mode))
        assert torch.equal(both[1:], resize_hint(photo, 200, 136, mode))
        assert ((both[:1] == 0) | (both[:1] == 1)).all()
        assert 0.25 <= both[1:].min() and both[1:].max() <= 0.75


def test_inpaint_marks_stay_whole():
    """Masked pixels (-1) are resized as a mask: no value strictly between -1 and 0 comes out (a smeared -1
    reads as a partly masked or darkened pixel), and the unmasked picture is not darkened at the mask's edge."""
    x = torch.full((1, 3, 64, 64), 0.6)
    x[..., 20:44, 16:40] = -1.0
    for mode in ResizeMode:
        for w, h in ((200, 136), (40, 24), (64, 96)):
            out = resize_hint(x, w, h, mode)
            masked = out < 0
            assert (out[masked] == -1).all() and masked.any()
            assert torch.allclose(out[~masked], torch.tensor(0.6), atol=1e-5)
            assert (masked == masked[:, :1]).all()  # the same pixels in every channel


def test_label_maps_keep_their_colours():
    """A segmentation-like map (a few flat colours) is resized with nearest neighbour, as sd-webui-controlnet
    does: smooth resizing invented in-between colours that a seg ControlNet reads as other classes."""
    x = _label_map(12, 16)  # 96 x 128 px of 8 px blocks
    for w, h in ((200, 150), (50, 37)):
        assert _colours(resize_hint(x, w, h, "just_resize")) <= _colours(x)
    # a photo (many colours) and a grey depth map with few levels are still resized smoothly
    depth = (torch.arange(96 * 128).view(1, 1, 96, 128) % 50 / 255.0).expand(1, 3, -1, -1)
    assert len(set(resize_hint(depth, 200, 150, "just_resize")[0, 0].flatten().tolist())) > 50


def test_zero_or_missing_size_is_a_typed_error():
    for w, h in ((0, 64), (64, 0), (-8, 64)):
        with pytest.raises(ParameterError, match="must be an integer between 8 and 16384"):
            resize_hint(torch.rand(1, 3, 16, 16), w, h)


def test_overshoot_below_zero_is_a_picture_not_a_mask():
    """ComfyUI's bicubic 'Upscale Image' does not clamp: an upscaled hint has values a little below 0. They were
    taken for inpaint marks and came out as -1 holes (20 % of an edge hint)."""
    edges = _grid_lines(64, 9)
    up = torch.nn.functional.interpolate(edges, size=(80, 80), mode="bicubic", align_corners=False)
    assert up.min() < -0.05
    for mode in ResizeMode:
        out = resize_hint(up, 128, 128, mode)
        assert not (out == -1).any() and out.min() >= up.min() - 1e-6


def test_black_ink_survives_a_shrink():
    """A black one-pixel drawing on white (lineart before Invert Hint): the 'any ink' rule took white as the ink
    and every black line vanished."""
    x = 1 - _grid_lines(1024, 37)
    for target in (512, 768, 1000):
        out = resize_hint(x, target, target, "just_resize")
        assert ((out == 0) | (out == 1)).all()
        k = target / 1024
        for i in range(0, 1024, 37):
            assert out[0, 0, min(target - 1, int(i * k))].mean() < 0.1, (target, i)


def test_binary_lines_survive_when_one_axis_shrinks_and_the_other_grows():
    """Bicubic (used when any axis grows) does not average areas: half the lines of the shrinking axis were lost."""
    x = torch.zeros(1, 3, 2048, 512)
    x[..., ::37, :] = 1.0  # horizontal lines, along the axis that shrinks 4x
    out = resize_hint(x, 1024, 512, "just_resize")  # width grows 2x
    rows = out[0, 0].mean(dim=1)
    assert ((out == 0) | (out == 1)).all()
    assert int((rows > 0.9).sum()) >= len(range(0, 2048, 37))


def test_rgba_alpha_overshoot_is_clamped():
    """An alpha of 1.02 over black composited to -0.02, which then read as an inpaint mark."""
    from affordance.preprocessors import check_image

    rgba = torch.zeros(1, 4, 16, 16)
    rgba[:, 3] = 1.02
    assert check_image(rgba).min() == 0
    assert not (resize_hint(rgba, 32, 32, "just_resize") == -1).any()


def test_resize_and_fill_margins_of_binary_and_inpaint_hints():
    """The border median of a half-white binary hint was 0.5 (no longer binary), and of a half-masked inpaint
    hint -0.1 (neither masked nor a colour). Binary margins snap to black/white; inpaint margins are masked."""
    binary = torch.zeros(1, 3, 64, 32)
    binary[..., :, 16:] = 1.0
    out = resize_hint(binary, 128, 128, "resize_and_fill")
    assert ((out == 0) | (out == 1)).all()
    hint = torch.full((1, 3, 64, 32), 0.4)
    hint[..., :, :16] = -1.0
    out = resize_hint(hint, 128, 128, "resize_and_fill")
    assert (out[..., :, :32] == -1).all() and (out[..., :, -32:] == -1).all()  # the margins, left and right
    assert ((out == -1) | ((out - 0.4).abs() < 1e-5)).all()


def test_palette_colours_are_counted_over_the_whole_image(monkeypatch):
    """Colours are counted in chunks (memory of a chunk whatever the size): chunks that each hold few colours
    but many together are not a palette."""
    from affordance.preprocessors import geometry

    monkeypatch.setattr(geometry, "_COUNT_CHUNK", 64)
    monkeypatch.setattr(geometry, "_PALETTE_SAMPLE", 1 << 30)
    colours = torch.rand(300, 3, generator=torch.Generator().manual_seed(2)).mul(255).round().div(255)
    few = colours[torch.arange(32 * 32) % 150].T.reshape(1, 3, 32, 32)
    many = colours[torch.arange(32 * 32) * 300 // 1024].T.reshape(1, 3, 32, 32)  # 64-px chunks of <= 19 colours
    assert geometry._is_palette(few) and not geometry._is_palette(many)


@pytest.fixture
def resize_sizes(monkeypatch) -> list[tuple[int, int]]:
    """The ``(height, width)`` of every resize step resize_hint makes, in order (the steps still run)."""
    import affordance.preprocessors.geometry as geometry

    sizes: list[tuple[int, int]] = []
    real = geometry._resize
    monkeypatch.setattr(geometry, "_resize", lambda x, h, w, *a, **k: sizes.append((h, w)) or real(x, h, w, *a, **k))
    return sizes


def test_crop_first_never_builds_the_large_intermediate(resize_sizes):
    """The crop-first path is what keeps memory bounded: no resize step makes anything near 16384x16384."""
    sizes = resize_sizes
    resize_hint(torch.rand(1, 3, 8, 8), 16384, 8, "crop_and_resize")
    assert sizes == [(8, 16384)]


def test_resize_and_fill_uses_the_border_median_of_every_channel():
    """The margin is the median of the border pixels per channel: of an even count (2W + 2H, corners counted
    twice), the mean of the middle two, as numpy's median."""
    x = torch.full((1, 3, 8, 16), 0.9)
    x[0, 0, 0, :], x[0, 0, -1, :] = 0.1, 0.4  # sorted border: 0.1 x18, 0.2 x6, 0.3 x6, 0.4 x18
    x[0, 0, 1:-1, 0], x[0, 0, 1:-1, -1] = 0.2, 0.3
    x[0, 1] = 0.6
    out = resize_hint(x, 16, 16, "resize_and_fill")
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.25, 0.6, 0.9]))


@pytest.mark.parametrize(("height", "width"), [(0, 640), (480, 0), (0.5, 640), (480, 0.99)])
def test_pixel_perfect_needs_at_least_one_pixel_per_side(height, width):
    from affordance.preprocessors import ImageInputError

    with pytest.raises(ImageInputError, match="pixel perfect needs a non-empty image"):
        pixel_perfect_resolution(height, width, 512, 512)
    assert pixel_perfect_resolution(1, 1, 512, 512) == 512  # one pixel is an image


def test_a_tie_on_the_border_of_a_binary_hint_fills_black():
    """resize_and_fill pads a black/white hint with its border's median: a border half white, half black is black."""
    x = torch.zeros(1, 3, 8, 16)
    x[..., :4, :] = 1.0  # the top half white: its left and right borders are half white
    out = resize_hint(x, 64, 64, "resize_and_fill")
    assert float(out[0, :, 0, 0].max()) == 0.0 and float(out[0, :, -1, -1].max()) == 0.0
    x = torch.ones(1, 3, 8, 16)
    x[..., 3:5, 6:10] = 0.0  # black ink inside a white border: the margins are white
    out = resize_hint(x, 64, 64, "resize_and_fill")
    assert float(out[0, :, 0, 0].min()) == 1.0 and float(out[0, :, -1, -1].min()) == 1.0


def test_an_inpaint_hints_picture_is_resized_not_flattened():
    """The unmasked picture keeps its values through the resize (clamped to its own range only): a ramp stays a
    ramp. A flat 0.6 picture (test_inpaint_marks_stay_whole) cannot tell a clamp to [1, max] from one to [0, max]."""
    x = torch.linspace(0.1, 0.9, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).clone()
    x[..., 20:44, 16:40] = -1.0
    for mode in ResizeMode:
        for w, h in ((128, 128), (32, 32)):
            kept = resize_hint(x, w, h, mode)
            kept = kept[kept >= 0]
            assert kept.numel() and kept.min() < 0.3 and kept.max() > 0.7
            assert kept.max() <= 0.9 + 1e-6


def test_a_label_map_larger_than_the_colour_sample_keeps_its_colours(monkeypatch):
    """Over _PALETTE_SAMPLE pixels (2**20) the colours are counted on a sample first, then on the whole image: a
    label map of that size (a 1536 x 1536 segmentation map) is still resized with nearest neighbour."""
    from affordance.preprocessors import geometry

    x = _label_map(192, 192)  # 1536 x 1536 px
    assert _colours(resize_hint(x, 600, 480, "just_resize")) <= _colours(x)
    monkeypatch.setattr(geometry, "_PALETTE_SAMPLE", 1024)  # a small map takes the sampled branch too
    small = _label_map(12, 16)
    assert geometry._is_palette(small)
    assert _colours(resize_hint(small, 200, 150, "just_resize")) <= _colours(small)


def test_the_8bit_grid_tolerance_follows_the_dtype():
    """Half precision cannot hold the 8-bit levels exactly: a half label map is still a label map. In float32 a
    picture whose values lie between the levels is a picture, resized smoothly, even with few levels."""
    half = _label_map(12, 16, torch.float16)
    out = resize_hint(half, 200, 150, "just_resize")
    assert out.dtype == torch.float16 and _colours(out) <= _colours(half)
    r = torch.linspace(0.30, 0.36, 64).view(1, 1, 1, 64).expand(1, 1, 32, 64)  # about 16 levels, between them
    ramp = torch.cat([r, torch.full_like(r, 0.5), torch.full_like(r, 0.2)], dim=1).contiguous()
    assert (ramp * 255 - (ramp * 255).round()).abs().max() > 0.1
    out = resize_hint(ramp, 256, 32, "just_resize")
    assert len(set(out[0, 0, 0].tolist())) > len(set(ramp[0, 0, 0].tolist()))  # smooth: in-between values


def test_palette_colours_differ_in_every_channel_and_the_limit_is_inclusive():
    """Colours that differ only in red are different colours (256 reds are a picture, resized smoothly), and a map
    of exactly PALETTE_MAX_COLOURS colours is a palette, one more is not."""
    from affordance.preprocessors import geometry

    r = (torch.arange(256.0) / 255).view(1, 1, 1, 256).expand(1, 1, 8, 256)
    reds = torch.cat([r, torch.full_like(r, 51 / 255), torch.full_like(r, 153 / 255)], dim=1).contiguous()
    assert not geometry._is_palette(reds)
    assert set(resize_hint(reds, 1024, 8, "just_resize")[0, 0, 0].tolist()) - set(reds[0, 0, 0].tolist())
    n = geometry.PALETTE_MAX_COLOURS
    codes = torch.randperm(1 << 24, generator=torch.Generator().manual_seed(3))[: n + 1]  # distinct 24-bit colours
    rgb = torch.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], 1).float() / 255
    assert geometry._is_palette(rgb[torch.arange(32 * 32) % n].T.reshape(1, 3, 32, 32))
    assert not geometry._is_palette(rgb[torch.arange(32 * 32) % (n + 1)].T.reshape(1, 3, 32, 32))


def test_an_inpaint_hint_needs_whole_marks_and_nothing_else_negative():
    """-1 in every channel of a pixel is a mark; a -1 in one channel only, or other negative values beside a whole
    mark (an unclamped upscale's overshoot), make the image a picture."""
    from affordance.preprocessors import geometry

    mark = torch.full((1, 3, 16, 16), 0.5)
    mark[..., 4:8, 4:8] = -1.0
    assert geometry._is_inpaint_hint(mark)
    one_channel = torch.full((1, 3, 16, 16), 0.5)
    one_channel[:, 0, 4:8, 4:8] = -1.0
    assert not geometry._is_inpaint_hint(one_channel)
    overshoot = mark.clone()
    overshoot[..., 10, 10] = -0.2
    assert not geometry._is_inpaint_hint(overshoot)


def test_an_enlarged_binary_hint_keeps_its_ink_in_proportion():
    """Enlarging a black/white hint scales its ink with it (thresholded at half after bicubic): an 8 px block
    becomes about 16 px wide at 2x, a one-pixel line about two pixels thick."""
    x = torch.zeros(1, 3, 32, 32)
    x[..., 8:16, 8:16] = 1.0
    x[..., 24, 4:28] = 1.0
    out = resize_hint(x, 64, 64, "just_resize")
    assert ((out == 0) | (out == 1)).all()
    assert abs(out[0, 0, 12:36, 12:36].sum().item() - 256) <= 32  # 4x the block's 64 px
    assert (out[0, 0, 44:56, 20:40] > 0).any(dim=1).sum().item() >= 2


def test_an_image_at_the_detection_size_is_returned_itself():
    """Nothing to resize: the image itself, unclamped (clamping it would change the caller's tensor in place)."""
    from affordance.preprocessors.base import to_detection_size

    x = torch.rand(2, 3, 64, 96) * 1.2 - 0.1
    before = x.clone()
    assert detection_size(64, 96, 64) == (64, 96)
    assert to_detection_size(x, 64) is x and torch.equal(x, before)
    assert to_detection_size(x, 128).shape == (2, 3, 128, 192)


def test_a_binary_hint_detected_below_the_image_size_keeps_its_ink_in_proportion():
    """Detected at half the image's size and enlarged back: thresholded at half, the ink keeps its area (x4)."""

    def one_block(x: torch.Tensor) -> torch.Tensor:  # an 8x8 block at the 64x64 detection size
        y = torch.zeros_like(x)
        y[..., 8:16, 8:16] = 1.0
        return y

    out = at_resolution(torch.rand(1, 3, 128, 128), 64, one_block, pad=False, binary=True)
    assert out.shape == (1, 3, 128, 128) and ((out == 0) | (out == 1)).all()
    assert abs(out[0, 0].sum().item() - 256) <= 32


def test_an_inpaint_hint_with_black_pixels_is_still_an_inpaint_hint():
    """A picture's black pixels (0, as in a letterboxed photo) are not negative: beside whole -1 marks the image
    is still an inpaint hint, and its marks stay whole through a resize."""
    from affordance.preprocessors import geometry

    x = torch.full((1, 3, 64, 64), 0.5)
    x[..., :8, :] = 0.0  # a black band
    x[..., 20:44, 16:40] = -1.0
    assert geometry._is_inpaint_hint(x)
    out = resize_hint(x, 40, 24, "just_resize")
    assert (out[out < 0] == -1).all() and (out < 0).any()


def test_an_inpaint_mark_takes_only_the_pixels_it_mostly_covers():
    """An output pixel is masked when less than half of the area it covers is picture: halving a mark with odd
    edges gives its half-covered edge pixels to the picture (the mark neither grows nor smears), and a pixel
    three-quarters masked is masked."""
    x = torch.full((1, 3, 64, 64), 0.6)
    x[..., 21:43, 21:43] = -1.0  # rows and columns 21..42
    half = resize_hint(x, 32, 32, "just_resize")[0, 0] < 0  # 10.5 .. 21.5: 11..20 whole, 10 and 21 half
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[11:21, 11:21] = True
    assert torch.equal(half, expected)
    quarter = resize_hint(x, 16, 16, "just_resize")[0, 0] < 0  # 5.25 .. 10.75: 5 and 10 three-quarters masked
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[5:11, 5:11] = True
    assert torch.equal(quarter, expected)


def test_crop_and_resize_crops_first_beyond_16_times_the_output(monkeypatch, resize_sizes):
    """The whole image is scaled first (A1111's order) unless that picture would hold more than 16 times the
    output's pixels (and more than CROP_FIRST_PIXELS, lowered here so that small sizes show the rule)."""
    import affordance.preprocessors.geometry as geometry

    monkeypatch.setattr(geometry, "CROP_FIRST_PIXELS", 1 << 10)
    sizes = resize_sizes
    resize_hint(torch.rand(1, 3, 8, 8), 8, 128, "crop_and_resize")  # 128x128 scaled: exactly 16 x 128x8
    assert sizes == [(128, 128)]
    sizes.clear()
    resize_hint(torch.rand(1, 3, 8, 8), 8, 129, "crop_and_resize")  # 129x129 = 16641 > 16 x 129x8 = 16512
    assert sizes == [(129, 8)]


def test_resize_and_fill_keeps_a_thin_strip_one_pixel_thick():
    """An image far thinner than the output (8x4096 into 8x8: 0.016 px at scale) still shows, as one row (or
    column) across the middle; the rest is margin."""
    x = torch.full((1, 3, 8, 4096), 0.9)
    x[..., 0, :] = x[..., -1, :] = 0.2  # the border (its median fills the margins)
    for image, flip in ((x, False), (x.transpose(-1, -2), True)):
        out = resize_hint(image, 8, 8, "resize_and_fill")[0, 0]
        out = out.T if flip else out
        assert torch.equal(out[[0, 1, 2, 4, 5, 6, 7]], torch.full((7, 8), 0.2))
        assert (out[3] > 0.5).all()


def test_an_image_enlarged_to_the_detection_size_stays_within_0_and_1():
    """Bicubic enlarging overshoots at sharp edges (a black/white step here, to about 1.1); the annotators get the
    image clamped back to [0, 1], as a photo's range."""
    from affordance.preprocessors.base import to_detection_size

    x = torch.zeros(1, 3, 16, 16)
    x[..., :, 8:] = 1.0
    out = to_detection_size(x, 64)
    assert out.shape == (1, 3, 64, 64)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0

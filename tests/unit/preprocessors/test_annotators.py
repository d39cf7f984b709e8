"""Each weight-free annotator against the formula of its source, on real photographs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from affordance.preprocessors import (
    ParameterError,
    binary,
    inpaint,
    lineart_standard,
    luminance,
    scribble,
    scribble_xdog,
    shuffle,
    tile,
)
from affordance.preprocessors.color import color_core, lab_lightness_levels, noise_disk, remap, tile_core
from affordance.preprocessors.lines import (
    binary_levels,
    grey_levels,
    lineart_standard_levels,
    otsu_thresholds,
    scribble_levels,
    xdog_levels,
)


def test_scribble_formula(photo, levels):
    ref = np.min(photo, axis=2) < 127
    assert np.array_equal(scribble_levels(levels(photo))[0, 0].numpy() > 0, ref)


def test_xdog_formula(photo, levels):
    x = photo.astype(np.float32)
    g1, g2 = cv2.GaussianBlur(x, (0, 0), 0.5), cv2.GaussianBlur(x, (0, 0), 5.0)
    dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
    ref = 2 * (255 - dog.astype(np.int32)) > 32
    got = xdog_levels(levels(photo), 32)[0, 0].numpy() > 0
    assert (ref == got).mean() >= 0.9999  # float rounding at exact level boundaries only


def test_grey_equals_opencv(photo, levels):
    ref = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    assert np.array_equal(grey_levels(levels(photo))[0, 0].numpy().astype(np.uint8), ref)


def test_otsu_equals_opencv(photo, levels):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    t, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert otsu_thresholds(grey_levels(levels(photo))).item() == t


def test_otsu_equals_opencv_on_flat_and_few_level_images():
    """Where Otsu has little to choose from: flat images (no threshold splits them), two levels, one pixel off,
    and small images of 1-4 random levels (seeded)."""
    rng = np.random.default_rng(0)
    cases = [np.full((16, 16), v, np.uint8) for v in (0, 1, 128, 254, 255)]
    cases.append(np.repeat(np.array([[0, 255]], np.uint8), 8, axis=1).repeat(16, axis=0))
    one_off = np.full((16, 16), 40, np.uint8)
    one_off[0, 0] = 41
    cases.append(one_off)
    for _ in range(150):
        values = rng.choice(256, int(rng.integers(1, 5)), replace=False)
        cases.append(rng.choice(values, (int(rng.integers(1, 9)), int(rng.integers(1, 9)))).astype(np.uint8))
    want = [cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0] for g in cases]
    got = [otsu_thresholds(torch.from_numpy(g).float()[None, None]).item() for g in cases]
    assert got == want


@pytest.mark.parametrize("threshold", [0, 100, 200, 255])
def test_binary_formula(photo, levels, threshold):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    flags = cv2.THRESH_BINARY_INV + (cv2.THRESH_OTSU if threshold in (0, 255) else 0)
    _, inv = cv2.threshold(grey, 0 if threshold in (0, 255) else threshold, 255, flags)
    ref = (255 - inv) > 0  # the reference inverts twice: bright areas white
    assert np.array_equal(binary_levels(levels(photo), threshold)[0, 0].numpy() > 0, ref)


@pytest.mark.parametrize("faint", [False, True])
def test_lineart_standard_formula(photo, levels, faint):
    """The reference recipe; ``faint``: the photo squeezed into 8 levels, where no line is stronger than 8 and
    the reference's median of nothing (NaN) leaves the divisor at 16."""
    if faint:
        photo = (photo.astype(np.float32) * (8 / 255) + 100).round().astype(np.uint8)
    x = photo.astype(np.float32)
    g = cv2.GaussianBlur(x, (0, 0), 6.0)
    v = np.min(g - x, axis=2).clip(0, 255)
    strong = v[v > 8]
    assert (strong.size == 0) == faint
    v /= max(16, np.median(strong)) if strong.size else 16  # max(16, nan) is 16 (the reference warns)
    ref = (v * 127).clip(0, 255).astype(np.uint8).astype(np.int32)
    assert ref.max() > 0
    got = (lineart_standard_levels(levels(photo), 6.0, 8.0)[0, 0] * 255).round().numpy().astype(np.int32)
    assert np.abs(ref - got).max() <= 1  # float32 blur rounding, at most one level
    assert (ref == got).mean() >= 0.999


def test_lineart_standard_defaults_are_the_reference_recipe(astronaut, tensor):
    """Called with its defaults, lineart_standard is the recipe checked above (sigma 6, intensity 8 = x127)."""
    image = tensor(astronaut[:96, :128])
    assert torch.equal(lineart_standard(image, resolution=64), lineart_standard(image, 6.0, 8.0, 64))


def test_lineart_intensity_scales(photo, levels):
    a = lineart_standard_levels(levels(photo), 6.0, 8.0)
    b = lineart_standard_levels(levels(photo), 6.0, 4.0)
    assert torch.all(b <= a) and b.sum() < a.sum()


def test_luminance_matches_opencv_lab(photo, levels):
    ref = cv2.cvtColor(photo, cv2.COLOR_BGR2LAB)[:, :, 0].astype(np.int32)  # the reference's BGR quirk
    got = lab_lightness_levels(levels(photo))[0, 0].numpy().astype(np.int32)
    assert np.abs(ref - got).max() <= 1  # OpenCV's 8-bit Lab uses lookup tables


def test_luminance_gamma(astronaut, tensor):
    x = tensor(astronaut)
    one, two = luminance(x, 1.0, 512), luminance(x, 2.0, 512)
    torch.testing.assert_close(two, (one**2 * 255).floor() / 255, atol=2 / 255, rtol=0)
    assert torch.equal(one[:, 0], one[:, 1])  # grey


def test_luminance_is_opencvs_lab_lightness(astronaut, tensor):
    """At gamma 1 and the image's own size the hint is L of OpenCV's BGR->Lab (of the RGB image) / 255, as grey;
    black stays exactly 0 and white exactly 1."""
    img = astronaut.copy()
    img[:8] = 0  # a black band
    img[-8:] = 255  # and a white one
    ref = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)[:, :, 0].astype(np.float32) / 255.0
    got = luminance(tensor(img), 1.0, 512)[0]
    assert got.shape == (3, 512, 512) and torch.equal(got[0], got[2])
    assert np.abs(got[0].numpy() - ref).max() <= 1.01 / 255  # OpenCV's 8-bit Lab uses lookup tables
    assert float(got[:, :8].max()) == 0.0 and float(got[:, -8:].min()) == 1.0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_tile_formula(photo, k):
    im = photo.astype(np.float32) / 255
    h, w = (int(np.round(s / 64)) * 64 for s in im.shape[:2])
    # INTER_AREA, as comfyui_controlnet_aux's TileDetector and sd-webui-controlnet's tile_resample shrink
    ref = cv2.resize(im, (w // 2**k, h // 2**k), interpolation=cv2.INTER_AREA)
    for _ in range(k):
        ref = cv2.pyrUp(ref)
    got = tile_core(torch.from_numpy(im).permute(2, 0, 1)[None], k)[0].permute(1, 2, 0).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=5e-5)  # OpenCV's float resize rounding


def test_tile_keeps_fine_texture_as_the_peers_do():
    """A bilinear shrink by 8 samples one pixel in 8: a 1-px checkerboard came out black or white in stripes.

    Averaging areas (the peers' INTER_AREA) gives the mean grey everywhere away from the border.
    """
    board = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)
    x = torch.from_numpy(np.stack([board] * 3)).float()[None] / 255
    out = tile(x, 3, 256)
    inner = out[..., 32:-32, 32:-32]
    assert (inner - 0.5).abs().max() <= 1 / 255


def test_color_formula(photo):
    im = photo.astype(np.float32) / 255
    h, w = im.shape[:2]
    small = cv2.resize(im, (w // 64, h // 64), interpolation=cv2.INTER_CUBIC)
    ref = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    got = color_core(torch.from_numpy(im).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_remap_equals_opencv():
    """The GPU path of Content Shuffle (the CPU path calls cv2.remap): exact bilinear sampling, as OpenCV 5 does.
    OpenCV 4 rounds the bilinear weights to steps of 1/32 (its INTER_TAB_SIZE), which moves a value in [0, 1] by
    less than 1/32."""
    rng = np.random.default_rng(0)
    img = rng.random((40, 50, 3)).astype(np.float32)
    mx = (rng.random((40, 50)) * 49).astype(np.float32)
    my = (rng.random((40, 50)) * 39).astype(np.float32)
    got = remap(
        torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(mx)[None, None], torch.from_numpy(my)[None, None]
    )[0].permute(1, 2, 0).numpy()
    x0, y0 = np.floor(mx).astype(int), np.floor(my).astype(int)
    fx, fy = (mx - x0)[..., None], (my - y0)[..., None]
    x1, y1 = np.minimum(x0 + 1, 49), np.minimum(y0 + 1, 39)
    exact = (img[y0, x0] * (1 - fx) + img[y0, x1] * fx) * (1 - fy) + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy
    np.testing.assert_allclose(got, exact, atol=1e-5)
    ref = cv2.remap(img, mx, my, cv2.INTER_LINEAR)
    np.testing.assert_allclose(got, ref, atol=1e-5 if int(cv2.__version__.split(".")[0]) >= 5 else 1 / 32)


def test_noise_disk_spans_unit_interval():
    n = noise_disk(3, 300, 500, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert n.shape == (3, 1, 300, 500)
    assert torch.allclose(n.amin(dim=(2, 3)), torch.zeros(3, 1)) and torch.allclose(
        n.amax(dim=(2, 3)), torch.ones(3, 1)
    )


def test_shuffle_is_seeded_and_one_warp_per_batch(astronaut, tensor):
    """Each image used to get its own warp, fixed by its index: the same frame came out differently at each
    position of a batch (and a video flickered). Now an image's hint is the one it gets alone."""
    x = tensor(astronaut)
    pair = torch.cat([x, x.flip(-1)])
    a, b, c = shuffle(pair, 7), shuffle(pair, 7), shuffle(pair, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == pair.shape
    assert torch.equal(a[:1], shuffle(x, 7)) and torch.equal(a[1:], shuffle(x.flip(-1), 7))
    same = shuffle(x.repeat(3, 1, 1, 1), 7)
    assert torch.equal(same[0], same[1]) and torch.equal(same[1], same[2])
    with pytest.raises(ParameterError, match="seed must be a whole number from 0 to 2\\*\\*64 - 1, got -1"):
        shuffle(x, -1)


def test_inpaint_marks_masked_pixels(astronaut, tensor):
    x = tensor(astronaut[:64, :96])
    mask = torch.zeros(1, 32, 48)
    mask[:, :16] = 1.0  # top half, given at half resolution
    out = inpaint(x, mask)
    assert torch.all(out[..., :30, :] == -1) and torch.equal(out[..., 34:, :], x[..., 34:, :])


def test_binary_and_scribble_outputs_are_binary(astronaut, tensor):
    x = tensor(astronaut)
    for out in (binary(x, 100, 256), scribble(x, 256), scribble_xdog(x, 32, 256)):
        assert out.shape == x.shape and set(out.unique().tolist()) <= {0.0, 1.0}


def test_batch_processing_equals_one_by_one(photo, tensor):
    x = tensor(photo)
    flipped = x.flip(-1)
    batch = torch.cat([x, flipped])
    for fn in (lambda t: lineart_standard(t, 6.0, 8.0, 256), lambda t: tile(t, 2, 256), lambda t: binary(t, 0, 256)):
        both = fn(batch)
        torch.testing.assert_close(both[:1], fn(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(both[1:], fn(flipped), atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", [0, 2, 3])
def test_tile_cpu_and_torch_paths_agree(photo, k):
    from affordance.preprocessors.color import _tile_cv2

    im = photo.astype(np.float32) / 255
    x = torch.from_numpy(im).permute(2, 0, 1)[None]
    ref = tile_core(x, k)
    if ref.shape[-2:] != x.shape[-2:]:
        ref = torch.nn.functional.interpolate(ref, size=x.shape[-2:], mode="bilinear", align_corners=False)
    np.testing.assert_allclose(_tile_cv2(im, k), ref[0].permute(1, 2, 0).numpy(), atol=2e-3)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_tile_of_an_image_under_32_px_works_on_a_64_px_grid_on_both_paths(k):
    """Sides that round to 0 multiples of 64 (8 to 31 px) are taken as 64 on the CPU and torch paths alike."""
    from affordance.preprocessors.color import _tile_cv2

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 20), torch.linspace(0, 1, 24), indexing="ij")
    x = torch.stack([yy, xx, (yy + xx) / 2])[None]  # smooth ramps: the paths' rounding stays small
    ref = tile_core(x, k)
    assert ref.shape[-2:] == (64, 64)
    ref = torch.nn.functional.interpolate(ref, size=(20, 24), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(_tile_cv2(x[0].permute(1, 2, 0).numpy(), k), ref[0].permute(1, 2, 0).numpy(), atol=2e-3)


def test_noise_disk_is_the_reference_recipe():
    """Coarse uniform noise, cv2 bicubic resize to (H + 2F, W + 2F), crop F, min-max: ControlNet 1.1's make_noise_disk."""
    h, w, f = 300, 520, 256
    coarse = torch.rand(1, h // f + 2, w // f + 2, generator=torch.Generator().manual_seed(5))
    big = cv2.resize(coarse[0].numpy(), (w + 2 * f, h + 2 * f), interpolation=cv2.INTER_CUBIC)[f : f + h, f : f + w]
    ref = (big - big.min()) / (big - big.min()).max()
    got = noise_disk(1, h, w, torch.Generator().manual_seed(5), torch.device("cpu"))[0, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("threshold", [100, 0])  # fixed and Otsu
def test_binary_of_half_precision_images_equals_float32(astronaut, tensor, threshold):
    """The grey conversion's fixed-point sums overflowed fp16 (inf above level 6): almost all white."""
    x = tensor(astronaut)
    ref = binary(x, threshold, 256)
    half = binary(x.half(), threshold, 256)
    assert half.dtype == torch.float16
    assert (half.float() != ref).float().mean() < 0.01  # resampling in fp16 moves a few border pixels
    assert grey_levels(torch.full((1, 3, 1, 1), 200.0, dtype=torch.float16)).item() == 200.0


def test_color_grid_gives_each_64_px_cell_its_colour():
    """An image of flat 64 px cells comes back as it is; a noisy one becomes flat per cell."""
    from affordance.preprocessors import color_grid

    cells = torch.rand(1, 3, 2, 3, generator=torch.Generator().manual_seed(4))
    flat = cells.repeat_interleave(64, dim=-2).repeat_interleave(64, dim=-1)  # (1, 3, 128, 192)
    torch.testing.assert_close(color_grid(flat, 128), flat, atol=1e-6, rtol=0)
    noisy = color_grid(flat + 0.05 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(5)), 128)
    blocks = noisy.unflatten(-1, (3, 64)).unflatten(-3, (2, 64))  # (1, 3, 2, 64, 3, 64)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    assert (noisy - flat).abs().max() < 0.15  # bicubic reads a few pixels near each cell centre


def test_color_of_a_side_narrower_than_a_cell_is_one_cell():
    x = torch.rand(1, 3, 200, 40, generator=torch.Generator().manual_seed(6))
    out = color_core(x)
    assert out.shape == x.shape and torch.equal(out, out[..., :1].expand_as(out))


def test_color_grid_cells_are_the_images_own_not_padding():
    """At a size that is no multiple of 64 the grid is laid on the image itself (as the reference does), not on
    an edge-padded copy: a 96x80 image at its own size is one cell, one colour."""
    from affordance.preprocessors import color_grid

    x = torch.rand(1, 3, 96, 80, generator=torch.Generator().manual_seed(7))
    out = color_grid(x, 80)
    assert out.shape == x.shape and torch.equal(out, out[..., :1, :1].expand_as(out))


def test_shuffle_warps_by_the_flow_fields_scaled_to_the_image(monkeypatch):
    """With the identity flow (x / (W - 1), y / (H - 1) for the two fields) the image comes back unchanged."""
    import affordance.preprocessors.color as color

    fields = []

    def ramps(b, h, w, generator, device, cell=None):
        axis = len(fields) % 2  # first x, then y, as the reference draws them
        r = torch.linspace(0, 1, w).expand(h, w) if axis == 0 else torch.linspace(0, 1, h)[:, None].expand(h, w)
        fields.append(axis)
        return r[None, None].repeat(b, 1, 1, 1).to(device)

    monkeypatch.setattr(color, "noise_disk", ramps)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    out = shuffle(x, 0, 64)
    assert fields == [0, 1]
    assert (out - x).abs().max() <= 1 / 255 + 1e-6  # 8-bit levels, as the reference remaps them
    assert ((out * 255) - (out * 255).round()).abs().max() < 1e-4  # on the CPU the remap itself is 8-bit


def test_inpaint_masks_strictly_above_half():
    x = torch.full((1, 3, 8, 8), 0.3)
    assert torch.equal(inpaint(x, torch.full((1, 8, 8), 0.5)), x)
    assert (inpaint(x, torch.full((1, 8, 8), 0.51)) == -1).all()


@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_shuffle_takes_every_64_bit_seed(seed):
    assert shuffle(torch.rand(1, 3, 64, 64), seed=seed, resolution=64).shape == (1, 3, 64, 64)
    with pytest.raises(ParameterError, match=r"seed must be a whole number from 0 to 2\*\*64 - 1, got"):
        shuffle(torch.rand(1, 3, 64, 64), seed=seed + 1 if seed else -1, resolution=64)


def test_a_drawing_side_may_be_the_maximum_exactly():
    from affordance.preprocessors.drawing import DRAWING_MAX_SIDE, DrawingError, check_drawing_size

    assert check_drawing_size(DRAWING_MAX_SIDE, 512) == (DRAWING_MAX_SIDE, 512)
    with pytest.raises(DrawingError, match="larger than the maximum"):
        check_drawing_size(512, DRAWING_MAX_SIDE + 1)


@pytest.mark.parametrize("value", [None, 5, ""])
def test_a_drawing_reference_that_is_not_a_non_empty_string_is_refused(value):
    """A missing, numeric or empty reference gets a DrawingError naming the value, not an AttributeError."""
    from affordance.preprocessors.drawing import DrawingError, parse_drawing_reference

    with pytest.raises(DrawingError, match=rf"^the drawing reference must be a non-empty file path, got {value!r}\.$"):
        parse_drawing_reference(value)

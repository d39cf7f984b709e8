"""Hint geometry: the three resize modes of the A1111 extension and "pixel perfect" resolution.

- ``just_resize``: stretch to the target size (aspect ratio not kept).
- ``crop_and_resize``: scale to cover the target, then crop the centre (nothing is letterboxed).
- ``resize_and_fill``: scale to fit inside the target, then fill the margins with the median colour of
  the image border (nothing is cropped).
"""

from __future__ import annotations

import enum

import torch

from .base import MAX_RESOLUTION, MIN_RESOLUTION, check_image, is_number, shown
from .errors import ImageInputError, ParameterError
from .filters import resize

# Above this many pixels (and 16x the output), crop_and_resize crops before it scales.
CROP_FIRST_PIXELS = 1 << 24


class ResizeMode(str, enum.Enum):
    """How a hint is brought to a target size."""

    JUST_RESIZE = "just_resize"
    CROP_AND_RESIZE = "crop_and_resize"
    RESIZE_AND_FILL = "resize_and_fill"


def _mode(mode: str | ResizeMode) -> ResizeMode:
    try:
        return ResizeMode(mode)
    except ValueError:
        raise ParameterError(f"resize mode must be one of {[m.value for m in ResizeMode]}, got {shown(mode)}.") from None


# Hints with at most this many colours (and more than black and white) are label-like (segmentation maps, pose
# skeletons, colour grids): resized with nearest neighbour, as sd-webui-controlnet does, so no colour is invented.
PALETTE_MAX_COLOURS = 200
_PALETTE_SAMPLE = 1 << 20  # pixels looked at first; the whole image only when they hold few colours


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


_COUNT_CHUNK = 1 << 20  # pixels whose colours are counted at once


def _palette_colours(flat: torch.Tensor, limit: int) -> tuple[bool, bool]:
    """``(few, grey)`` for ``(3, N)`` values in ``[0, 1]``: at most ``limit`` distinct 8-bit colours (every value
    on the 8-bit grid), and whether every pixel is grey. Counted in chunks, stopping once there are too many, so
    the memory is that of a chunk whatever the image's size."""
    grid = 0.5 if flat.dtype in (torch.float16, torch.bfloat16) else 1e-2  # how far from a level a value may be
    seen = torch.empty(0, dtype=torch.int64, device=flat.device)
    grey = True
    for i in range(0, flat.shape[1], _COUNT_CHUNK):
        part = flat[:, i : i + _COUNT_CHUNK].float() * 255
        levels = part.round()
        if float((part - levels).abs().max()) > grid:
            return False, False
        grey = grey and bool((levels[1:] == levels[:1]).all())
        packed = levels.to(torch.int64).clamp_(0, 255)
        packed = (packed[0] << 16) | (packed[1] << 8) | packed[2]
        seen = torch.unique(torch.cat([seen, torch.unique(packed)]))
        if seen.numel() > limit:
            return False, grey
    return True, grey


def _is_palette(x: torch.Tensor) -> bool:
    """A colour (not grey) image of at most ``PALETTE_MAX_COLOURS`` distinct 8-bit colours.

    Args:
        x: ``(1, 3, H, W)`` in ``[0, 1]``. Greyscale pictures (depth maps) are never label-like here: a
            narrow depth range can have few levels and must still be resized smoothly.
    """
    if x.shape[1] != 3:
        return False
    flat = x[0].flatten(1)
    step = max(1, flat.shape[1] // _PALETTE_SAMPLE)
    if step > 1 and not _palette_colours(flat[:, ::step], PALETTE_MAX_COLOURS)[0]:
        return False  # a photo is told apart on a sample
    few, grey = _palette_colours(flat, PALETTE_MAX_COLOURS)
    return few and not grey


def _is_inpaint_hint(x: torch.Tensor) -> bool:
    """An inpaint hint: some pixels are ``-1`` in every channel (masked), every other value is ``>= 0``.

    Other negative values (a bicubic upscale's overshoot, ComfyUI's 'Upscale Image' does not clamp) are a
    picture's, not a mask.
    """
    lo = float(x.min())
    if lo != -1.0:
        return False
    masked = x == -1
    return bool((masked.all(dim=1) == masked.any(dim=1)).all()) and bool(((x >= 0) | masked).all())


def _resize_masked(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """An inpaint hint (masked pixels ``-1``): the picture from its unmasked pixels only, the mask re-thresholded.

    Resizing the ``-1`` with the picture would smear it into partly masked, darkened pixels at every edge.
    """
    valid = (x[:, :1] >= 0).to(x.dtype)
    num = x.clamp(min=0).mul_(valid)
    num = resize(num, h, w)
    den = resize(valid, h, w)
    keep = den >= 0.5  # at least half of the area an output pixel covers is unmasked
    num.div_(den.clamp_(min=0.5)).clamp_(0, max(float(x.max()), 0.0))
    return num.masked_fill_(~keep, -1.0)


def _resize_binary(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A black/white hint, kept black/white with its thin lines: the ink is the rarer value (white edges on
    black, or a black drawing on white). Axes that shrink go first, by area, where a cell with more than 1/1000 of
    it inked is ink (a one-pixel line survives any shrink up to 1000x, as in :func:`.base.at_resolution`; a lone
    pixel survives up to about 31x per axis); axes that grow then, bicubic, at half."""
    black_ink = bool(x.mean() > 0.5)
    y = 1 - x if black_ink else x
    mh, mw = min(h, x.shape[-2]), min(w, x.shape[-1])
    if (mh, mw) != tuple(x.shape[-2:]):
        y = resize(y, mh, mw).gt_(1e-3)  # area: a new tensor
    if (mh, mw) != (h, w):
        y = resize(y, h, w).ge_(0.5)  # bicubic: a new tensor
    return 1 - y if black_ink else y


def _kind(x: torch.Tensor) -> str:
    """What one ``(1, C, H, W)`` hint holds: ``"inpaint"`` (:func:`_is_inpaint_hint`), ``"binary"`` (black and
    white only), ``"palette"`` (:func:`_is_palette`) or ``"picture"``; the first that applies."""
    if _is_inpaint_hint(x):
        return "inpaint"
    if _is_binary(x):
        return "binary"
    return "palette" if _is_palette(x) else "picture"


def _resize_one(x: torch.Tensor, h: int, w: int, kind: str) -> torch.Tensor:
    """Resize one ``(1, C, H, W)`` hint by what it holds (its :func:`_kind`).

    - inpaint hints: :func:`_resize_masked`;
    - black/white hints: :func:`_resize_binary`; the result stays binary;
    - label-like colour hints: nearest neighbour;
    - pictures: area down / bicubic up, clamped to the image's own range.
    """
    if kind == "inpaint":
        return _resize_masked(x, h, w)
    if kind == "binary":
        return _resize_binary(x, h, w)
    if kind == "palette":
        return resize(x, h, w, smooth=False)
    lo, hi = torch.aminmax(x)
    return resize(x, h, w).clamp_(float(lo), float(hi))


def _resize(x: torch.Tensor, h: int, w: int, kinds: list[str] | None = None) -> torch.Tensor:
    """Each image of ``(B, C, H, W)`` by :func:`_resize_one`: what one image holds never changes another's result.

    ``kinds``: each image's :func:`_kind` when the caller has them already.
    """
    if x.shape[-2:] == (h, w):
        return x
    out = x.new_empty((x.shape[0], x.shape[1], h, w))
    for i in range(x.shape[0]):
        one = x[i : i + 1]
        out[i] = _resize_one(one, h, w, kinds[i] if kinds is not None else _kind(one))[0]
    return out


def check_target_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` as ints (``64.0`` is fine, ``64.5`` or ``None`` is not).

    Raises:
        ParameterError: a side that is not a whole number from 8 to 16384.
    """
    for name, v in (("width", width), ("height", height)):
        if not is_number(v) or int(v) != v or not (8 <= v <= 16384):
            raise ParameterError(f"{name} must be an integer between 8 and 16384, got {shown(v)}.")
    return int(width), int(height)


def resize_hint(
    image: torch.Tensor, width: int, height: int, mode: str | ResizeMode = ResizeMode.CROP_AND_RESIZE
) -> torch.Tensor:
    """Bring ``(B, C, H, W)`` hints to ``width x height`` with one of the three modes.

    Each image is resized by what it holds (:func:`_kind`, :func:`_resize_one`): binary hints stay binary and keep their thin
    lines, label-like colour maps keep their colours, inpaint marks (``-1``) stay whole, pictures are smooth.

    Returns:
        ``(B, C, height, width)`` with the input's dtype and device.
    """
    mode = _mode(mode)
    width, height = check_target_size(width, height)
    image = check_image(image)
    h, w = image.shape[-2:]
    if mode is ResizeMode.JUST_RESIZE:
        return _resize(image, height, width)
    k = max(height / h, width / w) if mode is ResizeMode.CROP_AND_RESIZE else min(height / h, width / w)
    nh, nw = max(1, round(h * k)), max(1, round(w * k))
    if mode is ResizeMode.CROP_AND_RESIZE and nh * nw > max(16 * height * width, CROP_FIRST_PIXELS):
        # Scaling the whole image first (A1111's order) would build a picture far larger than the output
        # (an 8x8 image cropped to 16384x8 px: 16384x16384); crop the same centre in source pixels instead.
        ch, cw = min(h, max(1, round(height / k))), min(w, max(1, round(width / k)))
        top, left = (h - ch) // 2, (w - cw) // 2
        return _resize(image[..., top : top + ch, left : left + cw], height, width)
    if mode is ResizeMode.CROP_AND_RESIZE:
        scaled = _resize(image, nh, nw)
        top, left = max(0, (nh - height) // 2), max(0, (nw - width) // 2)
        return scaled[..., top : top + height, left : left + width].contiguous()
    kinds = [_kind(image[i : i + 1]) for i in range(image.shape[0])]  # for the resize and the margins alike
    scaled = _resize(image, nh, nw, kinds)
    border = torch.cat(
        [image[..., 0, :], image[..., -1, :], image[..., :, 0], image[..., :, -1]], dim=-1
    )  # (B, C, 2W + 2H), always an even count: the median is the mean of the middle two, as numpy's
    fill = border.float().quantile(0.5, dim=-1).to(image.dtype)  # quantile takes float32/64 only
    for i, kind in enumerate(kinds):
        if kind == "inpaint":
            fill[i] = -1.0  # the margins are not in the picture: masked, to be painted (outpainting)
        elif kind == "binary":
            fill[i] = (fill[i] > 0.5).to(fill.dtype)  # a black/white hint stays black/white (a tie is black)
    out = fill[..., None, None].expand(-1, -1, height, width).clone()
    top, left = max(0, (height - nh) // 2), max(0, (width - nw) // 2)
    out[..., top : top + nh, left : left + nw] = scaled[..., : height - top, : width - left]
    return out


def pixel_perfect_resolution(
    image_height: int,
    image_width: int,
    target_height: int,
    target_width: int,
    mode: str | ResizeMode = ResizeMode.CROP_AND_RESIZE,
) -> int:
    """The detection resolution at which one hint pixel becomes one generated pixel (A1111's pixel perfect).

    ``resize_and_fill`` fits the image inside the target (smaller scale); the other modes cover it.

    >>> pixel_perfect_resolution(480, 640, 512, 512)
    512
    >>> pixel_perfect_resolution(480, 640, 512, 512, "resize_and_fill")
    384
    """
    mode = _mode(mode)
    target_width, target_height = check_target_size(target_width, target_height)
    if not (is_number(image_height) and is_number(image_width)) or min(image_height, image_width) < 1:
        raise ImageInputError(f"the image is {image_width}x{image_height} px; pixel perfect needs a non-empty image.")
    k0, k1 = target_height / image_height, target_width / image_width
    k = min(k0, k1) if mode is ResizeMode.RESIZE_AND_FILL else max(k0, k1)
    # within what a resolution input takes, so the result can always be wired into one
    return min(MAX_RESOLUTION, max(MIN_RESOLUTION, int(round(k * min(image_height, image_width)))))

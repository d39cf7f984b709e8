"""Hint geometry: the three resize modes of the A1111 extension and "pixel perfect" resolution.

- ``just_resize``: stretch to the target size (aspect ratio not kept).
- ``crop_and_resize``: scale to cover the target, then crop the centre (nothing is letterboxed).
- ``resize_and_fill``: scale to fit inside the target, then fill the margins with the median colour of
  the image border (nothing is cropped).
"""

from __future__ import annotations

import enum

import torch

from .base import MAX_RESOLUTION, MIN_RESOLUTION, check_image, is_number
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
        raise ParameterError(f"resize mode must be one of {[m.value for m in ResizeMode]}, got {mode!r}.") from None


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Photos: area down / bicubic up (clamped). Binary hints stay binary (nearest neighbour)."""
    if _is_binary(x):
        return resize(x, h, w, smooth=False)
    return resize(x, h, w).clamp(float(x.min()), float(x.max()))


def _check_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` as ints (``64.0`` is fine, ``64.5`` or ``None`` is not)."""
    for name, v in (("width", width), ("height", height)):
        if not is_number(v) or int(v) != v or not (8 <= v <= 16384):
            raise ParameterError(f"{name} must be an integer between 8 and 16384, got {v!r}.")
    return int(width), int(height)


def resize_hint(
    image: torch.Tensor, width: int, height: int, mode: str | ResizeMode = ResizeMode.CROP_AND_RESIZE
) -> torch.Tensor:
    """Bring ``(B, C, H, W)`` hints to ``width x height`` with one of the three modes.

    Returns:
        ``(B, C, height, width)`` with the input's dtype and device; binary hints stay binary.
    """
    mode = _mode(mode)
    width, height = _check_size(width, height)
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
    scaled = _resize(image, nh, nw)
    if mode is ResizeMode.CROP_AND_RESIZE:
        top, left = max(0, (nh - height) // 2), max(0, (nw - width) // 2)
        return scaled[..., top : top + height, left : left + width].contiguous()
    border = torch.cat(
        [image[..., 0, :], image[..., -1, :], image[..., :, 0], image[..., :, -1]], dim=-1
    )  # (B, C, 2W + 2H), always an even count: the median is the mean of the middle two, as numpy's
    fill = border.float().quantile(0.5, dim=-1).to(image.dtype)  # quantile takes float32/64 only
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
    target_width, target_height = _check_size(target_width, target_height)
    if not (is_number(image_height) and is_number(image_width)) or min(image_height, image_width) < 1:
        raise ImageInputError(f"the image is {image_width}x{image_height} px; pixel perfect needs a non-empty image.")
    k0, k1 = target_height / image_height, target_width / image_width
    k = min(k0, k1) if mode is ResizeMode.RESIZE_AND_FILL else max(k0, k1)
    # within what a resolution input takes, so the result can always be wired into one
    return min(MAX_RESOLUTION, max(MIN_RESOLUTION, int(round(k * min(image_height, image_width)))))

"""The preprocessor contract and the shared detection-resolution step.

Every preprocessor maps ``(B, 3, H, W)`` float images in ``[0, 1]`` (any device) to hints of the same
shape and size, batched. Images are brought to a *detection resolution* (short side = ``resolution``,
padded to a multiple of 64 by repeating edge pixels, as the ControlNet 1.1 annotators do), processed,
and brought back to the input size.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ImageInputError, ParameterError
from .filters import resize

MIN_SIDE = 8
MAX_SIDE = 8192
MAX_RESOLUTION = 4096
MIN_RESOLUTION = 64  # where the nodes' resolution inputs start
# Longest side a detection may run at: the short side goes to the resolution, so an image of extreme
# aspect (8x8192 px at 512) would otherwise be processed at 512x524288 px.
MAX_DETECTION_SIDE = 16384
PAD_MULTIPLE = 64


def check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate and normalise an image batch to ``(B, 3, H, W)`` float in ``[0, 1]``.

    Greyscale ``(B, 1, H, W)`` is repeated to RGB; RGBA is composited over white (``rgb * a + 1 - a``), as
    comfyui_controlnet_aux and sd-webui-controlnet do: a transparent area reads as paper, not as whatever colour
    its hidden pixels hold (black for most cut-outs, which would turn a drawing into ink everywhere).

    Raises:
        ImageInputError: not 4-D, empty batch, a side below :data:`MIN_SIDE` or above :data:`MAX_SIDE`,
            another channel count, integers other than 8-bit levels, or NaN/Inf values.

    Booleans become 0/1 and 8-bit levels are divided by 255. Float values are not clamped: hints pass
    through here too, and the inpaint hint marks its pixels with -1.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ImageInputError(f"{name} must be a batch of shape (B, C, H, W), got {got}.")
    b, c, h, w = image.shape
    if b == 0:
        raise ImageInputError(f"{name} batch is empty: connect at least one image.")
    if c == 1:
        image = image.expand(-1, 3, -1, -1)
    elif c not in (3, 4):
        raise ImageInputError(f"{name} has {c} channels; use RGB (3), greyscale (1) or RGBA (4).")
    if min(h, w) < MIN_SIDE:
        raise ImageInputError(f"{name} is {w}x{h} px; preprocessors need at least {MIN_SIDE}x{MIN_SIDE} px.")
    if max(h, w) > MAX_SIDE:
        raise ImageInputError(
            f"{name} is {w}x{h} px, above the {MAX_SIDE} px limit per side; downscale it first (e.g. 'Upscale Image')."
        )
    if image.dtype == torch.bool:
        image = image.float()
    elif image.dtype == torch.uint8:
        image = image.float() / 255.0
    elif not image.is_floating_point():
        raise ImageInputError(
            f"{name} holds {str(image.dtype).removeprefix('torch.')} values; give a float image in [0, 1] "
            "(ComfyUI's IMAGE) or 8-bit levels (uint8)."
        )
    if c == 4:
        alpha = image[:, 3:].clamp(0, 1)  # an alpha a little outside [0, 1] (a resize's overshoot) is still 0..1
        image = torch.addcmul(1 - alpha, image[:, :3], alpha)
    lo, hi = torch.aminmax(image)
    if not (torch.isfinite(lo) and torch.isfinite(hi)):  # NaN and +-Inf show in the min/max
        raise ImageInputError(f"{name} contains NaN or Inf values; check the node that produced it.")
    return image


def clip(text: str) -> str:
    """``text`` for a message: whole up to 80 characters, else its start and end around '...' (a value linked from
    another node can be a megabyte of text, and ComfyUI shows the whole message)."""
    return text if len(text) <= 80 else f"{text[:60]}...{text[-16:]}"


def shown(value: object) -> str:
    """``repr(value)`` for a message, clipped (:func:`clip`)."""
    return clip(repr(value))


def is_number(value: object) -> bool:
    """A finite real number (NumPy's included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise :class:`ParameterError` unless ``value`` is a number with ``low <= value <= high``."""
    if not is_number(value) or not (low <= value <= high):
        raise ParameterError(f"{name} must be between {low} and {high}, got {shown(value)}.")


def check_resolution(resolution: int) -> int:
    """A detection resolution: an integer in ``[MIN_SIDE, MAX_RESOLUTION]``."""
    if not is_number(resolution) or int(resolution) != resolution or not (MIN_SIDE <= resolution <= MAX_RESOLUTION):
        raise ParameterError(
            f"resolution must be an integer between {MIN_SIDE} and {MAX_RESOLUTION}, got {shown(resolution)}."
        )
    return int(resolution)


def to_uint8_levels(image: torch.Tensor) -> torch.Tensor:
    """Float ``[0, 1]`` -> float holding the nearest integer level ``0..255`` (what an 8-bit image holds)."""
    return (image * 255.0).round_().clamp_(0, 255)


def map_images_cpu(
    fn: Callable[..., np.ndarray], x: torch.Tensor, *extras: np.ndarray, uint8: bool = False
) -> torch.Tensor:
    """Apply an OpenCV function to each ``(H, W, C)`` float32 image of a CPU batch, on a thread pool.

    OpenCV releases the GIL, so the images of a batch run in parallel; on CPUs this beats torch's
    float kernels for small filters by a wide margin.

    Args:
        fn: ``(H, W, C) float32, *extras[i] -> (H', W', C') or (H', W')``; every image gives the same shape.
        x: ``(B, C, H, W)`` float on the CPU.
        extras: per-image arrays (first axis = batch) handed to ``fn`` with their image.
        uint8: hand ``fn`` 8-bit images (levels rounded, as the reference annotators use) and scale
            its 8-bit result back to ``[0, 1]``.

    Returns:
        ``(B, C', H', W')`` float32.
    """
    if uint8:
        arr = to_uint8_levels(x).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    else:
        arr = x.permute(0, 2, 3, 1).to(torch.float32).contiguous().numpy()
    with ThreadPoolExecutor(max_workers=min(len(arr), os.cpu_count() or 1)) as pool:
        out = list(pool.map(fn, arr, *extras))
    y = torch.from_numpy(np.stack(out))
    y = y[:, None] if y.ndim == 3 else y.permute(0, 3, 1, 2)
    return y.to(x.dtype) / 255.0 if uint8 else y.to(x.dtype)


def detection_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """Size with the short side scaled to ``resolution`` (rounded), as the ControlNet annotators do.

    Raises:
        ImageInputError: the long side would exceed :data:`MAX_DETECTION_SIDE` (an image of extreme aspect).
    """
    k = resolution / min(height, width)
    dh, dw = max(1, round(height * k)), max(1, round(width * k))
    if max(dh, dw) > MAX_DETECTION_SIDE:
        raise ImageInputError(
            f"a {width}x{height} px image at resolution {resolution} would be processed at {dw}x{dh} px, above "
            f"the {MAX_DETECTION_SIDE} px limit per side. "
            + (
                f"Lower the resolution to at most {fit // 64 * 64}, or crop the image to a less extreme aspect."
                if (fit := resolution * MAX_DETECTION_SIDE // max(dh, dw)) >= 64
                else "Crop the image to a less extreme aspect (no resolution the nodes offer fits it)."
            )
        )
    return dh, dw


def to_detection_size(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """``(B, C, H, W)`` in ``[0, 1]`` brought to :func:`detection_size` (area down, bicubic up, clamped).

    Running an annotator on the result at the same ``resolution`` processes it as it is and returns its hint at
    the detection size (what comfyui_controlnet_aux returns), where :func:`at_resolution` on the original
    image returns the same hint resized back to the image's size.

    Returns:
        ``image`` itself when it is already at that size, else a new tensor.
    """
    dh, dw = detection_size(image.shape[-2], image.shape[-1], resolution)
    return image if (dh, dw) == tuple(image.shape[-2:]) else resize(image, dh, dw).clamp_(0, 1)


def at_resolution(
    image: torch.Tensor,
    resolution: int,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    pad: bool = True,
    binary: bool = False,
) -> torch.Tensor:
    """Run ``fn`` at the detection resolution and return its result at the input's size.

    Args:
        image: ``(B, 3, H, W)`` in ``[0, 1]``.
        resolution: short side used for detection.
        fn: ``(B, 3, h, w) -> (B, C, h, w)``.
        pad: pad to a multiple of 64 with edge pixels before ``fn`` (and crop after), as the
            ControlNet 1.1 annotators do.
        binary: the hint is black/white; it is re-thresholded after resizing back (any ink when shrinking,
            half when enlarging), so thin lines detected above the input's size survive.

    Returns:
        ``(B, 3, H, W)`` (a 1-channel result is repeated to RGB) in the input's dtype.
    """
    h, w = image.shape[-2:]
    x = to_detection_size(image, resolution)
    dh, dw = x.shape[-2:]
    same = (dh, dw) == (h, w)
    ph, pw = (-dh) % PAD_MULTIPLE if pad else 0, (-dw) % PAD_MULTIPLE if pad else 0
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    y = fn(x)
    if ph or pw:
        y = y[..., :dh, :dw]
    if not same:
        y = resize(y, h, w).clamp_(0, 1)
        if binary:
            # Shrinking averages areas: a one-pixel line detected at 4x the input's size arrives at 0.25, so
            # any ink in the area is ink (lines survive, at least one pixel wide). Enlarging interpolates
            # (bicubic): half is the edge.
            shrunk = h <= dh and w <= dw
            y = (y > 1e-3 if shrunk else y >= 0.5).to(y.dtype)
    if y.shape[1] == 1:
        y = y.expand(-1, 3, -1, -1)
    return y

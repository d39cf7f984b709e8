"""Host-free preprocessors: image -> control hint, batched, on any device.

Pure torch/numpy/cv2; never imports ComfyUI or :mod:`controlnet`. Every preprocessor takes
``(B, 3, H, W)`` float images in ``[0, 1]`` and returns hints of the same shape and size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import MAX_SIDE, MIN_SIDE, check_image
from .canny import canny
from .color import color_grid, inpaint, luminance, shuffle, tile
from .convert import flip_normal_axes, invert, swap_rgb_bgr
from .errors import ImageInputError, ParameterError, PreprocessorError
from .geometry import ResizeMode, pixel_perfect_resolution, resize_hint
from .lines import binary, lineart_standard, scribble, scribble_xdog


def _demo_mask(image: torch.Tensor) -> torch.Tensor:
    """A centred rectangle covering a quarter of the image, for the inpaint demo."""
    b, _, h, w = image.shape
    m = torch.zeros(b, h, w, device=image.device)
    m[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1.0
    return m


# name -> function of (image, resolution) with the node defaults, for the main job's hint gallery
GALLERY: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "canny": lambda x, r: canny(x, 100, 200, r),
    "scribble": lambda x, r: scribble(x, r),
    "scribble_xdog": lambda x, r: scribble_xdog(x, 32, r),
    "binary": lambda x, r: binary(x, 100, r),
    "binary_otsu": lambda x, r: binary(x, 0, r),
    "lineart_standard": lambda x, r: lineart_standard(x, 6.0, 8.0, r),
    "shuffle": lambda x, r: shuffle(x, 0, r),
    "tile": lambda x, r: tile(x, 3, r),
    "color": lambda x, r: color_grid(x, r),
    "luminance": lambda x, r: luminance(x, 1.0, r),
    "inpaint": lambda x, r: inpaint(x, _demo_mask(x)),
    "invert_canny": lambda x, r: invert(canny(x, 100, 200, r)),
}

__all__ = [
    "GALLERY",
    "MAX_SIDE",
    "MIN_SIDE",
    "ImageInputError",
    "ParameterError",
    "PreprocessorError",
    "ResizeMode",
    "binary",
    "canny",
    "check_image",
    "color_grid",
    "flip_normal_axes",
    "inpaint",
    "invert",
    "lineart_standard",
    "luminance",
    "pixel_perfect_resolution",
    "resize_hint",
    "scribble",
    "scribble_xdog",
    "shuffle",
    "swap_rgb_bgr",
    "tile",
]

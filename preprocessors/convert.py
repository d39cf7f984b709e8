"""Hint converters: line polarity, channel order, normal-map axis conventions."""

from __future__ import annotations

import torch

from .errors import ParameterError


def invert(hint: torch.Tensor) -> torch.Tensor:
    """Swap black and white: ``1 - x`` for ``(B, C, H, W)`` in ``[0, 1]`` (e.g. black-on-white lineart)."""
    return 1.0 - hint


def swap_rgb_bgr(hint: torch.Tensor) -> torch.Tensor:
    """Reverse the channel order of ``(B, 3, H, W)`` (RGB <-> BGR)."""
    if hint.shape[1] != 3:
        raise ParameterError(f"channel swap needs 3 channels, got {hint.shape[1]}.")
    return hint.flip(1)


def flip_normal_axes(
    hint: torch.Tensor, flip_x: bool = False, flip_y: bool = False, flip_z: bool = False
) -> torch.Tensor:
    """Flip axes of a normal map encoded as ``(n + 1) / 2`` in RGB: each flipped channel becomes ``1 - c``.

    Flipping Y converts between the OpenGL (Y up) and DirectX (Y down) conventions.
    """
    if hint.shape[1] != 3:
        raise ParameterError(f"a normal map has 3 channels, got {hint.shape[1]}.")
    out = hint.clone()
    for c, flip in enumerate((flip_x, flip_y, flip_z)):
        if flip:
            out[:, c] = 1.0 - out[:, c]
    return out

"""Colour and texture hints without learned weights: shuffle, tile, colour grid, luminance, inpaint."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .base import at_resolution, check_image, check_range, check_resolution, is_number, map_images_cpu, to_uint8_levels
from .errors import ImageInputError, ParameterError
from .filters import area_resize, pyr_up

NOISE_CELL = 256  # ControlNet 1.1's shuffle: one random control point per 256 px


def _bicubic_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """``(n_out, n_in)`` matrix of 1-D bicubic upsampling (``align_corners=False``, a = -0.75)."""
    eye = torch.eye(n_in, device=device).view(n_in, 1, 1, n_in)
    return F.interpolate(eye, size=(1, n_out), mode="bicubic", align_corners=False).view(n_in, n_out).T


def noise_disk(
    b: int, h: int, w: int, generator: torch.Generator, device: torch.device, cell: int = NOISE_CELL
) -> torch.Tensor:
    """Smooth random field in ``[0, 1]``: coarse uniform noise, bicubic-upsampled, cropped, min-max scaled.

    The upsampling is separable, so it runs as two small matrix products instead of an image resize.

    Returns:
        ``(B, 1, h, w)`` float32; each image scaled to span exactly ``[0, 1]``.
    """
    ch, cw = h // cell + 2, w // cell + 2
    coarse = torch.rand(b, ch, cw, generator=generator, dtype=torch.float32).to(device)
    wy = _bicubic_matrix(ch, h + 2 * cell, device)[cell : cell + h]
    wx = _bicubic_matrix(cw, w + 2 * cell, device)[cell : cell + w]
    n = (wy @ coarse @ wx.T)[:, None]
    n = n - n.amin(dim=(2, 3), keepdim=True)
    return n / n.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)


def remap(image: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """``cv2.remap(..., INTER_LINEAR)`` with a zero border: sample ``image`` at pixel coordinates.

    Args:
        image: ``(B, C, H, W)``.
        map_x, map_y: ``(B, 1, h, w)`` source x in ``[0, W-1]`` and y in ``[0, H-1]``.
    """
    h, w = image.shape[-2:]
    grid = torch.stack([map_x[:, 0] / max(w - 1, 1) * 2 - 1, map_y[:, 0] / max(h - 1, 1) * 2 - 1], dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def shuffle(image: torch.Tensor, seed: int = 0, resolution: int = 512) -> torch.Tensor:
    """ControlNet 1.1's content shuffle: warp the image by a smooth random flow (for the shuffle model).

    The flow is fixed by ``seed`` (and the detection size) alone: every image of a batch gets the same one, as
    comfyui_controlnet_aux's seeded shuffle does, so an image's hint does not depend on where it sits in the
    batch (or in the node's chunks) and the frames of a video stay steady.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``.
    """
    image = check_image(image)
    if not is_number(seed) or int(seed) != seed or not 0 <= seed <= 0xFFFF_FFFF_FFFF_FFFF:
        raise ParameterError(f"seed must be a whole number from 0 to 2**64 - 1, got {seed!r}.")
    seed = int(seed)

    def run(x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g = torch.Generator().manual_seed(seed)
        fx = (noise_disk(1, h, w, g, x.device) * float(w - 1)).expand(b, -1, -1, -1)
        fy = (noise_disk(1, h, w, g, x.device) * float(h - 1)).expand(b, -1, -1, -1)
        if x.device.type != "cpu":
            return remap(x, fx, fy)
        flows = torch.cat([fx, fy], dim=1).permute(0, 2, 3, 1).contiguous().numpy()
        return map_images_cpu(lambda im, flow: cv2.remap(im, flow, None, cv2.INTER_LINEAR), x, flows, uint8=True)

    return at_resolution(image, check_resolution(resolution), run, pad=False)


def tile_core(x: torch.Tensor, pyrup_iters: int) -> torch.Tensor:
    """The tile recipe on ``(B, C, H, W)``: size rounded to 64, shrunk by ``2 ** k`` (area), ``k`` pyrUps.

    The shrink is OpenCV's ``INTER_AREA`` (comfyui_controlnet_aux's and sd-webui-controlnet's tile resample):
    a bilinear shrink would sample one pixel in ``2 ** k`` and alias fine textures.

    Returns:
        ``(B, C, H64, W64)`` where ``H64``/``W64`` are ``H``/``W`` rounded to multiples of 64.
    """
    h, w = x.shape[-2:]
    h64, w64 = max(64, round(h / 64) * 64), max(64, round(w / 64) * 64)
    y = area_resize(x, h64 >> pyrup_iters, w64 >> pyrup_iters)
    for _ in range(pyrup_iters):
        y = pyr_up(y)
    return y


def tile(image: torch.Tensor, pyrup_iters: int = 3, resolution: int = 512) -> torch.Tensor:
    """The tile hint: shrink by ``2 ** pyrup_iters`` (after rounding the size to 64), then ``pyrUp`` back.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``: a blurred copy for tile/upscale ControlNets.
    """
    check_range("pyrup_iters", pyrup_iters, 0, 6)
    if int(pyrup_iters) != pyrup_iters:
        raise ParameterError(f"pyrup_iters must be an integer, got {pyrup_iters!r}.")
    image = check_image(image)

    k = int(pyrup_iters)

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            return map_images_cpu(lambda im: _tile_cv2(im, k), x, uint8=True)
        y = tile_core(x, k)
        return (
            F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            if y.shape[-2:] != x.shape[-2:]
            else y
        )

    return at_resolution(image, check_resolution(resolution), run, pad=False)


def _tile_cv2(im: np.ndarray, k: int) -> np.ndarray:
    """:func:`tile_core` on one ``(H, W, C)`` image (8-bit like the reference, or float) with OpenCV."""
    h, w = im.shape[:2]
    h64, w64 = max(64, round(h / 64) * 64), max(64, round(w / 64) * 64)
    y = cv2.resize(im, (w64 >> k, h64 >> k), interpolation=cv2.INTER_AREA)
    for _ in range(k):
        y = cv2.pyrUp(y)
    return y if y.shape[:2] == (h, w) else cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR)


def color_core(x: torch.Tensor) -> torch.Tensor:
    """Average colours on 64 px cells: bicubic down to ``(H // 64, W // 64)``, nearest back up."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, h // 64), max(1, w // 64)), mode="bicubic", align_corners=False)
    return F.interpolate(small, size=(h, w), mode="nearest")


def color_grid(image: torch.Tensor, resolution: int = 512) -> torch.Tensor:
    """The T2I colour hint: average colours on a grid of 64 px cells (bicubic down, nearest up).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``.
    """
    image = check_image(image)
    return at_resolution(image, check_resolution(resolution), lambda x: color_core(x).clamp(0, 1), pad=False)


def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def lab_lightness_levels(levels: torch.Tensor) -> torch.Tensor:
    """OpenCV's 8-bit ``COLOR_BGR2LAB`` L channel (``L * 255 / 100``) of ``(B, 3, H, W)`` levels in BGR order."""
    b, g, r = (levels[:, i : i + 1] / 255.0 for i in range(3))
    y = 0.212671 * _srgb_to_linear(r) + 0.715160 * _srgb_to_linear(g) + 0.072169 * _srgb_to_linear(b)
    f = torch.where(y > 0.008856, y.clamp_min(0) ** (1 / 3), 7.787 * y + 16 / 116)
    lightness = torch.where(y > 0.008856, 116 * f - 16, 903.3 * y)
    return (lightness * 255 / 100).round().clamp(0, 255)


def luminance(image: torch.Tensor, gamma: float = 1.0, resolution: int = 512) -> torch.Tensor:
    """Recolour hint: lightness raised to ``gamma``, as grey (sd-webui-controlnet's "recolor_luminance").

    As in the reference, the RGB image is handed to OpenCV's BGR->Lab conversion, so red and blue swap
    their (small) weights; recolour ControlNets were trained on exactly that.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``.
    """
    check_range("gamma", gamma, 0.01, 10.0)  # the node's own range
    image = check_image(image)

    def run(x: torch.Tensor) -> torch.Tensor:
        lightness = lab_lightness_levels(to_uint8_levels(x)) / 255.0
        return ((lightness**gamma) * 255.0).clamp(0, 255).floor() / 255.0

    return at_resolution(image, check_resolution(resolution), run, pad=False)


def check_inpaint_mask(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """``mask`` checked for a batch of ``batch`` images: ``(B or 1, H', W')``; a 2-D mask gains a batch axis.

    Raises:
        ImageInputError: not a tensor, not 2-D or 3-D, empty, a batch other than 1 or ``batch``, NaN or Inf.
    """
    if not isinstance(mask, torch.Tensor):
        raise ImageInputError(f"mask must be a tensor of shape (B, H, W), got {type(mask).__name__}.")
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.numel() == 0:
        raise ImageInputError(f"mask must be a non-empty (B, H, W) or (H, W), got shape {tuple(mask.shape)}.")
    if mask.shape[0] not in (1, batch):
        raise ImageInputError(
            f"a batch of {mask.shape[0]} masks does not fit {batch} image(s); use "
            + ("1 mask." if batch == 1 else f"1 mask or {batch}.")
        )
    if not torch.isfinite(mask).all():
        raise ImageInputError("mask contains NaN or Inf values.")
    return mask


def inpaint(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The 1.1 inpaint hint: masked pixels become -1, the rest keep the image.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        mask: ``(B or 1, H', W')`` in ``[0, 1]``; resized (bilinear) to the image, masked where > 0.5.

    Returns:
        ``(B, 3, H, W)`` in ``[-1, 1]``.
    """
    image = check_image(image)
    mask = check_inpaint_mask(mask, image.shape[0])
    m = F.interpolate(mask[:, None].to(image), size=image.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(m > 0.5, torch.full_like(image, -1.0), image)

"""MiDaS v3 DPT-Hybrid depth and ControlNet 1.0's normal map from MiDaS depth.

Official file: ``dpt_hybrid-midas-501f0c75.pt`` (a plain state dict; load it with
``load_annotator(path, DPTHybridNet(), MIDAS_FILE)``).

Pre-processing as ControlNet's ``MidasDetector``: the image at the detection resolution (8-bit levels)
goes in as ``levels / 127.5 - 1`` with no further resizing. Depth: the network's relative inverse depth,
normalised per image to ``[0, 1]`` (``d -= min; d /= max``) and truncated to 8 bits. Normal map: Sobel
(3x3, reflected borders) x/y gradients of the raw depth, zeroed where the normalised depth is below
``bg_threshold``, with ``z = a``; the unit vector ``(x, y, z)`` mapped to 8-bit levels by
``n * 127.5 + 127.5`` (truncated) and returned with channels in the reference's order
**R = z, G = y, B = x** (the reference reverses the ``x, y, z`` stack).

When the detection size is padded to a multiple of 64, the network sees the padded image but the
normalisation and the Sobel filter use the unpadded part only, so a padded batch behaves like the
reference on that size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..base import at_resolution, check_image, check_range, check_resolution, detection_size, to_uint8_levels
from .model import DPTHybridNet

MIDAS_FILE = "dpt_hybrid-midas-501f0c75.pt"
DEFAULT_A = 2.0 * math.pi
DEFAULT_BG_THRESHOLD = 0.1

__all__ = [
    "DEFAULT_A",
    "DEFAULT_BG_THRESHOLD",
    "MIDAS_FILE",
    "DPTHybridNet",
    "depth_levels",
    "midas_depth",
    "midas_depth_and_normal",
    "midas_normal",
    "midas_raw_depth",
    "normal_from_depth",
    "normalise_depth",
    "sobel_3x3",
]


def midas_raw_depth(net: DPTHybridNet, image: torch.Tensor) -> torch.Tensor:
    """Network depth of ``(B, 3, H, W)`` images in ``[0, 1]`` (sides multiples of 32).

    The image is quantised to 8-bit levels and scaled to ``[-1, 1]`` as the reference feeds it; the
    batch runs on the network's device and dtype.

    Returns:
        ``(B, 1, H, W)`` float32 relative inverse depth (``>= 0``) on the image's device.
    """
    param = next(net.parameters())
    x = to_uint8_levels(image.float()) / 127.5 - 1.0
    with torch.inference_mode():
        depth = net(x.to(device=param.device, dtype=param.dtype))
    return depth.float().to(image.device)


def normalise_depth(depth: torch.Tensor) -> torch.Tensor:
    """Per-image ``(d - min) / max(d - min)`` of ``(B, 1, H, W)`` float depth; a flat map gives zeros."""
    d = depth - depth.amin(dim=(-2, -1), keepdim=True)
    top = d.amax(dim=(-2, -1), keepdim=True)
    return torch.where(top > 0, d / top.clamp_min(torch.finfo(d.dtype).tiny), torch.zeros_like(d))


def depth_levels(depth: torch.Tensor) -> torch.Tensor:
    """Raw depth ``(B, 1, H, W)`` -> the reference's 8-bit depth map ``floor(255 * normalised)`` / 255."""
    return (normalise_depth(depth) * 255.0).clamp_(0, 255).floor_() / 255.0


def sobel_3x3(depth: torch.Tensor) -> torch.Tensor:
    """3x3 Sobel derivatives of ``(B, 1, H, W)`` float32 maps: ``(B, 2, H, W)`` (d/dx, d/dy).

    Computed separably in OpenCV's order (difference along one axis, then ``2 * centre + (a + b)``
    along the other; borders reflected without repeating the edge pixel), which gives bit for bit
    what ``cv2.Sobel(..., cv2.CV_32F, ksize=3)`` gives on float32 input.
    """
    p = F.pad(depth, (1, 1, 1, 1), mode="reflect")
    dx = p[..., :, 2:] - p[..., :, :-2]
    gx = 2.0 * dx[..., 1:-1, :] + (dx[..., :-2, :] + dx[..., 2:, :])
    sy = 2.0 * p[..., :, 1:-1] + (p[..., :, :-2] + p[..., :, 2:])
    gy = sy[..., 2:, :] - sy[..., :-2, :]
    return torch.cat([gx, gy], dim=1)


def normal_from_depth(
    depth: torch.Tensor, a: float = DEFAULT_A, bg_threshold: float = DEFAULT_BG_THRESHOLD
) -> torch.Tensor:
    """ControlNet 1.0's normal map from raw depth ``(B, 1, H, W)`` float.

    ``x``/``y``: 3x3 Sobel derivatives of the raw depth (borders reflected without repeating the edge
    pixel, as OpenCV does), set to 0 where the normalised depth is below ``bg_threshold``; ``z = a``.
    The unit vector is mapped to levels ``floor(clip(n * 127.5 + 127.5, 0, 255))``; a zero vector
    (only possible with ``a = 0``) gives level 127.

    Returns:
        ``(B, 3, H, W)`` float32 in ``[0, 1]`` on 8-bit levels, channels ``(z, y, x)`` (the reference's RGB).
    """
    d = depth.float()
    grad = sobel_3x3(d)
    background = normalise_depth(d) < bg_threshold
    grad = grad.masked_fill(background, 0.0)
    gx, gy = grad[:, :1], grad[:, 1:]
    gz = torch.full_like(gx, float(a))
    n = torch.cat([gz, gy, gx], dim=1)
    # float32 sum of squares as the reference; sqrt and division through float64 so both are correctly
    # rounded float32 results like NumPy's (torch's float32 CPU sqrt may be off by an ulp, which moves
    # ``n * 127.5 + 127.5`` across an integer); float32 where float64 is missing (MPS).
    wide = torch.float32 if d.device.type == "mps" else torch.float64
    norm = (gx * gx + gy * gy + gz * gz).to(wide).sqrt().float()
    n = (n.to(wide) / norm.clamp_min(torch.finfo(torch.float32).tiny).to(wide)).float()
    return (n * 127.5 + 127.5).clamp_(0, 255).floor_() / 255.0


def midas_depth_and_normal(
    image: torch.Tensor,
    net: DPTHybridNet,
    a: float = DEFAULT_A,
    bg_threshold: float = DEFAULT_BG_THRESHOLD,
    resolution: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth and normal maps from one network pass (see :func:`midas_depth`, :func:`midas_normal`).

    Returns:
        ``(depth, normal)``, each ``(B, 3, H, W)`` in ``[0, 1]`` in the input's dtype and device.
    """
    image = check_image(image)
    resolution = check_resolution(resolution)
    check_range("a", a, 0.0, 5.0 * math.pi)
    check_range("bg_threshold", bg_threshold, 0.0, 1.0)
    dh, dw = detection_size(image.shape[-2], image.shape[-1], resolution)

    def run(x: torch.Tensor) -> torch.Tensor:
        raw = midas_raw_depth(net, x)[..., :dh, :dw]
        out = torch.cat([depth_levels(raw), normal_from_depth(raw, a, bg_threshold)], dim=1)
        ph, pw = x.shape[-2] - dh, x.shape[-1] - dw
        return F.pad(out, (0, pw, 0, ph)).to(x.dtype)

    both = at_resolution(image, resolution, run)
    return both[:, :1].expand(-1, 3, -1, -1), both[:, 1:]


def midas_depth(image: torch.Tensor, net: DPTHybridNet, resolution: int = 512) -> torch.Tensor:
    """MiDaS depth hint (near = bright) for depth ControlNets.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]`` (any device).
        net: a loaded :class:`DPTHybridNet` (on any device/dtype; the batch runs there).
        resolution: detection resolution (short side; padded to a multiple of 64).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]`` (grey, per-image normalised) at the input's size.
    """
    image = check_image(image)
    resolution = check_resolution(resolution)
    dh, dw = detection_size(image.shape[-2], image.shape[-1], resolution)

    def run(x: torch.Tensor) -> torch.Tensor:
        out = depth_levels(midas_raw_depth(net, x)[..., :dh, :dw])
        return F.pad(out, (0, x.shape[-1] - dw, 0, x.shape[-2] - dh)).to(x.dtype)

    return at_resolution(image, resolution, run)


def midas_normal(
    image: torch.Tensor,
    net: DPTHybridNet,
    a: float = DEFAULT_A,
    bg_threshold: float = DEFAULT_BG_THRESHOLD,
    resolution: int = 512,
) -> torch.Tensor:
    """ControlNet 1.0 normal map (``control_sd15_normal``) from MiDaS depth.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        net: a loaded :class:`DPTHybridNet`.
        a: the constant ``z`` component against the depth gradients (larger = flatter), ``[0, 5 pi]``.
        bg_threshold: normalised depth below which the surface counts as background (facing the
            camera), ``[0, 1]``.
        resolution: detection resolution.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``; channels R = z, G = y gradient, B = x gradient, as the reference.
    """
    return midas_depth_and_normal(image, net, a, bg_threshold, resolution)[1]

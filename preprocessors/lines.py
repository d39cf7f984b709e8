"""Line and threshold hints without learned weights: scribble, XDoG scribble, binary, lineart standard.

Formulas follow the ControlNet 1.1 / sd-webui-controlnet annotators on 8-bit images; here they run on
float tensors holding the same 0..255 levels, batched, on any device.
"""

from __future__ import annotations

import torch

from .base import at_resolution, check_image, check_range, check_resolution, to_uint8_levels
from .filters import gaussian_blur


def scribble_levels(levels: torch.Tensor) -> torch.Tensor:
    """White where the darkest channel is below 127 (ControlNet's scribble app): ``(B, 1, H, W)`` in {0, 1}."""
    return (levels.amin(dim=1, keepdim=True) < 127).to(levels.dtype)


def scribble(image: torch.Tensor, resolution: int = 512) -> torch.Tensor:
    """A user's dark-on-light drawing -> white strokes on black, ready for a scribble ControlNet.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.

    Returns:
        ``(B, 3, H, W)`` in ``{0, 1}`` at the input's size.
    """
    image = check_image(image)
    return at_resolution(
        image, check_resolution(resolution), lambda x: scribble_levels(to_uint8_levels(x)), binary=True
    )


def xdog_levels(levels: torch.Tensor, threshold: int) -> torch.Tensor:
    """XDoG: blurs of sigma 0.5 and 5.0; white where ``2 * (255 - dog) > threshold``.

    Args:
        levels: ``(B, 3, H, W)`` float grey levels in ``[0, 255]``.
        threshold: on the same 0-255 scale (the reference's default is 32).

    Returns:
        ``(B, 1, H, W)`` of 0.0 / 1.0 in ``levels``' dtype and device.
    """
    g1 = gaussian_blur(levels, 0.5)
    g2 = gaussian_blur(levels, 5.0)
    dog = (255 - (g2 - g1).amin(dim=1, keepdim=True)).clamp(0, 255).floor()  # uint8 cast truncates
    return (2 * (255 - dog) > threshold).to(levels.dtype)


def scribble_xdog(image: torch.Tensor, threshold: int = 32, resolution: int = 512) -> torch.Tensor:
    """Scribble-like lines from a photo by the eXtended Difference of Gaussians (sd-webui-controlnet).

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        threshold: ``1..64`` typical; lower keeps more lines.

    Returns:
        ``(B, 3, H, W)`` in ``{0, 1}``.
    """
    check_range("threshold", threshold, 0, 255)
    image = check_image(image)
    return at_resolution(
        image, check_resolution(resolution), lambda x: xdog_levels(to_uint8_levels(x), threshold), binary=True
    )


def grey_levels(levels: torch.Tensor) -> torch.Tensor:
    """OpenCV's 8-bit ``RGB2GRAY``: ``0.299 R + 0.587 G + 0.114 B`` rounded, ``(B, 1, H, W)``.

    Computed in float32 whatever the input's dtype (the fixed-point sums reach 8.4 million, past half
    precision's 65504), returned in the input's dtype (levels 0..255 are exact in fp16 and bf16).
    """
    f = levels.float()
    r, g, b = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    # OpenCV's 15-bit fixed-point weights with rounding.
    return ((r * 9798 + g * 19235 + b * 3735 + 16384) / 32768).floor().to(levels.dtype)


def otsu_thresholds(grey: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold per image of ``(B, 1, H, W)`` integer levels, as OpenCV picks it.

    Returns:
        ``(B,)`` thresholds; pixels strictly above are foreground.
    """
    b = grey.shape[0]
    idx = grey.reshape(b, -1).long().clamp(0, 255)
    # counted on the device, the 256 bins in float64 on the CPU (Apple's MPS has no float64)
    counts = torch.zeros(b, 256, dtype=torch.int64, device=grey.device).scatter_add_(1, idx, torch.ones_like(idx))
    hist = counts.cpu().double()
    p = hist / hist.sum(dim=1, keepdim=True)
    levels = torch.arange(256, dtype=torch.float64)
    q1 = p.cumsum(1)
    mu_total = (p * levels).sum(1, keepdim=True)
    mu_cum = (p * levels).cumsum(1)
    q2 = 1 - q1
    eps = 1.1920929e-07  # FLT_EPSILON, OpenCV's guard
    valid = (torch.minimum(q1, q2) >= eps) & (torch.maximum(q1, q2) <= 1 - eps)
    mu1 = mu_cum / q1.clamp_min(eps)
    mu2 = (mu_total - mu_cum) / q2.clamp_min(eps)
    sigma = torch.where(valid, q1 * q2 * (mu1 - mu2) ** 2, torch.full_like(q1, -1.0))
    return sigma.argmax(dim=1).to(device=grey.device, dtype=grey.dtype)  # first maximum, like OpenCV's strict '>'


def binary_levels(levels: torch.Tensor, threshold: int) -> torch.Tensor:
    """White where grey > threshold; Otsu's threshold per image when ``threshold`` is 0 or 255.

    Args:
        levels: ``(B, 3, H, W)`` float grey levels in ``[0, 255]``.
        threshold: 0-255 luminance threshold.

    Returns:
        ``(B, 1, H, W)`` of 0.0 / 1.0 in ``levels``' dtype and device.
    """
    grey = grey_levels(levels)
    if threshold in (0, 255):
        t = otsu_thresholds(grey).view(-1, 1, 1, 1)
    else:
        t = torch.tensor(float(threshold), device=levels.device, dtype=levels.dtype)
    return (grey > t).to(levels.dtype)


def binary(image: torch.Tensor, threshold: int = 100, resolution: int = 512) -> torch.Tensor:
    """Black/white hint by thresholding luminance (comfyui_controlnet_aux's Binary; Otsu at 0 or 255).

    Returns:
        ``(B, 3, H, W)`` in ``{0, 1}``: bright areas white.
    """
    check_range("threshold", threshold, 0, 255)
    image = check_image(image)
    return at_resolution(
        image, check_resolution(resolution), lambda x: binary_levels(to_uint8_levels(x), int(threshold)), binary=True
    )


def _masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median of ``values[mask]`` per row of ``(B, N)`` (mean of the two middle values, like numpy); NaN if empty."""
    filled = torch.where(mask, values, torch.full_like(values, float("inf")))
    s, _ = filled.sort(dim=1)
    n = mask.sum(dim=1)
    lo = ((n - 1).clamp_min(0) // 2).unsqueeze(1)
    hi = (n // 2).clamp_max(values.shape[1] - 1).unsqueeze(1)
    med = (s.gather(1, lo) + s.gather(1, hi)).squeeze(1) / 2
    return torch.where(n > 0, med, torch.full_like(med, float("nan")))


def lineart_standard_levels(levels: torch.Tensor, sigma: float, intensity: float) -> torch.Tensor:
    """Lines where a pixel is darker than its Gaussian surround, normalised by the median line strength.

    ``v = clip(min_c(blur(x) - x), 0, 255) / max(16, median(v[v > 8])) * 127 * intensity / 8``; the default
    intensity 8 gives sd-webui-controlnet's ``* 127``.
    """
    g = gaussian_blur(levels, sigma)
    v = (g - levels).amin(dim=1, keepdim=True).clamp(0, 255)
    b = v.shape[0]
    flat = v.reshape(b, -1)
    med = _masked_median(flat, flat > 8)
    norm = torch.maximum(torch.nan_to_num(med, nan=16.0), torch.full_like(med, 16.0)).view(b, 1, 1, 1)
    out = (v / norm * 127.0 * (intensity / 8.0)).clamp(0, 255).floor()
    return out / 255.0


def lineart_standard(
    image: torch.Tensor, sigma: float = 6.0, intensity: float = 8.0, resolution: int = 512
) -> torch.Tensor:
    """Lineart from a photo without a network (sd-webui-controlnet's "lineart_standard").

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        sigma: Gaussian surround in pixels at the detection resolution.
        intensity: line strength; 8 reproduces the reference.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``: white lines on black.
    """
    check_range("sigma", sigma, 0.1, 100.0)
    check_range("intensity", intensity, 0.0, 1000.0)
    image = check_image(image)
    return at_resolution(
        image, check_resolution(resolution), lambda x: lineart_standard_levels(to_uint8_levels(x), sigma, intensity)
    )

"""Image filters written to reproduce OpenCV's results on the same data, batched and on any device.

All functions take ``(B, C, H, W)`` float tensors and keep their device and dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Kernels longer than this run as a conv1d rather than a sum of shifted copies (one add per tap).
LONG_KERNEL = 64


def gaussian_kernel1d(
    sigma: float, ksize: int | None = None, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """OpenCV's Gaussian kernel: size ``round(sigma * 8 + 1) | 1`` for float images when ``ksize`` is None.

    >>> gaussian_kernel1d(0.5).shape
    torch.Size([5])
    """
    if ksize is None:
        ksize = int(round(sigma * 4 * 2 + 1)) | 1
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma * sigma))
    return (k / k.sum()).to(device=device, dtype=dtype)


def _filter_axis(y: torch.Tensor, k: torch.Tensor, dim: int, mode: str) -> torch.Tensor:
    """1-D correlation along ``dim`` (-1 or -2) as a sum of shifted copies.

    Single-channel convolutions are slow in CPU convolution backends; a weighted sum of slices is
    several times faster there for short kernels and exact on any device. A long kernel (a Gaussian of
    large sigma: 801 taps at sigma 100) runs as one ``conv1d`` instead of hundreds of image-sized adds.
    """
    n = k.numel()
    p = n // 2
    if p == 0:
        return y * k[0]
    size = y.shape[dim]
    if mode == "reflect":
        idx = _reflect101_index(size, p, y.device)
    else:  # replicate
        idx = torch.arange(-p, size + p, device=y.device).clamp(0, size - 1)
    padded = y.index_select(dim, idx)
    if n > LONG_KERNEL:
        rows = padded.movedim(dim, -1)
        flat = rows.reshape(-1, 1, rows.shape[-1])
        out = F.conv1d(flat, k.to(flat.dtype).view(1, 1, n)).reshape(*rows.shape[:-1], size)
        return out.movedim(-1, dim)
    out = padded.narrow(dim, 0, size) * k[0]
    for i in range(1, n):
        out = out + padded.narrow(dim, i, size) * k[i]
    return out


def _separable(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor, mode: str) -> torch.Tensor:
    return _filter_axis(_filter_axis(x, kx, -1, mode), ky, -2, mode)


def _reflect101_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of OpenCV's BORDER_REFLECT_101 for a padding wider than the image."""
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


def gaussian_blur(x: torch.Tensor, sigma: float, ksize: int | None = None) -> torch.Tensor:
    """``cv2.GaussianBlur(x, (0, 0), sigma)`` on float data (BORDER_REFLECT_101), per channel."""
    k = gaussian_kernel1d(sigma, ksize, device=x.device, dtype=x.dtype)
    return _separable(x, k, k, "reflect")


def sobel3(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel derivatives with replicated borders, as ``cv2.Canny`` computes them.

    Returns:
        ``(dx, dy)``, each ``(B, C, H, W)``; exact integers for integer-valued input.
    """
    smooth = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    diff = torch.tensor([-1.0, 0.0, 1.0], device=x.device, dtype=x.dtype)
    return _separable(x, diff, smooth, "replicate"), _separable(x, smooth, diff, "replicate")


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """``cv2.pyrUp``: double the size, smoothing with the 5-tap binomial kernel.

    Samples are placed on the even positions of a zero grid, which is padded by mirroring its
    second and third entries on the left and the two before last on the right (OpenCV's border rule),
    then filtered with ``[1, 4, 6, 4, 1] / 8`` along each axis.
    """
    b, c, h, w = x.shape
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype) / 8.0
    y = torch.zeros(b * c, 1, 2 * h, 2 * w, device=x.device, dtype=x.dtype)
    y[..., ::2, ::2] = x.reshape(b * c, 1, h, w)
    y = torch.cat([y[..., 2:3], y[..., 1:2], y, y[..., -2:-1], y[..., -3:-2]], dim=-1)
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = torch.cat([y[..., 2:3, :], y[..., 1:2, :], y, y[..., -2:-1, :], y[..., -3:-2, :]], dim=-2)
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(b, c, 2 * h, 2 * w)


def _area_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's area weights along one axis as taps: ``(index, weight)``, each ``(n_out, k)``, on the CPU.

    Output pixel ``i`` averages input ``[i * s, (i + 1) * s)`` with ``s = n_in / n_out``: each input pixel counts
    by the length of its overlap with that interval (fractions at both ends), so at most ``ceil(s) + 1`` taps.
    Built in float64 on the CPU (Apple's MPS has no float64); unused taps have weight 0.
    """
    s = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64) * s
    hi = torch.arange(1, n_out + 1, dtype=torch.float64) * s
    k = math.ceil(s) + 1
    index = lo.floor().long()[:, None] + torch.arange(k)[None]
    overlap = (torch.minimum(hi[:, None], index + 1.0) - torch.maximum(lo[:, None], index.double())).clamp_(min=0)
    overlap[index >= n_in] = 0
    return index.clamp_(max=n_in - 1), overlap / s


def _area_axis(x: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
    """:func:`area_resize` along one axis of ``x`` (a new tensor, also when the size is unchanged)."""
    n_in = x.shape[dim]
    if n_in == n_out:
        return x.clone()
    index, weight = _area_taps(n_in, n_out)
    shape = [1] * x.ndim
    shape[dim] = n_out
    out: torch.Tensor | None = None
    for j in range(index.shape[1]):
        w = weight[:, j]
        if not bool(w.any()):
            continue
        tap = x.index_select(dim, index[:, j].to(x.device))
        w = w.to(device=x.device, dtype=x.dtype).view(shape)
        out = tap.mul_(w) if out is None else out.addcmul_(tap, w)
    assert out is not None  # every output pixel overlaps at least one input pixel
    return out


def area_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``cv2.resize(..., INTER_AREA)``, also when the ratio is not a whole number.

    Each output pixel averages the input area it covers, weighing a pixel it shares with its neighbour by the
    fraction inside it. ``F.interpolate(mode="area")`` (adaptive average pooling) weighs shared pixels fully, so
    the two agree only for whole ratios. OpenCV uses the same fractions to enlarge both axes; when one axis
    shrinks and the other grows it switches to two-tap weights, which this does not reproduce. One axis at a
    time, the one that shrinks more first, with ``ceil(ratio) + 1`` taps per output pixel (work and memory in
    proportion to the input and output, not their product).

    Args:
        x: ``(B, C, H, W)`` floating point.

    Returns:
        ``(B, C, height, width)`` in ``x``'s dtype and device (a new tensor).
    """
    h, w = x.shape[-2:]
    if height / h <= width / w:
        return _area_axis(_area_axis(x, height, -2), width, -1)
    return _area_axis(_area_axis(x, width, -1), height, -2)


def resize(x: torch.Tensor, height: int, width: int, *, smooth: bool = True) -> torch.Tensor:
    """Resize like OpenCV's choice for photos: area averaging down, bicubic (a = -0.75) up.

    With ``smooth=False``, nearest neighbour (for label or binary maps).

    Args:
        x: ``(B, C, H, W)`` floating point, any range (bicubic can overshoot it slightly; callers clamp).

    Returns:
        ``(B, C, height, width)`` in ``x``'s dtype and device (``x`` itself when the size already matches).
    """
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    if not smooth:
        return F.interpolate(x, size=(height, width), mode="nearest-exact")
    if height <= h and width <= w:
        return F.interpolate(x, size=(height, width), mode="area")
    return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)

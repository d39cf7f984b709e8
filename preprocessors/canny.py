"""Canny edges exactly as ``cv2.Canny`` computes them on 8-bit RGB images, batched, on any device.

Steps (OpenCV's, with its integer arithmetic): 3x3 Sobel with replicated borders per channel; per
pixel the channel with the largest L1 magnitude ``|dx| + |dy|``; non-maximum suppression in four
directions (tan 22.5 deg as the fixed-point 13573 / 2^15) with OpenCV's strict/non-strict tie rules;
hysteresis: a candidate (magnitude > low) is an edge when 8-connected to a pixel above high.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .base import at_resolution, check_image, check_range, check_resolution, to_uint8_levels
from .errors import ParameterError
from .filters import sobel3

TG22 = 13573  # tan(22.5 deg) * 2**15, rounded


def _neighbours(m: torch.Tensor) -> dict[str, torch.Tensor]:
    """Shifted copies of ``(B, H, W)`` with zeros outside (OpenCV's magnitude buffer border)."""
    p = F.pad(m, (1, 1, 1, 1))
    h, w = m.shape[-2:]
    return {
        name: p[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        for name, (dy, dx) in {
            "l": (0, -1),
            "r": (0, 1),
            "u": (-1, 0),
            "d": (1, 0),
            "ul": (-1, -1),
            "ur": (-1, 1),
            "dl": (1, -1),
            "dr": (1, 1),
        }.items()
    }


def _hysteresis_cpu(candidate: torch.Tensor, strong: torch.Tensor) -> torch.Tensor:
    """Edges = 8-connected components of ``candidate`` holding a strong pixel (one labelling for the batch)."""
    b, h, w = candidate.shape
    cand = candidate.numpy().astype(np.uint8)
    # Stack the batch vertically with a blank row between images: one labelling call for all of it.
    tall = np.zeros((b * (h + 1), w), np.uint8)
    for i in range(b):
        tall[i * (h + 1) : i * (h + 1) + h] = cand[i]
    _, labels = cv2.connectedComponents(tall, connectivity=8)
    labels = labels.reshape(b, h + 1, w)[:, :h]
    seeds = np.unique(labels[strong.numpy() & (labels > 0)])
    keep = np.zeros(labels.max() + 1, bool)
    keep[seeds] = True
    return torch.from_numpy(keep[labels])


def _hysteresis_torch(
    candidate: torch.Tensor, strong: torch.Tensor, check_every: int = 16, max_checks: int = 16
) -> torch.Tensor:
    """Grow strong pixels through candidates by 3x3 dilation until stable (for GPUs).

    Each pass grows edges by one pixel, so a long winding chain (a maze, small text) needs as many passes
    as it is long; after ``check_every * max_checks`` passes the CPU labelling finishes the job, with the
    same result (both keep the 8-connected candidate components that hold a strong pixel).
    """
    edges = strong.float()[:, None]
    cand = candidate.float()[:, None]
    for _ in range(max_checks):
        before = edges
        for _ in range(check_every):
            edges = F.max_pool2d(edges, 3, stride=1, padding=1) * cand
        if torch.equal(edges, before):
            return edges[:, 0].bool()
    return _hysteresis_cpu(candidate.cpu(), strong.cpu()).to(candidate.device)


def canny_levels(levels: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Canny on integer-valued images.

    Args:
        levels: ``(B, C, H, W)`` float holding integers ``0..255``.
        low, high: OpenCV thresholds (swapped if ``low > high``).

    Returns:
        ``(B, 1, H, W)`` float, 1 on edges and 0 elsewhere.
    """
    low, high = (low, high) if low <= high else (high, low)
    gx, gy = sobel3(levels)
    mag = gx.abs() + gy.abs()
    # Per pixel the channel with the largest magnitude; the first one wins ties, like OpenCV.
    m, dx, dy = mag[:, 0], gx[:, 0], gy[:, 0]
    for c in range(1, mag.shape[1]):
        better = mag[:, c] > m
        m = torch.where(better, mag[:, c], m)
        dx = torch.where(better, gx[:, c], dx)
        dy = torch.where(better, gy[:, c], dy)
    m, dx, dy = (t.round().to(torch.int32) for t in (m, dx, dy))
    n = _neighbours(m)
    x, y = dx.abs(), dy.abs() << 15
    tg22x = x * TG22
    tg67x = tg22x + (x << 16)
    horizontal = y < tg22x
    vertical = (~horizontal) & (y > tg67x)
    same_sign = (dx ^ dy) >= 0  # s = +1: compare up-left and down-right
    is_max = torch.where(
        horizontal,
        (m > n["l"]) & (m >= n["r"]),
        torch.where(
            vertical,
            (m > n["u"]) & (m >= n["d"]),
            torch.where(same_sign, (m > n["ul"]) & (m > n["dr"]), (m > n["ur"]) & (m > n["dl"])),
        ),
    )
    candidate = is_max & (m > low)
    strong = candidate & (m > high)
    if levels.device.type == "cpu":
        edges = _hysteresis_cpu(candidate, strong)
    else:
        edges = _hysteresis_torch(candidate, strong)
    return edges[:, None].to(levels.dtype)


def canny_cv2(levels: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """The same edges through ``cv2.Canny``, images spread over a thread pool (OpenCV releases the GIL).

    On CPUs OpenCV's vectorised kernel is the fastest exact path; the result equals
    :func:`canny_levels` pixel for pixel.
    """
    arr = levels.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    workers = min(len(arr), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        edges = list(pool.map(lambda im: cv2.Canny(im, low, high), arr))
    return torch.from_numpy(np.stack(edges) > 0)[:, None].to(levels.dtype)


def canny(
    image: torch.Tensor, low_threshold: int = 100, high_threshold: int = 200, resolution: int = 512
) -> torch.Tensor:
    """ControlNet's Canny hint: white edges on black, at the input's size.

    Runs on the input's device: torch kernels on a GPU, OpenCV threads on the CPU (identical results).

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]`` on any device.
        low_threshold, high_threshold: integers ``0..255`` (ControlNet's defaults 100 and 200).
        resolution: detection resolution (short side).

    Returns:
        ``(B, 3, H, W)`` float in ``{0, 1}``.
    """
    for name, v in (("low_threshold", low_threshold), ("high_threshold", high_threshold)):
        check_range(name, v, 0, 255)  # a number first (None or text is refused here)
        if int(v) != v:
            raise ParameterError(f"{name} must be an integer, got {v!r}.")
    if low_threshold > high_threshold:
        raise ParameterError(f"low_threshold ({low_threshold}) is above high_threshold ({high_threshold}); swap them.")
    image = check_image(image)
    resolution = check_resolution(resolution)
    kernel = canny_cv2 if image.device.type == "cpu" else canny_levels
    return at_resolution(
        image, resolution, lambda x: kernel(to_uint8_levels(x), int(low_threshold), int(high_threshold)), binary=True
    )

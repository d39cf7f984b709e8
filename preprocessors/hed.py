"""HED soft edges with ControlNet's Apache-2.0 HED network (``ControlNetHED.pth``), and fake scribble.

The network: five VGG-style blocks (2, 2, 3, 3, 3 convolutions of 64..512 channels, ReLU, 2x2 max
pooling between blocks), each with a 1x1 "side output" projection; the image (RGB, 0..255) minus a
learned mean goes in. The edge map is the sigmoid of the mean of the five side outputs, each upsampled
bilinearly to the input size. Parameter names follow the official file.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import at_resolution, check_image, check_resolution, to_uint8_levels

HED_FILE = "ControlNetHED.pth"


class HEDBlock(nn.Module):
    """``layers`` 3x3 convolutions with ReLU (keys ``convs.i``) and a 1x1 side output (``projection``)."""

    def __init__(self, cin: int, cout: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(layers)])
        self.projection = nn.Conv2d(cout, 1, 1)

    def forward(self, x: torch.Tensor, down: bool) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.max_pool2d(x, 2, 2) if down else x
        for conv in self.convs:
            h = F.relu(conv(h))
        return h, self.projection(h)


class HEDNet(nn.Module):
    """ControlNet's HED network. Input ``(B, 3, H, W)`` RGB levels ``0..255``; output five side maps.

    Returns (forward):
        tuple of 5 tensors ``(B, 1, H / 2^i, W / 2^i)`` (logits, before the sigmoid).
    """

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.block1 = HEDBlock(3, 64, 2)
        self.block2 = HEDBlock(64, 128, 2)
        self.block3 = HEDBlock(128, 256, 3)
        self.block4 = HEDBlock(256, 512, 3)
        self.block5 = HEDBlock(512, 512, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = x - self.norm
        sides = []
        for i, block in enumerate((self.block1, self.block2, self.block3, self.block4, self.block5)):
            h, side = block(h, down=i > 0)
            sides.append(side)
        return tuple(sides)


def safe_step(x: torch.Tensor, step: int = 2) -> torch.Tensor:
    """Quantise ``[0, 1]`` edges to ``step + 1`` levels (the "safe" mode that hides textures)."""
    return torch.floor(x * (step + 1)) / step


def hed_edges(net: HEDNet, levels: torch.Tensor, safe: bool = False) -> torch.Tensor:
    """Edge map of ``(B, 3, H, W)`` RGB levels ``0..255``: ``(B, 1, H, W)`` in ``[0, 1]`` on 8-bit levels.

    Side outputs are upsampled bilinearly (half-pixel centres, like ``cv2.INTER_LINEAR``), averaged,
    passed through a sigmoid, optionally quantised by :func:`safe_step`, then truncated to 8 bits as
    the reference stores them.
    """
    h, w = levels.shape[-2:]
    param = net.norm
    sides = net(levels.to(device=param.device, dtype=param.dtype))
    up = [F.interpolate(s.float(), size=(h, w), mode="bilinear", align_corners=False) for s in sides]
    edge = torch.sigmoid(torch.stack(up).mean(0).double())
    if safe:
        edge = safe_step(edge)
    return ((edge * 255.0).clamp(0, 255).floor() / 255.0).to(levels.dtype).to(levels.device)


def hed(image: torch.Tensor, net: HEDNet, safe: bool = False, resolution: int = 512) -> torch.Tensor:
    """Soft edges (white on black) for softedge/HED ControlNets.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        net: a loaded :class:`HEDNet` (on any device; the batch runs there).
        safe: quantise edges to 3 levels (``softedge_hedsafe``).
        resolution: detection resolution.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]`` at the input's size.
    """
    image = check_image(image)
    return at_resolution(image, check_resolution(resolution), lambda x: hed_edges(net, to_uint8_levels(x), safe))


def _nms_cv2(x: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """ControlNet's line thinning on one map: blur, keep maxima along any of 4 directions, threshold."""
    x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma)
    y = np.zeros_like(x)
    for kernel in _NMS_KERNELS:
        np.putmask(y, cv2.dilate(x, kernel=kernel) == x, x)
    return np.where(y > threshold, 255, 0).astype(np.uint8)


_NMS_KERNELS = [
    np.array(k, dtype=np.uint8)
    for k in (
        [[0, 0, 0], [1, 1, 1], [0, 0, 0]],
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[0, 0, 1], [0, 1, 0], [1, 0, 0]],
    )
]


def _scribble_cv2(edges: np.ndarray) -> np.ndarray:
    """One 8-bit HED map -> fake scribble, with OpenCV exactly as the reference does it (uint8 blur)."""
    z = _nms_cv2(edges, 127.0, 3.0)
    z = cv2.GaussianBlur(z, (0, 0), 3.0)
    return (z > 4).astype(np.float32)


def fake_scribble_levels(edges: torch.Tensor) -> torch.Tensor:
    """HED edges ``(B, 1, H, W)`` levels ``0..255`` -> scribble in ``{0, 1}``: NMS(127, 3), blur(3), > 4.

    The thinning compares blurred values for equality, so it runs through OpenCV (on the CPU, a thread
    per image) to give exactly the reference's strokes; the maps are small next to the network's work.
    """
    maps = edges[:, 0].round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    with ThreadPoolExecutor(max_workers=min(len(maps), os.cpu_count() or 1)) as pool:
        out = np.stack(list(pool.map(_scribble_cv2, maps)))
    return torch.from_numpy(out)[:, None].to(device=edges.device, dtype=edges.dtype)


def fake_scribble(image: torch.Tensor, net: HEDNet, resolution: int = 512) -> torch.Tensor:
    """ControlNet 1.0's "fake scribble": HED edges thinned and thresholded into bold strokes.

    Returns:
        ``(B, 3, H, W)`` in ``{0, 1}``.
    """
    image = check_image(image)

    def run(x: torch.Tensor) -> torch.Tensor:
        edges = hed_edges(net, to_uint8_levels(x)) * 255.0
        return fake_scribble_levels(edges)

    return at_resolution(image, check_resolution(resolution), run, binary=True)

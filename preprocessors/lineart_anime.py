"""Anime lineart (ControlNet 1.1 ``lineart_anime``) with the pix2pix-style U-Net of ``netG.pth``.

The network is an 8-level U-Net (64, 128, 256, 512, 512, 512, 512, 512 channels): each level goes
down by a 4x4 stride-2 convolution and up by a 4x4 stride-2 transposed convolution, with instance
norms (no learned parameters), LeakyReLU(0.2) going down, ReLU going up, a tanh at the end. Each inner
level passes its input *after* the LeakyReLU on as the skip connection (the original applies that
activation in place, so the concatenated skip tensor is the activated one); this is reproduced
explicitly. Parameter names follow the official file once its ``module.`` prefixes (it was saved from
``DataParallel``) are removed, which :func:`~.weights.load_annotator` does.

Pre/post-processing as the reference annotator: the detection image (8-bit levels) is resized with
bicubic interpolation to the next multiples of 256 (rounded to 8 bits, as OpenCV does on ``uint8``),
mapped to ``[-1, 1]``; the output ``tanh * 127.5 + 127.5`` is resized back with bicubic interpolation,
clipped and truncated to 8 bits. The network draws *dark lines on white* (255 = paper); the hint is
inverted (``255 - x``, as ControlNet 1.1's app, sd-webui-controlnet and controlnet-aux do) to give
*white lines on black*.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .base import at_resolution, check_image, check_resolution, to_uint8_levels

LINEART_ANIME_FILE = "netG.pth"
SIZE_MULTIPLE = 256


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels)


class UNetLevel(nn.Module):
    """One level of the U-Net; its layers sit in ``model`` at the indices of the official file.

    * outermost (``in_channels`` given): ``[down, inner level, ReLU, up, tanh]``, no skip;
    * innermost (``inner_level`` None): ``[LeakyReLU, down, ReLU, up, norm]``;
    * otherwise: ``[LeakyReLU, down, norm, inner level, ReLU, up, norm]``.

    Inner levels return ``cat([LeakyReLU(x), up(...)])`` along channels.
    """

    def __init__(
        self, outer: int, inner: int, inner_level: nn.Module | None = None, in_channels: int | None = None
    ) -> None:
        super().__init__()
        self.outermost = in_channels is not None
        down = nn.Conv2d(in_channels or outer, inner, 4, stride=2, padding=1)
        up = nn.ConvTranspose2d(inner if inner_level is None else 2 * inner, outer, 4, stride=2, padding=1)
        layers: list[nn.Module]
        if self.outermost:
            assert inner_level is not None  # the outermost level always wraps the rest of the U-Net
            layers = [down, inner_level, nn.ReLU(), up, nn.Tanh()]
        elif inner_level is None:
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), up, _norm(outer)]
        else:
            layers = [nn.LeakyReLU(0.2), down, _norm(inner), inner_level, nn.ReLU(), up, _norm(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        h = self.model[0](x)
        y = h
        for layer in islice(self.model, 1, None):
            y = layer(y)
        return torch.cat([h, y], dim=1)


class LineartAnimeNet(nn.Module):
    """The anime lineart U-Net of ``netG.pth`` (54,405,505 parameters).

    Input ``(B, 3, H, W)`` RGB in ``[-1, 1]`` with H and W multiples of 256; output ``(B, 1, H, W)``
    in ``[-1, 1]`` (tanh), 1 = white paper, -1 = black line.
    """

    def __init__(self, base: int = 64, levels: int = 8) -> None:
        super().__init__()
        level = UNetLevel(8 * base, 8 * base)
        for _ in range(levels - 5):
            level = UNetLevel(8 * base, 8 * base, level)
        for k in (4, 2, 1):
            level = UNetLevel(k * base, 2 * k * base, level)
        self.model = UNetLevel(1, base, level, in_channels=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _bicubic(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """OpenCV's ``INTER_CUBIC`` (a = -0.75, half-pixel centres, no antialiasing) in either direction."""
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)


def lineart_anime_levels(net: LineartAnimeNet, levels: torch.Tensor) -> torch.Tensor:
    """Anime line drawing of ``(B, 3, H, W)`` RGB levels ``0..255``, any H and W.

    Returns:
        ``(B, 1, H, W)`` white lines on black, in ``[0, 1]`` on 8-bit levels, on the input's device and dtype.
    """
    h, w = levels.shape[-2:]
    hn, wn = (SIZE_MULTIPLE * math.ceil(s / SIZE_MULTIPLE) for s in (h, w))
    x = levels.float()
    if (hn, wn) != (h, w):
        x = _bicubic(x, hn, wn).round_().clamp_(0, 255)  # OpenCV resizes the uint8 image: rounds, saturates
    param = cast(torch.Tensor, net.model.model[0].weight)
    out = net((x / 127.5 - 1.0).to(device=param.device, dtype=param.dtype))
    drawing = _bicubic(out.float() * 127.5 + 127.5, h, w).clamp_(0, 255).floor_()
    return ((255.0 - drawing) / 255.0).to(device=levels.device, dtype=levels.dtype)


def lineart_anime(image: torch.Tensor, net: LineartAnimeNet, resolution: int = 512) -> torch.Tensor:
    """Anime lineart hint (white lines on black) for the ControlNet 1.1 anime lineart model.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``, any device.
        net: a loaded :class:`LineartAnimeNet` (``netG.pth``; any device, the batch runs there).
        resolution: detection resolution (short side), padded to a multiple of 64; the network then
            runs at the next multiples of 256.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]`` at the input's size, in the input's dtype and device.
    """
    image = check_image(image)
    return at_resolution(image, check_resolution(resolution), lambda x: lineart_anime_levels(net, to_uint8_levels(x)))

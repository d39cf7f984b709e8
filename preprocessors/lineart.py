"""Lineart (ControlNet 1.1 ``lineart`` / ``lineart_coarse``) with the "Informative Drawings" generator.

The network (Chan, Durand and Isola, "Learning to generate line drawings that convey geometry and
semantics", CVPR 2022) is a ResNet-style image-to-image generator: a 7x7 convolution to 64 channels,
two stride-2 convolutions to 256, three residual blocks, two stride-2 transposed convolutions back to
64 and a 7x7 convolution to one channel with a sigmoid. Every hidden convolution is followed by an
instance norm without learned parameters; borders use reflection padding. The official files
``sk_model.pth`` (fine, the default) and ``sk_model2.pth`` (coarse) share this architecture; parameter
names follow them (plain state dicts).

Polarity: the network draws *dark lines on white paper* (1 = paper). The ControlNet 1.1 annotator
(``gradio_lineart.py``: ``255 - detector(img)``), sd-webui-controlnet's ``lineart`` preprocessor
(``255 - model(img)``) and controlnet-aux's ``LineartDetector`` (``255 - detected_map``) all invert
it, so the hint is *white lines on black*, as the lineart ControlNets expect. :func:`lineart` returns
that inverted map, from the network's output truncated to 8 bits first as the reference does.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .base import at_resolution, check_image, check_resolution, to_uint8_levels

LINEART_FILE = "sk_model.pth"
LINEART_COARSE_FILE = "sk_model2.pth"


def _norm(channels: int) -> nn.InstanceNorm2d:
    """Instance norm without affine parameters or running statistics (nothing in the state dict)."""
    return nn.InstanceNorm2d(channels)


class ResidualBlock(nn.Module):
    """``x + (pad, conv3x3, norm, ReLU, pad, conv3x3, norm)(x)``; keys ``conv_block.1`` and ``conv_block.5``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), _norm(cout), nn.ReLU()]


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), _norm(cout), nn.ReLU()]


class LineartNet(nn.Module):
    """The Informative Drawings generator of ``sk_model.pth`` / ``sk_model2.pth`` (4,290,945 parameters).

    Input ``(B, 3, H, W)`` RGB in ``[0, 1]`` (H and W multiples of 4 give an output of the same size);
    output ``(B, 1, H, W)`` in ``[0, 1]``, 1 = white paper, 0 = black line.
    """

    def __init__(self, residual_blocks: int = 3) -> None:
        super().__init__()
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 64, 7), _norm(64), nn.ReLU())
        self.model1 = nn.Sequential(*_down(64, 128), *_down(128, 256))
        self.model2 = nn.Sequential(*[ResidualBlock(256) for _ in range(residual_blocks)])
        self.model3 = nn.Sequential(*_up(256, 128), *_up(128, 64))
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(64, 1, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in (self.model0, self.model1, self.model2, self.model3, self.model4):
            x = stage(x)
        return x


def lineart_levels(net: LineartNet, levels: torch.Tensor) -> torch.Tensor:
    """Line drawing of ``(B, 3, H, W)`` RGB levels ``0..255`` (H, W multiples of 4).

    The network runs on its own device and dtype. Its drawing (1 = paper) is scaled to 8 bits and
    truncated as the reference stores it (``(x * 255).clip(0, 255).astype(uint8)``), then inverted.

    Returns:
        ``(B, 1, H, W)`` white lines on black, in ``[0, 1]`` on 8-bit levels, on the input's device and dtype.
    """
    param = cast(torch.Tensor, net.model0[1].weight)
    drawing = net(levels.to(device=param.device, dtype=param.dtype) / 255.0)
    drawing = (drawing.float() * 255.0).clamp_(0, 255).floor_()
    return ((255.0 - drawing) / 255.0).to(device=levels.device, dtype=levels.dtype)


def lineart(image: torch.Tensor, net: LineartNet, resolution: int = 512) -> torch.Tensor:
    """Lineart hint (white lines on black) for the ControlNet 1.1 lineart models.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``, any device.
        net: a loaded :class:`LineartNet`: ``sk_model.pth`` for ``lineart`` (fine, default) or
            ``sk_model2.pth`` for ``lineart_coarse`` (any device; the batch runs there).
        resolution: detection resolution (short side), padded to a multiple of 64.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]`` at the input's size, in the input's dtype and device.
    """
    image = check_image(image)
    return at_resolution(image, check_resolution(resolution), lambda x: lineart_levels(net, to_uint8_levels(x)))

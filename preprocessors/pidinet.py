"""PiDiNet soft edges (Su et al., ICCV 2021) with the official ``table5_pidinet.pth``, and PiDiNet scribble.

The network is the "carv4" PiDiNet of the paper's table 5: 60 base channels, four stages of four
depthwise-separable residual blocks (the stride-2 first block of stages 2-4 max-pools and has a 1x1
shortcut), then per stage a compact dilation module (CDCM, 24 channels, dilations 5/7/9/11), a compact
spatial attention (CSAM) and a 1x1 reduction to one map; the four maps are upsampled bilinearly to the
input size and fused by a 1x1 classifier. ControlNet uses the fused map only.

The depthwise 3x3 convolutions (and the first convolution) are *pixel-difference* convolutions, cycling
central (``cd``), angular (``ad``), radial (``rd``) and vanilla (``cv``) per layer. The official file
stores their raw 3x3 weights (that layout, keys and shapes, is what we load). Each pixel-difference
convolution equals a plain convolution with a kernel derived from those weights (:func:`vanilla_kernel`,
the paper's "conversion": 3x3 for ``cd``/``ad``, 5x5 for ``rd``); the network derives these kernels from
its parameters on each call (16 tiny tensors), so it runs as plain convolutions on any device and dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import at_resolution, check_image, check_resolution, to_uint8_levels
from .hed import fake_scribble_levels

PIDINET_FILE = "table5_pidinet.pth"

#: Pixel-difference type of the first convolution and of the 15 blocks' depthwise convolutions ("carv4").
CARV4 = ("cd", "ad", "rd", "cv") * 4

# ad: each tap minus its clockwise neighbour (row-major 3x3 positions).
_AD_ORDER = [3, 0, 1, 6, 4, 2, 7, 8, 5]
# rd: the 8 outer taps go to the ring of a 5x5 kernel (+) and, negated, to the inner ring (-).
_RD_OUTER = [0, 2, 4, 10, 14, 20, 22, 24]
_RD_INNER = [6, 7, 8, 11, 13, 16, 17, 18]


def vanilla_kernel(op: str, weight: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The plain convolution kernel (and its padding) equal to a pixel-difference convolution.

    Args:
        op: ``"cv"`` (vanilla), ``"cd"`` (central: ``sum w_i (x_i - x_c)``), ``"ad"`` (angular:
            differences of clockwise neighbours), or ``"rd"`` (radial: outer ring minus inner ring).
        weight: ``(C_out, C_in / groups, 3, 3)`` raw weights as stored in the official file.

    Returns:
        ``(kernel, padding)``: ``(C_out, C_in / groups, 3, 3)`` with padding 1, or ``5x5`` with padding 2
        for ``rd``; same dtype and device as ``weight``.
    """
    if op == "cv":
        return weight, 1
    if op == "cd":  # conv(x, w) - conv(x, sum(w)) at the centre tap
        kernel = weight.clone()
        kernel[:, :, 1, 1] -= weight.sum(dim=(2, 3))
        return kernel, 1
    flat = weight.flatten(2)
    if op == "ad":
        return (flat - flat[:, :, _AD_ORDER]).view_as(weight), 1
    if op == "rd":
        kernel = flat.new_zeros(*flat.shape[:2], 25)
        kernel[:, :, _RD_OUTER] = flat[:, :, 1:]
        kernel[:, :, _RD_INNER] = -flat[:, :, 1:]
        return kernel.view(*flat.shape[:2], 5, 5), 2
    raise ValueError(f"unknown pixel-difference convolution {op!r}")


class PixelDifferenceConv(nn.Module):
    """A bias-free 3x3 pixel-difference convolution holding its raw weight (key ``weight``)."""

    def __init__(self, op: str, cin: int, cout: int, groups: int = 1) -> None:
        super().__init__()
        self.op = op
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(cout, cin // groups, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, padding = vanilla_kernel(self.op, self.weight)
        return F.conv2d(x, kernel, padding=padding, groups=self.groups)


class PiDiBlock(nn.Module):
    """Residual block: [max-pool] -> depthwise pixel-difference conv -> ReLU -> 1x1, plus [1x1 shortcut]."""

    def __init__(self, op: str, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        if stride > 1:
            self.shortcut = nn.Conv2d(cin, cout, 1)
        self.conv1 = PixelDifferenceConv(op, cin, cin, groups=cin)
        self.conv2 = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.max_pool2d(x, 2, 2)
        y = self.conv2(F.relu(self.conv1(x)))
        return y + (self.shortcut(x) if self.stride > 1 else x)


class DilationModule(nn.Module):
    """CDCM: ReLU -> 1x1 (with bias) -> sum of four 3x3 convolutions dilated 5, 7, 9, 11."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1)
        dilated = (nn.Conv2d(cout, cout, 3, padding=d, dilation=d, bias=False) for d in (5, 7, 9, 11))
        self.conv2_1, self.conv2_2, self.conv2_3, self.conv2_4 = dilated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(x))
        return self.conv2_1(x) + self.conv2_2(x) + self.conv2_3(x) + self.conv2_4(x)


class SpatialAttention(nn.Module):
    """CSAM: ``x * sigmoid(conv3x3(conv1x1(relu(x))))`` with 4 hidden channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv2(self.conv1(F.relu(x))))


class MapReduce(nn.Module):
    """1x1 convolution to a single edge map (key ``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PiDiNet(nn.Module):
    """PiDiNet "carv4" with CDCM (24 channels) and CSAM, the layout of ``table5_pidinet.pth``.

    Input ``(B, 3, H, W)`` **BGR** in ``[0, 1]``. Returns (forward) the fused edge logits
    ``(B, 1, H, W)`` (apply a sigmoid for edge probabilities).
    """

    def __init__(self, width: int = 60, dilation_channels: int = 24, ops: tuple[str, ...] = CARV4) -> None:
        super().__init__()
        self.init_block = PixelDifferenceConv(ops[0], 3, width)
        stages = (width, 2 * width, 4 * width, 4 * width)
        layer = 1
        cin = width
        for s, cout in enumerate(stages, 1):
            for b in range(1, 4 if s == 1 else 5):
                stride = 2 if s > 1 and b == 1 else 1
                self.add_module(f"block{s}_{b}", PiDiBlock(ops[layer], cin, cout, stride))
                cin = cout
                layer += 1
        self.conv_reduces = nn.ModuleList(MapReduce(dilation_channels) for _ in stages)
        self.attentions = nn.ModuleList(SpatialAttention(dilation_channels) for _ in stages)
        self.dilations = nn.ModuleList(DilationModule(c, dilation_channels) for c in stages)
        self.classifier = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.init_block(x)
        feats = []
        for s in range(1, 5):
            for b in range(1, 4 if s == 1 else 5):
                x = getattr(self, f"block{s}_{b}")(x)
            feats.append(x)
        maps = [
            F.interpolate(reduce(att(dil(f))), size=(h, w), mode="bilinear", align_corners=False)
            for f, dil, att, reduce in zip(feats, self.dilations, self.attentions, self.conv_reduces)
        ]
        return self.classifier(torch.cat(maps, dim=1))


def safe_step(x: torch.Tensor, step: int = 2) -> torch.Tensor:
    """Quantise ``[0, 1]`` edges to ``step + 1`` levels in float32, as the reference: ``floor(x * 3) / 2``."""
    return torch.floor(x.float() * float(step + 1)) / float(step)


def pidinet_edges(net: PiDiNet, levels: torch.Tensor, safe: bool = False, apply_filter: bool = False) -> torch.Tensor:
    """Edge map of ``(B, 3, H, W)`` RGB levels ``0..255``: ``(B, 1, H, W)`` in ``[0, 1]`` on 8-bit levels.

    The network sees BGR ``levels / 255``; its fused map goes through a sigmoid, optionally a 0.5
    threshold (``apply_filter``) and :func:`safe_step`, then is truncated to 8 bits as the reference stores it.
    """
    param = net.init_block.weight
    x = levels.flip(1).to(device=param.device, dtype=param.dtype) / 255.0
    edge = torch.sigmoid(net(x).float())
    if apply_filter:
        edge = (edge > 0.5).float()
    if safe:
        edge = safe_step(edge)
    return ((edge * 255.0).clamp(0, 255).floor() / 255.0).to(device=levels.device, dtype=levels.dtype)


def pidinet(
    image: torch.Tensor, net: PiDiNet, safe: bool = False, resolution: int = 512, apply_filter: bool = False
) -> torch.Tensor:
    """PiDiNet soft edges (white on black) for softedge ControlNets (``softedge_pidinet``/``pidisafe``).

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        net: a loaded :class:`PiDiNet` (any device and dtype; the batch runs there).
        safe: quantise edges to 3 levels (0, 0.5, 1), hiding textures (``softedge_pidisafe``).
        resolution: detection resolution.
        apply_filter: threshold the edge probabilities at 0.5 (binary edges) before ``safe``.

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]`` at the input's size.
    """
    image = check_image(image)
    run = lambda x: pidinet_edges(net, to_uint8_levels(x), safe, apply_filter)  # noqa: E731
    return at_resolution(image, check_resolution(resolution), run)


def pidinet_scribble(image: torch.Tensor, net: PiDiNet, safe: bool = False, resolution: int = 512) -> torch.Tensor:
    """ControlNet 1.1's ``scribble_pidinet``: PiDiNet edges thinned (NMS 127, sigma 3), blurred (3), > 4.

    Returns:
        ``(B, 3, H, W)`` in ``{0, 1}``.
    """
    image = check_image(image)

    def run(x: torch.Tensor) -> torch.Tensor:
        return fake_scribble_levels(pidinet_edges(net, to_uint8_levels(x), safe) * 255.0)

    return at_resolution(image, check_resolution(resolution), run, binary=True)

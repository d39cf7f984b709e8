"""M-LSD straight line segments (Gu et al., AAAI 2022) with the official ``mlsd_large_512_fp32.pth``.

The network (MobileV2-MLSD-Large): a truncated MobileNetV2 (first 14 feature blocks, TFLite-style
"same" padding on stride-2 convolutions) on a 4-channel input (RGB and a constant channel), a U-shaped
decoder of type A (1x1 lateral convolutions, bilinear x2 upsampling with aligned corners, concatenation)
and type B (two 3x3 convolutions, the first residual) blocks, and a head (type C: a 3x3 convolution
dilated 5, a 3x3, a 1x1 to 16 maps). Channels 7..15 are the output at half the input size: channel 0
is the line-centre logit, channels 1..4 the displacements (x, y of the start, x, y of the end) from the
centre to the ends, in half-resolution pixels. Parameter names follow the official file.

Decoding follows the reference's ``pred_lines``: centres are local maxima (3x3) of the sigmoid centre
map, the top 200 are kept, and a segment is kept when its score and its length exceed the thresholds.
Segments are drawn white on black, 1 px, with OpenCV as the reference does.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import at_resolution, check_image, check_range, check_resolution, to_uint8_levels

MLSD_FILE = "mlsd_large_512_fp32.pth"
TOP_K = 200


def _conv_bn(
    cin: int, cout: int, k: int, padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True
) -> nn.Sequential:
    """``Sequential(conv, batch norm)`` (keys ``0.*``, ``1.*``); the activation is applied by the caller."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=padding, dilation=dilation, groups=groups, bias=bias), nn.BatchNorm2d(cout)
    )


class ConvBNReLU6(nn.Sequential):
    """Bias-free conv + BN + ReLU6; stride 2 pads right/bottom by one pixel and uses no padding (TFLite)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = 0 if stride == 2 else (k - 1) // 2
        super().__init__(nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            x = F.pad(x, (0, 1, 0, 1))
        return F.relu6(self[1](self[0](x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise (stride) -> 1x1 linear projection, residual if shapes agree."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [ConvBNReLU6(cin, hidden, 1)] if expand != 1 else []
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class Backbone(nn.Module):
    """MobileNetV2 features 0..13 (key ``features``); returns the outputs of blocks 1, 3, 6, 10, 13."""

    TAPS = (1, 3, 6, 10, 13)

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ConvBNReLU6(4, 32, stride=2)]
        cin = 32
        for expand, cout, n, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)):
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.TAPS:
                taps.append(x)
        return taps


class MergeBlock(nn.Module):
    """Type A: ReLU(BN(1x1)) on the skip ``a`` (``conv2``) and the deeper ``b`` (``conv1``), ``b`` upsampled x2."""

    def __init__(self, cin_a: int, cin_b: int, cout_a: int, cout_b: int, upscale: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin_b, cout_b, 1)
        self.conv2 = _conv_bn(cin_a, cout_a, 1)
        self.upscale = upscale

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        b = F.relu(self.conv1(b))
        a = F.relu(self.conv2(a))
        if self.upscale:
            b = F.interpolate(b, scale_factor=2.0, mode="bilinear", align_corners=True)
        return torch.cat((a, b), dim=1)


class RefineBlock(nn.Module):
    """Type B: ``x = ReLU(BN(conv3x3 x)) + x``, then ``ReLU(BN(conv3x3 x))`` to ``cout`` channels."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cin, 3, padding=1)
        self.conv2 = _conv_bn(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x)) + x))


class HeadBlock(nn.Module):
    """Type C: ReLU(BN(3x3 dilated 5)), ReLU(BN(3x3)), 1x1 to ``cout`` maps."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cin, 3, padding=5, dilation=5)
        self.conv2 = _conv_bn(cin, cin, 3, padding=1)
        self.conv3 = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


class MLSDNet(nn.Module):
    """MobileV2-MLSD-Large, the layout of ``mlsd_large_512_fp32.pth``.

    Input ``(B, 4, H, W)`` float: RGB levels mapped to ``[-1, 1]`` and a constant channel (see
    :func:`mlsd_input`), ``H, W`` multiples of 32. Returns (forward) ``(B, 9, H / 2, W / 2)``: centre
    logits and 4 displacement maps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.block15 = MergeBlock(64, 96, 64, 64, upscale=False)
        self.block16 = RefineBlock(128, 64)
        self.block17 = MergeBlock(32, 64, 64, 64)
        self.block18 = RefineBlock(128, 64)
        self.block19 = MergeBlock(24, 64, 64, 64)
        self.block20 = RefineBlock(128, 64)
        self.block21 = MergeBlock(16, 64, 64, 64)
        self.block22 = RefineBlock(128, 64)
        self.block23 = HeadBlock(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3, c4, c5 = self.backbone(x)
        x = self.block16(self.block15(c4, c5))
        x = self.block18(self.block17(c3, x))
        x = self.block20(self.block19(c2, x))
        x = self.block22(self.block21(c1, x))
        return self.block23(x)[:, 7:]


def mlsd_input(levels: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB levels ``0..255`` -> ``(B, 4, H, W)``: ``v / 127.5 - 1`` of RGB and of a ones channel."""
    ones = levels.new_ones(levels.shape[0], 1, *levels.shape[2:])
    return torch.cat((levels, ones), dim=1) / 127.5 - 1.0


def decode_lines(
    maps: torch.Tensor, score_threshold: float, distance_threshold: float, top_k: int = TOP_K
) -> tuple[torch.Tensor, torch.Tensor]:
    """Line segments from the network's maps, batched (``deccode_output_score_and_ptss`` + ``pred_lines``).

    A centre is a pixel whose sigmoid score is the maximum of its 3x3 neighbourhood; of the ``top_k``
    best, those with ``score > score_threshold`` and length (half-resolution px) ``> distance_threshold``
    are kept. End points are ``2 * (centre + displacement)`` in input pixels (float64, as the reference
    computes them), truncated toward zero as the reference's ``int()``.

    Args:
        maps: ``(B, 9, h, w)`` network output.

    Returns:
        ``(segments, keep)``: ``(B, K, 4)`` int64 ``x0, y0, x1, y1`` and ``(B, K)`` bool, ``K = min(top_k, h*w)``.
    """
    maps = maps.float()
    b, _, h, w = maps.shape
    heat = torch.sigmoid(maps[:, 0:1])
    heat = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    scores, index = torch.topk(heat.flatten(1), min(top_k, h * w), dim=1)
    disp = maps[:, 1:5].flatten(2).gather(2, index[:, None].expand(-1, 4, -1)).transpose(1, 2)  # (B, K, 4)
    length = torch.sqrt((disp[..., 0] - disp[..., 2]) ** 2 + (disp[..., 1] - disp[..., 3]) ** 2)
    centre = torch.stack((index % w, index // w), dim=-1).double().repeat(1, 1, 2)  # x, y, x, y
    ends = 2.0 * (centre + disp.double())
    ok = torch.isfinite(ends).all(-1) & (ends.abs() < 2.0**31).all(-1)  # the reference fails on these
    keep = (scores > score_threshold) & (length > distance_threshold) & ok
    return torch.where(ok[..., None], ends, 0.0).trunc().long(), keep


def draw_lines(segments: np.ndarray, height: int, width: int) -> np.ndarray:
    """Draw ``(N, 4)`` integer segments ``x0, y0, x1, y1`` white (255), 1 px, 8-connected, on a black
    ``(height, width)`` uint8 canvas with ``cv2.line`` (OpenCV clips segments that leave the canvas)."""
    canvas = np.zeros((height, width), np.uint8)
    for x0, y0, x1, y1 in segments.tolist():
        cv2.line(canvas, (x0, y0), (x1, y1), 255, 1)
    return canvas


def mlsd_lines(
    net: MLSDNet, levels: torch.Tensor, score_threshold: float = 0.1, distance_threshold: float = 0.1
) -> torch.Tensor:
    """Line drawing of ``(B, 3, H, W)`` RGB levels ``0..255`` (``H, W`` multiples of 32): ``(B, 1, H, W)`` in ``{0, 1}``."""
    param = net.block23.conv3.weight
    maps = net(mlsd_input(levels.to(device=param.device, dtype=param.dtype)))
    segments, keep = decode_lines(maps, score_threshold, distance_threshold)
    h, w = levels.shape[-2:]
    out = np.stack([draw_lines(s[k], h, w) for s, k in zip(segments.cpu().numpy(), keep.cpu().numpy())])
    return torch.from_numpy(out)[:, None].to(device=levels.device, dtype=levels.dtype) / 255.0


def mlsd(
    image: torch.Tensor,
    net: MLSDNet,
    score_threshold: float = 0.1,
    distance_threshold: float = 0.1,
    resolution: int = 512,
) -> torch.Tensor:
    """M-LSD straight lines (white, 1 px, on black) for the MLSD ControlNet.

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        net: a loaded :class:`MLSDNet` (any device and dtype; the network runs there, drawing on the CPU).
        score_threshold: minimum centre confidence of a segment (reference ``thr_v``), in ``[0.01, 2]``.
        distance_threshold: minimum segment length in half-resolution pixels (reference ``thr_d``),
            in ``[0.01, 20]``.
        resolution: detection resolution (the network runs at this size, as the reference's
            ``pred_lines`` with the detector's input shape).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]`` at the input's size (1 px lines, resampled if the size differs).
    """
    check_range("score_threshold", score_threshold, 0.01, 2.0)
    check_range("distance_threshold", distance_threshold, 0.01, 20.0)
    image = check_image(image)
    run = lambda x: mlsd_lines(net, to_uint8_levels(x), score_threshold, distance_threshold)  # noqa: E731
    return at_resolution(image, check_resolution(resolution), run)

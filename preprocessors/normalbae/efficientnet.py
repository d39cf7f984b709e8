"""EfficientNet-B5 (the TensorFlow-compatible AdvProp variant, ``tf_efficientnet_b5_ap``) as NormalBAE uses it.

Written for the parameter layout of the official ``scannet.pt``: a 3x3 stride-2 stem (``conv_stem``,
``bn1``), seven stages of blocks (``blocks.i.j``) and a 1x1 head (``conv_head``, ``bn2``). Stage 0 holds
depthwise-separable blocks (``conv_dw``, ``bn1``, ``se``, ``conv_pw``, ``bn2``); the others hold inverted
residual blocks (``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ``se``, ``conv_pwl``, ``bn3``) with a 6x
expansion. Squeeze-excitation (``se.conv_reduce``, ``se.conv_expand``) reduces to a quarter of the
block's *input* channels. Activations are SiLU, BatchNorm eps is 1e-3 (TensorFlow's), and strided
convolutions use TensorFlow "SAME" padding: the padding depends on the input size and puts the odd
pixel at the bottom/right.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3

# (kernel, stride of the first block, output channels, repeats) of the seven stages of B5
# (B0's stages with channels x1.6 rounded to multiples of 8 and repeats x2.2 rounded up).
B5_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (3, 1, 24, 3),
    (3, 2, 40, 5),
    (5, 2, 64, 5),
    (3, 2, 128, 7),
    (5, 1, 176, 7),
    (5, 2, 304, 9),
    (3, 1, 512, 3),
)
B5_STEM = 48
B5_FEATURES = 2048


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis: ``(before, after)``, the odd pixel after.

    The output has ``ceil(size / stride)`` samples.
    """
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding (keys ``weight`` [, ``bias``]).

    Stride 1 with an odd kernel pads symmetrically (``(k - 1) / 2``), which is what "SAME" gives; other
    cases pad per input size in ``forward``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False) -> None:
        self.static = stride == 1 and kernel % 2 == 1
        super().__init__(cin, cout, kernel, stride, (kernel - 1) // 2 if self.static else 0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.static:
            return super().forward(x)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class SqueezeExcite(nn.Module):
    """Channel gate: ``x * sigmoid(expand(silu(reduce(mean_hw(x)))))``."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk conv, BN, SiLU, SE, pointwise 1x1 conv, BN (no activation); residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.residual = stride == 1 and cin == cout
        self.conv_dw = SameConv2d(cin, cin, kernel, stride, groups=cin)
        self.bn1 = batch_norm(cin)
        self.se = SqueezeExcite(cin, cin // 4)
        self.conv_pw = SameConv2d(cin, cout, 1)
        self.bn2 = batch_norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.se(F.silu(self.bn1(self.conv_dw(x))))))
        return y + x if self.residual else y


class InvertedResidual(nn.Module):
    """1x1 expansion (x6), BN, SiLU; depthwise kxk, BN, SiLU; SE; 1x1 projection, BN; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int = 6) -> None:
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.conv_pw = SameConv2d(cin, mid, 1)
        self.bn1 = batch_norm(mid)
        self.conv_dw = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self.bn2 = batch_norm(mid)
        self.se = SqueezeExcite(mid, cin // 4)
        self.conv_pwl = SameConv2d(mid, cout, 1)
        self.bn3 = batch_norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.bn1(self.conv_pw(x)))
        y = self.se(F.silu(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return y + x if self.residual else y


class EfficientNetB5(nn.Module):
    """The ``tf_efficientnet_b5_ap`` trunk without pooling and classifier.

    ``forward`` returns the feature maps NormalBAE's decoder reads, for an input ``(B, 3, H, W)``
    (ImageNet-normalised RGB):

    - the outputs of stages 0, 1, 2 and 4: ``(B, 24, H/2, W/2)``, ``(B, 40, H/4, W/4)``,
      ``(B, 64, H/8, W/8)``, ``(B, 176, H/16, W/16)``;
    - the head convolution's output *before* its BatchNorm and activation: ``(B, 2048, H/32, W/32)``
      (the original encoder records every child module's output and the decoder takes that one, so
      ``bn2`` is in the file but unused).

    Sizes are rounded up (``ceil``) at each stride-2 step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem = SameConv2d(3, B5_STEM, 3, 2)
        self.bn1 = batch_norm(B5_STEM)
        stages = []
        cin = B5_STEM
        for i, (kernel, stride, cout, repeats) in enumerate(B5_STAGES):
            block = DepthwiseSeparable if i == 0 else InvertedResidual
            stages.append(
                nn.Sequential(
                    *[block(cin if j == 0 else cout, cout, kernel, stride if j == 0 else 1) for j in range(repeats)]
                )
            )
            cin = cout
        self.blocks = nn.Sequential(*stages)
        self.conv_head = SameConv2d(cin, B5_FEATURES, 1)
        self.bn2 = batch_norm(B5_FEATURES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.silu(self.bn1(self.conv_stem(x)))
        taps = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in (0, 1, 2, 4):
                taps.append(x)
        taps.append(self.conv_head(x))
        return taps

"""The DPT-Hybrid backbone: a ViT-B/16 (384 px) whose patch embedding is a BiT-style ResNet-50 v2.

The ResNet part (stem and three stages of 3, 4 and 9 bottlenecks; the first two stages' outputs are
also decoder inputs) uses weight-standardised convolutions with TensorFlow "SAME" padding and
GroupNorm (32 groups); its 1024-channel stride-16 map is projected (1x1 conv) to 768-d tokens. A class
token and learned position embeddings (a 24 x 24 grid, resized bilinearly for other input sizes) go
in front of 12 pre-norm transformer blocks. Module and parameter names follow the official MiDaS file
(``pretrained.model.*`` there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GN_GROUPS = 32
WS_EPS = 1e-8  # weight standardisation epsilon of the hybrid ViT's ResNet
LN_EPS = 1e-6


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis: the output has ``ceil(size / stride)`` samples."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class WSConv2d(nn.Conv2d):
    """Bias-free convolution whose kernel is standardised per output channel (zero mean, unit variance).

    ``w = (w - mean) / sqrt(var + 1e-8)`` (biased variance, computed in float32). Stride 1 uses
    symmetric padding ``(k - 1) / 2``; larger strides pad zeros TensorFlow-"SAME" from the input's size
    (the extra row/column after), so the output has ``ceil(size / stride)`` samples.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2 if stride == 1 else 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float()
        var, mean = torch.var_mean(w.flatten(1), dim=1, unbiased=False)
        w = (w - mean[:, None, None, None]) * torch.rsqrt(var + WS_EPS)[:, None, None, None]
        if self.stride[0] > 1:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = _same_pad(x.shape[-2], k, s)
            left, right = _same_pad(x.shape[-1], k, s)
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, w.to(x.dtype), None, self.stride, self.padding)


class ConvNorm(nn.Module):
    """``conv`` + ``norm`` (GroupNorm, no activation): the projection shortcut of a bottleneck."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = WSConv2d(cin, cout, 1, stride)
        self.norm = nn.GroupNorm(GN_GROUPS, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """Post-activation ResNet bottleneck (1x1, 3x3 with the stride, 1x1 to 4x), GroupNorm after each conv."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        mid = cout // 4
        if cin != cout or stride != 1:
            self.downsample: ConvNorm | None = ConvNorm(cin, cout, stride)
        else:
            self.downsample = None
        self.conv1 = WSConv2d(cin, mid, 1)
        self.norm1 = nn.GroupNorm(GN_GROUPS, mid)
        self.conv2 = WSConv2d(mid, mid, 3, stride)
        self.norm2 = nn.GroupNorm(GN_GROUPS, mid)
        self.conv3 = WSConv2d(mid, cout, 1)
        self.norm3 = nn.GroupNorm(GN_GROUPS, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        h = F.relu(self.norm1(self.conv1(x)))
        h = F.relu(self.norm2(self.conv2(h)))
        h = self.norm3(self.conv3(h))
        return F.relu(h + skip)


class Stage(nn.Module):
    """``blocks``: bottlenecks, the first one changing width and stride."""

    def __init__(self, cin: int, cout: int, depth: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *[Bottleneck(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Stem(nn.Module):
    """7x7/2 weight-standardised conv, GroupNorm + ReLU, 3x3/2 max pooling ("SAME", padded with -inf)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = WSConv2d(3, 64, 7, 2)
        self.norm = nn.GroupNorm(GN_GROUPS, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        top, bottom = _same_pad(x.shape[-2], 3, 2)
        left, right = _same_pad(x.shape[-1], 3, 2)
        x = F.pad(x, (left, right, top, bottom), value=-math.inf)
        return F.max_pool2d(x, 3, 2)


class ResNetBackbone(nn.Module):
    """ResNet-50 v2 trunk of the hybrid: stem and stages of 3, 4, 9 bottlenecks (256, 512, 1024 channels).

    Returns (forward):
        the three stage outputs ``(B, 256, H/4, W/4)``, ``(B, 512, H/8, W/8)``, ``(B, 1024, H/16, W/16)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = Stem()
        self.stages = nn.Sequential(Stage(64, 256, 3, 1), Stage(256, 512, 4, 2), Stage(512, 1024, 9, 2))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats


class HybridPatchEmbed(nn.Module):
    """``backbone`` (the ResNet) and ``proj`` (1x1 conv 1024 -> 768) making one token per 16 x 16 pixels."""

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.backbone = ResNetBackbone()
        self.proj = nn.Conv2d(1024, dim, 1)


class Attention(nn.Module):
    """Multi-head self-attention (``qkv`` and ``proj`` linear layers)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """``fc1`` -> GELU (erf) -> ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class HybridViT(nn.Module):
    """ViT-B/16 with a ResNet-50 v2 patch embedding (timm's ``vit_base_resnet50_384`` layout).

    The final ``norm`` and the ImageNet ``head`` are part of the official file but unused by DPT.

    Returns (forward):
        ``(B, 256, H/4, W/4)``, ``(B, 512, H/8, W/8)`` (ResNet stages 1 and 2), and the tokens after
        blocks 9 and 12: ``(B, 1 + H/16 * W/16, 768)`` each (class token first).
    """

    GRID = 24  # position-embedding grid (384 / 16)

    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, classes: int = 1000) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.GRID**2, dim))
        self.patch_embed = HybridPatchEmbed(dim)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, classes)

    def position_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """``(1, 1 + gh * gw, dim)``: the grid part resized bilinearly (half-pixel centres) to ``gh x gw``."""
        pe = self.pos_embed
        if (gh, gw) == (self.GRID, self.GRID):
            return pe
        grid = pe[:, 1:].reshape(1, self.GRID, self.GRID, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bilinear", align_corners=False)
        return torch.cat([pe[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        s1, s2, s3 = self.patch_embed.backbone(x)
        tokens = self.patch_embed.proj(s3).flatten(2).transpose(1, 2)
        b = tokens.shape[0]
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(x.shape[-2] // 16, x.shape[-1] // 16)
        taps = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in (8, 11):
                taps.append(tokens)
        return s1, s2, taps[0], taps[1]

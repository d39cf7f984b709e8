"""MiDaS v3 DPT-Hybrid (Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021).

The hybrid ViT (:mod:`.vit`) gives four feature maps: ResNet stages 1 and 2 directly, and the tokens
after transformer blocks 9 and 12 "reassembled" into images (class token projected into every token,
then a 1x1 conv; the last one also a 3x3/2 conv), at strides 4, 8, 16 and 32. The decoder brings each
to 256 channels (``scratch.layerN_rn``), fuses them coarse to fine (``scratch.refinenetN``: residual
conv units, 2x bilinear upsampling, 1x1 conv) and the head (``scratch.output_conv``) predicts a
non-negative relative inverse depth at the input's resolution. Parameter names follow the official
file ``dpt_hybrid-midas-501f0c75.pt`` (a plain state dict).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vit import HybridViT

FEATURES = 256
VIT_DIM = 768


class ReadoutProject(nn.Module):
    """Mixes the class token into every patch token: ``GELU(Linear([token, cls]))`` (key ``project.0``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]
        cls = tokens[:, :1].expand_as(patches)
        return self.project(torch.cat([patches, cls], dim=-1))


class Reassemble(nn.Sequential):
    """Tokens ``(B, 1 + gh * gw, 768)`` -> image ``(B, 768, gh, gw)`` (stride 16), or ``/2`` with ``down``.

    Indices match the official keys: ``0`` readout projection, ``3`` 1x1 conv, ``4`` 3x3/2 conv.
    """

    def __init__(self, dim: int, down: bool) -> None:
        layers = [ReadoutProject(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, dim, 1)]
        if down:
            layers.append(nn.Conv2d(dim, dim, 3, stride=2, padding=1))
        super().__init__(*layers)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:  # type: ignore[override]
        x = self[0](tokens).transpose(1, 2).unflatten(2, grid)
        for layer in list(self)[3:]:
            x = layer(x)
        return x


class Encoder(nn.Module):
    """``model`` (the hybrid ViT) and ``act_postprocess3``/``4`` (the two token reassemblers)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = HybridViT(VIT_DIM)
        self.act_postprocess3 = Reassemble(VIT_DIM, down=False)
        self.act_postprocess4 = Reassemble(VIT_DIM, down=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s1, s2, t3, t4 = self.model(x)
        grid = (x.shape[-2] // 16, x.shape[-1] // 16)
        return s1, s2, self.act_postprocess3(t3, grid), self.act_postprocess4(t4, grid)


class ResidualUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convolutions."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """``out_conv(up2(unit2(x + unit1(skip))))``; bilinear 2x upsampling with aligned corners."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(ch, ch, 1)
        self.resConfUnit1 = ResidualUnit(ch)
        self.resConfUnit2 = ResidualUnit(ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DepthHead(nn.Sequential):
    """3x3 conv 256 -> 128, 2x bilinear upsampling, 3x3 conv -> 32, ReLU, 1x1 conv -> 1, ReLU (non-negative)."""

    def __init__(self, ch: int) -> None:
        super().__init__(
            nn.Conv2d(ch, ch // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(ch // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(),
        )


class Decoder(nn.Module):
    """DPT decoder: ``layerN_rn`` (3x3 convs to 256, no bias), ``refinenetN`` fusion, ``output_conv`` head."""

    def __init__(self, ch: int = FEATURES) -> None:
        super().__init__()
        self.layer1_rn = nn.Conv2d(256, ch, 3, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(512, ch, 3, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(VIT_DIM, ch, 3, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(VIT_DIM, ch, 3, padding=1, bias=False)
        self.refinenet1 = FusionBlock(ch)
        self.refinenet2 = FusionBlock(ch)
        self.refinenet3 = FusionBlock(ch)
        self.refinenet4 = FusionBlock(ch)
        self.output_conv = DepthHead(ch)

    def forward(self, l1: torch.Tensor, l2: torch.Tensor, l3: torch.Tensor, l4: torch.Tensor) -> torch.Tensor:
        x = self.refinenet4(self.layer4_rn(l4))
        x = self.refinenet3(x, self.layer3_rn(l3))
        x = self.refinenet2(x, self.layer2_rn(l2))
        x = self.refinenet1(x, self.layer1_rn(l1))
        return self.output_conv(x)


class DPTHybridNet(nn.Module):
    """MiDaS v3 DPT-Hybrid depth network (about 123 M parameters).

    Input (forward): ``(B, 3, H, W)`` RGB scaled to ``[-1, 1]`` (``levels / 127.5 - 1``), ``H`` and ``W``
    multiples of 32 (any size: the position embeddings are resized from the 384 px grid).

    Returns (forward):
        ``(B, 1, H, W)`` non-negative relative inverse depth (larger = nearer), in the parameters' dtype.
    """

    MULTIPLE = 32

    def __init__(self) -> None:
        super().__init__()
        self.pretrained = Encoder()
        self.scratch = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.MULTIPLE or w % self.MULTIPLE:
            raise ValueError(f"DPT-Hybrid needs sides that are multiples of {self.MULTIPLE}, got {w}x{h}.")
        return self.scratch(*self.pretrained(x))

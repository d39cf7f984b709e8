"""NormalBAE's network (Bae et al., ICCV 2021), in the parameter layout of the official ``scannet.pt``.

An EfficientNet-B5 encoder (``encoder.original_model.*``) and a decoder (``decoder.*``): a 1x1 conv on
the 1/32 features, four upsampling blocks that concatenate the encoder's skip features (bilinear with
aligned corners, conv-BN-LeakyReLU twice), a 3x3 conv giving the 1/8 prediction, and three per-pixel
MLPs (1x1 ``Conv1d``) that refine it at 1/4, 1/2 and full resolution. Each prediction has 4 channels:
a unit normal (x, y, z) and a concentration ``kappa`` (the uncertainty).

At inference the original evaluates its refinement MLPs on *every* pixel (the uncertainty-guided point
sampling with ``sampling_ratio`` 0.4 and ``importance_ratio`` 0.7 only runs in training), so the
output is deterministic; this module implements that inference path only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet import EfficientNetB5

MIN_KAPPA = 0.01


def normalize_prediction(x: torch.Tensor) -> torch.Tensor:
    """``(B, 4, ...)`` raw -> unit normal (``xyz / (|xyz| + 1e-10)``) and ``kappa = elu(k) + 1 + 0.01``."""
    xyz, kappa = x[:, :3], x[:, 3:]
    norm = torch.sqrt((xyz**2).sum(1, keepdim=True)) + 1e-10
    return torch.cat([xyz / norm, F.elu(kappa) + 1.0 + MIN_KAPPA], dim=1)


class NormalBaeEncoder(nn.Module):
    """Holds the backbone under ``original_model`` (the official key prefix)."""

    def __init__(self) -> None:
        super().__init__()
        self.original_model = EfficientNetB5()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.original_model(x)


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate, (3x3 conv, BN, LeakyReLU) x 2. Keys ``_net.{0,1,3,4}``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self._net = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self._net(torch.cat([x, skip], dim=1))


def point_mlp(cin: int) -> nn.Sequential:
    """Per-pixel MLP ``cin -> 128 -> 128 -> 128 -> 4`` as kernel-1 ``Conv1d`` layers (keys ``0, 2, 4, 6``)."""
    return nn.Sequential(
        nn.Conv1d(cin, 128, 1),
        nn.ReLU(),
        nn.Conv1d(128, 128, 1),
        nn.ReLU(),
        nn.Conv1d(128, 128, 1),
        nn.ReLU(),
        nn.Conv1d(128, 4, 1),
    )


class NormalBaeDecoder(nn.Module):
    """Decoder of the ``BN`` architecture; ``forward`` returns the four predictions (1/8, 1/4, 1/2, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2 = nn.Conv2d(2048, 2048, 1)
        self.up1 = UpBlock(2048 + 176, 1024)
        self.up2 = UpBlock(1024 + 64, 512)
        self.up3 = UpBlock(512 + 40, 256)
        self.up4 = UpBlock(256 + 24, 128)
        self.out_conv_res8 = nn.Conv2d(512, 4, 3, padding=1)
        self.out_conv_res4 = point_mlp(512 + 4)
        self.out_conv_res2 = point_mlp(256 + 4)
        self.out_conv_res1 = point_mlp(128 + 4)

    @staticmethod
    def _refine(mlp: nn.Sequential, feat: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Upsample features and the coarser prediction x2 (aligned corners) and run ``mlp`` on every pixel."""
        feat = F.interpolate(feat, scale_factor=2, mode="bilinear", align_corners=True)
        init = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=True)
        x = torch.cat([feat, init], dim=1)
        b, c, h, w = x.shape
        return normalize_prediction(mlp(x.reshape(b, c, h * w))).reshape(b, 4, h, w)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        f2, f4, f8, f16, f32 = features
        d0 = self.conv2(f32)
        d1 = self.up1(d0, f16)
        d2 = self.up2(d1, f8)
        d3 = self.up3(d2, f4)
        d4 = self.up4(d3, f2)
        res8 = normalize_prediction(self.out_conv_res8(d2))
        res4 = self._refine(self.out_conv_res4, d2, res8)
        res2 = self._refine(self.out_conv_res2, d3, res4)
        res1 = self._refine(self.out_conv_res1, d4, res2)
        return [res8, res4, res2, res1]


class NormalBaeNet(nn.Module):
    """NormalBAE (``NNET``, ``BN`` architecture): ``(B, 3, H, W)`` ImageNet-normalised RGB -> predictions.

    ``H`` and ``W`` should be multiples of 32 (the annotator pads to 64). Returns (forward) a list of
    four ``(B, 4, h, w)`` tensors at 1/8, 1/4, 1/2 and full resolution: channels 0-2 a unit surface
    normal in ``[-1, 1]``, channel 3 the concentration ``kappa > 0.01``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = NormalBaeEncoder()
        self.decoder = NormalBaeDecoder()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(x))

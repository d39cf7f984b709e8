"""The OpenPose networks of the ControlNet annotators: body (CMU's COCO model), hand and face.

All three share a VGG-19 stem (3x3 convolutions + ReLU, 2x2 max pooling) followed by refinement stages
of 7x7 convolutions that re-read the stem's features. Every convolution is a direct child of the
network, named as in the official files (``conv1_1``, ``Mconv7_stage6_L2``, ...), so the state-dict
keys are exactly the official flat layout: ``body_pose_model.pth`` / ``hand_pose_model.pth`` hold the
keys of the original (nested) pytorch-openpose modules without their first, block, component, which
the original ``transfer()`` put back when loading. :func:`flatten_state_dict` is that mapping the other
way round (nested -> flat) so a state dict of the original nested module loads too.

Inputs are BGR images as ``level / 256 - 0.5`` (float, about ``[-0.5, 0.5]``), ``(B, 3, H, W)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

BODY_FILE = "body_pose_model.pth"
HAND_FILE = "hand_pose_model.pth"
FACE_FILE = "facenet.pth"

# (name, in, out, kernel) or "pool"; kernel 3 and 7 are padded to keep the size, 1 is unpadded.
Layer = tuple[str, int, int, int] | str


def _vgg(head: Sequence[tuple[str, int, int, int]]) -> list[Layer]:
    return [
        ("conv1_1", 3, 64, 3),
        ("conv1_2", 64, 64, 3),
        "pool",
        ("conv2_1", 64, 128, 3),
        ("conv2_2", 128, 128, 3),
        "pool",
        ("conv3_1", 128, 256, 3),
        ("conv3_2", 256, 256, 3),
        ("conv3_3", 256, 256, 3),
        ("conv3_4", 256, 256, 3),
        "pool",
        ("conv4_1", 256, 512, 3),
        ("conv4_2", 512, 512, 3),
        *head,
    ]


def _refine(suffix: str, cin: int, cout: int) -> list[Layer]:
    """A refinement stage: five 7x7 convolutions, a 1x1, and the 1x1 output ``Mconv7``."""
    convs: list[Layer] = [(f"Mconv{i}_{suffix}", cin if i == 1 else 128, 128, 7) for i in range(1, 6)]
    return [*convs, (f"Mconv6_{suffix}", 128, 128, 1), (f"Mconv7_{suffix}", 128, cout, 1)]


class _Cascade(nn.Module):
    """Convolutions registered flat under their official names; ``run`` applies a list of them."""

    def _add(self, layers: Sequence[Layer]) -> None:
        for layer in layers:
            if isinstance(layer, str):
                continue
            name, cin, cout, k = layer
            self.add_module(name, nn.Conv2d(cin, cout, k, padding=k // 2))

    def run(self, layers: Sequence[Layer], x: torch.Tensor, relu_last: bool) -> torch.Tensor:
        """Apply ``layers`` in order, ReLU after each convolution except the last unless ``relu_last``."""
        for i, layer in enumerate(layers):
            if isinstance(layer, str):
                x = F.max_pool2d(x, 2, 2)
                continue
            x = getattr(self, layer[0])(x)
            if relu_last or i < len(layers) - 1:
                x = F.relu(x)
        return x


class BodyPoseNet(_Cascade):
    """OpenPose body network (18 COCO keypoints): VGG stem + 6 two-branch stages.

    Branch L1 predicts 38 part-affinity-field channels (19 limbs x (x, y)), branch L2 19 heatmaps
    (18 parts + background). Each stage after the first reads ``cat(L1, L2, stem)`` (185 channels).
    As in the original network, a ReLU follows the very last heatmap layer (``Mconv7_stage6_L2``):
    its list of layers without ReLU names ``Mconv7_stage6_L1`` twice and omits ``Mconv7_stage6_L2``.

    Forward: ``(B, 3, H, W)`` -> ``(paf (B, 38, H/8, W/8), heatmaps (B, 19, H/8, W/8))`` (floor of /8).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem: list[Layer] = _vgg([("conv4_3_CPM", 512, 256, 3), ("conv4_4_CPM", 256, 128, 3)])
        first: list[list[Layer]] = [
            [
                (f"conv5_1_CPM_L{b}", 128, 128, 3),
                (f"conv5_2_CPM_L{b}", 128, 128, 3),
                (f"conv5_3_CPM_L{b}", 128, 128, 3),
                (f"conv5_4_CPM_L{b}", 128, 512, 1),
                (f"conv5_5_CPM_L{b}", 512, cout, 1),
            ]
            for b, cout in ((1, 38), (2, 19))
        ]
        self.stages: list[tuple[list[Layer], list[Layer]]] = [(first[0], first[1])]
        for s in range(2, 7):
            self.stages.append((_refine(f"stage{s}_L1", 185, 38), _refine(f"stage{s}_L2", 185, 19)))
        self._add(self.stem)
        for l1, l2 in self.stages:
            self._add(l1)
            self._add(l2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.run(self.stem, x, relu_last=True)
        h = paf = heat = feats
        for s, (l1, l2) in enumerate(self.stages):
            paf = self.run(l1, h, relu_last=False)
            heat = self.run(l2, h, relu_last=s == len(self.stages) - 1)  # the original's extra ReLU
            h = torch.cat([paf, heat, feats], 1)
        return paf, heat


class HandPoseNet(_Cascade):
    """OpenPose hand network: VGG stem + 6 stages of 22 heatmaps (21 keypoints + background).

    Forward: ``(B, 3, H, W)`` -> ``(B, 22, H/8, W/8)`` (the last stage, no ReLU).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = _vgg(
            [
                ("conv4_3", 512, 512, 3),
                ("conv4_4", 512, 512, 3),
                ("conv5_1", 512, 512, 3),
                ("conv5_2", 512, 512, 3),
                ("conv5_3_CPM", 512, 128, 3),
            ]
        )
        self.stages: list[list[Layer]] = [[("conv6_1_CPM", 128, 512, 1), ("conv6_2_CPM", 512, 22, 1)]]
        self.stages += [_refine(f"stage{s}", 150, 22) for s in range(2, 7)]
        self._add(self.stem)
        for stage in self.stages:
            self._add(stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.run(self.stem, x, relu_last=True)
        out = self.run(self.stages[0], feats, relu_last=False)
        for stage in self.stages[1:]:
            out = self.run(stage, torch.cat([out, feats], 1), relu_last=False)
        return out


class FaceNet(_Cascade):
    """OpenPose face network of the ControlNet 1.1 annotator: the hand stem + 6 stages of 71 heatmaps.

    Forward: ``(B, 3, H, W)`` -> ``(B, 71, H/8, W/8)``, the last stage's maps (70 landmarks + background).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = HandPoseNet().stem
        self.stages: list[list[Layer]] = [[("conv6_1_CPM", 128, 512, 1), ("conv6_2_CPM", 512, 71, 1)]]
        self.stages += [_refine(f"stage{s}", 199, 71) for s in range(2, 7)]
        self._add(self.stem)
        for stage in self.stages:
            self._add(stage)

    forward = HandPoseNet.forward


def _blocks(net: nn.Module) -> dict[str, list[str]]:
    """The original modules' blocks: attribute name -> layer names (the first key component)."""
    names = lambda layers: [layer[0] for layer in layers if not isinstance(layer, str)]  # noqa: E731
    if isinstance(net, BodyPoseNet):
        blocks = {"model0": names(net.stem)}
        for s, (l1, l2) in enumerate(net.stages, start=1):
            blocks[f"model{s}_1"], blocks[f"model{s}_2"] = names(l1), names(l2)
        return blocks
    if isinstance(net, HandPoseNet):
        blocks = {"model1_0": names(net.stem), "model1_1": names(net.stages[0])}
        blocks.update({f"model{s}": names(stage) for s, stage in enumerate(net.stages[1:], start=2)})
        return blocks
    raise TypeError(f"no block layout for {type(net).__name__}")


def nest_state_dict(flat: Mapping[str, torch.Tensor], net: BodyPoseNet | HandPoseNet) -> dict[str, torch.Tensor]:
    """Flat official keys -> the original nested module's keys (``conv1_1.weight`` -> ``model0.conv1_1.weight``)."""
    owner = {layer: block for block, layers in _blocks(net).items() for layer in layers}
    return {f"{owner[k.split('.')[0]]}.{k}": v for k, v in flat.items()}


def flatten_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original ``transfer()`` mapping: drop a leading ``model*`` block component if present.

    Official files are already flat and come back unchanged.
    """
    if sd and all(k.split(".")[0].startswith("model") and k.count(".") == 2 for k in sd):
        return {k.split(".", 1)[1]: v for k, v in sd.items()}
    return dict(sd)

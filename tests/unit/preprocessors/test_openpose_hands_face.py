"""OpenPose's hand and face passes, and its hint's dtype, without controlnet-aux.

Stub networks put one peak at the centre of their maps, so every hand point lands at the centre of its hand box
and every face point at the centre of the face box (in image-normalised coordinates, in the JSON and drawn on the
hint). The default suite never ran the hand or face pass (only the reference suite does, with controlnet-aux).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import affordance.preprocessors.openpose as op
from affordance.preprocessors.errors import ParameterError
from affordance.preprocessors.openpose import BodyPoseNet, openpose
from affordance.preprocessors.openpose import decode as D

SIZE = 512
# one person (pixels of a 512 x 512 image): both arms and the head with eyes and ears (OpenPose's 18 parts)
PARTS = [
    (300, 120), (300, 170), (260, 170), (240, 230), (230, 290), (340, 170), (360, 230), (370, 290),
    (270, 290), (270, 370), (270, 450), (330, 290), (330, 370), (330, 450), (290, 110), (310, 110),
    (280, 115), (320, 115),
]  # fmt: skip


class _CentrePeak(nn.Module):
    """Stands in for the hand or face network: a Gaussian peak at the centre of every map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        yy = torch.arange(h // 8, dtype=torch.float32).view(-1, 1) - (h // 8 - 1) / 2
        xx = torch.arange(w // 8, dtype=torch.float32).view(1, -1) - (w // 8 - 1) / 2
        blob = torch.exp(-(yy**2 + xx**2) / 4.0)
        return blob.expand(n, self.channels, -1, -1).clone()


@pytest.fixture
def fixed_person(monkeypatch):
    candidate = np.concatenate([np.array(PARTS, np.float64), np.ones((18, 1)), np.arange(18)[:, None]], 1)
    subset = np.concatenate([np.arange(18.0), [30.0, 18.0]])[None]
    monkeypatch.setattr(op, "_body_maps", lambda net, bgr: [(None, None)] * len(bgr))
    monkeypatch.setattr(op, "decode_body", lambda heat, paf: (candidate, subset))
    return [tuple(map(float, p)) for p in PARTS]


def test_hand_and_face_points_are_the_centres_of_their_boxes(fixed_person):
    image = torch.rand(1, 3, SIZE, SIZE)
    hint, keypoints = openpose(
        image, BodyPoseNet(), _CentrePeak(22), _CentrePeak(71), False, True, True, resolution=SIZE
    )
    (person,) = keypoints[0]["people"]
    boxes = D.hand_boxes(fixed_person, SIZE, SIZE)
    assert [b[3] for b in boxes] == [True, False]  # left hand first
    canvas = (hint[0].permute(1, 2, 0) * 255).round()
    for (x, y, side, _is_left), key in zip(boxes, ("hand_left_keypoints_2d", "hand_right_keypoints_2d")):
        pts = np.array(person[key]).reshape(21, 3)
        cx, cy = x + side / 2, y + side / 2
        np.testing.assert_allclose(pts[:, 0] * SIZE, cx, atol=side / 64 + 1)
        np.testing.assert_allclose(pts[:, 1] * SIZE, cy, atol=side / 64 + 1)
        assert (pts[:, 2] == 1.0).all()
        assert canvas[int(cy), int(cx)].tolist() == [0.0, 0.0, 255.0]  # drawn: a blue hand keypoint
    fx, fy, fside = D.face_box(fixed_person, SIZE, SIZE)
    face = np.array(person["face_keypoints_2d"]).reshape(-1, 3)
    assert len(face) == 71
    np.testing.assert_allclose(face[:, 0] * SIZE, fx + fside / 2, atol=1.5)
    np.testing.assert_allclose(face[:, 1] * SIZE, fy + fside / 2, atol=1.5)
    assert canvas[int(fy + fside / 2), int(fx + fside / 2)].tolist() == [255.0, 255.0, 255.0]  # a face dot
    assert person["pose_keypoints_2d"][:2] == [300 / SIZE, 120 / SIZE]


def test_detect_poses_names_the_missing_hand_and_face_networks(fixed_person):
    rgb = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(ParameterError, match="hand_pose_model.pth"):
        op.detect_poses(np.zeros((1, SIZE, SIZE, 3), np.uint8), BodyPoseNet(), detect_hand=True)
    with pytest.raises(ParameterError, match="facenet.pth"):
        op.detect_poses(np.zeros((1, SIZE, SIZE, 3), np.uint8), BodyPoseNet(), detect_face=True)
    assert op.detect_poses(rgb, BodyPoseNet())[0][0]["left_hand"] is None  # not asked for: not detected


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_hint_comes_back_in_the_images_dtype(dtype):
    """As every preprocessor's: a half-precision image gets a half-precision hint (the contract test uses float32)."""
    image = torch.rand(1, 3, 64, 96).to(dtype)
    hint, keypoints = openpose(image, BodyPoseNet().eval(), resolution=64)  # detected at the image size
    assert hint.dtype == dtype and hint.shape == (1, 3, 64, 96) and len(keypoints) == 1

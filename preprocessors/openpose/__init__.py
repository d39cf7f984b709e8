"""OpenPose (body, hands, face) for the openpose ControlNets, as the ControlNet 1.0/1.1 annotator does it.

Pipeline per batch: the body network runs on the whole batch (images scaled so the height is 184 px,
the reference's single scale 0.5 x 368, padded to a multiple of 8 with level 128); its maps are brought
back to the detection size and decoded per image (:mod:`.decode`); hands and faces are cropped from the
body keypoints, and all crops of the batch run through their network together; the people are drawn
with the reference's colours (:mod:`.draw`). The networks see BGR levels as ``level / 256 - 0.5``.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..base import at_resolution, check_image, check_resolution, to_uint8_levels
from ..errors import ParameterError
from .decode import (
    decode_body,
    face_box,
    face_peaks,
    hand_boxes,
    hand_peaks,
    smart_resize,
    upsample_maps,
)
from .draw import draw_body, draw_face, draw_hand
from .model import (
    BODY_FILE,
    FACE_FILE,
    HAND_FILE,
    BodyPoseNet,
    FaceNet,
    HandPoseNet,
    flatten_state_dict,
    nest_state_dict,
)

__all__ = [
    "BODY_FILE",
    "FACE_FILE",
    "HAND_FILE",
    "BodyPoseNet",
    "FaceNet",
    "HandPoseNet",
    "detect_poses",
    "draw_poses",
    "flatten_state_dict",
    "nest_state_dict",
    "openpose",
    "poses_to_json",
]

LOG = logging.getLogger("affordance.preprocessors")

BOX_SIZE = 368
STRIDE = 8
PAD_VALUE = 128
HAND_SCALES = (0.5, 1.0, 1.5, 2.0)
HAND_MAP_SIZE = 128
FACE_INPUT = 384

Point = tuple[float, float]
Pose = dict[str, Any]  # {"body": [18 x Point|None], "left_hand", "right_hand", "face": [Point]|None}


def _pad(img: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad right/bottom to a multiple of :data:`STRIDE` with :data:`PAD_VALUE`; returns ``(bottom, right)``."""
    h, w = img.shape[:2]
    pb, pr = (-h) % STRIDE, (-w) % STRIDE
    return np.pad(img, ((0, pb), (0, pr), (0, 0)), constant_values=PAD_VALUE), (pb, pr)


def _net_input(images: list[np.ndarray], param: torch.Tensor) -> torch.Tensor:
    """Same-sized uint8 BGR ``(h, w, 3)`` images -> ``(N, 3, h, w)`` ``level / 256 - 0.5`` on the net's device."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    x = x.to(device=param.device, dtype=torch.float32)
    return (x / 256 - 0.5).to(param.dtype)


def _body_maps(net: BodyPoseNet, bgr: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Averaged body heatmaps ``(H, W, 19)`` and PAFs ``(H, W, 38)`` float64 per same-sized BGR image."""
    h, w = bgr[0].shape[:2]
    scale = 0.5 * BOX_SIZE / h
    scaled = [smart_resize(im, h * scale, w * scale) for im in bgr]
    padded = [_pad(im) for im in scaled]
    param = next(net.parameters())
    with torch.no_grad():
        paf, heat = net(_net_input([p for p, _ in padded], param))
    paf = paf.float().permute(0, 2, 3, 1).cpu().numpy()
    heat = heat.float().permute(0, 2, 3, 1).cpu().numpy()
    size = padded[0][0].shape[:2]
    out = []
    for i, (_, pad) in enumerate(padded):
        hm = upsample_maps(heat[i], size, pad, (h, w)).astype(np.float64)
        pf = upsample_maps(paf[i], size, pad, (h, w)).astype(np.float64)
        out.append((hm, pf))
    return out


def _hands(net: HandPoseNet, crops: list[np.ndarray]) -> list[np.ndarray]:
    """21 ``(x, y)`` peaks (pixels of the crop) per BGR uint8 crop; crops of all images run together."""
    if not crops:
        return []
    blurred = [cv2.GaussianBlur(c, (0, 0), 0.8) for c in crops]
    avg = [np.zeros((HAND_MAP_SIZE, HAND_MAP_SIZE, 22)) for _ in crops]
    param = next(net.parameters())
    for s in HAND_SCALES:
        side = s * BOX_SIZE
        padded = [_pad(smart_resize(c, side, side)) for c in blurred]
        with torch.no_grad():
            maps = net(_net_input([p for p, _ in padded], param)).float().permute(0, 2, 3, 1).cpu().numpy()
        size = padded[0][0].shape[:2]
        for i, (_, pad) in enumerate(padded):
            up = upsample_maps(maps[i], size, pad, (HAND_MAP_SIZE, HAND_MAP_SIZE))
            avg[i] += up / len(HAND_SCALES)
    return [hand_peaks(a, c.shape[0], c.shape[1]) for a, c in zip(avg, crops)]


def _faces(net: FaceNet, crops: list[np.ndarray]) -> list[np.ndarray]:
    """Face landmark peaks ``(n, 2)`` (pixels of the crop) per BGR uint8 crop, all crops in one batch."""
    if not crops:
        return []
    param = next(net.parameters())
    x = _net_input([smart_resize(c, FACE_INPUT, FACE_INPUT) for c in crops], param)
    with torch.no_grad():
        maps = net(x)
    out = []
    for i, c in enumerate(crops):
        m = F.interpolate(maps[i : i + 1].float(), c.shape[:2], mode="bilinear", align_corners=True)
        out.append(face_peaks(m[0].cpu().numpy()))
    return out


def _to_normalised(peaks: np.ndarray, x0: int, y0: int, height: int, width: int) -> list[Point]:
    """Crop peaks -> image-normalised float32 points; a coordinate at 0 becomes -1 (not drawn)."""
    p = peaks.astype(np.float32)
    px = np.where(p[:, 0] < 1e-6, -1, p[:, 0] + x0) / float(width)
    py = np.where(p[:, 1] < 1e-6, -1, p[:, 1] + y0) / float(height)
    return list(zip(px, py))


def detect_poses(
    images: np.ndarray,
    body_net: BodyPoseNet,
    hand_net: HandPoseNet | None = None,
    face_net: FaceNet | None = None,
    detect_hand: bool = False,
    detect_face: bool = False,
) -> list[list[Pose]]:
    """People in a batch of RGB uint8 images ``(B, H, W, 3)``.

    Returns:
        per image, a list of people ``{"body", "left_hand", "right_hand", "face"}``: body is 18
        normalised ``(x, y)`` or ``None``; hands 21 points, face up to 71 points, or ``None``.
    """
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]
    h, w = bgr[0].shape[:2]
    people: list[list[Pose]] = []
    hand_jobs: list[tuple[Pose, str, int, int, np.ndarray]] = []
    face_jobs: list[tuple[Pose, int, int, np.ndarray]] = []
    for im, (heat, paf) in zip(bgr, _body_maps(body_net, bgr)):
        candidate, subset = decode_body(heat, paf)
        found = []
        for person in subset:
            pixels = [None if i == -1 else (candidate[i][0], candidate[i][1]) for i in person[:18].astype(int)]
            pose: Pose = {
                "body": [None if p is None else (p[0] / float(w), p[1] / float(h)) for p in pixels],
                "left_hand": None,
                "right_hand": None,
                "face": None,
            }
            if detect_hand:
                for x, y, side, is_left in hand_boxes(pixels, h, w):
                    hand_jobs.append(
                        (pose, "left_hand" if is_left else "right_hand", x, y, im[y : y + side, x : x + side])
                    )
            if detect_face:
                box = face_box(pixels, h, w)
                if box is not None:
                    x, y, side = box
                    face_jobs.append((pose, x, y, im[y : y + side, x : x + side]))
            found.append(pose)
        people.append(found)
    if hand_jobs:
        if hand_net is None:
            raise ParameterError("detect_hand needs the hand network (hand_pose_model.pth).")
        for (pose, key, x, y, _), peaks in zip(hand_jobs, _hands(hand_net, [j[4] for j in hand_jobs])):
            pose[key] = _to_normalised(peaks, x, y, h, w)
    if face_jobs:
        if face_net is None:
            raise ParameterError("detect_face needs the face network (facenet.pth).")
        for (pose, x, y, _), peaks in zip(face_jobs, _faces(face_net, [j[3] for j in face_jobs])):
            if peaks.ndim == 2 and peaks.shape[1] == 2 and len(peaks):
                pose["face"] = _to_normalised(peaks, x, y, h, w)
    return people


def draw_poses(
    people: list[Pose], height: int, width: int, body: bool = True, hand: bool = True, face: bool = True
) -> np.ndarray:
    """Render people on a black ``(height, width, 3)`` uint8 RGB canvas (each person: body, hands, face)."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for pose in people:
        if body:
            draw_body(canvas, pose["body"])
        if hand:
            draw_hand(canvas, pose["left_hand"])
            draw_hand(canvas, pose["right_hand"])
        if face:
            draw_face(canvas, pose["face"])
    return canvas


def poses_to_json(people: list[Pose], height: int, width: int) -> dict[str, Any]:
    """The OpenPose JSON of one image (comfyui_controlnet_aux's ``POSE_KEYPOINT`` entries).

    Coordinates are normalised to ``[0, 1]``; every point is ``x, y, 1.0`` and a missing body part is
    ``0, 0, 0``; absent hands/face are ``None``.
    """

    def flat(points: list[Point | None] | None) -> list[float] | None:
        if not points:
            return None
        return [v for p in points for v in ((float(p[0]), float(p[1]), 1.0) if p is not None else (0.0, 0.0, 0.0))]

    return {
        "people": [
            {
                "pose_keypoints_2d": flat(p["body"]),
                "face_keypoints_2d": flat(p["face"]),
                "hand_left_keypoints_2d": flat(p["left_hand"]),
                "hand_right_keypoints_2d": flat(p["right_hand"]),
            }
            for p in people
        ],
        "canvas_height": height,
        "canvas_width": width,
    }


def openpose(
    image: torch.Tensor,
    body_net: BodyPoseNet,
    hand_net: HandPoseNet | None = None,
    face_net: FaceNet | None = None,
    detect_body: bool = True,
    detect_hand: bool = False,
    detect_face: bool = False,
    resolution: int = 512,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """OpenPose skeletons for the openpose ControlNets (ControlNet 1.1 ``openpose``/``_hand``/``_face``/``_full``).

    Args:
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        body_net: loaded :class:`BodyPoseNet` (``body_pose_model.pth``); people are always found with it.
        hand_net: :class:`HandPoseNet` (``hand_pose_model.pth``), needed when ``detect_hand``.
        face_net: :class:`FaceNet` (``facenet.pth``), needed when ``detect_face``.
        detect_body: draw the body skeletons.
        detect_hand: detect and draw hands.
        detect_face: detect and draw face landmarks.
        resolution: detection resolution (short side).

    Returns:
        ``(hint, keypoints)``: hint ``(B, 3, H, W)`` in ``[0, 1]`` at the input size (black background);
        keypoints, per image, the OpenPose JSON dict of :func:`poses_to_json`; its canvas is the hint's size
        (normalised coordinates land on the hint), as comfyui_controlnet_aux's consumers expect.
    """
    image = check_image(image)
    if detect_hand and hand_net is None:
        raise ParameterError("detect_hand needs the hand network (hand_pose_model.pth).")
    if detect_face and face_net is None:
        raise ParameterError("detect_face needs the face network (facenet.pth).")
    keypoints: list[dict[str, Any]] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        rgb = to_uint8_levels(x).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        people = detect_poses(rgb, body_net, hand_net, face_net, detect_hand, detect_face)
        canvases = [draw_poses(p, h, w, detect_body, detect_hand, detect_face) for p in people]
        keypoints.extend(poses_to_json(p, h, w) for p in people)
        hint = torch.from_numpy(np.stack(canvases)).permute(0, 3, 1, 2)
        return hint.to(device=x.device, dtype=x.dtype) / 255.0

    hint = at_resolution(image, check_resolution(resolution), run, pad=False)
    for entry in keypoints:
        entry["canvas_height"], entry["canvas_width"] = int(hint.shape[-2]), int(hint.shape[-1])
    return hint, keypoints

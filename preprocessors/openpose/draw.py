"""Rendering of OpenPose keypoints in the ControlNet style (the colours the openpose ControlNets learnt).

Keypoints are normalised to ``[0, 1]`` (x by the width, y by the height); the canvas is an ``(H, W, 3)``
uint8 RGB array drawn in place with OpenCV, pixel for pixel as the reference annotator draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

Point = tuple[float, float]

# Body limbs drawn (1-based parts) and the 18 colours (RGB), one per limb and per part.
BODY_LIMBS = [
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
    (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
]  # fmt: skip
BODY_COLORS = [
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
]  # fmt: skip
STICK_WIDTH = 4
HAND_EDGES = [
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
]  # fmt: skip
EPS = 0.01


def _hue_rgb(h: float) -> tuple[float, float, float]:
    """Fully saturated, full-value HSV -> RGB in ``[0, 255]`` (matplotlib's ``hsv_to_rgb`` arithmetic)."""
    h6 = h * 6.0
    i = int(h6)
    f = h6 - i
    q = 1.0 * (1.0 - 1.0 * f)
    t = 1.0 * (1.0 - 1.0 * (1.0 - f))
    r, g, b = [(1.0, t, 0.0), (q, 1.0, 0.0), (0.0, 1.0, t), (0.0, q, 1.0), (t, 0.0, 1.0), (1.0, 0.0, q)][i % 6]
    return (r * 255, g * 255, b * 255)


HAND_COLORS = [_hue_rgb(i / float(len(HAND_EDGES))) for i in range(len(HAND_EDGES))]


def draw_body(canvas: np.ndarray, keypoints: Sequence[Point | None]) -> np.ndarray:
    """18 body keypoints: limbs as ellipses at 60 % colour (stick width 4), then joints as 4 px discs."""
    h, w = canvas.shape[:2]
    for (a, b), color in zip(BODY_LIMBS, BODY_COLORS):
        pa, pb = keypoints[a - 1], keypoints[b - 1]
        if pa is None or pb is None:
            continue
        ys = np.array([pa[0], pb[0]]) * float(w)  # the reference's names: Y holds x, X holds y
        xs = np.array([pa[1], pb[1]]) * float(h)
        cy, cx = np.mean(ys), np.mean(xs)
        length = ((xs[0] - xs[1]) ** 2 + (ys[0] - ys[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(xs[0] - xs[1], ys[0] - ys[1]))
        polygon = cv2.ellipse2Poly((int(cy), int(cx)), (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(float(c) * 0.6) for c in color])
    for p, color in zip(keypoints, BODY_COLORS):
        if p is None:
            continue
        cv2.circle(canvas, (int(p[0] * w), int(p[1] * h)), 4, color, thickness=-1)
    return canvas


def draw_hand(canvas: np.ndarray, keypoints: Sequence[Point] | None) -> np.ndarray:
    """21 hand keypoints: 20 rainbow bones (2 px) and blue 4 px joints; points at the origin are skipped."""
    if not keypoints:
        return canvas
    h, w = canvas.shape[:2]
    for (a, b), color in zip(HAND_EDGES, HAND_COLORS):
        x1, y1 = int(keypoints[a][0] * w), int(keypoints[a][1] * h)
        x2, y2 = int(keypoints[b][0] * w), int(keypoints[b][1] * h)
        if x1 > EPS and y1 > EPS and x2 > EPS and y2 > EPS:
            cv2.line(canvas, (x1, y1), (x2, y2), color, thickness=2)
    for p in keypoints:
        x, y = int(p[0] * w), int(p[1] * h)
        if x > EPS and y > EPS:
            cv2.circle(canvas, (x, y), 4, (0, 0, 255), thickness=-1)
    return canvas


def draw_face(canvas: np.ndarray, keypoints: Sequence[Point] | None) -> np.ndarray:
    """Face landmarks as white 3 px discs; points at the origin are skipped."""
    if not keypoints:
        return canvas
    h, w = canvas.shape[:2]
    for p in keypoints:
        x, y = int(p[0] * w), int(p[1] * h)
        if x > EPS and y > EPS:
            cv2.circle(canvas, (x, y), 3, (255, 255, 255), thickness=-1)
    return canvas

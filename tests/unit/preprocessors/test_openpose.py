"""OpenPose: network layouts (official flat keys), loading, decoding on synthetic maps, rendering, contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from affordance.preprocessors.errors import ImageInputError, ParameterError
from affordance.preprocessors.openpose import (
    BODY_FILE,
    FACE_FILE,
    HAND_FILE,
    BodyPoseNet,
    FaceNet,
    HandPoseNet,
    draw_poses,
    flatten_state_dict,
    nest_state_dict,
    openpose,
    poses_to_json,
)
from affordance.preprocessors.openpose import decode as D
from affordance.preprocessors.openpose.draw import BODY_COLORS, HAND_COLORS, draw_body, draw_face, draw_hand
from affordance.preprocessors.weights import AnnotatorWeightsError, load_annotator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
NETS = {"body": (BodyPoseNet, BODY_FILE), "hand": (HandPoseNet, HAND_FILE), "face": (FaceNet, FACE_FILE)}


def _random(net: torch.nn.Module, seed: int = 0, gain: float = 1.0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(net.named_parameters()):
            fan_in = p[0].numel() if p.ndim > 1 else 0
            p.copy_(torch.randn(p.shape, generator=g) * (gain * (2.0 / fan_in) ** 0.5 if fan_in else 0.05))
    return net.eval()


# ---------------------------------------------------------------------------------------------- networks


@pytest.mark.parametrize("name", NETS)
def test_keys_equal_the_official_flat_layout(name):
    fixture = json.loads((FIXTURES / f"annotator_openpose_{name}_keys.json").read_text())["keys"]
    assert {k: list(v.shape) for k, v in NETS[name][0]().state_dict().items()} == fixture
    assert all("." not in k.rsplit(".", 1)[0] for k in fixture)  # flat: "<layer>.<weight|bias>"


def test_parameter_counts():
    counts = {n: sum(v.numel() for v in cls().state_dict().values()) for n, (cls, _) in NETS.items()}
    assert counts == {"body": 52_311_446, "hand": 36_832_324, "face": 38_425_706}


def test_output_shapes_and_the_final_heatmap_relu():
    body = _random(BodyPoseNet())
    with torch.no_grad():
        paf, heat = body(torch.rand(2, 3, 64, 80) - 0.5)
    assert paf.shape == (2, 38, 8, 10) and heat.shape == (2, 19, 8, 10)
    assert heat.min() >= 0  # the original's ReLU after Mconv7_stage6_L2
    assert paf.min() < 0  # none after Mconv7_stage6_L1
    x = torch.rand(1, 3, 32, 40) - 0.5
    with torch.no_grad():
        assert HandPoseNet()(x).shape == (1, 22, 4, 5)
        assert FaceNet()(x).shape == (1, 71, 4, 5)


def test_flat_key_mapping_round_trip():
    for net, nested_key in (
        (BodyPoseNet(), "model6_2.Mconv7_stage6_L2.bias"),
        (HandPoseNet(), "model1_0.conv5_3_CPM.weight"),
    ):
        flat = net.state_dict()
        nested = nest_state_dict(flat, net)
        assert nested_key in nested and len(nested) == len(flat)
        assert "model0.conv1_1.weight" in nested or "model1_0.conv1_1.weight" in nested
        back = flatten_state_dict(nested)
        assert list(back) == list(flat) and all(back[k] is flat[k] for k in flat)
        assert flatten_state_dict(flat) == dict(flat)  # official files pass unchanged
    body = BodyPoseNet().state_dict()
    nested = nest_state_dict(body, BodyPoseNet())
    assert nested["model1_1.conv5_5_CPM_L1.weight"] is body["conv5_5_CPM_L1.weight"]
    assert nested["model0.conv4_4_CPM.bias"] is body["conv4_4_CPM.bias"]


@pytest.mark.parametrize("wrap", ["plain", "module", "state_dict", "nested"])
def test_loader_reads_official_layout(tmp_path, wrap):
    net = _random(HandPoseNet(), 3)
    sd = net.state_dict()
    if wrap == "module":
        sd = {"module." + k: v for k, v in sd.items()}
    elif wrap == "state_dict":
        sd = {"state_dict": sd}
    elif wrap == "nested":  # a state dict of the original nested module, flattened as transfer() would
        sd = flatten_state_dict(nest_state_dict(sd, net))
    torch.save(sd, tmp_path / HAND_FILE)
    loaded = load_annotator(tmp_path / HAND_FILE, HandPoseNet(), HAND_FILE)
    x = torch.rand(1, 3, 32, 32) - 0.5
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_wrong_file_under_official_name(tmp_path):
    torch.save(HandPoseNet().state_dict(), tmp_path / BODY_FILE)
    with pytest.raises(AnnotatorWeightsError, match=r"does not hold the weights of body_pose_model.pth"):
        load_annotator(tmp_path / BODY_FILE, BodyPoseNet(), BODY_FILE)
    torch.save(nest_state_dict(BodyPoseNet().state_dict(), BodyPoseNet()), tmp_path / BODY_FILE)
    with pytest.raises(AnnotatorWeightsError, match="missing"):  # nested keys are not the official layout
        load_annotator(tmp_path / BODY_FILE, BodyPoseNet(), BODY_FILE)


# ---------------------------------------------------------------------------------------------- decoding

# COCO-18 template (x, y) in a 60 x 150 box: nose, neck, R shoulder/elbow/wrist, L shoulder/elbow/wrist,
# R hip/knee/ankle, L hip/knee/ankle, R eye, L eye, R ear, L ear.
TEMPLATE = np.array(
    [
        (30, 12), (30, 30), (15, 30), (10, 55), (8, 80), (45, 30), (50, 55), (52, 80), (20, 80),
        (20, 110), (20, 140), (40, 80), (40, 110), (40, 140), (25, 7), (35, 7), (18, 10), (42, 10),
    ]
)  # fmt: skip


def _synthetic_maps(people: list[np.ndarray], h: int = 200, w: int = 260, amp: float = 1.0):
    """Heatmaps with a Gaussian blob (sigma 1.5, value ``amp`` at the part) per part, and unit-vector PAFs
    (within 1.5 px of each limb) -- what a perfect network would output for these skeletons."""
    heat = np.zeros((h, w, 19))
    paf = np.zeros((h, w, 38))
    yy, xx = np.mgrid[:h, :w]
    for parts in people:
        for i, (x, y) in enumerate(parts):
            if x >= 0:
                heat[:, :, i] = np.maximum(heat[:, :, i], amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2)))
        for (a, b), (cx, cy) in zip(D.LIMB_SEQ, D.PAF_CHANNELS):
            pa, pb = parts[a - 1].astype(float), parts[b - 1].astype(float)
            if pa[0] < 0 or pb[0] < 0:
                continue
            v = pb - pa
            u = v / np.linalg.norm(v)
            t = np.clip(((xx - pa[0]) * v[0] + (yy - pa[1]) * v[1]) / (v @ v), 0, 1)
            near = np.hypot(xx - (pa[0] + t * v[0]), yy - (pa[1] + t * v[1])) <= 1.5
            paf[near, cx], paf[near, cy] = u[0], u[1]
    return heat, paf


def test_two_people_are_decoded_exactly_as_constructed():
    p1, p2 = TEMPLATE + (20, 30), TEMPLATE + (150, 25)
    fragment = np.full((18, 2), -1)
    fragment[0], fragment[1] = (230, 20), (230, 40)  # nose + neck only: fewer than 4 parts, dropped
    heat, paf = _synthetic_maps([p1, p2, fragment])
    candidate, subset = D.decode_body(heat, paf)
    # Peaks: every part of both people (and the fragment), raster order within a part, ids consecutive.
    assert candidate.shape == (18 * 2 + 2, 4)
    assert np.array_equal(candidate[:, 3], np.arange(len(candidate)))
    np.testing.assert_allclose(candidate[:, 2], 1.0)
    assert len(subset) == 2
    for row in subset:
        pts = candidate[row[:18].astype(int), :2]
        person = p1 if pts[0, 0] < 100 else p2
        assert np.array_equal(pts, person)
        assert row[19] == 18
        # 18 parts of score 1 + the 17 limbs that added a part, each scoring ~1 (unit PAF along the limb).
        assert row[18] == pytest.approx(35.0, abs=1e-6)
    assert {bool(candidate[int(r[0]), 0] < 100) for r in subset} == {True, False}


def test_missing_parts_and_weak_peaks():
    person = TEMPLATE + (40, 30)
    person[4] = person[7] = (-1, -1)  # no wrists
    heat, paf = _synthetic_maps([person])
    heat[100, 200, 10] = 0.05  # too weak a peak for any part (threshold 0.1)
    candidate, subset = D.decode_body(heat, paf)
    assert len(candidate) == 16 and len(subset) == 1
    row = subset[0]
    assert row[4] == -1 and row[7] == -1 and row[19] == 16
    assert np.array_equal(candidate[row[:18][row[:18] >= 0].astype(int), :2], np.delete(person, [4, 7], 0))


def test_nothing_found():
    candidate, subset = D.decode_body(np.zeros((40, 50, 19)), np.zeros((40, 50, 38)))
    assert candidate.shape == (0,) and subset.shape == (0, 20)


def test_peaks_and_limb_scores_by_hand():
    heat = np.zeros((30, 40, 19))
    heat[10, 12, 0] = heat[20, 30, 0] = 20.0  # single pixels: about 0.35 after the sigma-3 blur
    peaks = D.find_peaks(heat)
    assert [len(p) for p in peaks] == [2] + [0] * 17
    assert peaks[0][:, [0, 1, 3]].tolist() == [[12, 10, 0], [30, 20, 1]] and peaks[0][:, 2].tolist() == [20.0, 20.0]
    a = np.array([[5.0, 5.0, 1.0, 0.0]])
    b = np.array([[14.0, 5.0, 1.0, 1.0], [5.0, 14.0, 1.0, 2.0]])
    paf = np.zeros((30, 40, 2))
    paf[:, :, 0] = 0.5  # points along +x with strength 0.5
    rows = D.score_limb(a, b, paf, height=30)
    assert rows.tolist() == [[0.0, 1.0, 0.5, 0.0, 0.0]]  # the vertical pair scores 0: rejected
    # Distance prior min(0.5 * height / length - 1, 0): 0.5 * 4 / 9 - 1 = -0.78 outweighs the mean 0.5.
    assert D.score_limb(a, b, paf, height=4).shape == (0, 5)


def test_gaussian_filter_matches_scipy_bit_for_bit():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).random((37, 45, 3))
    assert np.array_equal(D.gaussian_filter(x, 3.0), ndimage.gaussian_filter(x, sigma=(3, 3, 0)))
    small = np.random.default_rng(1).random((9, 7, 1))  # shorter than the kernel radius: repeated mirroring
    assert np.array_equal(D.gaussian_filter(small, 3.0), ndimage.gaussian_filter(small, sigma=(3, 3, 0)))


def test_hand_and_face_peaks():
    yy, xx = np.mgrid[:128, :128]
    maps = np.zeros((128, 128, 22))
    maps[:, :, 0] = 0.3 * np.exp(-((xx - 40) ** 2 + (yy - 30) ** 2) / 20.0)
    maps[:, :, 0] += 0.2 * np.exp(-((xx - 100) ** 2 + (yy - 90) ** 2) / 200.0)  # lower but larger: wins
    # the same with the larger blob first in raster order (components are told apart by their own labels)
    maps[:, :, 1] = 0.2 * np.exp(-((xx - 30) ** 2 + (yy - 20) ** 2) / 200.0)
    maps[:, :, 1] += 0.3 * np.exp(-((xx - 100) ** 2 + (yy - 100) ** 2) / 20.0)
    peaks = D.hand_peaks(maps, 256, 64)
    assert peaks.shape == (21, 2)
    assert peaks[0].tolist() == [int(100 * 64 / 128), int(90 * 256 / 128)]
    assert peaks[1].tolist() == [int(30 * 64 / 128), int(20 * 256 / 128)]
    assert (peaks[2:] == 0).all()  # nothing above the threshold
    face = np.zeros((71, 20, 30), np.float32)
    face[3, 5, 7] = face[3, 15, 20] = 0.9  # a tie: the first in raster order
    face[10, 2, 3] = 0.06
    assert D.face_peaks(face).tolist() == [[7, 5], [3, 2]]


def test_boxes():
    body: list = [None] * 18
    body[2], body[3], body[4] = (100.0, 100.0), (100.0, 160.0), (100.0, 220.0)  # right arm straight down
    assert D.hand_boxes(body, 480, 640) == [(int(100 - 45), int(220 + 0.33 * 60 - 45), 90, False)]
    body[0], body[14] = (300.0, 50.0), (310.0, 45.0)
    assert D.face_box(body, 480, 640) == (270, 20, 60)
    body[14] = None
    assert D.face_box(body, 480, 640) is None


# ---------------------------------------------------------------------------------------------- rendering


def test_body_rendering_colours():
    kp: list = [None] * 18
    kp[1], kp[2] = (0.5, 0.5), (0.25, 0.5)  # neck, right shoulder: limb 0 (red)
    canvas = draw_body(np.zeros((100, 200, 3), np.uint8), kp)
    assert canvas[50, 100].tolist() == list(BODY_COLORS[1]) and canvas[50, 50].tolist() == list(BODY_COLORS[2])
    assert canvas[50, 75].tolist() == [int(255 * 0.6), 0, 0]  # limb body at 60 %
    assert canvas[40, 75].tolist() == [0, 0, 0]  # stick half-width 4
    assert HAND_COLORS[0] == (255.0, 0.0, 0.0) and len(HAND_COLORS) == 20
    hand = [(0.1 + 0.01 * i, 0.5) for i in range(21)]
    out = draw_hand(np.zeros((100, 200, 3), np.uint8), hand)
    assert out[50, 20].tolist() == [0, 0, 255]
    face = draw_face(np.zeros((100, 200, 3), np.uint8), [(0.5, 0.5), (0.0, 0.0)])
    assert face[50, 100].tolist() == [255, 255, 255] and face[0, 0].tolist() == [0, 0, 0]


def test_json_format():
    people = [{"body": [(0.5, 0.25)] + [None] * 17, "left_hand": None, "right_hand": [(0.1, 0.2)] * 21, "face": None}]
    out = poses_to_json(people, 64, 80)
    assert out["canvas_height"] == 64 and out["canvas_width"] == 80
    person = out["people"][0]
    assert person["pose_keypoints_2d"][:6] == [0.5, 0.25, 1.0, 0.0, 0.0, 0.0] and len(person["pose_keypoints_2d"]) == 54
    assert person["hand_left_keypoints_2d"] is None and person["face_keypoints_2d"] is None
    assert len(person["hand_right_keypoints_2d"]) == 63
    json.dumps(out)
    canvas = draw_poses(people, 64, 80)
    assert canvas.shape == (64, 80, 3) and canvas[16, 40].tolist() == list(BODY_COLORS[0])


def test_draw_poses_draws_every_part_unless_told_not_to():
    """By default a person's body, hands and face are all drawn (each as its own drawer draws it)."""
    hand = [(0.1 + 0.02 * i, 0.2 + 0.01 * i) for i in range(21)]
    face = [(0.25, 0.5), (0.3, 0.55)]
    person = {"body": [None] * 18, "left_hand": None, "right_hand": None, "face": None}
    blank = np.zeros((64, 80, 3), np.uint8)
    for part, drawer, points in (("right_hand", draw_hand, hand), ("left_hand", draw_hand, hand), ("face", draw_face, face)):
        people = [person | {part: points}]
        want = drawer(blank.copy(), points)
        assert want.any() and np.array_equal(draw_poses(people, 64, 80), want), part
        off = {"hand": False} if "hand" in part else {"face": False}
        assert not draw_poses(people, 64, 80, **off).any(), part


# ---------------------------------------------------------------------------------------------- contract


def test_openpose_contract():
    body = _random(BodyPoseNet(), 1, gain=0.9)
    x = torch.rand(2, 3, 50, 70)
    hint, keypoints = openpose(x, body, resolution=64)
    assert hint.shape == (2, 3, 50, 70) and hint.dtype == x.dtype
    assert 0 <= hint.min() and hint.max() <= 1
    assert len(keypoints) == 2 and all(set(k) == {"people", "canvas_width", "canvas_height"} for k in keypoints)
    # The canvas is the size of the hint it comes with (detected at 64 x 90, returned at 50 x 70), so consumers
    # that scale the normalised keypoints by it (comfyui_controlnet_aux's pose nodes) land on the hint's pixels.
    assert all((k["canvas_height"], k["canvas_width"]) == (50, 70) for k in keypoints)
    hint, _ = openpose(x[:1], body, detect_body=False, resolution=64)
    assert hint.abs().max() == 0  # nothing drawn


def test_openpose_on_a_very_tall_image():
    """The body pass scales the height to 184 px: a 40 x 8192 image (at resolution 64: 64 x 13107) had its width
    truncated to 0 px and OpenCV raised an assertion error, in the node as in the command line."""
    body = _random(BodyPoseNet(), 1, gain=0.9)
    hint, keypoints = openpose(torch.rand(1, 3, 8192, 40), body, resolution=64)
    assert hint.shape == (1, 3, 8192, 40) and len(keypoints) == 1


def test_openpose_bad_input():
    body = BodyPoseNet()
    with pytest.raises(ParameterError, match="hand_pose_model.pth"):
        openpose(torch.rand(1, 3, 32, 32), body, detect_hand=True)
    with pytest.raises(ParameterError, match="facenet.pth"):
        openpose(torch.rand(1, 3, 32, 32), body, detect_face=True)
    with pytest.raises(ParameterError):
        openpose(torch.rand(1, 3, 32, 32), body, resolution=2)
    with pytest.raises(ImageInputError):
        openpose(torch.rand(1, 3, 4, 4), body)


def test_limb_table_is_openposes():
    """The 19 limbs (1-based COCO-18 parts) and their PAF channel pairs, as published with the body model
    (written out here rather than taken from the module, whose tables the synthetic-map tests also use)."""
    assert D.LIMB_SEQ == [
        (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
        (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18),
    ]  # fmt: skip
    assert D.PAF_CHANNELS == [
        (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
        (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
    ]  # fmt: skip


def test_two_partial_people_joined_by_a_limb_are_merged():
    """Neck-shoulder (person A) and eye-ear (person B) share no part; a shoulder-ear limb joins them: one person
    with all four parts, their candidate scores and the three limb scores summed."""
    cand = np.array([[10, 10, 0.9, 0], [20, 10, 0.9, 1], [30, 5, 0.9, 2], [35, 8, 0.9, 3]], float)
    conn: list = [None] * 19
    conn[0] = np.array([[0, 1, 0.8, 0, 1]], float)  # limb (2, 3): neck - right shoulder
    conn[14] = np.array([[2, 3, 0.8, 2, 3]], float)  # limb (15, 17): right eye - right ear
    conn[17] = np.array([[1, 3, 0.8, 1, 3]], float)  # limb (3, 17): right shoulder - right ear
    people = D.assemble(conn, cand)
    assert people.shape == (1, 20)
    expected = [-1.0] * 18
    expected[1], expected[2], expected[14], expected[16] = 0, 1, 2, 3
    assert people[0, :18].tolist() == expected
    assert people[0, 18] == pytest.approx(4 * 0.9 + 3 * 0.8) and people[0, 19] == 4


def test_a_limb_between_two_overlapping_people_gives_its_end_to_the_first():
    """Two people who share parts (both have a neck and a right shoulder) are never merged: a shoulder-ear limb from
    person A's shoulder to person B's ear (B reached it through nose and eye) writes the ear into A as well, adding
    one part, the ear's score and the limb's score to A; B is left as it was. The reference (body.py) takes the same
    branch: two subsets found, a part in both, so part B goes to the first subset found."""
    # (x, y, score, id), by part: nose 0; necks 1, 2; right shoulders 3, 4; left shoulder 5; right eye 6; right ear 7
    scores = [0.5, 0.75, 0.625, 0.875, 0.5, 0.75, 0.625, 0.875]
    cand = np.array([[10 * i, 5 * i, s, i] for i, s in enumerate(scores)], float)
    conn: list = [None] * 19
    conn[0] = np.array([[1, 3, 0.5, 0, 0], [2, 4, 0.5, 1, 1]], float)  # (2, 3) neck - right shoulder: A and B begin
    conn[1] = np.array([[1, 5, 0.5, 0, 0]], float)  # (2, 6) neck - left shoulder: A
    conn[12] = np.array([[2, 0, 0.5, 1, 0]], float)  # (2, 1) neck - nose: B
    conn[13] = np.array([[0, 6, 0.5, 0, 0]], float)  # (1, 15) nose - right eye: B
    conn[14] = np.array([[6, 7, 0.5, 0, 0]], float)  # (15, 17) right eye - right ear: B
    conn[17] = np.array([[3, 7, 0.25, 0, 0]], float)  # (3, 17) A's right shoulder - B's right ear
    people = D.assemble(conn, cand)
    assert people.shape == (2, 20)
    a, b = [-1.0] * 18, [-1.0] * 18
    a[1], a[2], a[5], a[16] = 1, 3, 5, 7
    b[0], b[1], b[2], b[14], b[16] = 0, 2, 4, 6, 7
    assert people[0, :18].tolist() == a and people[1, :18].tolist() == b
    assert people[0, 19] == 4 and people[1, 19] == 5
    # A: neck + right shoulder + limb, left shoulder + limb, then the ear + the shoulder-ear limb
    assert people[0, 18] == (0.75 + 0.875 + 0.5) + (0.75 + 0.5) + (0.875 + 0.25)
    assert people[1, 18] == (0.625 + 0.5 + 0.5) + (0.5 + 0.5) + (0.625 + 0.5) + (0.875 + 0.5)


def test_hand_edge_colours_go_round_the_hue_circle():
    import colorsys

    for i, colour in enumerate(HAND_COLORS):
        assert colour == pytest.approx(tuple(255 * c for c in colorsys.hsv_to_rgb(i / 20, 1.0, 1.0)))


def test_each_part_joins_one_limb_at_most():
    """Two A parts and a PAF pointing down everywhere: the best pairs are taken greedily, a B part only once."""
    a = np.array([[10, 10, 1, 0], [14, 10, 1, 1]], float)
    b = np.array([[10, 40, 1, 2], [40, 40, 1, 3]], float)
    paf = np.zeros((60, 60, 2))
    paf[..., 1] = 1.0
    assert D.score_limb(a, b, paf, 60)[:, :2].tolist() == [[0, 2], [1, 3]]


def test_a_hand_box_at_the_right_edge_is_clipped_to_the_image():
    body: list = [None] * 18
    body[2], body[3], body[4] = (150.0, 50.0), (170.0, 80.0), (190.0, 110.0)
    x, y, side, _ = D.hand_boxes(body, 200, 200)[0]
    assert (x, y) == (169, 92) and x + side <= 200 and side == 30


def test_a_peak_keeps_its_place_when_the_network_input_was_padded():
    """The body pass pads a non-square image's width to a multiple of 8; the padding is cropped off before the maps
    are resized to the image, so keypoints do not shift (the reference photos are square: no padding)."""
    maps = np.zeros((4, 18, 2), np.float32)  # 16 columns of image, 2 of padding (16 px of the network input)
    maps[2, 8] = 1.0
    maps[:, 16:, 1] = 0.5  # whatever the network says about the padding
    out = D.upsample_maps(maps, (32, 144), (0, 16), (32, 128))
    same = D.upsample_maps(maps[:, :16], (32, 128), (0, 0), (32, 128))
    assert out.shape == (32, 128, 2)
    np.testing.assert_allclose(out[:, :96], same[:, :96], atol=1e-6)
    y, x = np.unravel_index(out[:, :, 0].argmax(), out.shape[:2])
    assert y in (19, 20) and x in (67, 68)  # source pixel (2, 8) covers rows 16..23, columns 64..71


def test_smart_resize_shrinks_by_area_and_grows_by_lanczos():
    import cv2

    x = np.random.default_rng(2).random((40, 60, 3)).astype(np.float32)
    np.testing.assert_array_equal(D.smart_resize(x, 20, 30), cv2.resize(x, (30, 20), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(D.smart_resize(x, 80, 120), cv2.resize(x, (120, 80), interpolation=cv2.INTER_LANCZOS4))


def test_smart_resize_truncates_target_sides_but_keeps_one_pixel():
    """Fractional sides are truncated as the reference does; a side under 1 px (the body pass's 184 px height of a
    very tall image gives its width as a fraction) becomes exactly 1 px, not 0 (OpenCV's assertion) nor more."""
    x = np.random.default_rng(3).random((40, 60, 3)).astype(np.float32)
    assert D.smart_resize(x, 20.9, 30.9).shape == (20, 30, 3)
    assert D.smart_resize(x, 0.4, 30).shape == (1, 30, 3)
    assert D.smart_resize(x, 30, 0.9).shape == (30, 1, 3)

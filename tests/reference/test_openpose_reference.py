"""Our OpenPose against controlnet-aux's OpenposeDetector (body, hand, face) on the same seeded weights.

Tolerances: network maps within float noise (different convolution order); decoding, boxes, peaks and
rendering are compared exactly on identical inputs; end to end, the hints are equal pixel for pixel.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from affordance.preprocessors.openpose import (
    BODY_FILE,
    FACE_FILE,
    HAND_FILE,
    BodyPoseNet,
    FaceNet,
    HandPoseNet,
    draw_poses,
    flatten_state_dict,
    openpose,
)
from affordance.preprocessors.openpose import decode as ours_decode
from affordance.preprocessors.openpose.draw import draw_body, draw_face, draw_hand
from affordance.preprocessors.weights import load_annotator

aux_op = pytest.importorskip("controlnet_aux.open_pose")
aux_util = pytest.importorskip("controlnet_aux.open_pose.util")
aux_model = pytest.importorskip("controlnet_aux.open_pose.model")
aux_face = pytest.importorskip("controlnet_aux.open_pose.face")
aux_body = pytest.importorskip("controlnet_aux.open_pose.body")


@pytest.fixture(autouse=True)
def _matplotlib_colors(monkeypatch):
    """The reference's ``draw_handpose`` imports matplotlib (absent here) only for ``hsv_to_rgb``: provide it.

    This is matplotlib's formula (numpy arrays, i = floor(6h), f, p, q, t); only the 20 hues i / 20 are used.
    """
    if "matplotlib" in sys.modules:
        return

    def hsv_to_rgb(hsv):
        h, s, v = (np.asarray(hsv, dtype=float)[..., i] for i in range(3))
        i = (h * 6.0).astype(int)
        f = (h * 6.0) - i
        p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
        table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
        return np.stack(table[int(i) % 6], -1)

    mpl = types.ModuleType("matplotlib")
    mpl.colors = types.SimpleNamespace(hsv_to_rgb=hsv_to_rgb)
    monkeypatch.setitem(sys.modules, "matplotlib", mpl)


def _seeded_file(seeded, cls, seed, gain, path, flat=True):
    net = seeded(cls(), seed, gain=gain).eval()
    sd = net.state_dict()
    torch.save(flatten_state_dict(sd) if flat else sd, path)  # the official layout (flat names for body/hand)
    return net


_CACHE: dict[str, tuple] = {}


@pytest.fixture
def pose_nets(tmp_path_factory, seeded):
    """(ours (body, hand, face), the reference detector, the reference networks), built once per module."""
    if "nets" in _CACHE:
        return _CACHE["nets"]
    tmp = tmp_path_factory.mktemp("openpose")
    refs = (
        _seeded_file(seeded, aux_model.bodypose_model, 21, 0.9, tmp / BODY_FILE),
        _seeded_file(seeded, aux_model.handpose_model, 22, 1.0, tmp / HAND_FILE),
        _seeded_file(seeded, aux_face.FaceNet, 23, 1.0, tmp / FACE_FILE, flat=False),
    )
    ours = (
        load_annotator(tmp / BODY_FILE, BodyPoseNet(), BODY_FILE),
        load_annotator(tmp / HAND_FILE, HandPoseNet(), HAND_FILE),
        load_annotator(tmp / FACE_FILE, FaceNet(), FACE_FILE),
    )
    detector = aux_op.OpenposeDetector.from_pretrained(str(tmp))  # loads through the original transfer()
    _CACHE["nets"] = (ours, detector, refs)
    return _CACHE["nets"]


def _tensor(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(im.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def test_networks_equal_reference(pose_nets):
    """Raw maps of the three networks on the same input: float noise at most (here bit-identical on CPU)."""
    (body, hand, face), _, (ref_body, ref_hand, ref_face) = pose_nets
    x = torch.rand(1, 3, 64, 72, generator=torch.Generator().manual_seed(0)) - 0.5
    with torch.no_grad():
        for a, b in zip(body(x), ref_body(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hand(x), ref_hand(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(face(x), ref_face(x)[-1], rtol=1e-5, atol=1e-5)


def test_body_candidates_and_people_equal_reference(pose_nets, photo):
    """Same photo (BGR at 512 x 512): our maps and decoding give exactly the reference's arrays."""
    from affordance.preprocessors.openpose import _body_maps

    (body, _, _), detector, _ = pose_nets
    bgr = np.ascontiguousarray(photo("astronaut")[:, :, ::-1])
    want_candidate, want_subset = detector.body_estimation(bgr)
    ((heat, paf),) = _body_maps(body, [bgr])
    candidate, subset = ours_decode.decode_body(heat, paf)
    assert np.array_equal(candidate, want_candidate)
    assert np.array_equal(subset, want_subset)
    assert len(want_subset) > 0 and len(want_candidate) > 50  # random weights still assemble people


def test_body_hint_equals_reference(pose_nets, photo):
    (body, _, _), detector, _ = pose_nets
    im = photo("astronaut")
    want = np.asarray(detector(im, detect_resolution=512, image_resolution=512, output_type="np"))
    hint, keypoints = openpose(_tensor(im), body, resolution=512)
    got = (hint[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, want), f"{(got != want).any(-1).sum()} pixels differ"
    assert want.std() > 1
    ref_poses = detector.detect_poses(im)
    assert len(keypoints[0]["people"]) == len(ref_poses)
    for person, pose in zip(keypoints[0]["people"], ref_poses):
        flat = [v for k in pose.body.keypoints for v in ((k.x, k.y, 1.0) if k is not None else (0.0, 0.0, 0.0))]
        assert person["pose_keypoints_2d"] == flat


@pytest.mark.parametrize("seed", range(4))
def test_hand_and_face_boxes_equal_reference(seed):
    """Hand and face boxes from random bodies (pixels, some parts missing, near the borders too)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((300, 400, 3), np.uint8)
    hands = faces = 0
    for _ in range(200):
        centre, spread = rng.random(2) * (400, 300), rng.random() * 150 + 10
        pixels = [
            None if rng.random() < 0.15 else tuple(float(v) for v in centre + rng.standard_normal(2) * spread)
            for _ in range(18)
        ]
        result = aux_body.BodyResult([None if p is None else aux_body.Keypoint(*p) for p in pixels], 0.0, 0)
        want_hands, want_face = aux_util.handDetect(result, image), aux_util.faceDetect(result, image)
        assert ours_decode.hand_boxes(pixels, 300, 400) == want_hands
        assert ours_decode.face_box(pixels, 300, 400) == want_face
        hands += len(want_hands)
        faces += want_face is not None
    assert hands > 20 and faces > 20


def test_face_peaks_equal_reference(pose_nets, photo):
    from affordance.preprocessors.openpose import _faces

    (_, _, face), detector, _ = pose_nets
    bgr = np.ascontiguousarray(photo("astronaut")[:, :, ::-1])
    crop = bgr[60:190, 180:310]
    heat = detector.face_estimation(crop)
    want = detector.face_estimation.compute_peaks_from_heatmaps(heat)
    got = _faces(face, [crop])[0]
    assert np.array_equal(got, want)
    assert len(want) > 0


def _random_people(seed: int, n: int = 3):
    rng = np.random.default_rng(seed)
    people = []
    for _ in range(n):
        body = [None if rng.random() < 0.2 else (rng.random(), rng.random()) for _ in range(18)]
        hand = [tuple(np.float32(v) for v in rng.random(2) * 0.9 + 0.05) for _ in range(21)]
        hand[3] = (np.float32(-1 / 512), np.float32(-1 / 512))  # not detected: skipped
        face = [tuple(np.float32(v) for v in rng.random(2)) for _ in range(60)]
        people.append({"body": body, "left_hand": hand, "right_hand": None, "face": face})
    return people


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rendering_equals_reference(seed):
    """The same keypoints drawn by our renderer and the reference's functions: identical canvases."""
    K = aux_body.Keypoint
    people = _random_people(seed)
    got = draw_poses(people, 384, 512)
    ref_poses = [
        aux_op.PoseResult(
            aux_body.BodyResult([None if p is None else K(*p) for p in person["body"]], 0.0, 0),
            [K(*p) for p in person["left_hand"]],
            None,
            [K(*p) for p in person["face"]],
        )
        for person in people
    ]
    want = aux_op.draw_poses(ref_poses, 384, 512)
    assert np.array_equal(got, want)
    assert want.any()
    canvas = np.zeros((100, 120, 3), np.uint8)
    assert draw_body(canvas.copy(), [None] * 18).sum() == 0
    assert draw_hand(canvas.copy(), None).sum() == 0 and draw_face(canvas.copy(), []).sum() == 0


def test_decoding_of_identical_maps_equals_reference_functions(monkeypatch):
    """Random smooth maps fed to both decoders (the reference's code after the network): identical arrays."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    heat = gaussian_filter(rng.random((96, 120, 19)), (4, 4, 0)) * 3 - 1.2
    paf = gaussian_filter(rng.standard_normal((96, 120, 38)), (6, 6, 0)) * 4
    want = _reference_decode(heat, paf, monkeypatch)
    got = ours_decode.decode_body(heat, paf)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert len(want[0]) > 10


def _reference_decode(heat, paf, monkeypatch):
    """Run the reference Body.__call__'s decoding on given maps: its network and resizing are stubbed out."""
    body = aux_body.Body.__new__(aux_body.Body)
    h, w = heat.shape[:2]

    class _Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.zeros(1, 38, 2, 2), torch.zeros(1, 19, 2, 2)

    body.model = _Net()
    maps = iter([heat, paf])
    orig = aux_util.smart_resize

    def fake_resize(x, s):
        return next(maps) if x.ndim == 3 and x.shape[2] in (19, 38) else orig(x, s)

    monkeypatch.setattr(aux_util, "smart_resize", fake_resize)
    return body(np.zeros((h, w, 3), np.uint8))


def test_hands_and_face_end_to_end_equal_reference(pose_nets, photo, monkeypatch):
    """A fixed person (the random body network finds no arms) through both detectors with hands and face:
    boxes, crops, hand/face networks, peaks, normalisation and drawing give the same hint pixel for pixel."""
    import affordance.preprocessors.openpose as ours_op

    (body, hand, face), detector, _ = pose_nets
    parts = np.array(
        [
            (300, 120), (300, 170), (260, 170), (240, 230), (230, 290), (340, 170), (360, 230), (370, 290),
            (270, 290), (270, 370), (270, 450), (330, 290), (330, 370), (330, 450), (290, 110), (310, 110),
            (280, 115), (320, 115),
        ],
        dtype=np.float64,
    )  # fmt: skip
    candidate = np.concatenate([parts, np.ones((18, 1)), np.arange(18)[:, None]], 1)
    subset = np.concatenate([np.arange(18.0), [30.0, 18.0]])[None]
    monkeypatch.setattr(detector, "body_estimation", _FixedBody(candidate, subset))
    monkeypatch.setattr(ours_op, "_body_maps", lambda net, bgr: [(None, None)] * len(bgr))
    monkeypatch.setattr(ours_op, "decode_body", lambda heat, paf: (candidate, subset))
    im = photo("astronaut")
    ref = detector.detect_poses(im, include_hand=True, include_face=True)[0]  # what __call__ draws at 512 px
    want = aux_op.draw_poses([ref], 512, 512, draw_body=True, draw_hand=True, draw_face=True)
    hint, keypoints = openpose(_tensor(im), body, hand, face, detect_hand=True, detect_face=True, resolution=512)
    got = (hint[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, want), f"{(got != want).any(-1).sum()} pixels differ"
    person = keypoints[0]["people"][0]
    assert person["hand_left_keypoints_2d"] == [v for k in ref.left_hand for v in (float(k.x), float(k.y), 1.0)]
    assert person["hand_right_keypoints_2d"] == [v for k in ref.right_hand for v in (float(k.x), float(k.y), 1.0)]
    assert person["face_keypoints_2d"] == [v for k in ref.face for v in (float(k.x), float(k.y), 1.0)]
    assert len(ref.face) > 0 and any(k.x > 0 for k in ref.left_hand) and any(k.x > 0 for k in ref.right_hand)


class _FixedBody:
    """Stands in for the reference's ``Body``: always the given people."""

    format_body_result = staticmethod(aux_body.Body.format_body_result)

    def __init__(self, candidate, subset):
        self.result = (candidate, subset)

    def __call__(self, image):
        return self.result

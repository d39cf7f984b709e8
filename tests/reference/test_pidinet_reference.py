"""Our PiDiNet soft edges and scribble against controlnet-aux's PidiNetDetector on the same weights (seeded; official too where given)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affordance.preprocessors.pidinet import PIDINET_FILE, PiDiNet, pidinet, pidinet_scribble
from affordance.preprocessors.weights import load_annotator

aux_pidi = pytest.importorskip("controlnet_aux.pidi")


@pytest.fixture(params=["seeded", "official"])
def nets(request, tmp_path, seeded, official_file):
    if request.param == "official":  # the real weights, where a folder of official files is given
        path = official_file(PIDINET_FILE)
        ours = load_annotator(path, PiDiNet(), PIDINET_FILE)
        return ours, aux_pidi.PidiNetDetector.from_pretrained(str(path.parent), filename=PIDINET_FILE)
    tmp = tmp_path
    ref_net = seeded(aux_pidi.pidinet(), 7, gain=0.8)
    with torch.no_grad():  # shift the fused logits so the maps are mostly dark with bright structures
        ref_net.classifier.bias.fill_(-2.5)
    # The official container: {'state_dict': {'module.<key>': tensor}} with the raw pixel-difference weights.
    torch.save({"state_dict": {"module." + k: v for k, v in ref_net.state_dict().items()}}, tmp / PIDINET_FILE)
    ours = load_annotator(tmp / PIDINET_FILE, PiDiNet(), PIDINET_FILE)
    ref = aux_pidi.PidiNetDetector.from_pretrained(str(tmp), filename=PIDINET_FILE)
    return ours, ref


def _tensor(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(im.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _hwc(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).numpy() * 255).round()


def _compare(want: np.ndarray, got: np.ndarray, quantised: bool) -> None:
    diff = np.abs(want.astype(np.int32) - got.astype(np.int32))
    # Same weights; our pixel-difference convolutions run as their equivalent plain kernels, so float
    # rounding differs: a level can flip where the reference truncates (plain maps: at most 1 level, on
    # under 1% of pixels), and a quantised level (safe, apply_filter) where the probability sits on a step.
    if quantised:
        assert (diff == 0).mean() >= 0.999, f"{(diff != 0).mean():.5f} of pixels differ"
    else:
        assert diff.max() <= 1, f"max difference {diff.max()} levels"
        assert (diff == 0).mean() >= 0.99
    assert want.std() > 1  # the comparison is not between blank maps


def test_pidinet_equals_reference(nets, photo_512):
    ours, ref = nets
    want = np.asarray(ref(photo_512, detect_resolution=512, image_resolution=512, output_type="np"))
    _compare(want, _hwc(pidinet(_tensor(photo_512), ours, resolution=512)), quantised=False)


@pytest.mark.parametrize(("safe", "apply_filter"), [(True, False), (False, True), (True, True)])
def test_pidinet_options_equal_reference(nets, photo, safe, apply_filter):
    ours, ref = nets
    im = photo("astronaut")
    kw = {"safe": safe, "apply_filter": apply_filter}
    want = np.asarray(ref(im, detect_resolution=512, image_resolution=512, output_type="np", **kw))
    _compare(want, _hwc(pidinet(_tensor(im), ours, resolution=512, **kw)), quantised=True)


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_pidinet_scribble_equals_reference(nets, photo, name):
    ours, ref = nets
    im = photo(name)
    want = np.asarray(ref(im, detect_resolution=512, image_resolution=512, scribble=True, output_type="np")) > 0
    got = pidinet_scribble(_tensor(im), ours, resolution=512)[0].permute(1, 2, 0).numpy() > 0
    assert (want == got).mean() >= 0.999, f"{(want != got).sum()} pixels differ"
    assert 0.001 < want.mean() < 0.9


def test_scribble_post_processing_is_exactly_the_reference(nets, photo):
    """Given the same 8-bit PiDiNet map, our strokes equal the reference's pixel for pixel."""
    import cv2
    from controlnet_aux.util import nms

    from affordance.preprocessors.hed import fake_scribble_levels

    _, ref = nets
    edges = np.asarray(ref(photo("astronaut"), detect_resolution=512, image_resolution=512, output_type="np"))[..., 0]
    want = nms(edges, 127, 3.0)
    want = cv2.GaussianBlur(want, (0, 0), 3.0)
    want = want > 4
    got = fake_scribble_levels(torch.from_numpy(edges.astype(np.float32))[None, None])[0, 0].numpy() > 0
    assert np.array_equal(got, want)
    assert want.any()

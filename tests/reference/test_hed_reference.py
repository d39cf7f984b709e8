"""Our HED and fake scribble against controlnet-aux's HEDdetector on the same (seeded) weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affordance.preprocessors.hed import HED_FILE, HEDNet, fake_scribble, hed
from affordance.preprocessors.weights import load_annotator

aux_hed = pytest.importorskip("controlnet_aux.hed")


@pytest.fixture
def nets(tmp_path, seeded):
    ref_net = seeded(aux_hed.ControlNetHED_Apache2(), 11, gain=0.5)
    torch.save(ref_net.state_dict(), tmp_path / HED_FILE)  # the official layout: a plain state dict
    ours = load_annotator(tmp_path / HED_FILE, HEDNet(), HED_FILE)
    ref = aux_hed.HEDdetector.from_pretrained(str(tmp_path), filename=HED_FILE)
    return ours, ref


def _tensor(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(im.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.mark.parametrize("safe", [False, True])
def test_hed_equals_reference(nets, photo_512, safe):
    ours, ref = nets
    want = np.asarray(ref(photo_512, detect_resolution=512, image_resolution=512, safe=safe, output_type="np"))
    got = (hed(_tensor(photo_512), ours, safe=safe, resolution=512)[0].permute(1, 2, 0).numpy() * 255).round()
    diff = np.abs(want.astype(np.int32) - got.astype(np.int32))
    # Same network, same weights; convolution order differs, so a level can flip where the reference truncates.
    assert diff.max() <= 1, f"max difference {diff.max()} levels"
    assert (diff == 0).mean() >= 0.99
    assert want.std() > 1  # the comparison is not between blank maps


@pytest.mark.parametrize("name", ["astronaut", "coffee"])  # photos where these random weights draw strokes
def test_fake_scribble_equals_reference(nets, photo, name):
    ours, ref = nets
    im = photo(name)
    want = np.asarray(ref(im, detect_resolution=512, image_resolution=512, scribble=True, output_type="np")) > 0
    got = fake_scribble(_tensor(im), ours, resolution=512)[0].permute(1, 2, 0).numpy() > 0
    assert (want == got).mean() >= 0.999, f"{(want != got).sum()} pixels differ"
    assert 0.001 < want.mean() < 0.9


def test_scribble_post_processing_is_exactly_the_reference(nets, photo):
    """Given the same 8-bit HED map, our strokes equal the reference's pixel for pixel."""
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


def test_scribble_post_processing_of_line_drawings_on_black_is_exactly_the_reference():
    """Maps with flat black areas (crisp lines on black, unlike HED maps of photographs, which hold almost no level
    0): every level, 0 included, is taken as the reference takes it."""
    import cv2
    from controlnet_aux.util import nms

    from affordance.preprocessors.hed import fake_scribble_levels

    rng = np.random.default_rng(0)
    maps = []
    for _ in range(6):
        m = np.zeros((64, 64), np.uint8)
        for _ in range(6):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 64, 4))
            cv2.line(m, (x0, y0), (x1, y1), 255, int(rng.integers(1, 6)))
        maps.append(m)
    got = fake_scribble_levels(torch.from_numpy(np.stack(maps)).float()[:, None])[:, 0].numpy() > 0
    for i, m in enumerate(maps):
        want = cv2.GaussianBlur(nms(m, 127, 3.0), (0, 0), 3.0) > 4
        assert np.array_equal(got[i], want), i
        assert want.any()

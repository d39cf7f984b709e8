"""Canny equals cv2.Canny on real photographs, on every path we ship."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from affordance.preprocessors import ParameterError, canny
from affordance.preprocessors.canny import canny_cv2, canny_levels


@pytest.mark.parametrize(("low", "high"), [(100, 200), (50, 100), (10, 30)])
def test_torch_kernel_equals_opencv(photo, levels, low, high):
    """The GPU kernel run on the CPU: every pixel equals OpenCV's (the issue asks >= 99 %; we get all)."""
    ref = cv2.Canny(photo, low, high) > 0
    got = canny_levels(levels(photo), low, high)[0, 0].numpy() > 0
    agreement = (ref == got).mean()
    assert agreement >= 0.99
    assert agreement == 1.0, f"{(ref != got).sum()} pixels differ"


def test_cpu_path_equals_opencv(photo, levels):
    ref = cv2.Canny(photo, 100, 200) > 0
    assert np.array_equal(canny_cv2(levels(photo), 100, 200)[0, 0].numpy() > 0, ref)


def test_batch_equals_single(astronaut, levels):
    a = levels(astronaut)
    b = levels(np.ascontiguousarray(astronaut[::-1]))
    both = canny_levels(torch.cat([a, b]), 100, 200)
    assert torch.equal(both[:1], canny_levels(a, 100, 200))
    assert torch.equal(both[1:], canny_levels(b, 100, 200))


def test_hysteresis_paths_agree(astronaut, levels, monkeypatch):
    import importlib

    mod = importlib.import_module("affordance.preprocessors.canny")  # the module, not the function it exports

    cpu = canny_levels(levels(astronaut), 60, 120)
    monkeypatch.setattr(mod, "_hysteresis_cpu", mod._hysteresis_torch)
    assert torch.equal(canny_levels(levels(astronaut), 60, 120), cpu)


def test_small_exact_case():
    """A bright square on black: its outline, one pixel wide, inside the square's border."""
    img = np.zeros((16, 16, 3), np.uint8)
    img[4:12, 4:12] = 200
    got = canny_levels(torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None], 100, 200)[0, 0].numpy()
    assert np.array_equal(got > 0, cv2.Canny(img, 100, 200) > 0)
    assert got.sum() > 0 and got[8, 8] == 0


def test_node_level_function_keeps_size(astronaut, tensor):
    x = tensor(astronaut[:300, :450])
    out = canny(x, 100, 200, resolution=512)
    assert out.shape == (1, 3, 300, 450)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    # At the native size the pipeline is the reference's: edge-pad to a multiple of 64, Canny, crop.
    at_native = canny(x, 100, 200, resolution=300)
    padded = np.pad(astronaut[:300, :450], [[0, 20], [0, 62], [0, 0]], mode="edge")
    ref = cv2.Canny(padded, 100, 200)[:300, :450] > 0
    assert np.array_equal(at_native[0, 0].numpy() > 0, ref)


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (-1, 200, "low_threshold must be between 0 and 255"),
        (100, 256, "high_threshold must be between 0 and 255"),
        (150, 100, "above high_threshold"),
        (10.5, 20, "must be an integer"),
    ],
)
def test_threshold_validation(astronaut, tensor, low, high, message):
    with pytest.raises(ParameterError, match=message):
        canny(tensor(astronaut), low, high)


@pytest.mark.gpu
def test_gpu_equals_opencv(photo, levels):
    ref = cv2.Canny(photo, 100, 200) > 0
    got = canny_levels(levels(photo).cuda(), 100, 200)[0, 0].cpu().numpy() > 0
    assert (ref == got).mean() >= 0.99


def test_long_winding_edges_finish_on_the_cpu_with_the_same_result():
    """The device path grows one pixel per pass; a serpentine chain thousands of pixels long is handed over."""
    import importlib

    mod = importlib.import_module("affordance.preprocessors.canny")
    h = w = 48
    cand = torch.zeros(1, h, w, dtype=torch.bool)
    for r in range(0, h, 2):  # rows joined at alternating ends: one path of about h * w / 2 pixels
        cand[0, r, 1:-1] = True
        if r + 2 < h:
            cand[0, r + 1, (w - 2) if (r // 2) % 2 == 0 else 1] = True
    strong = torch.zeros_like(cand)
    strong[0, 0, 1] = True
    expected = mod._hysteresis_cpu(cand, strong)
    assert expected.sum() == cand.sum()  # the whole chain is reached from its one strong end
    calls = []
    real_cpu = mod._hysteresis_cpu

    def spy(c, s):
        calls.append(1)
        return real_cpu(c, s)

    import pytest as _pytest

    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(mod, "_hysteresis_cpu", spy)
        got = mod._hysteresis_torch(cand, strong, check_every=4, max_checks=3)
    assert calls and torch.equal(got, expected)
    # with enough passes the device path converges by itself, to the same edges
    assert torch.equal(mod._hysteresis_torch(cand, strong, check_every=64, max_checks=64), expected)

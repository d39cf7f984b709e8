"""Our MiDaS depth and normal map against controlnet-aux's MidasDetector on the same (seeded) weights."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from affordance.preprocessors.midas import (
    MIDAS_FILE,
    DPTHybridNet,
    midas_depth_and_normal,
    midas_raw_depth,
    normal_from_depth,
)
from affordance.preprocessors.weights import load_annotator

aux_midas = pytest.importorskip("controlnet_aux.midas")
dpt_depth = pytest.importorskip("controlnet_aux.midas.midas.dpt_depth")


@pytest.fixture
def nets(tmp_path, seeded):
    ref_net = dpt_depth.DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True)
    seeded(ref_net, 5, gain=0.5)
    torch.save(ref_net.state_dict(), tmp_path / MIDAS_FILE)  # the official layout: a plain state dict
    del ref_net
    ours = load_annotator(tmp_path / MIDAS_FILE, DPTHybridNet(), MIDAS_FILE)
    ref = aux_midas.MidasDetector.from_pretrained(str(tmp_path), filename=MIDAS_FILE)
    return ours, ref


def _tensor(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(im.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _levels(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int32)


def test_depth_and_normal_equal_reference(nets, photo):
    """One 512 x 512 photograph (no resizing on either side), depth and normal from one pass each."""
    ours, ref = nets
    im = photo("astronaut")
    want_depth, want_normal = ref(
        im, detect_resolution=512, image_resolution=512, depth_and_normal=True, output_type="np"
    )
    got_depth, got_normal = midas_depth_and_normal(_tensor(im), ours, resolution=512)
    d = np.abs(_levels(got_depth) - want_depth.astype(np.int32))
    # Same network and weights; float summation order differs, so a truncated level can flip (measured:
    # 99.993 % exact, max 1).
    assert d.max() <= 1, f"depth: max difference {d.max()} levels"
    assert (d == 0).mean() >= 0.999
    assert want_depth.std() > 5  # not a blank map
    n = np.abs(_levels(got_normal) - want_normal.astype(np.int32))
    # The normal map divides small depth gradients: the same float noise can move a level, and the
    # background mask (normalised depth < 0.1) could flip on a boundary pixel (measured: 99.9997 % exact, max 1).
    assert (n <= 1).mean() >= 0.9999, f"normal: {(n > 1).sum()} pixels differ by more than a level (max {n.max()})"
    assert (n == 0).mean() >= 0.999
    assert want_normal.std() > 1


def _reference_normal(depth: torch.Tensor, a: float, bg_th: float) -> np.ndarray:
    """MidasDetector.__call__'s normal-map lines (controlnet-aux 0.0.10) on a float32 depth map (H, W)."""
    depth_pt = depth.clone()
    depth_pt -= torch.min(depth_pt)
    depth_pt /= torch.max(depth_pt)
    depth_pt = depth_pt.cpu().numpy()
    depth_np = depth.cpu().numpy()
    x = cv2.Sobel(depth_np, cv2.CV_32F, 1, 0, ksize=3)
    y = cv2.Sobel(depth_np, cv2.CV_32F, 0, 1, ksize=3)
    z = np.ones_like(x) * a
    x[depth_pt < bg_th] = 0
    y[depth_pt < bg_th] = 0
    normal = np.stack([x, y, z], axis=2)
    normal /= np.sum(normal**2.0, axis=2, keepdims=True) ** 0.5
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1]


def test_normal_post_processing_on_identical_depth(seeded, photo):
    """Given the same float32 depth, our normal map is the reference's lines pixel for pixel."""
    net = seeded(DPTHybridNet(), 5, gain=0.5).eval()
    im = cv2.resize(photo("coffee"), (256, 256), interpolation=cv2.INTER_AREA)
    depth = midas_raw_depth(net, _tensor(im))  # a real network depth map, (1, 1, 256, 256)
    for a, bg_th in [(2 * math.pi, 0.1), (3.0, 0.4), (12.0, 0.0), (0.5, 0.05)]:
        want = _reference_normal(depth[0, 0], a, bg_th).astype(np.int32)
        got = _levels(normal_from_depth(depth, a, bg_th))
        assert np.array_equal(got, want), f"a={a}, bg_th={bg_th}: {(got != want).sum()} values differ"
        assert want.std() > 1

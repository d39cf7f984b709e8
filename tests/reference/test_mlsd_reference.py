"""Our M-LSD lines against controlnet-aux's MLSDdetector on the same (seeded) weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affordance.preprocessors.mlsd import MLSD_FILE, MLSDNet, decode_lines, draw_lines, mlsd
from affordance.preprocessors.weights import load_annotator

aux_mlsd = pytest.importorskip("controlnet_aux.mlsd")


@pytest.fixture
def nets(tmp_path, seeded):
    from controlnet_aux.mlsd.models.mbv2_mlsd_large import MobileV2_MLSD_Large

    ref_net = seeded(MobileV2_MLSD_Large(), 5, gain=0.7)
    with torch.no_grad():
        for m in ref_net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # scales near 1 and positive variances (random ones give NaN)
                m.weight.add_(1.0)
                m.running_var.abs_().add_(0.5)
        head = ref_net.block23.conv3  # output channels 7 (centre logit) and 8..11 (displacements)
        head.weight[7] *= 2.0
        head.bias[7] = 6.0  # centre logits around -3 +- 2: scores from ~0 to ~1
        head.weight[8:12] *= 4.0  # displacements ~20 half-resolution px: lines ~40 px long
    torch.save(ref_net.state_dict(), tmp_path / MLSD_FILE)  # the official layout: a plain state dict
    ours = load_annotator(tmp_path / MLSD_FILE, MLSDNet(), MLSD_FILE)
    ref = aux_mlsd.MLSDdetector.from_pretrained(str(tmp_path), filename=MLSD_FILE)
    return ours, ref


def _tensor(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(im.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.mark.parametrize(("thr_v", "thr_d"), [(0.1, 0.1), (0.5, 20.0)])
def test_mlsd_equals_reference(nets, photo_512, thr_v, thr_d):
    ours, ref = nets
    want = np.asarray(ref(photo_512, thr_v, thr_d, detect_resolution=512, image_resolution=512, output_type="np"))
    got = mlsd(_tensor(photo_512), ours, thr_v, thr_d, resolution=512)[0].permute(1, 2, 0).numpy() * 255
    # Same network (plain convolutions, identical maps up to float order); an end point sitting on an
    # integer can truncate the other way, moving a line by a pixel: allow 0.1% of pixels.
    differ = (want != got.round()).any(-1)
    assert differ.mean() <= 1e-3, f"{differ.sum()} pixels differ"
    assert 0.001 < (want > 0).mean() < 0.2  # the comparison is not between blank (or saturated) maps


class _Recorder(torch.nn.Module):
    """The reference network, keeping its last output (the maps ``pred_lines`` decodes)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.maps: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.maps = self.model(x)
        return self.maps


@pytest.mark.parametrize(("thr_v", "thr_d"), [(0.1, 0.1), (0.3, 10.0)])
def test_decoding_and_drawing_are_exactly_the_reference(nets, photo, thr_v, thr_d):
    """Given the reference network's maps, our decoded segments and our drawing equal the reference's exactly."""
    import cv2
    from controlnet_aux.mlsd.utils import pred_lines

    _, ref = nets
    im = photo("astronaut")
    rec = _Recorder(ref.model)
    with torch.no_grad():
        lines = pred_lines(im, rec, [512, 512], thr_v, thr_d)
    want_segments = sorted([int(v) for v in line] for line in lines)
    segments, keep = decode_lines(rec.maps, thr_v, thr_d)
    assert sorted(segments[0][keep[0]].tolist()) == want_segments
    assert len(want_segments) > 10

    want = np.zeros_like(im)  # the reference detector's drawing loop
    for line in lines:
        x_start, y_start, x_end, y_end = [int(val) for val in line]
        cv2.line(want, (x_start, y_start), (x_end, y_end), [255, 255, 255], 1)
    got = draw_lines(segments[0][keep[0]].numpy(), 512, 512)
    assert np.array_equal(got, want[..., 0])
    assert want.any()

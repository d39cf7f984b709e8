"""M-LSD network layout, line decoding and drawing formulas, and loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from affordance.preprocessors.errors import ParameterError
from affordance.preprocessors.mlsd import MLSD_FILE, MLSDNet, decode_lines, draw_lines, mlsd, mlsd_input, mlsd_lines
from affordance.preprocessors.weights import AnnotatorWeightsError, load_annotator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _random_net(seed: int = 0) -> MLSDNet:
    """Seeded weights with positive batch-norm variances (random ones would give NaN)."""
    net = MLSDNet()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(net.state_dict().items()):
            if not p.is_floating_point():
                continue
            fan_in = p[0].numel() if p.ndim > 1 else 0
            p.copy_(torch.randn(p.shape, generator=g) * ((2.0 / fan_in) ** 0.5 if fan_in else 0.05))
            if name.endswith("running_var"):
                p.abs_().add_(0.5)
    return net.eval()


def test_keys_equal_the_official_file_layout():
    fixture = json.loads((FIXTURES / "annotator_mlsd_keys.json").read_text())["keys"]
    assert {k: list(v.shape) for k, v in MLSDNet().state_dict().items()} == fixture
    assert sum(v.numel() for v in MLSDNet().state_dict().values()) == 1_552_681


def test_input_has_a_constant_fourth_channel():
    levels = torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1)
    assert mlsd_input(levels).flatten().tolist() == pytest.approx([-1.0, 0.0, 1.0, 1 / 127.5 - 1])


def test_output_is_half_resolution_nine_maps():
    out = _random_net()(mlsd_input(torch.rand(2, 3, 64, 96) * 255))
    assert out.shape == (2, 9, 32, 48) and torch.isfinite(out).all()


def _maps(h: int = 8, w: int = 10) -> torch.Tensor:
    maps = torch.zeros(1, 9, h, w)
    maps[:, 0] = -10.0  # sigmoid ~ 0: no centre
    return maps


def test_decode_centres_displacements_and_thresholds():
    maps = _maps()
    # A centre at (x=3, y=2), score sigmoid(2) ~ 0.88, from (3-1.5, 2+0.25) to (3+2.75, 2-1): length ~3.08.
    maps[0, 0, 2, 3] = 2.0
    maps[0, 1:5, 2, 3] = torch.tensor([-1.5, 0.25, 2.75, -1.0])
    maps[0, 0, 2, 4] = 1.0  # a weaker neighbour: not a 3x3 maximum, suppressed
    maps[0, 0, 6, 8] = -1.0  # score ~0.27: kept at threshold 0.1, dropped at 0.5
    maps[0, 1:5, 6, 8] = torch.tensor([-0.6, 0.0, 0.6, 0.0])  # length 1.2: kept at 0.1, dropped at 2
    segments, keep = decode_lines(maps, 0.1, 0.1)
    assert segments.shape == (1, 80, 4) and keep.shape == (1, 80)
    kept = segments[keep].tolist()
    # 2 * (centre + displacement), truncated toward zero: 2*(3-1.5)=3, 2*2.25=4.5->4, 2*5.75=11.5->11, 2*1=2
    assert kept == [[3, 4, 11, 2], [14, 12, 17, 12]]
    assert segments[decode_lines(maps, 0.5, 0.1)[1]].tolist() == [[3, 4, 11, 2]]
    assert segments[decode_lines(maps, 0.1, 2.0)[1]].tolist() == [[3, 4, 11, 2]]


def test_decode_truncates_toward_zero_and_drops_non_finite():
    maps = _maps()
    maps[0, 0, 0, 0] = 3.0
    maps[0, 1:5, 0, 0] = torch.tensor([-0.75, -0.3, 4.0, 0.9])  # x0 = -1.5 -> -1 (not -2), y0 = -0.6 -> 0
    maps[0, 0, 5, 5] = 3.0
    maps[0, 1:5, 5, 5] = torch.tensor([float("inf"), 0.0, 1.0, 1.0])
    maps[0, 0, 7, 2] = 3.0  # finite, but beyond what an int32 pixel coordinate (the reference's) holds
    maps[0, 1:5, 7, 2] = torch.tensor([1e12, 0.0, 1.0, 1.0])
    segments, keep = decode_lines(maps, 0.1, 0.1)
    assert segments[keep].tolist() == [[-1, 0, 8, 1]]
    assert segments[0, ~keep[0]].abs().max() < 2**31  # the dropped ones hold no overflowed values


def test_half_precision_maps_decode_in_float32():
    """A half-precision network's maps are decoded in float32, as the reference's: a segment 2.98254 long (in
    float32; 2.98242 when its length is computed in half) is kept at a distance threshold of 2.9825."""
    maps = _maps()
    maps[0, 0, 3, 3] = 3.0
    maps[0, 1:5, 3, 3] = torch.tensor([0.79052734375, 1.2001953125, -1.35546875, -0.87109375])  # exact in half
    half = maps.half()
    segments, keep = decode_lines(half, 0.1, 2.9825)
    assert keep.sum().item() == 1
    reference = decode_lines(half.float(), 0.1, 2.9825)
    assert torch.equal(segments, reference[0]) and torch.equal(keep, reference[1])


def test_decode_is_batched_and_small_maps_use_every_pixel():
    maps = torch.cat([_maps(4, 4), _maps(4, 4)])
    maps[1, 0, 1, 1] = 2.0
    maps[1, 1:5, 1, 1] = torch.tensor([-1.0, 0.0, 1.0, 0.0])
    segments, keep = decode_lines(maps, 0.1, 0.1)
    assert segments.shape == (2, 16, 4) and keep.sum(1).tolist() == [0, 1]
    assert segments[1][keep[1]].tolist() == [[0, 2, 4, 2]]


def test_draw_lines_is_one_pixel_8_connected_and_clipped():
    canvas = draw_lines(np.array([[1, 1, 6, 1], [0, 3, 3, 6], [-5, 7, 20, 7]]), 8, 10)
    assert canvas.dtype == np.uint8 and set(np.unique(canvas)) == {0, 255}
    assert canvas[1, 1:7].tolist() == [255] * 6 and canvas[1].sum() == 6 * 255
    assert [canvas[3 + i, i] for i in range(4)] == [255] * 4
    assert canvas[7].tolist() == [255] * 10
    assert canvas.sum() == (6 + 4 + 10) * 255


def test_mlsd_keeps_size_and_is_batched():
    net = _random_net(1)
    x = torch.rand(2, 3, 64, 64)
    out = mlsd(x, net, resolution=64)
    assert out.shape == (2, 3, 64, 64) and set(out.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out[1:], mlsd(x[1:], net, resolution=64))
    assert mlsd(torch.rand(1, 3, 50, 70), net, resolution=64).shape == (1, 3, 50, 70)
    lines = mlsd_lines(net, x * 255, 0.01, 0.01)
    assert lines.shape == (2, 1, 64, 64)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"score_threshold": 0.0}, "score_threshold"), ({"distance_threshold": 25.0}, "distance_threshold")],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        mlsd(torch.rand(1, 3, 32, 32), _random_net(), **kwargs)


@pytest.mark.parametrize("wrap", ["official", "module"])
def test_loader_round_trip(tmp_path, wrap):
    net = _random_net(2)
    sd = net.state_dict()
    path = tmp_path / MLSD_FILE
    torch.save(sd if wrap == "official" else {"module." + k: v for k, v in sd.items()}, path)  # official: plain
    loaded = load_annotator(path, MLSDNet(), MLSD_FILE)
    x = mlsd_input(torch.rand(1, 3, 64, 64) * 255)
    torch.testing.assert_close(loaded(x), net(x))


def test_wrong_annotator_under_official_name(tmp_path):
    from affordance.preprocessors.pidinet import PiDiNet

    torch.save({"state_dict": PiDiNet().state_dict()}, tmp_path / MLSD_FILE)
    with pytest.raises(
        AnnotatorWeightsError, match=r"does not hold the weights of mlsd_large_512_fp32.pth \(362 missing"
    ):
        load_annotator(tmp_path / MLSD_FILE, MLSDNet(), MLSD_FILE)


def test_decode_measures_vertical_segments():
    """Length is the distance between the two displacements along both axes (a vertical segment too)."""
    maps = _maps()
    maps[0, 0, 1, 1] = 5.0
    maps[0, 1:5, 1, 1] = torch.tensor([0.0, 1.0, 0.0, -1.0])  # dy = 2 half-resolution px
    for threshold, kept in ((1.0, [[2, 4, 2, 0]]), (3.0, [])):
        segments, keep = decode_lines(maps, 0.1, threshold)
        assert segments[keep].tolist() == kept


def test_a_bfloat16_network_takes_a_float32_image():
    """The network may be in any dtype (as its docstring says): the image is cast to it, the hint comes back float32."""
    out = mlsd(torch.rand(1, 3, 64, 64), _random_net().to(torch.bfloat16), resolution=64)
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_mlsd_checks_its_image_as_every_preprocessor_does():
    """RGBA is composited over white (not a channel error inside the network); NaN is refused with ImageInputError."""
    from affordance.preprocessors import ImageInputError, check_image

    net = _random_net()
    rgba = torch.rand(1, 4, 64, 64, generator=torch.Generator().manual_seed(3))
    out = mlsd(rgba, net, resolution=64)
    assert out.shape == (1, 3, 64, 64) and torch.equal(out, mlsd(check_image(rgba), net, resolution=64))
    bad = torch.rand(1, 3, 64, 64)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ImageInputError, match="NaN"):
        mlsd(bad, net, resolution=64)

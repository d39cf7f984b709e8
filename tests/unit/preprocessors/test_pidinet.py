"""PiDiNet network layout, pixel-difference conversion, post-processing formulas and loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from affordance.preprocessors.errors import ParameterError
from affordance.preprocessors.pidinet import (
    PIDINET_FILE,
    PiDiNet,
    pidinet,
    pidinet_edges,
    pidinet_scribble,
    safe_step,
    vanilla_kernel,
)
from affordance.preprocessors.sheet import demo_scene
from affordance.preprocessors.weights import AnnotatorWeightsError, load_annotator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _random_net(seed: int = 0, gain: float = 0.5) -> PiDiNet:
    net = PiDiNet()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(net.named_parameters()):
            fan_in = p[0].numel() if p.ndim > 1 else 0
            p.copy_(torch.randn(p.shape, generator=g) * (gain * (2.0 / fan_in) ** 0.5 if fan_in else 0.05))
    return net.eval()


def test_keys_equal_the_official_file_layout():
    fixture = json.loads((FIXTURES / "annotator_pidinet_keys.json").read_text())["keys"]
    assert {k: list(v.shape) for k, v in PiDiNet().state_dict().items()} == fixture
    assert sum(v.numel() for v in PiDiNet().state_dict().values()) == 710_149


def _pixel_difference(op: str, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The pixel-difference convolutions written out tap by tap on a zero-padded input (stride 1, groups 1).

    cd: ``sum_i w_i (x_i - x_c)``; ad: ``sum_i w_i (x_i - x_j)`` with ``j`` the tap whose clockwise
    neighbour is ``i``; rd: the 8 weights ``w[1:]`` (row-major, as stored) for the 8 directions ``d``
    (row-major), ``sum_k w_k (x_{2d} - x_d)``.
    """
    h, wd = x.shape[-2:]
    p = F.pad(x, (2, 2, 2, 2))

    def tap(dy: int, dx: int) -> torch.Tensor:
        return p[:, :, 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + wd]

    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    clockwise = [3, 0, 1, 6, 4, 2, 7, 8, 5]  # clockwise[j] = the neighbour subtracted at tap j

    def term(weight: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
        return (weight[None, :, :, None, None] * diff[:, None]).sum(2)

    out = torch.zeros(x.shape[0], w.shape[0], h, wd, dtype=x.dtype)
    if op == "rd":
        directions = [d for d in offsets if d != (0, 0)]
        for k, (dy, dx) in enumerate(directions):
            out += term(w.flatten(2)[:, :, k + 1], tap(2 * dy, 2 * dx) - tap(dy, dx))
        return out
    for i, (dy, dx) in enumerate(offsets):
        if op == "cd":
            diff = tap(dy, dx) - tap(0, 0)
        elif op == "ad":
            diff = tap(dy, dx) - tap(*offsets[clockwise.index(i)])
        else:
            diff = tap(dy, dx)
        out += term(w[:, :, i // 3, i % 3], diff)
    return out


@pytest.mark.parametrize("op", ["cv", "cd", "ad", "rd"])
def test_vanilla_kernels_equal_pixel_difference_definitions(op):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    kernel, padding = vanilla_kernel(op, w)
    assert kernel.shape[-1] == (5 if op == "rd" else 3) and padding == (2 if op == "rd" else 1)
    got = F.conv2d(x, kernel, padding=padding)
    torch.testing.assert_close(got, _pixel_difference(op, x, w))


def test_unknown_pixel_difference_op():
    with pytest.raises(ValueError, match="unknown pixel-difference"):
        vanilla_kernel("xd", torch.zeros(1, 1, 3, 3))


def test_safe_step_formula():
    x = torch.tensor([0.0, 0.2, 0.34, 0.5, 0.67, 0.99, 1.0])
    assert safe_step(x).tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.5]


def test_edges_are_8bit_and_options_quantise():
    net = _random_net()
    x = torch.rand(2, 3, 64, 96) * 255
    assert net(x / 255).shape == (2, 1, 64, 96)
    edges = pidinet_edges(net, x)
    assert edges.shape == (2, 1, 64, 96) and 0 <= edges.min() and edges.max() <= 1
    assert torch.equal((edges * 255).round(), (edges * 255).round().floor())  # 8-bit levels
    safe = set((pidinet_edges(net, x, safe=True) * 255).round().unique().tolist())
    assert safe <= {0.0, 127.0, 255.0}
    binary = set((pidinet_edges(net, x, apply_filter=True) * 255).round().unique().tolist())
    assert binary <= {0.0, 255.0}


def test_network_sees_bgr():
    net = _random_net(4)
    x = torch.rand(1, 3, 32, 32) * 255
    want = torch.sigmoid(net(x.flip(1) / 255.0))
    got = pidinet_edges(net, x)
    assert ((got - want).abs() <= 1 / 255 + 1e-6).all()


def test_batch_equals_single_images_and_size_kept():
    net = _random_net(1)
    x = torch.rand(2, 3, 70, 90)
    out = pidinet(x, net, resolution=64)
    assert out.shape == (2, 3, 70, 90)
    torch.testing.assert_close(out[1:], pidinet(x[1:], net, resolution=64), atol=1 / 255, rtol=0)
    strokes = pidinet_scribble(x, net, resolution=64)
    assert strokes.shape == (2, 3, 70, 90) and set(strokes.unique().tolist()) <= {0.0, 1.0}


def test_defaults_are_controlnets_softedge_pidinet_at_512():
    """Called without options, both functions detect at ControlNet's 512 px with neither the safe step nor the
    0.5 filter (``softedge_pidinet`` / ``scribble_pidinet``)."""
    net = _random_net(2, gain=2.0)  # strong enough edges that the scribble keeps some
    x = demo_scene(40, 56)
    assert 0 < pidinet_scribble(x, net).mean() < 1
    assert torch.equal(pidinet(x, net), pidinet(x, net, safe=False, resolution=512, apply_filter=False))
    assert not torch.equal(pidinet(x, net), pidinet(x, net, resolution=448))  # the resolution shows in the result
    assert torch.equal(pidinet_scribble(x, net), pidinet_scribble(x, net, safe=False, resolution=512))
    assert not torch.equal(pidinet_scribble(x, net), pidinet_scribble(x, net, resolution=448))


def test_bad_resolution():
    with pytest.raises(ParameterError, match="resolution"):
        pidinet(torch.rand(1, 3, 32, 32), _random_net(), resolution=3)


@pytest.mark.parametrize("wrap", ["official", "plain"])
def test_loader_unwraps_official_container(tmp_path, wrap):
    net = _random_net(2)
    sd = net.state_dict()
    path = tmp_path / PIDINET_FILE
    if wrap == "official":  # {'state_dict': {'module.<key>': tensor}}, as table5_pidinet.pth
        torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    else:
        torch.save(sd, path)
    loaded = load_annotator(path, PiDiNet(), PIDINET_FILE)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), net(x))


def test_wrong_annotator_under_official_name(tmp_path):
    from affordance.preprocessors.hed import HEDNet

    torch.save(HEDNet().state_dict(), tmp_path / PIDINET_FILE)
    with pytest.raises(AnnotatorWeightsError, match=r"does not hold the weights of table5_pidinet.pth \(83 missing"):
        load_annotator(tmp_path / PIDINET_FILE, PiDiNet(), PIDINET_FILE)


def test_converted_file_is_refused(tmp_path):
    """A file already converted to vanilla kernels (5x5 radial layers) is not the official layout."""
    sd = _random_net().state_dict()
    sd["block1_2.conv1.weight"] = vanilla_kernel("rd", sd["block1_2.conv1.weight"])[0]
    torch.save({"state_dict": sd}, tmp_path / PIDINET_FILE)
    with pytest.raises(AnnotatorWeightsError, match=r"1 with other shapes \(block1_2.conv1.weight\)"):
        load_annotator(tmp_path / PIDINET_FILE, PiDiNet(), PIDINET_FILE)

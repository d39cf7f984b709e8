"""Lineart (sk_model.pth / sk_model2.pth) and anime lineart (netG.pth): layouts, formulas, polarity, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from affordance.preprocessors.errors import ParameterError
from affordance.preprocessors.lineart import (
    LINEART_COARSE_FILE,
    LINEART_FILE,
    LineartNet,
    lineart,
    lineart_levels,
)
from affordance.preprocessors.lineart_anime import (
    LINEART_ANIME_FILE,
    LineartAnimeNet,
    lineart_anime,
    lineart_anime_levels,
)
from affordance.preprocessors.weights import ANNOTATOR_FILES, AnnotatorWeightsError, load_annotator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _random(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(net.named_parameters()):
            fan_in = p[0].numel() if p.ndim > 1 else 0
            p.copy_(torch.randn(p.shape, generator=g) * ((2.0 / fan_in) ** 0.5 if fan_in else 0.05))
    return net.eval()


@pytest.fixture(scope="module")
def line_net() -> LineartNet:
    return _random(LineartNet(), 1)


@pytest.fixture(scope="module")
def anime_net() -> LineartAnimeNet:
    return _random(LineartAnimeNet(), 2)


@pytest.mark.parametrize(
    ("cls", "fixture", "count"),
    [
        (LineartNet, "annotator_lineart_keys.json", 4_290_945),
        (LineartAnimeNet, "annotator_lineart_anime_keys.json", 54_405_505),
    ],
)
def test_keys_equal_the_official_file_layout(cls, fixture, count):
    keys = json.loads((FIXTURES / fixture).read_text())["keys"]
    sd = cls().state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == keys
    assert sum(v.numel() for v in sd.values()) == count


def test_official_files_are_listed():
    for name in (LINEART_FILE, LINEART_COARSE_FILE, LINEART_ANIME_FILE):
        assert name in ANNOTATOR_FILES


def test_network_shapes_and_ranges(line_net, anime_net):
    with torch.no_grad():
        y = line_net(torch.rand(2, 3, 64, 96))
        assert y.shape == (2, 1, 64, 96) and 0 <= y.min() and y.max() <= 1
        z = anime_net(torch.rand(1, 3, 256, 512) * 2 - 1)
        assert z.shape == (1, 1, 256, 512) and -1 <= z.min() and z.max() <= 1


class _ConstLineart(LineartNet):
    """Draws a fixed map: 0 = black line ... 1 = white paper."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.tensor([0.0, 0.5, 0.999, 1.0], dtype=x.dtype)
        return v.view(1, 1, 1, 4).expand(x.shape[0], 1, x.shape[2], 4)


def test_lineart_post_processing_truncates_then_inverts():
    # floor(255 * [0, .5, .999, 1]) = [0, 127, 254, 255]; the hint is 255 - that: white lines on black.
    out = lineart_levels(_ConstLineart(), torch.zeros(1, 3, 2, 4)) * 255
    assert out[0, 0, 0].round().tolist() == [255.0, 128.0, 1.0, 0.0]


class _RecordingAnime(LineartAnimeNet):
    """Records its input and returns a fixed tanh map with columns -1, 0, 1 (line, grey, paper)."""

    seen: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        v = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype).repeat_interleave(x.shape[3] // 3 + 1)[: x.shape[3]]
        return v.view(1, 1, 1, -1).expand(x.shape[0], 1, x.shape[2], -1).contiguous()


def test_lineart_anime_post_processing_and_inversion():
    net = _RecordingAnime()
    levels = torch.full((1, 3, 256, 256), 255.0)
    levels[..., :128] = 0
    out = lineart_anime_levels(net, levels) * 255
    # No resize at multiples of 256; input mapped to [-1, 1]; output tanh*127.5+127.5 truncated, inverted.
    assert net.seen.shape == (1, 3, 256, 256)
    assert net.seen[0, 0, 0, 0] == -1 and net.seen[0, 0, 0, -1] == 1
    row = out[0, 0, 0].round()
    assert row[0] == 255 and row[100] == 128 and row[-1] == 0  # -1 -> 0 -> 255; 0 -> 127 -> 128; 1 -> 255 -> 0


def test_lineart_anime_runs_at_multiples_of_256():
    net = _RecordingAnime()
    levels = torch.rand(2, 3, 320, 200) * 255
    out = lineart_anime_levels(net, levels)
    assert net.seen.shape == (2, 3, 512, 256)
    assert -1 <= net.seen.min() and net.seen.max() <= 1
    # the uint8 resize of the reference: levels are integers after resizing
    seen = (net.seen + 1) * 127.5
    assert torch.allclose(seen, seen.round(), atol=1e-3)
    assert out.shape == (2, 1, 320, 200)
    assert torch.equal(out * 255, (out * 255).round())


@pytest.mark.parametrize("fn", ["lineart", "lineart_anime"])
def test_hint_keeps_size_dtype_and_batch(line_net, anime_net, fn):
    run, net = (lineart, line_net) if fn == "lineart" else (lineart_anime, anime_net)
    x = torch.rand(2, 3, 70, 90, dtype=torch.float64)
    out = run(x, net, resolution=64)
    assert out.shape == (2, 3, 70, 90) and out.dtype == torch.float64
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(out[:, 0], out[:, 1])
    one = run(x[1:], net, resolution=64)
    torch.testing.assert_close(out[1:], one, atol=1.5 / 255, rtol=0)  # instance norm is per image


@pytest.mark.parametrize("fn", [lineart, lineart_anime])
def test_bad_resolution(line_net, fn):
    with pytest.raises(ParameterError):
        fn(torch.rand(1, 3, 64, 64), line_net, resolution=0)


@pytest.mark.parametrize("wrap", ["plain", "state_dict"])
def test_lineart_loader_round_trip(tmp_path, line_net, wrap):
    sd = line_net.state_dict()
    torch.save(sd if wrap == "plain" else {"state_dict": sd}, tmp_path / LINEART_COARSE_FILE)
    loaded = load_annotator(tmp_path / LINEART_COARSE_FILE, LineartNet(), LINEART_COARSE_FILE)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), line_net(x))


def test_lineart_anime_loader_unwraps_module_prefix(tmp_path, anime_net):
    # The official netG.pth is a plain dict saved from DataParallel: every key starts with "module.".
    torch.save({"module." + k: v for k, v in anime_net.state_dict().items()}, tmp_path / LINEART_ANIME_FILE)
    loaded = load_annotator(tmp_path / LINEART_ANIME_FILE, LineartAnimeNet(), LINEART_ANIME_FILE)
    for k, v in anime_net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_wrong_file_under_official_names(tmp_path, line_net):
    torch.save(line_net.state_dict(), tmp_path / LINEART_ANIME_FILE)  # sk_model.pth saved as netG.pth
    with pytest.raises(AnnotatorWeightsError, match=r"does not hold the weights of netG.pth \(32 missing"):
        load_annotator(tmp_path / LINEART_ANIME_FILE, LineartAnimeNet(), LINEART_ANIME_FILE)
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / LINEART_FILE)
    with pytest.raises(AnnotatorWeightsError, match=r"does not hold the weights of sk_model.pth"):
        load_annotator(tmp_path / LINEART_FILE, LineartNet(), LINEART_FILE)
    with pytest.raises(AnnotatorWeightsError, match="were not found"):
        load_annotator(tmp_path / LINEART_COARSE_FILE, LineartNet(), LINEART_COARSE_FILE)

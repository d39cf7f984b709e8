"""NormalBAE: network layout (official scannet.pt keys), TF "SAME" padding, output shapes, post-processing
formula, and the loader on the official container (``{'model': {'module.<key>': ...}}``).

Full-size forwards of EfficientNet-B5 take many seconds on a CPU: shape checks at 512 px run on the
``meta`` device; real forwards use small images.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from affordance.preprocessors.normalbae import NORMALBAE_FILE, NormalBaeNet, normal_bae, normal_bae_map
from affordance.preprocessors.normalbae.efficientnet import EfficientNetB5, SameConv2d, same_padding
from affordance.preprocessors.normalbae.model import normalize_prediction
from affordance.preprocessors.weights import ANNOTATOR_FILES, AnnotatorWeightsError, load_annotator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _random_net(seed: int = 0) -> NormalBaeNet:
    """Seeded weights with sane BatchNorm statistics (positive running variances), eval mode."""
    net = NormalBaeNet()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(net.state_dict(keep_vars=True).items()):
            if not p.is_floating_point():
                continue
            if name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if name.endswith("bn1.weight") else 0.0))
    return net.eval()


@pytest.fixture(scope="module")
def net() -> NormalBaeNet:
    return _random_net()


def test_keys_equal_the_official_file_layout():
    fixture = json.loads((FIXTURES / "annotator_normalbae_keys.json").read_text())["keys"]
    sd = NormalBaeNet().state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == fixture
    assert len(sd) == 936
    assert sum(v.numel() for v in sd.values()) == 72_602_876
    assert NORMALBAE_FILE in ANNOTATOR_FILES


def test_tf_efficientnet_settings():
    enc = EfficientNetB5()
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 for m in bns)
    assert [len(s) for s in enc.blocks] == [3, 5, 5, 7, 7, 9, 3]
    strided = [m for m in enc.modules() if isinstance(m, SameConv2d) and m.stride != (1, 1)]
    assert len(strided) == 5 and all(m.padding == (0, 0) for m in strided)  # padded per input size


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad"),
    [
        (224, 3, 2, (0, 1)),
        (7, 3, 2, (1, 1)),
        (8, 5, 2, (1, 2)),
        (9, 5, 2, (2, 2)),
        (10, 3, 1, (1, 1)),
        (5, 1, 1, (0, 0)),
    ],
)
def test_same_padding_values(size, kernel, stride, pad):
    assert same_padding(size, kernel, stride) == pad


@pytest.mark.parametrize(("h", "w"), [(7, 8), (9, 12), (16, 15)])
def test_same_conv_pads_the_odd_pixel_after(h, w):
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, 3, stride=2)
    x = torch.randn(1, 2, h, w)
    top, bottom = same_padding(h, 3, 2)
    left, right = same_padding(w, 3, 2)
    want = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, None, 2)
    got = conv(x)
    assert got.shape[-2:] == ((h + 1) // 2, (w + 1) // 2)
    torch.testing.assert_close(got, want)


def test_encoder_rounds_odd_sizes_up():
    with torch.device("meta"):
        enc = EfficientNetB5()
        feats = enc(torch.empty(1, 3, 33, 47))
    assert [tuple(f.shape) for f in feats] == [
        (1, 24, 17, 24),
        (1, 40, 9, 12),
        (1, 64, 5, 6),
        (1, 176, 3, 3),
        (1, 2048, 2, 2),
    ]


@pytest.mark.parametrize(("h", "w"), [(512, 512), (512, 640)])
def test_prediction_shapes_at_512(h, w):
    with torch.device("meta"):
        out = NormalBaeNet()(torch.empty(2, 3, h, w))
    assert [tuple(o.shape) for o in out] == [(2, 4, h // s, w // s) for s in (8, 4, 2, 1)]


def test_predictions_are_unit_normals_with_positive_kappa(net):
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    for o in out:
        torch.testing.assert_close(o[:, :3].norm(dim=1), torch.ones_like(o[:, 0]), atol=1e-4, rtol=0)
        assert (o[:, 3] > 0.01).all()
    assert out[-1][:, :3].std() > 0.05  # not a constant map


def test_normalize_prediction_formula():
    x = torch.tensor([3.0, 0.0, -4.0, 0.0, 1.0, 2.0, 2.0, -2.0]).view(2, 4, 1)
    y = normalize_prediction(x)
    want = torch.tensor(
        [[0.6, 0.0, -0.8, 1.01], [1 / 3, 2 / 3, 2 / 3, torch.exp(torch.tensor(-2.0)).item() - 1 + 1.01]]
    )
    torch.testing.assert_close(y[..., 0], want)


class _FixedNormals(nn.Module):
    """Stands in for the network: records its input and returns a fixed normal field (kappa ignored)."""

    def __init__(self, normal: torch.Tensor) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.normal = normal
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.seen = x
        kappa = torch.ones_like(self.normal[:, :1])
        return [torch.cat([self.normal, kappa], 1)]


def test_post_processing_formula_and_channel_order():
    # x, y, z go to R, G, B unflipped as floor(255 * (n + 1) / 2), clipped
    n = torch.zeros(1, 3, 2, 2)
    n[0, :, 0, 0] = torch.tensor([1.0, -1.0, 0.0])
    n[0, :, 0, 1] = torch.tensor([0.5, -0.3, 1.2])
    n[0, :, 1, 0] = torch.tensor([0.999, -0.999, -1.5])
    stub = _FixedNormals(n)
    levels = torch.tensor([0.0, 128.0, 255.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = normal_bae_map(stub, levels) * 255
    assert out[0, :, 0, 0].tolist() == [255.0, 0.0, 127.0]
    assert out[0, :, 0, 1].tolist() == [191.0, 89.0, 255.0]
    assert out[0, :, 1, 0].tolist() == [254.0, 0.0, 0.0]
    # the network sees (levels / 255 - ImageNet mean) / ImageNet std
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    want = (torch.tensor([0.0, 128.0, 255.0]) / 255.0 - mean) / std
    torch.testing.assert_close(stub.seen[0, :, 0, 0], want)


def test_normal_bae_keeps_size_and_batch(net):
    x = torch.rand(2, 3, 40, 70)
    out = normal_bae(x, net, resolution=32)  # detection at 32 x 56, padded to 64 x 64
    assert out.shape == (2, 3, 40, 70) and 0 <= out.min() and out.max() <= 1
    one = normal_bae(x[1:], net, resolution=32)
    torch.testing.assert_close(out[1:], one, atol=2 / 255, rtol=0)  # batched = one at a time


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_loader_reads_the_official_container(tmp_path, net, prefix):
    path = tmp_path / NORMALBAE_FILE
    torch.save({"model": {prefix + k: v for k, v in net.state_dict().items()}}, path)
    loaded = load_annotator(path, NormalBaeNet(), NORMALBAE_FILE)
    assert not loaded.training
    want = net.state_dict()
    got = loaded.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_wrong_file_under_the_official_name(tmp_path):
    torch.save({"model": {"module.conv1_1.weight": torch.zeros(64, 3, 3, 3)}}, tmp_path / NORMALBAE_FILE)
    with pytest.raises(AnnotatorWeightsError, match=r"does not hold the weights of scannet.pt \(936 missing"):
        load_annotator(tmp_path / NORMALBAE_FILE, NormalBaeNet(), NORMALBAE_FILE)


def test_half_precision_levels_are_normalised_in_float32():
    """The network sees the same input as for the float32 image (in bfloat16 it was off by up to ~1 %)."""
    levels = torch.arange(256.0).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    flat = torch.zeros(1, 3, 16, 16)
    flat[:, 2] = 1.0  # +Z everywhere
    stub = _FixedNormals(flat)
    out32 = normal_bae_map(stub, levels)
    want = stub.seen
    out16 = normal_bae_map(stub, levels.to(torch.bfloat16))
    assert stub.seen.dtype == torch.float32
    assert torch.equal(stub.seen, want)
    assert out16.dtype == torch.bfloat16 and torch.equal(out16, out32.to(torch.bfloat16))

"""MiDaS DPT-Hybrid layout, shapes (position embeddings resized for non-384 inputs), post-processing formulas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from affordance.preprocessors.errors import ParameterError
from affordance.preprocessors.midas import (
    MIDAS_FILE,
    DPTHybridNet,
    depth_levels,
    midas_depth,
    midas_depth_and_normal,
    midas_normal,
    normal_from_depth,
    normalise_depth,
)
from affordance.preprocessors.weights import AnnotatorWeightsError, load_annotator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.fixture(scope="module")
def net() -> DPTHybridNet:
    """Seeded He-scaled weights (gain 0.5): the depth has structure, no saturation."""
    net = DPTHybridNet()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(net.state_dict(keep_vars=True).items()):
            fan_in = p[0].numel() if p.ndim > 1 else 0
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 * (2.0 / fan_in) ** 0.5 if fan_in else 0.05))
    return net.eval().requires_grad_(False)


def test_keys_equal_the_official_file_layout():
    fixture = json.loads((FIXTURES / "annotator_midas_keys.json").read_text())["keys"]
    sd = DPTHybridNet().state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == fixture
    assert sum(v.numel() for v in sd.values()) == 123_146_985


def test_position_embedding_resizing(net):
    vit = net.pretrained.model
    assert vit.position_embedding(24, 24) is vit.pos_embed  # 384 px: the learned grid as is
    pe = vit.position_embedding(32, 40)  # 512 x 640 px
    assert pe.shape == (1, 1 + 32 * 40, 768)
    assert torch.equal(pe[:, 0], vit.pos_embed[:, 0])  # the class token's embedding is kept
    grid, old = pe[0, 1:].view(32, 40, 768), vit.pos_embed[0, 1:].view(24, 24, 768)
    for (i, j), (oi, oj) in zip([(0, 0), (0, 39), (31, 0), (31, 39)], [(0, 0), (0, 23), (23, 0), (23, 23)]):
        torch.testing.assert_close(grid[i, j], old[oi, oj])  # upscaling with half-pixel centres keeps corners


def test_network_shapes_batched(net):
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    depth = net(x)
    assert depth.shape == (2, 1, 64, 96) and depth.min() >= 0
    torch.testing.assert_close(net(x[1:]), depth[1:], rtol=1e-4, atol=1e-6)  # images do not mix
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.zeros(1, 3, 64, 80))


def test_depth_and_normal_at_512x640(net):
    """A non-384, non-square detection size: 32 x 40 tokens, interpolated position embeddings."""
    image = torch.rand(1, 3, 512, 640)
    depth, normal = midas_depth_and_normal(image, net, resolution=512)
    assert depth.shape == normal.shape == (1, 3, 512, 640)
    assert depth.min() == 0 and depth.max() == 1  # normalised per image
    assert torch.equal(depth[:, 0], depth[:, 1]) and torch.equal(depth[:, 0], depth[:, 2])
    assert torch.equal((depth * 255).round(), (depth * 255).round().floor())
    assert 0 <= normal.min() and normal.max() <= 1 and normal.std() > 0


def test_padded_batch_keeps_size_and_matches_single_images(net):
    image = torch.rand(2, 3, 70, 90)  # detection 64 x 82, padded to 64 x 128
    depth = midas_depth(image, net, resolution=64)
    normal = midas_normal(image, net, resolution=64)
    assert depth.shape == normal.shape == (2, 3, 70, 90)
    one = midas_depth(image[1:], net, resolution=64)
    assert (one - depth[1:]).abs().max() <= 1 / 255 + 1e-6  # per-image normalisation, not per batch


def test_depth_levels_formula():
    ramp = torch.arange(11.0).view(1, 1, 1, 11).expand(2, 1, 3, 11) * torch.tensor([1.0, 7.0]).view(2, 1, 1, 1)
    got = (depth_levels(ramp + 5.0) * 255).round()
    want = torch.tensor([0, 25, 51, 76, 102, 127, 153, 178, 204, 229, 255.0])  # floor(255 * x / 10)
    assert torch.equal(got[:, 0], want.expand(2, 3, 11))
    assert torch.equal(normalise_depth(torch.full((1, 1, 4, 4), 3.0)), torch.zeros(1, 1, 4, 4))  # flat: black


def test_each_image_of_a_batch_is_normalised_on_its_own_range():
    """A depth (and normal) hint does not depend on the other images of its batch, nor on how a node chunks it."""
    a = torch.arange(16.0).view(1, 1, 4, 4)
    batch = torch.cat([a, a + 10.0, 3.0 * a + 1.0])
    out = normalise_depth(batch)
    for i in range(len(batch)):
        assert torch.equal(out[i : i + 1], normalise_depth(batch[i : i + 1]))
        assert out[i].min().item() == 0.0 and out[i].max().item() == 1.0
    assert torch.equal(depth_levels(batch)[1:2], depth_levels(batch[1:2]))


def test_normal_map_on_a_depth_ramp():
    """depth = x on 11 columns: Sobel x = 8 inside, 0 on the reflected borders, y = 0; a = 6 -> |n| = 10."""
    ramp = torch.arange(11.0).view(1, 1, 1, 11).expand(1, 1, 5, 11)
    levels = (normal_from_depth(ramp, a=6.0, bg_threshold=0.15) * 255).round()[0]
    # channels (R, G, B) = (z, y, x): inside (0.6, 0, 0.8) -> (204, 127, 229)
    want = torch.tensor([[204.0, 127.0, 229.0]]).repeat(11, 1)
    want[[0, 1, 10]] = torch.tensor([255.0, 127.0, 127.0])  # border (gradient 0) and background (x/10 < 0.15)
    assert torch.equal(levels.permute(1, 2, 0), want.expand(5, 11, 3))
    # background is below the threshold, as the reference's `depth < bg_th`: column 2 (exactly 0.2) is kept
    at = (normal_from_depth(ramp, a=6.0, bg_threshold=0.2) * 255).round()[0, :, 2]
    assert at[:, 1].tolist() == [255.0, 127.0, 127.0] and at[:, 2].tolist() == [204.0, 127.0, 229.0]
    # the same ramp along y moves the gradient to G
    levels_y = (normal_from_depth(ramp.transpose(-1, -2), a=6.0, bg_threshold=0.15) * 255).round()[0]
    assert levels_y[:, 5, 0].tolist() == [204.0, 229.0, 127.0]
    # a = 0 on a flat map: a zero vector gives level 127, not NaN
    flat = normal_from_depth(torch.ones(1, 1, 4, 4), a=0.0, bg_threshold=0.0)
    assert torch.equal((flat * 255).round(), torch.full((1, 3, 4, 4), 127.0))


def test_parameters_are_checked(net):
    image = torch.rand(1, 3, 64, 64)
    with pytest.raises(ParameterError, match="bg_threshold"):
        midas_normal(image, net, bg_threshold=1.5)
    with pytest.raises(ParameterError, match="a must be"):
        midas_normal(image, net, a=-1.0)
    with pytest.raises(ParameterError, match="a must be"):
        midas_normal(image, net, a=6 * math.pi)


def test_loader_round_trip_of_the_plain_official_file(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / MIDAS_FILE)  # the official file is a plain state dict
    loaded = load_annotator(tmp_path / MIDAS_FILE, DPTHybridNet(), MIDAS_FILE)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(loaded(x), net(x))


def test_wrong_file_under_the_official_name(tmp_path):
    torch.save({"norm": torch.zeros(1, 3, 1, 1)}, tmp_path / MIDAS_FILE)  # e.g. HED saved under MiDaS' name
    with pytest.raises(AnnotatorWeightsError, match=r"does not hold the weights of dpt_hybrid-midas-501f0c75.pt"):
        load_annotator(tmp_path / MIDAS_FILE, DPTHybridNet(), MIDAS_FILE)


def test_vit_layer_norm_eps_and_group_norm_groups():
    """timm's LayerNorm eps 1e-6 in every block and the final norm (torch's default 1e-5 passes the reference test
    on random weights, within its tolerance), GroupNorm with 32 groups in the ResNet."""
    with torch.device("meta"):
        net = DPTHybridNet()
    lns = [m for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(lns) == 2 * 12 + 1 and all(m.eps == 1e-6 for m in lns)
    gns = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert gns and all(m.num_groups == 32 for m in gns)

"""Our full-size networks have exactly the keys and shapes of the official ControlNet layouts.

The tables in tests/fixtures/control_{sd15,sd21,sdxl}_keys.json come from an independent implementation
(ComfyUI's ``comfy.cldm.cldm.ControlNet`` on the meta device; see each file's ``source`` and
tests/comfy/test_key_fixtures.py, which regenerates and checks them). Everything here runs on the meta
device: no weights are allocated and ComfyUI is not needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from affordance.controlnet import (
    SD15,
    SD21,
    SDXL,
    ControlNet,
    Layout,
    config_from_state_dict,
    detect_format,
)
from affordance.controlnet.keymap import diffusers_to_original, original_to_diffusers

PRESETS = {"sd15": SD15, "sd21": SD21, "sdxl": SDXL}
# tensors, parameters (millions, 2 decimals) and residuals of each official layout
SIZES = {"sd15": (340, 361.28, 13), "sd21": (340, 364.23, 13), "sdxl": (844, 1251.01, 10)}


def load_fixture(repo_root: Path, family: str) -> dict[str, list[int]]:
    data = json.loads((repo_root / "tests" / "fixtures" / f"control_{family}_keys.json").read_text())
    assert "comfy.cldm.cldm.ControlNet" in data["source"], "the fixture must say where it comes from"
    return data["keys"]


def meta_state_dict(keys: dict[str, list[int]], prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: torch.empty(shape, device="meta") for k, shape in keys.items()}


def shapes(sd: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("family", list(PRESETS))
def test_fixture_sizes(family, repo_root):
    keys = load_fixture(repo_root, family)
    tensors, params, _ = SIZES[family]
    assert len(keys) == tensors
    total = sum(torch.Size(shape).numel() for shape in keys.values())
    assert round(total / 1e6, 2) == params


@pytest.mark.parametrize("family", list(PRESETS))
def test_our_network_has_exactly_the_official_keys_and_shapes(family, repo_root):
    expected = load_fixture(repo_root, family)
    with torch.device("meta"):
        model = ControlNet(PRESETS[family])
    ours = shapes(model.state_dict())
    missing = sorted(set(expected) - set(ours))
    extra = sorted(set(ours) - set(expected))
    assert missing == [], f"our {family} network lacks official keys"
    assert extra == [], f"our {family} network has keys the official layout lacks"
    wrong = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
    assert wrong == {}, "shapes differ (ours, official)"
    assert len(model.state_dict()) == len(expected)  # no buffers beyond the official tensors
    assert PRESETS[family].num_residuals == SIZES[family][2]


@pytest.mark.parametrize("family", list(PRESETS))
def test_config_from_official_keys_is_the_preset(family, repo_root):
    sd = meta_state_dict(load_fixture(repo_root, family))
    config = config_from_state_dict(sd)
    assert config == PRESETS[family]
    assert config.family is PRESETS[family].family


@pytest.mark.parametrize("family", list(PRESETS))
def test_official_layouts_are_detected(family, repo_root):
    keys = load_fixture(repo_root, family)
    plain = detect_format(keys)
    assert plain.layout is Layout.ORIGINAL and plain.prefix == ""

    prefixed = meta_state_dict(keys, prefix="control_model.")  # lllyasviel .pth files
    detection = detect_format(prefixed)
    assert detection.layout is Layout.ORIGINAL_PREFIXED
    assert detection.prefix == "control_model."
    stripped = {k[len(detection.prefix) :]: v for k, v in prefixed.items() if detection.selects(k)}
    assert shapes(stripped) == keys
    assert config_from_state_dict(stripped) == PRESETS[family]


@pytest.mark.parametrize("family", list(PRESETS))
def test_diffusers_renaming_of_official_keys_round_trips(family, repo_root):
    keys = load_fixture(repo_root, family)
    diffusers = original_to_diffusers(meta_state_dict(keys))
    assert len(diffusers) == len(keys)
    assert detect_format(diffusers).layout is Layout.DIFFUSERS
    assert shapes(diffusers_to_original(diffusers)) == keys


def test_a_diffusers_key_that_fits_nowhere_is_named():
    from affordance.controlnet.errors import KeyMismatchError

    keys = {k: torch.zeros(1) for k in ("conv_in.weight", "down_blocks.0.resnets.0.conv1.weight", "some_lora.extra.weight")}
    with pytest.raises(KeyMismatchError, match="some_lora.extra.weight"):
        diffusers_to_original(keys)


@pytest.mark.parametrize(
    ("keys", "found"),
    [
        ({"down_blocks.0.resnets.0.conv1.weight", "down_blocks.2.resnets.0.conv1.weight"}, r"\[0, 2\]"),
        ({"conv_in.weight", "mid_block.resnets.0.conv1.weight"}, r"\[\]"),
    ],
    ids=["a level skipped", "no down blocks"],
)
def test_diffusers_down_levels_must_be_contiguous(keys, found):
    from affordance.controlnet.errors import KeyMismatchError
    from affordance.controlnet.keymap import diffusers_structure

    with pytest.raises(KeyMismatchError, match=rf"no contiguous down blocks \(levels found: {found}\)"):
        diffusers_structure(keys)


def test_a_diffusers_file_missing_a_level_is_a_checkpoint_error(tmp_path):
    """Not a bare ``KeyError: 1`` (which the command line would not catch and the node would show as "1")."""
    from safetensors.torch import save_file

    from affordance.controlnet import read_controlnet
    from affordance.controlnet.errors import CheckpointError

    names = ["controlnet_cond_embedding.conv_in.weight", "conv_in.weight", "down_blocks.0.resnets.0.conv1.weight",
             "down_blocks.2.resnets.0.conv1.weight"]
    path = tmp_path / "gap.safetensors"
    save_file({k: torch.zeros(1) for k in names}, path)
    with pytest.raises(CheckpointError, match=r"levels found: \[0, 2\]"):
        read_controlnet(path)


def test_a_middle_of_two_resblocks_without_attention_maps_both():
    from affordance.controlnet.keymap import diffusers_structure, prefix_pairs

    keys = {"down_blocks.0.resnets.0.conv1.weight", "mid_block.resnets.0.conv1.weight", "mid_block.resnets.1.conv1.weight"}
    assert diffusers_structure(keys) == ((1,), False, 2)
    pairs = {d: o for d, o, _ in prefix_pairs((1,), False, 2)}
    assert pairs["mid_block.resnets.0."] == "middle_block.0." and pairs["mid_block.resnets.1."] == "middle_block.1."
    assert "mid_block.resnets.1." not in {d for d, _, _ in prefix_pairs((1,), False, 1)}


def test_a_middle_of_two_resblocks_without_attention_renames_the_sub_keys_of_both(tiny_model):
    """Each ResBlock's own names (in_layers.0 -> norm1...) change too, not only the prefixes, and back."""
    sd = ControlNet(tiny_model.config.with_options(transformer_depth_middle=0)).state_dict()
    assert not any(k.startswith("middle_block.2.") for k in sd)  # two ResBlocks, no attention between them
    renamed = original_to_diffusers(sd)
    for i in (0, 1):
        assert {f"mid_block.resnets.{i}.norm1.weight", f"mid_block.resnets.{i}.conv2.weight"} <= renamed.keys()
    assert not any("in_layers" in k or "out_layers" in k for k in renamed)
    assert diffusers_to_original(renamed).keys() == sd.keys()

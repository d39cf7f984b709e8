"""Reading the architecture from a state dict's keys and shapes (config_from_state_dict) and what a config says
about itself (family, residual sizes)."""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet import SD15, SDXL, ControlNet, ControlNetConfig, UnknownFormatError, config_from_state_dict
from affordance.controlnet.errors import ConfigError, KeyMismatchError


def tiny(**changes: object) -> ControlNetConfig:
    base = {
        "model_channels": 32,
        "channel_mult": (1, 2),
        "num_res_blocks": (1, 1),
        "transformer_depth": (1, 0),
        "transformer_depth_middle": 1,
        "context_dim": 768,
        "num_heads": 8,
    }
    return ControlNetConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_a_head_count_given_is_kept_and_the_head_width_left_to_it():
    sd = ControlNet(tiny()).state_dict()
    config = config_from_state_dict(sd, num_heads=4)
    assert (config.num_heads, config.num_head_channels) == (4, -1)
    config = config_from_state_dict(sd, num_head_channels=16)
    assert (config.num_heads, config.num_head_channels) == (-1, 16)
    assert (config_from_state_dict(sd).num_heads, config_from_state_dict(sd).num_head_channels) == (8, -1)


def test_residual_downsampling_covers_every_residual_middle_included():
    assert SD15.residual_downsampling() == (1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8, 8)
    assert SDXL.residual_downsampling() == (1, 1, 1, 2, 2, 2, 4, 4, 4, 4)
    assert len(SDXL.residual_downsampling()) == SDXL.num_residuals == len(SDXL.residual_channels())


def test_a_missing_input_block_in_the_middle_is_refused_not_read_as_a_smaller_encoder():
    sd = ControlNet(tiny(num_res_blocks=(2, 1), transformer_depth=(1, 1, 0))).state_dict()
    holed = {k: v for k, v in sd.items() if not k.startswith("input_blocks.2.")}
    with pytest.raises(KeyMismatchError, match=r"input block indices are not contiguous: found \[0, 1, 3, 4\]"):
        config_from_state_dict(holed)


def test_a_first_conv_that_is_not_4d_is_named():
    sd = dict(ControlNet(tiny()).state_dict())
    sd["input_blocks.0.0.weight"] = torch.zeros(32)
    with pytest.raises(KeyMismatchError, match=r"input_blocks.0.0.weight should be a 4-D conv weight, got shape \(32,\)"):
        config_from_state_dict(sd)


def test_the_middle_zero_conv_is_needed():
    sd = {k: v for k, v in ControlNet(tiny()).state_dict().items() if not k.startswith("middle_block_out.")}
    with pytest.raises(KeyMismatchError, match=r"key 'middle_block_out.0.weight' is missing"):
        config_from_state_dict(sd)


@pytest.mark.parametrize(
    "changes",
    [
        {"context_dim": 512},
        {"context_dim": 1024, "adm_in_channels": 2816, "num_heads": -1, "num_head_channels": 64},  # SD2 has no label
        {"context_dim": 768, "adm_in_channels": 2816},
    ],
)
def test_contexts_and_labels_of_no_family_are_named(changes):
    with pytest.raises(UnknownFormatError, match=r"matches no supported family"):
        _ = tiny(**changes).family


def test_an_input_block_width_that_is_no_multiple_of_the_first_is_named():
    """A ResBlock whose output channels are not a multiple of model_channels is refused by block and width."""
    sd = dict(ControlNet(tiny()).state_dict())
    sd["input_blocks.3.0.out_layers.3.weight"] = torch.zeros(48, 64, 3, 3)
    with pytest.raises(KeyMismatchError, match=r"input block 3 has 48 channels, not a multiple of 32"):
        config_from_state_dict(sd)


def test_an_encoder_level_without_a_residual_block_is_refused():
    """A level holding only its downsampler (here the last level cut off) is a typed KeyMismatchError, not an
    IndexError from reading the level's width; a config cannot ask for such a level either."""
    # input_blocks: 0 conv, 1 ResBlock, 2 downsampler, 3 ResBlock: drop 3 and its zero conv
    cut = ("input_blocks.3.", "zero_convs.3.")
    sd = {k: v for k, v in ControlNet(tiny()).state_dict().items() if not k.startswith(cut)}
    with pytest.raises(KeyMismatchError, match="a level of the encoder has no residual block"):
        config_from_state_dict(sd)
    with pytest.raises(ConfigError, match=r"num_res_blocks needs at least one ResBlock per level, got \(0, 1\)"):
        tiny(num_res_blocks=(0, 1), transformer_depth=(0,))


def test_channels_that_change_inside_a_level_are_refused():
    """Two ResBlocks of one level (no downsampler between them) with different widths are not an SD encoder."""
    sd = dict(ControlNet(tiny(num_res_blocks=(2, 1), transformer_depth=(1, 1, 0))).state_dict())
    assert config_from_state_dict(sd).num_res_blocks == (2, 1)
    sd["input_blocks.2.0.out_layers.3.weight"] = torch.zeros(64, 32, 3, 3)
    with pytest.raises(KeyMismatchError, match="channels change inside a level of the encoder"):
        config_from_state_dict(sd)


@pytest.mark.parametrize(
    ("heads", "why"),
    [
        ({"num_heads": 0}, "num_heads must be a positive whole number"),
        ({"num_heads": 4, "num_head_channels": 16}, "set exactly one of num_heads"),
    ],
)
def test_a_config_that_cannot_be_built_is_a_key_mismatch(heads, why):
    """The ConfigError of a contradictory architecture becomes a KeyMismatchError (a CheckpointError) that
    keeps its reason. From weights alone every inferred config is consistent; the head overrides reach it."""
    sd = ControlNet(tiny()).state_dict()
    with pytest.raises(KeyMismatchError, match=rf"inconsistent ControlNet architecture in the weights: {why}"):
        config_from_state_dict(sd, **heads)

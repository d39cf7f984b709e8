"""Configurations inferred from keys at their edges: a one-ResBlock middle, every zero convolution needed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from affordance.controlnet import SD15, ConfigError, ControlNet, ControlNetConfig, Family, config_from_state_dict
from affordance.controlnet.errors import KeyMismatchError


# Round 10 (mutant 062): a middle block of one ResBlock (diffusers' mid_block_type=None style) has no attention
# layer; a config that asks for both is refused, whether the attention comes from transformer blocks or is given.
def test_one_middle_resblock_with_attention_is_refused():
    tiny = ControlNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), transformer_depth=(1, 0))
    assert replace(tiny, transformer_depth_middle=0, middle_resblocks=1).middle_resblocks == 1  # plain: fine
    with pytest.raises(ConfigError, match="a middle block with an attention layer has two ResBlocks around it"):
        replace(tiny, middle_resblocks=1)  # transformer_depth_middle defaults to 1
    with pytest.raises(ConfigError, match="a middle block with an attention layer has two ResBlocks around it"):
        replace(SD15, middle_resblocks=1)


# Round 17 (mutant 53): transformer blocks in the middle need its attention layer; a config that has them but
# says the middle has no attention is refused, while one that names the attention explicitly is fine.
def test_middle_transformer_blocks_without_the_attention_layer_are_refused():
    assert tiny(transformer_depth_middle=1, attention_middle=True).has_middle_attention
    assert not tiny(transformer_depth_middle=0, attention_middle=False).has_middle_attention
    with pytest.raises(ConfigError, match="the middle block has transformer blocks, so it must have its attention"):
        tiny(transformer_depth_middle=1, attention_middle=False)


# Round 10 (mutant 146): config_from_state_dict needs a zero conv for every input block, as it needs the middle
# one (test_the_middle_zero_conv_is_needed); a state dict missing one is refused by name, not read as a config.
def tiny(**changes: object) -> ControlNetConfig:
    base = {"model_channels": 32, "channel_mult": (1, 2), "num_res_blocks": (1, 1), "transformer_depth": (1, 0)}
    return ControlNetConfig(**{**base, **changes})


@pytest.mark.parametrize("which", [0, 2])
def test_every_zero_conv_is_needed(which):
    sd = {k: v for k, v in ControlNet(tiny()).state_dict().items() if not k.startswith(f"zero_convs.{which}.")}
    with pytest.raises(KeyMismatchError, match=rf"key 'zero_convs.{which}.0.weight' is missing"):
        config_from_state_dict(sd)


# Round 17 (mutant 63): a ControlNet without cross-attention holds no text width; without a label embedding it is
# read as SD1.x (768), so it loads, and reads back as the configuration it was made from.
def test_a_controlnet_without_cross_attention_reads_as_sd1():
    plain = tiny(transformer_depth=(0, 0), transformer_depth_middle=0)
    read = config_from_state_dict(ControlNet(plain).state_dict())
    assert read == plain and read.family is Family.SD1 and read.context_dim == 768


def test_transformer_depth_needs_one_entry_per_residual_block():
    """A transformer_depth whose length is not sum(num_res_blocks) is refused, naming both counts."""
    with pytest.raises(ConfigError, match=r"transformer_depth needs one entry per residual block \(2\), got 3"):
        tiny(transformer_depth=(1, 0, 0))
    with pytest.raises(ConfigError, match=r"transformer_depth needs one entry per residual block \(3\), got 2"):
        tiny(num_res_blocks=(2, 1))


def test_attention_needs_one_entry_per_residual_block():
    """An explicit attention tuple shorter or longer than transformer_depth is refused, naming both counts."""
    assert tiny(attention=(True, False)).has_attention(0)
    with pytest.raises(ConfigError, match=r"attention needs one entry per residual block \(2\), got 1"):
        tiny(attention=(True,))
    with pytest.raises(ConfigError, match=r"attention needs one entry per residual block \(2\), got 3"):
        tiny(attention=(True, False, False))

"""Layout detection by key signatures: ours, specific before broad, and other families named."""

from __future__ import annotations

import pytest

from affordance.controlnet import Layout, UnknownFormatError, WrongFamilyError, detect_format

ORIGINAL = {"input_hint_block.0.weight", "zero_convs.0.0.weight", "input_blocks.0.0.weight"}


@pytest.mark.parametrize(
    ("keys", "layout", "prefix"),
    [
        (ORIGINAL, Layout.ORIGINAL, ""),
        ({"control_model." + k for k in ORIGINAL}, Layout.ORIGINAL_PREFIXED, "control_model."),
        (
            {"control_model." + k for k in ORIGINAL} | {"model.diffusion_model.input_blocks.0.0.weight"},
            Layout.ORIGINAL_MERGED,
            "control_model.",
        ),
        ({"controlnet_cond_embedding.conv_in.weight", "conv_in.weight"}, Layout.DIFFUSERS, ""),
    ],
)
def test_detects_our_layouts(keys, layout, prefix):
    d = detect_format(keys)
    assert (d.layout, d.prefix) == (layout, prefix)


def test_keys_given_once_as_a_generator_are_read_like_a_set():
    """detect_format takes any iterable of names: a generator (read once) detects what its set does."""
    merged = {"control_model." + k for k in ORIGINAL} | {"model.diffusion_model.input_blocks.0.0.weight"}
    for keys in (ORIGINAL, merged):
        expected = detect_format(keys)
        d = detect_format(k for k in sorted(keys))
        assert (d.layout, d.prefix) == (expected.layout, expected.prefix)


def test_merged_selects_only_control_keys():
    d = detect_format({"control_model.zero_convs.0.0.weight", "model.diffusion_model.x"})
    assert d.selects("control_model.zero_convs.0.0.weight")
    assert not d.selects("model.diffusion_model.x")


@pytest.mark.parametrize(
    ("keys", "name"),
    [
        ({"lora_controlnet", "input_blocks.0.0.weight"}, "Control-LoRA"),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"}, "a LoRA"),
        ({"diffusion_model.input_blocks.1.1.proj_in.lora_A.weight"}, "a LoRA"),
        ({"controlnet_blocks.0.weight", "pos_embed_input.proj.weight", "transformer_blocks.0.norm1.linear.weight"}, "SD3"),
        ({"controlnet_blocks.0.weight", "controlnet_x_embedder.weight", "transformer_blocks.0.attn.to_q.weight"}, "Flux"),
        ({"controlnet_blocks.0.weight", "double_blocks.0.img_attn.norm.key_norm.scale"}, "Flux"),
        ({"controlnet_blocks.0.linear.weight"}, "Flux"),
        ({"after_proj_list.18.bias"}, "HunyuanDiT"),
        ({"adapter.body.0.resnets.0.block1.weight"}, "T2I-Adapter"),
        ({"conv_in.weight", "body.0.block1.weight"}, "T2I-Adapter"),
        ({"body.0.in_conv.weight"}, "T2I-Adapter"),
        ({"backbone.0.0.weight"}, "Stable Cascade"),
        ({"image_proj.proj.weight", "ip_adapter.1.to_k_ip.weight"}, "IP-Adapter"),
        (
            {"controlnet_cond_embedding.conv_in.weight", "control_add_embedding.linear_1.bias", "task_embedding"},
            "union ControlNet",
        ),
        ({"control_model.zero_convs.0.0.weight", "difference"}, "difference"),
        ({"model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.encoder.conv_in.weight"}, "whole Stable Diffusion checkpoint"),
        ({"down_blocks.0.resnets.0.conv1.weight", "up_blocks.0.resnets.0.conv1.weight"}, "UNet"),
        ({"encoder.down.0.block.0.conv1.weight", "decoder.conv_in.weight"}, "VAE"),
        ({"text_model.encoder.layers.0.mlp.fc1.weight"}, "text encoder"),
        # each of these keys alone names its family (rows of the detection table that had no case)
        ({"lora_te_text_model_encoder_layers_0_mlp_fc1.alpha"}, "a LoRA"),
        ({"after_proj_list.0.weight"}, "HunyuanDiT"),
        ({"controlnet_blocks.0.weight", "input_block.weight", "text_embedding_padding"}, "HunyuanDiT"),
        ({"adapter.conv_in.weight"}, "T2I-Adapter"),
        ({"ctrl_conv_in.weight"}, "ControlNet-XS"),
        ({"output_blocks.0.0.in_layers.0.weight", "input_blocks.0.0.weight", "input_blocks.1.0.in_layers.0.weight"}, "UNet"),
    ],
)
def test_other_families_are_named(keys, name):
    with pytest.raises(WrongFamilyError, match=name) as info:
        detect_format(keys, "x.safetensors")
    assert "x.safetensors" in str(info.value)


def test_unknown_layout_lists_keys():
    with pytest.raises(UnknownFormatError, match=r"matches no known ControlNet layout \(2 keys, e.g. a.weight, b.bias"):
        detect_format({"a.weight", "b.bias"})


@pytest.mark.parametrize(
    "keys",
    [
        {"controlnet_blocks.0.weight", "input_block.weight"},  # HunyuanDiT needs its padding key too
        {"input_block.weight", "text_embedding_padding"},  # ... and its ControlNet blocks
        {"output_blocks.0.0.in_layers.0.weight"},  # a decoder alone is not a UNet
        {"up_blocks.0.resnets.0.conv1.weight"},  # nor in the diffusers layout
        {"encoder.down.0.block.0.conv1.weight"},  # a VAE has an encoder and a decoder
        {"decoder.conv_in.weight"},
        {"input_hint_block.0.weight", "input_blocks.0.0.weight"},  # our original layout needs its zero convs
        # the base models of other families are not their ControlNets
        {"double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"},  # Flux
        {"transformer_blocks.0.img_mlp.net.0.proj.weight"},  # Qwen-Image
        {"pos_embed_input.proj.weight"},  # SD3
        {"spatial_feat_mapping.0.weight"},  # a CoAdapter has its task embedding too
    ],
)
def test_partial_family_signatures_are_unknown_not_misnamed(keys):
    with pytest.raises(UnknownFormatError):
        detect_format(keys, "x.safetensors")


def test_a_detection_is_a_frozen_value():
    """``Detection`` (public) is a value: equal detections hash alike (a caller may keep them in a set or as dict
    keys) and its fields cannot be reassigned."""
    import dataclasses

    from affordance.controlnet import Detection

    found = detect_format({"control_model.zero_convs.0.0.weight", "control_model.input_hint_block.0.weight"})
    assert found == Detection(Layout.ORIGINAL_PREFIXED, "control_model.")
    assert {found: 1}[Detection(Layout.ORIGINAL_PREFIXED, "control_model.")] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.prefix = ""  # type: ignore[misc]

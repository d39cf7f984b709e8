"""Recognise a checkpoint's layout from its keys: specific signatures before broad ones, never file names.

Other model families that users drop into ``models/controlnet`` by mistake (T2I-Adapters, LoRAs,
SD3/Flux ControlNets, whole SD checkpoints...) are named in the error, with where they belong.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import UnknownFormatError, WrongFamilyError

ORIGINAL_PREFIX = "control_model."


class Layout(str, enum.Enum):
    """Key layouts of SD-family ControlNets that we load."""

    ORIGINAL = "original"  # lllyasviel keys without prefix (1.1 safetensors, comfyanonymous fp16 files)
    ORIGINAL_PREFIXED = "original-prefixed"  # lllyasviel .pth with "control_model." keys
    ORIGINAL_MERGED = "original-merged"  # 1.0 full checkpoint: "control_model." next to a whole SD model
    DIFFUSERS = "diffusers"  # diffusers ControlNetModel

    @property
    def description(self) -> str:
        """Human description used in reports."""
        return {
            "original": "original ControlNet layout (lllyasviel 1.0/1.1, no prefix)",
            "original-prefixed": "original ControlNet layout with the 'control_model.' prefix",
            "original-merged": "ControlNet 1.0 full checkpoint ('control_model.' beside a whole SD model)",
            "diffusers": "diffusers ControlNetModel",
        }[self.value]


@dataclass(frozen=True)
class Detection:
    """Where the ControlNet weights are in a state dict.

    Attributes:
        layout: the key layout.
        prefix: the prefix to strip from ControlNet keys ("" or "control_model.").
    """

    layout: Layout
    prefix: str

    def selects(self, key: str) -> bool:
        """Whether ``key`` belongs to the ControlNet (False for the rest of a merged checkpoint)."""
        return key.startswith(self.prefix)


def _any(keys: set[str], pred: Callable[[str], bool]) -> bool:
    return any(pred(k) for k in keys)


_FOREIGN: list[tuple[str, Callable[[set[str]], bool], str]] = [
    (
        "a Control-LoRA (Stability AI)",
        lambda k: "lora_controlnet" in k,
        "Control-LoRAs are not supported by Affordance yet; load it with ComfyUI's 'Load ControlNet Model' node.",
    ),
    (
        "a LoRA",
        lambda k: _any(k, lambda s: ".lora_down." in s or ".lora_up." in s or ".lora_A." in s or ".lora_B." in s)
        or _any(k, lambda s: s.startswith(("lora_unet_", "lora_te"))),
        "put it in ComfyUI/models/loras and load it with a LoRA loader.",
    ),
    (
        "a union ControlNet (ControlNet++ / ProMax)",
        lambda k: _any(k, lambda s: s.endswith("control_add_embedding.linear_1.bias"))
        or ("task_embedding" in k and "controlnet_cond_embedding.conv_in.weight" in k),
        "union ControlNets are not supported by Affordance yet; use ComfyUI's ControlNet nodes with "
        "'SetUnionControlNetType'.",
    ),
    (
        "a CoAdapter fuser (TencentARC T2I-Adapter)",
        lambda k: "task_embedding" in k and _any(k, lambda s: s.startswith("spatial_feat_mapping.")),
        "it combines the features of several T2I-Adapters and is not a ControlNet; neither Affordance nor "
        "ComfyUI's own loaders use it.",
    ),
    (
        "a BrushNet inpainting model",
        lambda k: _any(k, lambda s: s.startswith(("brushnet_down_blocks.", "brushnet_mid_block."))),
        "load it with a BrushNet node pack (e.g. ComfyUI-BrushNet).",
    ),
    (
        "a ControlNet-LLLite (kohya, SDXL)",
        lambda k: _any(k, lambda s: s.startswith("lllite_")),
        "load it with the ControlNet-LLLite node pack (ControlNet-LLLite-ComfyUI).",
    ),
    (
        "a SparseCtrl ControlNet (AnimateDiff)",
        lambda k: _any(k, lambda s: ".motion_modules." in s) and _any(k, lambda s: "controlnet_cond_embedding." in s),
        "load it with ComfyUI-Advanced-ControlNet's SparseCtrl nodes (with AnimateDiff-Evolved).",
    ),
    (
        "an AnimateDiff motion module",
        lambda k: _any(k, lambda s: ".motion_modules." in s or s.startswith("motion_modules.")),
        "put it in ComfyUI/models/animatediff_models and load it with AnimateDiff-Evolved.",
    ),
    (
        "a ControlNet-XS",
        lambda k: _any(
            k,
            lambda s: s.startswith(("ctrl_conv_in.", "control_to_base_for_conv_in."))
            or ".base_to_ctrl." in s
            or ".ctrl_to_base." in s,
        ),
        "Affordance and ComfyUI's own loaders do not load ControlNet-XS models.",
    ),
    (
        "a Kolors ControlNet",
        lambda k: "encoder_hid_proj.weight" in k and "controlnet_cond_embedding.conv_in.weight" in k,
        "it is made for Kolors (ChatGLM text features), not SD1.x/SD2.x/SDXL; load it with a Kolors node pack.",
    ),
    (
        "an SD3/SD3.5 ControlNet",
        lambda k: "controlnet_blocks.0.weight" in k and "pos_embed_input.proj.weight" in k,
        "Affordance loads SD1.x, SD2.x and SDXL ControlNets; use ComfyUI's own nodes for SD3.",
    ),
    (
        "a Qwen-Image ControlNet (InstantX)",
        lambda k: "controlnet_blocks.0.weight" in k and "transformer_blocks.0.img_mlp.net.0.proj.weight" in k,
        "Affordance loads SD1.x, SD2.x and SDXL ControlNets; use ComfyUI's own nodes for Qwen-Image.",
    ),
    (
        "a Flux ControlNet",
        lambda k: ("controlnet_blocks.0.weight" in k or "controlnet_blocks.0.linear.weight" in k)
        and _any(k, lambda s: s.startswith(("double_blocks.", "controlnet_x_embedder.", "single_blocks.", "controlnet_single_blocks.", "transformer_blocks.", "single_transformer_blocks.")))
        or "controlnet_blocks.0.linear.weight" in k,
        "Affordance loads SD1.x, SD2.x and SDXL ControlNets; use ComfyUI's own nodes for Flux.",
    ),
    (
        "a HunyuanDiT ControlNet",
        lambda k: "after_proj_list.0.weight" in k
        or "after_proj_list.18.bias" in k
        or ("controlnet_blocks.0.weight" in k and "input_block.weight" in k and "text_embedding_padding" in k),
        "Affordance loads SD1.x, SD2.x and SDXL ControlNets; use ComfyUI's own nodes for HunyuanDiT.",
    ),
    (
        "a T2I style adapter",
        lambda k: "style_embedding" in k,
        "put it in ComfyUI/models/style_models and apply it with 'Load Style Model' and 'Apply Style Model'.",
    ),
    (
        "a T2I-Adapter",
        lambda k: "adapter.body.0.resnets.0.block1.weight" in k
        or "body.0.in_conv.weight" in k
        or ("conv_in.weight" in k and _any(k, lambda s: s.startswith("body.")))
        or _any(k, lambda s: s.startswith("adapter.")),
        "T2I-Adapters go in ComfyUI/models/t2i_adapter and apply through ComfyUI's 'Apply ControlNet'; "
        "Affordance's Apply node chains with them.",
    ),
    (
        "an IP-Adapter (image prompt adapter)",
        lambda k: _any(k, lambda s: s.startswith(("ip_adapter.", "image_proj."))),
        "IP-Adapters go in ComfyUI/models/ipadapter and are applied by an IP-Adapter node pack "
        "(e.g. ComfyUI_IPAdapter_plus); Affordance's Apply node chains with them.",
    ),
    (
        "a Stable Cascade ControlNet",
        lambda k: "backbone.0.0.weight" in k or "backbone.10.blocks.0.weight" in k,
        "use ComfyUI's own nodes for Stable Cascade.",
    ),
    (
        "a 'difference' ControlNet (weights stored as an offset from SD1.5)",
        lambda k: "difference" in k and _any(k, lambda s: s.startswith(ORIGINAL_PREFIX)),
        "it needs the base model to rebuild its weights, which Affordance does not do yet; use ComfyUI's "
        "'Load ControlNet Model (diff)' node.",
    ),
]

_OTHER_SD_PARTS: list[tuple[str, Callable[[set[str]], bool], str]] = [
    (
        "a whole Stable Diffusion checkpoint without ControlNet weights",
        lambda k: _any(k, lambda s: s.startswith("model.diffusion_model.")),
        "put it in ComfyUI/models/checkpoints and load it with 'Load Checkpoint'.",
    ),
    (
        "a UNet (diffusers layout)",
        lambda k: _any(k, lambda s: s.startswith("up_blocks.")) and _any(k, lambda s: s.startswith("down_blocks.")),
        "put it in ComfyUI/models/diffusion_models; a ControlNet has no up blocks.",
    ),
    (
        "a UNet (original layout)",
        lambda k: _any(k, lambda s: s.startswith("output_blocks.")) and _any(k, lambda s: s.startswith("input_blocks.")),
        "put it in ComfyUI/models/diffusion_models; a ControlNet has no output blocks.",
    ),
    (
        "a VAE",
        lambda k: _any(k, lambda s: s.startswith(("encoder.down", "first_stage_model.")))
        and _any(k, lambda s: s.startswith(("decoder.", "first_stage_model.decoder"))),
        "put it in ComfyUI/models/vae.",
    ),
    (
        "a text encoder (CLIP)",
        lambda k: _any(k, lambda s: "text_model.encoder." in s),
        "put it in ComfyUI/models/text_encoders.",
    ),
]


def detect_format(keys: Iterable[str], source: str = "the file") -> Detection:
    """Detect the ControlNet layout of a state dict from its key names.

    Args:
        keys: all keys of the state dict.
        source: the file name used in error messages.

    Returns:
        The :class:`Detection` (layout and prefix).

    Raises:
        WrongFamilyError: the keys belong to another kind of model (named, with where it belongs).
        UnknownFormatError: the keys match nothing known (a sample of them is shown).
    """
    keys = set(keys)
    for name, matches, fix in _FOREIGN:
        if matches(keys):
            raise WrongFamilyError(f"{source} is {name}, not an SD1.x/SD2.x/SDXL ControlNet: {fix}")
    if f"{ORIGINAL_PREFIX}zero_convs.0.0.weight" in keys:
        merged = _any(keys, lambda s: s.startswith("model.diffusion_model."))
        return Detection(Layout.ORIGINAL_MERGED if merged else Layout.ORIGINAL_PREFIXED, ORIGINAL_PREFIX)
    if "controlnet_cond_embedding.conv_in.weight" in keys:
        return Detection(Layout.DIFFUSERS, "")
    if "zero_convs.0.0.weight" in keys and "input_hint_block.0.weight" in keys:
        return Detection(Layout.ORIGINAL, "")
    prefixes = sorted(
        k.removesuffix("zero_convs.0.0.weight")
        for k in keys
        if k.endswith(".zero_convs.0.0.weight") and k.replace("zero_convs.0.0.weight", "input_hint_block.0.weight") in keys
    )
    if prefixes:
        raise UnknownFormatError(
            f"{source} holds ControlNet weights in the original layout, but under the key prefix {prefixes[0]!r} "
            f"(e.g. {prefixes[0] + 'zero_convs.0.0.weight'!r}), which neither Affordance nor ComfyUI reads: the tool "
            "that saved it kept a wrapper's name. Save the state dict again without that prefix (or with "
            "'control_model.', lllyasviel's own)."
        )
    for name, matches, fix in _OTHER_SD_PARTS:
        if matches(keys):
            raise WrongFamilyError(f"{source} is {name}, not a ControlNet: {fix}")
    sample = ", ".join(sorted(keys)[:6])
    raise UnknownFormatError(
        f"{source} matches no known ControlNet layout ({len(keys)} keys, e.g. {sample}). Nothing was loaded. "
        "Affordance reads lllyasviel ControlNet 1.0/1.1 files (with or without 'control_model.') and diffusers "
        "ControlNetModel files for SD1.x, SD2.x and SDXL."
    )

"""Convert ControlNets between the original (lllyasviel) and diffusers layouts, as safetensors.

Values are copied untouched (same dtype, same bytes), so ``original -> diffusers -> original`` is
bit-exact. Usage::

    python -m affordance.controlnet.convert SRC DST --to diffusers   # DST.safetensors or a folder
    python -m affordance.controlnet.convert SRC DST --to original [--prefix]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import ControlNetConfig
from .errors import ControlNetError, UnknownFormatError
from .formats import ORIGINAL_PREFIX
from .keymap import original_to_diffusers
from .loader import ControlNetWeights, read_controlnet

log = logging.getLogger("affordance.controlnet")


def diffusers_config(config: ControlNetConfig) -> dict[str, object]:
    """The diffusers ``config.json`` of a ``ControlNetModel`` with this architecture.

    Raises:
        UnknownFormatError: the architecture has a level whose blocks differ in depth, which diffusers
            cannot express.
    """
    depths: list[int] = []
    attention: list[bool] = []  # per level: a cross-attention block type (its depth may be 0)
    i = 0
    for n in config.num_res_blocks:
        level = {(config.transformer_depth[b], config.has_attention(b)) for b in range(i, i + n)}
        i += n
        if len(level) != 1:
            raise UnknownFormatError(
                f"transformer depths / attention layers {sorted(level)} inside one level cannot be written for diffusers."
            )
        depth, attn = level.pop()
        depths.append(depth)
        attention.append(attn)
    if not config.has_middle_attention and config.middle_resblocks == 2:
        raise UnknownFormatError(
            "a middle block of two ResBlocks without attention cannot be written for diffusers: its UNetMidBlock2D "
            "has a single ResBlock. Keep this ControlNet in the original layout."
        )
    if len(set(config.num_res_blocks)) != 1:
        raise UnknownFormatError(f"diffusers needs the same number of blocks per level, got {config.num_res_blocks}.")
    widths = [m * config.model_channels for m in config.channel_mult]
    if config.num_head_channels == -1:
        heads: int | list[int] = config.num_heads
    else:
        heads = [w // config.num_head_channels for w in widths]
    sdxl = config.adm_in_channels is not None
    return {
        "_class_name": "ControlNetModel",
        "act_fn": "silu",
        "addition_embed_type": "text_time" if sdxl else None,
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256 if sdxl else None,
        "attention_head_dim": heads,
        "block_out_channels": widths,
        "class_embed_type": None,
        "conditioning_channels": config.hint_channels,
        "conditioning_embedding_out_channels": [16, 32, 96, 256],
        "controlnet_conditioning_channel_order": "rgb",
        "cross_attention_dim": config.context_dim,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "downsample_padding": 1,
        "encoder_hid_dim": None,
        "encoder_hid_dim_type": None,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "global_pool_conditions": config.global_average_pooling,
        "in_channels": config.in_channels,
        "layers_per_block": config.num_res_blocks[0],
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn" if config.has_middle_attention else "UNetMidBlock2D",
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_attention_heads": None,
        "num_class_embeds": None,
        "only_cross_attention": False,
        "projection_class_embeddings_input_dim": config.adm_in_channels,
        "resnet_time_scale_shift": "default",
        "transformer_layers_per_block": _layers_per_block(
            depths, attention, config.transformer_depth_middle if config.has_middle_attention else None
        ),
        "upcast_attention": False,
        "use_linear_projection": config.use_linear_in_transformer,
    }


def _layers_per_block(depths: list[int], attention: list[bool], middle: int | None) -> int | list[int]:
    """diffusers' ``transformer_layers_per_block``: one depth per level, the last one also the middle's.

    Levels without attention ignore their entry (written as 1); attention levels of depth 0 stay 0.
    ``middle`` is ``None`` for a middle block without attention (it reads no depth).
    """
    if all(d == 1 for d, a in zip(depths, attention) if a) and middle in (1, None):
        return 1
    per_level = [d if a else 1 for d, a in zip(depths, attention)]
    if middle is not None and per_level[-1] != middle:
        if attention[-1]:
            raise UnknownFormatError(f"diffusers ties the middle depth to the last level's; got {depths} and {middle}.")
        per_level[-1] = middle
    return per_level


def _atomic_save(tensors: Mapping[str, torch.Tensor], dst: Path, metadata: dict[str, str]) -> None:
    """Write to a temporary file in the target folder, then rename: a crash never leaves half a file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=dst.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _metadata(weights: ControlNetWeights, layout: str) -> dict[str, str]:
    meta = {"format": "pt", "affordance.layout": layout, "affordance.family": weights.config.family.value}
    if weights.config.global_average_pooling:
        meta["affordance.global_average_pooling"] = "true"
    return meta


def to_diffusers(weights: ControlNetWeights) -> dict[str, torch.Tensor]:
    """The state dict under diffusers names (tensors shared, not copied)."""
    return original_to_diffusers(weights.state_dict)


def to_original(weights: ControlNetWeights, *, prefix: bool = False) -> dict[str, torch.Tensor]:
    """The state dict under original names, optionally with the ``control_model.`` prefix."""
    p = ORIGINAL_PREFIX if prefix else ""
    return {p + k: v for k, v in weights.state_dict.items()}


def convert_file(
    src: str | Path,
    dst: str | Path,
    *,
    to: str,
    prefix: bool = False,
    global_average_pooling: bool | None = None,
) -> Path:
    """Convert ``src`` (any supported file or folder) and write ``dst`` as safetensors.

    Args:
        src: a ControlNet file or diffusers folder.
        dst: for ``to="diffusers"``, a ``.safetensors`` file, or a folder that receives ``config.json``
            and ``diffusion_pytorch_model.safetensors``; for ``to="original"``, a ``.safetensors`` file.
        to: ``"diffusers"`` or ``"original"``.
        prefix: with ``to="original"``, write keys with the ``control_model.`` prefix.
        global_average_pooling: mark the model as a shuffle-type model (kept in the metadata or the
            diffusers config); ``None`` keeps what the source says.

    Returns:
        The path written (the weights file).
    """
    if to not in ("diffusers", "original"):
        raise ValueError(f"to must be 'diffusers' or 'original', got {to!r}.")
    weights = read_controlnet(src, global_average_pooling=global_average_pooling)
    dst = Path(dst)
    if to == "original":
        if dst.suffix != ".safetensors":
            raise ValueError(f"write original-layout files as .safetensors, got {dst.name!r}.")
        _atomic_save(to_original(weights, prefix=prefix), dst, _metadata(weights, "original"))
        return dst
    tensors = to_diffusers(weights)
    if dst.suffix == ".safetensors":
        _atomic_save(tensors, dst, _metadata(weights, "diffusers"))
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(diffusers_config(weights.config), indent=2) + "\n", encoding="utf-8")
    target = dst / "diffusion_pytorch_model.safetensors"
    _atomic_save(tensors, target, _metadata(weights, "diffusers"))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m affordance.controlnet.convert",
        description="Convert a ControlNet between the original and diffusers layouts (written as safetensors).",
    )
    parser.add_argument("src", help="ControlNet file (.safetensors/.pth/.ckpt/.bin) or diffusers folder")
    parser.add_argument("dst", help="output .safetensors file, or a folder for --to diffusers")
    parser.add_argument("--to", choices=["diffusers", "original"], required=True)
    parser.add_argument("--prefix", action="store_true", help="original layout with 'control_model.' keys")
    parser.add_argument(
        "--global-average-pooling", action="store_true", help="mark as a shuffle-type model (averaged residuals)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = convert_file(
            args.src, args.dst, to=args.to, prefix=args.prefix, global_average_pooling=args.global_average_pooling or None
        )
    except (ControlNetError, FileNotFoundError, ValueError) as exc:
        log.error("error: %s", exc)
        return 2
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert ControlNets between the original (lllyasviel) and diffusers layouts, as safetensors.

Values are copied untouched (same dtype, same bytes), so ``original -> diffusers -> original`` is
bit-exact; the one exception is fp8 weights, which are read as fp16 (every fp8 value is exactly an fp16
value) and written so, at twice their size. Usage::

    python -m affordance.controlnet.convert SRC DST --to diffusers   # DST.safetensors or a folder
    python -m affordance.controlnet.convert SRC DST --to original [--prefix]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import ControlNetConfig
from .errors import ControlNetError, InputError, OutputError, UnknownFormatError
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


def _staged(dst: Path, write: Callable[[str], None]) -> Path:
    """Write a file beside ``dst`` under a temporary name; returns that name.

    The file gets the permissions of the file it will replace, or those of any new file (the umask
    applies), never a private 0600 that a ComfyUI server running as another user could not read.
    """
    tmp = dst.with_name(f".tmp-{secrets.token_hex(6)}-{dst.name}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        mode = (dst if dst.is_file() else tmp).stat().st_mode & 0o7777  # read before a writer recreates it
        write(str(tmp))
        os.chmod(tmp, mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _atomic_save(files: Mapping[Path, Callable[[str], None]]) -> None:
    """Write every file to a temporary name first, then rename them into place.

    Nothing is replaced until everything is written, so a failure (disk full, no permission, a crash)
    leaves what was there untouched; the renames themselves are atomic.
    """
    staged: dict[Path, Path] = {}
    try:
        for dst, write in files.items():
            staged[dst] = _staged(dst, write)
        for dst, tmp in staged.items():
            os.replace(tmp, dst)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def _safetensors_writer(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> Callable[[str], None]:
    return lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)


def _check_target(path: Path, overwrite: bool, source: Path) -> None:
    """Refuse to write over a folder, or over an existing file unless ``overwrite`` is set.

    Raises:
        OutputError: naming the path and how to go on.
    """
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name ending in .safetensors (or another folder).")
    if path.exists() and not overwrite:
        same = source.exists() and path.resolve() == source.resolve()
        raise OutputError(
            f"{path} already exists{' (it is the file being converted)' if same else ''}; nothing was written. "
            "Choose another name, or pass --force (overwrite=True) to replace it; the old file stays intact "
            "until the new one is completely written."
        )


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
    overwrite: bool = False,
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
        overwrite: replace files that already exist (the source itself included). Either way a file is
            only replaced once its successor is completely written.

    Returns:
        The path written (the weights file).

    Raises:
        InputError: ``to`` is neither ``"diffusers"`` nor ``"original"``, or an original-layout destination
            does not end in ``.safetensors``.
        FileNotFoundError: ``src`` does not exist.
        CheckpointError: ``src`` is not a ControlNet we can read (as :func:`read_controlnet`).
        OutputError: the destination exists (without ``overwrite``), is a folder where a file is due or a
            file where a folder is due, or cannot be written.
    """
    if to not in ("diffusers", "original"):
        raise InputError(f"to must be 'diffusers' or 'original', got {to!r}.")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"no ControlNet file at {src}.")
    single_file = dst.suffix.lower() == ".safetensors"
    if to == "original" and not single_file:
        raise InputError(
            f"original-layout files are written as .safetensors, got {dst.name!r}: give a name ending in .safetensors."
        )
    folder = dst.parent if single_file else dst
    if folder.exists() and not folder.is_dir():
        raise OutputError(
            f"{folder} is a file, not a folder; a diffusers ControlNet is written as a folder (config.json + "
            "diffusion_pytorch_model.safetensors). Give a folder name, or a name ending in .safetensors."
        )
    targets = [dst] if single_file else [dst / "diffusion_pytorch_model.safetensors", dst / "config.json"]
    for path in targets:
        _check_target(path, overwrite, src)
    weights = read_controlnet(src, global_average_pooling=global_average_pooling)
    if to == "original":
        writers = {dst: _safetensors_writer(to_original(weights, prefix=prefix), _metadata(weights, "original"))}
    elif single_file:
        writers = {dst: _safetensors_writer(to_diffusers(weights), _metadata(weights, "diffusers"))}
    else:
        config = json.dumps(diffusers_config(weights.config), indent=2) + "\n"
        writers = {
            targets[0]: _safetensors_writer(to_diffusers(weights), _metadata(weights, "diffusers")),
            targets[1]: lambda tmp: Path(tmp).write_text(config, encoding="utf-8"),
        }
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # folders this call creates
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_save(writers)
    except OSError as exc:
        for p in made:  # innermost first; only if still empty
            try:
                p.rmdir()
            except OSError:
                break
        raise OutputError(
            f"cannot write {dst}: {exc.strerror or exc}. Nothing there was changed; choose a writable place "
            "with enough free space."
        ) from exc
    return targets[0]


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
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = convert_file(
            args.src,
            args.dst,
            to=args.to,
            prefix=args.prefix,
            global_average_pooling=args.global_average_pooling or None,
            overwrite=args.force,
        )
    except (ControlNetError, OSError, ValueError) as exc:
        log.error("error: %s", exc)
        return 2
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

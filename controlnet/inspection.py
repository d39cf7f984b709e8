"""Inspect ControlNet files: container, layout, family, architecture, residual shapes and a key report.

Given no file, :func:`demo_files` writes a small ControlNet in every supported format and container to
a temporary folder, so the whole loading path can be seen working on a fresh machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import ControlNetConfig
from .convert import diffusers_config
from .keymap import original_to_diffusers
from .loader import ControlNetWeights, read_controlnet
from .model import ControlNet


@dataclass(frozen=True)
class Inspection:
    """The result of inspecting one file.

    Attributes:
        weights: the checked weights (config and load report).
        residual_shapes: per residual (middle last), ``(C, H, W)`` for one latent of ``latent_hw``.
        latent_hw: the latent size the shapes are given for.
    """

    weights: ControlNetWeights
    residual_shapes: tuple[tuple[int, int, int], ...]
    latent_hw: tuple[int, int]

    def lines(self) -> list[str]:
        """A human-readable report."""
        r, c = self.weights.report, self.weights.config
        dtypes = ", ".join(f"{n} x {k}" for k, n in sorted(r.stored_dtypes.items()))
        h, w = self.latent_hw
        out = [
            f"file:        {r.path}",
            f"container:   {r.container}",
            f"layout:      {r.layout.description}",
            f"family:      {r.family.label} ({c.num_input_blocks} skip residuals + 1 middle)",
            f"weights:     {r.num_keys} tensors, {r.num_params / 1e6:.2f} M parameters, stored as {dtypes}",
            f"dropped:     {r.dropped_keys} tensors that are not part of the ControlNet"
            + (f"; ignored non-tensor entries: {', '.join(r.skipped_entries)}" if r.skipped_entries else ""),
            f"config:      model_channels={c.model_channels} channel_mult={c.channel_mult} "
            f"res_blocks={c.num_res_blocks} transformer_depth={c.transformer_depth} "
            f"middle_depth={c.transformer_depth_middle}"
            + ("" if c.middle_resblocks == 2 else f" middle_resblocks={c.middle_resblocks}"),
            f"             context_dim={c.context_dim} linear_proj={c.use_linear_in_transformer} "
            f"heads={c.num_heads if c.num_heads > 0 else f'{c.num_head_channels} ch each'} "
            f"label_dim={c.adm_in_channels} hint_channels={c.hint_channels} "
            f"global_average_pooling={c.global_average_pooling}",
            f"residuals for a {w * 8}x{h * 8} px image (latent {w}x{h}):",
        ]
        for i, shape in enumerate(self.residual_shapes):
            name = "middle" if i == len(self.residual_shapes) - 1 else f"input {i:2d}"
            out.append(f"  {name}: {shape[0]} x {shape[1]} x {shape[2]}")
        return out


def inspect_file(path: str | Path, latent_hw: tuple[int, int] = (64, 64)) -> Inspection:
    """Read, check and describe a ControlNet file or diffusers folder (no model is built).

    Raises:
        FileNotFoundError, CheckpointError: as :func:`controlnet.loader.read_controlnet`.
    """
    weights = read_controlnet(path)
    cfg = weights.config
    h, w = latent_hw
    shapes = tuple(
        (c, -(-h // f), -(-w // f)) for c, f in zip(cfg.residual_channels(), cfg.residual_downsampling())
    )
    return Inspection(weights, shapes, latent_hw)


DEMO_SD1 = ControlNetConfig(
    model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), transformer_depth=(1, 0), context_dim=768
)
DEMO_SD2 = ControlNetConfig(
    model_channels=64,
    channel_mult=(1, 2),
    num_res_blocks=(1, 1),
    transformer_depth=(1, 0),
    context_dim=1024,
    use_linear_in_transformer=True,
    num_heads=-1,
    num_head_channels=64,
)
DEMO_SDXL = ControlNetConfig(
    model_channels=64,
    channel_mult=(1, 2),
    num_res_blocks=(1, 1),
    transformer_depth=(0, 2),
    transformer_depth_middle=2,
    context_dim=2048,
    use_linear_in_transformer=True,
    num_heads=-1,
    num_head_channels=64,
    adm_in_channels=2816,
)


def demo_files(folder: Path, seed: int = 0) -> list[Path]:
    """Write small random ControlNets in every format we read; returns their paths.

    Formats: original (no prefix) safetensors, original fp16 with prefix ``.pth``, a 1.0-style merged
    ``.ckpt`` (control next to a whole SD model), diffusers single file (bf16), a diffusers folder with
    ``config.json``, a diffusers ``.bin``, an SD2.x ControlNet as a legacy (pre-zip) PyTorch pickle, and an
    SDXL ControlNet.
    """
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sd1 = ControlNet(DEMO_SD1).state_dict()
    sdxl = ControlNet(DEMO_SDXL).state_dict()
    paths: list[Path] = []

    def add(p: Path) -> None:
        paths.append(p)

    save_file(sd1, folder / "sd15_original.safetensors")
    add(folder / "sd15_original.safetensors")
    torch.save({"control_model." + k: v.half() for k, v in sd1.items()}, folder / "sd15_prefixed_fp16.pth")
    add(folder / "sd15_prefixed_fp16.pth")
    merged = {"control_model." + k: v for k, v in sd1.items()}
    merged["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(32, 4, 3, 3)
    merged["first_stage_model.decoder.conv_in.weight"] = torch.randn(32, 4, 3, 3)
    torch.save({"state_dict": merged, "global_step": 1}, folder / "sd15_merged_v10.ckpt")
    add(folder / "sd15_merged_v10.ckpt")
    diff = original_to_diffusers(sd1)
    save_file({k: v.bfloat16() for k, v in diff.items()}, folder / "diffusion_pytorch_model.safetensors")
    add(folder / "diffusion_pytorch_model.safetensors")
    dfolder = folder / "sd15_diffusers_folder"
    dfolder.mkdir(exist_ok=True)
    (dfolder / "config.json").write_text(json.dumps(diffusers_config(DEMO_SD1), indent=2), encoding="utf-8")
    save_file(diff, dfolder / "diffusion_pytorch_model.safetensors")
    add(dfolder)
    torch.save(diff, folder / "sd15_diffusers.bin")
    add(folder / "sd15_diffusers.bin")
    sd2 = ControlNet(DEMO_SD2).state_dict()
    torch.save(sd2, folder / "sd21_legacy_pickle.pth", _use_new_zipfile_serialization=False)
    add(folder / "sd21_legacy_pickle.pth")
    save_file(sdxl, folder / "sdxl_original.safetensors")
    add(folder / "sdxl_original.safetensors")
    return paths

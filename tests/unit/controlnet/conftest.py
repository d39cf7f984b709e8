"""Tiny seeded ControlNets and a writer for every checkpoint format and container."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from affordance.controlnet import ControlNet, ControlNetConfig, diffusers_config
from affordance.controlnet.keymap import original_to_diffusers

TINY = ControlNetConfig(
    model_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=(1, 1),
    transformer_depth=(1, 0),
    transformer_depth_middle=1,
    context_dim=768,
    num_heads=8,
)
TINY_XL = ControlNetConfig(
    model_channels=64,
    channel_mult=(1, 2),
    num_res_blocks=(1, 1),
    transformer_depth=(0, 2),
    transformer_depth_middle=2,
    context_dim=2048,
    use_linear_in_transformer=True,
    num_heads=-1,
    num_head_channels=64,
    adm_in_channels=64,
)


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Give every parameter (zero convs included) seeded non-zero values, so residuals are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture
def tiny_config() -> ControlNetConfig:
    return TINY


@pytest.fixture
def tiny_xl_config() -> ControlNetConfig:
    return TINY_XL


@pytest.fixture
def tiny_model() -> ControlNet:
    return randomize(ControlNet(TINY))


@pytest.fixture
def tiny_xl_model() -> ControlNet:
    return randomize(ControlNet(TINY_XL), seed=1)


Writer = Callable[..., Path]


@pytest.fixture
def write_checkpoint(tmp_path: Path) -> Writer:
    """Write a model's weights as ``layout`` in ``container``; returns the file (or folder) path.

    layouts: original, prefixed, merged, diffusers, diffusers-folder; containers: safetensors, pth, ckpt, bin.
    """

    def write(
        model: ControlNet,
        layout: str = "original",
        container: str = "safetensors",
        dtype: torch.dtype | None = None,
        name: str = "cn",
    ) -> Path:
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if dtype is not None:
            sd = {k: v.to(dtype) for k, v in sd.items()}
        if layout == "prefixed":
            sd = {"control_model." + k: v for k, v in sd.items()}
        elif layout == "merged":
            extra = {
                "model.diffusion_model.input_blocks.0.0.weight": torch.randn(8, 4, 3, 3),
                "model.diffusion_model.out.2.weight": torch.randn(4, 8, 3, 3),
                "first_stage_model.decoder.conv_in.weight": torch.randn(8, 4, 3, 3),
                "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.randn(8),
            }
            sd = {**{"control_model." + k: v for k, v in sd.items()}, **extra}
        elif layout in ("diffusers", "diffusers-folder"):
            sd = original_to_diffusers(sd)
        elif layout != "original":
            raise ValueError(layout)
        if layout == "diffusers-folder":
            folder = tmp_path / name
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(diffusers_config(model.config)))
            if container == "safetensors":
                save_file(sd, folder / "diffusion_pytorch_model.safetensors")
            else:
                torch.save(sd, folder / "diffusion_pytorch_model.bin")
            return folder
        path = tmp_path / f"{name}.{container}"
        if container == "safetensors":
            save_file(sd, path)
        elif container == "ckpt":
            torch.save({"state_dict": sd, "epoch": 3, "global_step": 1000}, path)
        else:
            torch.save(sd, path)
        return path

    return write


@pytest.fixture
def inputs() -> Callable[..., tuple[torch.Tensor, ...]]:
    """Seeded inputs for a config: latent (N, 4, h, w), hint (N, 3, 8h, 8w), timesteps, context, y."""

    def make(config: ControlNetConfig, n: int = 2, h: int = 8, w: int = 8, tokens: int = 7):
        g = torch.Generator().manual_seed(42)
        x = torch.randn(n, config.in_channels, h, w, generator=g)
        hint = torch.rand(n, config.hint_channels, 8 * h, 8 * w, generator=g)
        t = torch.tensor([999.0, 321.0, 10.0, 0.0][:n])
        ctx = torch.randn(n, tokens, config.context_dim, generator=g)
        y = torch.randn(n, config.adm_in_channels, generator=g) if config.adm_in_channels else None
        return x, hint, t, ctx, y

    return make

"""``AST_ControlNetLoader``: a ControlNet file from ComfyUI's ``controlnet`` folders as a CONTROL_NET."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch

from ..controlnet.checkpoint import file_identity
from ..controlnet.errors import InputError
from ..controlnet.loader import build_controlnet, read_controlnet
from ._host import comfy_model_management, comfy_model_patcher, comfy_ops, controlnet_files, controlnet_path, log
from .control import AffordanceControl

SUPPORTED_DTYPES = [torch.float16, torch.bfloat16, torch.float32]
POOLING = {"from file": None, "on": True, "off": False}  # the loader's global_average_pooling choices


def pick_operations(dtype: torch.dtype, manual_cast: torch.dtype | None) -> Any:
    """ComfyUI's layer classes for our weights, without its fast-fp8 layers, as ComfyUI's own ControlNet loader.

    ComfyUI's fp8 layers (picked under ``--fast`` on GPUs with fp8 compute) would cast weights kept in fp16 or
    wider at every call (which also rules out CUDA-graph replay) and round each layer's input to fp8. Weights
    kept in fp8 (an fp8 file) get ComfyUI's manual-cast layers instead: cast to the compute dtype per layer,
    exact. A ComfyUI whose ``pick_operations`` has no ``disable_fast_fp8`` has no fast-fp8 layers.
    """
    pick = comfy_ops().pick_operations
    if "disable_fast_fp8" in inspect.signature(pick).parameters:
        return pick(dtype, manual_cast, disable_fast_fp8=True)
    return pick(dtype, manual_cast)


def load_control(path: str | Path, *, global_average_pooling: bool | None = None) -> AffordanceControl:
    """Read, check and wrap a ControlNet for ComfyUI: ComfyUI's dtype choice and ``ModelPatcher``.

    Raises:
        CheckpointError: any problem with the file (typed, with the file name and a fix).
    """
    weights = read_controlnet(path, global_average_pooling=global_average_pooling)
    mm = comfy_model_management()
    # the file's own dtype (fp8 before it was widened to fp16): ComfyUI keeps an fp8 ControlNet in fp8 and
    # casts each layer's weights as it runs, and so does ours, so it takes no more memory than ComfyUI's
    stored = weights.report.storage_dtype or torch.float32
    load_device = mm.get_torch_device()
    offload_device = mm.unet_offload_device()
    dtype = mm.unet_dtype(model_params=-1, supported_dtypes=SUPPORTED_DTYPES, weight_dtype=stored)
    manual_cast = mm.unet_manual_cast(dtype, load_device)
    ops = pick_operations(dtype, manual_cast)
    network = build_controlnet(weights, dtype=dtype, device=offload_device, ops=ops, release=True)
    network.compute_dtype = manual_cast
    patcher = comfy_model_patcher().ModelPatcher(network, load_device=load_device, offload_device=offload_device)
    report = weights.report
    log.info(
        "loaded %r: %s ControlNet (%s), %.1f M parameters, weights %s, compute %s",  # %r: any file name prints
        Path(path).name,
        report.family.label,
        report.layout.value,
        report.num_params / 1e6,
        dtype,
        manual_cast or dtype,
    )
    config = network.config
    if any(config.has_attention(i) and not d for i, d in enumerate(config.transformer_depth)):
        log.info(
            "%r has attention layers without a transformer block (diffusers' SDXL 'small'/'mid' ControlNets): "
            "Affordance computes them as diffusers does; ComfyUI's own loader drops their norm and projection "
            "weights ('leftover keys' in its log), so its 'Load ControlNet Model' gives other results for this file",
            Path(path).name,
        )
    return AffordanceControl(network, patcher, manual_cast_dtype=manual_cast, name=Path(path).name)


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Identity (:func:`~controlnet.checkpoint.file_identity`) of ``path`` and of a ``config.json`` beside it.

    A file replaced by another of the same size and modification time (all SD1.5 fp16 ControlNets have the
    same size; ``cp -p`` keeps the time) still reads as changed. A missing file or config gives ``"-"`` in
    its place (the load reports what is missing).
    """
    parts = []
    for p in (Path(path), Path(path).parent / "config.json"):
        try:
            st = p.stat()
        except OSError:
            parts.append("-")
        else:
            parts.append(":".join(map(str, file_identity(st))))
    return "|".join(parts)


class ControlNetLoader:
    """Load a ControlNet (SD1.x, SD2.x, SDXL; original or diffusers layout) from ComfyUI's controlnet folder."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "control_net_name": (
                    controlnet_files(),
                    {
                        "tooltip": "A ControlNet file from ComfyUI/models/controlnet (or a folder added in "
                        "extra_model_paths.yaml). Original (.pth/.safetensors, with or without 'control_model.') "
                        "and diffusers layouts are detected from the weights, never from the name."
                    },
                )
            },
            "optional": {  # optional: API prompts saved before it existed stay valid
                "global_average_pooling": (
                    list(POOLING),
                    {
                        "default": "from file",
                        "tooltip": "Average each residual over the image before it is added (the 1.1 shuffle "
                        "ControlNet, control_v11e_sd15_shuffle, was trained so: set 'on' for it). 'from file': on "
                        "only where the file says so (a diffusers config.json with global_pool_conditions, or a "
                        "file converted by Affordance with --global-average-pooling). ComfyUI's own loader "
                        "guesses it from a *_shuffle file name; this node never goes by names.",
                    },
                )
            },
        }

    RETURN_TYPES = ("CONTROL_NET",)
    RETURN_NAMES = ("control_net",)
    OUTPUT_TOOLTIPS = ("The ControlNet; it also works with ComfyUI's own 'Apply ControlNet' node.",)
    FUNCTION = "load"
    CATEGORY = "Affordance/loaders"
    DESCRIPTION = "Loads a ControlNet safely (safetensors first, restricted pickles otherwise) and checks every key."

    @classmethod
    def IS_CHANGED(cls, control_net_name: str, global_average_pooling: str = "from file") -> str:
        """A fingerprint of the file (and a ``config.json`` beside it): replacing it on disk reloads the model.

        ComfyUI keeps a node's output while its inputs are the same; without this, a file replaced under
        the same name (a re-download, a new version) would be used only after a restart.
        """
        return file_fingerprint(controlnet_path(control_net_name))

    def load(self, control_net_name: str, global_average_pooling: str = "from file") -> tuple[AffordanceControl]:
        if not isinstance(global_average_pooling, str) or global_average_pooling not in POOLING:
            raise InputError(
                f"global_average_pooling must be one of {list(POOLING)}, got {str(global_average_pooling)[:80]!a}."
            )
        control = load_control(controlnet_path(control_net_name), global_average_pooling=POOLING[global_average_pooling])
        unsaid = global_average_pooling == "from file" and not control.network.config.global_average_pooling
        if unsaid and "shuffle" in control_net_name.lower():  # a hint only: nothing is decided by the name
            log.warning(
                "%r is loaded without global average pooling: if it is the 1.1 shuffle ControlNet, set the loader's "
                "global_average_pooling to 'on' (it was trained with it; ComfyUI's loader turns it on by name)",
                control_net_name,
            )
        return (control,)

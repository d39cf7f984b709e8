"""The one place that imports ComfyUI, always lazily (inside functions), so the pack imports without it.

Also the IMAGE/MASK layout conversions every node needs.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

import torch

from ..controlnet.errors import HintError

log = logging.getLogger("affordance.nodes")


def comfy_model_management() -> ModuleType:
    """``comfy.model_management``."""
    import comfy.model_management

    return comfy.model_management


def comfy_model_patcher() -> ModuleType:
    """``comfy.model_patcher``."""
    import comfy.model_patcher

    return comfy.model_patcher


def comfy_ops() -> ModuleType:
    """``comfy.ops``."""
    import comfy.ops

    return comfy.ops


def folder_paths() -> ModuleType:
    """ComfyUI's ``folder_paths``."""
    import folder_paths

    return folder_paths


def controlnet_files() -> list[str]:
    """Files in ComfyUI's ``controlnet`` model folders (``extra_model_paths.yaml`` included)."""
    try:
        return folder_paths().get_filename_list("controlnet")
    except ImportError:  # outside ComfyUI (tests, docs): no folder to list
        return []


def controlnet_path(name: str) -> str:
    """Full path of a file listed by :func:`controlnet_files`.

    Raises:
        FileNotFoundError: naming the file and the folders searched.
    """
    if not isinstance(name, str):  # linked from a node that makes something else
        raise FileNotFoundError(f"the ControlNet file name must be text, got {type(name).__name__}.")
    if len(name) > 4096:  # longer than any path the system takes: the message quotes its start only
        raise FileNotFoundError(f"ControlNet file {name[:80]!r}... ({len(name)} characters) is not a file name ComfyUI lists.")
    fp = folder_paths()
    path = fp.get_full_path("controlnet", name)
    if path is None:
        folders = ", ".join(fp.get_folder_paths("controlnet"))
        for folder in fp.get_folder_paths("controlnet"):
            link = os.path.join(folder, name)
            if os.path.islink(link) and not os.path.exists(link):  # listed, but its target is gone (or a loop)
                raise FileNotFoundError(
                    f"ControlNet file {name!r} is a broken symbolic link in {folder} (it points to "
                    f"{os.readlink(link)!r}, which cannot be reached). Fix or remove the link, or put the file there."
                )
            if special_file(link):  # listed, but a pipe or a device, not a file
                raise _not_a_file(name, link)
        raise FileNotFoundError(
            f"ControlNet file {name!r} is not in ComfyUI's controlnet folders ({folders}). Put it there (or add a "
            "folder in extra_model_paths.yaml) and refresh the node."
        )
    if special_file(path):  # a host that returns pipes and devices (reading one would hang or never end)
        raise _not_a_file(name, path)
    return path


def special_file(path: str) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder (a pipe, socket or device, or a
    link to one), for an error message; ``None`` otherwise."""
    if not os.path.exists(path) or os.path.isfile(path) or os.path.isdir(path):
        return None
    return "a pipe, socket or device" + (
        f", reached through a link to {os.path.realpath(path)!r}" if os.path.islink(path) else ""
    )


def _not_a_file(name: str, path: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"ControlNet file {name!r} in {os.path.dirname(path)} is not a regular file ({special_file(path)}). "
        "Put the model file itself there."
    )


_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" mode


_WIDGET_TYPES: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,)}


def unconverted(*values: tuple[Any, type]) -> bool:
    """Whether a widget value given to ``VALIDATE_INPUTS`` is not of its widget's type (``(value, int)``,
    ``(value, float)``, ``(value, str)``; ``None``, a linked widget, counts as fine).

    ComfyUI converts API values ("0.5" -> 0.5) before calling ``VALIDATE_INPUTS`` and reports those it cannot
    convert itself ("Failed to convert an input value to a FLOAT value"), yet still passes them on raw:
    validation then leaves them to that report instead of failing on them with a bare Python error.
    """
    return any(
        v is not None and (isinstance(v, bool) or not isinstance(v, _WIDGET_TYPES[kind])) for v, kind in values
    )


HINT_MAX_MAGNITUDE = 65504.0  # the largest float16: beyond it a hint is infinite once cast, or soon after


def image_to_hint(image: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """ComfyUI IMAGE ``(B, H, W, C)`` in ``[0, 1]`` -> hint ``(B, channels, H, W)``.

    For the usual 3-channel ControlNet, greyscale is repeated to RGB and an alpha channel is dropped. A
    1-channel ControlNet gets greyscale as is and the luminance of colour images; a 4-channel one needs
    RGBA and gets it whole.

    8-bit levels (uint8) are divided by 255 and booleans become 0/1, as the preprocessors read them.

    Raises:
        HintError: not 4-D, an empty batch, no pixels (a side of 0), integers other than 8-bit levels, NaN or
            infinite values (one would make every value the sampler computes NaN), values beyond
            ``HINT_MAX_MAGNITUDE``, or channels that cannot become ``channels``.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise HintError(f"image must be a ComfyUI IMAGE of shape (batch, height, width, channels), got {shape}.")
    if image.shape[0] == 0:
        raise HintError("the image batch is empty; connect an image.")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise HintError(
            f"the image has no pixels ({image.shape[2]}x{image.shape[1]}); check the size given to the node that "
            "made it."
        )
    if image.dtype == torch.uint8:  # 8-bit levels (a few nodes emit them), as the preprocessors read them
        image = image.float() / 255.0
    elif image.dtype == torch.bool:
        image = image.float()
    elif not image.is_floating_point():
        raise HintError(
            f"the image holds {str(image.dtype).removeprefix('torch.')} values; a hint is a float IMAGE in [0, 1] "
            "(or 8-bit levels, uint8)."
        )
    # min and max show NaN and +-Inf without a temporary the size of the image (a video's hints are gigabytes);
    # only a broken image pays for counting its bad values
    low, high = torch.aminmax(image)
    if not (torch.isfinite(low) and torch.isfinite(high)):
        bad = int((~torch.isfinite(image)).sum())
        raise HintError(
            f"the image holds {bad} NaN or infinite value(s), which would make the whole result NaN; check the "
            "node that made it (e.g. a VAE decode of a broken latent)."
        )
    if max(-float(low), float(high)) > HINT_MAX_MAGNITUDE:
        raise HintError(
            f"the image holds values from {float(low):g} to {float(high):g}; a hint is an IMAGE in [0, 1], and values "
            f"beyond {HINT_MAX_MAGNITUDE:g} (the largest half-precision number) make the ControlNet's output "
            "infinite. Check the node that made it, or scale it to 0..1."
        )
    c = image.shape[-1]
    if c not in (1, 3, 4):
        raise HintError(f"image has {c} channels; a hint needs RGB (3), greyscale (1) or RGBA (4).")
    if channels == 3 and c != 3:
        image = image.expand(-1, -1, -1, 3) if c == 1 else image[..., :3]
    elif channels == 1 and c != 1:
        luma = torch.tensor(_LUMA, dtype=image.dtype, device=image.device)
        image = (image[..., :3] * luma).sum(-1, keepdim=True)
    elif channels != c:
        raise HintError(
            f"this ControlNet takes {channels}-channel hints but the image has {c} channel(s)"
            + (": give it an RGBA image (e.g. 'Join Image with Alpha')." if channels == 4 else ".")
        )
    return image.movedim(-1, 1)


def mask_batch(mask: Any) -> torch.Tensor:
    """ComfyUI MASK ``(B, H, W)``, ``(H, W)`` or ``(B, 1, H, W)`` -> ``(B, H, W)`` float in ``[0, 1]``.

    8-bit masks (0..255) are scaled to ``[0, 1]``, booleans become 0/1, NaN counts as 0 and everything
    is clamped to ``[0, 1]``: a mask only ever lets control through or holds it back.

    Raises:
        HintError: a mask of another rank (e.g. an IMAGE connected by mistake) or an empty one.
    """
    if not isinstance(mask, torch.Tensor):
        raise HintError(f"mask must be a ComfyUI MASK tensor, got {type(mask).__name__}.")
    if mask.ndim == 2:
        mask = mask[None]
    elif mask.ndim == 4 and mask.shape[1] == 1:  # (B, 1, H, W), as some nodes keep a channel axis
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise HintError(
            f"mask must have shape (batch, height, width) or (height, width), got {tuple(mask.shape)} "
            f"(rank {mask.ndim}). Use a MASK output (e.g. 'Convert Image to Mask'), not an IMAGE."
        )
    if mask.shape[0] == 0 or min(mask.shape[-2:]) < 1:
        raise HintError(f"the mask is empty (shape {tuple(mask.shape)}).")
    scale = 255.0 if mask.dtype == torch.uint8 else 1.0
    return (mask.float() / scale).nan_to_num(nan=0.0).clamp(0.0, 1.0)


def processing_device() -> torch.device:
    """ComfyUI's compute device (a GPU when there is one); the CPU outside ComfyUI."""
    try:
        return comfy_model_management().get_torch_device()
    except ImportError:
        return torch.device("cpu")


def free_memory(device: torch.device) -> int | None:
    """Bytes ComfyUI counts as free on ``device`` (RAM on the CPU, its own accounting on a GPU); ``None``
    outside ComfyUI."""
    try:
        return int(comfy_model_management().get_free_memory(device))
    except ImportError:
        return None


class Progress:
    """ComfyUI's progress bar for a node (a no-op outside ComfyUI)."""

    def __init__(self, total: int) -> None:
        try:
            import comfy.utils

            self._bar: Any = comfy.utils.ProgressBar(total)
        except ImportError:
            self._bar = None

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)


def preview_images(images: torch.Tensor, prefix: str = "affordance") -> list[dict[str, str]]:
    """Save an IMAGE batch ``(B, H, W, 3)`` in ``[0, 1]`` as PNGs in ComfyUI's temp folder for the node's preview.

    Values outside ``[0, 1]`` (the inpaint hint's -1) are clipped for display. Returns ComfyUI's UI image
    records; outside ComfyUI (no temp folder) nothing is written and the list is empty.
    """
    try:
        temp = folder_paths().get_temp_directory()
    except ImportError:
        return []
    import uuid
    from pathlib import Path

    import numpy as np
    from PIL import Image

    Path(temp).mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}_{uuid.uuid4().hex[:12]}"
    records = []
    for i, img in enumerate(images):
        arr = (img.detach().float().clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
        name = f"{stem}_{i:05d}.png"
        Image.fromarray(arr).save(Path(temp) / name, compress_level=1)
        records.append({"filename": name, "subfolder": "", "type": "temp"})
    return records

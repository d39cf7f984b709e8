"""ComfyUI's dynamic VRAM switched on in a ComfyUI imported as a library, as its ``main.py`` does at start-up.

From ComfyUI 0.12 a server started on an NVIDIA GPU (PyTorch 2.8 or newer, the ``comfy-aimdo`` package, none of
``--disable-dynamic-vram``, ``--highvram``, ``--gpu-only``, ``--novram``, ``--cpu``) loads its models through
``ModelPatcherDynamic``: weights stay in pinned host memory and are brought to the GPU, into comfy-aimdo's own
virtual buffer, as layers run. ComfyUI's own ControlNet is one of those models. A benchmark that imports ComfyUI
without ``main.py`` gets the classic ``ModelPatcher`` instead, which is not what users of such a ComfyUI run;
:func:`enable` does what ``main.py`` does, so the peer is measured as it runs in a server.

Memory that comfy-aimdo holds is not PyTorch's: :func:`device_used_mib` reads the GPU's memory in use as the driver
sees it, which counts both.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

import torch

MODES = ("auto", "off")


def enable(comfy: Any, device: torch.device, mode: str = "auto") -> tuple[bool, str]:
    """Switch the imported ComfyUI ``comfy`` package to dynamic VRAM where its ``main.py`` would.

    Must run before any ComfyUI model is loaded (ComfyUI picks the patcher class when it loads a model).

    Args:
        comfy: the ``comfy`` package, with ``comfy.model_management`` imported and configured for ``device``.
        device: the benchmark's device.
        mode: ``"auto"`` (on wherever ComfyUI's start-up would turn it on) or ``"off"``.

    Returns:
        ``(whether it is on, a line saying so and why)``.
    """
    if mode not in MODES:
        raise ValueError(f"dynamic VRAM mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "off":
        return False, "off (--comfy-dynamic-vram off): ComfyUI's classic ModelPatcher"
    patchers: Any = importlib.import_module("comfy.model_patcher")
    if not hasattr(patchers, "ModelPatcherDynamic"):
        return False, "off: this ComfyUI predates dynamic VRAM (0.12); its classic ModelPatcher, as its server uses"
    if device.type != "cuda":
        return False, "off: dynamic VRAM is for NVIDIA GPUs; on the CPU ComfyUI uses its classic ModelPatcher"
    mm = comfy.model_management
    amd = getattr(mm, "is_amd", lambda: False)() and tuple(getattr(mm, "rocm_version", (0, 0))) >= (7, 14)
    if not (mm.is_nvidia() or amd):  # where ComfyUI's main.py turns it on
        return False, "off: ComfyUI turns it on for NVIDIA GPUs (and AMD ones with ROCm 7.14+) only"
    if tuple(mm.torch_version_numeric) < (2, 8):
        return False, f"off: ComfyUI needs PyTorch 2.8 or newer for dynamic VRAM; this is {torch.__version__}"
    try:
        control = importlib.import_module("comfy_aimdo.control")
        version = importlib.metadata.version("comfy-aimdo")
    except Exception as exc:  # not installed, or its library does not load on this machine
        return False, f"off: comfy-aimdo is not importable ({type(exc).__name__}: {exc})"
    try:
        if not _init(control):
            return False, f"off: comfy-aimdo {version} could not load its library on this machine"
        devices = [(d.index, 0) for d in mm.get_all_torch_devices()]
        try:
            ready = control.init_devices(devices)
        except TypeError:  # comfy-aimdo 0.4.9 takes device indices only, as ComfyUI's main.py allows for
            ready = control.init_devices(index for index, _ in devices)
    except Exception as exc:
        return False, f"off: comfy-aimdo {version} failed to start ({type(exc).__name__}: {exc})"
    if not ready:
        return (
            False,
            f"off: comfy-aimdo {version} found no working GPU (ComfyUI then falls back to its classic patcher)",
        )
    patchers.CoreModelPatcher = patchers.ModelPatcherDynamic
    memory: Any = importlib.import_module("comfy.memory_management")
    memory.aimdo_enabled = True
    return True, f"on (comfy-aimdo {version}): ComfyUI's models load through ModelPatcherDynamic, as in its server"


def _init(control: Any) -> bool:
    """``comfy_aimdo.control.init`` with the arguments ComfyUI's main.py passes by default (NVML memory pressure
    on, no extra headroom), falling back to older comfy-aimdo signatures as it does."""
    try:
        return bool(control.init(simple_vram_headroom=None, nvml_pressure=True))
    except TypeError:  # comfy-aimdo 0.4.10
        try:
            return bool(control.init(simple_vram_headroom=None))
        except TypeError:  # comfy-aimdo 0.4.9
            return bool(control.init())


def core_patcher() -> Any:
    """The patcher class ComfyUI's own loaders use: ``CoreModelPatcher`` (0.12+), else ``ModelPatcher``."""
    patchers = importlib.import_module("comfy.model_patcher")
    return getattr(patchers, "CoreModelPatcher", patchers.ModelPatcher)


def device_used_mib(device: torch.device) -> float | None:
    """GPU memory in use on ``device`` as the driver reports it (every allocator and process), in MiB; ``None``
    on the CPU."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    return (total - free) / 2**20

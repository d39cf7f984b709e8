"""Host-free ControlNet for SD1.x, SD2.x and SDXL: the network, its checkpoint formats and conversion.

Pure torch and safetensors; never imports ComfyUI or :mod:`preprocessors`.

:func:`convert_file` and :func:`diffusers_config` are imported from :mod:`.convert` when first asked for:
``python -m affordance.controlnet.convert`` imports this package before it runs that module as a script,
and a module imported here already would be run a second time, with a ``RuntimeWarning``.
"""

from typing import TYPE_CHECKING

from .config import PRESETS, SD15, SD21, SDXL, ControlNetConfig, Family, config_from_state_dict
from .errors import (
    CheckpointError,
    ConfigError,
    ControlNetError,
    CorruptCheckpointError,
    HintError,
    InputError,
    InvalidWeightsError,
    KeyMismatchError,
    OutputError,
    UnknownFormatError,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    WrongFamilyError,
)
from .formats import Detection, Layout, detect_format
from .loader import ControlNetWeights, LoadReport, build_controlnet, load_controlnet, read_controlnet
from .model import ControlNet
from .residuals import ControlResiduals

if TYPE_CHECKING:
    from .convert import convert_file, diffusers_config

_FROM_CONVERT = ("convert_file", "diffusers_config")


def __getattr__(name: str) -> object:
    """The names of :mod:`.convert`, imported on first use (see the module docstring)."""
    if name in _FROM_CONVERT:
        from . import convert

        return getattr(convert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_CONVERT))

__all__ = [
    "PRESETS",
    "SD15",
    "SD21",
    "SDXL",
    "CheckpointError",
    "ConfigError",
    "ControlNet",
    "ControlNetConfig",
    "ControlNetError",
    "ControlNetWeights",
    "ControlResiduals",
    "CorruptCheckpointError",
    "Detection",
    "Family",
    "HintError",
    "InputError",
    "InvalidWeightsError",
    "KeyMismatchError",
    "Layout",
    "LoadReport",
    "OutputError",
    "UnknownFormatError",
    "UnreadableCheckpointError",
    "UnsafeCheckpointError",
    "WrongFamilyError",
    "build_controlnet",
    "config_from_state_dict",
    "convert_file",
    "detect_format",
    "diffusers_config",
    "load_controlnet",
    "read_controlnet",
]

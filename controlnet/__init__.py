"""Host-free ControlNet for SD1.x, SD2.x and SDXL: the network, its checkpoint formats and conversion.

Pure torch and safetensors; never imports ComfyUI or :mod:`preprocessors`.
"""

from .config import PRESETS, SD15, SD21, SDXL, ControlNetConfig, Family, config_from_state_dict
from .convert import convert_file, diffusers_config
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

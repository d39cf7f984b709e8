"""Typed errors of the ControlNet core.

Every message says what was wrong, what was received and how to fix it, so a ComfyUI user can act on
it without reading a traceback.
"""

from __future__ import annotations


class ControlNetError(Exception):
    """Base class of every error raised by :mod:`controlnet`."""


class CheckpointError(ControlNetError, ValueError):
    """A checkpoint file could not be read or is not a usable ControlNet."""


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, damaged, empty, or not the kind of file its content claims to be."""


class UnreadableCheckpointError(CheckpointError):
    """The file exists but the operating system refuses to read it (permissions, a folder in the way)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that cannot be loaded without the risk of running code (it asks for code, or uses a pickle
    protocol PyTorch's safe loader cannot parse); it was refused and never executed."""


class UnknownFormatError(CheckpointError):
    """The keys match no known ControlNet layout; nothing was loaded."""


class WrongFamilyError(CheckpointError):
    """The file is a model of another family (T2I-Adapter, LoRA, SD3/Flux ControlNet, a whole SD checkpoint...)."""


class KeyMismatchError(CheckpointError):
    """The keys look like a ControlNet but some are missing or unexpected for the inferred architecture."""


class InvalidWeightsError(CheckpointError):
    """Weights hold NaN or Inf values, have shapes the architecture cannot take, or are stored in a data type
    that holds no plain weights (integers, block scales, packed 4-bit values)."""


class ConfigError(ControlNetError, ValueError):
    """An architecture description (:class:`ControlNetConfig`) contradicts itself."""


class OutputError(ControlNetError, OSError):
    """A converted file cannot be written where it was asked for (exists, a folder, not writable)."""


class HintError(ControlNetError, ValueError):
    """A control hint (the conditioning image) has the wrong shape, channel count or size."""


class InputError(ControlNetError, ValueError):
    """A model input (latent, timestep, context, label) has the wrong shape for this ControlNet."""

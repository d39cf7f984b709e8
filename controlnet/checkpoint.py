"""Safe reading of weight files: safetensors (header first; only the tensors asked for are ever read, by
plain reads into memory of their own) first, restricted pickles otherwise (zip checkpoints the same way on
torch 2.11 and later: their pickle first, then only the storages asked for; earlier torch releases map them).

The container is recognised from the file's first bytes, never from its name, so a renamed file gets
an error about what it really is. Pickles are only ever opened with ``torch.load(weights_only=True)``:
a pickle that would need to run code is refused, and nothing in it is executed.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import logging
import math
import os
import pickle
import re
import stat
import struct
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from .errors import (
    CheckpointError,
    CorruptCheckpointError,
    InvalidWeightsError,
    UnknownFormatError,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
)
from .torch_zip import Layout, read_layout

log = logging.getLogger("affordance.controlnet")

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    **{  # AMD's fp8 (ROCm); safetensors names them since 0.6
        name: getattr(torch, attr)
        for name, attr in (("F8_E4M3FNUZ", "float8_e4m3fnuz"), ("F8_E5M2FNUZ", "float8_e5m2fnuz"))
        if hasattr(torch, attr)
    },
}
# safetensors' other data types: valid files, but no ControlNet's weights (block scales, packed 4/6-bit values of
# quantized formats, unsigned or complex numbers); named as such instead of as a damaged header
OTHER_SAFETENSORS_DTYPES = frozenset({"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "U16", "U32", "U64", "C64"})
MAX_HEADER = 100 * 1024 * 1024
DIFFUSERS_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)


@dataclass
class RawCheckpoint:
    """Tensors of a weight file, as stored, before any layout detection.

    Attributes:
        path: the file that was read (inside a diffusers folder: its weights file).
        container: ``"safetensors"``, ``"torch-zip"`` or ``"torch-legacy"``.
        tensors: key -> tensor. For safetensors and zip checkpoints, tensors on the ``meta`` device (shape,
            dtype and strides only: nothing is read yet) whose data :attr:`fetch` reads; CPU tensors for
            legacy pickles (and zip checkpoints this torch cannot locate storages in).
        metadata: the safetensors ``__metadata__`` (empty for pickles).
        config: a diffusers ``config.json`` found next to the weights, else ``None``.
        skipped: non-tensor entries of a pickle (e.g. ``epoch``), by key.
        config_is_sibling: ``config`` lies beside a weights file given by itself (not a diffusers folder
            given as such): it may belong to another model in the same folder.
        fetch: ``fetch(keys)`` reads those tensors into CPU memory of their own (a file cut short or changed
            since its header was read is a :class:`CorruptCheckpointError`, never a crash); ``None`` when
            :attr:`tensors` already hold the data.
        mapped: :attr:`tensors` view the file through a memory map (zip checkpoints on a torch that cannot
            read their pickle lazily, before 2.11): whoever keeps them must copy them.
    """

    path: Path
    container: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    config: dict[str, object] | None = None
    skipped: list[str] = field(default_factory=list)
    config_is_sibling: bool = False
    fetch: Callable[[Iterable[str]], dict[str, torch.Tensor]] | None = None
    mapped: bool = False

    def materialized(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        """The tensors of ``keys`` with their data (read now for safetensors)."""
        keys = list(keys)
        return self.fetch(keys) if self.fetch is not None else {k: self.tensors[k] for k in keys}


def _describe_text(head: bytes) -> str:
    text = head.decode("utf-8", errors="replace").strip()
    if text.startswith("version https://git-lfs"):
        return "a Git LFS pointer, not the weights: fetch the real file (git lfs pull) and put it in place"
    if text[:15].lower().startswith(("<!doctype", "<html")):
        return "an HTML page (a download that saved the web page instead of the file): download the file again"
    return f"text beginning {text[:40]!r}, not weights: replace it with the real model file"


def sniff_container(path: Path) -> str:
    """Tell ``safetensors``, ``torch-zip`` or ``torch-legacy`` from the first bytes of ``path``.

    Raises:
        CorruptCheckpointError: empty, too short, or not a weight file at all (with what it looks like).
    """
    size = path.stat().st_size
    if size == 0:
        raise CorruptCheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish.")
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and head[1] in (2, 3, 4, 5):
        return "torch-legacy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= min(size - 8, MAX_HEADER) and head[8:9] == b"{":
            return "safetensors"
        if head[8:9] == b"{" and n > size - 8:
            raise CorruptCheckpointError(
                f"{path} is a truncated safetensors file: its header alone needs {n + 8} bytes but the file has "
                f"{size}. Download it again."
            )
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:32]):
        raise CorruptCheckpointError(f"{path} is {_describe_text(head)}.")
    raise CorruptCheckpointError(
        f"{path} is neither a safetensors file nor a PyTorch checkpoint (first bytes {head[:8].hex()}). "
        "It is damaged or of another kind; download the model again."
    )


def file_identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from another: size, modification and change times (ns), inode.

    The change time cannot be set back by ``cp -p``, ``rsync -t`` or unpacking an archive, so a file
    replaced by another of the same size and modification time still differs. A rewrite in place within
    one tick of the file system's clock (before Linux 6.13: 1-10 ms) can keep every field.
    """
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _changed(path: Path) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"{path} changed while it was being read (replaced or cut short, e.g. by a download in progress). "
        "Wait until it is complete, then run again."
    )


def _read_places(
    path: Path, identity: tuple[int, int, int, int], places: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], torch.Tensor]:
    """Read byte ranges ``(offset, nbytes)`` of ``path`` into fresh CPU memory, one forward pass in file order.

    Returns:
        ``(offset, nbytes)`` -> ``(nbytes,)`` uint8 tensor of its own (one per distinct range).

    Raises:
        CorruptCheckpointError: the file is gone, cut short, or no longer the version of ``identity``
            (checked before and after reading: a replaced file is never mixed with the one first read).
    """
    changed = _changed(path)
    out: dict[tuple[int, int], torch.Tensor] = {}
    try:
        f = path.open("rb")
    except (FileNotFoundError, IsADirectoryError) as exc:  # deleted, moved away or replaced since its header was read
        raise changed from exc
    except PermissionError as exc:
        raise UnreadableCheckpointError(
            f"cannot read {path} any more: {exc.strerror or exc}. Let the user that runs ComfyUI read it."
        ) from exc
    with f:
        if file_identity(os.fstat(f.fileno())) != identity:
            raise changed
        for offset, nbytes in sorted(set(places)):
            buf = torch.empty(nbytes, dtype=torch.uint8)
            if nbytes:
                f.seek(offset)
                if f.readinto(buf.numpy().data) != nbytes:
                    raise changed
            out[offset, nbytes] = buf
        if file_identity(os.fstat(f.fileno())) != identity:
            raise changed
    return out


def _read_safetensors(
    path: Path,
) -> tuple[dict[str, torch.Tensor], dict[str, str], Callable[[Iterable[str]], dict[str, torch.Tensor]]]:
    """The header of a safetensors file: meta tensors (shape, dtype), its metadata and a reader of tensors.

    Nothing but the header is read here. The reader reads the tensors asked for with plain reads into fresh
    CPU memory (the file is never memory-mapped: a mapped file cut short while it is read kills the process
    with SIGBUS), after checking that the file is still the one whose header was read.
    """
    with path.open("rb") as f:
        identity = file_identity(os.fstat(f.fileno()))
        size = identity[0]
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
        try:
            header = json.loads(raw)
        # ValueError (JSONDecodeError's base): also an integer of more than 4300 digits, Python's limit
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CorruptCheckpointError(f"{path} has a damaged safetensors header ({exc}). Download it again.") from exc
        if not isinstance(header, dict):
            raise CorruptCheckpointError(f"{path} has a safetensors header that is not a JSON object.")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict):
            raise CorruptCheckpointError(
                f"{path}: the safetensors header's __metadata__ is a {type(metadata).__name__}, not a JSON object. "
                "The file is damaged; download it again."
            )
    start = 8 + n
    data_size = size - start
    tensors: dict[str, torch.Tensor] = {}
    places: dict[str, tuple[int, int]] = {}  # key -> (file offset, bytes)

    def whole(v: object) -> int:  # a JSON integer (not a bool, a float or a string) that fits in 63 bits
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 63:
            raise ValueError(f"{v!r} is not a size")
        return v

    for key, info in header.items():
        if isinstance(info, dict) and isinstance(info.get("dtype"), str) and info["dtype"] in OTHER_SAFETENSORS_DTYPES:
            raise InvalidWeightsError(
                f"{path}: tensor {key!r} is stored as {info['dtype']}, a data type Affordance does not read (weights "
                "may be F32, F16, BF16, F64 or fp8: F8_E4M3, F8_E5M2 and their FNUZ forms); the file is quantized in "
                "a format it does not support. Use an fp16, bf16 or fp32 copy of the model."
            )
        try:
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            shape = [whole(s) for s in info["shape"]]
            begin, end = (whole(o) for o in info["data_offsets"])
            if math.prod(s for s in shape if s) >= 1 << 63:
                raise ValueError("the shape overflows")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptCheckpointError(f"{path}: entry {key!r} of the safetensors header is malformed ({info!r}).") from exc
        count = math.prod(shape)
        nbytes = count * torch.empty((), dtype=dtype).element_size()
        if end - begin != nbytes or begin < 0:
            raise CorruptCheckpointError(
                f"{path}: tensor {key!r} claims {end - begin} bytes for shape {shape} of {info['dtype']} "
                f"({nbytes} needed). The file is damaged."
            )
        if end > data_size:
            raise CorruptCheckpointError(
                f"{path} is truncated: tensor {key!r} ends at byte {start + end} but the file has {size} bytes. "
                "Download it again."
            )
        try:
            tensors[key] = torch.empty(shape, dtype=dtype, device="meta")
        except (RuntimeError, TypeError) as exc:  # e.g. a storage size torch cannot represent
            raise CorruptCheckpointError(f"{path}: tensor {key!r} has an impossible shape {shape} ({exc}).") from exc
        places[key] = (start + begin, nbytes)
    # Tensors must not share bytes (safetensors' own rule): overlapping entries would make a small file
    # claim, and be read into, many times its size.
    previous_end, previous_key = 0, None
    for key, (offset, nbytes) in sorted(places.items(), key=lambda kv: kv[1]):
        if nbytes and offset < previous_end:
            raise CorruptCheckpointError(
                f"{path}: tensors {previous_key!r} and {key!r} overlap in the file (the header is damaged or "
                "crafted). Download the model again."
            )
        if nbytes:
            previous_end, previous_key = offset + nbytes, key

    def fetch(keys: Iterable[str]) -> dict[str, torch.Tensor]:
        keys = list(keys)
        data = _read_places(path, identity, (places[k] for k in keys))
        # .view/.reshape are also right for empty tensors
        return {k: data[places[k]].view(tensors[k].dtype).reshape(tensors[k].shape) for k in keys}

    return tensors, {str(k): str(v) for k, v in metadata.items()}, fetch


def _unwrap(obj: object, path: Path) -> tuple[dict[str, object], list[str]]:
    """Find the state dict inside a training checkpoint; also name the entries left beside it."""
    beside: list[str] = []
    for _ in range(3):
        if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
            beside += [str(k) for k in obj if k != "state_dict"]
            obj = obj["state_dict"]
        elif isinstance(obj, Mapping) and len(obj) == 1 and isinstance(next(iter(obj.values())), Mapping):
            obj = next(iter(obj.values()))
        else:
            break
    if not isinstance(obj, Mapping):
        raise UnknownFormatError(
            f"{path} holds a {type(obj).__name__}, not a state dict of named tensors; it is not a ControlNet file."
        )
    return dict(obj), beside


# What torch's weights-only unpickler says when a pickle asks for code (a global, a call, a class) rather
# than when its bytes are damaged ("Unsupported operand", which torch words the same way otherwise).
_NEEDS_CODE = re.compile(r"GLOBAL|unrecognized function|unsupported class|can only (?:build|create)", re.IGNORECASE)


# Where torch's weights-only refusal states what it found; the text around it is torch's advice, which suggests
# loading with weights_only=False (PyTorch 2.4 prints both on one line before a damaged byte).
_UNPICKLER = "WeightsUnpickler error: "


def _code_request(message: str) -> str | None:
    """The line of a weights-only refusal that names the code a pickle asked for; ``None`` if it asked none."""
    line = next((ln.strip() for ln in message.splitlines() if _NEEDS_CODE.search(ln)), None)
    if line is None:
        return None
    return line.split(" Please use", 1)[0].removeprefix(_UNPICKLER)  # not torch's advice to allowlist it


def _unpickler_reason(message: str) -> str:
    """What torch's weights-only unpickler found wrong in damaged bytes ("Unsupported operand 172", "Invalid
    magic number; corrupt file?"), without torch's advice around it; at most 200 characters."""
    _, found, after = message.partition(_UNPICKLER.strip())
    lines = (ln.strip() for ln in (after if found else message).splitlines())
    reason = next((ln for ln in lines if ln and "weights_only" not in ln and not ln.startswith("Check the ")), "")
    return reason[:200] or "no reason given"


def _pickle_protocol(path: Path) -> int | None:
    """The protocol byte of a bare pickle file (``0x80 N`` at its start); ``None`` for other files."""
    with path.open("rb") as f:
        head = f.read(2)
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


def _zip_pickle_protocol(path: Path) -> int | None:
    """The protocol byte of a zip checkpoint's ``data.pkl``; ``None`` where it cannot be read."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return None
            with zf.open(name) as member:
                head = member.read(2)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError, RuntimeError):
        return None
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


# Unpickler opcode 149 is FRAME, the first opcode of every pickle of protocol 4 or newer: torch's safe loader
# cannot parse those at all, so a whole file (Python's pickle.dump, or torch.save(pickle_protocol=4)) would
# otherwise be called damaged.
_FRAME = "Unsupported operand 149"


def _new_protocol_error(path: Path, protocol: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path} is a pickle of protocol {protocol} (Python's pickle.dump, or torch.save with pickle_protocol=4 or "
        "more), which PyTorch's safe loader cannot read; such a pickle could run code, so it was refused and "
        "nothing in it was executed. Get a .safetensors version of this model, or re-save it with safetensors "
        "(or torch.save's default protocol) on a machine you trust."
    )


# What unpickling damaged bytes raises besides UnpicklingError: an empty stack, a missing memo or storage
# entry, a short struct, text that is not UTF-8...
_DAMAGED = (
    EOFError,
    zipfile.BadZipFile,
    UnicodeDecodeError,
    IndexError,
    KeyError,
    ValueError,
    OverflowError,
    struct.error,
    AssertionError,
    TypeError,
    AttributeError,
)


def _load_pickle(path: Path, container: str, f: BinaryIO | None, map_location: str) -> object:
    """``torch.load(weights_only=True)`` of the open file ``f``, or with ``f`` None of ``path`` memory-mapped
    (a zip checkpoint), with every failure turned into a typed error naming ``path``."""
    if container == "torch-legacy" and (protocol := _pickle_protocol(path) or 0) >= 4:
        raise _new_protocol_error(path, str(protocol))
    try:
        if f is None:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
        return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if wanted := _code_request(msg):
            raise UnsafeCheckpointError(
                f"{path} is a pickle that needs to run code to load, so it was refused and nothing in it was "
                f"executed ({wanted[:300]}). Get a .safetensors version of this model, or convert it on a "
                "machine you trust."
            ) from exc
        # FRAME where the pickle's header says protocol 2 or 3 (a legacy file's is checked above) is a damaged byte
        if _FRAME in msg and container != "torch-legacy" and (_zip_pickle_protocol(path) or 4) >= 4:
            raise _new_protocol_error(path, "4 or more") from exc
        raise CorruptCheckpointError(f"{path} is a damaged pickle ({_unpickler_reason(msg)}). Download it again.") from exc
    except _DAMAGED as exc:
        raise CorruptCheckpointError(
            f"{path} is truncated or damaged ({type(exc).__name__}: {str(exc)[:200]}). Download it again."
        ) from exc
    except OSError as exc:  # the zip reader of a cut-off file; the file itself exists (checked before)
        if not path.is_file():
            raise
        raise CorruptCheckpointError(
            f"{path} could not be read as a PyTorch checkpoint ({exc}); it is truncated or damaged. Download it again."
        ) from exc
    except RuntimeError as exc:
        raise CorruptCheckpointError(
            f"{path} could not be read as a PyTorch checkpoint ({str(exc)[:200]}); it is truncated or damaged. "
            "Download it again."
        ) from exc
    except MemoryError as exc:  # a damaged length inside the pickle asks for one huge read, or memory is short
        raise UnreadableCheckpointError(
            f"{path} ({path.stat().st_size:,} bytes) could not be read: memory ran out while unpickling it. A damaged "
            "file can ask for far more memory than it holds: if this machine has several times the file's size "
            "free, download it again; otherwise free memory (close other programs, unload models) and try again."
        ) from exc


def _state_tensors(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The named tensors of an unpickled checkpoint and the names of the other entries beside them."""
    sd, beside = _unwrap(obj, path)
    tensors = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        # Several state dicts side by side (an IP-Adapter .bin: {"image_proj": {...}, "ip_adapter": {...}}):
        # name their tensors "<part>.<key>" so the format check can say what the file is.
        tensors = {
            f"{k}.{kk}": vv
            for k, v in sd.items()
            if isinstance(v, Mapping)
            for kk, vv in v.items()
            if isinstance(vv, torch.Tensor)
        }
    nested = {k.split(".", 1)[0] for k in tensors if k not in sd}
    skipped = sorted(beside + [str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor) and str(k) not in nested])
    return tensors, skipped


def _read_pickle(
    path: Path, container: str
) -> tuple[dict[str, torch.Tensor], list[str], Callable[[Iterable[str]], dict[str, torch.Tensor]] | None, bool]:
    """A pickle's tensors, the entries beside them, a reader (or ``None``) and whether they are mapped.

    A zip checkpoint is read lazily where this torch can (:func:`_read_torch_zip`: meta tensors and a reader);
    otherwise memory-mapped, as torch reads it, so a 1.0 checkpoint's other weights are never loaded (the
    loader copies what it keeps). A legacy pickle (and any pickle under a safetensors name, which torch would
    take for one) is read whole.
    """
    if container == "torch-zip":
        identity, layout = _zip_layout(path)
        if layout.torchscript:
            raise UnknownFormatError(
                f"{path} is a TorchScript program (torch.jit.save), not a file of weights: loading it would run its "
                "code, so it was not opened. Get the model as .safetensors (or a state dict saved with torch.save)."
            )
        lazy = _read_torch_zip(path, identity, layout)
        if lazy is not None:
            return (*lazy, False)
        mappable = layout.storages_stored and not layout.foreign_byteorder  # torch < 2.11 maps them unswapped
        if mappable and path.suffix.lower() not in (".safetensors", ".sft"):
            return (*_state_tensors(_load_pickle(path, container, None, "cpu"), path), None, True)
    with path.open("rb") as f:  # a recompressed zip is inflated by torch's reader (a mapping would see deflated bytes)
        obj = _load_pickle(path, container, f, "cpu")
    return (*_state_tensors(obj, path), None, False)


# A zip checkpoint's records may declare at most this many times the file's size once inflated (and more than
# MAX_INFLATED_FLOOR bytes in all): torch.save stores records as they are, and weights deflate little, so a
# file declaring more is a zip bomb (torch's reader inflates each record whole into memory), not weights.
# The same limits are in preprocessors/weights.py, which may not import this package.
MAX_INFLATE_RATIO = 10
MAX_INFLATED_FLOOR = 64 * 1024 * 1024


def _check_inflated_size(path: Path, f: BinaryIO, size: int) -> None:
    """Refuse a zip archive whose records declare an implausible uncompressed total for a file of ``size`` bytes.

    Only the zip directory is read (each record's declared size); nothing is inflated.

    Raises:
        CorruptCheckpointError: the records declare more than ``MAX_INFLATE_RATIO`` times the file's size (and
            more than ``MAX_INFLATED_FLOOR`` bytes).
        zipfile.BadZipFile and the other errors of :class:`zipfile.ZipFile`: not a readable zip archive.
    """
    with zipfile.ZipFile(f) as zf:
        declared = sum(info.file_size for info in zf.infolist())
    if declared > MAX_INFLATED_FLOOR and declared > MAX_INFLATE_RATIO * size:
        raise CorruptCheckpointError(
            f"{path} is not a usable checkpoint: its zip records declare {declared:,} bytes once uncompressed, but "
            f"the file has {size:,} bytes (more than {MAX_INFLATE_RATIO} times that; torch.save stores weights "
            "uncompressed, and weights barely compress). It was not unpacked. Download the model again, or load "
            "it where you trust it and save it again with torch.save (or as .safetensors)."
        )


def _zip_layout(path: Path) -> tuple[tuple[int, int, int, int], Layout]:
    """The file's identity and its zip layout (:func:`.torch_zip.read_layout`), read from one open file.

    Raises:
        CorruptCheckpointError: not a readable zip archive, or one declaring an implausible uncompressed size
            (:func:`_check_inflated_size`; checked before anything in it is read).
    """
    with path.open("rb") as f:
        identity = file_identity(os.fstat(f.fileno()))
        try:
            _check_inflated_size(path, f, identity[0])
            return identity, read_layout(f)
        except CheckpointError:  # already says what is wrong (a ValueError too: not to be caught below)
            raise
        except (zipfile.BadZipFile, struct.error, ValueError, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
            raise CorruptCheckpointError(
                f"{path} could not be read as a PyTorch checkpoint ({exc}); it is truncated or damaged. Download it again."
            ) from exc


@functools.cache
def lazy_zip_reads() -> bool:
    """Whether this torch reads a zip checkpoint's pickle onto the meta device without reading its storages,
    recording where each one begins (torch 2.11 and later; before, ``map_location="meta"`` read them all)."""
    buf = io.BytesIO()
    torch.save({"t": torch.zeros(2)}, buf)
    buf.seek(0)
    try:
        t = torch.load(buf, map_location="meta", weights_only=True)["t"]
    except Exception:  # noqa: BLE001 - any failure means: not available here
        return False
    return isinstance(getattr(t.untyped_storage(), "_checkpoint_offset", None), int)


def _read_torch_zip(
    path: Path, identity: tuple[int, int, int, int], layout: Layout
) -> tuple[dict[str, torch.Tensor], list[str], Callable[[Iterable[str]], dict[str, torch.Tensor]]] | None:
    """A zip checkpoint's pickle, as meta tensors, and a reader of the storages behind them.

    torch's weights-only unpickler reads the pickle onto the ``meta`` device, recording where each storage's
    record begins; the zip directory says which record that is. The reader then reads only the storages of
    the tensors asked for, with plain reads into fresh CPU memory, after checking that the file is still the
    one whose pickle was read (so a 1.0 checkpoint's Stable Diffusion weights are never read, and a file cut
    short meanwhile is an error, not a SIGBUS). Tensors sharing a storage share the memory read, as with
    ``torch.load``.

    Returns ``None`` (the caller then reads the file as ``torch.load`` does) where this torch cannot
    (:func:`lazy_zip_reads`), the storages were written in the other byte order (torch crashes swapping
    meta storages), the archive is not laid out as ``torch.save`` writes it (re-packed: recompressed records,
    or records out of order, where torch's positions could name other records), a tensor is not a plain
    strided one (sparse, quantized), or the meta read itself fails (the whole read then names the problem).
    """
    if not lazy_zip_reads() or layout.foreign_byteorder or not layout.storages_in_order:
        return None
    with path.open("rb") as f:
        if file_identity(os.fstat(f.fileno())) != identity:  # replaced since its layout was read
            raise _changed(path)
        try:
            obj = _load_pickle(path, "torch-zip", f, "meta")
        except UnsafeCheckpointError:
            raise
        except CheckpointError:
            return None
        if file_identity(os.fstat(f.fileno())) != identity:
            raise _changed(path)
    tensors, skipped = _state_tensors(obj, path)
    if any(t.layout != torch.strided or t.is_quantized for t in tensors.values()):
        return None
    places: dict[str, tuple[int, int]] = {}  # key -> (file offset of its storage, storage bytes)
    for key, t in tensors.items():
        storage = t.untyped_storage()
        offset = getattr(storage, "_checkpoint_offset", None)
        record = layout.records.get(offset) if isinstance(offset, int) else None
        if not isinstance(offset, int) or record is None or not record.stored:
            log.debug("%r: a storage's record is unknown or compressed: read as torch.load does", path)
            return None
        # the pickle's storage size, grown by torch to what the tensor's shape needs if that is more
        nbytes = storage.nbytes()
        if record.size != nbytes:
            raise CorruptCheckpointError(
                f"{path}: tensor {key!r} needs a storage of {nbytes} bytes but its record {record.name!r} holds "
                f"{record.size}. The file is damaged; download it again."
            )
        places[key] = (offset, nbytes)

    def fetch(keys: Iterable[str]) -> dict[str, torch.Tensor]:
        keys = list(keys)
        data = _read_places(path, identity, (places[k] for k in keys))  # each storage once, shared by its views
        out: dict[str, torch.Tensor] = {}
        for k in keys:
            meta = tensors[k]
            out[k] = data[places[k]].view(meta.dtype).as_strided(meta.shape, meta.stride(), meta.storage_offset())
        return out

    return tensors, skipped, fetch


def _read_config(cfg_path: Path) -> dict[str, object]:
    """A diffusers ``config.json``, which must be a JSON object.

    Raises:
        CorruptCheckpointError: not UTF-8, not JSON (damaged, nested too deep, an integer of more than 4300
            digits) or not an object.
    """
    try:
        loaded = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, huge integers
        raise CorruptCheckpointError(
            f"{cfg_path} is not valid JSON ({type(exc).__name__}: {str(exc)[:200]}). Restore the folder's config.json."
        ) from exc
    if not isinstance(loaded, dict):
        raise CorruptCheckpointError(f"{cfg_path} is not a JSON object.")
    return loaded


def _diffusers_folder(path: Path) -> tuple[Path, dict[str, object]]:
    for name in (*DIFFUSERS_WEIGHT_NAMES, "config.json"):
        if os.path.lexists(path / name):
            check_source(path / name)  # a FIFO, device or link loop under that name is named, not skipped
    weights = next((path / n for n in DIFFUSERS_WEIGHT_NAMES if (path / n).is_file()), None)
    if weights is None:
        raise UnknownFormatError(
            f"{path} is a folder without a diffusers weights file (looked for {', '.join(DIFFUSERS_WEIGHT_NAMES)}). "
            "Point to the weights file or a diffusers ControlNet folder."
        )
    cfg_path = path / "config.json"
    return weights, _read_config(cfg_path) if cfg_path.is_file() else {}


_WEIGHT_SUFFIXES = (".safetensors", ".sft", ".pth", ".pt", ".ckpt", ".bin")


def _only_diffusers_weights(folder: Path) -> bool:
    """Whether every weight file in ``folder`` is a diffusers model file (``diffusion_pytorch_model*``).

    That is diffusers' own rule for which weights a folder's ``config.json`` describes (variants such as
    ``.fp16.safetensors`` included); a config among other weight files may belong to any of them.
    """
    try:
        names = [p.name for p in folder.iterdir() if p.suffix.lower() in _WEIGHT_SUFFIXES]
    except OSError:
        return False
    return all(n.startswith("diffusion_pytorch_model") for n in names)


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Read a weight file or diffusers folder without executing code: safetensors' header and zip
    checkpoints' pickle (their tensors are read by :attr:`RawCheckpoint.fetch`), legacy pickles whole.

    Args:
        path: a ``.safetensors``/``.sft``/``.pth``/``.pt``/``.ckpt``/``.bin`` file (the extension is not
            trusted), or a diffusers folder with ``config.json`` and ``diffusion_pytorch_model.*``.

    Returns:
        The raw tensors; for safetensors and zip checkpoints only the header or pickle is read (see
        :attr:`RawCheckpoint.fetch`), so tensors that are not asked for cost neither time nor RAM.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CorruptCheckpointError: empty, truncated, damaged or not a weight file.
        UnreadableCheckpointError: the file or a folder on its way may not be read (permissions), or ``path``
            is a symbolic link loop or not a regular file or folder (a FIFO, socket or device).
        UnsafeCheckpointError: a pickle that needs code execution (refused, never executed).
        UnknownFormatError: no tensors, or not a mapping of tensors.
    """
    path = Path(path)
    try:
        return _read_checkpoint(path)
    except PermissionError as exc:
        raise UnreadableCheckpointError(
            f"cannot read {exc.filename or path}: {exc.strerror or exc}. Let the user that runs ComfyUI read the "
            "file and its folders (e.g. chmod a+rX), or copy the model to a folder of your own."
        ) from exc
    except (IsADirectoryError, NotADirectoryError) as exc:  # a folder where a file is expected, or the reverse
        raise UnreadableCheckpointError(f"cannot read {exc.filename or path}: {exc.strerror or exc}.") from exc


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a FIFO, a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_source(path: Path) -> os.stat_result:
    """Stat ``path`` (following links) and make sure it can hold a ControlNet, before anything is opened.

    ``Path.exists()`` is not used: it calls a symbolic link loop "missing". Nothing is opened here, so a
    FIFO (which would block a reader until something writes to it) or a device is named, never read.

    Returns:
        The ``os.stat`` of ``path``: a regular file or a folder.

    Raises:
        FileNotFoundError: nothing at ``path`` (or a folder on its way is a file).
        UnreadableCheckpointError: ``path`` is a symbolic link loop, or not a regular file or folder (a FIFO,
            socket or device).
        PermissionError: a folder on the way may not be searched.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise FileNotFoundError(f"no ControlNet file at {path}.") from exc
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise UnreadableCheckpointError(
            f"{path} is a symbolic link loop (its links lead back to themselves, or through more than the system's "
            "limit of links), so there is no file to read. Point the link at the real model file."
        ) from exc
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return st
    kind = next((name for test, name in _SPECIAL_FILES if test(st.st_mode)), "a special file")
    raise UnreadableCheckpointError(
        f"{path} is not a regular file ({kind}): a ControlNet is read from a weights file or a diffusers folder. "
        "Give the path of the model file itself."
    )


def _read_checkpoint(path: Path) -> RawCheckpoint:
    config = None
    sibling_config = False
    if stat.S_ISDIR(check_source(path).st_mode):
        path, config = _diffusers_folder(path)
    elif (path.parent / "config.json").is_file() and _only_diffusers_weights(path.parent):
        # A diffusers folder inside models/controlnet lists its weights file; its config still applies. A
        # config.json beside other weight files (e.g. at the folder's root) may be any model's: not read.
        # Only diffusers weights are here, so a config.json that is not JSON is theirs and damaged: said, not
        # skipped (a shuffle model would silently lose its pooling).
        sibling = _read_config(path.parent / "config.json")
        if sibling.get("_class_name") == "ControlNetModel":
            config, sibling_config = sibling, True  # used only if it describes these weights (the loader checks)
    container = sniff_container(path)
    metadata: dict[str, str] = {}
    skipped: list[str] = []
    fetch = None
    mapped = False
    if container == "safetensors":
        tensors, metadata, fetch = _read_safetensors(path)
    else:
        tensors, skipped, fetch, mapped = _read_pickle(path, container)
    if not tensors:
        raise CorruptCheckpointError(
            f"{path} holds no tensors (an empty state dict{'; other entries: ' + ', '.join(skipped[:5]) if skipped else ''}). "
            "It is not a usable model; download it again."
        )
    log.debug("read %d tensors from %r (%s)", len(tensors), path, container)
    return RawCheckpoint(
        path, container, tensors, metadata, config, skipped, config_is_sibling=sibling_config, fetch=fetch, mapped=mapped
    )

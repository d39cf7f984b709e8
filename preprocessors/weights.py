"""Annotator weight files: the official names, safe loading, and errors that say where a file goes.

Files are read only from a folder the host gives (ComfyUI's ``models/annotators``), never downloaded.
Loading is safetensors first, otherwise ``torch.load(weights_only=True)``: a pickle that needs code is
refused. The state dict is unwrapped the way the original loaders do (``state_dict``/``model`` entries,
``module.`` prefixes) and must match the network's keys and shapes exactly.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from .errors import PreprocessorError

SOURCE = "https://huggingface.co/lllyasviel/Annotators"
Net = TypeVar("Net", bound=nn.Module)  # load_annotator returns the network it was given


class AnnotatorWeightsError(PreprocessorError):
    """A missing, unreadable, unsafe or mismatched annotator weight file."""


@dataclass(frozen=True)
class AnnotatorFile:
    """An official annotator file, as published in ``lllyasviel/Annotators``.

    Attributes:
        name: file name in the repository.
        annotator: what uses it.
        size: exact size in bytes.
        sha256: SHA-256 of the file (lower-case hex), from the repository's Git LFS pointer.
    """

    name: str
    annotator: str
    size: int
    sha256: str

    @property
    def approx_size(self) -> str:
        """The size for people, e.g. ``"29 MB"`` (decimal megabytes, as Hugging Face shows them)."""
        return f"{self.size / 1e6:.0f} MB" if self.size >= 5e6 else f"{self.size / 1e6:.1f} MB"


# Sizes and SHA-256 sums read off the Git LFS pointers of lllyasviel/Annotators (revision 982e7ed; each file
# has been unchanged since its upload). Five of them are also in lllyasviel/ControlNet's annotator/ckpts
# (body and hand pose, MiDaS, M-LSD) with the same sums.
ANNOTATOR_FILES: dict[str, AnnotatorFile] = {
    f.name: f
    for f in (
        AnnotatorFile(
            "ControlNetHED.pth",
            "HED soft edges, fake scribble",
            29_444_406,
            "5ca93762ffd68a29fee1af9d495bf6aab80ae86f08905fb35472a083a4c7a8fa",
        ),
        AnnotatorFile(
            "table5_pidinet.pth",
            "PiDiNet soft edges",
            2_871_148,
            "80860ac267258b5f27486e0ef152a211d0b08120f62aeb185a050acc30da486c",
        ),
        AnnotatorFile(
            "mlsd_large_512_fp32.pth",
            "M-LSD straight lines",
            6_341_481,
            "5696f168eb2c30d4374bbfd45436f7415bb4d88da29bea97eea0101520fba082",
        ),
        AnnotatorFile(
            "sk_model.pth",
            "lineart (fine)",
            17_173_511,
            "c686ced2a666b4850b4bb6ccf0748031c3eda9f822de73a34b8979970d90f0c6",
        ),
        AnnotatorFile(
            "sk_model2.pth",
            "lineart (coarse)",
            17_173_511,
            "30a534781061f34e83bb9406b4335da4ff2616c95d22a585c1245aa8363e74e0",
        ),
        AnnotatorFile(
            "netG.pth",
            "lineart anime",
            217_631_959,
            "ccabdcc3f5cf3c07cf65d58776acb21df7dfda825cdc70c9766a93fd62bfc488",
        ),
        AnnotatorFile(
            "dpt_hybrid-midas-501f0c75.pt",
            "MiDaS depth and normals",
            492_757_791,
            "501f0c75b3bca7daec6b3682c5054c09b366765aef6fa3a09d03a5cb4b230853",
        ),
        AnnotatorFile(
            "scannet.pt",
            "NormalBAE normals",
            290_767_728,
            "03dbf1600c51ee3d45c29f77b77bf1a3b7a24c3452dba62a4ae658f37330c209",
        ),
        AnnotatorFile(
            "body_pose_model.pth",
            "OpenPose body",
            209_267_595,
            "25a948c16078b0f08e236bda51a385d855ef4c153598947c28c0d47ed94bb746",
        ),
        AnnotatorFile(
            "hand_pose_model.pth",
            "OpenPose hands",
            147_341_049,
            "b76b00d1750901abd07b9f9d8c98cc3385b8fe834a26d4b4f0aad439e75fc600",
        ),
        AnnotatorFile(
            "facenet.pth",
            "OpenPose face",
            153_718_792,
            "8beb52e548624ffcc4aed12af7aee7dcbfaeea420c75609fee999fe7add79d43",
        ),
    )
}


def missing_file_error(name: str, folders: list[str]) -> AnnotatorWeightsError:
    """The error for an official file that is not in any annotator folder."""
    info = ANNOTATOR_FILES.get(name)
    what = f" ({info.annotator}, about {info.approx_size})" if info else ""
    check = (
        f" The official file is {info.size:,} bytes with SHA-256 {info.sha256}; "
        "`python -m affordance annotators FOLDER` checks a folder against these."
        if info
        else ""
    )
    where = ", ".join(folders) or "ComfyUI/models/annotators"
    return AnnotatorWeightsError(
        f"annotator weights {name!r}{what} were not found in {where}. Download {name} from {SOURCE} "
        f"(file {SOURCE}/blob/main/{name}) and put it in one of those folders under that exact name; "
        f"Affordance never downloads anything itself.{check}"
    )


def locate_annotator(folder: str | Path, name: str) -> Path:
    """Where the official file ``name`` is in ``folder``, looked up as the nodes look in ComfyUI's folders.

    Whatever is directly in ``folder`` under that name comes first (even a folder or a pipe, for the caller to
    refuse); otherwise the least nested file of that name in its sub-folders, then the first by path, so a
    folder laid out as comfyui_controlnet_aux downloads them (``ckpts/lllyasviel/Annotators/<name>``) is used
    as it is. Symlinked folders are followed, each real folder once. ``folder / name`` when there is none.
    """
    folder = Path(folder)
    direct = folder / name
    if os.path.lexists(direct):
        return direct
    found: list[tuple[int, str]] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink back up the tree: walked already
            dirs[:] = []
            continue
        seen.add(real)
        if name in files:
            rel = Path(root, name).relative_to(folder)
            found.append((len(rel.parts), rel.as_posix()))
    return folder / min(found)[1] if found else direct


def size_note(path: Path, name: str) -> str:
    """``" This file is M bytes; the official NAME is N bytes."`` when the sizes differ, else ``""``.

    A cheap hint for damaged or foreign files (no reading, no hashing); converted files (fp16,
    safetensors) differ in size too, so this is said only next to an error.
    """
    info = ANNOTATOR_FILES.get(name)
    try:
        size = path.stat().st_size
    except OSError:
        return ""
    if info is None or size == info.size:
        return ""
    return f" This file is {size:,} bytes; the official {name} is {info.size:,} bytes."


# torch's weights-only refusals that name code a pickle asked for (a global, a call, a class), as opposed to
# damaged bytes ("Unsupported operand"), which it words alike otherwise.
_NEEDS_CODE = re.compile(r"GLOBAL|unrecognized function|unsupported class|can only (?:build|create)", re.IGNORECASE)
# Where torch's weights-only refusal states what it found; the text around it is torch's advice, which suggests
# loading with weights_only=False (PyTorch 2.4 prints both on one line before a damaged byte).
_UNPICKLER = "WeightsUnpickler error: "


def _unpickler_reason(message: str) -> str:
    """What torch's weights-only unpickler found wrong in damaged bytes ("Unsupported operand 172", "Invalid
    magic number; corrupt file?"), without torch's advice around it; at most 200 characters."""
    _, found, after = message.partition(_UNPICKLER.strip())
    lines = (ln.strip() for ln in (after if found else message).splitlines())
    reason = next((ln for ln in lines if ln and "weights_only" not in ln and not ln.startswith("Check the ")), "")
    return reason[:200] or "no reason given"


# What unpickling damaged bytes raises besides UnpicklingError (an empty stack, a missing memo or storage entry...).
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


def _read(path: Path) -> Mapping[str, object]:
    with path.open("rb") as f:
        head = f.read(64)
    if not head:
        raise AnnotatorWeightsError(f"{path} is empty (0 bytes); download it again.")
    if head.startswith(b"version https://git-lfs"):
        raise AnnotatorWeightsError(f"{path} is a Git LFS pointer, not the weights; fetch the real file.")
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:32]):
        text = head.decode("ascii", errors="replace").strip()[:40]
        raise AnnotatorWeightsError(f"{path} is a text file beginning {text!r}, not weights; download the real file.")
    if len(head) >= 9 and head[8:9] == b"{":
        try:
            # read into memory, then parsed: a memory-mapped file cut short while it is read kills the process
            return load_safetensors(path.read_bytes())
        except Exception as exc:  # safetensors raises its own error types
            raise AnnotatorWeightsError(f"{path} is a damaged safetensors file ({exc}); download it again.") from exc
    new_protocol = (
        f"{path} is a pickle of protocol {{}} (Python's pickle.dump, or torch.save with pickle_protocol=4 or more), "
        "which PyTorch's safe loader cannot read; such a pickle could run code, so it was refused and nothing in "
        f"it was executed. Use the official file from {SOURCE}."
    )
    if head[0] == 0x80 and len(head) > 1 and head[1] >= 4:  # torch.save writes protocol 2 unless told otherwise
        raise AnnotatorWeightsError(new_protocol.format(head[1]))
    if head.startswith(b"PK\x03\x04"):  # a zip: torch.save's format, or a TorchScript program
        _check_inflated_size(path)
        if _is_torchscript(path):
            raise AnnotatorWeightsError(
                f"{path} is a TorchScript program (torch.jit.save), not a file of weights: loading it would run its "
                f"code, so it was not opened. Use the official file from {SOURCE}."
            )
    try:
        with path.open("rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        wanted = next((ln.strip().split(" Please use", 1)[0] for ln in msg.splitlines() if _NEEDS_CODE.search(ln)), None)
        if wanted:  # the code asked for, without torch's advice to allowlist it
            wanted = wanted.removeprefix(_UNPICKLER)
            raise AnnotatorWeightsError(
                f"{path} is a pickle that needs to run code to load; it was refused and nothing in it was "
                f"executed ({wanted[:200]}). Use the official file from {SOURCE}."
            ) from exc
        # FRAME: the first opcode of protocol 4+, which it cannot parse; in a pickle whose header says 2 or 3 (a
        # legacy file's is checked above) it is a damaged byte
        frame = "Unsupported operand 149" in msg
        if frame and head.startswith(b"PK\x03\x04") and (_zip_pickle_protocol(path) or 4) >= 4:
            raise AnnotatorWeightsError(new_protocol.format("4 or more")) from exc
        raise AnnotatorWeightsError(f"{path} is a damaged pickle ({_unpickler_reason(msg)}); download it again.") from exc
    except (PermissionError, IsADirectoryError):
        raise  # said with the fix by load_annotator
    except MemoryError as exc:  # a damaged length inside the pickle asks for one huge read, or memory is short
        raise AnnotatorWeightsError(
            f"{path} ({path.stat().st_size:,} bytes) could not be read: memory ran out while unpickling it. A damaged "
            "file can ask for far more memory than it holds: if this machine has several times the file's size "
            f"free, download the official file from {SOURCE} again; otherwise free memory and try again."
        ) from exc
    except (OSError, RuntimeError, *_DAMAGED) as exc:  # the zip reader of a cut-off file raises OSError too
        raise AnnotatorWeightsError(
            f"{path} is truncated or damaged ({type(exc).__name__}: {str(exc)[:200]}); download it again."
        ) from exc


# A zip checkpoint's records may declare at most this many times the file's size once inflated (and more than
# MAX_INFLATED_FLOOR bytes in all): torch.save stores records as they are, and weights deflate little, so a
# file declaring more is a zip bomb (torch.load inflates each record whole into memory), not weights.
# controlnet/checkpoint.py has the same check: the two packages may not import each other.
MAX_INFLATE_RATIO = 10
MAX_INFLATED_FLOOR = 64 * 1024 * 1024


def _check_inflated_size(path: Path) -> None:
    """Refuse a zip file whose records declare an implausible uncompressed total for the file's size.

    Only the zip directory is read (each record's declared size); nothing is inflated. An archive that
    cannot be read at all passes: ``torch.load`` then names what is wrong with it.

    Raises:
        AnnotatorWeightsError: the records declare more than ``MAX_INFLATE_RATIO`` times the file's size (and
            more than ``MAX_INFLATED_FLOOR`` bytes).
    """
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            with zipfile.ZipFile(f) as zf:
                declared = sum(info.file_size for info in zf.infolist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError, RuntimeError):
            return  # e.g. a 'version needed to extract' zipfile does not support: torch reads such archives
    if declared > MAX_INFLATED_FLOOR and declared > MAX_INFLATE_RATIO * size:
        raise AnnotatorWeightsError(
            f"{path} is not a usable annotator file: its zip records declare {declared:,} bytes once uncompressed, "
            f"but the file has {size:,} bytes (more than {MAX_INFLATE_RATIO} times that; torch.save stores weights "
            f"uncompressed, and weights barely compress). It was not unpacked. Download the official file from "
            f"{SOURCE} again, or load it where you trust it and save it again with torch.save."
        )


def _is_torchscript(path: Path) -> bool:
    """Whether a zip file is a TorchScript program (``torch.jit.save``: code and constants beside the data)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n or n.endswith("/constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError, RuntimeError):
        return False  # torch.load names what is wrong with it


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


def unwrap_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped like the original loaders: ``state_dict``/``model``, ``module.``."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise AnnotatorWeightsError(f"{source} holds a {type(obj).__name__}, not a state dict.")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


_FP8 = tuple(
    getattr(torch, n)
    for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
    if hasattr(torch, n)
)
_READ = (torch.float16, torch.bfloat16, torch.float32, torch.float64, *_FP8)  # floating dtypes read as weights


def load_annotator(path: str | Path, net: Net, name: str | None = None) -> Net:
    """Load an annotator file into ``net`` after checking every key and shape; returns ``net`` in eval mode.

    Raises:
        AnnotatorWeightsError: missing file, unsafe or damaged file, a file of another annotator (named
            keys), e.g. a different file saved under an official name, or weights of a data type that holds
            no plain weights (fp8 weights are read, widened exactly).
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise missing_file_error(name or path.name, [str(path.parent)])
        expected_name = name or path.name
        try:
            sd = unwrap_state_dict(_read(path), str(path))
        except AnnotatorWeightsError as exc:
            raise AnnotatorWeightsError(f"{exc}{size_note(path, expected_name)}") from exc
    except PermissionError as exc:
        raise AnnotatorWeightsError(
            f"cannot read {exc.filename or path}: {exc.strerror or exc}. Let the user that runs ComfyUI read the "
            "file and its folders (e.g. chmod a+rX)."
        ) from exc
    except OSError as exc:  # a folder in the way, an I/O error
        raise AnnotatorWeightsError(f"cannot read {exc.filename or path}: {exc.strerror or exc}.") from exc
    expected = net.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [k for k in sorted(set(sd) & set(expected)) if sd[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = [
            f"{len(missing)} missing ({', '.join(missing[:4])})" if missing else "",
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])})" if unexpected else "",
            f"{len(wrong)} with other shapes ({', '.join(wrong[:4])})" if wrong else "",
        ]
        raise AnnotatorWeightsError(
            f"{path} does not hold the weights of {expected_name} ({'; '.join(p for p in parts if p)}). "
            f"It is another model or a damaged file; get {expected_name} from {SOURCE}.{size_note(path, expected_name)}"
        )
    odd = next((k for k, v in sd.items() if v.is_complex() or (v.is_floating_point() and v.dtype not in _READ)), None)
    if odd is not None:  # block scales (e8m0), packed fp4, complex numbers: torch cannot check or copy them as weights
        raise AnnotatorWeightsError(
            f"{path}: weight {odd!r} is stored as {sd[odd].dtype}, which holds no plain weights (annotators are read "
            f"from fp32, fp16, bf16 or fp8 files); get {expected_name} from {SOURCE}."
        )
    sd = {k: v.float() if v.dtype in _FP8 else v for k, v in sd.items()}  # exact; torch finds no min/max of fp8
    bad = [k for k, v in sd.items() if v.is_floating_point() and not all(torch.isfinite(t) for t in torch.aminmax(v))]
    if bad:
        raise AnnotatorWeightsError(f"{path} has NaN or Inf weights ({', '.join(bad[:4])}); download it again.")
    net.load_state_dict(sd)
    return net.eval().requires_grad_(False)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    import hashlib

    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

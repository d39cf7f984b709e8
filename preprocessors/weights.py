"""Annotator weight files: the official names, safe loading, and errors that say where a file goes.

Files are read only from a folder the host gives (ComfyUI's ``models/annotators``), never downloaded.
Loading is safetensors first, otherwise ``torch.load(weights_only=True)``: a pickle that needs code is
refused. The state dict is unwrapped the way the original loaders do (``state_dict``/``model`` entries,
``module.`` prefixes) and must match the network's keys and shapes exactly.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .errors import PreprocessorError

SOURCE = "https://huggingface.co/lllyasviel/Annotators"


class AnnotatorWeightsError(PreprocessorError):
    """A missing, unreadable, unsafe or mismatched annotator weight file."""


@dataclass(frozen=True)
class AnnotatorFile:
    """An official annotator file.

    Attributes:
        name: file name in the ``lllyasviel/Annotators`` repository.
        annotator: what uses it.
        approx_size: human size of the official file.
    """

    name: str
    annotator: str
    approx_size: str


ANNOTATOR_FILES: dict[str, AnnotatorFile] = {
    f.name: f
    for f in (
        AnnotatorFile("ControlNetHED.pth", "HED soft edges, fake scribble", "29 MB"),
        AnnotatorFile("table5_pidinet.pth", "PiDiNet soft edges", "3 MB"),
        AnnotatorFile("mlsd_large_512_fp32.pth", "M-LSD straight lines", "6 MB"),
        AnnotatorFile("sk_model.pth", "lineart (fine)", "17 MB"),
        AnnotatorFile("sk_model2.pth", "lineart (coarse)", "17 MB"),
        AnnotatorFile("netG.pth", "lineart anime", "218 MB"),
        AnnotatorFile("dpt_hybrid-midas-501f0c75.pt", "MiDaS depth and normals", "493 MB"),
        AnnotatorFile("scannet.pt", "NormalBAE normals", "292 MB"),
        AnnotatorFile("body_pose_model.pth", "OpenPose body", "209 MB"),
        AnnotatorFile("hand_pose_model.pth", "OpenPose hands", "147 MB"),
        AnnotatorFile("facenet.pth", "OpenPose face", "154 MB"),
    )
}


def missing_file_error(name: str, folders: list[str]) -> AnnotatorWeightsError:
    """The error for an official file that is not in any annotator folder."""
    info = ANNOTATOR_FILES.get(name)
    what = f" ({info.annotator}, about {info.approx_size})" if info else ""
    where = ", ".join(folders) or "ComfyUI/models/annotators"
    return AnnotatorWeightsError(
        f"annotator weights {name!r}{what} were not found in {where}. Download {name} from {SOURCE} "
        f"(file {SOURCE}/blob/main/{name}) and put it in one of those folders under that exact name; "
        "Affordance never downloads anything itself."
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
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise AnnotatorWeightsError(f"{path} is a damaged safetensors file ({exc}); download it again.") from exc
    try:
        with path.open("rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise AnnotatorWeightsError(
            f"{path} is a pickle that needs to run code to load; it was refused and nothing in it was executed "
            f"({str(exc).strip().splitlines()[0][:200]}). Use the official file from {SOURCE}."
        ) from exc
    except (EOFError, RuntimeError, zipfile.BadZipFile) as exc:
        raise AnnotatorWeightsError(f"{path} is truncated or damaged ({str(exc)[:200]}); download it again.") from exc


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


def load_annotator(path: str | Path, net: nn.Module, name: str | None = None) -> nn.Module:
    """Load an annotator file into ``net`` after checking every key and shape; returns ``net`` in eval mode.

    Raises:
        AnnotatorWeightsError: missing file, unsafe or damaged file, or a file of another annotator
            (named keys), e.g. a different file saved under an official name.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(name or path.name, [str(path.parent)])
    sd = unwrap_state_dict(_read(path), str(path))
    expected = net.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [k for k in sorted(set(sd) & set(expected)) if sd[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        expected_name = name or path.name
        parts = [
            f"{len(missing)} missing ({', '.join(missing[:4])})" if missing else "",
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])})" if unexpected else "",
            f"{len(wrong)} with other shapes ({', '.join(wrong[:4])})" if wrong else "",
        ]
        raise AnnotatorWeightsError(
            f"{path} does not hold the weights of {expected_name} ({'; '.join(p for p in parts if p)}). "
            f"It is another model or a damaged file; get {expected_name} from {SOURCE}."
        )
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

"""Learned annotators inside ComfyUI: weights from the ``annotators`` model folder, loaded once, managed.

The folder ``ComfyUI/models/annotators`` is registered on first use (paths from
``extra_model_paths.yaml`` under ``annotators:`` are kept). Each network is loaded once per file and
wrapped in a ``ModelPatcher``, so ComfyUI moves it to the GPU when needed and offloads it under memory
pressure. The node objects that use a network hold it (ComfyUI keeps node objects while their graph is
in use); the shared table only refers to it weakly, so once no node holds it ("free memory", a graph
without that node) its weights are released like ComfyUI's own models.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from torch import nn

from ..controlnet.checkpoint import file_identity
from ..preprocessors.weights import AnnotatorWeightsError, load_annotator, missing_file_error
from ._host import comfy_model_management, comfy_model_patcher, folder_paths, log, special_file

FOLDER = "annotators"
_CACHE: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()  # (path, file identity) -> patcher
_PINS = "_ast_annotators"  # attribute of the owning node object: {file name: patcher}
_LOCK = threading.Lock()
Net = TypeVar("Net", bound=nn.Module)  # annotator_model returns what its build makes


def annotator_folders() -> list[str]:
    """ComfyUI's annotator folders, registering ``models/annotators`` the first time."""
    fp = folder_paths()
    default = os.path.join(fp.models_dir, FOLDER)
    if FOLDER not in fp.folder_names_and_paths or default not in fp.get_folder_paths(FOLDER):
        fp.add_model_folder_path(FOLDER, default, is_default=FOLDER not in fp.folder_names_and_paths)
    return fp.get_folder_paths(FOLDER)


def annotator_path(name: str) -> str:
    """Full path of an official annotator file; a clear error naming folders and source when missing.

    A file directly in an annotator folder comes first; otherwise the least nested one of that name in their
    sub-folders (then the first by path), so a folder laid out as comfyui_controlnet_aux downloads them
    (``ckpts/lllyasviel/Annotators/<name>``) can be added as it is.
    """
    folders = annotator_folders()
    fp = folder_paths()
    for folder in folders:  # listed under the name, but a pipe or a device: reading it would hang or never end
        entry = os.path.join(folder, name)
        if kind := special_file(entry):
            raise AnnotatorWeightsError(f"{entry} is not a regular file ({kind}). Put the official {name} itself there.")
    path = fp.get_full_path(FOLDER, name)
    if path is None:
        nested = [  # (depth, relative name) of the files of that name below the folders
            (len(parts), rel)
            for rel in fp.get_filename_list(FOLDER)
            if (parts := rel.replace("\\", "/").split("/"))[-1] == name
        ]
        for _, rel in sorted(nested):
            if (path := fp.get_full_path(FOLDER, rel)) is not None:
                break
    if path is None:
        raise missing_file_error(name, [f"{f} (and its sub-folders)" for f in folders])
    return path


def annotator_fingerprint(names: Iterable[str]) -> str:
    """Which version of each file a node would read now: its path and identity, or ``-`` if it is missing.

    A node's ``IS_CHANGED``: ComfyUI re-runs a node only when its inputs or this answer change, so a file
    replaced, removed or added under its official name is noticed at the next run, not after a restart.
    """
    parts = []
    for name in names:
        try:
            path = annotator_path(name)
            st = os.stat(path)
        except (AnnotatorWeightsError, OSError):
            parts.append(f"{name}:-")
        else:
            parts.append(f"{path}:" + ":".join(map(str, file_identity(st))))
    return "|".join(parts)


def annotator_model(name: str, build: Callable[[], Net], owner: Any = None) -> Net:
    """The network of ``name`` on ComfyUI's device, loaded once and kept under model management.

    Half precision on GPUs that support it; the same file is never read twice while unchanged and held.
    ``owner`` (the node object) keeps the network alive; without one it lives only as long as the caller
    keeps the returned network or another owner holds it.
    """
    path = annotator_path(name)
    stat = os.stat(path)
    key = (path, *file_identity(stat))
    mm = comfy_model_management()
    with _LOCK:
        patcher = _CACHE.get(key)
        if patcher is None:
            for old in [k for k in _CACHE if k[0] == path]:
                _CACHE.pop(old, None)  # the file changed on disk (a weak entry may also vanish meanwhile)
            net = load_annotator(path, build(), name)
            device = mm.get_torch_device()
            if mm.should_use_fp16(device):
                net = net.half()
            patcher = comfy_model_patcher().ModelPatcher(
                net, load_device=device, offload_device=mm.unet_offload_device()
            )
            _CACHE[key] = patcher
            log.info("loaded annotator %s (%s) from %s", name, type(net).__name__, path)
        if owner is not None:
            owner.__dict__.setdefault(_PINS, {})[name] = patcher
    mm.load_models_gpu([patcher])
    return patcher.model


def clear_cache() -> None:
    """Forget loaded annotators (tests, or after replacing files)."""
    with _LOCK:
        _CACHE.clear()

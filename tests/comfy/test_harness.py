"""With ComfyUI's root on sys.path, our package still imports as ``affordance`` from this repository."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfy


def test_comfyui_root_is_on_sys_path(comfy):
    assert str(comfy.path.resolve()) in sys.path
    assert Path(comfy.cldm.__file__).resolve().is_relative_to(comfy.path.resolve())


def test_affordance_imports_from_the_repository(comfy, repo_root):
    controlnet = importlib.import_module("affordance.controlnet")
    assert Path(controlnet.__file__).resolve() == repo_root / "controlnet" / "__init__.py"
    # ComfyUI's top-level `nodes` is ComfyUI's; ours is only reachable as `affordance.nodes`.
    top = importlib.util.find_spec("nodes")
    assert top is not None and top.origin is not None
    assert Path(top.origin).resolve() == comfy.path.resolve() / "nodes.py"
    ours = importlib.util.find_spec("affordance.nodes")
    assert ours is not None
    where = [ours.origin] if ours.origin else list(ours.submodule_search_locations or [])
    assert where and all(Path(w).resolve().is_relative_to(repo_root / "nodes") for w in where)

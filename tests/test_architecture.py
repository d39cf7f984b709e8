"""Layering and safety rules, checked on the source (AST), so a violation fails CI with its location."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "server", "nodes", "node_helpers"}
CORE = ("controlnet", "preprocessors")
PACKAGE_DIRS = ("controlnet", "preprocessors", "nodes")


def _package_files() -> list[Path]:
    files = [ROOT / "__init__.py", ROOT / "__main__.py", ROOT / "install.py"]
    for d in PACKAGE_DIRS:
        files += sorted((ROOT / d).rglob("*.py"))
    return files


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(level, module, line) of every import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(0, a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or "", node.lineno))
    return out


@pytest.mark.parametrize("layer", CORE)
def test_core_layers_do_not_import_host_or_siblings(layer):
    for path in (ROOT / layer).rglob("*.py"):
        rel = path.relative_to(ROOT)
        depth = len(path.relative_to(ROOT / layer).parts)
        for level, name, line in _imports(path):
            top = name.split(".")[0]
            if level == 0:
                assert top not in HOST, f"{rel}:{line} imports host module {name!r}"
                assert top not in CORE + ("affordance",), f"{rel}:{line}: use relative imports, not {name!r}"
            elif level >= depth + 1:
                assert top not in CORE + ("nodes",), f"{rel}:{line} imports another layer ({'.' * level}{name})"


def test_package_never_imports_itself_absolutely():
    for path in _package_files():
        for level, name, line in _imports(path):
            if level == 0:
                top = name.split(".")[0]
                assert top not in ("affordance", *PACKAGE_DIRS), f"{path.relative_to(ROOT)}:{line} imports {name!r}"


def test_no_sys_path_edits():
    for path in _package_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "path":
                if isinstance(node.value, ast.Name) and node.value.id == "sys":
                    pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno} touches sys.path")


def test_torch_load_is_always_weights_only():
    for path in _package_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                if isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    kw = {k.arg: k.value for k in node.keywords}
                    ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                    assert ok, f"{path.relative_to(ROOT)}:{node.lineno} calls torch.load without weights_only=True"


def test_no_print_in_package():
    for path in _package_files():
        if path.name == "install.py":  # ComfyUI-Manager shows install.py's stdout to the user
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno} prints; use logging")


def test_repo_root_not_on_sys_path():
    assert ROOT not in {Path(p or ".").resolve() for p in sys.path}


def test_top_level_nodes_is_not_ours():
    spec = importlib.util.find_spec("nodes")
    assert spec is None or not str(spec.origin).startswith(str(ROOT))

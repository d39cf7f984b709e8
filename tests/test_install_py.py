"""install.py's failure paths (a missing or too-old dependency): each problem names its fix and main() exits 1, so
ComfyUI-Manager sees the failure. test_packaging runs install.py where everything imports; these fake the imports
and the installed versions."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _install(monkeypatch, missing=(), versions=None):
    """install.py loaded fresh, ``missing`` import names failing, ``versions`` overriding installed versions."""
    spec = importlib.util.spec_from_file_location("_affordance_install", ROOT / "install.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    real_import, real_version = importlib.import_module, importlib.metadata.version

    def fake_import(name, *a, **k):
        if name in missing:
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real_import(name, *a, **k)

    def fake_version(dist):
        if versions and dist in versions:
            if versions[dist] is None:
                raise importlib.metadata.PackageNotFoundError(dist)
            return versions[dist]
        return real_version(dist)

    monkeypatch.setattr(mod.importlib, "import_module", fake_import)
    monkeypatch.setattr(mod.importlib.metadata, "version", fake_version)
    return mod


def test_all_present_is_no_problem(monkeypatch):
    assert _install(monkeypatch).check() == []


def test_lower_bounds_are_read_from_requirements(monkeypatch):
    bounds = _install(monkeypatch)._lower_bounds()
    assert bounds["einops"] == "0.7" and bounds["kornia"] == "0.7.1" and bounds["torch"] == "2.4"


def test_a_missing_dependency_is_named_with_its_pip_command(monkeypatch, capsys):
    mod = _install(monkeypatch, missing={"einops"})
    problems = mod.check()
    assert len(problems) == 1
    assert problems[0].startswith("einops does not import (ModuleNotFoundError: No module named 'einops')")
    assert problems[0].endswith(f"Fix: \"{sys.executable}\" -m pip install 'einops>=0.7'")
    assert mod.main() == 1
    out = capsys.readouterr().out
    assert "some dependencies are missing or too old" in out and "  - einops does not import" in out


def test_missing_torch_is_never_pip_installed(monkeypatch):
    (problem,) = _install(monkeypatch, missing={"torch"}).check()
    assert problem.startswith("PyTorch does not import (ModuleNotFoundError") and "pip" not in problem


@pytest.mark.parametrize(
    ("installed", "old"), [("0.6.9", True), ("0.7.0", True), ("0.7.1", False), ("0.10.0", False), ("1.0", False)]
)
def test_a_too_old_version_is_reported_numerically(monkeypatch, installed, old):
    problems = _install(monkeypatch, versions={"kornia": installed}).check()
    if old:
        assert problems == [
            f"kornia {installed} is older than the 0.7.1 Affordance needs. "
            f"Fix: \"{sys.executable}\" -m pip install --upgrade 'kornia>=0.7.1'"
        ]
    else:
        assert problems == []


def test_an_old_torch_is_upgraded_as_comfyuis_readme_says(monkeypatch):
    (problem,) = _install(monkeypatch, versions={"torch": "2.3.1+cu121"}).check()
    assert (
        problem
        == "torch 2.3.1+cu121 is older than the 2.4 Affordance needs. Fix: upgrade PyTorch following ComfyUI's README"
    )


def test_any_opencv_variant_counts(monkeypatch):
    versions = {"opencv-python": None, "opencv-python-headless": "4.7.0", "opencv-contrib-python": None}
    (problem,) = _install(monkeypatch, versions=versions).check()
    assert problem.startswith("opencv-python 4.7.0 is older than the 4.8")

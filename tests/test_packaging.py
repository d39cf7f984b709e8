"""Packaging: light root, declared dependencies, install.py, CI and README commands."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = {"torch", "safetensors", "numpy", "opencv-python", "einops", "kornia", "pillow"}


def _names(specs: list[str]) -> dict[str, str]:
    out = {}
    for s in specs:
        m = re.match(r"^([A-Za-z0-9_.-]+)(.*)$", s.strip())
        assert m, s
        out[m.group(1).lower()] = m.group(2).strip()
    return out


def test_requirements_are_the_seven_with_lower_bounds_only():
    lines = [ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    reqs = _names(lines)
    assert set(reqs) == RUNTIME
    for name, spec in reqs.items():
        assert spec.startswith(">=") and "<" not in spec and "==" not in spec, f"{name}{spec} must be a lower bound"


def test_pyproject_dependencies_match_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = _names(project["project"]["dependencies"])
    reqs = _names([ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.strip()])
    assert deps == reqs
    assert "requires-comfyui" in project["tool"]["comfy"]
    assert "--import-mode=importlib" in project["tool"]["pytest"]["ini_options"]["addopts"]


def test_oldest_pins_are_the_lower_bounds():
    """``.ci/test-oldest`` tests what requirements.txt promises: each dependency exactly at its lower bound, and the
    test extra's tools it installs at or above theirs."""
    from packaging.version import Version

    pins = {}
    for line in (ROOT / ".ci" / "oldest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.split(";")[0].partition("==")
            pins[name.strip().lower()] = Version(version.strip())
    reqs = _names([ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.strip()])
    assert RUNTIME <= set(pins)
    for name, spec in reqs.items():  # equal to the patch number (opencv-python adds a build number after it)
        pinned, bound = (tuple(v.release[:3]) + (0,) * (3 - len(v.release[:3])) for v in (pins[name], Version(spec[2:])))
        assert pinned == bound, f"{name}: pinned {pins[name]}, lower bound {spec}"
    extra = _names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"])
    for name, version in pins.items():
        if name in extra:
            assert version >= Version(extra[name].split(";")[0].strip().removeprefix(">=")), name


def test_install_py_uses_stdlib_only_and_checks_every_requirement():
    tree = ast.parse((ROOT / "install.py").read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}, mods
    required = next(
        n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "REQUIRED"
    )
    assert {ast.literal_eval(v) for v in required.values} == RUNTIME
    source = (ROOT / "install.py").read_text()
    assert "pip install" in source and "subprocess" not in source and "urllib" not in source


def test_install_py_reports_and_fixes(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "install.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all dependencies import" in proc.stdout


def _load_root_like_comfyui(code: str) -> subprocess.CompletedProcess:
    """Import the root as ComfyUI does (a path-derived module name), in a clean interpreter."""
    script = f"""
import importlib.util, sys
name = {str(ROOT)!r}.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, {str(ROOT / "__init__.py")!r}, submodule_search_locations=[{str(ROOT)!r}])
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
{code}
"""
    python = [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]  # -P: Python 3.11+
    return subprocess.run([*python, "-c", script], capture_output=True, text=True, cwd="/")


def test_root_import_is_light():
    proc = _load_root_like_comfyui(
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'comfy', 'cv2', 'kornia', 'numpy'))\n"
        "assert not heavy, heavy\nassert module.WEB_DIRECTORY == './web/js'\nprint('ok')"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_node_mappings_without_comfyui():
    proc = _load_root_like_comfyui(
        "m = module.NODE_CLASS_MAPPINGS\nd = module.NODE_DISPLAY_NAME_MAPPINGS\n"
        "assert all(k.startswith('AST_') for k in m), list(m)\nassert set(d) <= set(m)\n"
        "assert not any(x.split('.')[0] in ('comfy', 'folder_paths', 'server') for x in sys.modules)\nprint(len(m))"
    )
    assert proc.returncode == 0, proc.stderr


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    run = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/test" in readme and "bash .ci/main" in readme
    assert re.search(r"^exec bash \.ci/test$", run, re.M)
    test = (ROOT / ".ci" / "test").read_text()
    assert "exit 1" in test and '"$rc" -eq 5' in test and ".venv-ref/bin/pytest tests/reference" in test


def _package_dirs() -> set[str]:
    """Every folder of the pack's code (the root, controlnet/, preprocessors/, nodes/ and below) with an __init__.py."""
    out = {"affordance"}
    for top in ("controlnet", "preprocessors", "nodes"):
        for init in (ROOT / top).rglob("__init__.py"):
            out.add(".".join(("affordance", *init.parent.relative_to(ROOT).parts)))
    return out


def test_pyproject_lists_every_package_of_the_pack():
    """setuptools installs only the packages listed (the root is mapped to `affordance`, so nothing is found
    automatically): a sub-package left out is missing from a wheel or a plain `pip install .`."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert listed == _package_dirs()


def test_wheel_holds_every_module(tmp_path):
    """A real wheel build (pip, isolated like any install) carries every Python file of the pack's code."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("affordance-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {"affordance/__init__.py", "affordance/__main__.py"}
    for top in ("controlnet", "preprocessors", "nodes"):
        want |= {f"affordance/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / top).rglob("*.py")}
    assert want - names == set()

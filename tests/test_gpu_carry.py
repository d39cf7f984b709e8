"""bench/gpu_carry.sh, which prepares the folders the GPU run carries, on a fake ComfyUI tree and with a fake
pip (the real one downloads from PyPI): what is copied, what is left out, the wheels asked for, the size check."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")


def _repo(tmp_path: Path) -> Path:
    """A git checkout holding the script (it works in the repository it lives in)."""
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "gpu_carry.sh", repo / "bench" / "gpu_carry.sh")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "bench"], check=True)
    return repo


def _comfy(tmp_path: Path) -> Path:
    src = tmp_path / "ComfyUI"
    for rel in ("comfy/controlnet.py", "comfy/__pycache__/x.pyc", "nodes.py", "models/controlnet/big.safetensors",
                "output/img.png", "custom_nodes/other/__init__.py", ".git/HEAD", "tests/t.py", "comfy_extras/n.py"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x" * 10)
    return src


def _packed(repo: Path, folders: bool = False) -> set[str]:
    """The files (or with ``folders``, the folders) in .comfy/ComfyUI.tar.gz; asserts it is all .comfy holds."""
    assert [p.name for p in (repo / ".comfy").iterdir()] == ["ComfyUI.tar.gz"]
    with tarfile.open(repo / ".comfy" / "ComfyUI.tar.gz") as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers() if (m.isdir() if folders else m.isfile())}


def _fake_pip(tmp_path: Path) -> str:
    """A pip that records its arguments and writes one file per requirement into the -d folder: 100 bytes, or
    FAKE_AV_BYTES for PyAV; with FAKE_AV_FAIL set it fails for PyAV (no wheel for that platform, no network)."""
    pip = tmp_path / "pip.sh"
    pip.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$@" >> {tmp_path}/pip-args\n'
        'while [ $# -gt 0 ]; do case $1 in -d) d=$2; shift 2;; *==*) n=${1%%==*}; size=100; '
        'if [ "$n" = av ]; then [ -n "${FAKE_AV_FAIL:-}" ] && exit 1; size=${FAKE_AV_BYTES:-100}; fi; '
        'head -c "$size" /dev/zero > "$d/$n.whl"; shift;; *) shift;; esac; done\n'
    )
    pip.chmod(0o755)
    return str(pip)


def _run(repo: Path, *args: str, pip: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP": pip, **env_vars}
    env.pop("COMFYUI_PATH", None)
    return subprocess.run(["bash", str(repo / "bench" / "gpu_carry.sh"), *args], capture_output=True, text=True, env=env)


def test_copies_the_python_tree_and_fetches_the_wheels(tmp_path):
    repo, src = _repo(tmp_path), _comfy(tmp_path)
    (src / "comfy" / "vocab.json").write_bytes(bytes(40 << 20))  # like its tokenizer files: packed, next to nothing
    proc = _run(repo, str(src), pip=_fake_pip(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert _packed(repo) == {"comfy/controlnet.py", "comfy/vocab.json", "nodes.py", "comfy_extras/n.py"}
    assert {"models", "custom_nodes", "input", "output", "temp"} <= _packed(repo, folders=True)  # empty, as ComfyUI wants them
    assert sorted(p.name for p in (repo / ".whl").iterdir()) == [
        "av.whl", "diffusers.whl", "importlib_metadata.whl", "torchsde.whl", "trampoline.whl", "zipp.whl"
    ]
    calls = (tmp_path / "pip-args").read_text().splitlines()
    assert len(calls) == 2  # the wheels the run needs, then PyAV on its own
    for args in calls:
        assert "--python-version 3.12" in args and "--only-binary=:all:" in args and "--no-deps" in args
    assert "av==" in calls[1] and "av==" not in calls[0]
    assert "carry: 0 MiB" in proc.stdout and "left out" not in proc.stdout
    assert not any("comfy-" in c for c in calls)  # a ComfyUI before 0.12 pins neither comfy-aimdo nor comfy-kitchen


def test_a_comfyui_0_12_gets_the_comfy_aimdo_and_comfy_kitchen_it_pins(tmp_path):
    """ComfyUI 0.12+ imports both: the versions its requirements.txt pins, comfy-kitchen as its pure-Python wheel
    (the platform one is about 56 MiB), or the platform one where pip finds no pure one."""
    repo, src = _repo(tmp_path), _comfy(tmp_path)
    (src / "requirements.txt").write_text("torch\ncomfy-kitchen==0.2.31\ncomfy-aimdo==0.4.13  # its loader\nav>=16.0.0\n")
    proc = _run(repo, str(src), pip=_fake_pip(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "requirements.txt" in _packed(repo)
    calls = (tmp_path / "pip-args").read_text().splitlines()
    assert "comfy-aimdo==0.4.13" in calls[0] and "--platform manylinux_2_28_x86_64" in calls[0]
    assert calls[1].endswith("comfy-kitchen==0.2.31") and "--platform any" in calls[1] and "manylinux" not in calls[1]
    assert {"comfy-aimdo.whl", "comfy-kitchen.whl"} <= {p.name for p in (repo / ".whl").iterdir()}
    # no pure-Python wheel of that comfy-kitchen: the platform one
    pip = tmp_path / "pip-no-pure.sh"
    pip.write_text(f'#!/usr/bin/env bash\n[[ "$*" == *"--platform any -d"*"comfy-kitchen"* && "$*" != *manylinux* ]] && exit 1\nexec {_fake_pip(tmp_path)} "$@"\n')
    pip.chmod(0o755)
    (tmp_path / "pip-args").unlink()
    proc = _run(repo, str(src), pip=str(pip))
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "pip-args").read_text().splitlines()
    assert "comfy-kitchen==0.2.31" in calls[1] and "manylinux_2_28_x86_64" in calls[1]
    assert (repo / ".whl" / "comfy-kitchen.whl").exists()


def test_leaves_pyav_out_where_it_would_pass_the_carry_limit(tmp_path):
    """PyAV (about 33 MiB) only lets ComfyUI's nodes.py import: without it the run still works, so it is dropped
    with a line saying so when the folders and the tree would reach 64 MiB with it, and the rest is carried."""
    repo, src = _repo(tmp_path), _comfy(tmp_path)
    (src / "comfy" / "big.bin").write_bytes(os.urandom(30 << 20))  # a ComfyUI tree of 30 MiB, packed as much
    proc = _run(repo, str(src), pip=_fake_pip(tmp_path), FAKE_AV_BYTES=str(34 << 20))
    assert proc.returncode == 0, proc.stderr
    assert "left out av==" in proc.stdout and "(34 MiB)" in proc.stdout and "apply_control" in proc.stdout
    assert "av.whl" not in {p.name for p in (repo / ".whl").iterdir()}
    assert "carry: 30 MiB" in proc.stdout
    # the same PyAV beside a small tree fits (just under the limit)
    (src / "comfy" / "big.bin").write_bytes(os.urandom(29 << 20))
    proc = _run(repo, str(src), pip=_fake_pip(tmp_path), FAKE_AV_BYTES=str(34 << 20))
    assert proc.returncode == 0 and "left out" not in proc.stdout, proc.stdout
    assert (repo / ".whl" / "av.whl").stat().st_size == 34 << 20 and "carry: 63 MiB" in proc.stdout


def test_a_pyav_download_that_fails_is_left_out_with_a_line(tmp_path):
    repo, src = _repo(tmp_path), _comfy(tmp_path)
    proc = _run(repo, str(src), pip=_fake_pip(tmp_path), FAKE_AV_FAIL="1")
    assert proc.returncode == 0, proc.stderr
    assert "left out av==" in proc.stdout and "could not download" in proc.stdout
    assert "av.whl" not in {p.name for p in (repo / ".whl").iterdir()} and (repo / ".whl" / "diffusers.whl").exists()


def test_refuses_a_folder_that_is_not_comfyui(tmp_path):
    repo = _repo(tmp_path)
    proc = _run(repo, str(tmp_path), pip=_fake_pip(tmp_path))
    assert proc.returncode == 2 and "comfy/controlnet.py" in proc.stderr and str(tmp_path) in proc.stderr
    assert not (repo / ".comfy").exists()


def test_says_when_the_folders_exceed_the_carry_limit(tmp_path):
    repo, src = _repo(tmp_path), _comfy(tmp_path)
    (src / "comfy" / "huge.bin").write_bytes(os.urandom(65 << 20))  # a file the copy keeps, over 64 MiB packed
    proc = _run(repo, str(src), pip=_fake_pip(tmp_path))
    assert proc.returncode == 1 and "too big for the device tool's carry limit" in proc.stderr

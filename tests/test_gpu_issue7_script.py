"""bench/gpu_issue7.sh, the one command a lent GPU machine runs (15 minutes of device time per session, often one
try): its steps, their arguments and order, a failing step, the time left for the compile step, the carried
wheels, and what comes back (the device tool returns at most 8 files from $OUT, with plain names). Run here with
stand-ins for `python3` and `nvidia-smi` that record how they were called; the benchmarks themselves have their
own tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and coreutils' timeout"
)

# a python3 that logs each call (arguments, PYTHONPATH, allocator setting) and prints a line naming it; a call
# whose arguments contain $FAIL exits 3
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "CALL $* | PYTHONPATH=${PYTHONPATH:-} | ALLOC=${PYTORCH_CUDA_ALLOC_CONF:-}" >> "$LOG"
echo "fake python3 ran: $*"
if [ "$1" = "-m" ] && [ "$2" = "pip" ] && [ -n "${PIP_FAIL:-}" ]; then exit 1; fi
if [ -n "${FAIL:-}" ] && [[ "$*" == *"$FAIL"* ]]; then echo "Traceback: failed on purpose" >&2; exit 3; fi
exit 0
"""


def _machine(tmp_path: Path, smi: bool = True, wheels: bool = True) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "gpu_issue7.sh", repo / "bench" / "gpu_issue7.sh")
    if wheels:
        (repo / ".whl").mkdir()
        (repo / ".whl" / "diffusers-0.42.1-py3-none-any.whl").write_bytes(b"x")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    if smi:
        (bin_dir / "nvidia-smi").write_text("#!/usr/bin/env bash\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    # only the stand-ins and the basic tools: no real python3 or nvidia-smi can be reached
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "timeout", "mkdir", "ln", "ls", "tail", "cat", "env", "sleep", "rm", "tar", "gzip"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    env = {
        "PATH": f"{bin_dir}:{tools}",
        "LOG": str(tmp_path / "calls.log"),
        "OUT": str(tmp_path / "out"),
        "SITE": str(tmp_path / "site"),
        "LINKS": str(tmp_path / "links"),
        "HOME": str(tmp_path),
    }
    return repo, env


def _run(repo: Path, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "bench/gpu_issue7.sh"], cwd=repo, env={**env, **extra}, capture_output=True, text=True, timeout=120
    )


def _calls(env: dict[str, str]) -> list[str]:
    return Path(env["LOG"]).read_text().splitlines()


def _steps(calls: list[str]) -> list[str]:
    """The script a call ran (``bench/x.py``), or ``pytest`` / ``pip``."""
    names = []
    for c in calls:
        args = c.split(" | ")[0]
        m = re.search(r"bench/\w+\.py", args)
        names.append(m.group(0) if m else "pytest" if "-m pytest" in args else "pip" if "-m pip" in args else args)
    return names


def test_runs_every_step_in_order_with_its_arguments_and_returns_at_most_8_plain_files(tmp_path):
    repo, env = _machine(tmp_path)
    proc = _run(repo, env, CALL_S="100000", SPEED_ARGS="--xl-size 0", REUSE_ARGS="--steps 6")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = _calls(env)
    assert _steps(calls) == [
        "pip", "pytest", "pytest", "bench/bench_speed.py", "bench/profile_forward.py", "bench/profile_forward.py",
        "bench/bench_reuse.py", "bench/bench_speed.py", "bench/bench_speed.py",
    ]
    pip, tests, tests_async, speed, sd15, sdxl, reuse, dynamic, compiled = calls
    assert "--no-index --no-deps" in pip and f"--target {env['SITE']}" in pip and ".whl/diffusers-0.42.1" in pip
    assert "-m gpu" in tests and tests.endswith("ALLOC=") and "ALLOC=backend:cudaMallocAsync" in tests_async
    for step in (tests, tests_async):
        assert "tests/unit/controlnet/test_graphs.py" in step and step.startswith("CALL -P -m pytest")
    assert "--comfyui .comfy --runs 2 --comfy-dynamic-vram off --xl-size 0" in speed
    # the sampling part again under ComfyUI's dynamic VRAM, its output after the first in speed.txt
    assert "--comfyui .comfy --runs 2 --xl-size 0 --parts sampling --variants none --comfy-dynamic-vram auto" in dynamic
    assert "== speed-dynamic (limit 150s)" in proc.stdout
    text = (Path(env["OUT"]) / "speed.txt").read_text()
    assert text.index("--comfy-dynamic-vram off") < text.index("== speed-dynamic") < text.index("fake python3 ran: -P bench/bench_speed.py --comfyui .comfy --runs 2 --xl-size 0 --parts sampling")
    assert "--family sd15 --channels-last" in sd15 and "--family sdxl --channels-last" in sdxl
    assert "bench/bench_reuse.py --steps 6" in reuse
    assert "--parts forward --xl-size 0 --compile inductor --no-diffusers --rounds 3 --calls 10" in compiled
    # every benchmark imports the pack through the link, and finds the carried wheels after it
    link = Path(env["LINKS"]) / "affordance"
    assert link.is_symlink() and link.resolve() == repo.resolve()
    for c in calls[1:]:
        assert f"PYTHONPATH={env['LINKS']}:{env['SITE']} " in c
    out = Path(env["OUT"])
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(
        f"{n}.txt" for n in ("gpu", "gpu-tests", "gpu-tests-async", "speed", "profile-sd15", "profile-sdxl", "reuse",
                             "compile")
    )
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)  # what the tool returns
    assert all(p.is_file() for p in out.iterdir())
    assert "NVIDIA H100" in (out / "gpu.txt").read_text()
    assert "fake python3 ran: -P bench/bench_reuse.py --steps 6" in (out / "reuse.txt").read_text()
    assert "== speed (limit 300s)" in proc.stdout and "exit" not in proc.stdout


def test_a_failing_step_is_reported_and_the_next_steps_still_run(tmp_path):
    repo, env = _machine(tmp_path)
    proc = _run(repo, env, CALL_S="100000", FAIL="--family sd15")
    assert proc.returncode == 1
    assert "== profile-sd15: exit 3" in proc.stdout and "Traceback: failed on purpose" in proc.stdout
    steps = _steps(_calls(env))
    assert steps[-4:] == ["bench/profile_forward.py", "bench/bench_reuse.py", "bench/bench_speed.py", "bench/bench_speed.py"]
    assert "Traceback: failed on purpose" in (Path(env["OUT"]) / "profile-sd15.txt").read_text()


def test_the_compile_step_runs_only_with_two_minutes_of_the_call_left(tmp_path):
    repo, env = _machine(tmp_path)
    proc = _run(repo, env, CALL_S="119")
    assert proc.returncode == 0
    assert "== compile: skipped" in proc.stdout and "of the call's 119s" in proc.stdout
    limit = re.search(r"== speed-dynamic \(limit (\d+)s\)", proc.stdout)  # one minute is enough for it
    assert limit and 109 <= int(limit.group(1)) <= 119  # the rest of the call, not more
    assert _steps(_calls(env)).count("bench/bench_speed.py") == 2
    assert not (Path(env["OUT"]) / "compile.txt").exists()
    repo, env = _machine(tmp_path / "again")
    proc = _run(repo, env, CALL_S="400")
    assert "== speed-dynamic (limit 150s)" in proc.stdout  # at most 150 s
    limit = re.search(r"== compile \(limit (\d+)s\)", proc.stdout)
    assert limit and 390 <= int(limit.group(1)) <= 400  # the rest of the call, not more
    repo, env = _machine(tmp_path / "short")
    proc = _run(repo, env, CALL_S="59")
    assert "== speed-dynamic: skipped, " in proc.stdout and "of the call's 59s" in proc.stdout
    assert _steps(_calls(env)).count("bench/bench_speed.py") == 1


def test_runs_without_carried_wheels_and_without_nvidia_smi(tmp_path):
    repo, env = _machine(tmp_path, smi=False, wheels=False)
    proc = _run(repo, env, CALL_S="0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = _calls(env)
    assert "pip" not in _steps(calls)
    assert all(f"PYTHONPATH={env['LINKS']} " in c for c in calls)  # no site folder on the path
    assert "nvidia-smi failed: no NVIDIA GPU here?" in (Path(env["OUT"]) / "gpu.txt").read_text()


def test_a_failed_wheel_install_is_reported(tmp_path):
    repo, env = _machine(tmp_path)
    proc = _run(repo, env, CALL_S="0", PIP_FAIL="1")
    assert proc.returncode == 1
    assert "installing the carried wheels (.whl) failed" in proc.stdout
    assert _steps(_calls(env))[1:] == ["pytest", "pytest", "bench/bench_speed.py", "bench/profile_forward.py",
                                       "bench/profile_forward.py", "bench/bench_reuse.py"]


def test_comfyui_path_replaces_the_carried_tree(tmp_path):
    repo, env = _machine(tmp_path)
    _run(repo, env, CALL_S="100000", COMFYUI_PATH="/opt/ComfyUI")
    speeds = [c for c in _calls(env) if "bench/bench_speed.py" in c]
    assert len(speeds) == 3 and all("--comfyui /opt/ComfyUI " in c for c in speeds)


def test_a_packed_comfyui_is_unpacked_and_used(tmp_path):
    """bench/gpu_carry.sh packs ComfyUI as .comfy/ComfyUI.tar.gz: unpacked to COMFY_DIR, every ComfyUI step uses it;
    one that does not unpack is reported and the rest still runs."""
    repo, env = _machine(tmp_path)
    tree = tmp_path / "tree"
    (tree / "comfy").mkdir(parents=True)
    (tree / "comfy" / "controlnet.py").write_text("# ComfyUI\n")
    (repo / ".comfy").mkdir()
    subprocess.run(["tar", "-C", str(tree), "-czf", str(repo / ".comfy" / "ComfyUI.tar.gz"), "."], check=True)
    unpacked = tmp_path / "comfyui"
    (unpacked / "stale").mkdir(parents=True)  # from an earlier call: replaced
    proc = _run(repo, env, CALL_S="100000", COMFY_DIR=str(unpacked))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (unpacked / "comfy" / "controlnet.py").read_text() == "# ComfyUI\n" and not (unpacked / "stale").exists()
    speeds = [c for c in _calls(env) if "bench/bench_speed.py" in c]
    assert len(speeds) == 3 and all(f"--comfyui {unpacked} " in c for c in speeds)
    repo, env = _machine(tmp_path / "broken")
    (repo / ".comfy").mkdir()
    (repo / ".comfy" / "ComfyUI.tar.gz").write_bytes(b"not a tar file")
    proc = _run(repo, env, CALL_S="0", COMFY_DIR=str(tmp_path / "broken-comfyui"))
    assert proc.returncode == 1 and "unpacking the carried ComfyUI (.comfy/ComfyUI.tar.gz) failed" in proc.stdout
    assert _steps(_calls(env))[-1] == "bench/bench_reuse.py"  # every step still ran


def test_the_step_limits_add_up_to_less_than_a_device_call():
    """Each `step NAME LIMIT` plus the compile step's share must end inside one device call (600 s at most)."""
    text = (ROOT / "bench" / "gpu_issue7.sh").read_text()
    limits = [int(m) for m in re.findall(r"^step [\w-]+ (\d+) ", text, flags=re.M)]
    assert len(limits) == 6 and sum(limits) <= 590
    assert re.search(r"\$\{CALL_S:-(\d+)\}", text).group(1) == "580"

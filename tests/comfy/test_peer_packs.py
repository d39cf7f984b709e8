"""Our ControlNet under other node packs that drive ComfyUI's ControlNets: AnimateDiff-Evolved's sliding context,
Advanced-ControlNet's Apply node and chains with its ControlNets, Tiled Diffusion and Ultimate SD Upscale.

Opt-in: besides ``COMFYUI_PATH``, ``AFFORDANCE_PEER_PACKS`` must name a folder holding the packs' checkouts under
their repository names (``peer_packs/probe.py``'s ``PACKS``; Ultimate SD Upscale with its submodule filled); a
group whose packs are missing is skipped. The packs patch ComfyUI globally, so each group runs
``peer_packs/probe.py`` in a fresh interpreter, which loads the packs and this checkout through ComfyUI's own
``nodes.load_custom_node`` from a temporary ``custom_nodes`` folder of links and prints one JSON line; every check
in it compares two sampled results within a tolerance and shows that what it tests moves the result.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfy

PROBE = Path(__file__).resolve().parent / "peer_packs" / "probe.py"
_spec = importlib.util.spec_from_file_location("_affordance_peer_packs_probe", PROBE)
assert _spec is not None and _spec.loader is not None
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)  # only the standard library at import; ComfyUI is imported in the subprocess

TIMEOUT_S = 600


@pytest.fixture(scope="module")
def peer_packs() -> Path:
    path = os.environ.get("AFFORDANCE_PEER_PACKS")
    if not path:
        pytest.skip(
            "AFFORDANCE_PEER_PACKS is not set: it names a folder holding checkouts of "
            f"{', '.join(probe.PACKS)} (see README, 'Tests against a real ComfyUI')"
        )
    if not Path(path).is_dir():
        pytest.fail(f"AFFORDANCE_PEER_PACKS={path} is not a folder")
    return Path(path)


def _describe(check: dict) -> str:
    if "diff" in check:
        effects = ", ".join(f"{k} {v:.3g}" for k, v in check["effects"].items())
        return f"max|diff| {check['diff']:.3e} (tol {check['tol']:g}); effects {effects} (min {check['min_effect']:g})"
    return f"raised {check.get('error')!r}, expected {check.get('expected')}"


@pytest.mark.parametrize("group", sorted(probe.GROUPS))
def test_peer_pack(group: str, peer_packs: Path, comfyui_path: Path, python_cmd: list[str], request) -> None:
    missing = probe.missing_packs(peer_packs, group)
    if missing:
        pytest.skip(f"{peer_packs} lacks {', '.join(missing)} (a checkout with {probe.PACKS[missing[0]]})")
    if not (comfyui_path / "nodes.py").is_file():
        pytest.fail(f"COMFYUI_PATH={comfyui_path} is not a ComfyUI checkout (no nodes.py)")
    env = {**os.environ, "COMFYUI_PATH": str(comfyui_path), "AFFORDANCE_PEER_PACKS": str(peer_packs)}
    proc = subprocess.run(
        [*python_cmd, str(PROBE), group],
        env=env,
        cwd=str(probe.REPO),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(probe.MARK)]
    if not lines:
        pytest.fail(
            f"the probe wrote no result (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    result = json.loads(lines[-1][len(probe.MARK) :])
    assert "setup_error" not in result, f"setup failed: {result['setup_error']}\n{proc.stderr[-5000:]}"
    checks = result["checks"]
    request.node.user_properties.append(("peer_packs", result))
    report = "\n".join(f"{'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {_describe(c)}" for c in checks)
    assert checks, f"no checks ran\n{proc.stderr[-5000:]}"
    assert all(c["ok"] for c in checks), f"versions {result['versions']}\n{report}"
    assert proc.returncode == 0, f"exit {proc.returncode} although every check passed\n{proc.stderr[-5000:]}"

"""Smoke test of bench/profile_forward.py on the CPU (reduced SD1.5 architecture, one profiled call)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "profile_forward.py"


def test_profile_prints_eager_graph_and_channels_last(capsys):
    spec = importlib.util.spec_from_file_location("affordance_bench_profile", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        found = module.main(["--device", "cpu", "--calls", "1", "--top", "3", "--channels-last"])
    finally:
        del sys.modules[spec.name]
    out = capsys.readouterr().out
    assert set(found) == {"eager", "graph", "channels-last"}
    for figures in found.values():
        assert figures["device_ms"] > 0 and figures["launched"] > 0 and figures["wall_ms"] > 0
    assert "### graph requested (ran eagerly: no CUDA device)" in out
    assert "aten::" in out and "device: " in out

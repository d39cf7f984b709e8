"""Smoke test of bench/bench_zero_weights.py on the CPU (full SD1.5 architecture at 64 px, one round)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_zero_weights.py"


def test_patterns_agree_and_skipping_saves_time(capsys):
    spec = importlib.util.spec_from_file_location("affordance_bench_zero_weights", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        found = module.main(["--device", "cpu", "--size", "64", "--rounds", "1", "--threads", "1"])
    finally:
        del sys.modules[spec.name]
    out = capsys.readouterr().out
    assert set(found) == {"all", "shallow third", "all but the middle", "middle only", "every other"}
    assert "every pattern's computed residuals are bit-equal to the full forward's" in out

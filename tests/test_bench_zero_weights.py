"""Smoke test of bench/bench_zero_weights.py on the CPU (full SD1.5 architecture at 64 px, one round)."""

from __future__ import annotations

import re

import pytest

from affordance.bench import bench_zero_weights


def test_patterns_agree_and_computed_residuals_are_checked(capsys, keep_torch_threads):
    found = bench_zero_weights.main(["--device", "cpu", "--size", "64", "--rounds", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert set(found) == {"all", "shallow third", "all but the middle", "middle only", "every other"}
    assert "every pattern's computed residuals are bit-equal to the full forward's" in out
    assert "setup: sd15, batch 2, 64x64 px, float32, median of 1" in out
    assert re.search(r"^pattern +residuals +ms +x all  \(patterns interleaved per round\)$", out, flags=re.M), out
    rows = {m[0].strip(): m[1:] for m in re.findall(r"^(.+?) +(\d+) / (\d+) +([\d.]+) +([\d.]+)x$", out, flags=re.M)}
    assert set(rows) == set(found), out
    assert rows["all"][:2] == ("13", "13") and rows["shallow third"][:2] == ("4", "13")
    for name, (_computed, _total, ms, speedup) in rows.items():  # each pattern's ms, and how much faster than all
        assert float(ms) == pytest.approx(found[name], abs=0.005)
        assert float(speedup) == pytest.approx(found["all"] / found[name], abs=0.005)
    assert rows["all"][3] == "1.00"


def test_weight_patterns():
    """The timed patterns: 'shallow third' is exactly the first count // 3 residuals (SD1.5: 4 of 13)."""
    p = bench_zero_weights.patterns(13)
    assert p["shallow third"] == [True] * 4 + [False] * 9
    assert p["all but the middle"] == [True] * 12 + [False] and p["middle only"] == [False] * 12 + [True]
    assert sum(p["every other"]) == 7 and all(p["all"])

"""Smoke test of bench/bench_annotator_memory.py: two quick annotators and a weight-free hint at a small size,
each in its own process."""

from __future__ import annotations

import re
import sys

import pytest

from affordance.bench import bench_annotator_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_prints_a_positive_figure_per_hint(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_annotator_memory.py", "--sizes", "128", "--hints", "mlsd", "lineart_anime", "canny"])
    bench_annotator_memory.main()
    out = capsys.readouterr().out
    assert "failed" not in out, out
    rows = re.findall(r"^(mlsd|lineart_anime|canny)\s+128\s+\d+\s+(\d+)\s+[\d.]+$", out, re.MULTILINE)
    assert [r[0] for r in rows] == ["mlsd", "lineart_anime", "canny"], out
    assert all(int(r[1]) > 0 for r in rows[:2]), out  # canny's few small tensors may fit in memory already held
    assert "x1.25 =" in out and "device: " in out

"""Smoke test of bench/bench_resize_memory.py: every kind of hint, enlarged and shrunk at small sizes."""

from __future__ import annotations

import re
import sys

import pytest

from affordance.bench import bench_resize_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_prints_a_figure_per_kind_and_direction(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_resize_memory.py", "--small", "64", "--large", "256"])
    bench_resize_memory.main()
    out = capsys.readouterr().out
    assert "failed" not in out, out
    rows = re.findall(r"^(\w+)\s+(\d+)->(\d+)\s+\d+\s+([\d.]+)\s+(output|input)\s+[\d.]+$", out, re.MULTILINE)
    assert [(r[0], r[4]) for r in rows] == [(k, d) for k in bench_resize_memory.KINDS for d in ("output", "input")]
    assert "device: " in out


@pytest.mark.parametrize("kind", bench_resize_memory.KINDS)
def test_each_kind_is_what_resize_hint_tells_apart(kind):
    """The bench measures the four paths: its inputs must take them."""
    from affordance.preprocessors import geometry

    x = bench_resize_memory.make(kind, 128)
    low = -1.0 if kind == "inpaint" else 0.0  # an image's range; the inpaint hint marks its masked pixels -1
    assert x.shape == (1, 3, 128, 128) and x.min() >= low and x.max() <= 1
    assert geometry._is_inpaint_hint(x) is (kind == "inpaint")
    assert geometry._is_binary(x) is (kind == "binary")
    assert geometry._is_palette(x) is (kind == "palette")


def test_figures_are_mib_and_bytes_per_pixel_of_the_larger_side(monkeypatch, capsys):
    """Each row from its child's peak: MiB, bytes per pixel of the larger image, the seconds; a child that failed
    is printed with its reason in place of the figures."""
    runs = []

    def child(script, kind, src, dst):
        runs.append((kind, src, dst))
        return "failed: MemoryError" if src > dst else {"peak": 48 * 2**20, "seconds": 1.5}

    monkeypatch.setattr(bench_resize_memory.C, "peak_in_child", child)
    monkeypatch.setattr(bench_resize_memory.C, "require_peak_memory", lambda: None)
    monkeypatch.setattr(sys, "argv", ["bench_resize_memory.py", "--small", "64", "--large", "256", "--kinds", "binary"])
    bench_resize_memory.main()
    out = capsys.readouterr().out
    assert runs == [("binary", 64, 256), ("binary", 256, 64)]
    assert re.search(r"^binary +64->256 +48 +768\.0 +output +1\.5$", out, flags=re.M), out  # 48 MiB / 256**2 px
    assert re.search(r"^binary +256->64 +failed: MemoryError$", out, flags=re.M), out

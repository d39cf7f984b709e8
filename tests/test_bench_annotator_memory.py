"""Smoke test of bench/bench_annotator_memory.py: two quick annotators and a weight-free hint at a small size,
each in its own process."""

from __future__ import annotations

import re
import sys

import pytest
import torch

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


def test_report_figures_are_per_pixel_of_each_size_and_the_largest_per_hint(monkeypatch, capsys):
    """The table's arithmetic, from given child results: MiB, bytes per pixel of that size, the largest per
    hint over the sizes with its x1.25, and a failed child shown as such (not counted)."""
    peaks = {("mlsd", 128): 128 * 128 * 512, ("mlsd", 256): 256 * 256 * 384, ("canny", 128): "failed: ['boom']"}
    peaks[("canny", 256)] = 256 * 256 * 96
    asked = []

    def fake_child(script, hint, size):
        asked.append((hint, size))
        r = peaks[(hint, size)]
        return r if isinstance(r, str) else {"peak": r, "seconds": 0.25}

    checked = []
    monkeypatch.setattr(bench_annotator_memory.C, "require_peak_memory", lambda: checked.append(True))
    monkeypatch.setattr(bench_annotator_memory.C, "peak_in_child", fake_child)
    monkeypatch.setattr(sys, "argv", ["bench_annotator_memory.py", "--sizes", "128", "256", "--hints", "mlsd", "canny"])
    bench_annotator_memory.main()
    out = capsys.readouterr().out
    assert checked == [True] and asked == [("mlsd", 128), ("mlsd", 256), ("canny", 128), ("canny", 256)]
    table, largest = out.split("x1.25 (the nodes'")
    rows = [ln.split() for ln in table.splitlines() if ln.split()[:1] in (["mlsd"], ["canny"])]
    assert rows == [
        ["mlsd", "128", "8", "512", "0.2"],  # 8 MiB over 128 x 128 pixels
        ["mlsd", "256", "24", "384", "0.2"],
        ["canny", "128", "failed:", "['boom']"],
        ["canny", "256", "6", "96", "0.2"],
    ], out
    assert re.search(r"^\s+mlsd\s+512\s+x1\.25 =\s+640$", largest, re.MULTILINE), largest
    assert re.search(r"^\s+canny\s+96\s+x1\.25 =\s+120$", largest, re.MULTILINE), largest


def test_a_child_measures_one_rgb_image_at_its_own_size(monkeypatch):
    """The figure is per pixel of one image: the child runs the hint on a (1, 3, size, size) image in [0, 1] at
    resolution ``size``, inside report_peak."""
    seen = []

    def hint(x, resolution):
        seen.append((tuple(x.shape), x.dtype, float(x.min()), float(x.max()), resolution))
        return x

    monkeypatch.setitem(bench_annotator_memory.GALLERY, "canny", hint)
    monkeypatch.setattr(bench_annotator_memory.C, "report_peak", lambda call: call())
    bench_annotator_memory.child("canny", 96)
    assert len(seen) == 1
    shape, dtype, lo, hi, resolution = seen[0]
    assert shape == (1, 3, 96, 96) and dtype == torch.float32 and 0 <= lo < hi <= 1 and resolution == 96

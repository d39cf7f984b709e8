"""Smoke test of bench/bench_annotators.py (ours against controlnet-aux, reference environment only): HED on
one 64 px image, so the script keeps running where the GPU comparison will be made."""

from __future__ import annotations

from affordance.bench import bench_annotators


def test_hed_rates_and_ratio_are_printed(capsys):
    bench_annotators.main(["--device", "cpu", "--batch", "1", "--size", "64", "--rounds", "1", "--annotators", "hed"])
    out = capsys.readouterr().out
    row = next(ln.split() for ln in out.splitlines() if ln.split()[:1] == ["hed"])
    peers, ours, ratio = float(row[1]), float(row[2]), row[3]
    assert peers > 0 and ours > 0 and ratio.endswith("x"), row

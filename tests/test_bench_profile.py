"""Smoke test of bench/profile_forward.py on the CPU (reduced SD1.5 architecture, one profiled call)."""

from __future__ import annotations

from affordance.bench import profile_forward


def test_profile_prints_eager_graph_and_channels_last(capsys):
    found = profile_forward.main(["--device", "cpu", "--calls", "1", "--top", "3", "--channels-last"])
    out = capsys.readouterr().out
    assert set(found) == {"memory", "eager", "graph", "channels-last"}
    memory = found.pop("memory")
    assert memory["predicted_peak"] > memory["predicted_outputs"] > 0
    assert "measured: n/a (needs CUDA)" in out
    for figures in found.values():
        assert figures["device_ms"] > 0 and figures["launched"] > 0 and figures["wall_ms"] > 0
    assert "### graph requested (ran eagerly: no CUDA device)" in out
    assert "aten::" in out and "device: " in out

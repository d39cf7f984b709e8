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


def test_profiled_step_is_batch_2(monkeypatch, capsys):
    """profile_forward profiles a batch-2 step (cond + uncond), the batch of issue 7's targets, as its header says."""
    seen = []

    def spy(model, config, size, dtype, device, inputs):
        seen.append(tuple(t.shape[0] for t in inputs if t is not None))
        return {}

    monkeypatch.setattr(profile_forward, "memory_section", spy)
    monkeypatch.setattr(profile_forward, "profile_calls", lambda *a, **k: {})
    profile_forward.main(["--device", "cpu", "--calls", "1"])
    assert "batch 2" in capsys.readouterr().out
    assert seen == [(2, 2, 2, 2)]  # x, t, context, encoded hint (no y for SD1.5)

"""Smoke test of bench/profile_forward.py on the CPU (reduced SD1.5 architecture, one profiled call)."""

from __future__ import annotations

import re
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

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
    shown = re.search(r"predicted \(bench_memory.py, meta device\): peak ([\d.]+) MiB, outputs ([\d.]+) MiB", out)
    assert shown and (float(shown[1]), float(shown[2])) == (
        round(memory["predicted_peak"], 1), round(memory["predicted_outputs"], 1)
    ), out  # the printed figures are the returned ones, in MiB


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


def test_figures_are_per_call(monkeypatch, capsys):
    """Every profiled figure is per call: at 4 calls, a call taking 2 ms on the clock reads wall 2.00 ms, and
    operators totalling 12 ms of CPU time in 8 launches read 3.00 ms and 2 launches (the table's rows likewise)."""
    now = [0.0]

    def call():
        now[0] += 0.002

    events = [
        SimpleNamespace(key="aten::conv2d", self_cpu_time_total=8000.0, count=4),  # microseconds, as torch reports
        SimpleNamespace(key="aten::add", self_cpu_time_total=4000.0, count=4),
        SimpleNamespace(key="ProfilerStep", self_cpu_time_total=99000.0, count=4),  # not an operator: not counted
    ]

    @contextmanager
    def fake_profile(activities):
        yield SimpleNamespace(key_averages=lambda: events)

    monkeypatch.setattr(profile_forward, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(profile_forward, "profile", fake_profile)
    found = profile_forward.profile_calls(call, torch.device("cpu"), calls=4, top=1, title="t")
    assert found == pytest.approx({"wall_ms": 2.0, "device_ms": 3.0, "launched": 2.0})
    out = capsys.readouterr().out
    assert "per call: wall 2.00 ms (profiler on), aten operators (nested calls counted) 2, their CPU time 3.00 ms" in out
    assert re.search(r"^ +2\.000 +1\.0  aten::conv2d$", out, flags=re.M) and "aten::add" not in out  # top 1


@pytest.mark.parametrize(("family", "channels", "adm"), [("sd15", 320, False), ("sdxl", 128, True)])
def test_cpu_runs_a_reduced_architecture_of_the_family_asked_for(monkeypatch, capsys, family, channels, adm):
    """On the CPU each family is cut to two levels of one ResBlock (seconds, not minutes), keeping what makes it
    that family: SD1.5's width and text size; SDXL's label input and its attention-free first level."""
    built = []
    build = profile_forward.C.build_ours
    monkeypatch.setattr(profile_forward.C, "build_ours", lambda config, *a: built.append(config) or build(config, *a))
    monkeypatch.setattr(profile_forward, "memory_section", lambda *a: {})
    monkeypatch.setattr(profile_forward, "profile_calls", lambda *a, **k: {})
    profile_forward.main(["--device", "cpu", "--calls", "1", "--family", family])
    (config,) = built
    assert f"setup: {family}, batch 2, 64x64 px" in capsys.readouterr().out
    assert config.model_channels == channels and (config.adm_in_channels is not None) == adm
    assert config.channel_mult == (1, 1) and config.num_res_blocks == (1, 1)
    assert config.transformer_depth == ((0, 2) if family == "sdxl" else (1, 1))

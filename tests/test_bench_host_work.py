"""Smoke test of bench/bench_host_work.py on the CPU: ours alone (no ComfyUI, no diffusers), one timed call."""

from __future__ import annotations

import pytest
import torch

from affordance.bench import bench_host_work


def test_counts_ours_and_the_hint_encoder_it_saves(capsys, monkeypatch, keep_torch_threads):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    found = bench_host_work.main(["--families", "sd15", "--rounds", "1", "--calls", "1", "--no-diffusers"])
    out = capsys.readouterr().out
    work = found["sd15"]
    assert set(work) >= {"ours", "ours, hint in call"}
    ours, hinted = work["ours"], work["ours, hint in call"]
    # the hint encoder (8 convolutions, 7 SiLUs, its module calls) is the whole difference
    assert hinted.operators - ours.operators == 15 and hinted.module_calls - ours.module_calls == 16
    assert ours.ms > 0 and "convolution" in dict(ours.top)
    assert "all agree" in out and "not measured: comfyui: no ComfyUI checkout given" in out
    assert "diffusers" not in work and "\ndiffusers: " not in out  # --no-diffusers leaves the peer out
    assert "host ms: median of 1 rounds x 1 calls, implementations interleaved per round" in out
    assert torch.get_num_threads() == 1  # --threads' default: host time without thread hand-offs
    # the cond/uncond pair sharing its text-free layers: one repeat per shared tensor (the first residual, the first
    # transformer's input and its tokens); the two blocks up to the cut run layer by layer, not as module calls
    shared = work[bench_host_work.SHARED]
    assert shared.operators - ours.operators == 3 and shared.module_calls == ours.module_calls - 2


def test_operator_count_sees_kernels_not_views():
    x = torch.randn(4, 6)
    with torch.no_grad(), bench_host_work.OperatorCount() as ops:
        y = x.t().reshape(24).view(4, 6)  # transpose and view are free; reshaping a transpose copies (clone)
        (y * 2).sum()
    assert ops.by_name == {"clone": 1, "mul": 1, "sum": 1}


def test_width_must_fit_the_heads():
    with pytest.raises(SystemExit):
        bench_host_work.main(["--width", "96"])

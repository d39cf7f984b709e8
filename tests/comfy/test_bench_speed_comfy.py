"""bench/bench_speed.py with its ComfyUI parts: ComfyUI's ControlNet as a forward peer and a real sampling run.

Tiny architectures on the CPU. The GPU-only printing (peak memory, PASS/MISS) is exercised with stand-ins for the
memory probe and the target setup, so a GPU run does not meet that code for the first time.
"""

from __future__ import annotations

import importlib
import re

import pytest
import torch

pytestmark = pytest.mark.comfy


@pytest.fixture()
def bench():
    return importlib.import_module("affordance.bench.bench_speed")


def test_comfyui_forward_peer_and_sampling_run(bench, comfy, capsys, monkeypatch):
    monkeypatch.setattr(bench, "peak_memory_mib", lambda device: 100.0)
    monkeypatch.setattr(bench, "peak_reserved_mib", lambda device: 120.0)
    monkeypatch.setattr(bench, "off_target", lambda opts, size, target: "")
    threads = torch.get_num_threads()
    try:
        report = bench.main(
            ["--device", "cpu", "--comfyui", str(comfy.path), "--xl-size", "0", "--rounds", "1", "--calls", "1",
             "--warmup", "0", "--steps", "3", "--runs", "1", "--threads", "1", "--no-diffusers", "--variants", "all"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert not set(report.missing) - {"diffusers"}, report.missing
    for name in ("ours", "comfyui", "ours x2", "comfyui x2"):
        assert report.forward_ms["sd15", name] > 0 and report.agree[f"sd15 {name}"], out
    assert "ours vs comfyui: " in out and "ours x2 vs comfyui x2: " in out
    assert "applied with ComfyUI's ControlNetApplyAdvanced" in out
    variants = (
        "UNet only", "ComfyUI ControlNet", "ours", "ComfyUI ControlNet x2", "ours x2", bench.GUESS, "ours graph",
        "ours graph x2",
    )  # fmt: skip
    assert set(report.step_ms) == set(variants) and all(v > 0 for v in report.step_ms.values())
    for name in ("ours", "ours x2", "ours graph", "ours graph x2", bench.GUESS):  # graphs requested run eagerly on the CPU
        assert report.agree[f"sampling {name}"], out
    assert f"  {bench.GUESS} vs {bench.GUESS_REFERENCE}: " in out
    assert re.search(rf"ControlNet cost per step with the negative rows skipped \({bench.GUESS}\), / ours with both sides: -?[\d.]+", out)
    assert re.search(r"with CUDA graphs \(AFFORDANCE_CUDA_GRAPHS=1\): ours [\d.]+x (PASS|MISS); peak 100 vs 100 MiB allocated, 120 vs 120 MiB reserved  PASS", out)
    for label in ("CUDA graphs", "CUDA graphs x2", "two ControlNets", "ours vs ComfyUI path"):
        assert re.search(rf"peak memory, {label} +<= ComfyUI 100 vs 100 MiB allocated, 120 vs 120 MiB reserved  PASS", out)
    assert report.peak_mib == dict.fromkeys(variants, 100.0) and report.reserved_mib == dict.fromkeys(variants, 120.0)
    assert (
        "target: peak memory with ours <= ComfyUI's path: 100 vs 100 MiB allocated, 120 vs 120 MiB reserved  PASS; "
        "two ControlNets: 100 vs 100 MiB allocated, 120 vs 120 MiB reserved  PASS" in out
    )
    assert re.search(r"step with ours / UNet-only step +<= 1.15x +[\d.]+x \(ComfyUI here [\d.]+x, anchor 1.47x\)  (PASS|MISS)", out)
    assert re.search(r"SDXL one ControlNet per step +<= 15 ms +not measured", out)  # --xl-size 0
    assert "outputs agree with the reference: yes" in out

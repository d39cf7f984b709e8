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


def _sampling_only(bench, comfy, *extra: str):
    threads = torch.get_num_threads()
    try:
        return bench.main(
            ["--device", "cpu", "--comfyui", str(comfy.path), "--parts", "sampling", "--steps", "3", "--runs", "1",
             "--threads", "1", *extra]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def test_dynamic_vram_stays_off_on_the_cpu_with_the_reason(bench, comfy, capsys):
    report = _sampling_only(bench, comfy)
    out = capsys.readouterr().out
    assert re.search(r"ComfyUI's dynamic VRAM: off: (this ComfyUI predates dynamic VRAM|dynamic VRAM is for NVIDIA GPUs)", out)
    assert "model patchers: UNet ModelPatcher, ComfyUI's ControlNet ModelPatcher, ours ModelPatcher" in out
    assert bench.DYNAMIC not in report.step_ms and bench.DYNAMIC not in out.split("ComfyUI's dynamic VRAM")[1]


def test_dynamic_vram_variant_is_timed_checked_and_reported(bench, comfy, capsys, monkeypatch):
    """Where ComfyUI's dynamic VRAM is on (an NVIDIA GPU), ours also runs with ComfyUI's CoreModelPatcher; here the
    switch and the GPU's memory readings are stand-ins (each reading 10 MiB above the last)."""
    monkeypatch.setattr(bench.DV, "enable", lambda comfy, device, mode: (mode == "auto", f"{mode} (stand-in)"))
    readings = iter(range(1000, 10**6, 10))
    monkeypatch.setattr(bench.DV, "device_used_mib", lambda device: float(next(readings)))
    monkeypatch.setattr(bench, "peak_memory_mib", lambda device: 100.0)
    monkeypatch.setattr(bench, "peak_reserved_mib", lambda device: 120.0)
    report = _sampling_only(bench, comfy)
    out = capsys.readouterr().out
    assert "ComfyUI's dynamic VRAM: auto (stand-in)" in out
    assert f"{bench.DYNAMIC}: ours with ModelPatcher, ComfyUI's CoreModelPatcher" in out  # on the CPU: the classic one
    variants = ("UNet only", "ComfyUI ControlNet", "ours", "ComfyUI ControlNet x2", "ours x2", bench.GUESS, bench.DYNAMIC)
    assert set(report.step_ms) == set(variants) and report.agree[f"sampling {bench.DYNAMIC}"], out
    assert f"  {bench.DYNAMIC} vs ComfyUI ControlNet: " in out
    # read at the run's start and at its 3 step ends: the most is 30 MiB above the start, in every run
    assert report.device_mib == dict.fromkeys(variants, 30.0)
    assert re.search(rf"^{bench.DYNAMIC} +[\d.]+ +[\d.]+x +-?[\d.]+ +[\d.]+ +100 +120 +30$", out, flags=re.M), out
    assert (
        "GPU memory in use (the driver's view), ours vs ComfyUI's path: 30 vs 30 MiB in use  PASS; two ControlNets: "
        f"30 vs 30 MiB in use  PASS; {bench.DYNAMIC}: 30 vs 30 MiB in use  PASS" in out
    )
    assert re.search(rf"with ComfyUI's CoreModelPatcher \({bench.DYNAMIC}\), / ours with ModelPatcher: -?[\d.]+", out)
    for label in ("ours vs ComfyUI path", "two ControlNets", "CoreModelPatcher"):
        assert re.search(rf"GPU memory in use, {label} +<= ComfyUI 30 vs 30 MiB in use  PASS", out), out
    assert re.search(r"step with ours / UNet-only, CoreModelPatcher +<= 1.15x +[\d.]+x  n/a", out)
    # asked off, the switch is told so and ours runs with ModelPatcher only
    report = _sampling_only(bench, comfy, "--comfy-dynamic-vram", "off")
    assert "ComfyUI's dynamic VRAM: off (stand-in)" in capsys.readouterr().out and bench.DYNAMIC not in report.step_ms


def test_a_failing_dynamic_variant_is_left_out_and_the_rest_stand(bench, comfy, capsys, monkeypatch):
    from affordance.controlnet import ControlNet

    monkeypatch.setattr(bench.DV, "enable", lambda comfy, device, mode: (True, "on (stand-in)"))
    real = bench.DV.core_patcher()

    class Broken(real):  # type: ignore[misc,valid-type]
        def partially_load(self, *args, **kwargs):  # how ComfyUI loads a model's weights for a run
            raise RuntimeError("stand-in: dynamic loading failed")

    def core_patcher():
        return lambda model, **kwargs: (Broken if isinstance(model, ControlNet) else real)(model, **kwargs)

    monkeypatch.setattr(bench.DV, "core_patcher", core_patcher)
    report = _sampling_only(bench, comfy)
    out = capsys.readouterr().out
    assert f"{bench.DYNAMIC}: left out, its sampling run failed:" in out and "stand-in: dynamic loading failed" in out
    assert report.missing[bench.DYNAMIC] == "its sampling run failed: RuntimeError: stand-in: dynamic loading failed"
    assert "sampling" not in report.missing
    variants = {"UNet only", "ComfyUI ControlNet", "ours", "ComfyUI ControlNet x2", "ours x2", bench.GUESS}
    assert set(report.step_ms) == variants and all(report.agree[f"sampling {v}"] for v in variants - {"UNet only", "ComfyUI ControlNet", "ComfyUI ControlNet x2"}), out
    assert not re.search(rf"^{bench.DYNAMIC} ", out, flags=re.M) and "CoreModelPatcher (" not in out

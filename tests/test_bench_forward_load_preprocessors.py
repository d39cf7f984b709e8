"""Smoke tests of the three earlier benchmarks on the CPU, small enough for CI: bench_forward (a tiny
ControlNet in place of the SD1.5 preset), bench_load (fresh child processes loading a tiny file) and
bench_preprocessors (one 64 px image). Each must run to its ratios and report its outputs as agreeing."""

from __future__ import annotations

import torch

from affordance.bench import _common as C
from affordance.bench import bench_forward, bench_load, bench_preprocessors
from affordance.controlnet import ControlNet, ControlNetConfig

TINY = ControlNetConfig(
    model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), transformer_depth=(1, 0), context_dim=768
)


def test_forward_prints_agreeing_outputs_and_ratios(monkeypatch, capsys, keep_torch_threads):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setattr(C, "config_for", lambda family: TINY)
    args = ["--device", "cpu", "--size", "64", "--batch", "1", "--rounds", "1", "--calls", "1", "--threads", "1"]
    bench_forward.main(args)
    out = capsys.readouterr().out
    assert "outputs: 5 residuals" in out  # the input conv, 1 block + a downsample, 1 block, the middle
    assert "ours+encoded vs ours: max abs diff 0 " in out
    assert "peer missing: comfyui: no ComfyUI checkout given" in out
    table = out.split("implementation  median ms", 1)[1].splitlines()[1:]
    for impl in ("ours", "ours+encoded", "diffusers"):
        row = next(ln for ln in table if ln.split()[:1] == [impl])
        assert float(row.split()[1]) > 0, row
    assert "diffusers vs ours: max abs diff" in out  # the peer of the test extra, on the same weights
    assert "ratios (ours / peer" in out


def test_load_runs_each_variant_in_a_child_process(tmp_path, capsys):
    """The children are started with this interpreter (-P only where it runs with it: Python 3.10 has none)."""
    model = ControlNet(TINY)
    path = tmp_path / "tiny.pth"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    bench_load.main(["--file", str(path), "--variants", "ours,ours-fp32", "--repeats", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "unavailable" not in out, out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split()[:1] in (["ours"], ["ours-fp32"])}
    assert rows["ours"][1] == "float16" and rows["ours-fp32"][1] == "float32", out
    assert float(rows["ours"][2]) > 0 and float(rows["ours-fp32"][2]) > 0


def test_preprocessors_prints_rates_and_canny_parity(capsys, keep_torch_threads):
    args = ["--device", "cpu", "--batch", "1", "--size", "64", "--rounds", "1", "--threads", "1"]
    bench_preprocessors.main(args)
    out = capsys.readouterr().out
    assert "canny hints identical to the peers': True" in out
    for name in ("canny", "shuffle", "tile"):
        row = next(ln for ln in out.splitlines() if ln.split()[:1] == [name])
        assert float(row.split()[1]) > 0 and float(row.split()[2]) > 0, row


def test_ru_maxrss_figure_is_an_increase(tmp_path, capsys):
    """The child's 'ru_maxrss minus the same baseline' is getrusage's peak minus the RSS after imports: never more
    than the process's own ru_maxrss."""
    import argparse
    import json
    import resource

    path = tmp_path / "tiny.pth"
    torch.save({k: v.half() for k, v in ControlNet(TINY).state_dict().items()}, path)
    bench_load.child(argparse.Namespace(device="cpu", file=str(path), child="ours", family="sd15", comfyui=None))
    result = json.loads([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")][-1])
    assert "error" not in result, result
    assert result["ru_maxrss_increase"] < resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

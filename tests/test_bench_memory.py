"""bench/bench_memory.py: the live-bytes tracker on known cases, the attention model, and a full SD1.5 run on meta."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from affordance.bench import bench_memory
from affordance.controlnet import SD15

MIB = 2**20


def _mib(n: float) -> torch.Tensor:
    return torch.empty(int(n * MIB), dtype=torch.uint8, device="meta")


def test_tracker_follows_allocations_views_and_frees():
    weight = _mib(4)  # made outside the mode: never counted

    def step():
        a = weight + 1  # 4 MiB
        v = a.view(2, -1)  # a view keeps a's storage alive
        del a
        b = v * 2  # 8 MiB live
        c = b.add_(1)  # in place: nothing new
        del v, b
        return c[:1]  # 4 MiB live at the end, through a view

    mem = bench_memory.measure(step)
    assert (mem.peak, mem.outputs) == (8 * MIB, 4 * MIB)
    assert mem.peak_at == "mul -> (2, 2097152)"


def test_attention_is_modelled_as_one_fused_kernel_and_restored():
    original = F.scaled_dot_product_attention
    q = torch.empty(2, 8, 4096, 40, dtype=torch.float16, device="meta")
    mem = bench_memory.measure(lambda: [F.scaled_dot_product_attention(q, q, q)])
    out_bytes = q.numel() * 2
    lse_bytes = 2 * 8 * 4096 * 4  # fp32 log-sum-exp per query
    # no (4096 x 4096) attention matrix: the output, the log-sum-exp and a few scalars (RNG state)
    assert 0 <= mem.peak - out_bytes - lse_bytes < 1024 and mem.outputs == out_bytes
    assert F.scaled_dot_product_attention is original


def test_sd15_at_512_px_outputs_are_exactly_the_residuals(capsys, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    found = bench_memory.main(["--families", "sd15", "--no-diffusers"])["sd15"]
    out = capsys.readouterr().out
    residual_bytes = sum(
        2 * c * (64 // f) ** 2 * 2 for c, f in zip(SD15.residual_channels(), SD15.residual_downsampling(), strict=True)
    )
    assert found["ours"].outputs == found["ours, hint in call"].outputs == residual_bytes
    assert residual_bytes < found["ours"].peak
    # a hint encoded in the call is freed once added: the peak (deeper in the network) does not hold it
    assert found["ours, hint in call"].peak == found["ours"].peak
    # the feed-forward gates in place: the peak is its output layer, not the gate's product
    assert found["ours"].peak_at.startswith("addmm")
    assert "not measured: comfyui: no ComfyUI checkout given" in out
    # the cond/uncond pair sharing its text-free layers leaves the same residuals and peaks no higher
    assert found[bench_memory.SHARED].outputs == residual_bytes
    assert found[bench_memory.SHARED].peak == found["ours"].peak


# ----- behaviours found untested by mutation round 6 (each test fails on its mutant) ------------------------------


def _alloc(mib):
    def fn():
        return [torch.empty(mib * MIB, dtype=torch.uint8, device="meta")]
    return fn


def test_step_section_prints_ratios_to_comfyuis_path(monkeypatch, capsys):
    """Each variant's peak is printed as a ratio to ComfyUI's path (x2 rows to ComfyUI's x2 row)."""
    sizes = {"UNet only": 10, "ComfyUI ControlNet": 20, "ours": 15, "ours graph": 30,
             "ComfyUI ControlNet x2": 40, "ours x2": 20, "ours graph x2": 60}
    monkeypatch.setattr(bench_memory, "step_variants", lambda *a: {k: _alloc(v) for k, v in sizes.items()})
    found = bench_memory.step_section("sd15", 512, torch.float16, object(), {})
    out = capsys.readouterr().out
    assert found["ours"].peak == 15 * MIB
    rows = {m.group(1).strip(): m.group(2) for m in re.finditer(r"^(.+?)\s+[\d.]+\s+([\d.]+x)\s", out, re.M)}
    assert rows["ours"] == "0.750x" and rows["ours graph"] == "1.500x" and rows["ComfyUI ControlNet"] == "1.000x"
    assert rows["ours x2"] == "0.500x" and rows["ours graph x2"] == "1.500x"


def test_printed_figures_are_mib(capsys, monkeypatch):
    """Every printed figure is in MiB: the printed peak equals the measured bytes / 2**20, in the table and in the
    line on what a CUDA-graph recording keeps reserved."""
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    found = bench_memory.main(["--families", "sd15", "--no-diffusers"])["sd15"]
    out = capsys.readouterr().out
    m = re.search(r"^ours\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s", out, re.M)
    peak, outputs, diff = (float(v) for v in m.groups())
    header = out[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].split()  # the table names its columns and units
    assert header[:2] == ["implementation", "peak"] and "MiB" in header and "outputs" in header, out
    assert abs(peak - found["ours"].peak / 2**20) <= 0.05
    assert abs(outputs - found["ours"].outputs / 2**20) <= 0.05
    assert abs(diff - (found["ours"].peak - found["ours"].outputs) / 2**20) <= 0.05
    assert 1 < peak < 10_000  # SD1.5 at 512 px, fp16: hundreds of MiB
    m = re.search(r"keeps its peak reserved between replays \(([\d.]+) MiB, of which ([\d.]+) MiB are the outputs", out)
    assert (float(m.group(1)), float(m.group(2))) == (peak, outputs)  # the recording line repeats the row's figures


@pytest.mark.parametrize("size", ["96", "0", "-64", "65"])
def test_bad_sizes_are_refused(size, capsys):
    """--size takes positive multiples of 64 (three downsamplings of the latent) and refuses the rest."""
    with pytest.raises(SystemExit) as e:
        bench_memory.main(["--size", size, "--families", "sd15", "--no-diffusers"])
    assert e.value.code == 2 and "--size must be a positive multiple of 64" in capsys.readouterr().err


def test_a_multiple_of_64_is_taken(capsys, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    found = bench_memory.main(["--size", "128", "--families", "sd15", "--no-diffusers"])
    assert found["sd15"]["ours"].peak > 0
    assert "## sd15: batch 2, 128x128 px" in capsys.readouterr().out

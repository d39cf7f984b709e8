"""Smoke tests of the three earlier benchmarks on the CPU, small enough for CI: bench_forward (a tiny
ControlNet in place of the SD1.5 preset), bench_load (fresh child processes loading a tiny file) and
bench_preprocessors (one 64 px image). Each must run to its ratios and report its outputs as agreeing."""

from __future__ import annotations

import mmap
import re
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from affordance.bench import _common as C
from affordance.bench import bench_forward, bench_load, bench_preprocessors
from affordance.controlnet import ControlNet, ControlNetConfig

MiB = 2**20
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


def test_forward_figures_are_per_call_at_the_size_asked_for(monkeypatch, capsys, keep_torch_threads):
    """With a clock that advances 3 ms per hint encoding (and 1 us per reading), at --calls 2: the hint encoder
    alone reads 3.0 ms per call, ours with the hint in every call 3.0 ms (one encoding per call) and ours with the
    hint encoded once 0.0 ms (none); the run is at the --size given."""
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setattr(C, "config_for", lambda family: TINY)
    now = [0.0]

    def clock() -> float:
        now[0] += 1e-6
        return now[0]

    encode = ControlNet.encode_hint

    def timed_encode(self, hint):
        now[0] += 0.003
        return encode(self, hint)

    monkeypatch.setattr(bench_forward, "time", SimpleNamespace(perf_counter=clock))
    monkeypatch.setattr(ControlNet, "encode_hint", timed_encode)
    args = ["--device", "cpu", "--size", "64", "--batch", "1", "--rounds", "1", "--calls", "2", "--threads", "1"]
    bench_forward.main([*args, "--no-diffusers"])
    out = capsys.readouterr().out
    assert "setup: sd15, batch 1, 64x64 px (latent 8x8), float32, median of 1 rounds x 2 calls" in out
    assert "ours hint encoder alone (encode_hint, batch 1): 3.0 ms per call" in out
    medians = dict(re.findall(r"^(ours|ours\+encoded) +([\d.]+) ", out, flags=re.M))
    assert medians == {"ours": "3.0", "ours+encoded": "0.0"}, out


@pytest.mark.parametrize(("family", "size"), [("sd15", 256), ("sdxl", 512)])
def test_forward_defaults_on_the_cpu(monkeypatch, capsys, keep_torch_threads, family, size):
    """With no size, batch, dtype or timing asked for, a CPU run is the documented one: 256 px (SDXL twice that),
    batch 2, fp32, 3 rounds of 2 calls after 1 warm-up call (a tiny ControlNet in place of the preset)."""
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setattr(C, "config_for", lambda family: TINY)
    bench_forward.main(["--device", "cpu", "--family", family, "--no-diffusers", "--threads", "1"])
    out = capsys.readouterr().out
    latent = size // 8
    setup = f"setup: {family}, batch 2, {size}x{size} px (latent {latent}x{latent}), float32, median of 3 rounds x 2 calls"
    assert f"{setup} after 1 warm-up call(s)" in out, out


def test_load_runs_each_variant_in_a_child_process(tmp_path, capsys, monkeypatch):
    """The children are started with this interpreter (-P only where it runs with it: Python 3.10 has none); with no
    ComfyUI checkout, ComfyUI's variants are skipped as the report says, not run and reported missing."""
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    model = ControlNet(TINY)
    path = tmp_path / "tiny.pth"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    bench_load.main(["--file", str(path), "--variants", "ours,ours-fp32,comfy", "--repeats", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "unavailable" not in out and "missing" not in out, out
    assert "ComfyUI: not given (--comfyui PATH or COMFYUI_PATH); its variants are skipped" in out
    assert not [ln for ln in out.splitlines() if "comfy" in ln.split()[:1] or "comfy:" in ln], out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split()[:1] in (["ours"], ["ours-fp32"])}
    assert rows["ours"][1] == "float16" and rows["ours-fp32"][1] == "float32", out
    assert float(rows["ours"][2]) > 0 and float(rows["ours-fp32"][2]) > 0


def test_preprocessors_prints_rates_and_canny_parity(capsys, keep_torch_threads):
    args = ["--device", "cpu", "--batch", "1", "--size", "64", "--rounds", "1", "--threads", "1"]
    bench_preprocessors.main(args)
    out = capsys.readouterr().out
    assert "canny hints identical to the peers': True" in out
    assert "tile hints identical to the peers': True" in out
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
    if Path("/proc/self/status").is_file():  # the file-backed figure is also an increase: a 0.1 MB file read once
        # adds far less than the shared libraries this process already maps (a sum would count them twice)
        assert result["end_file_backed_increase"] < bench_load._status()["RssFile"], result


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="needs Linux's /proc/self/smaps")
def test_file_mapping_finds_a_mapped_file_in_a_folder_with_spaces(tmp_path):
    """bench_load's "after the load the process still maps the file" line: the resident and copied-on-write bytes
    of this process's mappings of one file (smaps puts the path last, and a path may contain spaces)."""
    folder = tmp_path / "my models" / "a  b"
    folder.mkdir(parents=True)
    path = folder / "weights file.bin"
    path.write_bytes(bytes(64 * 1024))
    assert bench_load._file_mapping(path) == {"Rss": 0, "Anonymous": 0, "mappings": 0}
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        mapped[0:1] = b"x"  # touched and copied on write: one private page
        _ = mapped[8192]  # touched, read only: a file page
        found = bench_load._file_mapping(path)
    assert found["mappings"] == 1 and found["Rss"] >= 2 * 4096 and found["Anonymous"] >= 4096, found
    assert bench_load._file_mapping(tmp_path / "my models" / "other.bin")["mappings"] == 0


def test_load_report_figures_notes_and_ratios(capsys):
    """bench_load's report from its children's rows: medians in MiB and as multiples of the file, the note on runs
    whose peak RSS did not grow, the file still mapped, and each ratio ours / peer of the same dtype."""

    def row(seconds, peak, reliable, mapped=0):
        return {
            "dtype": "float16", "seconds": seconds, "peak_rss_increase": peak * MiB,
            "peak_private_increase": peak * MiB / 2, "end_private_increase": 3 * MiB, "end_file_backed_increase": 0,
            "peak_rss_reliable": reliable, "ru_maxrss_increase": peak * MiB,
            "file_mapping": {"Rss": 5 * MiB, "Anonymous": MiB, "mappings": mapped},
        }  # fmt: skip

    results = {
        "ours": [row(0.5, 100, True, mapped=1), row(0.7, 120, True, mapped=1)],
        "comfyui": [row(2.0, 400, True), row(2.4, 480, False)],
    }
    bench_load.report(results, {"diffusers": "not installed"}, 200 * MiB, torch.device("cpu"))
    out = capsys.readouterr().out
    assert re.search(r"^ours +float16 +0\.60 +110 +0\.55 +55 +0\.28 +3 +0$", out, flags=re.M), out
    assert re.search(r"^comfyui +float16 +2\.20 +440 +2\.20 +220 +1\.10 +3 +0$", out, flags=re.M), out
    assert "note: comfyui: the peak RSS did not grow" in out and "note: ours:" not in out
    assert "diffusers   missing: not installed" in out
    assert "ours: after the load the process still maps the file (1 mapping(s)): 5 MiB resident, 1 MiB of it" in out
    assert "comfyui: after the load" not in out
    ratio = "ours vs comfyui (float16): time 0.27x (ours 3.7x faster), peak RSS increase 0.25x, peak private 0.25x"
    assert ratio in out


def test_the_peers_resize_pads_to_64_and_crops_back():
    """comfyui_controlnet_aux's resize around an annotator: short side to the resolution (cubic when enlarging,
    area when shrinking), edge padding to multiples of 64, and a crop back to the resized size."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    padded, crop = bench_preprocessors._peer_resize_with_pad(img, 64)
    resized = cv2.resize(img, (90, 64), interpolation=cv2.INTER_CUBIC)  # 70 * 64 / 50 = 89.6
    assert padded.shape == (64, 128, 3)
    assert np.array_equal(padded[:, :90], resized) and np.array_equal(padded[:, 90:], np.repeat(resized[:, -1:], 38, 1))
    assert np.array_equal(crop(padded), resized) and crop(padded).flags.c_contiguous
    padded, crop = bench_preprocessors._peer_resize_with_pad(img, 40)
    shrunk = cv2.resize(img, (56, 40), interpolation=cv2.INTER_AREA)
    assert padded.shape == (64, 64, 3) and np.array_equal(padded[40:], np.repeat(padded[39:40], 24, 0))
    assert np.array_equal(crop(padded), shrunk)

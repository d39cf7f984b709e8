"""Smoke test of bench/bench_speed.py: the whole comparison, tiny, on the CPU, with the peers this venv has.

ComfyUI is left out here (``--no-comfyui``); tests/comfy/test_bench_speed_comfy.py runs the ComfyUI parts.
"""

from __future__ import annotations

import importlib
import importlib.util
import re

import pytest

TINY_ARGS = ["--device", "cpu", "--size", "64", "--xl-size", "128", "--rounds", "1", "--calls", "1", "--warmup", "0"]


@pytest.fixture(scope="module")
def bench():
    return importlib.import_module("affordance.bench.bench_speed")


def has_diffusers() -> bool:
    return importlib.util.find_spec("diffusers") is not None


def table_rows(out: str, names: tuple[str, ...]) -> dict[str, list[float]]:
    """Median ms of each implementation's rows in the ms-per-step tables (one row per section)."""
    rows: dict[str, list[float]] = {}
    for line in out.splitlines():
        m = re.fullmatch(r"(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", line)
        if m and m.group(1) in names:
            rows.setdefault(m.group(1), []).append(float(m.group(2)))
    return rows


def test_tiny_cpu_run_prints_every_figure_and_outputs_agree(bench, capsys, keep_torch_threads):
    # one thread: on a small shared CPU, torch's threads wait for each other and take several times longer
    report = bench.main([*TINY_ARGS, "--no-comfyui", "--threads", "1"])
    out = capsys.readouterr().out
    peers = ("diffusers",) if has_diffusers() else ()
    names = ("ours", "ours x2", *peers, *(f"{p} x2" for p in peers))
    for family in ("sd15", "sdxl"):
        assert f"## 1. ControlNet forward per step: {family} (tiny architecture)" in out
        for name in names:
            assert report.forward_ms[family, name] > 0
            assert report.agree[f"{family} {name}"], out
    rows = table_rows(out, names)
    assert set(rows) == set(names) and all(len(v) == 2 for v in rows.values()), out  # one row per section
    assert "peer missing: comfyui: skipped (--no-comfyui)" in out
    assert "ours vs comfyui: peer missing, no ratio" in out
    if peers:
        assert "ours vs diffusers: " in out and "ours x2 vs diffusers x2: " in out
    else:
        assert "peer missing: diffusers" in out
    assert "## 2. Inside a ComfyUI sampling run: skipped" in out
    assert "target: ours <= 4 ms per step" in out and "n/a (targets are for CUDA)" in out
    assert "outputs agree with the reference: yes" in out
    assert "device: " in out and "affordance: " in out  # the header


def test_cuda_variants_run_on_the_cpu_too(bench, capsys, keep_torch_threads):
    """``--variants all``: the CUDA-graph and channels-last candidates are wired and checked (graphs run eagerly)."""
    report = bench.main([*TINY_ARGS, "--xl-size", "0", "--no-comfyui", "--no-diffusers", "--variants", "all", "--threads", "1"])
    out = capsys.readouterr().out
    names = ("ours", "ours x2", "ours graph", "ours graph x2", "ours cl", "ours graph cl")
    for name in names:
        assert report.forward_ms["sd15", name] > 0 and report.agree[f"sd15 {name}"], out
    assert set(table_rows(out, names)) == set(names), out
    assert "ours graph vs ours: " in out and "ours graph cl vs ours graph: " in out
    assert "target: ours graph <= 4 ms per step" in out
    assert re.search(r"SD1.5 one ControlNet per step, CUDA graphs +<= 4 ms +[\d.]+ ms", out)
    assert "outputs agree with the reference: yes" in out


@pytest.mark.skipif(not has_diffusers(), reason="diffusers is not installed")
def test_a_peer_that_cannot_be_built_is_named_with_why(bench, capsys, monkeypatch, keep_torch_threads):
    """A peer failing inside a section (not at import) is left out with its reason printed where it happened."""

    def broken(*args, **kwargs):
        raise RuntimeError("no such layer")

    monkeypatch.setattr(bench.C, "build_diffusers", broken)
    report = bench.main([*TINY_ARGS, "--xl-size", "0", "--no-comfyui", "--threads", "1"])
    out = capsys.readouterr().out
    why = "building diffusers' ControlNetModel failed: RuntimeError: no such layer"
    assert f"peer missing: diffusers (sd15): {why}" in out
    assert report.missing["diffusers (sd15)"] == why and ("sd15", "diffusers") not in report.forward_ms
    assert "ours vs diffusers: peer missing, no ratio" in out


def test_diffusers_multi_controlnet_is_found_in_old_and_new_releases(bench):
    diffusers = pytest.importorskip("diffusers")
    multi = bench.C.diffusers_multi_controlnet()
    assert multi.__name__ == "MultiControlNetModel" and issubclass(multi, diffusers.ModelMixin)


def test_verdicts_and_target_setup(bench):
    import torch

    opts = bench.Options(
        device=torch.device("cpu"),
        dtype=torch.float16,
        models="full",
        batch=2,
        warmup=0,
        rounds=1,
        calls=1,
        steps=2,
        runs=1,
        seed=0,
    )
    assert bench.off_target(opts, 512, 512) == "targets are for CUDA"
    opts.device = torch.device("cuda")  # only read, never used: no GPU needed
    assert bench.off_target(opts, 512, 512) == ""
    assert bench.off_target(opts, 256, 512).endswith("here 256 px")
    assert bench.verdict(True, "") == "PASS" and bench.verdict(False, "") == "MISS"
    assert bench.verdict(True, "why").startswith("n/a (why")


def test_memory_target_needs_allocated_and_reserved_both_no_higher(bench):
    alloc = {"ours graph": 900.0, "ComfyUI ControlNet": 900.0, "ours": 880.0}
    held = {"ours graph": 1100.0, "ComfyUI ControlNet": 1000.0, "ours": 1000.0}
    # a recording's pool is invisible in the allocated peak but not in the reserved one
    assert bench.memory_verdict("ours graph", "ComfyUI ControlNet", alloc, held) == (
        "900 vs 900 MiB allocated, 1100 vs 1000 MiB reserved  MISS"
    )
    assert bench.memory_verdict("ours", "ComfyUI ControlNet", alloc, held).endswith("1000 vs 1000 MiB reserved  PASS")
    assert bench.memory_verdict("ours", "ComfyUI ControlNet", {**alloc, "ours": 901.0}, held).endswith("MISS")
    assert bench.memory_verdict("ours", "ComfyUI ControlNet", alloc, {}) == "880 vs 900 MiB allocated  PASS"


def test_comfy_unet_config_matches_comfyuis_sd15_and_sdxl(bench):
    """The UNet configurations ComfyUI's model detection gives SD1.5 and SDXL checkpoints."""
    sd15 = bench.comfy_unet_config(bench.FULL["sd15"])
    assert sd15["transformer_depth_output"] == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert sd15["num_heads"] == 8 and sd15["num_head_channels"] == -1 and not sd15["use_linear_in_transformer"]
    sdxl = bench.comfy_unet_config(bench.FULL["sdxl"])
    assert sdxl["transformer_depth_output"] == [0, 0, 0, 2, 2, 2, 10, 10, 10]
    assert sdxl["adm_in_channels"] == 2816 and sdxl["num_head_channels"] == 64


def test_bad_size_is_refused(bench):
    with pytest.raises(SystemExit, match="multiple of 16"):
        bench.main([*TINY_ARGS, "--size", "72", "--no-comfyui", "--no-diffusers"])


def test_compiled_candidate_is_wired_checked_and_reported(bench, capsys, keep_torch_threads):
    """``--compile eager``: dynamo traces our whole forward (fullgraph), the result is checked and timed."""
    report = bench.main([*TINY_ARGS, "--xl-size", "0", "--no-comfyui", "--no-diffusers", "--compile", "eager", "--threads", "1"])
    out = capsys.readouterr().out
    assert report.forward_ms["sd15", "ours compiled"] > 0 and report.agree["sd15 ours compiled"], out
    assert "ours compiled graph" not in out  # inductor's CUDA graphs only on CUDA
    assert re.search(r"ours compiled: torch.compile \(backend eager\) made and warmed up in [\d.]+ s", out)
    assert "ours compiled vs ours: " in out and "target: ours compiled <= 4 ms per step" in out
    assert re.search(r"SD1.5 one ControlNet per step, compiled +<= 4 ms +[\d.]+ ms", out)
    assert "outputs agree with the reference: yes" in out


def test_a_candidate_that_fails_to_compile_is_left_out(bench, capsys, keep_torch_threads, monkeypatch):
    import torch

    def refuse(model, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no compiler here")

        return fail

    monkeypatch.setattr(torch, "compile", refuse)
    report = bench.main([*TINY_ARGS, "--xl-size", "0", "--no-comfyui", "--no-diffusers", "--compile", "eager", "--threads", "1"])
    out = capsys.readouterr().out
    assert ("sd15", "ours compiled") not in report.forward_ms and report.forward_ms["sd15", "ours"] > 0
    assert "ours compiled: compiling failed (RuntimeError: no compiler here); left out" in out
    assert report.missing["ours compiled (sd15)"] == "compiling failed: RuntimeError: no compiler here"

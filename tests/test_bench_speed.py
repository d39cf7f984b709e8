"""Smoke test of bench/bench_speed.py: the whole comparison, tiny, on the CPU, with the peers this venv has.

ComfyUI is left out here (``--no-comfyui``); tests/comfy/test_bench_speed_comfy.py runs the ComfyUI parts.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from types import SimpleNamespace

import pytest
import torch

from affordance.bench import bench_speed
from affordance.controlnet import ControlNet

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
    for family, size in (("sd15", 64), ("sdxl", 128)):
        assert f"## 1. ControlNet forward per step: {family} (tiny architecture), {size}x{size} px, batch 2, float32" in out
        for name in names:
            assert report.forward_ms[family, name] > 0
            assert report.agree[f"{family} {name}"], out
    rows = table_rows(out, (*names, bench.ALL_ROWS))
    assert set(rows) == {*names, bench.ALL_ROWS} and all(len(v) == 2 for n, v in rows.items() if n in names), out
    # a CFG step's rows: SD1.5 shares the cond/uncond pair and times every row beside it; SDXL's label differs per row
    assert len(rows[bench.ALL_ROWS]) == 1 and report.forward_ms["sd15", bench.ALL_ROWS] > 0
    assert report.agree[f"sd15 {bench.ALL_ROWS}"] and ("sdxl", bench.ALL_ROWS) not in report.forward_ms
    assert "each row its own text; ours computes the layers before the first cross-attention once per latent (shared=(0, 0))" in out
    assert "inputs: every row computed by ours (SDXL's label differs per row)" in out
    assert "peer missing: comfyui: skipped (--no-comfyui)" in out
    assert "ours vs comfyui: peer missing, no ratio" in out
    if peers:
        import diffusers

        assert "ours vs diffusers: " in out and "ours x2 vs diffusers x2: " in out
        assert f"\ndiffusers: {diffusers.__version__}\n" in out  # a recorded run names the peer's version
    else:
        assert "peer missing: diffusers" in out
    assert "## 2. Inside a ComfyUI sampling run: skipped" in out
    assert "target: ours <= 4 ms per step" in out and "n/a (targets are for CUDA)" in out
    assert "outputs agree with the reference: yes" in out
    tolerance = re.findall(
        r"^outputs: (\d+) residuals; max abs diff vs the fp32 eager reference .*, tolerance (.+) of max \|ref\| for (.+):$",
        out,
        flags=re.M,
    )
    expected = (f"{bench.REL_TOL[torch.float32]:g}", "float32")
    assert tolerance == [(str(bench.TINY[f].num_residuals), *expected) for f in ("sd15", "sdxl")], out
    assert f"({len(report.agree)} checks; missing: comfyui{')' if peers else ', diffusers)'}" in out  # the summary
    assert "device: " in out and "affordance: " in out  # the header
    checked = 0
    for section in out.split("## 1. ControlNet forward per step: ")[1:]:
        family = section.split(" ", 1)[0]
        for mine, peer, r in re.findall(r"^  (.+?) vs (.+?): ([\d.]+)x \(", section, flags=re.M):
            assert float(r) == pytest.approx(report.forward_ms[family, mine] / report.forward_ms[family, peer], abs=0.0051)
            checked += 1
    assert checked == 4 * len(peers) + 1  # ours and ours x2 against each peer, per family; ours vs all rows (SD1.5)


def test_ratio_wording(bench):
    """Ours / peer, with the speed-up or slow-down it means: the headline figure of every comparison."""
    assert bench.fmt_ratio(2.0, 8.0) == "0.25x (ours 4.00x faster)"
    assert bench.fmt_ratio(6.0, 4.0) == "1.50x (ours 1.50x slower)"
    assert bench.fmt_ratio(3.0, 3.0) == "1.00x (ours 1.00x faster)"


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


# ----- behaviours found untested by mutation round 6 (each test fails on its mutant) ------------------------------
def _run(monkeypatch, capsys, *extra):
    seen = []
    monkeypatch.setattr(bench_speed, "forward_section", lambda family, size, opts, comfy, use_diffusers, report: seen.append(use_diffusers))
    report = bench_speed.main(["--device", "cpu", "--no-comfyui", "--xl-size", "0", *extra])
    return report, seen, capsys.readouterr().out


def test_diffusers_is_missing_only_when_left_out(monkeypatch, capsys):
    """diffusers is named missing only when --no-diffusers was given: a run that measures it does not list it."""
    pytest.importorskip("diffusers")
    report, seen, out = _run(monkeypatch, capsys)
    assert seen == [True] and "diffusers" not in report.missing and "peer missing: diffusers" not in out
    report, seen, out = _run(monkeypatch, capsys, "--no-diffusers")
    assert seen == [False] and report.missing["diffusers"] == "skipped (--no-diffusers)"


def test_each_implementation_line_says_ok(capsys, keep_torch_threads):
    """Each implementation's line says how far it is from the reference and 'ok' within tolerance."""
    bench_speed.main([*TINY_ARGS, "--xl-size", "0", "--no-comfyui", "--no-diffusers", "--threads", "1"])
    out = capsys.readouterr().out
    assert "DIFFERS" not in out
    for name in ("ours", "ours x2"):
        assert re.search(rf"^  {name} +[\d.e+-]+ \([\d.e+-]+ of max \|ref\|\)  ok$", out, re.M), out


def test_a_wrong_candidate_is_reported_as_differing(monkeypatch, capsys, keep_torch_threads):
    """Residuals beyond the tolerance are reported DIFFERS, recorded as not agreeing and named in the summary."""

    def wrong_compile(model, **kwargs):  # a "compiled" candidate whose residuals are 1.5x too large
        def run(*args, **kw):
            out = model(*args, **kw).as_list()

            class Result:
                def as_list(self):
                    return [o * 1.5 for o in out]

            return Result()

        return run

    monkeypatch.setattr(torch, "compile", wrong_compile)
    args = [*TINY_ARGS, "--xl-size", "0", "--no-comfyui", "--no-diffusers", "--compile", "eager", "--threads", "1"]
    report = bench_speed.main(args)
    out = capsys.readouterr().out
    assert report.agree["sd15 ours"] is True
    assert report.agree["sd15 ours compiled"] is False
    assert "DIFFERS" in out and "outputs agree with the reference: NO: sd15 ours compiled" in out


def test_default_batch_is_the_targets_batch():
    """A plain GPU run (no --batch) is issue 7's target setup (batch 2): PASS/MISS is printed, not n/a."""
    args = bench_speed.parse_args([])
    assert args.batch == 2
    opts = bench_speed.Options(device=torch.device("cuda"), dtype=torch.float16, models="full", batch=args.batch,
                               warmup=0, rounds=1, calls=1, steps=1, runs=1, seed=0)  # only read: no GPU needed
    assert bench_speed.off_target(opts, 512, 512) == ""


def test_a_comfyui_peer_that_cannot_be_built_is_named_with_why(monkeypatch, capsys):
    """As for diffusers: a ComfyUI peer that fails in a section is named with its reason where it happened."""
    def broken(*args, **kwargs):
        raise RuntimeError("no such layer")

    monkeypatch.setattr(bench_speed.C, "build_comfy", broken)
    opts = bench_speed.Options(device=torch.device("cpu"), dtype=torch.float32, models="tiny", batch=2, warmup=0,
                               rounds=1, calls=1, steps=1, runs=1, seed=0)
    report = bench_speed.Report()
    bench_speed.forward_section("sd15", 64, opts, object(), False, report)
    out = capsys.readouterr().out
    why = "building ComfyUI's ControlNet failed: RuntimeError: no such layer"
    assert report.missing["comfyui (sd15)"] == why
    assert f"peer missing: comfyui (sd15): {why}" in out
    assert "ours vs comfyui: peer missing, no ratio" in out and ("sd15", "comfyui") not in report.forward_ms


def test_cpu_defaults(monkeypatch, capsys):
    """The documented CPU defaults of a plain run (warm-up 1, rounds 3, calls 2, steps 4, runs 2, tiny models, fp32,
    64 / 128 px): every other test passes these options itself."""
    seen = []
    monkeypatch.setattr(bench_speed, "forward_section", lambda family, size, opts, *a: seen.append((family, size, opts)))
    bench_speed.main(["--device", "cpu", "--no-comfyui", "--no-diffusers"])
    capsys.readouterr()
    assert [(f, s) for f, s, _ in seen] == [("sd15", 64), ("sdxl", 128)]
    opts = seen[0][2]
    assert (opts.warmup, opts.rounds, opts.calls, opts.steps, opts.runs) == (1, 3, 2, 4, 2)
    assert (opts.models, opts.dtype, opts.batch, opts.variants) == ("tiny", torch.float32, 2, False)


def test_the_two_controlnets_have_their_own_weights(monkeypatch, capsys, keep_torch_threads):
    """The x2 rows time and check two different ControlNets (the same weights twice would hide one applied twice),
    and --seed chooses them."""
    seeds: list[int] = []
    real = bench_speed.C.random_state_dict

    def recording(config, **kw):
        seeds.append(kw["seed"])
        return real(config, **kw)

    monkeypatch.setattr(bench_speed.C, "random_state_dict", recording)
    args = [*TINY_ARGS, "--xl-size", "0", "--no-comfyui", "--no-diffusers", "--parts", "forward", "--threads", "1"]
    bench_speed.main([*args, "--seed", "5"])
    first = list(seeds)
    assert len(first) == 2 and len(set(first)) == 2, first
    seeds.clear()
    bench_speed.main([*args, "--seed", "6"])
    assert len(seeds) == 2 and not set(seeds) & {first[0]}, (first, seeds)


def test_hint_encoder_figure_is_milliseconds_per_call(bench, capsys, monkeypatch, keep_torch_threads):
    """'ours hint encoder alone' is per call: with a clock that advances 5 ms per encoding, 5.00 ms at --calls 2
    (the GPU run uses 20 calls, so a total, or a product with the calls, would read 400 times too large)."""
    now = [0.0]
    encode = ControlNet.encode_hint

    def timed_encode(self, hint):
        now[0] += 0.005
        return encode(self, hint)

    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(ControlNet, "encode_hint", timed_encode)
    bench.main([*TINY_ARGS, "--calls", "2", "--xl-size", "0", "--no-comfyui", "--no-diffusers", "--threads", "1"])
    assert "ours hint encoder alone: 5.00 ms (paid once per sampling run, not per step)" in capsys.readouterr().out


def test_cfg_step_repeats_the_first_half_and_names_each_rows_twin(bench):
    x, t, hint = torch.randn(4, 4, 2, 2), torch.tensor([9.0, 8.0, 7.0, 6.0]), torch.rand(4, 3, 16, 16)
    sx, st, shint, shared = bench.cfg_step(x, t, hint, None)
    assert shared == (0, 1, 0, 1)
    for got, given in ((sx, x), (st, t), (shint, hint)):
        assert torch.equal(got[:2], given[:2]) and torch.equal(got[2:], given[:2])
    assert bench.cfg_step(x, t, hint, torch.randn(4, 8))[3] is None  # SDXL's label: nothing shared
    odd = bench.cfg_step(x[:3], t[:3], hint[:3], None)
    assert odd[3] is None and torch.equal(odd[0], x[:3]) and torch.equal(odd[1], t[:3])

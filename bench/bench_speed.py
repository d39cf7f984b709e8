"""Issue 7's speed figures in one process: ControlNet cost per step, alone and inside a ComfyUI sampling run.

Every implementation gets the SAME seeded random weights (nothing is downloaded) and the same inputs.

1. Forward cost per step (batch ``--batch`` = cond + uncond), SD1.5 at ``--size`` and SDXL at ``--xl-size``.
   The inputs are a CFG step's as ComfyUI batches them: the same latents, timesteps and hints in the cond and the
   uncond half, each row its own text (and SDXL label):

     ours          ``model(x, None, t, context, y, encoded_hint=..., shared=...)``: the hint encoded once per
                   run, and the layers before the first cross-attention run once for each cond/uncond pair, as
                   the sampler integration does (SD1.x/2.x; SDXL's label differs per row, so nothing is shared)
     ours all rows ours computing every row (SD1.x/2.x only): what the sharing saves
     comfyui       ``comfy.cldm.cldm.ControlNet`` built by ComfyUI's ``load_controlnet_state_dict``
     diffusers     ``diffusers.ControlNetModel`` (weights renamed by ``original_to_diffusers``)
     ... x2        two ControlNets (different weights) on the same latent, residuals summed: two of ours back
                   to back, two of ComfyUI's (what its chained controls compute), diffusers'
                   ``MultiControlNetModel``

   Before timing, every output is compared with an fp32 eager reference (ours in fp32, hint encoder in the
   call; for x2 the sum of two) and with ours. Then median ms per call, ratios to each peer, and PASS/MISS
   against the issue's H100 targets on CUDA.

2. Inside a real ComfyUI sampling run (``comfy.sample.sample``, euler, normal schedule, cfg 7: cond and uncond
   in one model call), a seeded random SD1.5 UNet built with ComfyUI's own classes, conditioning tensors
   passed directly (no CLIP, no VAE): UNet only, ComfyUI's ControlNet (``comfy.controlnet.load_controlnet`` +
   ComfyUI's ``ControlNetApplyAdvanced``), ours (``load_control`` + ``apply_control``, the logic of
   AST_ControlNetLoader and AST_ApplyControlNet), two chained ControlNets of each, and ours with "ControlNet is
   more important" (the negative rows' control is zero, so they are skipped; its latents are checked against
   the same soft weights on the positive only, sampled once, not timed). Per step is the median
   interval between the sampler's per-step callbacks (GPU synchronised), so the one-off work of a run (loading
   weights, preparing the hint) is left out; the whole ``sample`` call is printed too. Every run starts with all
   models unloaded; on CUDA its peak allocated memory is printed, and the GPU memory in use at the step ends as
   the driver sees it. With ``--comfy-dynamic-vram auto`` (the default) a ComfyUI 0.12+ on an NVIDIA GPU is
   switched to dynamic VRAM as its own server start-up does (its models, its ControlNet included, then load
   through ``ModelPatcherDynamic``, whose weights PyTorch's allocator does not see), and one more variant runs:
   ours with ComfyUI's ``CoreModelPatcher`` ("ours dynamic"), the choice between the two patchers for our
   loader; a failure of that variant is reported and leaves the others.

On the CPU the models default to reduced architectures (``--models tiny``, seconds per figure), and targets
print as n/a. Missing peers (no ComfyUI checkout, diffusers not importable) are reported and skipped.

  python -P bench/bench_speed.py --comfyui /path/to/ComfyUI             # GPU: full models, 512 / 1024 px, fp16
  python -P bench/bench_speed.py --device cpu --comfyui /path/to/ComfyUI   # CPU: tiny models, 64 / 128 px, 4 steps
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch

from affordance.bench import _common as C
from affordance.bench import _dynamic_vram as DV
from affordance.controlnet import SD15, SDXL, ControlNet, ControlNetConfig
from affordance.controlnet.weights import ControlWeights, Preset

Outputs = list[torch.Tensor]
StepInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]  # x, t, context, y (SDXL)

# Reduced architectures for the CPU: each family's text width, label vector and attention layout, two levels of
# one block. SD1.5's keeps 320 channels so that ComfyUI's loader recognises it as SD15 (8 heads, as ours); the
# SDXL one matches no ComfyUI class and gets ComfyUI's default 64-wide heads, which are SDXL's.
TINY = {
    "sd15": replace(SD15, channel_mult=(1, 1), num_res_blocks=(1, 1), transformer_depth=(1, 1)),
    "sdxl": replace(
        SDXL,
        model_channels=128,
        channel_mult=(1, 2),
        num_res_blocks=(1, 1),
        transformer_depth=(0, 2),
        transformer_depth_middle=2,
    ),
}
FULL = {"sd15": SD15, "sdxl": SDXL}
# Issue 7 (NVIDIA H100, fp16, batch 2; SD1.5 at 512 px, SDXL at 1024 px) and the peers' anchors on that card.
TARGET_MS = {("sd15", "ours"): 4.0, ("sd15", "ours x2"): 8.0, ("sdxl", "ours"): 15.0}
ANCHOR_MS = {
    ("sd15", "ours"): "ComfyUI 11.0 ms, diffusers ~10 ms",
    ("sd15", "ours x2"): "peers 21-25 ms",
    ("sdxl", "ours"): "ComfyUI 26.3 ms",
}
TARGET_SIZE = {"sd15": 512, "sdxl": 1024}
TARGET_STEP_RATIO = 1.15
ANCHOR_COMFY_STEP_RATIO = 1.47
# Agreement with the fp32 reference: max abs difference over max |reference|.
REL_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
# Sampled latents, ours vs ComfyUI's ControlNet: max abs difference over the control's own effect. The fp16 and
# bf16 bounds are first guesses until a GPU run shows how far half-precision sampling drifts.
GUESS = "ours more important"  # sampling variant: "ControlNet is more important" (negative rows skipped)
GUESS_REFERENCE = "ours soft, positive only"
ALL_ROWS = "ours all rows"  # forward variant: ours computing every row, the cond/uncond rows' twins too
DYNAMIC = "ours dynamic"  # sampling variant under ComfyUI's dynamic VRAM: ours with ComfyUI's CoreModelPatcher
SAMPLE_TOL = {torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 1e-1}
CFG = 7.0


@dataclass
class Options:
    device: torch.device
    dtype: torch.dtype
    models: str
    batch: int
    warmup: int
    rounds: int
    calls: int
    steps: int
    runs: int
    seed: int
    variants: bool = False  # also time CUDA graphs and channels-last (on the CPU graphs fall back to eager)
    compile: str | None = None  # torch.compile backend for the compiled candidates (None: not timed)
    dynamic_vram: str = "off"  # ComfyUI's dynamic VRAM in the sampling part: "auto" or "off" (bench/_dynamic_vram.py)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def config(self, family: str) -> ControlNetConfig:
        return (FULL if self.models == "full" else TINY)[family]


@dataclass
class Report:
    """What the run found, for the summary and for tests."""

    forward_ms: dict[tuple[str, str], float] = field(default_factory=dict)  # (family, implementation) -> ms
    agree: dict[str, bool] = field(default_factory=dict)  # check name -> within tolerance
    step_ms: dict[str, float] = field(default_factory=dict)  # sampling variant -> median ms per step
    peak_mib: dict[str, float] = field(default_factory=dict)  # sampling variant -> peak allocated MiB (CUDA)
    reserved_mib: dict[str, float] = field(default_factory=dict)  # sampling variant -> peak reserved MiB (CUDA)
    device_mib: dict[str, float] = field(default_factory=dict)  # sampling variant -> GPU memory in use, driver's view
    missing: dict[str, str] = field(default_factory=dict)
    off_target: dict[str, str] = field(default_factory=dict)  # section -> why not the targets' setup ("" if it is)


def fmt_ratio(mine: float, peer: float) -> str:
    r = mine / peer
    return f"{r:.2f}x ({'ours ' + format(1 / r, '.2f') + 'x faster' if r <= 1 else 'ours ' + format(r, '.2f') + 'x slower'})"


def verdict(ok: bool, off: str) -> str:
    """PASS or MISS, or n/a with the reason when the run is not in the targets' setup (``off`` non-empty)."""
    return f"n/a ({off})" if off else ("PASS" if ok else "MISS")


def off_target(opts: Options, size: int, target_size: int) -> str:
    """Why this run's setup is not the one of issue 7's targets; empty when it is."""
    if not opts.cuda:
        return "targets are for CUDA"
    wrong = [
        what
        for what, bad in (
            (f"{opts.models} models", opts.models != "full"),
            (f"batch {opts.batch}", opts.batch != 2),
            (opts.dtype_name, opts.dtype != torch.float16),
            (f"{size} px", size != target_size),
        )
        if bad
    ]
    return f"targets are for full models, batch 2, fp16, {target_size} px; here {', '.join(wrong)}" if wrong else ""


def add(a: Outputs, b: Outputs) -> Outputs:
    return [x + y for x, y in zip(a, b)]


# ----- 1. forward cost per step --------------------------------------------------------------------------------
def forward_section(family: str, size: int, opts: Options, comfy: Any, use_diffusers: bool, report: Report) -> None:
    config = opts.config(family)
    dev, dtype = opts.device, opts.dtype
    print(
        f"\n## 1. ControlNet forward per step: {family} ({opts.models} architecture), {size}x{size} px, batch {opts.batch}, {opts.dtype_name}"
    )
    t0 = time.perf_counter()
    sds = [C.random_state_dict(config, seed=opts.seed + 10 * i, dtype=dtype) for i in range(2)]
    print(
        f"weights: two ControlNets of {sum(v.numel() for v in sds[0].values()) / 1e6:.1f} M parameters, "
        f"seeded random (made in {time.perf_counter() - t0:.1f} s)"
    )
    inp = C.make_inputs(config, opts.batch, size, dev, dtype, opts.seed + 1)
    x, t, hint, shared = cfg_step(inp["x"], inp["t"], inp["hint"], inp["y"])
    ctx, y = inp["context"], inp["y"]
    if shared is not None:
        print(
            f"inputs: one CFG step as ComfyUI batches it: {opts.batch // 2} latent(s) at one timestep with one hint in both "
            "the cond and the uncond half, each row its own text; ours computes the layers before the first "
            f"cross-attention once per latent (shared={shared}); 'ours all rows' computes every row"
        )
    else:
        reason = "SDXL's label differs per row" if y is not None else "an odd batch is no cond/uncond pair"
        print(f"inputs: every row computed by ours ({reason})")

    with torch.inference_mode():
        refs: list[Outputs] = []
        for sd in sds:  # fp32 eager reference: ours, hint encoder inside the call
            ref_model = C.build_ours(config, {k: v.float() for k, v in sd.items()}, dev)
            f32 = [None if v is None else v.float() for v in (x, hint, t, ctx, y)]
            refs.append([o.float() for o in ref_model(*f32).as_list()])
            del ref_model
        ref2 = add(refs[0], refs[1])
        gc.collect()

        ours = [C.build_ours(config, sd, dev) for sd in sds]
        encoded = [m.encode_hint(hint) for m in ours]
        single: dict[str, Callable[[], Outputs]] = {}
        double: dict[str, Callable[[], Outputs]] = {}

        def run_ours(i: int, rows: tuple[int, ...] | None = shared) -> Outputs:
            return ours[i](x, None, t, ctx, y, encoded_hint=encoded[i], shared=rows).as_list()

        single["ours"] = lambda: run_ours(0)
        if shared is not None:  # what sharing the cond and uncond rows saves
            single[ALL_ROWS] = lambda: run_ours(0, None)
        double["ours x2"] = lambda: add(run_ours(0), run_ours(1))
        if opts.variants:  # candidates for the default, measured beside it (by default on CUDA only)
            add_cuda_variants(config, ours, encoded, (x, t, ctx, y), shared, single, double)
        if opts.compile:  # fused kernels (normalisation + activation...) from torch.compile, when asked for
            add_compiled_variants(ours[0], encoded[0], (x, t, ctx, y), shared, opts, single, report, family)

        if comfy is not None:
            if opts.models == "tiny" and family == "sdxl":
                print(
                    "(ComfyUI logs 'no match' for this reduced SDXL: it builds it from its default config, 64-wide heads as SDXL's)"
                )
            try:
                cms = [C.build_comfy(comfy, sd, dev, dtype) for sd in sds]

                def run_comfy(i: int) -> Outputs:
                    out = cms[i](x=x, hint=hint, timesteps=t, context=ctx, y=y)
                    return [*out["output"], *out["middle"]]

                single["comfyui"] = lambda: run_comfy(0)
                double["comfyui x2"] = lambda: add(run_comfy(0), run_comfy(1))
            except Exception as exc:
                report.missing[f"comfyui ({family})"] = why = (
                    f"building ComfyUI's ControlNet failed: {type(exc).__name__}: {exc}"
                )
                print(f"peer missing: comfyui ({family}): {why}")
        if use_diffusers:
            try:
                dms = [C.build_diffusers(config, sd, dev) for sd in sds]
                multi = C.diffusers_multi_controlnet()(dms)

                def run_diffusers() -> Outputs:
                    down, mid = dms[0](
                        x,
                        t,
                        encoder_hidden_states=ctx,
                        controlnet_cond=hint,
                        added_cond_kwargs=inp["added"],
                        return_dict=False,
                    )
                    return [*down, mid]

                def run_multi() -> Outputs:
                    down, mid = multi(
                        x,
                        t,
                        encoder_hidden_states=ctx,
                        controlnet_cond=[hint, hint],
                        conditioning_scale=[1.0, 1.0],
                        added_cond_kwargs=inp["added"],
                        return_dict=False,
                    )
                    return [*down, mid]

                single["diffusers"] = run_diffusers
                double["diffusers x2"] = run_multi
            except Exception as exc:
                report.missing[f"diffusers ({family})"] = why = (
                    f"building diffusers' ControlNetModel failed: {type(exc).__name__}: {exc}"
                )
                print(f"peer missing: diffusers ({family}): {why}")
        del sds
        gc.collect()

        tol = REL_TOL[dtype]
        scale = max(float(r.abs().max()) for r in refs[0])
        scale2 = max(float(r.abs().max()) for r in ref2)
        print(
            f"outputs: {len(refs[0])} residuals; max abs diff vs the fp32 eager reference (max |ref| {scale:.4g}, "
            f"x2: {scale2:.4g}), tolerance {tol:g} of max |ref| for {opts.dtype_name}:"
        )
        mine = {"ours": single["ours"](), "ours x2": double["ours x2"]()}
        for name, fn in {**single, **double}.items():
            try:
                out = fn()
            except Exception as exc:  # a peer that cannot run here is reported and left out, never fatal
                report.missing[f"{name} ({family})"] = f"its forward failed: {type(exc).__name__}: {exc}"
                print(f"  {name:<13} forward failed ({type(exc).__name__}: {exc}); left out")
                (double if name.endswith("x2") else single).pop(name)
                continue
            ref, s = (ref2, scale2) if name.endswith("x2") else (refs[0], scale)
            d = C.max_abs_diff(out, ref)
            dm = C.max_abs_diff(out, mine["ours x2" if name.endswith("x2") else "ours"])
            ok = d is not None and d <= tol * s
            report.agree[f"{family} {name}"] = ok
            if d is None:
                print(f"  {name:<13} residual shapes differ: {[tuple(o.shape) for o in out]}  DIFFERS")
                continue
            vs_ours = "" if name.startswith("ours") else f"; vs ours {dm:.3g}"
            print(f"  {name:<13} {d:.3g} ({d / s:.2g} of max |ref|{vs_ours})  {'ok' if ok else 'DIFFERS'}")
        del mine, refs, ref2

        # set after building the peers (ComfyUI may change it): no autotuning inside the timings
        torch.backends.cudnn.benchmark = False
        t0 = time.perf_counter()
        for _ in range(opts.calls):
            ours[0].encode_hint(hint)
        C.sync(dev)
        hint_ms = (time.perf_counter() - t0) / opts.calls * 1000
        per_call = C.interleaved_ms({**single, **double}, dev, warmup=opts.warmup, rounds=opts.rounds, calls=opts.calls)

    med = {name: C.median(v) for name, v in per_call.items()}
    for name, v in med.items():
        report.forward_ms[family, name] = v
    off = off_target(opts, size, TARGET_SIZE[family])
    report.off_target[family] = off
    print(
        f"\nms per step: median of {opts.rounds} rounds x {opts.calls} calls after {opts.warmup} warm-up call(s), "
        "implementations interleaved per round"
    )
    print(f"{'implementation':<14} {'median ms':>10} {'min':>8} {'max':>8}")
    for name, values in per_call.items():
        print(f"{name:<14} {med[name]:>10.2f} {min(values):>8.2f} {max(values):>8.2f}")
    print(f"ours hint encoder alone: {hint_ms:.2f} ms (paid once per sampling run, not per step)")
    print("ratios (ours / peer; < 1 means ours is faster):")
    for mine_name, peers in (
        ("ours", ("comfyui", "diffusers")),
        ("ours x2", ("comfyui x2", "diffusers x2")),
        ("ours graph", ("comfyui", "diffusers", "ours")),
        ("ours graph x2", ("comfyui x2", "diffusers x2", "ours x2")),
        ("ours x2 streams", ("ours x2",)),
        ("ours graph x2 streams", ("ours graph x2", "comfyui x2")),
        ("ours cl", ("ours",)),
        ("ours graph cl", ("ours graph",)),
        ("ours compiled", ("ours", "ours graph", "comfyui")),
        ("ours compiled graph", ("ours graph", "ours compiled", "comfyui")),
    ):
        if mine_name not in med:
            continue
        for peer in peers:
            if peer in med:
                print(f"  {mine_name} vs {peer}: {fmt_ratio(med[mine_name], med[peer])}")
            else:
                print(f"  {mine_name} vs {peer}: peer missing, no ratio")
    if ALL_ROWS in med:
        print(f"  ours vs {ALL_ROWS}: {fmt_ratio(med['ours'], med[ALL_ROWS])}")
    for (fam, name), limit in TARGET_MS.items():
        for variant in (name, *(name.replace("ours", f"ours {how}") for how in ("graph", "compiled", "compiled graph"))):
            if fam == family and variant in med:
                print(
                    f"target: {variant} <= {limit:g} ms per step (H100; {ANCHOR_MS[family, name]}): {med[variant]:.2f} ms "
                    f"{verdict(med[variant] <= limit, off)}"
                )


def add_cuda_variants(
    config: ControlNetConfig,
    ours: list[ControlNet],
    encoded: list[torch.Tensor],
    inputs: StepInputs,
    shared: tuple[int, ...] | None,
    single: dict[str, Callable[[], Outputs]],
    double: dict[str, Callable[[], Outputs]],
) -> None:
    """ours graph: CUDA-graph replay (AFFORDANCE_CUDA_GRAPHS=1); ours cl: channels-last weights and inputs; both;
    on CUDA also two ControlNets on two streams at once (eager and graphed)."""
    from affordance.controlnet.graphs import CudaGraphBackend, GraphedControlNet

    x, t, ctx, y = inputs
    # the second recording may replay at the same time as the first (x2 streams): its own capture stream, so
    # that the two do not share one cuBLAS workspace
    own = CudaGraphBackend(torch.cuda.Stream(x.device)) if x.is_cuda else None
    graphs = [GraphedControlNet(ours[0]), GraphedControlNet(ours[1], own)]

    def replay(i: int) -> Outputs:  # every residual is asked for, so none is None
        return cast(Outputs, graphs[i](x, t, ctx, y, encoded[i], None, shared))

    single["ours graph"] = lambda: replay(0)
    double["ours graph x2"] = lambda: add(replay(0), replay(1))
    cl = torch.channels_last
    cl_models = [copy_channels_last(m) for m in ours[:1]]
    x_cl, enc_cl = x.contiguous(memory_format=cl), encoded[0].contiguous(memory_format=cl)
    cl_graph = GraphedControlNet(cl_models[0])
    single["ours cl"] = lambda: cl_models[0](x_cl, None, t, ctx, y, encoded_hint=enc_cl, shared=shared).as_list()
    single["ours graph cl"] = lambda: cast(Outputs, cl_graph(x_cl, t, ctx, y, enc_cl, None, shared))
    if x.is_cuda:  # two ControlNets at once: the second on a side stream, joined before the sum
        side = torch.cuda.Stream(x.device)

        def concurrently(first: Callable[[], Outputs], second: Callable[[], Outputs], record: bool = True) -> Outputs:
            main = torch.cuda.current_stream(x.device)
            side.wait_stream(main)
            with torch.cuda.stream(side):
                b = second()
            a = first()
            main.wait_stream(side)
            for r in b if record else ():  # fresh tensors made on the side stream, read on the main one
                r.record_stream(main)
            return add(a, b)

        double["ours x2 streams"] = lambda: concurrently(
            lambda: ours[0](x, None, t, ctx, y, encoded_hint=encoded[0], shared=shared).as_list(),
            lambda: ours[1](x, None, t, ctx, y, encoded_hint=encoded[1], shared=shared).as_list(),
        )
        double["ours graph x2 streams"] = lambda: concurrently(
            lambda: replay(0),
            lambda: replay(1),
            record=False,  # a recording's static outputs are never freed: nothing to record
        )


def add_compiled_variants(
    model: torch.nn.Module,
    encoded: torch.Tensor,
    inputs: StepInputs,
    shared: tuple[int, ...] | None,
    opts: Options,
    single: dict[str, Callable[[], Outputs]],
    report: Report,
    family: str,
) -> None:
    """ours compiled: ``torch.compile`` of our forward (one graph, no break allowed), with ``opts.compile``'s
    backend; on CUDA with inductor also ``ours compiled graph`` (mode ``reduce-overhead``: inductor's kernels
    replayed as CUDA graphs). Each is compiled here, on its first call, and the compile time is printed; one that
    fails to compile is reported and left out, never fatal."""
    import copy

    backend = opts.compile
    if not backend:  # none asked for
        return
    x, t, ctx, y = inputs
    modes: dict[str, str | None] = {"ours compiled": None}
    if x.is_cuda and backend == "inductor":
        modes["ours compiled graph"] = "reduce-overhead"
    for name, mode in modes.items():
        # a copy per mode: each compiled module keeps its own code cache, so neither recompiles for the other
        compiled = torch.compile(copy.deepcopy(model), backend=backend, mode=mode, fullgraph=True)

        def run(c: Callable[..., Any] = compiled) -> Outputs:
            return c(x, None, t, ctx, y, encoded_hint=encoded, shared=shared).as_list()

        t0 = time.perf_counter()
        try:
            for _ in range(3):  # reduce-overhead records its graphs on the second and third calls
                run()
            C.sync(x.device)
        except Exception as exc:
            report.missing[f"{name} ({family})"] = f"compiling failed: {type(exc).__name__}: {exc}"
            print(f"{name}: compiling failed ({type(exc).__name__}: {exc}); left out")
            continue
        how = f"backend {opts.compile}" + (f", mode {mode}" if mode else "")
        print(f"{name}: torch.compile ({how}) made and warmed up in {time.perf_counter() - t0:.1f} s (not timed below)")
        single[name] = run


def cfg_step(
    x: torch.Tensor, t: torch.Tensor, hint: torch.Tensor, y: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...] | None]:
    """A CFG step's inputs as ComfyUI batches one: the first half's latents, timesteps and hints in both halves
    (cond, then uncond), each row keeping its own text (and SDXL label). An odd batch is returned unchanged.

    Returns:
        ``x``, ``t``, ``hint`` and the ``shared`` our forward gets (each row's first twin), ``None`` for an odd
        batch or with SDXL's label (which differs per row, so nothing is shared).
    """
    n = x.shape[0]
    if n % 2:
        return x, t, hint, None
    per = n // 2

    def twice(v: torch.Tensor) -> torch.Tensor:
        return torch.cat([v[:per], v[:per]])

    return twice(x), twice(t), twice(hint), (None if y is not None else tuple(r % per for r in range(n)))


def copy_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose 4-D weights are channels-last (the original is untouched)."""
    import copy

    # Module.to takes memory_format (it converts the 4-D parameters and buffers); torch's stubs do not state it
    return copy.deepcopy(model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]


# ----- 2. inside a ComfyUI sampling run --------------------------------------------------------------------------
_BASE: dict[torch.device, tuple[int, int]] = {}  # allocated and reserved bytes when the peaks were last reset


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring the peaks from here, above what is allocated and reserved now (the bench's own tensors,
    library workspaces kept from earlier sections), which every run has alike."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        _BASE[device] = (torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device))


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak allocated GPU memory since :func:`reset_peak_memory`, above what was allocated then; ``None`` on the
    CPU (not measured)."""
    if device.type != "cuda":
        return None
    return (torch.cuda.max_memory_allocated(device) - _BASE.get(device, (0, 0))[0]) / 2**20


def peak_reserved_mib(device: torch.device) -> float | None:
    """Peak GPU memory held by PyTorch's allocator since :func:`reset_peak_memory`, above what it held then (the run
    starts with its cache emptied); ``None`` on the CPU. Unlike the allocated peak it counts memory that a
    CUDA-graph recording keeps for its intermediate tensors between replays, which no other allocation can use
    meanwhile."""
    if device.type != "cuda":
        return None
    return (torch.cuda.max_memory_reserved(device) - _BASE.get(device, (0, 0))[1]) / 2**20


@dataclass
class SampledRun:
    """One sampling run: the latents, the step intervals and the whole call in ms, and its memory (CUDA only):
    peak allocated and reserved by PyTorch above the run's start, and the most GPU memory in use at a step's end
    as the driver sees it (comfy-aimdo's included), above the run's start."""

    latents: torch.Tensor
    intervals: list[float]
    total_ms: float
    peak_mib: float | None
    reserved_mib: float | None
    device_mib: float | None


def device_verdict(mine: str, theirs: str, used: dict[str, float]) -> str:
    """``A vs B MiB in use  PASS/MISS``: GPU memory in use at the step ends (the driver's view), no higher."""
    return f"{used[mine]:.0f} vs {used[theirs]:.0f} MiB in use  {verdict(used[mine] <= used[theirs], '')}"


def memory_verdict(mine: str, theirs: str, alloc: dict[str, float], reserved: dict[str, float]) -> str:
    """``A vs B MiB allocated, C vs D MiB reserved  PASS/MISS``: the memory target holds when both do."""
    ok = alloc[mine] <= alloc[theirs] and (mine not in reserved or reserved[mine] <= reserved[theirs])
    text = f"{alloc[mine]:.0f} vs {alloc[theirs]:.0f} MiB allocated"
    if mine in reserved and theirs in reserved:
        text += f", {reserved[mine]:.0f} vs {reserved[theirs]:.0f} MiB reserved"
    return f"{text}  {verdict(ok, '')}"


def comfy_unet_config(config: ControlNetConfig) -> dict[str, Any]:
    """ComfyUI's ``unet_config`` of the UNet whose encoder ``config`` copies (output depths per level, level 0 first)."""
    depths, i = [], 0
    for n in config.num_res_blocks:
        depths.append(config.transformer_depth[i])
        i += n
    return {
        "use_checkpoint": False,
        "image_size": 32,
        "in_channels": config.in_channels,
        "out_channels": config.in_channels,
        "model_channels": config.model_channels,
        "num_res_blocks": list(config.num_res_blocks),
        "channel_mult": list(config.channel_mult),
        "transformer_depth": list(config.transformer_depth),
        "transformer_depth_middle": config.transformer_depth_middle,
        "transformer_depth_output": [d for d, n in zip(depths, config.num_res_blocks) for _ in range(n + 1)],
        "context_dim": config.context_dim,
        "use_linear_in_transformer": config.use_linear_in_transformer,
        "num_heads": config.num_heads,
        "num_head_channels": config.num_head_channels,
        "adm_in_channels": config.adm_in_channels,
        "use_spatial_transformer": True,
        "legacy": False,
        "use_temporal_resblock": False,
        "use_temporal_attention": False,
    }


def comfy_apply_node(root: Path) -> tuple[Callable[..., tuple], str]:
    """ComfyUI's ``ControlNetApplyAdvanced.apply_controlnet``; our ``apply_control`` (same steps) if unavailable."""
    from affordance.nodes.apply import apply_control

    try:
        if "nodes" not in sys.modules:
            importlib.import_module("utils.extra_config")  # as ComfyUI's main.py: its utils package before nodes.py
        nodes = importlib.import_module("nodes")
        if Path(nodes.__file__ or "").resolve() != root / "nodes.py":
            raise ImportError(f"'nodes' is {nodes.__file__}, not ComfyUI's")
        return nodes.ControlNetApplyAdvanced().apply_controlnet, "ComfyUI's ControlNetApplyAdvanced"
    except Exception as exc:
        return apply_control, f"our apply_control (ComfyUI's nodes.py not importable: {type(exc).__name__}: {exc})"


def sampling_section(comfy: Any, root: Path, size: int, opts: Options, report: Report, folder: Path) -> None:
    """Section 2; the two ControlNet files are written to ``folder``."""
    for module in ("comfy.model_patcher", "comfy.sample", "comfy.supported_models"):  # into the `comfy` package
        importlib.import_module(module)
    from safetensors.torch import save_file

    from affordance.nodes.apply import apply_control
    from affordance.nodes.loaders import load_control

    mm = comfy.model_management
    dev, dtype = opts.device, opts.dtype
    config = opts.config("sd15")
    latent_batch = max(1, opts.batch // 2)
    print(
        f"\n## 2. Inside a ComfyUI sampling run: sd15 ({opts.models} architecture), {size}x{size} px, latent batch "
        f"{latent_batch} (cond + uncond: model batch {2 * latent_batch}), {opts.dtype_name}, {opts.steps} steps euler/normal, cfg {CFG:g}"
    )
    # before any ComfyUI model is made: ComfyUI picks the patcher class as it loads a model
    dynamic_vram, dynamic_line = DV.enable(comfy, dev, opts.dynamic_vram)
    t0 = time.perf_counter()
    model_config = comfy.supported_models.SD15(comfy_unet_config(config))
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({}, device=torch.device("cpu"))
    unet_sd = C.random_module_weights(model.diffusion_model, seed=opts.seed + 100, dtype=dtype)
    model.diffusion_model.load_state_dict(unet_sd, strict=True)
    del unet_sd
    model.eval().requires_grad_(False)
    # the class ComfyUI's own loaders use: ModelPatcherDynamic where dynamic VRAM is on, as in its server
    patcher = DV.core_patcher()(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    n_unet = sum(p.numel() for p in model.diffusion_model.parameters())
    apply_theirs, apply_label = comfy_apply_node(root)

    g = torch.Generator().manual_seed(opts.seed + 2)
    positive = [[torch.randn(latent_batch, 77, config.context_dim, generator=g), {}]]
    negative = [[torch.randn(latent_batch, 77, config.context_dim, generator=g), {}]]
    image = torch.rand(latent_batch, size, size, 3, generator=g)
    latent = torch.zeros(latent_batch, 4, size // 8, size // 8)
    files = []
    for i in range(2):
        path = folder / f"controlnet_{'ab'[i]}.safetensors"
        save_file(C.random_state_dict(config, seed=opts.seed + 10 * i, dtype=dtype), str(path))
        files.append(path)
    theirs = [comfy.controlnet.load_controlnet(str(p)) for p in files]
    ours = [load_control(p) for p in files]  # on the CPU its tensors map the file: keep it until the end
    if any(c is None for c in theirs):
        raise RuntimeError("ComfyUI's load_controlnet did not recognise the ControlNet file")
    print(
        f"UNet: {n_unet / 1e6:.1f} M parameters, ComfyUI SD15 model ({type(model.diffusion_model).__name__}), seeded random; "
        f"ControlNets: 2 files of {sum(p.numel() for p in ours[0].network.parameters()) / 1e6:.1f} M parameters "
        f"(made in {time.perf_counter() - t0:.1f} s)"
    )
    print(
        f"ComfyUI ControlNet: weights {theirs[0].control_model.dtype}, compute {theirs[0].manual_cast_dtype or theirs[0].control_model.dtype}; "
        f"ours: weights {ours[0].network.time_embed[0].weight.dtype}, compute {ours[0].network.dtype}; "
        f"ComfyUI attention {comfy.ldm.modules.attention.optimized_attention.__name__}"
    )
    print(f"ComfyUI's control applied with {apply_label}; ours with apply_control (AST_ApplyControlNet)")
    print(f"ComfyUI's dynamic VRAM: {dynamic_line}")
    theirs_patcher = getattr(theirs[0], "control_model_wrapped", None)
    print(
        f"model patchers: UNet {type(patcher).__name__}, ComfyUI's ControlNet {type(theirs_patcher).__name__}, "
        f"ours {type(ours[0].patcher).__name__}"
    )

    def chain(apply: Callable[..., tuple], controls: list) -> tuple[list, list]:
        pos, neg = positive, negative
        for c in controls:
            pos, neg = apply(pos, neg, c, image, 1.0, 0.0, 1.0)
        return pos, neg

    def soft(control: Any, preset: Preset) -> tuple[list, list]:
        return apply_control(positive, negative, control, image, 1.0, 0.0, 1.0, weights=ControlWeights(preset))

    variants = {
        "UNet only": (positive, negative),
        "ComfyUI ControlNet": chain(apply_theirs, theirs[:1]),
        "ours": chain(apply_control, ours[:1]),
        "ComfyUI ControlNet x2": chain(apply_theirs, theirs),
        "ours x2": chain(apply_control, ours),
        # "ControlNet is more important": the negative rows' control is zero, so they are never computed
        GUESS: soft(ours[0], Preset.CONTROLNET_MORE_IMPORTANT),
    }
    # its reference, sampled once and not timed: the same soft weights on the positive only (the negative has no
    # control, so ComfyUI runs cond and uncond as separate model calls)
    references = {GUESS_REFERENCE: (soft(ours[0], Preset.PROMPT_MORE_IMPORTANT)[0], negative)}
    if opts.variants:  # the same files with CUDA-graph replay on (AFFORDANCE_CUDA_GRAPHS=1)
        graphed = [load_control(p) for p in files]
        for c in graphed:
            c.cuda_graphs = True
        variants["ours graph"] = chain(apply_control, graphed[:1])
        variants["ours graph x2"] = chain(apply_control, graphed)
    if dynamic_vram:  # ours with the patcher class ComfyUI's own loaders use now: the choice for our loader
        dynamic = load_control(files[0])
        dynamic.patcher = DV.core_patcher()(
            dynamic.network, load_device=dynamic.patcher.load_device, offload_device=dynamic.patcher.offload_device
        )
        print(f"{DYNAMIC}: ours with {type(dynamic.patcher).__name__}, ComfyUI's CoreModelPatcher")
        variants[DYNAMIC] = chain(apply_control, [dynamic])
    noise = comfy.sample.prepare_noise(latent, opts.seed)

    def sample(pos: list, neg: list) -> SampledRun:
        mm.unload_all_models()  # every run starts from the same state (weights loaded by the run itself)
        mm.soft_empty_cache()
        reset_peak_memory(dev)
        marks: list[float] = []
        used = [u] if (u := DV.device_used_mib(dev)) is not None else []  # the run's start, then each step's end

        def callback(step: int, x0: Any, x: Any, total: int) -> None:
            C.sync(dev)
            marks.append(time.perf_counter())
            if used:
                used.append(cast(float, DV.device_used_mib(dev)))

        start = time.perf_counter()
        with torch.inference_mode():
            out = comfy.sample.sample(
                patcher,
                noise,
                opts.steps,
                CFG,
                "euler",
                "normal",
                pos,
                neg,
                latent,
                callback=callback,
                disable_pbar=True,
                seed=opts.seed,
            )
        C.sync(dev)
        total = time.perf_counter() - start
        intervals = [(b - a) * 1000 for a, b in zip(marks, marks[1:])]
        device_mib = max(used) - used[0] if used else None
        return SampledRun(out, intervals, total * 1000, peak_memory_mib(dev), peak_reserved_mib(dev), device_mib)

    def attempt(name: str, conds: tuple[list, list]) -> SampledRun | None:
        """One run; a failure of the experimental variant (``DYNAMIC``) leaves it out with the reason."""
        try:
            return sample(*conds)
        except Exception as exc:
            if name != DYNAMIC:
                raise
            report.missing[name] = f"its sampling run failed: {type(exc).__name__}: {exc}"
            print(f"{name}: left out, its sampling run failed:\n{traceback.format_exc()}")
            return None

    finals: dict[str, torch.Tensor] = {}  # warm-up runs, their latents kept
    for name, conds in [*variants.items(), *references.items()]:
        if (run := attempt(name, conds)) is not None:
            finals[name] = run.latents
        else:
            variants.pop(name)
    steps: dict[str, list[float]] = {name: [] for name in variants}
    totals: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, float] = {}
    reserved: dict[str, float] = {}
    in_use: dict[str, float] = {}
    for _ in range(opts.runs):
        for name, conds in list(variants.items()):
            if (run := attempt(name, conds)) is None:
                variants.pop(name)
                for table in (steps, totals, peaks, reserved, in_use, finals):
                    table.pop(name, None)
                continue
            steps[name] += run.intervals
            totals[name].append(run.total_ms)
            for table, value in ((peaks, run.peak_mib), (reserved, run.reserved_mib), (in_use, run.device_mib)):
                if value is not None:
                    table[name] = max(table.get(name, 0.0), value)

    tol = SAMPLE_TOL[dtype]
    print(f"sampled latents (max abs diff; tolerance {tol:g} of the control's effect for {opts.dtype_name}):")
    pairs = [("ours", "ComfyUI ControlNet"), ("ours x2", "ComfyUI ControlNet x2")]
    pairs += [(f"ours graph{s}", f"ComfyUI ControlNet{s}") for s in ("", " x2") if f"ours graph{s}" in finals]
    pairs += [(DYNAMIC, "ComfyUI ControlNet")] if DYNAMIC in finals else []
    pairs.append((GUESS, GUESS_REFERENCE))
    for mine, theirs_name in pairs:
        effect = float((finals[theirs_name] - finals["UNet only"]).abs().max())
        diff = float((finals[mine] - finals[theirs_name]).abs().max())
        ok = diff <= tol * effect
        report.agree[f"sampling {mine}"] = ok
        print(
            f"  {mine} vs {theirs_name}: {diff:.3g} (effect of the control {effect:.3g})  {'ok' if ok else 'DIFFERS'}"
        )

    med = {name: C.median(v) for name, v in steps.items()}
    report.step_ms.update(med)
    base = med["UNet only"]
    print(
        f"\nms per step: median of {len(steps['UNet only'])} step intervals ({opts.runs} run(s) of {opts.steps} steps after one "
        "warm-up run per variant, variants interleaved)"
    )
    print(
        f"{'variant':<22} {'ms/step':>9} {'x UNet-only':>12} {'CN ms/step':>11} {'whole run ms':>13} {'peak MiB':>9} "
        f"{'reserved MiB':>13} {'in use MiB':>11}"
    )
    for name in variants:
        peak_col = f"{peaks[name]:>9.0f}" if name in peaks else f"{'n/a':>9}"
        held_col = f"{reserved[name]:>13.0f}" if name in reserved else f"{'n/a':>13}"
        used_col = f"{in_use[name]:>11.0f}" if name in in_use else f"{'n/a':>11}"
        print(
            f"{name:<22} {med[name]:>9.2f} {med[name] / base:>11.3f}x {med[name] - base:>11.2f} "
            f"{C.median(totals[name]):>13.1f} {peak_col} {held_col} {used_col}"
        )
    if peaks:
        print(
            "peak MiB: allocated to tensors (max_memory_allocated); reserved MiB: held by the allocator (max_memory_reserved); "
            "in use MiB: the GPU's memory in use at the step ends as the driver reports it (cudaMemGetInfo: PyTorch's "
            "and comfy-aimdo's alike), its most; all three above the run's start"
        )
    report.peak_mib.update(peaks)
    report.reserved_mib.update(reserved)
    report.device_mib.update(in_use)
    r_ours, r_comfy = med["ours"] / base, med["ComfyUI ControlNet"] / base
    cn_ours, cn_comfy = med["ours"] - base, med["ComfyUI ControlNet"] - base
    if cn_comfy > 0:
        print(f"ControlNet cost per step in the run, ours / ComfyUI's: {cn_ours / cn_comfy:.2f}")
    if cn_ours > 0:
        print(
            f"ControlNet cost per step with the negative rows skipped ({GUESS}), / ours with both sides: "
            f"{(med[GUESS] - base) / cn_ours:.2f}"
        )
        if DYNAMIC in med:
            print(
                f"ControlNet cost per step with ComfyUI's CoreModelPatcher ({DYNAMIC}), / ours with ModelPatcher: "
                f"{(med[DYNAMIC] - base) / cn_ours:.2f}"
            )
    off = off_target(opts, size, TARGET_SIZE["sd15"])
    report.off_target["sampling"] = off
    print(
        f"target: step with ours <= {TARGET_STEP_RATIO:g}x the UNet-only step (ComfyUI's own: {ANCHOR_COMFY_STEP_RATIO:g}x "
        f"on the H100; here {r_comfy:.3f}x): ours {r_ours:.3f}x {verdict(r_ours <= TARGET_STEP_RATIO, off)}"
    )
    if peaks:
        print(
            "target: peak memory with ours <= ComfyUI's path: "
            f"{memory_verdict('ours', 'ComfyUI ControlNet', peaks, reserved)}; two ControlNets: "
            f"{memory_verdict('ours x2', 'ComfyUI ControlNet x2', peaks, reserved)}"
        )
        if in_use:
            print(
                "GPU memory in use (the driver's view), ours vs ComfyUI's path: "
                f"{device_verdict('ours', 'ComfyUI ControlNet', in_use)}; two ControlNets: "
                f"{device_verdict('ours x2', 'ComfyUI ControlNet x2', in_use)}"
                + (f"; {DYNAMIC}: {device_verdict(DYNAMIC, 'ComfyUI ControlNet', in_use)}" if DYNAMIC in in_use else "")
            )
    else:
        print("target: peak memory with ours <= ComfyUI's path: n/a (CPU)")
    if "ours graph" in med:
        r_graph = med["ours graph"] / base
        print(
            f"with CUDA graphs (AFFORDANCE_CUDA_GRAPHS=1): ours {r_graph:.3f}x {verdict(r_graph <= TARGET_STEP_RATIO, off)}"
            + (
                f"; peak {memory_verdict('ours graph', 'ComfyUI ControlNet', peaks, reserved)}"
                if "ours graph" in peaks
                else ""
            )
        )
    del variants, references, theirs, ours, finals
    mm.unload_all_models()
    gc.collect()


# ----- driver ----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", help="cuda or cpu (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], help="default: fp16 on CUDA, fp32 on the CPU")
    p.add_argument("--models", choices=["full", "tiny"], help="architectures (default: full on CUDA, tiny on the CPU)")
    p.add_argument("--size", type=int, help="SD1.5 pixels (default: 512 on CUDA, 64 on the CPU)")
    p.add_argument("--xl-size", type=int, help="SDXL pixels, 0 skips SDXL (default: 1024 on CUDA, 128 on the CPU)")
    p.add_argument(
        "--batch", type=int, default=2, help="forward batch; the sampling run uses batch/2 latents (cond+uncond)"
    )
    p.add_argument("--rounds", type=int, help="timed forward rounds (default: 5 on CUDA, 3 on the CPU)")
    p.add_argument("--calls", type=int, help="forward calls per round (default: 20 on CUDA, 2 on the CPU)")
    p.add_argument("--warmup", type=int, help="untimed forward calls first (default: 5 on CUDA, 1 on the CPU)")
    p.add_argument("--steps", type=int, help="sampling steps per run (default: 20 on CUDA, 4 on the CPU)")
    p.add_argument("--runs", type=int, help="timed sampling runs per variant (default: 3 on CUDA, 2 on the CPU)")
    p.add_argument("--parts", nargs="+", choices=["forward", "sampling"], default=["forward", "sampling"])
    p.add_argument("--comfyui", help="ComfyUI checkout for the ComfyUI peer (default: $COMFYUI_PATH)")
    p.add_argument("--no-comfyui", action="store_true", help="skip ComfyUI (and the sampling part)")
    p.add_argument("--no-diffusers", action="store_true", help="skip the diffusers peer")
    p.add_argument(
        "--comfy-pytorch-attention", action="store_true", help="make ComfyUI use torch SDPA (its default on NVIDIA)"
    )
    p.add_argument(
        "--variants",
        choices=["auto", "all", "none"],
        default="auto",
        help="also time ours with CUDA graphs and channels-last: auto = on CUDA only (on the CPU graphs run eagerly)",
    )
    p.add_argument(
        "--compile",
        choices=["inductor", "eager"],
        help="also time ours under torch.compile with this backend (inductor: fused kernels, on CUDA also with "
        "CUDA graphs; eager: tracing only, to check the wiring); compiling takes a minute or more per model",
    )
    p.add_argument(
        "--comfy-dynamic-vram",
        choices=DV.MODES,
        default="auto",
        help="ComfyUI's dynamic VRAM in the sampling part: auto = on where a ComfyUI server would turn it on "
        "(ComfyUI 0.12+, NVIDIA GPU, PyTorch 2.8+, comfy-aimdo installed), also timing ours with ComfyUI's "
        "CoreModelPatcher; off = ComfyUI's classic ModelPatcher",
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = C.pick_device(args.device)
    cuda = device.type == "cuda"
    opts = Options(
        device=device,
        dtype={"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
            args.dtype or ("fp16" if cuda else "fp32")
        ],
        models=args.models or ("full" if cuda else "tiny"),
        batch=args.batch,
        warmup=args.warmup if args.warmup is not None else (5 if cuda else 1),
        rounds=args.rounds or (5 if cuda else 3),
        calls=args.calls or (20 if cuda else 2),
        steps=args.steps or (20 if cuda else 4),
        runs=args.runs or (3 if cuda else 2),
        seed=args.seed,
        variants=args.variants == "all" or (args.variants == "auto" and cuda),
        compile=args.compile,
        dynamic_vram=args.comfy_dynamic_vram,
    )
    size = args.size or (TARGET_SIZE["sd15"] if cuda else 64)  # a plain GPU run is at the targets' sizes
    xl_size = args.xl_size if args.xl_size is not None else (TARGET_SIZE["sdxl"] if cuda else 128)
    for family, px in (("sd15", size), ("sdxl", xl_size)):
        step = 8 * 2 ** (len(opts.config(family).channel_mult) - 1)
        if px and px % step:
            raise SystemExit(f"{family} size {px} px must be a multiple of {step} for the {opts.models} architecture")

    C.print_header("bench_speed: ControlNet cost per step, alone and inside ComfyUI sampling, ours vs peers", device)
    name = torch.cuda.get_device_name(device) if cuda else "the CPU"
    if not cuda:
        print("targets: issue 7's are NVIDIA H100 figures; on the CPU they print as n/a and only ratios mean anything")
    elif "H100" not in name:
        print(f"targets: issue 7's are NVIDIA H100 figures; this card is {name}, so PASS/MISS is only indicative")
    else:
        print(f"targets: issue 7's, measured on {name}")
    report = Report()
    comfy, root = None, C.comfyui_root(args.comfyui)
    if args.no_comfyui:
        report.missing["comfyui"] = "skipped (--no-comfyui)"
    else:
        comfy, why = C.import_comfy(root, device, pytorch_attention=args.comfy_pytorch_attention)
        if comfy is None:
            report.missing["comfyui"] = why
        else:
            print(f"ComfyUI: {root}, attention function {comfy.ldm.modules.attention.optimized_attention.__name__}")
    use_diffusers = not args.no_diffusers
    if args.no_diffusers:
        report.missing["diffusers"] = "skipped (--no-diffusers)"
    else:
        try:
            import diffusers

            print(f"diffusers: {diffusers.__version__}")
        except ImportError as exc:
            report.missing["diffusers"] = f"not importable in this interpreter ({exc})"
            use_diffusers = False
    for peer, why in report.missing.items():
        print(f"peer missing: {peer}: {why}")

    if "forward" in args.parts:
        forward_section("sd15", size, opts, comfy, use_diffusers, report)
        if xl_size:
            free_memory(opts)
            forward_section("sdxl", xl_size, opts, comfy, use_diffusers, report)
        free_memory(opts)
    if "sampling" in args.parts:
        if comfy is None or root is None:  # (a ComfyUI needs a checkout: both or neither)
            print(f"\n## 2. Inside a ComfyUI sampling run: skipped, ComfyUI is missing ({report.missing['comfyui']})")
        else:
            try:
                with tempfile.TemporaryDirectory(prefix="affordance-bench-speed-") as tmp:
                    sampling_section(comfy, root, size, opts, report, Path(tmp))
            except Exception as exc:  # report it with its traceback, and still print the summary
                report.missing["sampling"] = f"the sampling part failed: {type(exc).__name__}: {exc}"
                print(f"\nthe sampling part failed:\n{traceback.format_exc()}")
    print_summary(report, opts)
    C.print_load_average("end")
    return report


def free_memory(opts: Options) -> None:
    gc.collect()
    if opts.cuda:
        torch.cuda.empty_cache()


def print_summary(report: Report, opts: Options) -> None:
    print("\n## Summary (issue 7's targets: NVIDIA H100, full models, fp16, batch 2, 512 / 1024 px)")
    rows = [
        ("SD1.5 one ControlNet per step", ("sd15", "ours"), TARGET_MS["sd15", "ours"]),
        ("SD1.5 two ControlNets per step", ("sd15", "ours x2"), TARGET_MS["sd15", "ours x2"]),
        ("SDXL one ControlNet per step", ("sdxl", "ours"), TARGET_MS["sdxl", "ours"]),
    ]
    for label, (family, name), limit in rows:
        target = f"<= {limit:g} ms"
        if (family, name) not in report.forward_ms:
            print(f"  {label:<40} {target:<10} not measured")
            continue
        peer = report.forward_ms.get((family, "comfyui" + name[4:]))
        vs = f" (ComfyUI here {peer:.2f} ms)" if peer else ""
        off = "not the targets' setup" if report.off_target.get(family, "x") else ""
        for variant, how in (
            (name, ""),
            (name.replace("ours", "ours graph"), ", CUDA graphs"),
            (name.replace("ours", "ours compiled"), ", compiled"),
            (name.replace("ours", "ours compiled graph"), ", compiled + graphs"),
        ):
            if (family, variant) in report.forward_ms:
                ms = report.forward_ms[family, variant]
                print(f"  {label + how:<40} {target:<10} {ms:.2f} ms{vs}  {verdict(ms <= limit, off)}")
    if report.step_ms:
        base = report.step_ms["UNet only"]
        r, rc = report.step_ms["ours"] / base, report.step_ms["ComfyUI ControlNet"] / base
        off = "not the targets' setup" if report.off_target.get("sampling", "x") else ""
        print(
            f"  {'step with ours / UNet-only step':<40} {'<= 1.15x':<10} {r:.3f}x (ComfyUI here {rc:.3f}x, anchor 1.47x)  "
            f"{verdict(r <= TARGET_STEP_RATIO, off)}"
        )
        for variant, label in (
            ("ours graph", "step with ours / UNet-only, CUDA graphs"),
            (DYNAMIC, "step with ours / UNet-only, CoreModelPatcher"),
        ):
            if variant in report.step_ms:
                rv = report.step_ms[variant] / base
                print(f"  {label:<40} {'<= 1.15x':<10} {rv:.3f}x  {verdict(rv <= TARGET_STEP_RATIO, off)}")
        if report.peak_mib:
            for variant, theirs, label in (
                ("ours", "ComfyUI ControlNet", "peak memory, ours vs ComfyUI path"),
                ("ours x2", "ComfyUI ControlNet x2", "peak memory, two ControlNets"),
                ("ours graph", "ComfyUI ControlNet", "peak memory, CUDA graphs"),
                ("ours graph x2", "ComfyUI ControlNet x2", "peak memory, CUDA graphs x2"),
            ):
                if variant in report.peak_mib:
                    text = memory_verdict(variant, theirs, report.peak_mib, report.reserved_mib)
                    print(f"  {label:<40} {'<= ComfyUI':<10} {text}")
            for variant, theirs, label in (
                ("ours", "ComfyUI ControlNet", "GPU memory in use, ours vs ComfyUI path"),
                ("ours x2", "ComfyUI ControlNet x2", "GPU memory in use, two ControlNets"),
                (DYNAMIC, "ComfyUI ControlNet", "GPU memory in use, CoreModelPatcher"),
            ):
                if variant in report.device_mib:
                    text = device_verdict(variant, theirs, report.device_mib)
                    print(f"  {label:<40} {'<= ComfyUI':<10} {text}")
        else:
            print(f"  {'peak memory, ours vs ComfyUI path':<40} {'<= ComfyUI':<10} n/a (CPU)")
    else:
        print(f"  {'step with ours / UNet-only step':<40} {'<= 1.15x':<10} not measured (needs ComfyUI)")
    bad = [name for name, ok in report.agree.items() if not ok]
    print(
        f"  outputs agree with the reference: {'yes' if not bad else 'NO: ' + ', '.join(bad)} "
        f"({len(report.agree)} checks{'' if not report.missing else '; missing: ' + ', '.join(report.missing)})"
    )


if __name__ == "__main__":
    main()

"""Host work of one ControlNet step, ours vs ComfyUI vs diffusers: operators, Python module calls, host time.

On a GPU an eager ControlNet step is bound by the host, not by the GPU: on an H100, SD1.5 at 512 px, ours took
14.7 ms per eager call while the same kernels replayed as one CUDA graph take about 5 ms (bench/results). What
the host does per step is dispatching operators (each one at least one kernel launch on a GPU) and running
Python (module calls and the code around them). This script counts both **exactly** for each implementation,
on the same seeded weights and inputs, and times the host work where compute is negligible: every block,
attention layer and norm of the full architecture, with the channels narrowed (``--width``) at 64 px, on the CPU
(one thread). The counts do not depend on the machine; the times are ratios for this host.

  python -P bench/bench_host_work.py --comfyui /path/to/ComfyUI          # SD1.5 and SDXL, all peers found
  python -P bench/bench_host_work.py --families sd15 --rounds 3          # ours alone without ComfyUI/diffusers

Rows: ``ours`` is a step with the hint encoded once per run; ``ours, hint in call`` re-encodes the hint in every
call, as ComfyUI and diffusers do, for a like-for-like count; ``ours, rows shared`` (SD1.x/2.x) is a step as our
sampler integration runs it, the cond and uncond rows of one latent sharing the layers before the first
cross-attention (the inputs are a CFG step's for every row: one latent in both halves).
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from affordance.bench import _common as C
from affordance.bench.bench_speed import cfg_step

SHARED = "ours, rows shared"

# Operators that only make views (no kernel, no new memory); everything else is counted.
VIEW_OPS = frozenset(
    "view _unsafe_view transpose permute unsqueeze squeeze expand slice select t split chunk alias detach "
    "as_strided _reshape_alias reshape unbind split_with_sizes flatten lift_fresh".split()
)


class OperatorCount(TorchDispatchMode):
    """Counts the aten operators dispatched inside the mode by name, views excluded (top level only)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_name: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func.__name__.split(".")[0]
        if name not in VIEW_OPS:
            self.by_name[name] += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Work:
    """One implementation's host work per call."""

    operators: int
    module_calls: int
    top: list[tuple[str, int]]
    ms: float = float("nan")
    ms_min: float = float("nan")


def count_work(fn: Callable[[], object]) -> Work:
    """Operators and Python module calls of one call of ``fn`` (after one warm-up call)."""
    fn()
    calls = [0]

    def hook(module: torch.nn.Module, args: tuple) -> None:
        calls[0] += 1

    handle = register_module_forward_pre_hook(hook)
    try:
        with OperatorCount() as ops:
            fn()
    finally:
        handle.remove()
    return Work(sum(ops.by_name.values()), calls[0], ops.by_name.most_common(8))


def narrowed(family: str, width: int) -> Any:
    """The family's full architecture (every block, depth and layer kind) with ``model_channels`` and the text
    width both ``width``, and 64-wide heads.

    64-wide heads (SDXL's layout, SD1.5 has 8 heads) are what ComfyUI assumes for a ControlNet that matches no
    known model: with them, all implementations build the same network. Neither the widths nor the head count
    change any count; narrow widths make the compute negligible, so the time is the host's.
    """
    return replace(C.config_for(family), model_channels=width, context_dim=width, num_heads=-1, num_head_channels=64)


def implementations(
    family: str, width: int, size: int, comfy: Any, use_diffusers: bool, missing: dict[str, str]
) -> tuple[dict[str, Callable[[], list[torch.Tensor]]], int]:
    """The calls to compare (same weights and inputs) and the parameter count."""
    config = narrowed(family, width)
    dev, dtype = torch.device("cpu"), torch.float32
    sd = C.random_state_dict(config, dtype=dtype)
    inp = C.make_inputs(config, 2, size, dev, dtype, seed=1)
    # a CFG step's rows (one latent in the cond and the uncond half), as ComfyUI batches them and bench_speed times
    inp["x"], inp["t"], inp["hint"], shared = cfg_step(inp["x"], inp["t"], inp["hint"], inp["y"])
    ours = C.build_ours(config, sd, dev)
    cm = C.try_build(f"comfyui ({family})", missing, lambda: C.build_comfy(comfy, sd, dev, dtype)) if comfy else None
    dm = (
        C.try_build(f"diffusers ({family})", missing, lambda: C.build_diffusers(config, sd, dev))
        if use_diffusers
        else None
    )
    enc = ours.encode_hint(inp["hint"])
    impls = C.step_calls(ours, enc, cm, dm, inp)
    if shared is not None:  # what the sampler integration runs for that pair (SD1.x/2.x)
        x, t, ctx = inp["x"], inp["t"], inp["context"]
        impls[SHARED] = lambda: ours(x, None, t, ctx, None, encoded_hint=enc, shared=shared).as_list()
    return impls, sum(v.numel() for v in sd.values())


def family_section(family: str, args: argparse.Namespace, comfy: Any, use_diffusers: bool, missing: dict) -> dict:
    impls, params = implementations(family, args.width, args.size, comfy, use_diffusers, missing)
    print(
        f"\n## {family}: full depth, model_channels and text width {args.width} ({params / 1e6:.1f} M parameters), "
        f"batch 2, {args.size}x{args.size} px, float32, CPU"
    )
    found: dict[str, Work] = {}
    with torch.inference_mode():
        ref = impls["ours"]()
        scale = max(float(r.abs().max()) for r in ref)
        print(f"outputs vs ours (max |ours| {scale:.4g}):", end="")
        for name, fn in impls.items():
            diff = C.max_abs_diff(ref, fn())
            if diff is None or diff > 1e-4 * scale:
                raise SystemExit(f"{name} does not compute the same residuals as ours (max abs diff {diff})")
            print(f" {name} {diff:.2g};", end="")
        print(" all agree")
        per_call = C.interleaved_ms(impls, torch.device("cpu"), warmup=2, rounds=args.rounds, calls=args.calls)
    with torch.no_grad():  # counted outside inference mode, where composite operators are already decomposed
        for name, fn in impls.items():
            found[name] = count_work(fn)
    for name, values in per_call.items():
        found[name].ms, found[name].ms_min = C.median(values), min(values)
    print(
        f"{'implementation':<20} {'operators':>9} {'module calls':>12} {'host ms':>8} {'min ms':>7}  most frequent operators"
    )
    for name, w in found.items():
        top = ", ".join(f"{op} {n}" for op, n in w.top[:5])
        print(f"{name:<20} {w.operators:>9} {w.module_calls:>12} {w.ms:>8.2f} {w.ms_min:>7.2f}  {top}")
    print(f"host ms: median of {args.rounds} rounds x {args.calls} calls, implementations interleaved per round")
    for peer in ("comfyui", "diffusers"):
        if peer in found:
            for mine in (m for m in ("ours", "ours, hint in call", SHARED) if m in found):
                m, p = found[mine], found[peer]
                print(
                    f"  {mine} / {peer}: operators {m.operators / p.operators:.2f}x, module calls "
                    f"{m.module_calls / p.module_calls:.2f}x, host time {m.ms / p.ms:.2f}x"
                )
    return found


def main(argv: list[str] | None = None) -> dict[str, dict[str, Work]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", choices=["sd15", "sd21", "sdxl"], default=["sd15", "sdxl"])
    p.add_argument("--width", type=int, default=64, help="model_channels of the narrowed architectures (default 64)")
    p.add_argument("--size", type=int, default=32, help="pixels (default 32: a 4x4 latent, every level at least 1x1)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--comfyui", help="ComfyUI checkout (default: $COMFYUI_PATH)")
    p.add_argument("--no-diffusers", action="store_true", help="leave diffusers out")
    args = p.parse_args(argv)
    if args.width % 64:
        p.error(f"--width must be a multiple of 64 (64-wide attention heads), got {args.width}")
    torch.set_num_threads(args.threads)
    C.print_header(
        "bench_host_work: host work of one ControlNet step (operators, module calls, host time)", torch.device("cpu")
    )
    comfy, use_diffusers, missing = C.cpu_peers(args.comfyui, not args.no_diffusers)
    with C.comfy_sdpa(comfy) as attention:
        if comfy is not None:
            print(
                f"ComfyUI: attention function {attention} (as on GPUs); it logs 'no match' for these narrowed models "
                "and builds them from the weights' shapes"
            )
        found = {fam: family_section(fam, args, comfy, use_diffusers, missing) for fam in args.families}
    for name, why in missing.items():
        print(f"not measured: {name}: {why}")
    C.print_load_average("end")
    return found


if __name__ == "__main__":
    main()

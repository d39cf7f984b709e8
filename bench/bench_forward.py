"""ControlNet forward: ours against ComfyUI's ``comfy.cldm.cldm.ControlNet`` and diffusers' ``ControlNetModel``.

All implementations get the SAME seeded random weights (zero convolutions non-zero, so residuals are
non-trivial) and the same inputs: batch 2 (cond + uncond), ``--size`` pixels (latent ``size / 8``), fp16
on CUDA and fp32 on the CPU by default. Measured, interleaved round by round:

  ours           ``ControlNet(config)(x, hint, t, context, y)``: the hint encoder runs in every call,
                 as in ComfyUI
  ours+encoded   ``ControlNet(...)(x, None, t, context, y, encoded_hint=model.encode_hint(hint))``: the
                 hint encoded once per sampling run, which our sampler integration does
  comfyui        ``comfy.cldm.cldm.ControlNet`` built by ComfyUI's own loader
                 (``comfy.controlnet.load_controlnet_state_dict``), called as its ``get_control`` does
  diffusers      ``diffusers.ControlNetModel`` with our weights renamed by
                 ``affordance.controlnet.keymap.original_to_diffusers``

Each figure is the median over ``--rounds`` rounds of the mean of ``--calls`` calls, after ``--warmup``
calls. Outputs are compared (max abs difference over all residuals) before timing. Missing peers are
reported and skipped. ComfyUI needs ``--comfyui PATH`` (or ``COMFYUI_PATH``) and an interpreter that can
import it (see bench/README.md).

  python -P bench/bench_forward.py [--family sd15|sdxl] [--size PX] [--device cpu|cuda] [--comfyui PATH]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import torch

from affordance.bench import _common as C

Outputs = list[torch.Tensor]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="sd15", choices=["sd15", "sd21", "sdxl"])
    parser.add_argument("--device", help="cuda or cpu (default: cuda if available, else cpu)")
    parser.add_argument(
        "--size", type=int, help="image size in pixels (default: 512 on CUDA, 256 on the CPU; x2 for SDXL)"
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], help="default: fp16 on CUDA, fp32 on the CPU")
    parser.add_argument("--rounds", type=int, help="timed rounds (default: 5 on CUDA, 3 on the CPU)")
    parser.add_argument("--calls", type=int, help="calls per round (default: 20 on CUDA, 2 on the CPU)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default: 5 on CUDA, 1 on the CPU)")
    parser.add_argument("--comfyui", help="ComfyUI checkout for the ComfyUI peer (default: $COMFYUI_PATH)")
    parser.add_argument(
        "--comfy-pytorch-attention",
        action="store_true",
        help="make ComfyUI use torch SDPA attention (its default on NVIDIA; off on the CPU)",
    )
    parser.add_argument("--no-diffusers", action="store_true", help="skip the diffusers peer")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = C.pick_device(args.device)
    cuda = device.type == "cuda"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        args.dtype or ("fp16" if cuda else "fp32")
    ]
    size = args.size or ((512 if cuda else 256) * (2 if args.family == "sdxl" else 1))
    rounds = args.rounds or (5 if cuda else 3)
    calls = args.calls or (20 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    config = C.config_for(args.family)

    C.print_header(f"bench_forward: ControlNet forward ({args.family}), ours vs peers", device)
    print(
        f"setup: {args.family}, batch {args.batch}, {size}x{size} px (latent {size // 8}x{size // 8}), {str(dtype).removeprefix('torch.')}, "
        f"median of {rounds} rounds x {calls} calls after {warmup} warm-up call(s), implementations interleaved per round"
    )

    t0 = time.perf_counter()
    sd = C.random_state_dict(config, seed=args.seed, dtype=dtype)
    print(
        f"weights: {sum(v.numel() for v in sd.values()) / 1e6:.1f} M parameters, seeded random (made in {time.perf_counter() - t0:.1f} s)"
    )

    impls: dict[str, Callable[[], Outputs]] = {}
    missing: dict[str, str] = {}
    inp = C.make_inputs(config, args.batch, size, device, dtype, args.seed + 1)

    ours = C.build_ours(config, sd, device)
    impls["ours"] = lambda: ours(inp["x"], inp["hint"], inp["t"], inp["context"], inp["y"]).as_list()
    with torch.inference_mode():
        encoded = ours.encode_hint(inp["hint"])
    impls["ours+encoded"] = lambda: ours(
        inp["x"], None, inp["t"], inp["context"], inp["y"], encoded_hint=encoded
    ).as_list()

    comfy, why = C.import_comfy(C.comfyui_root(args.comfyui), device, pytorch_attention=args.comfy_pytorch_attention)
    if comfy is None:
        missing["comfyui"] = why
    else:
        try:
            cm = C.build_comfy(comfy, sd, device, dtype)

            def run_comfy() -> Outputs:
                out = cm(x=inp["x"], hint=inp["hint"], timesteps=inp["t"], context=inp["context"], y=inp["y"])
                return [*out["output"], *out["middle"]]

            impls["comfyui"] = run_comfy
            attention = comfy.ldm.modules.attention.optimized_attention.__name__
            print(f"ComfyUI: {C.comfyui_root(args.comfyui)}, attention function {attention}")
        except Exception as exc:
            missing["comfyui"] = f"building ComfyUI's ControlNet failed: {type(exc).__name__}: {exc}"

    if args.no_diffusers:
        missing["diffusers"] = "skipped (--no-diffusers)"
    else:
        try:
            import diffusers

            dm = C.build_diffusers(config, sd, device)

            def run_diffusers() -> Outputs:
                down, mid = dm(
                    inp["x"],
                    inp["t"],
                    encoder_hidden_states=inp["context"],
                    controlnet_cond=inp["hint"],
                    added_cond_kwargs=inp["added"],
                    return_dict=False,
                )
                return [*down, mid]

            impls["diffusers"] = run_diffusers
            print(
                f"diffusers: {diffusers.__version__}, attention processor "
                f"{type(next(iter(dm.attn_processors.values()))).__name__}"
            )
        except ImportError as exc:
            missing["diffusers"] = f"not importable in this interpreter ({exc})"
        except Exception as exc:
            missing["diffusers"] = f"building diffusers' ControlNetModel failed: {type(exc).__name__}: {exc}"
    for name, why in missing.items():
        print(f"peer missing: {name}: {why}")
    del sd
    gc.collect()

    # set after importing the peers (ComfyUI may change it): no autotuning inside the timings
    torch.backends.cudnn.benchmark = False
    with torch.inference_mode():
        # agreement, before any timing
        ref = impls["ours"]()
        scale = max(float(r.abs().max()) for r in ref)
        print(f"\noutputs: {len(ref)} residuals, max |ours| = {scale:.4g}")
        for name, fn in impls.items():
            if name == "ours":
                continue
            out = fn()
            if len(out) != len(ref) or any(a.shape != b.shape for a, b in zip(out, ref)):
                print(f"  {name}: residual shapes differ from ours: {[tuple(o.shape) for o in out]}")
                continue
            diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(out, ref))
            print(f"  {name} vs ours: max abs diff {diff:.3g} ({diff / scale:.2g} of max |ours|)")
        del ref

        for fn in impls.values():
            for _ in range(warmup):
                fn()
        C.sync(device)
        per_call: dict[str, list[float]] = {name: [] for name in impls}
        for _ in range(rounds):
            for name, fn in impls.items():
                C.sync(device)
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                C.sync(device)
                per_call[name].append((time.perf_counter() - t0) / calls * 1000)

        C.sync(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            ours.encode_hint(inp["hint"])
        C.sync(device)
        hint_ms = (time.perf_counter() - t0) / calls * 1000

    print(f"\n{'implementation':<14} {'median ms':>10} {'min ms':>8} {'max ms':>8}  rounds (ms per call)")
    med = {name: C.median(v) for name, v in per_call.items()}
    for name, values in per_call.items():
        print(
            f"{name:<14} {med[name]:>10.1f} {min(values):>8.1f} {max(values):>8.1f}  "
            + " ".join(f"{v:.1f}" for v in values)
        )
    print(
        f"ours hint encoder alone (encode_hint, batch {args.batch}): {hint_ms:.1f} ms per call "
        "(paid once per sampling run with encoded_hint)"
    )
    print("\nratios (ours / peer; < 1 means ours is faster):")
    for peer in ("comfyui", "diffusers"):
        if peer not in med:
            print(f"  {peer}: missing, no ratio")
            continue
        for name in ("ours", "ours+encoded"):
            r = med[name] / med[peer]
            print(
                f"  {name} vs {peer}: {r:.2f}x ({'ours ' + format(1 / r, '.2f') + 'x faster' if r <= 1 else 'ours ' + format(r, '.2f') + 'x slower'})"
            )
    if cuda:
        print(
            f"CUDA peak memory allocated (all models and activations): {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
        )
    C.print_load_average("end")


if __name__ == "__main__":
    main()

"""Where one ControlNet forward spends its time: the top operators/kernels, eager and as a CUDA-graph replay.

Issue 7 asks for an SD1.5 step in 4 ms and an SDXL step in 15 ms on an H100. This script says what to work
on next: per call, the device time (CUDA kernels, or CPU operators on the CPU), the number of kernels or
operators launched, the host time of the call, and the ``--top`` entries by total device time. Seeded
random weights (nothing is downloaded), batch 2, the hint encoded once (as the sampler integration does).

  python -P bench/profile_forward.py --family sd15              # CUDA: full model, fp16, 512 px
  python -P bench/profile_forward.py --family sdxl --top 25     # CUDA: 1024 px
  python -P bench/profile_forward.py --device cpu               # CPU: reduced model, fp32, 64 px (smoke test)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile

from affordance.bench import _common as C
from affordance.bench.bench_memory import MIB, ours_working_memory
from affordance.controlnet import ControlNet, ControlNetConfig
from affordance.controlnet.graphs import GraphedControlNet, capture_stream


def profile_calls(fn: Callable[[], object], device: torch.device, calls: int, top: int, title: str) -> dict[str, float]:
    """Profile ``calls`` calls of ``fn`` (after two warm-up calls) and print the summary; returns the figures."""
    for _ in range(2):
        fn()
    C.sync(device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        C.sync(device)
    wall_ms = (time.perf_counter() - t0) / calls * 1000
    events = prof.key_averages()
    if cuda:
        rows = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        key = "self_device_time_total"
    else:
        rows = [e for e in events if e.key.startswith("aten::")]
        key = "self_cpu_time_total"
    device_ms = sum(getattr(e, key) for e in rows) / calls / 1000
    launched = sum(e.count for e in rows) / calls
    what = "kernels" if cuda else "aten operators (nested calls counted)"
    print(f"\n### {title}")
    print(
        f"per call: wall {wall_ms:.2f} ms (profiler on), {what} {launched:.0f}, their {'GPU' if cuda else 'CPU'} time "
        f"{device_ms:.2f} ms"
    )
    print(f"{'total ms/call':>13} {'count/call':>10}  name")
    for e in sorted(rows, key=lambda e: getattr(e, key), reverse=True)[:top]:
        print(f"{getattr(e, key) / calls / 1000:>13.3f} {e.count / calls:>10.1f}  {e.key[:110]}")
    return {"wall_ms": wall_ms, "device_ms": device_ms, "launched": launched}


def memory_section(
    model: ControlNet, config: ControlNetConfig, size: int, dtype: torch.dtype, device: torch.device, inputs: tuple
) -> dict[str, float]:
    """Working memory of one forward: predicted on ``meta`` (bench_memory.py) and, on CUDA, measured (MiB).

    Measured: the allocated peak of one eager forward above what was allocated before it, what stays allocated
    with its outputs held, and the memory a CUDA-graph recording adds to what the allocator holds (its pool and
    static inputs) once the allocator's unused cache is released.
    """
    x, t, ctx, y, enc = inputs
    predicted = ours_working_memory(config, size, dtype)
    found = {"predicted_peak": predicted.peak / MIB, "predicted_outputs": predicted.outputs / MIB}
    print("\n### working memory of one forward")
    print(
        f"predicted (bench_memory.py, meta device): peak {predicted.peak / MIB:.1f} MiB, outputs "
        f"{predicted.outputs / MIB:.1f} MiB, peak at {predicted.peak_at}"
    )
    if device.type != "cuda":
        print("measured: n/a (needs CUDA)")
        return found
    # one forward first, discarded: cuBLAS makes its workspace for a stream at that stream's first matmul and keeps
    # it (32 MiB on an H100), which is not this forward's working memory
    model(x, None, t, ctx, y, encoded_hint=enc)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = model(x, None, t, ctx, y, encoded_hint=enc)
    torch.cuda.synchronize(device)
    found["eager_peak"] = (torch.cuda.max_memory_allocated(device) - base) / MIB
    found["eager_outputs"] = (torch.cuda.memory_allocated(device) - base) / MIB
    del out
    side = capture_stream(device)  # the same for the capture stream, made once per process for every recording
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        model(x, None, t, ctx, y, encoded_hint=enc)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    held = torch.cuda.memory_reserved(device)
    runner = GraphedControlNet(model)
    runner(x, t, ctx, y, enc)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    found["graph_reserved"] = (torch.cuda.memory_reserved(device) - held) / MIB
    recorded = runner.recorded
    runner.release()
    print(
        f"measured eager: peak {found['eager_peak']:.1f} MiB, outputs {found['eager_outputs']:.1f} MiB (allocated); "
        f"a CUDA-graph recording holds {found['graph_reserved']:.1f} MiB more for its run"
        + ("" if recorded else " (NOT recorded: ran eagerly)")
    )
    return found


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=["sd15", "sdxl"], default="sd15")
    p.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    p.add_argument("--size", type=int, help="pixels (default: 512 SD1.5 / 1024 SDXL on CUDA, 64 on the CPU)")
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--channels-last", action="store_true", help="also profile channels-last weights and inputs")
    args = p.parse_args(argv)
    device = C.pick_device(args.device)
    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    config = C.config_for(args.family)
    if not cuda:  # a reduced architecture of the family, seconds on a CPU
        config = replace(config, channel_mult=(1, 1), num_res_blocks=(1, 1), transformer_depth=(1, 1))
        if args.family == "sdxl":
            config = replace(config, model_channels=128, transformer_depth=(0, 2), transformer_depth_middle=2)
    size = args.size or ((1024 if args.family == "sdxl" else 512) if cuda else 64)
    C.print_header(f"profile_forward: one ControlNet forward ({args.family}), eager and graphed", device)
    print(f"setup: {args.family}, batch 2, {size}x{size} px, {str(dtype).removeprefix('torch.')}, {args.calls} calls")
    model = C.build_ours(config, C.random_state_dict(config, dtype=dtype), device)
    inp = C.make_inputs(config, 2, size, device, dtype, seed=1)
    x, t, ctx, y = inp["x"], inp["t"], inp["context"], inp["y"]
    found: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        enc = model.encode_hint(inp["hint"])
        found["memory"] = memory_section(model, config, size, dtype, device, (x, t, ctx, y, enc))
        found["eager"] = profile_calls(
            lambda: model(x, None, t, ctx, y, encoded_hint=enc), device, args.calls, args.top, "eager"
        )
        runner = GraphedControlNet(model)
        runner(x, t, ctx, y, enc)
        graphed = "CUDA graph replay" if runner.recorded else "graph requested (ran eagerly: no CUDA device)"
        found["graph"] = profile_calls(lambda: runner(x, t, ctx, y, enc), device, args.calls, args.top, graphed)
        if args.channels_last:
            cl = torch.channels_last
            model.to(memory_format=cl)  # type: ignore[call-overload]  # Module.to takes it; the stubs omit it
            x_cl, enc_cl = x.contiguous(memory_format=cl), enc.contiguous(memory_format=cl)
            found["channels-last"] = profile_calls(
                lambda: model(x_cl, None, t, ctx, y, encoded_hint=enc_cl), device, args.calls, args.top, "channels-last"
            )
    return found


if __name__ == "__main__":
    main()

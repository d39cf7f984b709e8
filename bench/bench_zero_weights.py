"""What skipping residuals weighted zero saves: one ControlNet forward with weight patterns, against all ones.

A residual whose weight is 0 is not computed (its zero convolution is skipped) and the encoder stops after the
last block whose residual is needed (``ControlNet.forward(..., needed=)``, used by our control object).
Full architecture, seeded random weights, batch 2, the hint encoded once; every pattern's computed residuals
are checked bit-equal to the full forward's before timing. Peers have no equivalent (ComfyUI and diffusers
always run the whole network and multiply by zero), so the ratios are against our own full forward.

  python -P bench/bench_zero_weights.py                      # CUDA: sd15 at 512 px, fp16
  python -P bench/bench_zero_weights.py --device cpu --size 256 --threads 1
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch

from affordance.bench import _common as C


def patterns(count: int) -> dict[str, list[bool]]:
    """Weight patterns (True = non-zero weight) for ``count`` residuals, middle last."""
    third = count // 3
    return {
        "all": [True] * count,
        "shallow third": [i < third for i in range(count)],
        "all but the middle": [i < count - 1 for i in range(count)],
        "middle only": [i == count - 1 for i in range(count)],
        "every other": [i % 2 == 0 for i in range(count)],
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=["sd15", "sd21", "sdxl"], default="sd15")
    p.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    p.add_argument("--size", type=int, help="pixels (default: 512 on CUDA, 256 on the CPU)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = C.pick_device(args.device)
    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    size = args.size or (512 if cuda else 256)
    config = C.config_for(args.family)
    C.print_header(f"bench_zero_weights: residuals weighted zero skipped ({args.family})", device)
    print(
        f"setup: {args.family}, batch 2, {size}x{size} px, {str(dtype).removeprefix('torch.')}, median of {args.rounds}"
    )
    model = C.build_ours(config, C.random_state_dict(config, dtype=dtype), device)
    inp = C.make_inputs(config, 2, size, device, dtype, seed=1)
    x, t, ctx, y = inp["x"], inp["t"], inp["context"], inp["y"]
    found: dict[str, float] = {}
    with torch.inference_mode():
        enc = model.encode_hint(inp["hint"])
        full = model(x, None, t, ctx, y, encoded_hint=enc).as_list()
        runs: dict[str, Callable[[], object]] = {}
        flags: dict[str, list[bool]] = {}
        for name, needed in patterns(config.num_residuals).items():
            out = model(x, None, t, ctx, y, encoded_hint=enc, needed=needed).as_list()
            same = all((o is None) != f and (o is None or torch.equal(o, r)) for o, r, f in zip(out, full, needed))
            if not same:
                raise SystemExit(f"pattern {name!r}: the computed residuals differ from the full forward's")
            runs[name] = functools.partial(model, x, None, t, ctx, y, encoded_hint=enc, needed=needed)
            flags[name] = needed
        per_call = C.interleaved_ms(runs, device, warmup=1, rounds=args.rounds, calls=1)
    found = {name: C.median(v) for name, v in per_call.items()}
    print(f"{'pattern':<20} {'residuals':>9} {'ms':>9} {'x all':>7}  (patterns interleaved per round)")
    for name, needed in flags.items():
        print(f"{name:<20} {sum(needed):>4} / {len(needed):<3} {found[name]:>9.2f} {found['all'] / found[name]:>6.2f}x")
    print("every pattern's computed residuals are bit-equal to the full forward's")
    C.print_load_average("end")
    return found


if __name__ == "__main__":
    main()

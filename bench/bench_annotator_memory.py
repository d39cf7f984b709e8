"""Peak working memory of each preprocessor per pixel it processes (CPU, fp32, batch 1).

The preprocessor nodes size their chunks from these figures and refuse an image that alone needs more than
ComfyUI reports free (``WORK_BYTES_PER_PIXEL`` in nodes/preprocess_learned.py and nodes/preprocess.py: at least
the largest figure measured here with a quarter more as margin, rounded up). Every hint of ``LEARNED_GALLERY`` (networks in
the official layouts, random weights: the activations' sizes do not depend on the values) and of the
weight-free ``GALLERY`` runs in a fresh process on a ``size`` x ``size`` image at that resolution; the figure
is the process's peak RSS during the call minus its RSS just before (networks already built), divided by
the pixels processed.

    python -P bench/bench_annotator_memory.py [--sizes 512 1024] [--hints hed midas_depth canny ...]
"""

from __future__ import annotations

import argparse

import torch

from affordance.bench import _common as C
from affordance.preprocessors import GALLERY
from affordance.preprocessors.networks import LEARNED_GALLERY, NETWORK_FOR_FILE

MiB = 1 << 20


def child(hint: str, size: int) -> None:
    if hint in LEARNED_GALLERY:
        files, run = LEARNED_GALLERY[hint]
        nets = [NETWORK_FOR_FILE[f]().eval() for f in files]
    else:
        nets, run = [], lambda x, _nets, resolution: GALLERY[hint](x, resolution)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        C.report_peak(lambda: run(x, nets, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="square image sides = resolutions")
    every = [*LEARNED_GALLERY, *(h for h in GALLERY if h not in LEARNED_GALLERY)]
    parser.add_argument("--hints", nargs="+", default=every, choices=every)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    C.require_peak_memory()
    C.print_header("bench_annotator_memory: peak working memory per processed pixel (CPU, fp32, batch 1)", torch.device("cpu"))
    print()
    print(f"{'hint':16} {'size':>5} {'peak MiB':>9} {'bytes/px':>9} {'s':>6}")
    worst: dict[str, float] = {}
    for hint in args.hints:
        for size in args.sizes:
            r = C.peak_in_child(__file__, hint, size)
            if isinstance(r, str):
                print(f"{hint:16} {size:>5} {r}")
                continue
            per_px = r["peak"] / (size * size)
            worst[hint] = max(worst.get(hint, 0.0), per_px)
            print(f"{hint:16} {size:>5} {r['peak'] / MiB:>9.0f} {per_px:>9.0f} {r['seconds']:>6.1f}")
    print()
    print("largest bytes per pixel, and x1.25 (the nodes' WORK_BYTES_PER_PIXEL is at least this):")
    for hint, v in worst.items():
        print(f"  {hint:16} {v:>6.0f}  x1.25 = {v * 1.25:>6.0f}")
    C.print_load_average("end")


if __name__ == "__main__":
    main()

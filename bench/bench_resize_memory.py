"""Peak working memory of Resize Hint per output pixel and per input pixel (CPU, fp32, one image).

Resize Hint's memory guard (``RESIZE_BYTES_PER_PIXEL`` per output pixel plus ``RESIZE_INPUT_BYTES_PER_PIXEL``
per input pixel, nodes/preprocess.py) comes from these figures. Each kind of hint it tells apart (a photo, a
black/white edge hint, a label map of 150 colours, an inpaint hint with a masked square) is resized in a fresh
process twice: enlarged (``--small`` to ``--large`` px: the output dominates) and shrunk (``--large`` to
``--small``: the input dominates). The figure is the process's peak RSS during the call minus its RSS just
before (the input already made), divided by the output's pixels (enlarging) or the input's (shrinking).

    python -P bench/bench_resize_memory.py [--small 1024] [--large 4096]
"""

from __future__ import annotations

import argparse

import torch

from affordance.bench import _common as C
from affordance.preprocessors import resize_hint

MiB = 1 << 20
KINDS = ("photo", "binary", "palette", "inpaint")


def make(kind: str, side: int) -> torch.Tensor:
    """``(1, 3, side, side)`` float32 hint of ``kind``."""
    g = torch.Generator().manual_seed(0)
    if kind == "photo":
        return torch.rand(1, 3, side, side, generator=g)
    if kind == "binary":
        x = torch.zeros(1, 3, side, side)
        x[..., ::7, :] = 1.0
        return x
    if kind == "palette":
        labels = torch.randint(0, 150, (max(1, side // 64), max(1, side // 64)), generator=g)
        labels = labels.repeat_interleave(64, 0).repeat_interleave(64, 1)[:side, :side]
        colours = torch.randint(0, 256, (150, 3), generator=g).float() / 255
        return colours[labels].permute(2, 0, 1)[None].contiguous()
    x = torch.rand(1, 3, side, side, generator=g)
    x[..., side // 4 : side // 2, side // 4 : side // 2] = -1.0
    return x


def child(kind: str, src: int, dst: int) -> None:
    x = make(kind, src)
    C.report_peak(lambda: resize_hint(x, dst, dst, "just_resize"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1024)
    parser.add_argument("--large", type=int, default=4096)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    C.require_peak_memory()
    C.print_header("bench_resize_memory: Resize Hint's peak working memory (CPU, fp32, one image)", torch.device("cpu"))
    print()
    print(f"{'kind':8} {'resize':>12} {'peak MiB':>9} {'bytes/px':>9} {'per':>7} {'s':>6}")
    for kind in args.kinds:
        for src, dst, per in ((args.small, args.large, "output"), (args.large, args.small, "input")):
            r = C.peak_in_child(__file__, kind, src, dst)
            if isinstance(r, str):
                print(f"{kind:8} {src:>5}->{dst:<6} {r}")
                continue
            pixels = max(src, dst) ** 2
            print(
                f"{kind:8} {src:>5}->{dst:<6} {r['peak'] / MiB:>9.0f} {r['peak'] / pixels:>9.1f} {per:>7} "
                f"{r['seconds']:>6.1f}"
            )
    C.print_load_average("end")


if __name__ == "__main__":
    main()

"""Weight-free preprocessors: our batched path against the peers' per-image OpenCV loop, in one run.

The peer pattern (comfyui_controlnet_aux's ``common_annotator_call`` around the ControlNet 1.1
annotators): for each image of the batch, convert to 8-bit HWC numpy, resize the short side to the
detection resolution and pad to a multiple of 64, run the OpenCV annotator, crop, convert back.
Ours: one batched call on the device. Prints images/s for both and their ratio, and whether the canny and
tile hints are the peers' (on the CPU they must be, bit for bit: the same work is timed).

    python -P bench/bench_preprocessors.py [--device cuda|cpu] [--batch 16] [--size 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import cv2
import numpy as np
import torch

from affordance.bench import _common as C
from affordance.preprocessors import canny, shuffle, tile
from affordance.preprocessors.sheet import demo_scene

# the deterministic hints, compared with the peers' (shuffle's flow is random in both)
COMPARED = ("canny", "tile")


def _pad64(x: int) -> int:
    return int(np.ceil(x / 64.0) * 64 - x)


def _peer_resize_with_pad(img: np.ndarray, resolution: int) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    h, w = img.shape[:2]
    k = resolution / min(h, w)
    interp = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    ht, wt = int(np.round(h * k)), int(np.round(w * k))
    img = cv2.resize(img, (wt, ht), interpolation=interp)
    padded = np.pad(img, [[0, _pad64(ht)], [0, _pad64(wt)], [0, 0]], mode="edge")
    return padded, lambda x: np.ascontiguousarray(x[:ht, :wt])


def _make_noise_disk(h: int, w: int, f: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.uniform(0, 1, ((h // f) + 2, (w // f) + 2, 1))
    noise = cv2.resize(noise, (w + 2 * f, h + 2 * f), interpolation=cv2.INTER_CUBIC)[f : f + h, f : f + w]
    noise -= noise.min()
    noise /= noise.max()
    return noise[:, :, None]


def peer_canny(img: np.ndarray, res: int) -> np.ndarray:
    x, crop = _peer_resize_with_pad(img, res)
    return crop(cv2.Canny(x, 100, 200))


def peer_shuffle(img: np.ndarray, res: int) -> np.ndarray:
    x, crop = _peer_resize_with_pad(img, res)
    x = crop(x)
    h, w = x.shape[:2]
    rng = np.random.default_rng(0)
    fx = _make_noise_disk(h, w, 256, rng) * float(w - 1)
    fy = _make_noise_disk(h, w, 256, rng) * float(h - 1)
    flow = np.concatenate([fx, fy], axis=2).astype(np.float32)
    return cv2.remap(x, flow, None, cv2.INTER_LINEAR)


def peer_tile(img: np.ndarray, res: int, k: int = 3) -> np.ndarray:
    x, crop = _peer_resize_with_pad(img, res)
    x = crop(x)
    h, w = (int(np.round(s / 64.0)) * 64 for s in x.shape[:2])
    y = cv2.resize(x, (w // 2**k, h // 2**k), interpolation=cv2.INTER_AREA)  # comfyui_controlnet_aux's TileDetector
    for _ in range(k):
        y = cv2.pyrUp(y)
    return y


def peer_loop(fn: Callable[[np.ndarray, int], np.ndarray], images: torch.Tensor, res: int) -> torch.Tensor:
    """The per-image pattern, including the tensor <-> 8-bit numpy conversions the peers do."""
    out = []
    for im in images:
        arr = (im.permute(1, 2, 0).cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)
        hint = fn(arr, res)
        if hint.ndim == 2:
            hint = np.stack([hint] * 3, axis=2)
        out.append(torch.from_numpy(hint.astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = C.pick_device(args.device)
    C.print_header("weight-free preprocessors: batched (ours) vs per-image OpenCV loop (peers)", device)
    C.print_load_average("before")
    base = demo_scene(args.size, args.size)
    images = torch.cat([base.roll(i * 37, dims=-1) for i in range(args.batch)]).contiguous()
    images = (images * 255).round() / 255  # 8-bit content, as ComfyUI's images are
    res = args.size
    cases = {
        "canny": (lambda x: canny(x, 100, 200, res), peer_canny),
        "shuffle": (lambda x: shuffle(x, 0, res), peer_shuffle),
        "tile": (lambda x: tile(x, 3, res), peer_tile),
    }
    print(f"batch {args.batch} of {args.size}x{args.size}, detection resolution {res}, median of {args.rounds} rounds")
    print(f"{'annotator':<10} {'peers (img/s)':>14} {'ours (img/s)':>13} {'ours/peers':>11}")
    for name, (ours, theirs) in cases.items():
        x = images.to(device)
        t_ours = C.timed(functools.partial(ours, x), device, args.rounds)
        t_peer = C.timed(functools.partial(peer_loop, theirs, images, res), device, args.rounds)
        print(f"{name:<10} {args.batch / t_peer:>14.1f} {args.batch / t_ours:>13.1f} {t_peer / t_ours:>10.2f}x")
        if name in COMPARED:
            a, b = ours(images[:2].to(device)).cpu(), peer_loop(theirs, images[:2], res)
            same = a.shape == b.shape and torch.equal(a, b)
            gap = f" (largest difference {(a - b).abs().max().item():.3g})" if a.shape == b.shape and not same else ""
            print(f"{'':<10} {name} hints identical to the peers': {same}{gap}")
    C.print_load_average("after")


if __name__ == "__main__":
    main()

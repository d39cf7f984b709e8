"""Learned annotators: our warm, batched path against the peers' reload-every-run, per-image pattern.

Peers (controlnet-aux 0.0.10, the code comfyui_controlnet_aux wraps): every run loads the detector
with ``from_pretrained`` and processes the batch image by image. Ours: the network loaded once (kept
warm, as ComfyUI's model management keeps it), the batch in one call, fp16 on GPUs. Same seeded
random weights in the official layouts for both. Prints images/s and ratios (warm and reload).

    python -P bench/bench_annotators.py [--device cuda] [--batch 16] [--size 512] [--annotators hed midas openpose]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from affordance.bench import _common as C
from affordance.preprocessors.hed import HED_FILE, HEDNet, hed
from affordance.preprocessors.midas import MIDAS_FILE, DPTHybridNet, midas_depth
from affordance.preprocessors.openpose import (
    BODY_FILE,
    FACE_FILE,
    HAND_FILE,
    BodyPoseNet,
    FaceNet,
    HandPoseNet,
    openpose,
)
from affordance.preprocessors.sheet import demo_scene
from affordance.preprocessors.weights import load_annotator

NetT = TypeVar("NetT", bound=torch.nn.Module)


def seeded(net: torch.nn.Module, seed: int, gain: float = 0.5) -> torch.nn.Module:
    """He-scaled seeded weights, positive BatchNorm variances: structured, finite maps."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(net.state_dict(keep_vars=True).items()):
            if not p.is_floating_point():
                continue
            fan_in = p[0].numel() if p.ndim > 1 else 0
            std = gain * (2.0 / fan_in) ** 0.5 if fan_in else 0.05
            p.copy_(std * torch.randn(p.shape, generator=g))
            if name.endswith("running_var"):
                p.abs_().add_(0.5)
    return net


def write_weights(folder: Path) -> None:
    for name, net, seed in (
        (HED_FILE, HEDNet(), 1),
        (MIDAS_FILE, DPTHybridNet(), 2),
        (BODY_FILE, BodyPoseNet(), 3),
        (HAND_FILE, HandPoseNet(), 4),
        (FACE_FILE, FaceNet(), 5),
    ):
        torch.save(seeded(net, seed).state_dict(), folder / name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--annotators", nargs="+", default=["hed", "midas", "openpose"])
    args = parser.parse_args(argv)
    device = C.pick_device(args.device)
    half = device.type == "cuda"
    C.print_header("learned annotators: warm batched (ours) vs reload-every-run per-image (controlnet-aux)", device)
    try:
        import controlnet_aux  # noqa: F401
        from controlnet_aux import HEDdetector, MidasDetector, OpenposeDetector

        peers_ok = True
    except Exception as exc:  # a peer that cannot import is reported, never fatal
        print(f"controlnet-aux unavailable ({type(exc).__name__}: {exc}): only ours is timed")
        peers_ok = False
    base = demo_scene(args.size, args.size)
    images = torch.cat([base.roll(i * 29, dims=-1) for i in range(args.batch)])
    images = (images * 255).round() / 255
    arrays = [(im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in images]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_weights(folder)
        ours: dict[str, Callable[[torch.Tensor], object]] = {}
        peers: dict[str, Callable[[], object]] = {}

        def ready(net: NetT) -> NetT:
            """An annotator network on the device, in fp16 on CUDA."""
            net = net.to(device)
            return net.half() if half else net

        def peer_run(load: Callable[[], Any], **options: Any) -> Callable[[], object]:
            """A controlnet-aux detector loaded at every run (as its nodes do), then run image by image."""

            def run() -> object:
                det = load().to(device)
                return [det(a, args.size, args.size, output_type="np", **options) for a in arrays]

            return run

        for name in args.annotators:
            if name == "hed":
                hed_net = ready(load_annotator(folder / HED_FILE, HEDNet(), HED_FILE))
                ours[name] = functools.partial(hed, net=hed_net, safe=False, resolution=args.size)
                if peers_ok:
                    peers[name] = peer_run(functools.partial(HEDdetector.from_pretrained, tmp))
            elif name == "midas":
                midas_net = ready(load_annotator(folder / MIDAS_FILE, DPTHybridNet(), MIDAS_FILE))
                ours[name] = functools.partial(midas_depth, net=midas_net, resolution=args.size)
                if peers_ok:
                    peers[name] = peer_run(functools.partial(MidasDetector.from_pretrained, tmp, filename=MIDAS_FILE))
            elif name == "openpose":
                body = ready(load_annotator(folder / BODY_FILE, BodyPoseNet(), BODY_FILE))
                hand = ready(load_annotator(folder / HAND_FILE, HandPoseNet(), HAND_FILE))
                face = ready(load_annotator(folder / FACE_FILE, FaceNet(), FACE_FILE))
                ours[name] = functools.partial(
                    openpose,
                    body_net=body,
                    hand_net=hand,
                    face_net=face,
                    detect_body=True,
                    detect_hand=True,
                    detect_face=True,
                    resolution=args.size,
                )
                if peers_ok:
                    options = {"include_body": True, "include_hand": True, "include_face": True}
                    peers[name] = peer_run(functools.partial(OpenposeDetector.from_pretrained, tmp), **options)
        print(
            f"batch {args.batch} of {args.size}x{args.size}, median of {args.rounds} rounds; ours {'fp16' if half else 'fp32'}"
        )
        print(f"{'annotator':<10} {'peers, reload (img/s)':>22} {'ours, warm (img/s)':>19} {'ratio':>8}")
        x = images.to(device)
        for name, fn in ours.items():
            t_ours = C.timed(functools.partial(fn, x), device, args.rounds)
            if name in peers:
                t_peer = C.timed(peers[name], device, args.rounds)
                print(f"{name:<10} {args.batch / t_peer:>22.1f} {args.batch / t_ours:>19.1f} {t_peer / t_ours:>7.1f}x")
            else:
                print(f"{name:<10} {'-':>22} {args.batch / t_ours:>19.1f} {'-':>8}")


if __name__ == "__main__":
    main()

"""Residual reuse (lossy): ControlNet calls, time and fidelity of reuse every k steps against the exact run.

A whole sampling run, end to end: ComfyUI's Euler sampler with classifier-free guidance (cond and uncond
batched in one model call, as ComfyUI batches them) over SD's discrete EPS schedule ("normal" scheduler),
a diffusers ``UNet2DConditionModel`` as the denoiser, our ControlNet applied and set to reuse through the
nodes' own logic (``apply_control`` of AST_ApplyControlNet, ``reuse_residuals`` of AST_ControlResidualReuse)
and driven exactly as ComfyUI drives it (``pre_run``, ``get_control`` per model call, ``cleanup``), and a
diffusers ``AutoencoderKL`` decoding the final latent. Every weight is seeded random (nothing is
downloaded), so the **timings are real and the fidelity figures only indicative**: trained models have
smoother residual trajectories, and the PSNR a person would see has to be measured with real weights.

Runs: no ControlNet (to size the control's own effect), the exact run (k = 1), then every variant (``k`` or
``k:end_percent``, the latter keeping the last part of sampling exact). Printed per run: ControlNet forward
calls (counted on the network), wall time of the run, of the ControlNet side (``get_control``) and of the
UNet, the speed-ups over the exact run, and fidelity against the exact run: PSNR of the decoded image
(``[0, 1]``, peak 1), PSNR of the final latent (peak = the exact latent's value range) and the reuse error as
a fraction of the control's effect (``|x_k - x_exact| / |x_exact - x_none|``, L2).

  python -P bench/bench_reuse.py                       # CUDA: sd15, 512 px, fp16, 20 steps; CPU: sd15, 256 px, fp32
  python -P bench/bench_reuse.py --preset tiny --size 64 --steps 6   # seconds, on any CPU (the CI smoke test)
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from affordance.bench import _common as C
from affordance.controlnet import ControlNet, ControlNetConfig
from affordance.nodes.apply import apply_control
from affordance.nodes.control import AffordanceControl
from affordance.nodes.reuse import reuse_residuals

# diffusers UNet / VAE configurations matching our ControlNet presets
UNETS: dict[str, dict[str, Any]] = {
    "sd15": dict(cross_attention_dim=768, attention_head_dim=8),  # diffusers' defaults are SD1.x's blocks
    "tiny": dict(
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=768,
        attention_head_dim=8,
    ),
}
CONTROLNETS: dict[str, ControlNetConfig] = {
    "sd15": C.config_for("sd15"),
    "tiny": ControlNetConfig(
        model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), transformer_depth=(1, 0), context_dim=768
    ),
}
VAES: dict[str, dict[str, Any]] = {
    "sd15": dict(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
    ),
    "tiny": dict(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
    ),
}
LATENT_SCALE = 0.18215  # SD1.x: the sampler's latents are the VAE's times this


class DiscreteEps:
    """SD's discrete EPS model sampling (scaled-linear betas, 1000 steps), with ComfyUI's method names."""

    def __init__(self) -> None:
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        alphas = torch.cumprod(1 - betas, 0)
        self.sigmas = ((1 - alphas) / alphas).sqrt().float()
        self.log_sigmas = self.sigmas.log()

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        t = timestep.float().clamp(0, 999)
        lo, hi = t.floor().long(), t.ceil().long()
        w = t.frac()
        return ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]).exp()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        dists = sigma.float().log().cpu()[:, None] - self.log_sigmas[None]
        return dists.abs().argmin(dim=1).view(sigma.shape).float().to(sigma.device)

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x / (sigma.view(-1, 1, 1, 1) ** 2 + 1.0) ** 0.5

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)))

    def normal_schedule(self, steps: int) -> list[float]:
        """ComfyUI's "normal" scheduler: timesteps evenly from 999 to 0, then sigma 0."""
        ts = torch.linspace(999, 0, steps)
        return [float(s) for s in self.sigma(ts)] + [0.0]


@dataclass
class Setup:
    """Models and seeded inputs shared by every run."""

    unet: Any  # diffusers' UNet2DConditionModel
    vae: Any  # diffusers' AutoencoderKL, or None
    loaded: AffordanceControl  # what the loader node would output
    sampling: DiscreteEps
    model: SimpleNamespace  # what pre_run receives
    positive: list
    negative: list
    image: torch.Tensor  # IMAGE (1, H, W, 3)
    noise: torch.Tensor  # (1, 4, h, w)
    device: torch.device
    dtype: torch.dtype


@dataclass
class Run:
    """One sampling run's result and timings (seconds)."""

    latent: torch.Tensor
    total: float
    controlnet: float
    unet: float
    forwards: int
    timings: list[float] = field(default_factory=list)


def build(preset: str, size: int, device: torch.device, dtype: torch.dtype, seed: int, vae: bool) -> Setup:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # no advice about from_pretrained: these models are built, not loaded
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=size // 8, **UNETS[preset]).to(device, dtype).eval().requires_grad_(False)
    decoder = None
    if vae:
        # fp32 always: decoding is not timed, and random fp16 decoders can overflow
        decoder = AutoencoderKL(**VAES[preset]).to(device, torch.float32).eval().requires_grad_(False)
    config = CONTROLNETS[preset]
    sd = C.random_state_dict(config, seed=seed, dtype=dtype)
    with torch.device("meta"):
        net = ControlNet(config)
    net.load_state_dict(sd, strict=True, assign=True)
    net = net.to(device).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 1)
    ctx = torch.randn(2, 77, config.context_dim, generator=g)
    positive = [[ctx[:1].to(device), {}]]
    negative = [[ctx[1:].to(device), {}]]
    image = torch.rand(1, size, size, 3, generator=g)
    noise = torch.randn(1, 4, size // 8, size // 8, generator=g).to(device)
    sampling = DiscreteEps()
    model = SimpleNamespace(model_sampling=sampling, model_config=SimpleNamespace(unet_config={"context_dim": 768}))
    loaded = AffordanceControl(net, None, name=f"random {preset} ControlNet")
    return Setup(unet, decoder, loaded, sampling, model, positive, negative, image, noise, device, dtype)


def attach(setup: Setup, k: int | None, end_percent: float = 1.0) -> AffordanceControl | None:
    """The control object the sampler sees: applied as AST_ApplyControlNet does, then set to reuse."""
    if k == 0:
        return None
    pos, neg = apply_control(setup.positive, setup.negative, setup.loaded, setup.image, 1.0, 0.0, 1.0)
    if k is not None:
        pos, neg = reuse_residuals(pos, neg, k, 0.0, end_percent)
    return pos[0][1]["control"]


@torch.inference_mode()
def sample(setup: Setup, control: AffordanceControl | None, steps: int, cfg: float) -> Run:
    """Euler with CFG, as ComfyUI's ``euler`` sampler runs it (``denoised = x - sigma * eps``)."""
    dev, ms = setup.device, setup.sampling
    sigmas = ms.normal_schedule(steps)
    ctx = torch.cat([setup.negative[0][0], setup.positive[0][0]]).to(dev, setup.dtype)
    options = {"cond_or_uncond": [1, 0]}  # ComfyUI batches uncond first
    forwards = [0]
    handle = None
    if control is not None:
        handle = control.network.register_forward_hook(lambda *a: forwards.__setitem__(0, forwards[0] + 1))
        control.pre_run(setup.model, ms.percent_to_sigma)
    t_cn = t_unet = 0.0
    C.sync(dev)
    start = time.perf_counter()
    # a full denoise starts at sigma_max, where ComfyUI's EPS.noise_scaling (max_denoise) scales the noise by
    # sqrt(1 + sigma^2), not sigma
    x = setup.noise.float() * math.sqrt(1.0 + float(sigmas[0]) ** 2)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        xin = torch.cat([x, x])
        sig = torch.full((2,), s, device=dev)
        down = mid = None
        if control is not None:
            t0 = time.perf_counter()
            out = control.get_control(xin, sig, {"c_crossattn": ctx}, 2, options)
            C.sync(dev)
            t_cn += time.perf_counter() - t0
            if out is not None:
                down, mid = out["output"], out["middle"][0]
        t0 = time.perf_counter()
        eps = setup.unet(
            ms.calculate_input(sig, xin).to(setup.dtype),
            ms.timestep(sig),
            encoder_hidden_states=ctx,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample.float()
        C.sync(dev)
        t_unet += time.perf_counter() - t0
        denoised = xin - eps * s
        uncond, cond = denoised.chunk(2)
        d = (x - (uncond + cfg * (cond - uncond))) / s
        x = x + d * (s_next - s)
    C.sync(dev)
    total = time.perf_counter() - start
    if control is not None:
        control.cleanup()
    if handle is not None:
        handle.remove()
    return Run(x, total, t_cn, t_unet, forwards[0])


@torch.inference_mode()
def decode(setup: Setup, latent: torch.Tensor) -> torch.Tensor | None:
    """``(1, 3, H, W)`` in ``[0, 1]`` (the random VAE's picture), or ``None`` without a VAE."""
    if setup.vae is None:
        return None
    img = setup.vae.decode(latent.float() / LATENT_SCALE).sample.float()
    return ((img + 1) / 2).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    """PSNR in dB of ``a`` against ``b`` (``inf`` when equal)."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    if not math.isfinite(mse):  # a result that overflowed (inf/NaN): no PSNR, rather than a crash at the end
        return math.nan
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def parse_variant(text: str) -> tuple[int, float]:
    """``"3"`` -> (3, 1.0); ``"2:0.8"`` -> (2, 0.8)."""
    k, _, end = text.partition(":")
    return int(k), float(end) if end else 1.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(UNETS), default="sd15")
    parser.add_argument("--device", help="cuda or cpu (default: cuda if available, else cpu)")
    parser.add_argument("--size", type=int, help="image size in pixels (default: 512 on CUDA, 256 on the CPU)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], help="default: fp16 on CUDA, fp32 on the CPU")
    parser.add_argument(
        "--variants", nargs="+", default=["2", "3", "4", "2:0.8"], help="k, or k:end_percent (default: 2 3 4 2:0.8)"
    )
    parser.add_argument("--rounds", type=int, help="timed runs per variant, median (default: 3 on CUDA, 1 on the CPU)")
    parser.add_argument("--no-vae", action="store_true", help="compare final latents only")
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
    size = args.size or (512 if cuda else 256)
    rounds = args.rounds or (3 if cuda else 1)
    variants = [parse_variant(v) for v in args.variants]

    C.print_header("bench_reuse: ControlNet residual reuse every k steps (lossy) vs the exact run", device)
    print(
        f"setup: {args.preset} UNet (diffusers) + our {args.preset} ControlNet + VAE, seeded random weights; "
        f"{size}x{size} px (latent {size // 8}x{size // 8}), batch 1 (cond + uncond batched), "
        f"{str(dtype).removeprefix('torch.')}, euler, normal schedule, {args.steps} steps, cfg {args.cfg:g}; "
        f"median of {rounds} timed run(s) per row, rows interleaved, after a warm-up run"
    )
    t0 = time.perf_counter()
    setup = build(args.preset, size, device, dtype, args.seed, vae=not args.no_vae)
    print(f"models built in {time.perf_counter() - t0:.1f} s")

    rows: list[tuple[str, int | None, float]] = [("no ControlNet", 0, 1.0), ("exact (k=1)", None, 1.0)]
    rows += [(f"k={k}" + (f", exact after {end:g}" if end < 1.0 else ""), k, end) for k, end in variants]
    sample(setup, attach(setup, None), min(args.steps, 2), args.cfg)  # warm-up (allocator, kernels)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    all_runs: dict[str, list[Run]] = {name: [] for name, _, _ in rows}
    # without ControlNet only the final latent matters (the control's effect): one run
    all_runs["no ControlNet"].append(sample(setup, None, args.steps, args.cfg))
    for _ in range(rounds):  # rows interleaved, so that a disturbance of the machine hits every row alike
        for name, k, end in rows[1:]:
            all_runs[name].append(sample(setup, attach(setup, k, end), args.steps, args.cfg))
    sampling_peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None  # before any decode
    results: dict[str, Run] = {}
    for name, runs in all_runs.items():
        results[name] = sorted(runs, key=lambda r: r.total)[len(runs) // 2]
        results[name].timings = [r.total for r in runs]
        if any(not torch.equal(r.latent, runs[0].latent) for r in runs):
            print(f"warning: {name}: repeated runs gave different latents (non-deterministic kernels)")
    # The UNet does the same work in every row: its median time per evaluation over all runs gives a whole-run
    # speed-up that machine noise in the UNet's share cannot blur ("run x*").
    unet_per_eval = C.median([r.unet / args.steps for runs in all_runs.values() for r in runs])
    cn_per_call = C.median([r.controlnet / r.forwards for r in all_runs["exact (k=1)"]])

    exact = results["exact (k=1)"]
    none = results["no ControlNet"]
    img_exact, img_none = decode(setup, exact.latent), decode(setup, none.latent)
    peak = float(exact.latent.max() - exact.latent.min())
    effect = float((exact.latent - none.latent).norm())
    print(
        f"\ncontrol effect: |x_exact - x_none| = {effect:.4g} (L2), PSNR of the no-ControlNet image vs exact "
        + (f"{psnr(img_none, img_exact, 1.0):.2f} dB" if img_none is not None and img_exact is not None else "n/a")
    )
    print(
        f"per call: UNet {unet_per_eval * 1000:.0f} ms (median over all runs), ControlNet {cn_per_call * 1000:.0f} ms "
        f"(exact runs): the ControlNet is {cn_per_call / (cn_per_call + unet_per_eval):.0%} of an exact evaluation"
    )
    header = (
        f"{'run':<24} {'CN calls':>8} {'total s':>9} {'CN s':>8} {'UNet s':>8} {'CN x':>6} {'run x':>6} "
        f"{'run x*':>6} {'PSNR img dB':>11} {'PSNR lat dB':>11} {'err/effect':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        cn_x = f"{exact.controlnet / r.controlnet:.2f}" if r.controlnet > 0 and name != "no ControlNet" else "-"
        run_x = f"{exact.total / r.total:.2f}"
        unet_total = unet_per_eval * args.steps
        run_x_star = f"{(unet_total + exact.controlnet) / (unet_total + r.controlnet):.2f}"
        if name == "no ControlNet":
            fid = ("-", "-", "-")
        else:
            img = decode(setup, r.latent)
            fid = (
                f"{psnr(img, img_exact, 1.0):.2f}" if img is not None and img_exact is not None else "n/a",
                f"{psnr(r.latent, exact.latent, peak):.2f}",
                f"{float((r.latent - exact.latent).norm()) / effect:.4f}" if effect > 0 else "n/a",
            )
        print(
            f"{name:<24} {r.forwards:>8} {r.total:>9.2f} {r.controlnet:>8.2f} {r.unet:>8.2f} {cn_x:>6} {run_x:>6} "
            f"{run_x_star:>6} {fid[0]:>11} {fid[1]:>11} {fid[2]:>10}"
        )
    print(
        "\nCN calls: ControlNet forward calls counted on the network; CN s: time in get_control (network, cache, "
        "weighting); CN x / run x: speed-up of the ControlNet side / of the whole run over the exact run (wall "
        "time); run x*: the whole-run speed-up with every row's UNet time set to the common median (UNet work is "
        "the same in every row). Weights are random: timings are real, PSNR figures only indicative."
    )
    if sampling_peak is not None:
        print(f"CUDA peak memory allocated during the sampling runs (weights included, decodes not): {sampling_peak:.0f} MiB")
    C.print_load_average("end")


if __name__ == "__main__":
    main()

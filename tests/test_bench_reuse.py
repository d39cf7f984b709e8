"""Smoke test of bench/bench_reuse.py: a tiny end-to-end sampling run with and without residual reuse."""

from __future__ import annotations

import importlib
import io
import math
import re
from contextlib import redirect_stdout
from types import SimpleNamespace

import pytest
import torch

from affordance.bench import bench_reuse


@pytest.fixture(scope="module")
def bench():
    return importlib.import_module("affordance.bench.bench_reuse")


@pytest.fixture(scope="module")
def no_vae_run() -> str:
    """What one tiny run without the VAE prints (exact and k=2), read by the tests of its figures."""
    buf = io.StringIO()
    with redirect_stdout(buf):
        bench_reuse.main(["--preset", "tiny", "--size", "32", "--steps", "4", "--variants", "2", "--device", "cpu", "--no-vae"])
    return buf.getvalue()


def test_tiny_run_prints_calls_speedups_and_fidelity(bench, capsys):
    bench.main(["--preset", "tiny", "--size", "32", "--steps", "4", "--variants", "2", "4", "--device", "cpu"])
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        for name in ("no ControlNet", "exact (k=1)", "k=2", "k=4"):
            if line.startswith(name + " "):
                rows[name] = line[len(name) :].split()
    assert set(rows) == {"no ControlNet", "exact (k=1)", "k=2", "k=4"}, out
    calls = {name: int(cols[0]) for name, cols in rows.items()}
    assert calls == {"no ControlNet": 0, "exact (k=1)": 4, "k=2": 2, "k=4": 1}
    assert rows["exact (k=1)"][-3:] == ["inf", "inf", "0.0000"]
    for name in ("k=2", "k=4"):
        psnr_img, psnr_latent, err = (float(v) for v in rows[name][-3:])
        assert math.isfinite(psnr_img) and math.isfinite(psnr_latent) and 0.0 < err < 1.0
    assert "only indicative" in out
    assert "repeated runs gave different latents" not in out  # the CPU is deterministic: no false alarm


def test_psnr_and_variants(bench):
    a = torch.zeros(4)
    assert bench.psnr(a, a, 1.0) == math.inf
    assert bench.psnr(a + 0.1, a, 1.0) == pytest.approx(20.0)
    assert bench.psnr(a + 0.1, a, 2.0) == pytest.approx(20.0 + 20 * math.log10(2.0))  # the latents' peak is not 1
    assert math.isnan(bench.psnr(a + math.inf, a, 1.0))  # an overflowed result: no PSNR, no crash
    assert bench.parse_variant("3") == (3, 1.0) and bench.parse_variant("2:0.8") == (2, 0.8)


def test_schedule_is_comfyuis_normal_one(bench):
    ms = bench.DiscreteEps()
    sigmas = ms.normal_schedule(4)
    assert len(sigmas) == 5 and sigmas[-1] == 0.0
    assert sigmas[0] == pytest.approx(14.6146, rel=1e-4)  # SD's sigma_max
    assert sigmas == sorted(sigmas, reverse=True)


# ----- behaviours found untested by mutation round 6 (each test fails on its mutant) ------------------------------
def test_eps_input_scaling():
    """The UNet input of an EPS model is x / sqrt(sigma^2 + 1) (ComfyUI's EPS.calculate_input: 0.3162 for sigma 3)."""
    ms = bench_reuse.DiscreteEps()
    x = torch.ones(2, 4, 2, 2)
    out = ms.calculate_input(torch.tensor([3.0, 0.0]), x)
    assert out[0].flatten().tolist() == pytest.approx([10 ** -0.5] * 16)
    assert out[1].flatten().tolist() == pytest.approx([1.0] * 16)


class ConstantEps:
    def __init__(self, eps_u, eps_c):
        self.eps = (eps_u, eps_c)

    def __call__(self, x, t, **kwargs):
        out = torch.empty_like(x)
        out[0], out[1] = self.eps  # ComfyUI batches uncond first
        return SimpleNamespace(sample=out)


def test_euler_cfg_on_a_constant_eps_model():
    """sample() is ComfyUI's Euler with CFG on an EPS model, from noise scaled as ComfyUI scales it for a full
    denoise: a UNet predicting a constant eps per half of the batch (uncond first) moves x by
    (eps_u + cfg * (eps_c - eps_u)) * (sigma_next - sigma) at every step."""
    ms = bench_reuse.DiscreteEps()
    noise = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    ctx = torch.zeros(1, 77, 8)
    setup = bench_reuse.Setup(ConstantEps(0.1, 0.3), None, None, ms, None, [[ctx, {}]], [[ctx, {}]], None, noise,
                              torch.device("cpu"), torch.float32)
    run = bench_reuse.sample(setup, None, 4, 7.0)
    sigma_max = ms.normal_schedule(4)[0]
    guided = 0.1 + 7.0 * (0.3 - 0.1)
    expected = noise * math.sqrt(1 + sigma_max**2) - guided * sigma_max  # ComfyUI's max_denoise noise scaling
    assert torch.allclose(run.latent, expected, atol=1e-4)
    assert run.forwards == 0


pytest.importorskip("diffusers")


def test_per_call_figures_are_in_ms(no_vae_run):
    """'per call: UNet N ms' is the median time per evaluation in ms: about the exact run's UNet s / steps * 1000."""
    out = no_vae_run
    m = re.search(r"per call: UNet (\d+) ms \(median over all runs\), ControlNet (\d+) ms .*?is (\d+)% of", out)
    unet_ms, cn_ms, share = (int(v) for v in m.groups())
    row = next(line for line in out.splitlines() if line.startswith("exact (k=1) ")).split()
    cn_s, unet_s = float(row[4]), float(row[5])  # name is 2 words, then calls, total s, CN s, UNet s (2 decimals)
    assert unet_s / 4 * 1000 / 3 - 3 <= unet_ms <= (unet_s + 0.01) / 4 * 1000 * 3 + 3
    assert cn_s / 4 * 1000 / 3 - 3 <= cn_ms <= (cn_s + 0.01) / 4 * 1000 * 3 + 3
    assert unet_ms >= 1 and cn_ms >= 1  # milliseconds per call even for the tiny models (16 and 9 ms here)
    assert abs(share - 100 * cn_ms / (cn_ms + unet_ms)) <= 10 if cn_ms + unet_ms else True


def test_percent_to_sigma_matches_comfyui():
    """The sigma where a 'k:end_percent' variant turns exact, as ComfyUI's ModelSamplingDiscrete + EPS gives it
    (0.5 -> 1.61558, 0.8 -> 0.571189, read off ComfyUI 0.3.64)."""
    ms = bench_reuse.DiscreteEps()
    assert ms.percent_to_sigma(0.0) > 1e8 and ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(1.6155803, rel=1e-5)
    assert ms.percent_to_sigma(0.8) == pytest.approx(0.5711889, rel=1e-5)
    assert ms.percent_to_sigma(0.005) == pytest.approx(float(ms.sigma(__import__('torch').tensor(0.995 * 999.0))))
    assert ms.percent_to_sigma(0.005) < 15.0  # below sigma_max (14.61): a real sigma, not the 'always' sentinel


def test_normal_schedule_is_comfyuis():
    """ComfyUI's normal_scheduler(ModelSamplingDiscrete, 3), read off ComfyUI 0.3.64."""
    sigmas = bench_reuse.DiscreteEps().normal_schedule(3)
    assert sigmas == pytest.approx([14.614641, 1.6155803, 0.0291672, 0.0], rel=1e-5)


def test_parts_of_a_run_fit_in_its_wall_time(no_vae_run):
    """The ControlNet and UNet times of a run are parts of its wall time (each timer starts at 0)."""
    out = no_vae_run
    for name in ("exact (k=1)", "k=2"):
        row = next(line for line in out.splitlines() if line.startswith(name + " "))[len(name) :].split()
        total, cn, unet = float(row[1]), float(row[2]), float(row[3])
        assert cn + unet <= total + 0.02, (name, row)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_models_are_built_in_the_runs_dtype(dtype):
    """The UNet and the ControlNet in the run's dtype (fp16 on the GPU), the decoder in fp32 (decoding is not timed)."""
    setup = bench_reuse.build("tiny", 64, torch.device("cpu"), dtype, seed=0, vae=True)
    for module, want in ((setup.unet, dtype), (setup.loaded.network, dtype), (setup.vae, torch.float32)):
        assert {p.dtype for p in module.parameters()} == {want}, type(module).__name__


def test_the_run_samples_a_latent_of_the_image_size_over_8():
    """The noise is the latent of the hint image (SD's VAE: 1/8 of its sides, 4 channels), of a 48 x 48 image here
    for the tiny preset as for any size: a hint resized to another latent size still ran, timing another size."""
    setup = bench_reuse.build("tiny", 48, torch.device("cpu"), torch.float32, seed=0, vae=False)
    assert setup.image.shape == (1, 48, 48, 3) and setup.noise.shape == (1, 4, 6, 6)

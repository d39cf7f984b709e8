"""Smoke test of bench/bench_reuse.py: a tiny end-to-end sampling run with and without residual reuse."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def bench():
    return importlib.import_module("affordance.bench.bench_reuse")


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


def test_psnr_and_variants(bench):
    a = torch.zeros(4)
    assert bench.psnr(a, a, 1.0) == math.inf
    assert bench.psnr(a + 0.1, a, 1.0) == pytest.approx(20.0)
    assert math.isnan(bench.psnr(a + math.inf, a, 1.0))  # an overflowed result: no PSNR, no crash
    assert bench.parse_variant("3") == (3, 1.0) and bench.parse_variant("2:0.8") == (2, 0.8)


def test_schedule_is_comfyuis_normal_one(bench):
    ms = bench.DiscreteEps()
    sigmas = ms.normal_schedule(4)
    assert len(sigmas) == 5 and sigmas[-1] == 0.0
    assert sigmas[0] == pytest.approx(14.6146, rel=1e-4)  # SD's sigma_max
    assert sigmas == sorted(sigmas, reverse=True)

"""bench/bench_annotators.py in the main environment, where controlnet-aux (its peer) is absent: ours is still
timed, and the seeded weights both sides load are the structured, reproducible ones its docstring promises.
tests/reference/test_bench_annotators.py runs it against controlnet-aux."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from affordance.bench import bench_annotators


@pytest.mark.skipif(importlib.util.find_spec("controlnet_aux") is not None, reason="controlnet-aux is installed here")
def test_without_the_peer_ours_is_timed_alone(capsys):
    bench_annotators.main(["--device", "cpu", "--batch", "2", "--size", "64", "--rounds", "1", "--annotators", "hed"])
    out = capsys.readouterr().out
    assert "controlnet-aux unavailable (ModuleNotFoundError: " in out and "): only ours is timed" in out
    row = re.search(r"^hed +- +([\d.]+) +-$", out, flags=re.M)
    assert row and float(row.group(1)) > 0, out
    assert "batch 2 of 64x64, median of 1 rounds; ours fp32" in out


def test_seeded_weights_are_reproducible_and_replace_every_float_tensor():
    """Same seed, same weights; another seed, others; every floating tensor replaced (BatchNorm's running
    variances positive, at least 0.5), integer counters left alone."""

    def net() -> torch.nn.Module:
        torch.manual_seed(123)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 2, 1))

    fresh = net().state_dict()
    a = bench_annotators.seeded(net(), seed=1).state_dict()
    b = bench_annotators.seeded(net(), seed=1).state_dict()
    c = bench_annotators.seeded(net(), seed=2).state_dict()
    for name, value in a.items():
        assert torch.equal(value, b[name]), name
        if value.is_floating_point():
            assert torch.isfinite(value).all() and not torch.equal(value, fresh[name]), name
            assert not torch.equal(value, c[name]), name
        else:
            assert torch.equal(value, fresh[name]), name  # num_batches_tracked
    assert a["1.running_var"].min() >= 0.5
    # He-scaled (gain 0.5): the first conv's std near 0.5 * sqrt(2 / 27)
    assert a["0.weight"].std().item() == pytest.approx(0.5 * (2 / 27) ** 0.5, rel=0.2)

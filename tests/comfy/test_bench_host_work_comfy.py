"""bench/bench_host_work.py against ComfyUI's ControlNet (and diffusers' where installed) on the CPU.

The counts are exact, so the claim the script prints is checked here: a step of ours dispatches fewer operators
(kernel launches on a GPU) and makes fewer Python module calls than ComfyUI's, for SD1.5 and SDXL, also when
ours re-encodes the hint in the call as ComfyUI does; and every implementation computes the same residuals.
"""

from __future__ import annotations

import importlib

import pytest
import torch

pytestmark = pytest.mark.comfy


def test_ours_does_less_host_work_than_comfyui(comfy, capsys):
    bench = importlib.import_module("affordance.bench.bench_host_work")
    threads = torch.get_num_threads()
    try:
        found = bench.main(["--comfyui", str(comfy.path), "--rounds", "1", "--calls", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert out.count("all agree") == 2 and "not measured: comfyui" not in out
    for family in ("sd15", "sdxl"):
        work = found[family]
        theirs = work["comfyui"]
        for mine in ("ours", "ours, hint in call"):
            assert work[mine].operators < theirs.operators, (family, mine, work)
            assert work[mine].module_calls < theirs.module_calls, (family, mine, work)
        if "diffusers" in work:
            assert work["ours"].operators < work["diffusers"].operators, (family, work)

"""bench/bench_load.py's ComfyUI variants: ComfyUI's loader, as bench_load times it, loads a ControlNet it recognises."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from affordance.bench import _common as C
from affordance.bench import bench_load
from affordance.bench.bench_speed import TINY

pytestmark = pytest.mark.comfy


@pytest.mark.parametrize("variant", ["comfy", "comfy-fp16"])
def test_comfy_variant_loads_a_recognised_controlnet(comfy, tmp_path, variant):
    path = tmp_path / "tiny_sd15.safetensors"
    save_file(C.random_state_dict(TINY["sd15"], dtype=torch.float16), str(path))
    load = bench_load._loader(variant, path, "sd15", torch.device("cpu"), comfy.path)
    model = load()
    assert isinstance(model, torch.nn.Module) and sum(p.numel() for p in model.parameters()) > 0


def test_main_times_comfyuis_variant_beside_ours_when_a_checkout_is_given(comfy, tmp_path, capsys, monkeypatch):
    """The whole benchmark with ``--comfyui``: ComfyUI's loader runs in its own child process beside ours and both
    get a row of figures (a checkout given must not drop its variants)."""
    # the children import the pack by name: ComfyUI's environment need not have it installed
    (tmp_path / "pkgs").mkdir()
    (tmp_path / "pkgs" / "affordance").symlink_to(Path(bench_load.__file__).resolve().parents[1], target_is_directory=True)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "pkgs"), os.environ.get("PYTHONPATH")])))
    path = tmp_path / "tiny_sd15.safetensors"
    save_file(C.random_state_dict(TINY["sd15"], dtype=torch.float16), str(path))
    args = ["--file", str(path), "--family", "sd15", "--variants", "ours,comfy", "--repeats", "1", "--device", "cpu"]
    bench_load.main([*args, "--comfyui", str(comfy.path)])
    out = capsys.readouterr().out
    assert "unavailable" not in out and "missing" not in out, out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split()[:1] in (["ours"], ["comfy"])}
    assert set(rows) == {"ours", "comfy"}, out
    assert float(rows["comfy"][2]) > 0 and float(rows["ours"][2]) > 0, out  # load seconds

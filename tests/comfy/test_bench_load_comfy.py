"""bench/bench_load.py's ComfyUI variants: ComfyUI's loader, as bench_load times it, loads a ControlNet it recognises."""

from __future__ import annotations

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

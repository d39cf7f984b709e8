"""A ControlNet of the model's family but for a UNet of another shape (a distilled or pruned UNet): ComfyUI adds
residuals to skip connections by position, skipping those whose shape does not fit with a log warning, so a run
completes with misplaced control or none. Sampled through ComfyUI's own sampler, ours refuses before the first
step."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from affordance.nodes.apply import apply_control
from affordance.nodes.control import FamilyMismatchError
from affordance.nodes.loaders import load_control

from .conftest import tiny_controlnet_weights

pytestmark = pytest.mark.comfy


SHAPES = {
    # two blocks on the first level where the tiny SD1.x UNet has one: 6 residuals instead of 5
    "deeper": ({"num_res_blocks": [2, 1], "transformer_depth": [1, 1, 0]}, r"its 6 residuals have 320 x6 channels"),
    # half as wide (a pruned UNet's ControlNet): every residual has 160 channels where the UNet takes 320
    "narrower": ({"model_channels": 160}, r"its 5 residuals have 160 x5 channels"),
}


def _write(comfy, fam, tmp_path_factory, shape: str):
    config = {k: v for k, v in fam.model.model_config.unet_config.items() if k not in ("out_channels", "dtype")}
    config.update(SHAPES[shape][0], hint_channels=3, dtype=torch.float32)
    config.update(device="meta", operations=comfy.ops.disable_weight_init)
    with torch.device("meta"):
        skeleton = comfy.cldm.ControlNet(**config)
    path = tmp_path_factory.mktemp(shape) / f"sd15_{shape}.safetensors"
    save_file(tiny_controlnet_weights(skeleton, seed=7), str(path))
    return path


@pytest.mark.parametrize("shape", list(SHAPES))
def test_ours_refuses_before_sampling(comfy, tiny_family, tmp_path_factory, comfy_sample, shape):
    fam = tiny_family("sd15")
    control = load_control(_write(comfy, fam, tmp_path_factory, shape))
    assert control.family_label == "SD1.x"  # the same family: the text width check alone would let it run
    pos, neg = apply_control(fam.conditioning(1), fam.conditioning(2), control, fam.image(3), 1.0, 0.0, 1.0)
    with pytest.raises(FamilyMismatchError, match=SHAPES[shape][1] + r", but the model's UNet takes 5 with 320 x5"):
        comfy_sample(fam.patcher, pos, neg, fam.latent(), steps=2)

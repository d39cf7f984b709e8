"""Numeric parity with ComfyUI's ``comfy.cldm.cldm.ControlNet``: same weights, same inputs, same residuals.

Full-size networks with seeded random weights (zero convs included, so every residual is non-zero),
fp32 on the CPU, hint 64x64 px (latent 8x8), batch 2. Weights reach each side two ways: the same
in-memory state dict, and the same file read by each side's own loader (``comfy.controlnet.load_controlnet``
against our ``load_controlnet``) in the original, ``control_model.``-prefixed and diffusers layouts.
"""

from __future__ import annotations

import gc
import logging

import pytest
import torch
from safetensors.torch import save_file

from affordance.controlnet import SD15, SD21, SDXL, ControlNet, Layout, config_from_state_dict, load_controlnet
from affordance.controlnet.keymap import original_to_diffusers

pytestmark = [pytest.mark.comfy, pytest.mark.slow]

PRESET = {"sd15": SD15, "sd21": SD21, "sdxl": SDXL}


def ours_from_state_dict(sd: dict[str, torch.Tensor]) -> ControlNet:
    with torch.device("meta"):
        model = ControlNet(config_from_state_dict(sd))
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def run_both(comfy_model: torch.nn.Module, ours: ControlNet, inputs, dtype: torch.dtype = torch.float32):
    x, hint, timesteps, context, y = (None if t is None else t.to(dtype) for t in inputs)
    with torch.inference_mode():
        theirs = comfy_model(x, hint, timesteps, context, y)
        mine = ours(x, hint, timesteps, context, y)
    return theirs, mine


@pytest.mark.parametrize("case", ["sd15", "sd21", "sdxl"], indirect=True)
def test_same_state_dict_same_residuals(case, comfy_from_state_dict, compare_residuals):
    sd = case.state_dict
    theirs_model = comfy_from_state_dict(sd)
    ours = ours_from_state_dict(sd)
    assert ours.config == PRESET[case.family]
    assert next(theirs_model.parameters()).dtype == torch.float32
    theirs, mine = run_both(theirs_model, ours, case.inputs)
    assert len(mine) == ours.config.num_residuals
    compare_residuals(f"{case.family} fp32 state dict", theirs, mine)


@pytest.mark.parametrize("case", ["sd15", "sd21"], indirect=True)
def test_float64_agreement_is_exact_up_to_rounding(case, comfy_from_state_dict, compare_residuals):
    """In float64 the two implementations agree to ~1e-13: the fp32 differences are rounding, not structure.

    ComfyUI's SD2.x config sets ``attn_precision=torch.float32``, which makes its attention run in float32
    whenever the inputs are not float32 (float64 included); that precision cast, not the architecture, is
    switched off here so the float64 comparison is exact.
    """
    sd = {k: v.double() for k, v in case.state_dict.items()}
    theirs_model = comfy_from_state_dict(sd, attn_precision=None)
    ours = ours_from_state_dict(sd)
    theirs, mine = run_both(theirs_model, ours, case.inputs, dtype=torch.float64)
    compare_residuals(f"{case.family} fp64 state dict", theirs, mine, tol=1e-9)


LAYOUTS = {
    # layout -> (file name, what our loader must report)
    "original": ("cn.safetensors", Layout.ORIGINAL),
    "prefixed": ("cn.pth", Layout.ORIGINAL_PREFIXED),
    "diffusers": ("diffusion_pytorch_model.safetensors", Layout.DIFFUSERS),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", ["sd15", "sd21"], indirect=True)
def test_same_file_same_residuals_through_both_loaders(case, layout, comfy, compare_residuals, tmp_path, caplog):
    name, expected_layout = LAYOUTS[layout]
    path = tmp_path / name
    sd = case.state_dict
    if layout == "original":
        save_file(sd, path)
    elif layout == "prefixed":
        torch.save({"control_model." + k: v for k, v in sd.items()}, path)
    else:
        save_file(original_to_diffusers(sd), path)
    try:
        caplog.set_level(logging.DEBUG)
        control = comfy.controlnet.load_controlnet(str(path))
        assert control is not None, "ComfyUI could not load the file"
        complaints = [
            r.getMessage()
            for r in caplog.records
            if r.getMessage().startswith(("missing controlnet keys", "unexpected controlnet keys", "leftover keys"))
        ]
        assert complaints == []
        theirs_model = control.control_model.eval()
        assert next(theirs_model.parameters()).dtype == torch.float32

        ours, report = load_controlnet(path)
        assert report.layout is expected_layout
        assert report.family is PRESET[case.family].family
        assert ours.config == PRESET[case.family]
        assert ours.dtype == torch.float32

        theirs, mine = run_both(theirs_model, ours, case.inputs)
        compare_residuals(f"{case.family} fp32 file, {layout} layout", theirs, mine)
        del control, theirs_model, ours
        gc.collect()
    finally:
        path.unlink(missing_ok=True)  # 1.5 GB each: do not leave them in pytest's kept tmp dirs

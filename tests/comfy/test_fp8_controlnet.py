"""An fp8 ControlNet file stays in fp8, as in ComfyUI's own loader: no more memory than ComfyUI's path.

ComfyUI keeps a ControlNet whose weights are mostly fp8 (counted by elements) in fp8 and casts each layer's
weights to the compute dtype as it runs. Ours reads fp8 exactly as fp16 and, before this test, then let
ComfyUI pick the dtype for an fp16 file: fp16 on a GPU (twice ComfyUI's memory) and fp32 on the CPU (four
times). Now the file's own dtype decides, so the weights are stored as ComfyUI stores them, and the residuals
are exactly those of the same values kept wider (casting an fp8 value to fp16 or fp32 is exact).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from affordance.nodes.apply import apply_control
from affordance.nodes.loaders import load_control

pytestmark = pytest.mark.comfy

FP8 = [torch.float8_e4m3fn, torch.float8_e5m2]


@pytest.fixture(scope="module")
def sd15(tiny_family):
    return tiny_family("sd15")


def _write(src, path, dtype: torch.dtype, *, small_wide: bool) -> dict[str, torch.Tensor]:
    """The file at ``src`` with its weights in ``dtype``; ``small_wide`` keeps 1-D tensors (biases, norms) in
    fp32, as some converters do: then most tensors are fp32 but most elements fp8."""
    sd = {k: v if small_wide and v.ndim == 1 else v.to(dtype) for k, v in load_file(str(src)).items()}
    save_file(sd, str(path))
    return sd


def _residuals(fam, control, seed: int = 5) -> list[torch.Tensor]:
    model = fam.model
    ctrl = control.copy().set_cond_hint(fam.image(3).movedim(-1, 1), 0.8, (0.0, 1.0))
    x, t, cond = fam.model_inputs(seed)
    with torch.inference_mode():
        ctrl.pre_run(model, model.model_sampling.percent_to_sigma)
        try:
            out = ctrl.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
        finally:
            ctrl.cleanup()
    return [r for r in out["output"] + out["middle"] if r is not None]


def _weight_dtypes(network: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in network.parameters()}


@pytest.mark.parametrize("small_wide", [False, True], ids=["all-fp8", "norms-fp32"])
@pytest.mark.parametrize("dtype", FP8, ids=lambda d: str(d).removeprefix("torch."))
def test_fp8_file_is_kept_in_fp8_like_comfyui(sd15, comfy, tmp_path, dtype, small_wide):
    path = tmp_path / "cn_fp8.safetensors"
    sd = _write(sd15.controlnet_files[0], path, dtype, small_wide=small_wide)
    n_wide = sum(v.dtype == torch.float32 for v in sd.values())
    assert (n_wide > len(sd) / 2) == small_wide  # by tensor count fp32 wins there; by elements fp8 always

    ours = load_control(path)
    theirs = comfy.controlnet.load_controlnet(str(path))
    assert _weight_dtypes(theirs.control_model) == {dtype}  # ComfyUI's own choice
    assert _weight_dtypes(ours.network) == {dtype}
    assert ours.manual_cast_dtype == theirs.manual_cast_dtype == torch.float32  # the CPU computes in fp32
    assert ours.patcher.model_size() == theirs.control_model_wrapped.model_size()

    # the same values kept wide (the file widened to fp32): bit for bit the same residuals
    wide_path = tmp_path / "cn_wide.safetensors"
    save_file({k: v.to(dtype).float() for k, v in sd.items()}, str(wide_path))
    wide = load_control(wide_path)
    assert _weight_dtypes(wide.network) == {torch.float32}
    mine, ref = _residuals(sd15, ours), _residuals(sd15, wide)
    assert len(mine) == len(ref) == 5
    for a, b in zip(mine, ref):
        assert a.dtype == torch.float32 and torch.count_nonzero(a) > 0
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", FP8, ids=lambda d: str(d).removeprefix("torch."))
def test_fp8_file_samples_like_comfyuis(sd15, comfy_nodes, comfy_sample, record_sampling, tmp_path, dtype):
    """Through ComfyUI's sampler: ours from the fp8 file = ComfyUI's ControlNet from the same file."""
    import comfy.controlnet  # noqa: TID251 (the host under test)

    path = tmp_path / "cn_fp8.safetensors"
    _write(sd15.controlnet_files[1], path, dtype, small_wide=False)
    ours, theirs = load_control(path), comfy.controlnet.load_controlnet(str(path))
    positive, negative = sd15.conditioning(1), sd15.conditioning(2)
    image = sd15.image(11)
    mine = comfy_sample(
        sd15.patcher, *apply_control(positive, negative, ours, image, 1.0, 0.0, 1.0), sd15.latent(), steps=3
    )
    applied = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(positive, negative, theirs, image, 1.0, 0.0, 1.0)
    ref = comfy_sample(sd15.patcher, *applied, sd15.latent(), steps=3)
    plain = comfy_sample(sd15.patcher, positive, negative, sd15.latent(), steps=3)
    effect = (ref.double() - plain.double()).abs().max().item()
    diff = record_sampling(f"sd15 {str(dtype).removeprefix('torch.')} file", mine, ref, effect)
    assert effect > 0.05, f"the ControlNet changed the latents by only {effect:.3g}"
    assert diff <= 1e-3, f"ours differs from ComfyUI's by {diff:.3g}"

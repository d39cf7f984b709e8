"""Loading every layout, container and dtype; the loaded model computes what the source model computes."""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet import Family, Layout, build_controlnet, load_controlnet, read_controlnet

LAYOUTS = [
    ("original", Layout.ORIGINAL),
    ("prefixed", Layout.ORIGINAL_PREFIXED),
    ("merged", Layout.ORIGINAL_MERGED),
    ("diffusers", Layout.DIFFUSERS),
    ("diffusers-folder", Layout.DIFFUSERS),
]


def _same_residuals(a, b, inputs, atol=0.0):
    x, hint, t, ctx, y = inputs(a.config)
    with torch.no_grad():
        ra, rb = a(x, hint, t, ctx, y), b(x, hint, t, ctx, y)
    for u, v in zip(ra.as_list(), rb.as_list()):
        torch.testing.assert_close(u.float(), v.float(), atol=atol, rtol=0 if atol == 0 else 1e-3)


COMBOS = [
    (layout, expected, container)
    for layout, expected in LAYOUTS
    for container in ("safetensors", "pth", "ckpt", "bin")
    if layout != "diffusers-folder" or container in ("safetensors", "bin")  # what a diffusers folder holds
]


@pytest.mark.parametrize(("layout", "expected", "container"), COMBOS)
def test_every_layout_and_container(tiny_model, write_checkpoint, inputs, layout, expected, container):
    path = write_checkpoint(tiny_model, layout, container)
    model, report = load_controlnet(path)
    assert report.layout is expected
    assert report.family is Family.SD1
    assert report.container == ("safetensors" if container == "safetensors" else "torch-zip")
    assert report.num_keys == len(tiny_model.state_dict())
    assert report.dropped_keys == (4 if layout == "merged" else 0)
    if container == "ckpt" and layout != "diffusers-folder":
        assert report.skipped_entries == ("epoch", "global_step")
    assert model.config == tiny_model.config
    _same_residuals(model, tiny_model, inputs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("container", ["safetensors", "pth"])
def test_half_precision_files(tiny_model, write_checkpoint, inputs, dtype, container):
    path = write_checkpoint(tiny_model, "original", container, dtype=dtype)
    model, report = load_controlnet(path)
    assert model.dtype == dtype
    assert report.stored_dtypes == {str(dtype).removeprefix("torch."): report.num_keys}
    upcast, _ = load_controlnet(path, dtype=torch.float32)
    assert upcast.dtype == torch.float32
    ref = build_controlnet(read_controlnet(path), dtype=torch.float32)
    _same_residuals(upcast, ref, inputs)
    _same_residuals(upcast, tiny_model, inputs, atol=0.05)


def test_sdxl_family(tiny_xl_model, write_checkpoint, inputs):
    for layout in ("original", "diffusers", "diffusers-folder"):
        model, report = load_controlnet(write_checkpoint(tiny_xl_model, layout, name=layout))
        assert report.family is Family.SDXL
        assert model.config == tiny_xl_model.config
        _same_residuals(model, tiny_xl_model, inputs)


def test_safetensors_load_is_zero_copy(tiny_model, write_checkpoint):
    path = write_checkpoint(tiny_model, "original", "safetensors")
    weights = read_controlnet(path)
    model = build_controlnet(weights)
    key = "input_blocks.0.0.weight"
    assert model.state_dict()[key].data_ptr() == weights.state_dict[key].data_ptr()
    # Copy-on-write: writing the parameter never touches the file.
    before = path.read_bytes()
    with torch.no_grad():
        model.input_blocks[0][0].weight.add_(1.0)
    assert path.read_bytes() == before


def test_global_average_pooling_is_explicit(tiny_model, write_checkpoint):
    path = write_checkpoint(tiny_model, "original")
    assert not load_controlnet(path)[0].config.global_average_pooling
    assert load_controlnet(path, global_average_pooling=True)[0].config.global_average_pooling


def test_global_pool_from_diffusers_config(tiny_model, write_checkpoint):
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["global_pool_conditions"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    assert load_controlnet(folder)[0].config.global_average_pooling


def test_device_argument(tiny_model, write_checkpoint):
    model, _ = load_controlnet(write_checkpoint(tiny_model), device="meta")
    assert model.time_embed[0].weight.device.type == "meta"


def test_weights_file_inside_diffusers_folder_uses_its_config(tiny_model, write_checkpoint):
    """ComfyUI lists 'folder/diffusion_pytorch_model.safetensors'; the folder's config.json still applies."""
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["global_pool_conditions"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    model, report = load_controlnet(folder / "diffusion_pytorch_model.safetensors")
    assert model.config.global_average_pooling and report.layout is Layout.DIFFUSERS


def test_unrelated_config_json_is_ignored(tiny_model, write_checkpoint):
    path = write_checkpoint(tiny_model)
    (path.parent / "config.json").write_text("not json at all")
    assert load_controlnet(path)[1].family is Family.SD1

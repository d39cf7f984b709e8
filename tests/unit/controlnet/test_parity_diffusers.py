"""Parity with diffusers' ControlNetModel (an independent implementation) at full SD1.5, SD2.1 and SDXL size.

Random weights (every parameter, zero convs included, drawn from a seeded normal) are saved by diffusers
as a folder; our loader reads that folder, the bare weights file (no config.json), and the result of our
conversion to the original layout. All must give diffusers' residuals within 1e-4 (fp32, CPU).

SD2.1 and SDXL are saved in fp16, as most published ControlNets are (weights drawn as fp16 values, so the fp32
reference sees exactly what the file holds; our loader reads them as fp32): the SDXL files are 2.5 GB each
instead of 5, and the diffusers folder is deleted before the converted file is loaded, so the test never needs
more than two files' worth of disk.
"""

from __future__ import annotations

import gc
import shutil

import pytest
import torch

from affordance.controlnet import Family, Layout, convert_file, load_controlnet
from affordance.controlnet.layers import sdxl_label

diffusers = pytest.importorskip("diffusers")

CONFIGS = {
    "sd15": dict(cross_attention_dim=768, attention_head_dim=8),
    "sd21": dict(cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20], use_linear_projection=True),
    "sdxl": dict(
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=2048,
        attention_head_dim=[5, 10, 20],
        transformer_layers_per_block=[1, 2, 10],
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    ),
}
FAMILIES = {"sd15": Family.SD1, "sd21": Family.SD2, "sdxl": Family.SDXL}
FILE_DTYPES = {"sd15": torch.float32, "sd21": torch.float16, "sdxl": torch.float16}


def _reference(name: str):
    """diffusers' model in fp32, every weight drawn from a seeded normal and rounded to FILE_DTYPES[name]."""
    with torch.device("meta"):
        model = diffusers.ControlNetModel(**CONFIGS[name])
    model = model.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.normal_(0.0, 0.02, generator=g)
            p.copy_(p.to(FILE_DTYPES[name]))
    return model


def _inputs(name: str):
    g = torch.Generator().manual_seed(7)
    ctx_dim = CONFIGS[name]["cross_attention_dim"]
    x = torch.randn(2, 4, 8, 8, generator=g)
    hint = torch.rand(2, 3, 64, 64, generator=g)
    t = torch.tensor([981.0, 37.0])
    ctx = torch.randn(2, 11, ctx_dim, generator=g)
    added = None
    if name == "sdxl":
        added = {
            "text_embeds": torch.randn(2, 1280, generator=g),
            "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 2),
        }
    return x, hint, t, ctx, added


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sd15", "sd21", "sdxl"])
def test_residuals_equal_diffusers(name, tmp_path):
    ref = _reference(name)
    x, hint, t, ctx, added = _inputs(name)
    with torch.no_grad():
        down, mid = ref(x, t, ctx, hint, added_cond_kwargs=added, return_dict=False)
    expected = [*down, mid]
    folder = tmp_path / "diffusers"
    ref.to(FILE_DTYPES[name]).save_pretrained(folder)
    del ref
    gc.collect()

    y = sdxl_label(added["text_embeds"], added["time_ids"]) if added else None

    def check(what: str, path, layout: Layout) -> None:
        model, report = load_controlnet(path, dtype=torch.float32)
        assert report.layout is layout, what
        assert report.family is FAMILIES[name], what
        with torch.no_grad():
            got = model(x, hint, t, ctx, y).as_list()
        assert len(got) == len(expected) == (10 if name == "sdxl" else 13)
        for i, (a, b) in enumerate(zip(got, expected)):
            assert a.shape == b.shape, (what, i)
            assert a.dtype == torch.float32, (what, i)
            err = (a - b).abs().max().item()
            assert err <= 1e-4, f"{what}: residual {i} differs by {err:.2e} (scale {b.abs().max().item():.2e})"
        del model
        gc.collect()

    assert all(b.abs().max() > 1e-2 for b in expected)  # the comparison is not between zeros
    check("diffusers folder", folder, Layout.DIFFUSERS)
    check("diffusers single file", folder / "diffusion_pytorch_model.safetensors", Layout.DIFFUSERS)
    original = convert_file(folder, tmp_path / "original.safetensors", to="original")
    shutil.rmtree(folder)
    check("converted to original", original, Layout.ORIGINAL)


# diffusers' SDXL "small" and "mid" ControlNets: cross-attention levels with 0 (mid: 0, then 1) transformer
# blocks, whose norm and projections still run (added to their input); narrowed widths, the real structure.
SMALL_MID = {
    "sdxl_small": [0, 0, 0],
    "sdxl_mid": [0, 0, 1],
}


def _small_mid(layers: list[int]):
    torch.manual_seed(0)
    model = diffusers.ControlNetModel(
        block_out_channels=(64, 128, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=2048,
        attention_head_dim=[1, 2, 2],
        transformer_layers_per_block=layers,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    return _seeded(model)


def _seeded(model):
    """Every parameter from one seeded normal(0, 0.05), in name order (zero convs included)."""
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.normal_(0.0, 0.05, generator=g)
    return model.eval()


def _equal_diffusers_in_every_layout(ref, family: Family, tmp_path, sdxl: bool):
    """Load ``ref``'s folder, its bare weights file and our original-layout conversion: each must give
    diffusers' residuals within 1e-4; our conversion back to diffusers must be read by diffusers itself as
    the same model (no weight dropped). Returns what diffusers read back, and our models, for more checks."""
    g = torch.Generator().manual_seed(7)
    x, hint = torch.randn(2, 4, 8, 8, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    t = torch.tensor([981.0, 37.0])
    ctx = torch.randn(2, 11, ref.config.cross_attention_dim, generator=g)
    added = y = None
    if sdxl:
        added = {
            "text_embeds": torch.randn(2, 1280, generator=g),
            "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 2),
        }
        y = sdxl_label(added["text_embeds"], added["time_ids"])
    with torch.no_grad():
        down, mid = ref(x, t, ctx, hint, added_cond_kwargs=added, return_dict=False)
    expected = [*down, mid]
    assert all(b.abs().max() > 1e-2 for b in expected)  # the comparison is not between zeros
    folder = tmp_path / "diffusers"
    ref.save_pretrained(folder)
    original = convert_file(folder, tmp_path / "original.safetensors", to="original")
    back = convert_file(original, tmp_path / "back", to="diffusers").parent
    models = {}
    for what, path in {
        "folder": folder,
        "single file": folder / "diffusion_pytorch_model.safetensors",
        "original layout": original,
    }.items():
        model, report = load_controlnet(path)
        assert report.family is family, what
        with torch.no_grad():
            got = model(x, hint, t, ctx, y).as_list()
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert (a - b).abs().max().item() <= 1e-4, f"{what}: residual {i}"
        models[what] = model
    again = diffusers.ControlNetModel.from_pretrained(back).eval()
    with torch.no_grad():
        down2, mid2 = again(x, t, ctx, hint, added_cond_kwargs=added, return_dict=False)
    for a, b in zip([*down2, mid2], expected, strict=True):
        assert torch.equal(a, b)
    return again, models


@pytest.mark.parametrize("name", sorted(SMALL_MID))
def test_sdxl_small_and_mid_equal_diffusers(name, tmp_path):
    again, _ = _equal_diffusers_in_every_layout(_small_mid(SMALL_MID[name]), Family.SDXL, tmp_path, sdxl=True)
    assert again.config.transformer_layers_per_block[1:] == SMALL_MID[name][1:]


def _lone_mid_resnet():
    """A diffusers ControlNet whose middle block is one ResBlock (``mid_block_type="UNetMidBlock2D"``)."""
    torch.manual_seed(0)
    model = diffusers.ControlNetModel(
        block_out_channels=(64, 64, 128, 128),
        cross_attention_dim=768,
        attention_head_dim=8,  # SD1's head count: the original layout does not store it
        mid_block_type="UNetMidBlock2D",
    )
    return _seeded(model)


def test_middle_block_of_one_resblock_equals_diffusers(tmp_path):
    ref = _lone_mid_resnet()
    assert not any(k.startswith(("mid_block.resnets.1.", "mid_block.attentions.")) for k in ref.state_dict())
    again, models = _equal_diffusers_in_every_layout(ref, Family.SD1, tmp_path, sdxl=False)
    assert again.config.mid_block_type == "UNetMidBlock2D"
    for what, model in models.items():
        assert model.config.middle_resblocks == 1 and len(model.middle_block) == 1, what

"""The demo files and the report of ``python -m affordance inspect``, in process."""

from __future__ import annotations

import json

from affordance.controlnet import diffusers_config, read_controlnet
from affordance.controlnet.inspection import DEMO_SD1, DEMO_SD2, DEMO_SDXL, demo_files, inspect_file


def test_demo_files_can_be_written_again_into_the_same_folder(tmp_path):
    first = demo_files(tmp_path)
    assert demo_files(tmp_path) == first  # a rerun of the demo replaces its files
    assert len(first) == 8 and all(p.exists() for p in first)


def test_demo_files_hold_the_demo_architectures(tmp_path):
    configs = {p.name: read_controlnet(p).config for p in demo_files(tmp_path)}
    assert configs["sd15_diffusers_folder"] == DEMO_SD1  # read with its config.json, which says the same
    folder_config = json.loads((tmp_path / "sd15_diffusers_folder" / "config.json").read_text())
    assert folder_config == json.loads(json.dumps(diffusers_config(DEMO_SD1)))
    assert configs["sd21_legacy_pickle.pth"] == DEMO_SD2 and configs["sdxl_original.safetensors"] == DEMO_SDXL
    for name in ("sd15_original.safetensors", "sd15_prefixed_fp16.pth", "sd15_merged_v10.ckpt", "sd15_diffusers.bin"):
        assert configs[name] == DEMO_SD1, name


def test_demo_files_show_every_container_and_layout(tmp_path):
    """``inspect --demo`` shows each container and layout the loader reads, the legacy (pre-zip) pickle among them."""
    from affordance.controlnet import Layout

    reports = {p.name: read_controlnet(p).report for p in demo_files(tmp_path)}
    assert reports["sd21_legacy_pickle.pth"].container == "torch-legacy"
    assert reports["sd15_prefixed_fp16.pth"].container == "torch-zip"
    assert reports["sd15_original.safetensors"].container == "safetensors"
    assert reports["sd15_merged_v10.ckpt"].layout is Layout.ORIGINAL_MERGED
    assert reports["sd15_prefixed_fp16.pth"].layout is Layout.ORIGINAL_PREFIXED
    assert reports["diffusion_pytorch_model.safetensors"].layout is Layout.DIFFUSERS


def test_inspection_describes_a_512_px_image_by_default(tmp_path):
    path = next(p for p in demo_files(tmp_path) if p.name == "sd15_original.safetensors")
    report = inspect_file(path)
    assert report.latent_hw == (64, 64)
    assert report.residual_shapes[0] == (32, 64, 64) and report.residual_shapes[-1] == (64, 32, 32)
    lines = report.lines()
    assert "residuals for a 512x512 px image (latent 64x64):" in lines
    assert lines[-1] == "  middle: 64 x 32 x 32"
    wide = inspect_file(path, (64, 96)).lines()
    assert "residuals for a 768x512 px image (latent 96x64):" in wide

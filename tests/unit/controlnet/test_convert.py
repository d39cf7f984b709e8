"""Conversion between the original and diffusers layouts is bit-exact both ways, via API and CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from affordance.controlnet import Layout, convert_file, diffusers_config, read_controlnet
from affordance.controlnet.convert import main as convert_main


def _tensors(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _assert_bit_exact(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k].flatten().view(torch.uint8), b[k].flatten().view(torch.uint8)), k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("start", ["original", "prefixed", "merged"])
def test_original_diffusers_original_round_trip(tiny_model, write_checkpoint, tmp_path, dtype, start):
    src = write_checkpoint(tiny_model, start, "safetensors", dtype=dtype)
    mid = convert_file(src, tmp_path / "d.safetensors", to="diffusers")
    back = convert_file(mid, tmp_path / "o.safetensors", to="original")
    assert read_controlnet(mid).report.layout is Layout.DIFFUSERS
    original = {k.removeprefix("control_model."): v for k, v in _tensors(src).items() if not k.startswith(("model.", "first_stage", "cond_stage"))}
    _assert_bit_exact(_tensors(back), original)


def test_diffusers_folder_round_trip(tiny_xl_model, write_checkpoint, tmp_path):
    src = write_checkpoint(tiny_xl_model, "diffusers-folder")
    orig = convert_file(src, tmp_path / "o.safetensors", to="original", prefix=True)
    assert all(k.startswith("control_model.") for k in _tensors(orig))
    assert read_controlnet(orig).report.layout is Layout.ORIGINAL_PREFIXED
    folder = tmp_path / "again"
    written = convert_file(orig, folder, to="diffusers")
    assert written == folder / "diffusion_pytorch_model.safetensors"
    _assert_bit_exact(_tensors(written), _tensors(src / "diffusion_pytorch_model.safetensors"))
    assert json.loads((folder / "config.json").read_text()) == diffusers_config(tiny_xl_model.config)


@pytest.mark.parametrize("to", ["original", "diffusers"])
def test_global_pooling_survives_conversion(tiny_model, write_checkpoint, tmp_path, to):
    src = write_checkpoint(tiny_model)
    assert not read_controlnet(src).config.global_average_pooling
    out = tmp_path / "shuffle.safetensors"
    convert_file(src, out, to=to, global_average_pooling=True)
    assert read_controlnet(out).config.global_average_pooling
    folder = convert_file(out, tmp_path / "folder", to="diffusers").parent
    assert json.loads((folder / "config.json").read_text())["global_pool_conditions"] is True
    assert read_controlnet(folder).config.global_average_pooling


def test_convert_in_place_is_safe(tiny_model, write_checkpoint):
    src = write_checkpoint(tiny_model)
    before = _tensors(src)
    convert_file(src, src, to="original")
    _assert_bit_exact(_tensors(src), before)


def test_original_needs_safetensors_name(tiny_model, write_checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r"write original-layout files as .safetensors, got 'x.pth'"):
        convert_file(write_checkpoint(tiny_model), tmp_path / "x.pth", to="original")


def test_cli(tiny_model, write_checkpoint, tmp_path, caplog):
    src = write_checkpoint(tiny_model, "prefixed", "pth")
    assert convert_main([str(src), str(tmp_path / "d.safetensors"), "--to", "diffusers"]) == 0
    assert convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "x.safetensors"), "--to", "original"]) == 2
    assert "no ControlNet file at" in caplog.text


def test_cli_as_module(tiny_model, write_checkpoint, tmp_path, repo_root):
    """`python -m affordance.controlnet.convert` works from the installed package (no sys.path edits)."""
    src = write_checkpoint(tiny_model)
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "affordance.controlnet.convert", str(src), str(tmp_path / "f"), "--to", "diffusers"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    if proc.returncode and "No module named affordance" in proc.stderr:
        pytest.skip("the pack is not installed in this interpreter (run the README's test command)")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "f" / "config.json").is_file()

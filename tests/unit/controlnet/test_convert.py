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
from affordance.controlnet.errors import InputError, OutputError


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
    with pytest.raises(OutputError, match=r"already exists \(it is the file being converted\); nothing was written"):
        convert_file(src, src, to="original")
    convert_file(src, src, to="original", overwrite=True)
    _assert_bit_exact(_tensors(src), before)


def test_existing_files_are_never_replaced_without_overwrite(tiny_model, tiny_xl_model, write_checkpoint, tmp_path):
    src = write_checkpoint(tiny_model)
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"someone else's model")
    with pytest.raises(OutputError, match="other.safetensors already exists"):
        convert_file(src, other, to="original")
    assert other.read_bytes() == b"someone else's model"
    folder = tmp_path / "xl"
    convert_file(write_checkpoint(tiny_xl_model, name="xl"), folder, to="diffusers")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(OutputError, match="diffusion_pytorch_model.safetensors already exists"):
        convert_file(src, folder, to="diffusers")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    convert_file(src, folder, to="diffusers", overwrite=True)
    assert read_controlnet(folder).config == tiny_model.config


@pytest.mark.parametrize("to", ["original", "diffusers"])
def test_a_folder_or_file_in_the_way_is_a_typed_error(tiny_model, write_checkpoint, tmp_path, to):
    src = write_checkpoint(tiny_model)
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(OutputError, match="d.safetensors is a folder"):
        convert_file(src, tmp_path / "d.safetensors", to=to)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(OutputError, match="plain is a file, not a folder"):
        convert_file(src, tmp_path / "plain" / "x.safetensors", to=to)


def test_upper_case_suffix_is_a_file(tiny_model, write_checkpoint, tmp_path):
    out = convert_file(write_checkpoint(tiny_model), tmp_path / "X.SAFETENSORS", to="diffusers")
    assert out.is_file()
    assert convert_file(write_checkpoint(tiny_model), tmp_path / "Y.SafeTensors", to="original").is_file()


def test_failed_folder_write_leaves_the_old_folder_whole(tiny_model, tiny_xl_model, write_checkpoint, tmp_path, monkeypatch):
    """The weights and config.json are replaced together or not at all (the config used to be written first)."""
    from affordance.controlnet import convert as convert_module

    folder = tmp_path / "xl"
    convert_file(write_checkpoint(tiny_xl_model, name="xl"), folder, to="diffusers")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(convert_module, "save_file", disk_full)
    with pytest.raises(OutputError, match="cannot write .*No space left on device. Nothing there was changed"):
        convert_file(write_checkpoint(tiny_model), folder, to="diffusers", overwrite=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temporary file left either
    assert read_controlnet(folder).config == tiny_xl_model.config


def test_failed_write_into_new_folders_leaves_none_behind(tiny_model, write_checkpoint, tmp_path, monkeypatch):
    from affordance.controlnet import convert as convert_module

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    src = write_checkpoint(tiny_model)
    monkeypatch.setattr(convert_module, "save_file", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        convert_file(src, tmp_path / "new" / "deeper" / "cn", to="diffusers")
    assert not (tmp_path / "new").exists()


def test_missing_source_is_named_before_the_destination(tmp_path):
    (tmp_path / "out.safetensors").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="no ControlNet file at .*missing.pth"):
        convert_file(tmp_path / "missing.pth", tmp_path / "out.safetensors", to="original")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_written_files_are_readable_by_others_like_any_new_file(tiny_model, write_checkpoint, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        out = convert_file(write_checkpoint(tiny_model), tmp_path / "new.safetensors", to="original")
        assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        os.chmod(out, 0o640)
        convert_file(write_checkpoint(tiny_model), out, to="original", overwrite=True)
        assert out.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its permissions
    finally:
        os.umask(old)


def test_original_needs_safetensors_name(tiny_model, write_checkpoint, tmp_path):
    src = write_checkpoint(tiny_model)
    with pytest.raises(InputError, match=r"original-layout files are written as .safetensors, got 'x.pth'"):
        convert_file(src, tmp_path / "x.pth", to="original")
    with pytest.raises(InputError, match="to must be 'diffusers' or 'original', got 'ckpt'"):
        convert_file(src, tmp_path / "x.safetensors", to="ckpt")
    assert not (tmp_path / "x.pth").exists() and not (tmp_path / "x.safetensors").exists()


def test_cli(tiny_model, write_checkpoint, tmp_path, caplog):
    src = write_checkpoint(tiny_model, "prefixed", "pth")
    assert convert_main([str(src), str(tmp_path / "d.safetensors"), "--to", "diffusers"]) == 0
    assert convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "x.safetensors"), "--to", "original"]) == 2
    assert "no ControlNet file at" in caplog.text
    assert convert_main([str(src), str(tmp_path / "d.safetensors"), "--to", "original"]) == 2
    assert "already exists" in caplog.text and "--force" in caplog.text
    assert convert_main([str(src), str(tmp_path / "d.safetensors"), "--to", "original", "--force"]) == 0


def test_cli_as_module(tiny_model, write_checkpoint, tmp_path, repo_root, python_cmd):
    """`python -m affordance.controlnet.convert` works from the installed package (no sys.path edits)."""
    src = write_checkpoint(tiny_model)
    proc = subprocess.run(
        [*python_cmd, "-m", "affordance.controlnet.convert", str(src), str(tmp_path / "f"), "--to", "diffusers"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    if proc.returncode and "No module named affordance" in proc.stderr:
        pytest.skip("the pack is not installed in this interpreter (run the README's test command)")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "f" / "config.json").is_file()

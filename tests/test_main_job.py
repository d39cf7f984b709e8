"""The README's main job (`python -m affordance`): inspection demo and hint gallery, as a user runs it."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


PYTHON = [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]  # -P exists from 3.11


_ALIAS: list[Path] = []


def _alias() -> Path:
    """A folder whose ``affordance`` links to the tree these tests are in: ``python -m affordance`` then runs this
    tree's code, not whatever ``affordance`` the interpreter has installed (a copy of the checkout ran the original)."""
    if not _ALIAS:
        folder = Path(tempfile.mkdtemp(prefix="affordance-alias-"))
        atexit.register(shutil.rmtree, folder, True)
        (folder / "affordance").symlink_to(ROOT, target_is_directory=True)
        _ALIAS.append(folder)
    return _ALIAS[0]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(_alias())}
    proc = subprocess.run([*PYTHON, "-m", "affordance", *args], capture_output=True, text=True, cwd=cwd, env=env)
    return proc


def test_inspect_demo(tmp_path):
    proc = _run("inspect", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the report goes to stdout (`inspect > report.txt`), errors only to stderr
    out = proc.stdout
    assert "8 file(s) inspected, 0 rejected" in out
    for layout in (
        "diffusers ControlNetModel",
        "'control_model.' prefix",
        "ControlNet 1.0 full checkpoint",
        "no prefix",
    ):
        assert layout in out
    for family in ("SD1.x", "SD2.x", "SDXL"):
        assert f"family:      {family}" in out
    for container in ("safetensors", "torch-zip", "torch-legacy"):
        assert f"container:   {container}\n" in out


def test_inspect_reports_bad_file(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_text("version https://git-lfs.github.com/spec/v1\n")
    proc = _run("inspect", str(bad), cwd=tmp_path)
    assert proc.returncode == 1
    assert "Git LFS pointer" in proc.stderr + proc.stdout


def test_main_job_reads_paths_from_the_callers_folder(tmp_path):
    """`bash .ci/main inspect FILE` run from another folder finds FILE there, not in the repository."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("runs the README's main command, which uses the repository's .venv")
    (tmp_path / "mine.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    proc = subprocess.run(
        ["bash", str(ROOT / ".ci" / "main"), "inspect", "mine.safetensors"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Git LFS pointer" in proc.stderr + proc.stdout


def test_hints_gallery(tmp_path):
    proc = _run("hints", "--out", str(tmp_path / "out"), "--resolution", "256", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "contact sheet: " in proc.stdout
    sheet = tmp_path / "out" / "demo_scene_contact_sheet.png"
    assert sheet.is_file()
    pngs = sorted((tmp_path / "out").glob("demo_scene_*.png"))
    assert len(pngs) >= 12
    with Image.open(tmp_path / "out" / "demo_scene_canny.png") as im:
        assert im.size == (768, 512)


def test_hints_from_a_user_image(tmp_path):
    Image.new("RGB", (120, 80), (200, 30, 30)).save(tmp_path / "red.png")
    proc = _run("hints", str(tmp_path / "red.png"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "red_contact_sheet.png").is_file()
    # the PNGs show the hints themselves: a flat image has no edges (black; inverted: white), and the inpaint
    # hint shows its masked pixels (-1) black and the others as (pixel + 1) / 2
    colours = {}
    for key in ("canny", "invert_canny", "inpaint"):
        with Image.open(tmp_path / "o" / f"red_{key}.png") as im:
            colours[key] = {c for _, c in im.convert("RGB").getcolors(1 << 16)}
    assert colours["canny"] == {(0, 0, 0)} and colours["invert_canny"] == {(255, 255, 255)}
    shown = tuple(round((c / 255 + 1) / 2 * 255) for c in (200, 30, 30))
    assert (0, 0, 0) in colours["inpaint"] and len(colours["inpaint"]) == 2, colours["inpaint"]
    (other,) = colours["inpaint"] - {(0, 0, 0)}
    assert all(abs(a - b) <= 1 for a, b in zip(other, shown)), (other, shown)
    proc = _run("hints", str(tmp_path / "missing.png"), cwd=tmp_path)
    assert proc.returncode == 2 and "cannot read image" in proc.stderr


def test_annotators_check(tmp_path):
    import hashlib

    import torch

    from affordance.preprocessors.hed import HEDNet

    torch.save(HEDNet().state_dict(), tmp_path / "ControlNetHED.pth")
    (tmp_path / "netG.pth").write_text("version https://git-lfs.github.com/spec/v1\n")
    proc = _run("annotators", str(tmp_path), cwd=tmp_path)
    out = proc.stderr + proc.stdout
    assert proc.returncode == 1  # netG.pth is refused
    digest = hashlib.sha256((tmp_path / "ControlNetHED.pth").read_bytes()).hexdigest()
    assert f"sha256 {digest}  loads" in out
    assert "netG.pth" in out and "Git LFS pointer" in out and "scannet.pt                     missing" in out


def test_mistyped_sub_command_is_named(tmp_path):
    proc = _run("hint", "x.png", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown sub-command 'hint' (did you mean 'hints'?)" in proc.stderr


def test_hints_never_overwrite_the_source_image(tmp_path):
    src = tmp_path / "photo.png"
    Image.new("RGBA", (64, 48), (10, 200, 30, 128)).save(src)
    before = src.read_bytes()
    proc = _run("hints", str(src), "--out", str(tmp_path), "--resolution", "64", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert src.read_bytes() == before
    assert (tmp_path / "photo_input.png").is_file()


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_hints_keep_the_range_of_16_bit_and_float_images(tmp_path, mode):
    import numpy as np

    from affordance.__main__ import _read_image

    ramp = np.linspace(0.0, 1.0, 64 * 32).reshape(32, 64)
    path = tmp_path / ("g16.png" if mode == "I;16" else "f.tif")
    if mode == "I;16":
        Image.fromarray((ramp * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(ramp.astype(np.float32), mode="F").save(path)
    image = _read_image(str(path))
    assert image.shape == (1, 3, 32, 64)
    # a ramp over the whole range stays one (it used to become almost all white or all black)
    assert abs(image.mean().item() - 0.5) < 0.01 and image.min() == 0 and image.max() > 0.99


def test_hints_output_folder_problems_are_clean_errors(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = _run("hints", "--out", str(tmp_path / "afile"), cwd=tmp_path)
    assert proc.returncode == 2 and "cannot use" in proc.stderr and "Traceback" not in proc.stderr


def test_annotators_needs_a_folder(tmp_path):
    proc = _run("annotators", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_hints_with_annotator_weights(tmp_path):
    """`hints --annotators FOLDER` adds every learned hint whose files are there; missing or broken files are named."""
    from affordance.preprocessors.networks import NETWORK_FOR_FILE

    folder = tmp_path / "annotators"
    folder.mkdir()
    for name in ("ControlNetHED.pth", "table5_pidinet.pth", "mlsd_large_512_fp32.pth"):
        torch.manual_seed(0)
        torch.save(NETWORK_FOR_FILE[name]().state_dict(), folder / name)
    (folder / "sk_model.pth").write_text("not weights")
    proc = _run("hints", "--annotators", str(folder), "--out", str(tmp_path / "o"), "--resolution", "128", cwd=tmp_path)
    out = proc.stderr + proc.stdout
    assert proc.returncode == 1, out  # the broken lineart file fails the run, after everything else was made
    for key in ("hed", "fake_scribble", "pidinet", "mlsd", "canny"):
        with Image.open(tmp_path / "o" / f"demo_scene_{key}.png") as im:
            assert im.size == (768, 512), key
            if key in ("hed", "pidinet"):  # soft edge maps of the scene: shades, not one flat colour
                low, high = im.convert("L").getextrema()
                assert low < high, (key, low, high)
    assert re.search(r"lineart +skipped: .*sk_model\.pth is a text file", out)
    assert re.search(r"midas_depth +skipped: needs dpt_hybrid-midas-501f0c75\.pt in ", out)
    assert not (tmp_path / "o" / "demo_scene_lineart.png").exists()
    assert (tmp_path / "o" / "demo_scene_contact_sheet.png").is_file()
    bad = _run("hints", "--annotators", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p"), cwd=tmp_path)
    assert bad.returncode == 2 and "is not a folder" in bad.stderr + bad.stdout


def test_annotator_files_in_sub_folders_are_found(tmp_path):
    """A folder laid out as comfyui_controlnet_aux downloads them (`ckpts/lllyasviel/Annotators/`) is used as it
    is by both commands, as by the nodes in ComfyUI; the report says where each file was found."""
    from affordance.preprocessors.hed import HEDNet

    ckpts = tmp_path / "ckpts"
    deep = ckpts / "lllyasviel" / "Annotators"
    deep.mkdir(parents=True)
    torch.save(HEDNet().state_dict(), deep / "ControlNetHED.pth")
    proc = _run("annotators", str(ckpts), cwd=tmp_path)
    out = proc.stderr + proc.stdout
    assert proc.returncode == 0, out
    assert re.search(r"ControlNetHED\.pth .* loads, not the official file .*\(at lllyasviel/Annotators/ControlNetHED\.pth\)", out)
    assert "1 of 11 official file(s) present" in out
    proc = _run("hints", "--annotators", str(ckpts), "--out", str(tmp_path / "o"), "--resolution", "64", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "demo_scene_hed.png").is_file() and (tmp_path / "o" / "demo_scene_fake_scribble.png").is_file()

"""The main job's command line with bad or awkward inputs: everything is refused before anything is written,
nothing is replaced without --force, and every problem is one clear line (no traceback).

Most tests call ``main`` in this process on tiny images (with the hint gallery cut down where only the
plumbing matters); the few that check what a user sees on stdout/stderr run the command in a subprocess.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import affordance.preprocessors as preprocessors
from affordance.__main__ import _out_of_memory, _read_image, _resolution_arg, main
from affordance.preprocessors import networks, weights
from affordance.preprocessors.errors import ImageInputError
from affordance.preprocessors.hed import HED_FILE, HEDNet
from affordance.preprocessors.sheet import contact_sheet

ROOT = Path(__file__).resolve().parents[1]
PYTHON = [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]  # -P exists from 3.11


def _run(*args: str, cwd: Path, alias: Path) -> subprocess.CompletedProcess:
    """``python -m affordance ARGS`` on the tree these tests are in (through ``alias/affordance`` -> ROOT).

    A named pipe would block an old ``hints`` forever: the timeout only turns that hang into a failure.
    """
    alias.mkdir(exist_ok=True)
    if not (alias / "affordance").exists():
        (alias / "affordance").symlink_to(ROOT, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(alias)}
    return subprocess.run(
        [*PYTHON, "-m", "affordance", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def _messages(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.fixture
def small_gallery(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Two weight-free hints instead of twelve: the plumbing is what is tested."""
    gallery = {"canny": preprocessors.GALLERY["canny"], "tile": preprocessors.GALLERY["tile"]}
    monkeypatch.setattr(preprocessors, "GALLERY", gallery)
    return gallery


def _image(path: Path, size: tuple[int, int] = (32, 24)) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# D1: the contact sheet fits every thumbnail in its box, whatever the aspect


@pytest.mark.parametrize(("h", "w", "cell_h"), [(8, 8000, 1), (8000, 8, 320), (1, 1, 320), (512, 768, 213)])
def test_contact_sheet_fits_each_thumbnail_in_its_box(h, w, cell_h):
    """8000x8 px used to make a 0 px tall cell (a ValueError); 8x8000 a 320x320000 px one (gigabytes)."""
    sheet = contact_sheet([("a", torch.rand(1, 3, h, w))], columns=4, thumb=320)
    assert sheet.size == (4 * 320, cell_h + 22)


def test_contact_sheet_keeps_the_gallery_layout_and_letterboxes_odd_items():
    items = [(str(i), torch.ones(1, 3, 512, 768)) for i in range(5)] + [("tall", torch.ones(1, 3, 8000, 8))]
    sheet = contact_sheet(items, columns=4, thumb=320)
    assert sheet.size == (1280, 2 * (320 + 22))  # the tall strip makes its row 320 px tall, not 320000
    wide_only = contact_sheet(items[:5], columns=4, thumb=320)
    assert wide_only.size == (1280, 2 * (213 + 22))  # 768x512 thumbnails: 320x213, as before
    arr = np.asarray(sheet)
    # the 1x320 strip is centred in its cell (column 1 of row 1), the rest of the cell is background
    x0, y0 = 320, 342 + 22
    assert (arr[y0 : y0 + 320, x0 + 159] == 255).all() and (arr[y0 : y0 + 320, x0 + 10] == 32).all()


def test_contact_sheet_refuses_no_items():
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([])


# D2: an output place that cannot be written is one clean line, checked before any work


def test_hints_unwritable_output_folder_is_refused_before_any_work(tmp_path, monkeypatch, caplog, small_gallery):
    import affordance.__main__ as cli

    real = cli.tempfile.mkstemp
    calls: list[str] = []

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        if str(kwargs.get("prefix", "")).startswith(".affordance-write-check"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, **kwargs)

    monkeypatch.setattr(cli.tempfile, "mkstemp", read_only)
    monkeypatch.setitem(small_gallery, "canny", lambda x, r: calls.append("ran") or x)
    src = _image(tmp_path / "a.png")
    out = tmp_path / "ro"
    rc = main(["hints", str(src), "--out", str(out), "--resolution", "16"])
    assert rc == 2 and calls == []
    assert _messages(caplog) == [
        f"error: cannot write {out}: Read-only file system; give a folder you can write to with --out."
    ]
    assert list(out.iterdir()) == []


def test_hints_output_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path, monkeypatch, caplog, small_gallery):
    """A folder mkdir cannot make (/proc/x, /sys/x, a permission) ends with exit 2 and the reason, nothing run."""
    real = Path.mkdir
    calls: list[str] = []

    def denied(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == "made":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", denied)
    monkeypatch.setitem(small_gallery, "canny", lambda x, r: calls.append("ran") or x)
    src = _image(tmp_path / "a.png")
    out = tmp_path / "made"
    assert main(["hints", str(src), "--out", str(out), "--resolution", "16"]) == 2
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert _messages(caplog) == [f"error: cannot use {out} as the output folder: Permission denied"]


def test_hints_folder_in_the_way_of_an_output_file(tmp_path, caplog, small_gallery):
    src = _image(tmp_path / "a.png")
    (tmp_path / "o" / "a_tile.png").mkdir(parents=True)
    rc = main(["hints", str(src), "--out", str(tmp_path / "o"), "--resolution", "16", "--force"])
    assert rc == 2
    [msg] = _messages(caplog)
    assert msg.startswith(f"error: cannot write {tmp_path / 'o' / 'a_tile.png'}: it is a folder, not a regular file")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_tile.png"]


def test_hints_disk_full_midway_is_clean_and_loses_nothing(tmp_path, monkeypatch, caplog, small_gallery):
    """The second file (a_canny.png) fails to be written: the old one stays, whole; no temporary file remains."""
    src = _image(tmp_path / "a.png")
    out = tmp_path / "o"
    out.mkdir()
    (out / "a_canny.png").write_bytes(b"the user's own canny")
    real, count = os.fsync, []

    def full(fd: int) -> None:
        count.append(fd)
        if len(count) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", full)
    rc = main(["hints", str(src), "--out", str(out), "--resolution", "16", "--force"])
    assert rc == 2
    [msg] = _messages(caplog)
    assert msg.startswith(f"error: cannot write {out / 'a_canny.png'}: No space left on device;")
    assert (out / "a_canny.png").read_bytes() == b"the user's own canny"
    assert sorted(p.name for p in out.iterdir()) == ["a_canny.png", "a_input.png"]
    with Image.open(out / "a_input.png") as im:
        assert im.size == (32, 24)


def test_hints_stopped_by_sigterm_leaves_no_temporary_file(tmp_path, monkeypatch, caplog, small_gallery):
    """SIGTERM's default action killed the process mid-write, before the staged file's cleanup ran: a
    .tmp-*.png stayed in the output folder. It is now a clean stop, exit code 143."""
    import signal

    src = _image(tmp_path / "a.png")
    out = tmp_path / "o"
    real, count = os.fsync, []

    def stopped(fd: int) -> None:
        count.append(fd)
        if len(count) == 2:
            signal.raise_signal(signal.SIGTERM)
        real(fd)

    monkeypatch.setattr(os, "fsync", stopped)
    before = signal.getsignal(signal.SIGTERM)
    rc = main(["hints", str(src), "--out", str(out), "--resolution", "16"])
    assert rc == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert sorted(p.name for p in out.iterdir()) == ["a_input.png"]
    assert _messages(caplog)[-1].startswith("interrupted; the files written before it are complete")


# D3: nothing is replaced without --force; with it, only once the successor is complete


def test_hints_refuse_to_replace_files_without_force(tmp_path, caplog, small_gallery):
    first = _image(tmp_path / "a.png")
    out = tmp_path / "o"
    assert main(["hints", str(first), "--out", str(out), "--resolution", "16"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # another image with the same stem (a.jpg after a.png) would write the same names
    second = tmp_path / "a.jpg"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(second)
    caplog.clear()
    rc = main(["hints", str(second), "--out", str(out), "--resolution", "16"])
    assert rc == 2
    [msg] = _messages(caplog)
    assert msg.startswith(f"error: {out} already holds 4 file(s) this run would replace: a_input.png, a_canny.png")
    assert "a_contact_sheet.png" in msg and "--force" in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_hints_force_replaces_in_place_keeping_permissions(tmp_path, small_gallery):
    src = _image(tmp_path / "a.png")
    out = tmp_path / "o"
    out.mkdir()
    (out / "a_canny.png").write_bytes(b"old")
    os.chmod(out / "a_canny.png", 0o640)
    assert main(["hints", str(src), "--out", str(out), "--resolution", "16", "--force"]) == 0
    with Image.open(out / "a_canny.png") as im:
        assert im.size == (32, 24)
    assert (out / "a_canny.png").stat().st_mode & 0o777 == 0o640
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


# D4: every input is checked before anything is written


@pytest.mark.parametrize("value", ["8", "4096"])
def test_hints_resolution_bounds_are_accepted(value):
    """Both ends of the preprocessors' range are valid resolutions (the refusals below stop one step outside)."""
    assert _resolution_arg(value) == int(value)


@pytest.mark.parametrize("value", ["0", "7", "4097", "abc", "-512"])
def test_hints_resolution_is_checked_by_the_parser(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        main(["hints", "--out", str(tmp_path / "o"), "--resolution", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and f"argument --resolution: must be a whole number of pixels from 8 to 4096, got '{value}'" in err
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("size", "words"), [((4, 30), "at least 8x8 px"), ((8193, 8), "above the 8192 px limit")])
def test_hints_image_size_is_refused_before_anything_is_written(tmp_path, caplog, size, words):
    src = tmp_path / "odd.png"
    Image.new("L", size).save(src)
    rc = main(["hints", str(src), "--out", str(tmp_path / "o")])
    assert rc == 2 and not (tmp_path / "o").exists()
    [msg] = _messages(caplog)
    assert msg.startswith(f"error: cannot use image {src}: it is {size[0]}x{size[1]} px") and words in msg


def test_image_size_is_read_from_the_header_before_decoding(tmp_path):
    """A header announcing 9000x9 px, with no pixel data: refused for its size, not for being truncated."""
    full = tmp_path / "full.png"
    Image.new("RGB", (9000, 9)).save(full)
    head = tmp_path / "head.png"
    head.write_bytes(full.read_bytes()[:60])
    with pytest.raises(ImageInputError, match="it is 9000x9 px, above the 8192 px limit per side"):
        _read_image(str(head))


def test_decompression_bomb_warning_is_a_clean_refusal(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x30 = 1200 px: PIL warns (it errors above 2000)
    src = _image(tmp_path / "b.png", (40, 30))
    with pytest.raises(ImageInputError, match=r"too large to decode safely \(Image size \(1200 pixels\)"):
        _read_image(str(src))


def test_hints_extreme_aspect_for_the_resolution_is_refused_first(tmp_path, caplog):
    src = tmp_path / "strip.png"
    Image.new("L", (2000, 8)).save(src)
    rc = main(["hints", str(src), "--out", str(tmp_path / "o"), "--resolution", "512"])
    assert rc == 2 and not (tmp_path / "o").exists()
    [msg] = _messages(caplog)
    assert msg.startswith("error: cannot use --resolution 512 on this image: a 2000x8 px image at resolution 512")


# D5: EXIF orientation is applied, as ComfyUI's Load Image does


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :16] = 255  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / f"phone{suffix}"
    Image.fromarray(pixels).save(path, exif=exif, **({"quality": 95} if suffix == ".jpg" else {}))
    image = _read_image(str(path))
    assert image.shape == (1, 3, 64, 48)
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), np.float32) / 255
    assert torch.allclose(image[0].permute(1, 2, 0), torch.from_numpy(shown))
    assert image[0, :, :16].mean() > 0.9  # the band is now on top


# D6: one hint failing, even unexpectedly, is one line; the others still run


def test_unexpected_failures_are_reported_per_hint(tmp_path, monkeypatch, caplog, small_gallery):
    def crash(*args: object) -> torch.Tensor:
        raise RuntimeError("OpenCV(4.10.0) resize.cpp:4152: error:\n (-215:Assertion failed) !dsize.empty()")

    small_gallery["boom"] = crash
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "body_pose_model.pth").write_bytes(b"x")
    (folder / "sk_model.pth").mkdir()  # a folder under an official file name
    learned = {
        "openpose": (("body_pose_model.pth",), crash),
        "after": (("body_pose_model.pth",), lambda x, n, r: x),
        "lineart": (("sk_model.pth",), lambda x, n, r: x),
    }
    monkeypatch.setattr(networks, "LEARNED_GALLERY", learned)
    monkeypatch.setattr(weights, "load_annotator", lambda path, net, name: torch.nn.Identity())
    src = _image(tmp_path / "a.png")
    out = tmp_path / "o"
    rc = main(["hints", str(src), "--out", str(out), "--resolution", "16", "--annotators", str(folder)])
    assert rc == 1
    errors = _messages(caplog)
    assert len(errors) == 3 and all("\n" not in m for m in errors)
    assert (
        errors[0].startswith("boom") and "failed: unexpected RuntimeError: OpenCV(4.10.0) resize.cpp:4152" in errors[0]
    )
    assert errors[1].startswith("openpose") and "unexpected RuntimeError" in errors[1]
    assert errors[2].startswith("lineart") and f"sk_model.pth in {folder} is a folder, not a regular file" in errors[2]
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_after.png", "a_canny.png", "a_contact_sheet.png", "a_input.png", "a_tile.png"]


# D9: special files are named for what they are, and never opened


def test_hints_refuse_a_named_pipe_without_opening_it(tmp_path):
    """Opening a FIFO blocks until something writes to it: the old command hung there forever."""
    os.mkfifo(tmp_path / "pipe.png")
    proc = _run("hints", "pipe.png", "--out", "o", cwd=tmp_path, alias=tmp_path / "alias")
    assert proc.returncode == 2, proc.stderr
    expected = "error: cannot read image pipe.png: it is a named pipe (FIFO), not a regular file; give an image file\n"
    assert proc.stderr == expected
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("name", "what"), [("loopA", "a symlink loop"), (".", "a folder")])
def test_hints_refuse_other_special_files(tmp_path, monkeypatch, caplog, name, what):
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    monkeypatch.chdir(tmp_path)
    assert main(["hints", name, "--out", "o"]) == 2
    assert _messages(caplog) == [
        f"error: cannot read image {name}: it is {what}, not a regular file; give an image file"
    ]
    assert not (tmp_path / "o").exists()


def test_annotators_names_special_files(tmp_path, caplog):
    (tmp_path / "netG.pth").mkdir()
    os.mkfifo(tmp_path / "sk_model.pth")
    (tmp_path / "scannet.pt").symlink_to(tmp_path / "scannet.pt")
    (tmp_path / "facenet.pth").symlink_to(tmp_path / "nowhere.pth")

    def unblock() -> None:  # if the check regressed and the pipe were opened, the test fails instead of hanging
        try:
            os.close(os.open(tmp_path / "sk_model.pth", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # nobody reading it: as it should be
            pass

    watchdog = threading.Timer(30, unblock)
    watchdog.start()
    try:
        with caplog.at_level(logging.INFO):
            rc = main(["annotators", str(tmp_path)])
    finally:
        watchdog.cancel()
    assert rc == 1
    lines = {m.split()[0]: m for m in _messages(caplog, logging.INFO) if m.strip()}
    assert lines["netG.pth"].endswith("REJECTED: a folder, not a regular file")
    assert lines["sk_model.pth"].endswith("REJECTED: a named pipe (FIFO), not a regular file")
    assert lines["scannet.pt"].endswith("REJECTED: a symlink loop, not a regular file")
    assert "REJECTED: a broken symlink" in lines["facenet.pth"]
    assert lines["body_pose_model.pth"].split()[1] == "missing"


# D10: empty folders and paths, where reports go, help


def test_annotators_empty_folder_says_nothing_was_found(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        rc = main(["annotators", str(tmp_path)])
    assert rc == 1
    assert _messages(caplog)[-1].startswith(f"error: no annotator file found in {tmp_path} or its sub-folders;")


@pytest.mark.parametrize(
    "args",
    [["hints", "--out", ""], ["hints", "--annotators", ""], ["hints", ""], ["annotators", ""], ["inspect", ""]],
)
def test_empty_paths_are_refused(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "got an empty path ('')" in err
    assert list(tmp_path.iterdir()) == []


def test_reports_go_to_stdout_and_errors_to_stderr(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = _run("annotators", "empty", cwd=tmp_path, alias=tmp_path / "alias")
    assert proc.returncode == 1
    assert "ControlNetHED.pth              missing" in proc.stdout and "missing" not in proc.stderr
    assert proc.stderr.startswith("error: no annotator file found in empty or its sub-folders;") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_help_texts(capsys):
    with pytest.raises(SystemExit):
        main(["hints", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "detection: 8 to 4096 (default: 512)" in text and "--force" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "With no argument at all, `python -m affordance` runs both demos" in text


def test_convert_gets_its_name_where_convert_main_takes_one(monkeypatch):
    import affordance.controlnet.convert as convert

    seen: list[tuple[list[str], str]] = []

    def fake_main(argv: list[str], prog: str = "python -m affordance.controlnet.convert") -> int:
        seen.append((list(argv), prog))
        return 0

    monkeypatch.setattr(convert, "main", fake_main)
    assert main(["convert", "--help"]) == 0
    assert seen == [(["--help"], "python -m affordance convert")]


# From fuzzing the image readers: a 4096 px image peaked at 3.5 GB (every full-size hint was kept for the
# contact sheet) and, with memory short, ended in a traceback; PIL's warnings printed two lines each.


def test_hints_keep_only_thumbnails_for_the_contact_sheet(tmp_path, monkeypatch, small_gallery):
    from affordance.preprocessors import sheet

    kept: list = []
    real = sheet.contact_sheet

    def spy(items, *args, **kwargs):
        kept.extend(items)
        return real(items, *args, **kwargs)

    monkeypatch.setattr(sheet, "contact_sheet", spy)
    src = _image(tmp_path / "a.png", (900, 700))
    assert main(["hints", str(src), "--out", str(tmp_path / "o"), "--resolution", "64"]) == 0
    assert [label for label, _ in kept] == ["input", "canny", "tile"]
    assert all(isinstance(im, Image.Image) and im.size == (320, 249) for _, im in kept)


def test_contact_sheet_of_thumbnails_equals_the_sheet_of_full_images():
    from affordance.preprocessors.sheet import thumbnail

    items = [(f"i{k}", torch.rand(1, 3, h, w)) for k, (h, w) in enumerate([(700, 900), (64, 2000), (300, 300), (5, 7)])]
    full = np.asarray(contact_sheet(items))
    small = np.asarray(contact_sheet([(label, thumbnail(img)) for label, img in items]))
    assert np.array_equal(full, small)


def test_hints_out_of_memory_is_one_line_not_a_traceback(tmp_path, monkeypatch, caplog, small_gallery):
    from affordance.preprocessors import sheet

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried")

    small_gallery["canny"] = lambda image, resolution: no_memory()  # the hint itself: reported, the others run
    src = _image(tmp_path / "a.png")
    monkeypatch.setattr(sheet, "save_png", lambda image, path: no_memory() if "tile" in path.name else None)
    rc = main(["hints", str(src), "--out", str(tmp_path / "o"), "--resolution", "16"])
    assert rc == 2
    errors = _messages(caplog)
    assert len(errors) == 2 and all("\n" not in m for m in errors)
    assert errors[0].startswith("canny") and "memory ran out (" in errors[0] and "please report" not in errors[0]
    assert errors[1].startswith("error: memory ran out while writing the hints of a 32x24 image")


def test_pil_warnings_are_one_line_each(tmp_path, monkeypatch, caplog):
    import warnings

    def warn_then_transpose(im):
        warnings.warn("Corrupt EXIF data.  Expecting to read 4 bytes\n but only got 0.", UserWarning, stacklevel=1)
        return im

    monkeypatch.setattr(ImageOps, "exif_transpose", warn_then_transpose)
    src = _image(tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # shown by Python instead of logged, it would fail here
        _read_image(str(src))
    [msg] = _messages(caplog, logging.WARNING)
    assert msg == f"warning: image {src}: Corrupt EXIF data. Expecting to read 4 bytes but only got 0."


# ----- behaviours found untested by mutation round 6 (each test fails on its mutant) ------------------------------
def test_both_allocator_messages_mean_out_of_memory():
    """Both wordings of torch's CPU allocator failing (Linux, Windows) are memory running out, not an unexpected error."""
    assert _out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes."))
    assert _out_of_memory(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 8 bytes."))
    assert _out_of_memory(MemoryError())
    assert not _out_of_memory(RuntimeError("shape mismatch"))
    assert not _out_of_memory(ValueError("not enough memory"))


def test_files_that_appear_during_the_run_are_skipped_with_a_line(tmp_path, monkeypatch, caplog):
    """A learned hint whose files appeared after the outputs were checked is skipped with a line; the run succeeds."""
    import affordance.__main__ as cli

    monkeypatch.setattr(preprocessors, "GALLERY", {"canny": preprocessors.GALLERY["canny"]})
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "body_pose_model.pth").write_bytes(b"x")
    monkeypatch.setattr(networks, "LEARNED_GALLERY", {"openpose": (("body_pose_model.pth",), lambda x, n, r: x)})
    monkeypatch.setattr(weights, "load_annotator", lambda path, net, name: torch.nn.Identity())
    monkeypatch.setattr(cli, "_learned_keys", lambda folder: [])  # not there when the outputs were checked
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    with caplog.at_level(logging.INFO):
        rc = cli.main(["hints", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--resolution", "16",
                       "--annotators", str(folder)])
    assert rc == 0
    assert any(r.getMessage() == f"{'openpose':<17} skipped: its files appeared in {folder} after the run started"
               for r in caplog.records)
    assert not (tmp_path / "o" / "a_openpose.png").exists()


def test_a_failing_gallery_hint_gives_exit_code_1(tmp_path, monkeypatch):
    """`hints` exits 1 when a weight-free hint failed (no learned hint asked for); the others are written."""
    def crash(*args):
        raise RuntimeError("boom")

    gallery = {"canny": preprocessors.GALLERY["canny"], "boom": crash}
    monkeypatch.setattr(preprocessors, "GALLERY", gallery)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "o"
    rc = main(["hints", str(tmp_path / "a.png"), "--out", str(out), "--resolution", "16"])
    assert rc == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_canny.png", "a_contact_sheet.png", "a_input.png"]
    gallery.pop("boom")
    assert main(["hints", str(tmp_path / "a.png"), "--out", str(tmp_path / "p"), "--resolution", "16"]) == 0


def _denied(path, *args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied", str(path))


def test_unreadable_file_is_rejected_once(tmp_path, monkeypatch, caplog):
    """`annotators` rejects a file whose bytes cannot be read for its SHA-256 (exit 1), counting each file once."""
    torch.save(HEDNet().state_dict(), tmp_path / HED_FILE)  # loads
    (tmp_path / "netG.pth").write_text("version https://git-lfs.github.com/spec/v1\n")  # refused by the load check
    monkeypatch.setattr(weights, "sha256_of", _denied)
    with caplog.at_level(logging.INFO):
        rc = main(["annotators", str(tmp_path)])
    messages = [r.getMessage() for r in caplog.records]
    lines = {m.split()[0]: m for m in messages if m.strip()}
    assert rc == 1
    assert lines[HED_FILE].endswith("REJECTED: cannot read it (Permission denied)")
    assert "REJECTED" in lines["netG.pth"] and "cannot read it" not in lines["netG.pth"]
    assert messages[-1].endswith(f"present in {tmp_path}, 2 rejected")


@pytest.mark.parametrize("kind", ["broken", "loop"])
def test_hints_out_as_a_broken_symlink_is_named(tmp_path, caplog, small_gallery, kind):
    """--out a dangling symlink (or a loop): named as such before anything is written (mkdir said "File exists")."""
    out = tmp_path / "dl"
    out.symlink_to(tmp_path / "gone" if kind == "broken" else out)
    src = _image(tmp_path / "a.png")
    assert main(["hints", str(src), "--out", str(out), "--resolution", "16"]) == 2
    want = f"a broken symlink (to {tmp_path / 'gone'}), not a regular file" if kind == "broken" else "a symlink loop"
    (message,) = _messages(caplog)
    assert message.startswith(f"error: cannot use {out} as the output folder: it is {want}"), message
    assert out.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "dl"]

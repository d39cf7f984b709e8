"""Conversion between the original and diffusers layouts is bit-exact both ways, via API and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "f" / "config.json").is_file()
    # the installed package must be this checkout, or the run above tested other code
    where = subprocess.run(
        [*python_cmd, "-c", "import affordance; print(affordance.__file__)"], capture_output=True, text=True, cwd=tmp_path
    )
    installed = Path(where.stdout.strip()).resolve().parent
    assert installed == repo_root.resolve(), f"the interpreter's affordance is {installed}: pip install -e {repo_root}"


def _fail_on(monkeypatch, name, *, when=lambda src, dst: True):
    """Make ``os.<name>`` (rename/replace/link, as convert.py calls it) fail with EPERM for the paths ``when``
    selects (as for an immutable file, or a file system without hard links)."""
    import os

    real = getattr(os, name)

    def fake(src, dst, *args, **kwargs):
        if when(str(src), str(dst)):
            raise PermissionError(1, "Operation not permitted")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, name, fake)


def _folder_contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_folder_swap_that_fails_half_way_is_undone(tiny_model, tiny_xl_model, write_checkpoint, tmp_path, monkeypatch):
    """D7: config.json cannot be replaced after the weights were: the old weights are put back, and only then is
    'Nothing there was changed' said (the old code left SDXL weights beside an SD1.5 config.json)."""
    folder = tmp_path / "xl"
    convert_file(write_checkpoint(tiny_xl_model, name="xl"), folder, to="diffusers")
    before = _folder_contents(folder)
    src = write_checkpoint(tiny_model)
    _fail_on(monkeypatch, "replace", when=lambda s, d: "/.tmp-" in s and d.endswith("config.json"))
    with pytest.raises(OutputError, match="cannot write .*Operation not permitted. Nothing there was changed"):
        convert_file(src, folder, to="diffusers", overwrite=True)
    assert _folder_contents(folder) == before  # same files, no temporary or second name left
    assert read_controlnet(folder).config == tiny_xl_model.config


def test_folder_swap_that_cannot_be_undone_says_what_changed(tiny_model, tiny_xl_model, write_checkpoint, tmp_path, monkeypatch):
    """D7: if putting the old weights back fails too, the error says so and where the old file is; it is kept."""
    folder = tmp_path / "xl"
    convert_file(write_checkpoint(tiny_xl_model, name="xl"), folder, to="diffusers")
    old_weights = (folder / "diffusion_pytorch_model.safetensors").read_bytes()
    src = write_checkpoint(tiny_model)
    _fail_on(
        monkeypatch,
        "replace",
        when=lambda s, d: ("/.tmp-" in s and d.endswith("config.json")) or "/.bak-" in s,
    )
    with pytest.raises(OutputError) as info:
        convert_file(src, folder, to="diffusers", overwrite=True)
    message = str(info.value)
    assert "Nothing there was changed" not in message
    assert "diffusion_pytorch_model.safetensors is the new file (the old one is kept as " in message
    assert "mixes new and old files" in message
    kept = [p for p in folder.iterdir() if p.name.startswith(".bak-") and p.name.endswith("model.safetensors")]
    assert len(kept) == 1 and str(kept[0]) in message
    assert kept[0].read_bytes() == old_weights  # nothing is lost
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_folder_swap_without_hard_links_moves_the_old_files_aside(tiny_model, tiny_xl_model, write_checkpoint, tmp_path, monkeypatch):
    """D7: where the file system has no hard links, the old files are moved aside and put back the same way."""
    folder = tmp_path / "xl"
    convert_file(write_checkpoint(tiny_xl_model, name="xl"), folder, to="diffusers")
    before = _folder_contents(folder)
    src = write_checkpoint(tiny_model)
    _fail_on(monkeypatch, "link")
    with monkeypatch.context() as m:
        _fail_on(m, "replace", when=lambda s, d: "/.tmp-" in s and d.endswith("config.json"))
        with pytest.raises(OutputError, match="Nothing there was changed"):
            convert_file(src, folder, to="diffusers", overwrite=True)
    assert _folder_contents(folder) == before
    convert_file(src, folder, to="diffusers", overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert read_controlnet(folder).config == tiny_model.config


def test_save_file_writes_only_the_file_it_is_given(tmp_path):
    """D8: safetensors' own writer writes a hidden temporary file of its own and renames it over the name (a
    SIGTERM left it behind, full size); ours writes into the file given, the same bytes."""
    from safetensors.torch import save_file as safetensors_save_file

    from affordance.controlnet import convert as convert_module

    tensors = {
        "b": torch.ones(3, dtype=torch.float16),
        "a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "c": torch.randn(5).bfloat16(),
        "d": torch.randn(4).to(torch.float8_e4m3fn),
        "e": torch.zeros(0, 3),
        "f": torch.ones(2, dtype=torch.int64),
        "g": torch.tensor([True, False]),
    }
    ours = tmp_path / "ours.safetensors"
    ours.write_bytes(b"")
    inode = ours.stat().st_ino
    convert_module.save_file(tensors, str(ours), metadata={"format": "pt"})
    assert ours.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.safetensors"]
    ref = tmp_path / "ref.safetensors"
    safetensors_save_file(tensors, str(ref), metadata={"format": "pt"})
    assert ours.read_bytes() == ref.read_bytes()
    convert_module.save_file(tensors, str(ours), metadata={})  # an empty metadata is written, as safetensors does
    safetensors_save_file(tensors, str(ref), metadata={})
    assert ours.read_bytes() == ref.read_bytes()
    convert_module.save_file({"t": tensors["a"].t()}, str(ours))  # a view that is not contiguous
    assert torch.equal(_tensors(ours)["t"], tensors["a"].t())


def _interrupt_while_writing(monkeypatch, raise_it):
    """Replace convert.py's safetensors writer by one that writes part of the file, then calls ``raise_it``."""
    from affordance.controlnet import convert as convert_module

    def partial(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 4096)
        raise_it()
        raise AssertionError("the writer went on after the interruption")

    monkeypatch.setattr(convert_module, "save_file", partial)


def _stop():
    raise KeyboardInterrupt


def test_interrupted_write_leaves_no_temporary_file_or_new_folder(tiny_model, tiny_xl_model, write_checkpoint, tmp_path, monkeypatch):
    """D8: Ctrl-C while writing removes the temporary file and the folders the call created (the old code
    removed folders on OSError only), and leaves an existing destination as it was."""
    src = write_checkpoint(tiny_model)
    existing = tmp_path / "xl"
    convert_file(write_checkpoint(tiny_xl_model, name="xl"), existing, to="diffusers")
    before = _folder_contents(existing)
    _interrupt_while_writing(monkeypatch, _stop)
    with pytest.raises(KeyboardInterrupt):
        convert_file(src, tmp_path / "new" / "deeper" / "cn", to="diffusers")
    assert not (tmp_path / "new").exists()
    with pytest.raises(KeyboardInterrupt):
        convert_file(src, existing, to="diffusers", overwrite=True)
    assert _folder_contents(existing) == before


class _SignalNotHandled(Exception):
    """Raised by the test's own handler: the signal reached it instead of the CLI's."""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_cli_turns_signals_into_a_clean_exit(tiny_model, write_checkpoint, tmp_path, monkeypatch, caplog, signame):
    """D8: SIGTERM (which used to kill the process, leaving its temporary files) and Ctrl-C stop the CLI
    cleanly: exit 128 + signal, one line saying the destination was not changed, nothing left behind, and the
    previous signal handlers back in place."""
    import signal

    signum = getattr(signal, signame)
    src = write_checkpoint(tiny_model)

    def guard(sig, frame):
        raise _SignalNotHandled(sig)

    previous = signal.signal(signum, guard)
    try:
        _interrupt_while_writing(monkeypatch, lambda: signal.raise_signal(signum))
        try:
            rc = convert_main([str(src), str(tmp_path / "new" / "cn"), "--to", "diffusers"])
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C escaped the CLI")
        assert signal.getsignal(signum) is guard
    finally:
        signal.signal(signum, previous)
    assert rc == 128 + signum
    assert f"interrupted; {tmp_path / 'new' / 'cn'} was not changed" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_signal_during_the_swap_waits_until_every_file_is_in_place(tiny_model, write_checkpoint, tmp_path, monkeypatch, caplog):
    """D8/D7: a signal that arrives while the files are renamed into place is held back until they all are,
    and the CLI then says that the destination was written."""
    import signal

    from affordance.controlnet import convert as convert_module

    real = convert_module._swap_in

    def swap_with_a_signal(staged):
        signal.raise_signal(signal.SIGTERM)  # held back: the swap goes on
        real(staged)

    monkeypatch.setattr(convert_module, "_swap_in", swap_with_a_signal)
    src = write_checkpoint(tiny_model)
    folder = tmp_path / "cn"
    assert convert_main([str(src), str(folder), "--to", "diffusers"]) == 128 + signal.SIGTERM
    assert f"interrupted; {folder} was written" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert read_controlnet(folder).config == tiny_model.config


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_sigmask"), reason="blocking signals is POSIX")
def test_a_signal_while_the_handlers_are_put_back(tiny_model, write_checkpoint, tmp_path, monkeypatch, caplog):
    """A Ctrl-C landing after SIGINT's handler was put back but before SIGTERM's stopped the restoring: SIGTERM
    kept convert's own 'hold' handler (every later SIGTERM was swallowed), and the CLI said 'was not changed'
    although every file was in place. Handlers are now put back with the signals blocked."""
    import signal

    src = write_checkpoint(tiny_model)
    folder = tmp_path / "cn"
    real = signal.signal
    fired: list[int] = []

    def signal_then_ctrl_c(signum, handler):
        old = real(signum, handler)
        restoring = signum == signal.SIGINT and getattr(handler, "__name__", "") == "_raise_interrupted"
        if restoring and not fired and folder.exists() and any(folder.iterdir()):
            fired.append(signum)
            signal.raise_signal(signal.SIGINT)  # after the swap, while the held-back handlers are put back
        return old

    # the race needs Ctrl-C handled: a run started in the background by a shell without job control
    # (`nohup pytest &`) inherits SIGINT ignored, which convert rightly leaves ignored (the test could not fire)
    inherited = real(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(signal, "signal", signal_then_ctrl_c)
        before = signal.getsignal(signal.SIGTERM)
        rc = convert_main([str(src), str(folder), "--to", "diffusers"])
        monkeypatch.undo()
    finally:
        real(signal.SIGINT, inherited if inherited is not None else signal.default_int_handler)
    assert fired and rc == 128 + signal.SIGINT
    assert f"interrupted; {folder} was written" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is before
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_cli_can_switch_global_average_pooling_off(tiny_model, write_checkpoint, tmp_path):
    """D10: --no-global-average-pooling clears the mark of a source that has it (the flag could only set it)."""
    shuffle = convert_file(write_checkpoint(tiny_model), tmp_path / "shuffle.safetensors", to="original", global_average_pooling=True)
    assert read_controlnet(shuffle).config.global_average_pooling
    plain = tmp_path / "plain.safetensors"
    assert convert_main([str(shuffle), str(plain), "--to", "original", "--no-global-average-pooling"]) == 0
    assert not read_controlnet(plain).config.global_average_pooling
    folder = tmp_path / "folder"
    assert convert_main([str(shuffle), str(folder), "--to", "diffusers", "--no-global-average-pooling"]) == 0
    assert json.loads((folder / "config.json").read_text())["global_pool_conditions"] is False
    kept = tmp_path / "kept.safetensors"
    assert convert_main([str(shuffle), str(kept), "--to", "original"]) == 0  # default: as the source says
    assert read_controlnet(kept).config.global_average_pooling


def test_cli_prefix_writes_control_model_keys(tiny_model, write_checkpoint, tmp_path):
    """`--to original --prefix` (a flag, as the README shows it) writes 'control_model.' keys; without it, none."""
    src = write_checkpoint(tiny_model)
    out = tmp_path / "prefixed.safetensors"
    assert convert_main([str(src), str(out), "--to", "original", "--prefix"]) == 0
    with safe_open(str(out), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("control_model.") for k in keys)
    assert read_controlnet(out).report.layout is Layout.ORIGINAL_PREFIXED
    plain = tmp_path / "plain.safetensors"
    assert convert_main([str(src), str(plain), "--to", "original"]) == 0
    assert read_controlnet(plain).report.layout is Layout.ORIGINAL


@pytest.mark.skipif(sys.byteorder != "little", reason="simulates a big-endian host on a little-endian one")
def test_a_big_endian_host_writes_each_value_little_endian(monkeypatch):
    """safetensors is little-endian: on a big-endian host each value's bytes are swapped, the values keep their order.
    Simulated here: the tensor's bytes read as big-endian values must come out reversed value by value."""
    from affordance.controlnet.convert import _little_endian_bytes

    t = torch.tensor([1, 2, 3], dtype=torch.int16)
    assert bytes(_little_endian_bytes(t)) == b"\x01\x00\x02\x00\x03\x00"
    monkeypatch.setattr(sys, "byteorder", "big")
    assert bytes(_little_endian_bytes(t)) == b"\x00\x01\x00\x02\x00\x03"
    assert bytes(_little_endian_bytes(torch.tensor([1, 2, 3], dtype=torch.uint8))) == b"\x01\x02\x03"


def test_cli_help_names_the_program_it_is_called_as(capsys):
    """D10: `python -m affordance convert --help` can show its own name."""
    with pytest.raises(SystemExit) as info:
        convert_main(["--help"], prog="python -m affordance convert")
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m affordance convert ")
    assert "--no-global-average-pooling" in out


def test_cli_as_module_runs_without_a_warning(tiny_model, write_checkpoint, tmp_path, python_cmd, repo_root):
    """D10: the package no longer imports convert.py eagerly, so `python -m affordance.controlnet.convert` does
    not find it in sys.modules already (runpy's RuntimeWarning on every run); the names still import."""
    import os

    src = write_checkpoint(tiny_model)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    try:
        (pkg / "affordance").symlink_to(repo_root, target_is_directory=True)  # this checkout, whatever is installed
    except OSError:
        pytest.skip("no symbolic links here")
    env = {**os.environ, "PYTHONPATH": str(pkg)}
    code = (
        "import sys, affordance.controlnet as c; assert 'affordance.controlnet.convert' not in sys.modules; "
        "from affordance.controlnet import convert_file, diffusers_config; "
        "assert convert_file.__module__ == 'affordance.controlnet.convert'; print(c.__file__)"
    )
    probe = subprocess.run([*python_cmd, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(pkg / "affordance" / "controlnet" / "__init__.py")
    proc = subprocess.run(
        [*python_cmd, "-W", "error::RuntimeWarning", "-m", "affordance.controlnet.convert", str(src), str(tmp_path / "o.safetensors"), "--to", "original"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr


def test_a_link_at_the_destination_is_not_replaced_without_force(tiny_model, write_checkpoint, tmp_path):
    """A dangling link (or a loop) counted as 'not there' and was replaced by the new file without --force."""
    import os

    src = write_checkpoint(tiny_model)
    dangling = tmp_path / "dangling.safetensors"
    os.symlink(tmp_path / "nowhere.safetensors", dangling)
    with pytest.raises(OutputError, match="dangling.safetensors already exists; nothing was written"):
        convert_file(src, dangling, to="original")
    assert dangling.is_symlink()
    convert_file(src, dangling, to="original", overwrite=True)
    assert dangling.is_file() and not dangling.is_symlink()


def test_folder_swap_names_a_file_moved_aside_and_not_put_back(tiny_model, tiny_xl_model, write_checkpoint, tmp_path, monkeypatch):
    """Without hard links the old weights are moved aside; when config.json then fails and moving the weights
    back fails too, the weights are missing (not 'the new file'), and the message says where the old one is."""
    import os

    folder = tmp_path / "xl"
    convert_file(write_checkpoint(tiny_xl_model, name="xl"), folder, to="diffusers")
    old_weights = (folder / "diffusion_pytorch_model.safetensors").read_bytes()
    src = write_checkpoint(tiny_model)

    def no_link(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    real_rename, real_replace = os.rename, os.replace

    def rename(a, b, *args, **kwargs):  # moving config.json aside fails (after the weights were moved aside)
        if str(a).endswith("config.json") and "/.bak-" in str(b):
            raise OSError(1, "Operation not permitted")
        return real_rename(a, b, *args, **kwargs)

    def replace(a, b, *args, **kwargs):  # and so does putting the weights back
        if "/.bak-" in str(a):
            raise OSError(1, "Operation not permitted")
        return real_replace(a, b, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError) as info:
        convert_file(src, folder, to="diffusers", overwrite=True)
    message = str(info.value)
    assert "diffusion_pytorch_model.safetensors is missing (the old one is kept as " in message
    assert "is the new file" not in message
    kept = [p for p in folder.iterdir() if p.name.startswith(".bak-") and p.name.endswith("model.safetensors")]
    assert len(kept) == 1 and kept[0].read_bytes() == old_weights


def test_an_interruption_right_after_the_temporary_file_is_made_leaves_none(tiny_model, write_checkpoint, tmp_path, monkeypatch):
    """The temporary file was created before its name was recorded for cleanup: a Ctrl-C in between left it."""
    import os

    real_close = os.close
    calls: list[int] = []

    def close_then_ctrl_c(fd):
        real_close(fd)
        calls.append(fd)
        if len(calls) == 1:  # the first close is that of the just-created temporary file
            raise KeyboardInterrupt

    src = write_checkpoint(tiny_model)
    monkeypatch.setattr(os, "close", close_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        convert_file(src, tmp_path / "out" / "cn.safetensors", to="original")
    monkeypatch.undo()
    assert calls and sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_ctrl_c_during_the_swap_from_python_says_the_files_were_written(tiny_model, write_checkpoint, tmp_path, monkeypatch):
    """Called from Python (Ctrl-C raises KeyboardInterrupt, no convert handlers): a Ctrl-C held back during the
    swap comes out as Interrupted(SIGINT, written=True) once every file is in place."""
    import signal

    from affordance.controlnet import convert as convert_module

    real = convert_module._swap_in

    def swap_with_ctrl_c(staged):
        signal.raise_signal(signal.SIGINT)  # held back: the swap goes on
        real(staged)

    monkeypatch.setattr(convert_module, "_swap_in", swap_with_ctrl_c)
    src, folder = write_checkpoint(tiny_model), tmp_path / "cn"
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not `nohup ... &`)
    try:
        with pytest.raises(convert_module.Interrupted) as caught:
            convert_file(src, folder, to="diffusers")
    finally:
        signal.signal(signal.SIGINT, inherited if inherited is not None else signal.default_int_handler)
    assert (caught.value.signum, caught.value.written) == (signal.SIGINT, True)
    assert read_controlnet(folder).config == tiny_model.config


def test_interruptible_off_the_main_thread_changes_no_handler():
    """Signal handlers can only be set from the main thread: elsewhere the block runs as it is."""
    import signal
    import threading

    from affordance.controlnet.convert import interruptible

    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def work() -> None:
        try:
            with interruptible():
                seen.append(signal.getsignal(signal.SIGTERM))
        except Exception as exc:  # reported below
            seen.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == [before] and signal.getsignal(signal.SIGTERM) is before


def test_an_ignored_stop_signal_stays_ignored_while_converting():
    """A conversion started with SIGINT ignored (`command &` in a script, nohup) is not stopped by a SIGINT; SIGTERM,
    not ignored, still stops it; afterwards SIGINT is ignored again."""
    import os
    import signal

    from affordance.controlnet.convert import Interrupted, interruptible

    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            with interruptible():
                os.kill(os.getpid(), signal.SIGINT)  # ignored: the block goes on
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        except Interrupted:
            pytest.fail("an ignored SIGINT stopped the conversion")
        with pytest.raises(Interrupted) as caught, interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
        assert caught.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited if inherited is not None else signal.default_int_handler)


def test_a_written_file_is_complete_when_it_is_synced(tmp_path, monkeypatch):
    """os.fsync sees every byte of the file (Python's buffer flushed first): a power cut after the rename finds the
    whole file, not one cut at the last buffer."""
    import os

    from affordance.controlnet import convert as convert_module

    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "x.safetensors"
    convert_module.save_file({"a": torch.arange(3000, dtype=torch.float32), "b": torch.ones(7)}, out)
    assert synced == [out.stat().st_size]


def test_diffusers_config_names_what_diffusers_cannot_build(tiny_config):
    import dataclasses

    from affordance.controlnet.errors import UnknownFormatError

    two_plain = dataclasses.replace(tiny_config, transformer_depth_middle=0)  # two ResBlocks, no attention
    assert two_plain.middle_resblocks == 2 and not two_plain.has_middle_attention
    with pytest.raises(UnknownFormatError, match="a middle block of two ResBlocks without attention cannot be written"):
        diffusers_config(two_plain)


def test_the_middle_depth_is_written_where_diffusers_reads_it(tiny_config):
    """diffusers takes the middle block's depth from the last level's entry: a last level without attention
    carries it (tiny_config's second level has none)."""
    import dataclasses

    deep_middle = dataclasses.replace(tiny_config, transformer_depth_middle=2)
    assert diffusers_config(deep_middle)["transformer_layers_per_block"] == [1, 2]
    assert diffusers_config(tiny_config)["transformer_layers_per_block"] == 1
    # the official SDXL ControlNets' config.json: the attention-free first level is written as 1
    from affordance.controlnet.config import SDXL

    assert diffusers_config(SDXL)["transformer_layers_per_block"] == [1, 2, 10]


@pytest.mark.parametrize(
    "changes",
    [
        {"transformer_depth": (1, 0, 0, 0)},  # depth 1 then 0 in the first level
        {"transformer_depth": (0, 0, 0, 0), "attention": (True, False, False, False)},  # attention layer, then none
    ],
)
def test_diffusers_config_refuses_a_level_whose_blocks_differ(tiny_config, changes):
    """diffusers has one block type and depth per level: a level mixing depths or attention cannot be written."""
    import dataclasses

    from affordance.controlnet.errors import UnknownFormatError

    mixed = dataclasses.replace(tiny_config, num_res_blocks=(2, 2), **changes)
    with pytest.raises(UnknownFormatError, match=r"inside one level cannot be written for diffusers"):
        diffusers_config(mixed)


def test_diffusers_config_needs_the_same_number_of_blocks_per_level(tiny_config):
    """diffusers' layers_per_block is one number: levels of 2 and 1 ResBlocks are refused, naming them."""
    import dataclasses

    from affordance.controlnet.errors import UnknownFormatError

    uneven = dataclasses.replace(tiny_config, num_res_blocks=(2, 1), transformer_depth=(1, 1, 0))
    with pytest.raises(UnknownFormatError, match=r"same number of blocks per level, got \(2, 1\)"):
        diffusers_config(uneven)


def test_diffusers_config_refuses_a_middle_depth_other_than_an_attention_last_levels(tiny_config):
    """diffusers reads the middle depth from the last level's entry: when that level has attention of another
    depth, the two cannot both be written."""
    import dataclasses

    from affordance.controlnet.errors import UnknownFormatError

    tied = dataclasses.replace(tiny_config, transformer_depth=(1, 2), transformer_depth_middle=2)
    assert diffusers_config(tied)["transformer_layers_per_block"] == [1, 2]
    untied = dataclasses.replace(tied, transformer_depth_middle=1)
    with pytest.raises(UnknownFormatError, match=r"ties the middle depth to the last level's; got \[1, 2\] and 1"):
        diffusers_config(untied)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.uint16])
def test_save_file_refuses_a_dtype_safetensors_cannot_hold(tmp_path, dtype):
    """A tensor of a dtype outside safetensors' list is a typed OutputError naming it, before any file is made."""
    from affordance.controlnet import convert as convert_module

    out = tmp_path / "x.safetensors"
    tensors = {"ok": torch.ones(2), "odd": torch.zeros(2, dtype=dtype)}
    with pytest.raises(OutputError, match=rf"tensor 'odd' is {dtype}, which this converter does not write"):
        convert_module.save_file(tensors, out)
    assert not out.exists()


def test_a_source_that_may_not_be_read_is_an_unreadable_checkpoint(tiny_model, write_checkpoint, tmp_path, monkeypatch):
    """A source whose folder may not be searched (os.stat: EACCES; simulated, as root reads everything) is not
    refused by convert_file's early check but by the reader, as an UnreadableCheckpointError naming the file;
    nothing is written."""
    import errno
    import os

    from affordance.controlnet.errors import UnreadableCheckpointError

    src, dst = write_checkpoint(tiny_model), tmp_path / "out.safetensors"
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if os.fspath(path) == str(src):
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(UnreadableCheckpointError, match=rf"cannot read {src}: Permission denied"):
        convert_file(src, dst, to="original")
    assert not os.path.lexists(dst)

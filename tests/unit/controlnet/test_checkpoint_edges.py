"""Checkpoint reading at its edges: wrappers, cut-off and text files, stat errors, config.json's encoding, lazy reads."""

from __future__ import annotations

import errno
import json
import os
import pathlib

import pytest
import torch
from safetensors.torch import save_file

from affordance.controlnet import CorruptCheckpointError, checkpoint, load_controlnet
from affordance.controlnet.checkpoint import _read_config, read_checkpoint
from affordance.controlnet.errors import UnreadableCheckpointError, UnsafeCheckpointError


# Round 10 (mutant 007): a checkpoint whose state dict sits under one other name ({"model": sd}, {"params": sd},
# as many training scripts save) is unwrapped, so its keys are the ControlNet's own, and nothing is skipped.
@pytest.mark.parametrize("wrapper", ["model", "params", "module"])
def test_a_state_dict_under_one_name_is_unwrapped(tmp_path, wrapper):
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: {"w": torch.zeros(2), "b": torch.ones(3)}}, path)
    raw = read_checkpoint(path)
    assert sorted(raw.tensors) == ["b", "w"]
    assert raw.skipped == []
    assert (raw.fetch is not None) == checkpoint.lazy_zip_reads()  # read lazily where this torch can, else whole
    assert torch.equal(raw.materialized(["b"])["b"], torch.ones(3))


def test_one_name_inside_state_dict_is_unwrapped_too(tmp_path):
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": {"model": {"w": torch.zeros(2)}}, "epoch": 3}, path)
    raw = read_checkpoint(path)
    assert sorted(raw.tensors) == ["w"]
    assert raw.skipped == ["epoch"]


# Round 10 (mutant 056): a text file under a model's name (a saved web page, a README) is named as text even when the
# 64 bytes that are sniffed end inside a multi-byte UTF-8 character or hold non-UTF-8 bytes (a Latin-1 page).
@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE html><html><head><title>" + "Modèle ControlNet – téléchargement".encode() * 4,
        b"# ControlNet weights for SD 1.5 ...." + "caf\xe9 na\xefve r\xe9sum\xe9 ".encode("latin-1") * 4,
    ],
)
def test_text_with_non_ascii_past_the_first_32_bytes_is_named_as_text(tmp_path, data):
    path = tmp_path / "cn.safetensors"
    path.write_bytes(data)
    with pytest.raises(CorruptCheckpointError, match="HTML page|text beginning"):
        load_controlnet(path)


# Round 10 (mutant 061): on torch 2.11 and later, lazy_zip_reads() is True, so a .pth ControlNet is read tensor by
# tensor (a merged 1.0-style file reads only its ControlNet). The tests that use lazy reads skip themselves when
# it answers False, so a wrong False would switch the lazy reader off everywhere without any test failing.
def _version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


@pytest.mark.skipif(_version() < (2, 11), reason="torch < 2.11 reads every storage under map_location='meta'")
def test_lazy_zip_reads_on_torch_2_11_and_later():
    checkpoint.lazy_zip_reads.cache_clear()  # answered fresh, not what an import-time call cached
    try:
        assert checkpoint.lazy_zip_reads() is True
    finally:
        checkpoint.lazy_zip_reads.cache_clear()


# Round 10 (mutant 069): check_source re-raises an OSError other than ELOOP as it is (documented: PermissionError
# for a folder that may not be searched); only a real link loop is called a loop.
@pytest.mark.parametrize(("err", "exc_type"), [(errno.EACCES, PermissionError), (errno.EIO, OSError)])
def test_a_stat_error_other_than_a_loop_is_not_called_a_loop(tmp_path, monkeypatch, err, exc_type):
    path = tmp_path / "cn.safetensors"
    path.write_bytes(b"x")
    real = os.stat

    def stat(p, *args, **kwargs):
        if str(p) == str(path):
            raise OSError(err, os.strerror(err), str(p))
        return real(p, *args, **kwargs)

    monkeypatch.setattr(checkpoint.os, "stat", stat)
    with pytest.raises(exc_type) as info:
        checkpoint.check_source(path)
    assert info.value.errno == err
    assert not isinstance(info.value, UnreadableCheckpointError)
    with pytest.raises(Exception) as info:  # whatever the loader makes of it, never "a symbolic link loop"
        load_controlnet(path)
    assert "symbolic link loop" not in str(info.value)


# Round 10 (mutant 111): a safetensors file cut short is refused when its header is read (read_checkpoint), with
# which tensor runs past the end, before any tensor bytes are read.
def test_a_cut_off_safetensors_file_is_refused_from_its_header(tmp_path):
    path = tmp_path / "cn.safetensors"
    save_file({"a": torch.ones(1000), "b": torch.ones(10)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptCheckpointError, match=r"is truncated: tensor '(a|b)' ends at byte \d+ but the file has"):
        read_checkpoint(path)


# Round 10 (mutant 122): config.json is read as UTF-8 whatever the locale (Windows: cp1252), so a config with
# non-ASCII text (a "_name_or_path" in another script) reads the same everywhere. The spy stands in for a
# non-UTF-8 locale, which a test cannot switch once the interpreter runs.
def test_config_json_is_decoded_as_utf8(tmp_path, monkeypatch):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"_name_or_path": "Modèle/контроль"}, ensure_ascii=False), encoding="utf-8")
    asked = []
    real = pathlib.Path.read_text

    def read_text(self, *args, **kwargs):
        asked.append(kwargs.get("encoding", args[0] if args else None))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    assert _read_config(cfg)["_name_or_path"] == "Modèle/контроль"
    assert asked == ["utf-8"]


RAN: list[str] = []


def _record(x: str) -> str:
    RAN.append(x)
    return x


class _Payload:
    def __reduce__(self):
        return (_record, ("code ran",))


@pytest.mark.parametrize("mmap", [False, True])
def test_a_controlnet_pickle_asking_for_code_is_refused_whatever_torchs_default(tmp_path, monkeypatch, mmap):
    """weights_only=True is passed explicitly (torch 2.4/2.5 default to full pickles, and on newer torch
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns the default off): the code in a file never runs, whichever reader."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": _Payload()}, path, _use_new_zipfile_serialization=mmap)
    RAN.clear()
    with pytest.raises(UnsafeCheckpointError, match="is a pickle that needs to run code to load"):
        load_controlnet(path)
    assert RAN == []


def test_a_diffusers_config_json_that_is_not_an_object_is_named(tmp_path, tiny_model, write_checkpoint):
    """A config.json holding a JSON list is named as no JSON object (``.get`` on it raised AttributeError)."""
    folder = write_checkpoint(tiny_model, "diffusers-folder")
    (folder / "config.json").write_text("[]")
    with pytest.raises(CorruptCheckpointError, match=r"cn/config.json is not a JSON object\."):
        load_controlnet(folder)


class _ChangingFile:
    """A file object whose first read changes the file on disk first, as a download writing it meanwhile."""

    def __init__(self, f, change):
        self._f, self._change = f, change

    def readinto(self, buf):
        if self._change is not None:
            self._change()
            self._change = None
        return self._f.readinto(buf)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("change", ["cut_short", "grown"])
def test_a_file_changed_while_its_tensors_are_read_is_named(tmp_path, monkeypatch, change):
    """The file is cut short, or written on, while its tensors' bytes are read (after every check before the
    read passed): the read says the file changed, instead of returning zeros for the missing bytes or a mix of
    two versions. A file left alone reads back exactly."""
    path = tmp_path / "cn.safetensors"
    tensors = {"a": torch.arange(1000, dtype=torch.float32), "b": torch.ones(10)}
    save_file(tensors, str(path))
    raw = read_checkpoint(path)
    assert all(torch.equal(raw.fetch(["a", "b"])[k], tensors[k]) for k in tensors)

    def cut_short():
        os.truncate(path, 100)

    def grown():
        with open(path, "ab") as f:
            f.write(b"\0" * 64)

    real_open = pathlib.Path.open

    def opener(self, *args, **kwargs):
        f = real_open(self, *args, **kwargs)
        return _ChangingFile(f, cut_short if change == "cut_short" else grown) if self == path else f

    monkeypatch.setattr(pathlib.Path, "open", opener)
    with pytest.raises(CorruptCheckpointError, match="changed while it was being read"):
        raw.fetch(["a", "b"])


@pytest.mark.skipif(not checkpoint.lazy_zip_reads(), reason="torch < 2.11 maps zip checkpoints instead")
@pytest.mark.parametrize("when", ["after_its_directory", "while_its_pickle_is_read"])
def test_a_zip_checkpoint_replaced_while_it_is_opened_is_named_at_once(tmp_path, monkeypatch, tiny_model, when):
    """A .pth replaced (a download finishing) between reading its zip directory and its pickle, or while the
    pickle is read: said at once by read_checkpoint, so one version's pickle is never paired with the other's
    record positions."""
    path = tmp_path / "cn.pth"
    torch.save(tiny_model.state_dict(), path)
    assert read_checkpoint(path).fetch is not None  # the lazy reader, untouched

    def replace():
        other = tmp_path / "other.pth"
        torch.save({k: v + 1 for k, v in tiny_model.state_dict().items()}, other)
        os.replace(other, path)

    if when == "after_its_directory":
        real = checkpoint._zip_layout

        def layout_then_replace(p):
            out = real(p)
            replace()
            return out

        monkeypatch.setattr(checkpoint, "_zip_layout", layout_then_replace)
    else:
        real_load = checkpoint._load_pickle

        def load_then_replace(p, container, f, map_location):
            out = real_load(p, container, f, map_location)
            if map_location == "meta":
                replace()
            return out

        monkeypatch.setattr(checkpoint, "_load_pickle", load_then_replace)
    with pytest.raises(CorruptCheckpointError, match="changed while it was being read"):
        read_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 3")
@pytest.mark.parametrize("protocol", [2, 3])
def test_a_legacy_torch_save_of_pickle_protocol_2_or_3_loads_exactly(tmp_path, tiny_model, protocol):
    """torch.save's pre-zip format with pickle protocol 2 (its default) or 3 is a weights file torch's safe loader
    reads: it loads bit for bit (protocol 3 was only ever tried by name, never read back)."""
    path = tmp_path / "legacy.pth"
    torch.save(tiny_model.state_dict(), path, pickle_protocol=protocol, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:2] == bytes([0x80, protocol])
    assert read_checkpoint(path).container == "torch-legacy"
    model, _ = load_controlnet(path)
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_the_unpicklers_reason_is_its_first_line_without_torchs_advice_and_at_most_200_characters():
    reason = checkpoint._unpickler_reason
    advice = "Weights only load failed. This file can still be loaded, to do so you have two options, weights_only"
    message = f"{advice}\n(1) In PyTorch 2.6 ...\nWeightsUnpickler error: Unsupported operand 172\n\nCheck the docs."
    assert reason(message) == "Unsupported operand 172"
    assert reason("WeightsUnpickler error: " + "x" * 300) == "x" * 200
    assert reason("WeightsUnpickler error: \nCheck the documentation of torch.load") == "no reason given"

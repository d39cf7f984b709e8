"""Zip checkpoints (torch.save) are read without a memory map: their pickle first (onto the meta device), then
only the storages asked for, by the plain reader safetensors use too. Every case is checked against what
torch.load (or safetensors) itself reads from the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from affordance.controlnet import CorruptCheckpointError, UnknownFormatError
from affordance.controlnet import checkpoint as checkpoint_module
from affordance.controlnet.checkpoint import read_checkpoint
from affordance.controlnet.torch_zip import Layout

# torch 2.11+ reads the pickle onto the meta device and the storages later; before, files are memory-mapped
LAZY = checkpoint_module.lazy_zip_reads()
needs_lazy = pytest.mark.skipif(not LAZY, reason="this torch (< 2.11) reads zip checkpoints memory-mapped, not lazily")


def test_lazy_reads_begin_with_torch_2_11():
    """The probe and the version the README and docstrings name agree (torch 2.10 still read every storage for
    ``map_location="meta"`` outside a fake-tensor mode; 2.11 records where each one begins)."""
    assert LAZY == (torch.torch_version.TorchVersion(torch.__version__) >= "2.11")


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(3, 4, generator=g)
    return {
        "a": base,
        "row": base[1],  # a view into a's storage, at an offset
        "t": base.t(),  # non-contiguous
        "half": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "ints": torch.arange(7, dtype=torch.int64),
        "flags": torch.tensor([True, False, True]),
        "empty": torch.empty(0, 4),
        "scalar": torch.tensor(2.5),
    }


def _read_all(path: Path) -> dict[str, torch.Tensor]:
    raw = read_checkpoint(path)
    return raw.materialized(raw.tensors)


def _rezip(src: Path, dst: Path, change=lambda name, data: data, compression=zipfile.ZIP_STORED) -> None:
    """Copy a zip member by member (Python's zipfile: no 64-byte alignment), changing members' bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change(info.filename, zin.read(info)))


def test_values_views_and_shared_storage_match_torch_load(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": _state(), "epoch": 7}, path)
    raw = read_checkpoint(path)
    assert raw.container == "torch-zip" and raw.skipped == ["epoch"]
    # nothing but the pickle read yet (or, before torch 2.11, the file mapped)
    assert all(t.device.type == ("meta" if LAZY else "cpu") for t in raw.tensors.values())
    assert raw.mapped is not LAZY
    got = raw.materialized(raw.tensors)
    expected = torch.load(path, weights_only=True)["state_dict"]
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and got[k].stride() == v.stride(), k
        assert torch.equal(got[k], v), k
    # views of one storage share the memory read, as torch.load's do
    assert got["row"].untyped_storage().data_ptr() == got["a"].untyped_storage().data_ptr()
    got["a"][1, 0] = 100.0
    assert got["row"][0] == 100.0 and got["t"][0, 1] == 100.0


def test_only_the_keys_asked_for_are_returned(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(_state(), path)
    raw = read_checkpoint(path)
    got = raw.materialized(["half", "row"])
    assert set(got) == {"half", "row"}
    assert torch.equal(got["row"], _state()["row"])


@pytest.mark.parametrize("order", [b"big", b"middle"])
def test_checkpoints_of_another_byte_order_are_read_by_torch(tmp_path, order):
    """A file saved on a big-endian machine (its byteorder record says so, every storage swapped): torch.load
    onto the meta device would crash swapping storages that hold no data, and torch before 2.11 does not swap
    memory-mapped ones, so torch reads it whole and swaps."""
    state = {"f32": torch.randn(4, 3), "f16": torch.randn(6).half(), "u8": torch.arange(4, dtype=torch.uint8)}
    little = tmp_path / "little.pth"
    torch.save(state, little)
    # torch.save numbers storages in the order it meets them: data/0 is f32's, data/1 f16's, data/2 u8's
    element = {"0": 4, "1": 2, "2": 1}
    with zipfile.ZipFile(little) as z:
        records = {i.filename: i.file_size for i in z.infolist() if "/data/" in i.filename}
    assert sorted(records.values()) == [4, 12, 48]  # 4 x 3 x 4, 6 x 2 and 4 x 1 bytes
    by_name = {name: element[name.rsplit("/", 1)[1]] for name in records}

    def to_big(name: str, data: bytes) -> bytes:
        if name.endswith("/byteorder"):
            return order
        if order == b"big" and by_name.get(name, 1) > 1:
            n = by_name[name]
            return b"".join(data[i : i + n][::-1] for i in range(0, len(data), n))
        return data

    other = tmp_path / "other.pth"
    _rezip(little, other, to_big)
    if order != b"big":
        with pytest.raises(CorruptCheckpointError, match="truncated or damaged .*Unknown endianness type: middle"):
            read_checkpoint(other)
        return
    raw = read_checkpoint(other)
    assert raw.fetch is None
    for k, v in state.items():
        assert torch.equal(raw.tensors[k], v), k


def test_a_recompressed_archive_is_read_whole(tmp_path):
    """A zip whose records were deflated (re-packed by an archiver) cannot be read in place: torch.load reads it."""
    path = tmp_path / "w.pth"
    torch.save(_state(), path)
    packed = tmp_path / "packed.pth"
    _rezip(path, packed, compression=zipfile.ZIP_DEFLATED)
    raw = read_checkpoint(packed)
    assert raw.fetch is None and all(t.device.type == "cpu" for t in raw.tensors.values())
    for k, v in _state().items():
        assert torch.equal(raw.tensors[k], v), k


def test_a_storage_the_directory_does_not_know_is_read_as_torch_does(tmp_path, monkeypatch):
    """No record begins where torch says a storage does: the file is read as torch.load reads it."""
    path = tmp_path / "w.pth"
    torch.save(_state(), path)
    monkeypatch.setattr(checkpoint_module, "read_layout", lambda f: Layout({}, ("little",)))
    raw = read_checkpoint(path)
    assert raw.fetch is None and raw.mapped
    for k, v in _state().items():
        assert torch.equal(raw.tensors[k], v), k


def test_on_a_torch_without_lazy_reads_the_file_is_mapped(tmp_path, monkeypatch):
    """Before torch 2.11, map_location="meta" read every storage: the file is memory-mapped instead (only what
    is used is read; the loader copies it), never read whole into memory. On such a torch this is the real path;
    on a later one the capability probe is made to say no."""
    if LAZY:
        monkeypatch.setattr(checkpoint_module, "lazy_zip_reads", lambda: False)
    path = tmp_path / "w.pth"
    torch.save(_state(), path)
    raw = read_checkpoint(path)
    assert raw.fetch is None and raw.mapped
    for k, v in _state().items():
        assert torch.equal(raw.tensors[k], v), k


def test_records_out_of_order_are_read_by_name(tmp_path):
    """An archive whose storage records are not in key order (written record by record, as torch's own writer
    lays them out, but data/2 before data/1): torch's meta read locates storages by position, which would hand
    tensor b the bytes of c; the file is read as torch.load reads it (by name)."""
    path = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(4), "b": torch.ones(4), "c": torch.full((4,), 2.0)}, path)
    with zipfile.ZipFile(path) as z:
        records = {i.filename.split("/", 1)[1]: z.read(i) for i in z.infolist()}
    order = list(records)
    one, two = order.index("data/1"), order.index("data/2")
    order[one], order[two] = order[two], order[one]
    swapped = tmp_path / "swapped.pth"
    writer = torch._C.PyTorchFileWriter(str(swapped))
    for name in order:
        writer.write_record(name, records[name], len(records[name]))
    writer.write_end_of_file()
    expected = torch.load(swapped, weights_only=True)
    assert torch.equal(expected["b"], torch.ones(4))  # torch reads records by name
    got = _read_all(swapped)
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


def test_sparse_tensors_are_read_as_torch_does(tmp_path):
    path = tmp_path / "w.pth"
    state = {"dense": torch.arange(6.0).reshape(2, 3), "sparse": torch.eye(3).to_sparse()}
    torch.save(state, path)
    raw = read_checkpoint(path)
    assert raw.fetch is None
    assert torch.equal(raw.tensors["dense"], state["dense"])
    assert torch.equal(raw.tensors["sparse"].to_dense(), torch.eye(3))


@needs_lazy  # mapped, torch reads what the tensor needs from a longer record
def test_a_record_of_the_wrong_size_is_named(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"w": torch.randn(3, 4)}, path)
    bad = tmp_path / "bad.pth"
    _rezip(path, bad, lambda name, data: data + bytes(8) if name.endswith("/data/0") else data)
    with pytest.raises(CorruptCheckpointError, match=r"needs a storage of 48 bytes but its record '.*data/0' holds 56"):
        read_checkpoint(bad)


def test_a_tensor_reaching_past_its_storage_is_named(tmp_path):
    """A pickle whose tensor claims more elements than its storage has (shape (3, 4) edited to (3, 5)):
    torch grows the meta storage to fit, which no longer matches the record."""
    path = tmp_path / "w.pth"
    torch.save({"w": torch.randn(3, 4)}, path)

    def widen(name: str, data: bytes) -> bytes:
        if name.endswith("/data.pkl"):
            assert data.count(b"K\x03K\x04\x86") == 1  # BININT1 3, BININT1 4, TUPLE2: the shape
            return data.replace(b"K\x03K\x04\x86", b"K\x03K\x05\x86")
        return data

    bad = tmp_path / "bad.pth"
    _rezip(path, bad, widen)
    if LAZY:
        named = r"tensor 'w' needs a storage of 52 bytes but its record '.*data/0' holds 48"
    else:  # torch's own check while mapping (PyTorch 2.4 raises it as an unpickling error)
        named = r"could not be read as a PyTorch checkpoint \(.*\); it is truncated or damaged|is a damaged pickle \(.+\)"
    with pytest.raises(CorruptCheckpointError, match=named):
        read_checkpoint(bad)


def test_empty_tensors_beside_others_in_safetensors(tmp_path):
    """An empty tensor's range may start where the next tensor's bytes do: each gets its own data."""
    from safetensors.torch import save_file

    state = {"a": torch.empty(0, 4), "b": torch.arange(3.0), "c": torch.empty(0), "d": torch.ones(2, 2).half()}
    save_file(state, tmp_path / "w.safetensors")
    got = _read_all(tmp_path / "w.safetensors")
    for k, v in state.items():
        assert got[k].shape == v.shape and got[k].dtype == v.dtype and torch.equal(got[k], v), k


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated; users still have such files
def test_a_torchscript_program_is_named_and_never_opened(tmp_path):
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    path = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.script(Tiny()), str(path))
    with pytest.raises(UnknownFormatError, match=r"is a TorchScript program \(torch.jit.save\), not a file of weights"):
        read_checkpoint(path)


def _spy_torch_load(monkeypatch) -> list[object]:
    """Record every torch.load call (still made), to show a file was refused before any was."""
    calls: list[object] = []
    real = torch.load

    def spy(f, *args, **kwargs):
        calls.append(f)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_a_zip_bomb_is_refused_from_its_directory_before_anything_is_inflated(tmp_path, monkeypatch):
    """A .pth whose records are deflated (68 MiB of zeros in a few hundred KB): torch.load would inflate every
    record whole (a 1 GiB declaration in a 1 MB file as easily); the zip directory's sizes refuse it first."""
    path = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(17 << 20)}, path)
    bomb = tmp_path / "bomb.pth"
    _rezip(path, bomb, compression=zipfile.ZIP_DEFLATED)
    path.unlink()
    with zipfile.ZipFile(bomb) as zf:
        declared = sum(i.file_size for i in zf.infolist())
    size = bomb.stat().st_size
    calls = _spy_torch_load(monkeypatch)
    with pytest.raises(
        CorruptCheckpointError,
        match=rf"bomb.pth is not a usable checkpoint: its zip records declare {declared:,} bytes once uncompressed, "
        rf"but the file has {size:,} bytes .*Download the model again, or .* save it again with torch.save",
    ):
        read_checkpoint(bomb)
    assert calls == []


def test_a_recompressed_archive_of_plausible_size_is_still_read(tmp_path, monkeypatch):
    """Above the floor, only a ratio beyond the limit is refused: weights that deflate little are read."""
    monkeypatch.setattr(checkpoint_module, "MAX_INFLATED_FLOOR", 0)
    path = tmp_path / "w.pth"
    state = {"w": torch.randn(64, 64, generator=torch.Generator().manual_seed(0))}
    torch.save(state, path)
    packed = tmp_path / "packed.pth"
    _rezip(path, packed, compression=zipfile.ZIP_DEFLATED)
    assert torch.equal(_read_all(packed)["w"], state["w"])
    monkeypatch.setattr(checkpoint_module, "MAX_INFLATE_RATIO", 1)  # the same file, a stricter limit: refused
    with pytest.raises(CorruptCheckpointError, match="is not a usable checkpoint"):
        read_checkpoint(packed)


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_the_inflation_floor_is_64_mib_exactly(tmp_path, extra, refused):
    """Up to 64 MiB declared in all is never called a bomb, whatever the ratio; one byte more in a small file is.

    (The annotator reader has the same floor: ``tests/unit/preprocessors/test_weights_registry.py``.)"""
    bomb = tmp_path / "w.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data/0", bytes((64 << 20) - 4096))
        zf.writestr("archive/data/1", bytes(4096 + extra))
    assert bomb.stat().st_size * checkpoint_module.MAX_INFLATE_RATIO < 64 << 20  # the floor alone decides
    with bomb.open("rb") as f:
        if refused:
            with pytest.raises(CorruptCheckpointError, match=f"declare {(64 << 20) + 1:,} bytes once uncompressed"):
                checkpoint_module._check_inflated_size(bomb, f, bomb.stat().st_size)
        else:
            checkpoint_module._check_inflated_size(bomb, f, bomb.stat().st_size)


def test_a_layout_and_its_records_cannot_be_changed(tmp_path):
    """Read once per file and trusted by later reads of it: neither may be altered after reading."""
    import dataclasses

    from affordance.controlnet.torch_zip import read_layout

    path = tmp_path / "w.pth"
    torch.save(_state(), path)
    with path.open("rb") as f:
        layout = read_layout(f)
    record = next(iter(layout.records.values()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.records = {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.size = 0


def _declaring(path, declared: int, size: int) -> None:
    """A zip of ``size`` bytes whose one record declares ``declared`` bytes (zeros, deflated; an archive comment
    pads the file to its size)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data/0", bytes(declared))
    pad = size - path.stat().st_size
    assert 0 <= pad < 1 << 16
    with zipfile.ZipFile(path, "a") as zf:
        zf.comment = b"x" * pad
    assert path.stat().st_size == size


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_the_inflation_ratio_is_ten_times_the_file_exactly(tmp_path, monkeypatch, extra, refused):
    """Above the floor, records may declare up to 10x the file's size; one byte more is a bomb.

    (The annotator reader has the same ratio: ``tests/unit/preprocessors/test_weights_registry.py``.)"""
    monkeypatch.setattr(checkpoint_module, "MAX_INFLATED_FLOOR", 0)
    bomb = tmp_path / "w.pth"
    _declaring(bomb, 500_000 + extra, 50_000)
    with bomb.open("rb") as f:
        if refused:
            with pytest.raises(CorruptCheckpointError, match="declare 500,001 bytes once uncompressed"):
                checkpoint_module._check_inflated_size(bomb, f, 50_000)
        else:
            checkpoint_module._check_inflated_size(bomb, f, 50_000)

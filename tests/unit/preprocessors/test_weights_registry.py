"""The official annotator files: sizes and SHA-256 sums in code and README agree, and they are used."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
import torch

from affordance.__main__ import main
from affordance.preprocessors.hed import HED_FILE, HEDNet
from affordance.preprocessors.weights import (
    ANNOTATOR_FILES,
    AnnotatorWeightsError,
    load_annotator,
    locate_annotator,
    missing_file_error,
    sha256_of,
    size_note,
)

README = Path(__file__).resolve().parents[3] / "README.md"


def test_every_official_file_has_exact_size_and_sha256():
    assert len(ANNOTATOR_FILES) == 11
    for name, info in ANNOTATOR_FILES.items():
        assert info.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256), name
        assert isinstance(info.size, int) and info.size > 1_000_000, name
    assert len({f.sha256 for f in ANNOTATOR_FILES.values()}) == 11  # no sum pasted twice
    # torch hub names a file after its sum's first 8 hex digits: a check on the MiDaS row independent of the table
    midas = ANNOTATOR_FILES["dpt_hybrid-midas-501f0c75.pt"]
    assert midas.sha256.startswith("501f0c75")
    assert ANNOTATOR_FILES[HED_FILE].approx_size == "29 MB"
    assert ANNOTATOR_FILES["table5_pidinet.pth"].approx_size == "2.9 MB"


def test_readme_table_lists_the_same_files_sizes_and_sums():
    rows = re.findall(r"^\| `([^`]+)` \| [^|]+ \| ([\d,]+) \| `([0-9a-f]{64})` \|$", README.read_text(), re.M)
    assert {name: (int(size.replace(",", "")), digest) for name, size, digest in rows} == {
        f.name: (f.size, f.sha256) for f in ANNOTATOR_FILES.values()
    }
    assert len(rows) == len(ANNOTATOR_FILES)


def test_missing_file_error_gives_size_and_sum():
    msg = str(missing_file_error(HED_FILE, ["/models/annotators"]))
    assert "29,444,406 bytes" in msg and ANNOTATOR_FILES[HED_FILE].sha256 in msg
    assert "python -m affordance annotators" in msg


def test_size_note_only_when_sizes_differ(tmp_path, monkeypatch):
    path = tmp_path / HED_FILE
    path.write_bytes(b"x" * 10)
    assert size_note(path, HED_FILE) == " This file is 10 bytes; the official ControlNetHED.pth is 29,444,406 bytes."
    assert size_note(path, "not_official.pth") == ""
    assert size_note(tmp_path / "absent.pth", HED_FILE) == ""
    same = dataclasses.replace(ANNOTATOR_FILES[HED_FILE], size=10)
    monkeypatch.setitem(ANNOTATOR_FILES, HED_FILE, same)
    assert size_note(path, HED_FILE) == ""


def test_truncated_and_foreign_files_compare_sizes(tmp_path):
    path = tmp_path / HED_FILE
    torch.save(HEDNet().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AnnotatorWeightsError, match=rf"truncated or damaged.* This file is {len(data) // 2:,} bytes"):
        load_annotator(path, HEDNet(), HED_FILE)
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(AnnotatorWeightsError, match=r"does not hold the weights.* the official ControlNetHED.pth is"):
        load_annotator(path, HEDNet(), HED_FILE)


@pytest.mark.parametrize("seed", range(8))
def test_damaged_pickle_is_not_called_unsafe(tmp_path, seed):
    g = torch.Generator().manual_seed(seed)
    path = tmp_path / HED_FILE
    path.write_bytes(b"\x80\x02" + bytes(torch.randint(0, 256, (300,), generator=g, dtype=torch.uint8).tolist()))
    with pytest.raises(AnnotatorWeightsError, match="damaged") as info:
        load_annotator(path, HEDNet(), HED_FILE)
    assert "needs to run code" not in str(info.value)


def test_pickle_asking_for_code_is_refused_with_what_it_asked(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("never",))

    path = tmp_path / HED_FILE
    torch.save({"w": Payload()}, path)
    with pytest.raises(AnnotatorWeightsError, match=r"needs to run code .*GLOBAL (builtins\.)?print was not an allowed global") as info:
        load_annotator(path, HEDNet(), HED_FILE)
    assert "add_safe_globals" not in str(info.value)


# torch.load's refusals, verbatim, as PyTorch 2.4.1, 2.6.0 and 2.13.0 raised them (tests/fixtures/record_torch_refusals.py
# writes them; 2.4 and 2.6 put a damaged byte's reason on the line of torch's words about weights_only)
REFUSALS = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "torch_refusals.json").read_text())
REASONS = {"operand": "Unsupported operand 172", "magic": "Invalid magic number; corrupt file?"}


@pytest.mark.parametrize(("version", "kind"), [(v, k) for v, msgs in REFUSALS.items() if v != "_about" for k in msgs])
def test_only_the_reason_of_a_refusal_reaches_the_message(tmp_path, monkeypatch, version, kind):
    """Whatever torch words around it, the error names what it found and never passes on its advice."""
    import pickle

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(REFUSALS[version][kind])

    path = tmp_path / HED_FILE
    path.write_bytes(b"\x80\x02}q\x00.")
    monkeypatch.setattr(torch, "load", refuse)
    found = r"needs to run code .*executed \((Unsupported global: )?.*GLOBAL posix\.system"
    if kind != "global":
        found = rf"is a damaged pickle \({re.escape(REASONS[kind])}\); download"
    with pytest.raises(AnnotatorWeightsError, match=found) as info:
        load_annotator(path, HEDNet(), HED_FILE)
    text = str(info.value)
    assert "weights_only" not in text and "add_safe_globals" not in text and "WeightsUnpickler" not in text


def test_plain_python_pickle_annotator_is_refused_as_such(tmp_path):
    import pickle

    path = tmp_path / HED_FILE
    path.write_bytes(pickle.dumps({"w": 1}, protocol=5))
    with pytest.raises(AnnotatorWeightsError, match=r"pickle of protocol 5 .*cannot read; .*refused and nothing in it was executed"):
        load_annotator(path, HEDNet(), HED_FILE)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated; such files still exist
def test_a_torchscript_program_under_an_annotator_name_is_named(tmp_path):
    path = tmp_path / HED_FILE
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(AnnotatorWeightsError, match=r"is a TorchScript program \(torch.jit.save\), not a file of weights"):
        load_annotator(path, HEDNet(), HED_FILE)


def test_cut_off_annotator_files_are_called_damaged_not_unreadable(tmp_path):
    """The zip reader's OSError on a cut-off file got the permissions advice (chmod)."""
    import io

    buf = io.BytesIO()
    torch.save(HEDNet().state_dict(), buf)
    data = buf.getvalue()
    path = tmp_path / HED_FILE
    for cut in range(64, len(data), len(data) // 97):
        path.write_bytes(data[:cut])
        with pytest.raises(AnnotatorWeightsError) as info:
            load_annotator(path, HEDNet(), HED_FILE)
        assert "chmod" not in str(info.value) and "download it again" in str(info.value), cut


def test_unreadable_annotator_file_is_a_typed_error(tmp_path, monkeypatch):
    from affordance.preprocessors import weights

    path = tmp_path / HED_FILE
    torch.save(HEDNet().state_dict(), path)

    def denied(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(weights, "_read", denied)
    with pytest.raises(AnnotatorWeightsError, match=r"cannot read .*ControlNetHED.pth: Permission denied.*chmod"):
        load_annotator(path, HEDNet(), HED_FILE)


def test_annotators_command_tells_official_from_other_files(tmp_path, monkeypatch, caplog):
    torch.manual_seed(0)
    torch.save(HEDNet().state_dict(), tmp_path / HED_FILE)
    torch.save(HEDNet().state_dict(), tmp_path / "sk_model.pth")  # another network under a lineart name
    digest = hashlib.sha256((tmp_path / HED_FILE).read_bytes()).hexdigest()
    assert sha256_of(tmp_path / HED_FILE, chunk=7) == digest
    # pretend the file we made is the official one: the command must then say so
    monkeypatch.setitem(ANNOTATOR_FILES, HED_FILE, dataclasses.replace(ANNOTATOR_FILES[HED_FILE], sha256=digest))
    with caplog.at_level(logging.INFO):
        rc = main(["annotators", str(tmp_path)])
    lines = {r.getMessage().split()[0]: r.getMessage() for r in caplog.records if r.getMessage().strip()}
    assert rc == 1  # sk_model.pth holds HED weights: refused
    assert lines[HED_FILE].endswith(f"sha256 {digest}  loads, official")
    sk = ANNOTATOR_FILES["sk_model.pth"]
    assert (
        "REJECTED" in lines["sk_model.pth"] and f"not the official file (sha256 {sk.sha256})" in lines["sk_model.pth"]
    )
    assert lines["scannet.pt"].split()[1] == "missing"


def test_a_zip_bomb_under_an_annotator_name_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """Deflated records (68 MiB of zeros in a few hundred KB): torch.load would inflate them whole; the zip
    directory's declared sizes refuse the file first."""
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(17 << 20)}, buf)
    path = tmp_path / HED_FILE
    with zipfile.ZipFile(buf) as zin, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        declared = sum(i.file_size for i in zin.infolist())
    size = path.stat().st_size
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: calls.append(f) or real(f, *a, **k))
    with pytest.raises(
        AnnotatorWeightsError,
        match=rf"ControlNetHED.pth is not a usable annotator file: its zip records declare {declared:,} bytes once "
        rf"uncompressed, but the file has {size:,} bytes .*Download the official file",
    ):
        load_annotator(path, HEDNet(), HED_FILE)
    assert calls == []


def test_a_recompressed_annotator_of_plausible_size_still_loads(tmp_path, monkeypatch):
    import zipfile

    from affordance.preprocessors import weights
    from affordance.preprocessors.pidinet import PIDINET_FILE, PiDiNet

    monkeypatch.setattr(weights, "MAX_INFLATED_FLOOR", 0)  # only the ratio counts: weights deflate little
    net = PiDiNet()
    plain, path = tmp_path / "plain.pth", tmp_path / PIDINET_FILE
    torch.save(net.state_dict(), plain)
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    loaded = load_annotator(path, PiDiNet(), PIDINET_FILE)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_the_annotator_inflation_floor_is_64_mib_exactly(tmp_path, extra, refused):
    """As for ControlNets: up to 64 MiB declared is never a bomb; one byte more in a small file is."""
    import zipfile

    from affordance.preprocessors import weights

    bomb = tmp_path / "w.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data/0", bytes((64 << 20) - 4096))
        zf.writestr("archive/data/1", bytes(4096 + extra))
    assert bomb.stat().st_size * weights.MAX_INFLATE_RATIO < 64 << 20  # the floor alone decides
    if refused:
        with pytest.raises(AnnotatorWeightsError, match=f"declare {(64 << 20) + 1:,} bytes once uncompressed"):
            weights._check_inflated_size(bomb)
    else:
        weights._check_inflated_size(bomb)


def test_locate_annotator_direct_then_least_nested_then_by_path(tmp_path):
    """The command line finds files as the nodes do in ComfyUI's folders: directly, else the least nested."""
    name = "ControlNetHED.pth"
    assert locate_annotator(tmp_path, name) == tmp_path / name  # none: where it would go
    deep = tmp_path / "ckpts" / "lllyasviel" / "Annotators"
    deep.mkdir(parents=True)
    (deep / name).write_bytes(b"x")
    assert locate_annotator(tmp_path, name) == deep / name
    for sub in ("b", "a"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_bytes(b"x")
    assert locate_annotator(tmp_path, name) == tmp_path / "a" / name  # as nested as "b": first by path
    (tmp_path / name).mkdir()  # a folder under the name, directly: returned for the caller to refuse
    assert locate_annotator(tmp_path, name) == tmp_path / name
    assert locate_annotator(str(tmp_path / "a"), "netG.pth") == tmp_path / "a" / "netG.pth"


def test_locate_annotator_follows_symlinked_folders_and_ends_on_a_loop(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "netG.pth").write_bytes(b"x")
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / "linked").symlink_to(target, target_is_directory=True)
    (target / "back").symlink_to(folder, target_is_directory=True)  # a loop: annotators/linked/back -> annotators
    assert locate_annotator(folder, "netG.pth") == folder / "linked" / "netG.pth"
    assert locate_annotator(folder, "scannet.pt") == folder / "scannet.pt"


def test_locate_annotator_walks_each_real_folder_once(tmp_path, monkeypatch):
    """Two links back to the top would make 2^depth paths (until the OS's link limit) if each were walked."""
    import os

    folder = tmp_path / "annotators"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "netG.pth").write_bytes(b"x")
    for link in ("up1", "up2"):
        (folder / "sub" / link).symlink_to(folder, target_is_directory=True)
    walked: list[str] = []
    real_walk = os.walk

    def counting_walk(top, *args, **kwargs):
        for entry in real_walk(top, *args, **kwargs):
            walked.append(entry[0])
            assert len(walked) <= 50, f"walked {len(walked)} folders: {walked[-3:]}"
            yield entry

    monkeypatch.setattr(os, "walk", counting_walk)
    assert locate_annotator(folder, "netG.pth") == folder / "sub" / "netG.pth"
    walked.clear()
    assert locate_annotator(folder, "scannet.pt") == folder / "scannet.pt"  # not found: the path it would have
    assert len(walked) <= 4, walked  # the top, sub, and the two links found walked already


def test_a_zip_header_zipfile_cannot_parse_loads_as_torch_reads_it(tmp_path):
    """A 'version needed to extract' that Python's zipfile refuses made its NotImplementedError escape from the
    zip-bomb check; torch's own reader loads such an archive (found by fuzzing)."""
    import struct

    net = HEDNet()
    path = tmp_path / HED_FILE
    torch.save(net.state_dict(), path)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first central-directory entry
    data[entry + 6 : entry + 8] = struct.pack("<H", 0xFFFF)
    path.write_bytes(data)
    loaded = load_annotator(path, HEDNet(), HED_FILE)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))


def test_a_damaged_byte_in_a_protocol_2_annotator_pickle_is_not_called_protocol_4(tmp_path, frame_damaged_zip):
    """One byte damaged into FRAME (0x95, the first opcode of protocol 4+) in a protocol-2 data.pkl."""
    path = tmp_path / HED_FILE
    path.write_bytes(frame_damaged_zip(HEDNet().state_dict()))
    with pytest.raises(AnnotatorWeightsError, match=r"is a damaged pickle \(Unsupported operand 149\)") as info:
        load_annotator(path, HEDNet(), HED_FILE)
    assert "protocol 4" not in str(info.value)


def test_running_out_of_memory_while_unpickling_an_annotator_is_a_typed_error(tmp_path, monkeypatch):
    """A damaged length in a legacy pickle asks torch's unpickler for one ~4 GiB read: MemoryError under an
    address-space limit escaped untyped (found by fuzzing)."""
    from affordance.preprocessors import weights as weights_module

    path = tmp_path / HED_FILE
    torch.save(HEDNet().state_dict(), path, _use_new_zipfile_serialization=False)

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(weights_module.torch, "load", out_of_memory)
    with pytest.raises(AnnotatorWeightsError, match=r"\([\d,]+ bytes\) could not be read: memory ran out"):
        load_annotator(path, HEDNet(), HED_FILE)


def test_an_empty_annotator_file_is_named_empty(tmp_path):
    """A 0-byte file under an official name (an interrupted download) is called empty, not text or damaged."""
    path = tmp_path / HED_FILE
    path.write_bytes(b"")
    with pytest.raises(
        AnnotatorWeightsError,
        match=r"ControlNetHED.pth is empty \(0 bytes\); download it again\. This file is 0 bytes; the official",
    ):
        load_annotator(path, HEDNet(), HED_FILE)


@pytest.mark.parametrize(("obj", "kind"), [([torch.zeros(2), torch.ones(3)], "list"), (torch.zeros(3), "Tensor")])
def test_an_annotator_file_that_is_not_a_mapping_is_named(tmp_path, obj, kind):
    """torch.save of a list of tensors (or one tensor) is refused with what it holds, not an untyped error."""
    path = tmp_path / HED_FILE
    torch.save(obj, path)
    with pytest.raises(AnnotatorWeightsError, match=rf"ControlNetHED.pth holds a {kind}, not a state dict\."):
        load_annotator(path, HEDNet(), HED_FILE)


def test_zip_pickle_protocol_is_none_without_a_readable_data_pkl(tmp_path):
    """No member ending in data.pkl, or a data.pkl zipfile cannot open (an unknown compression method): None;
    a readable one gives its protocol byte."""
    import struct
    import zipfile

    from affordance.preprocessors import weights

    readable = tmp_path / "readable.pth"
    torch.save({"w": torch.zeros(2)}, readable)
    assert weights._zip_pickle_protocol(readable) == 2
    no_pickle = tmp_path / "no_pickle.pth"
    with zipfile.ZipFile(no_pickle, "w") as zf:
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/data/0", bytes(8))
    assert weights._zip_pickle_protocol(no_pickle) is None
    unreadable = tmp_path / "unreadable.pth"
    with zipfile.ZipFile(unreadable, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    data = bytearray(unreadable.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[8:10] = data[central + 10 : central + 12] = struct.pack("<H", 99)  # compression method 99, local and central
    unreadable.write_bytes(data)
    with zipfile.ZipFile(unreadable) as zf:
        assert zf.namelist() == ["archive/data.pkl"]
    assert weights._zip_pickle_protocol(unreadable) is None


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_a_protocol_4_annotator_zip_that_zipfile_cannot_parse_is_still_named_protocol_4(tmp_path):
    """torch reads a zip whose 'version needed to extract' Python's zipfile refuses; its data.pkl's protocol cannot
    be read then, and the FRAME opcode torch stops at is taken as protocol 4 or more, not as a damaged byte."""
    import struct

    path = tmp_path / HED_FILE
    torch.save(HEDNet().state_dict(), path, pickle_protocol=4)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first central-directory entry
    data[entry + 6 : entry + 8] = struct.pack("<H", 0xFFFF)
    path.write_bytes(data)
    with pytest.raises(AnnotatorWeightsError, match=r"is a pickle of protocol 4 or more .*refused") as info:
        load_annotator(path, HEDNet(), HED_FILE)
    assert "damaged" not in str(info.value)


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc/self/mem")
def test_an_io_error_reading_an_annotator_file_is_a_typed_error():
    """A regular file whose read fails (/proc/self/mem at offset 0: EIO) is named with the system's reason, without
    the permissions advice."""
    with pytest.raises(AnnotatorWeightsError, match=r"^cannot read /proc/self/mem: Input/output error\.$"):
        load_annotator(Path("/proc/self/mem"), HEDNet(), HED_FILE)


@pytest.mark.parametrize("attr", ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz"])
def test_fp8_annotator_weights_load_exactly(tmp_path, attr):
    """An annotator saved in fp8 loads, every value as stored (fp8 widens exactly); torch has no min/max of fp8,
    so the NaN check raised a bare NotImplementedError. A NaN in fp8 is still found."""
    if not hasattr(torch, attr):
        pytest.skip(f"this torch has no {attr}")
    dtype = getattr(torch, attr)
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in HEDNet().state_dict().items()}
    path = tmp_path / HED_FILE
    torch.save(sd, path)
    net = load_annotator(path, HEDNet(), HED_FILE)
    for key, value in net.state_dict().items():
        assert torch.equal(value, sd[key].to(value.dtype)), key
    first = next(k for k, v in sd.items() if v.is_floating_point())
    sd[first] = sd[first].float().fill_(float("nan")).to(dtype)
    torch.save(sd, path)
    with pytest.raises(AnnotatorWeightsError, match=rf"has NaN or Inf weights \({re.escape(first)}"):
        load_annotator(path, HEDNet(), HED_FILE)


@pytest.mark.parametrize("attr", ["float8_e8m0fnu", "float4_e2m1fn_x2", "complex64"])
def test_annotator_weights_of_a_scale_packed_or_complex_dtype_are_named(tmp_path, attr):
    """Block scales (e8m0), packed fp4 or complex numbers under a weight's name are refused naming the weight and
    its dtype (a NotImplementedError escaped, or a complex weight lost its imaginary part with only a warning)."""
    if not hasattr(torch, attr):
        pytest.skip(f"this torch has no {attr}")
    sd = HEDNet().state_dict()
    key = next(k for k, v in sd.items() if v.ndim == 1)
    n = sd[key].numel()
    sd[key] = torch.zeros(n, dtype=torch.complex64) if attr == "complex64" else torch.zeros(n, dtype=torch.uint8).view(getattr(torch, attr))
    path = tmp_path / HED_FILE
    torch.save(sd, path)
    with pytest.raises(AnnotatorWeightsError, match=rf"weight {re.escape(repr(key))} is stored as torch.{attr}, which holds no plain weights"):
        load_annotator(path, HEDNet(), HED_FILE)


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_the_annotator_inflation_ratio_is_ten_times_the_file_exactly(tmp_path, monkeypatch, extra, refused):
    """As for ControlNets: above the floor, records may declare up to 10x the file's size; one byte more is a bomb."""
    import zipfile

    from affordance.preprocessors import weights

    monkeypatch.setattr(weights, "MAX_INFLATED_FLOOR", 0)
    bomb = tmp_path / "w.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data/0", bytes(500_000 + extra))
    with zipfile.ZipFile(bomb, "a") as zf:  # an archive comment pads the file to 50,000 bytes
        zf.comment = b"x" * (50_000 - bomb.stat().st_size)
    assert bomb.stat().st_size == 50_000
    if refused:
        with pytest.raises(AnnotatorWeightsError, match="declare 500,001 bytes once uncompressed"):
            weights._check_inflated_size(bomb)
    else:
        weights._check_inflated_size(bomb)

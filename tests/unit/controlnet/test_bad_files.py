"""Every bad file gets a typed error naming the file, what was found and how to fix it; nothing runs."""

from __future__ import annotations

import json
import os
import pathlib
import re
import struct

import pytest
import torch
from safetensors.torch import save_file

from affordance.controlnet import (
    CorruptCheckpointError,
    InvalidWeightsError,
    KeyMismatchError,
    UnknownFormatError,
    UnsafeCheckpointError,
    WrongFamilyError,
    load_controlnet,
)
from affordance.controlnet.checkpoint import read_checkpoint


class _Payload:
    """Pickles to a call that would create a marker file if the pickle were executed."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["evil.pth", "evil.ckpt", "evil.safetensors", "evil.bin"])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    torch.save({"input_blocks.0.0.weight": torch.zeros(1), "payload": _Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="needs to run code to load, so it was refused") as info:
        load_controlnet(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_legacy_pickle_payload_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "old.pth"
    torch.save({"w": torch.zeros(1), "p": _Payload(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError):
        load_controlnet(path)
    assert not marker.exists()


def test_truncated_safetensors(tiny_model, write_checkpoint):
    path = write_checkpoint(tiny_model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match=r"is truncated: tensor '.*' ends at byte \d+ but the file has"):
        load_controlnet(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(struct.pack("<Q", 5000) + b'{"a": {"dtype"')
    with pytest.raises(CorruptCheckpointError, match="truncated safetensors file: its header alone needs 5008 bytes"):
        load_controlnet(path)


def test_damaged_header_json(tmp_path):
    path = tmp_path / "bad.safetensors"
    header = b'{"a": nope}'
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CorruptCheckpointError, match="damaged safetensors header"):
        load_controlnet(path)


def test_header_lies_about_sizes(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path = tmp_path / "lie.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(CorruptCheckpointError, match=r"claims 8 bytes for shape \[4\] of F32 \(16 needed\)"):
        load_controlnet(path)


def _raw_safetensors(path, entries: dict, data: bytes) -> None:
    header = json.dumps(entries).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def test_overlapping_tensors_are_refused(tmp_path):
    """Entries sharing bytes would make a small file be read into many times its size (safetensors refuses them)."""
    path = tmp_path / "alias.safetensors"
    entries = {f"w{i}": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]} for i in range(50)}
    _raw_safetensors(path, entries, bytes(4096))
    with pytest.raises(CorruptCheckpointError, match="overlap in the file"):
        read_checkpoint(path)
    entries = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    _raw_safetensors(path, entries, bytes(24))
    with pytest.raises(CorruptCheckpointError, match="'a' and 'b' overlap"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "shape",
    [[1 << 63, 0], [1 << 33, 1 << 33, 0], [1.5], ["2"], [True], [-1]],
    ids=["2^63", "overflow", "float", "string", "bool", "negative"],
)
def test_impossible_shapes_are_named(tmp_path, shape):
    """Dimensions must be whole numbers torch can hold: they raised raw TypeError/RuntimeError, or were rounded."""
    path = tmp_path / "shape.safetensors"
    _raw_safetensors(path, {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}, b"")
    with pytest.raises(CorruptCheckpointError, match="entry 'w' of the safetensors header is malformed"):
        read_checkpoint(path)


@pytest.mark.parametrize("container", ["pth", "ckpt"])
def test_truncated_pickle(tiny_model, write_checkpoint, container):
    path = write_checkpoint(tiny_model, container=container)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptCheckpointError, match="truncated or damaged"):
        load_controlnet(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1445157120\n", "Git LFS pointer"),
        (b"<!DOCTYPE html><html><head><title>Hugging Face</title>", "HTML page"),
        (b"these are not the weights you are looking for\n", "text beginning 'these are not the weights"),
        # line breaks and tabs early in the file are text too (a page saved on Windows, a table)
        (b"<!DOCTYPE html>\r\n<html><head><title>Hugging Face</title>", "HTML page"),
        (b"not found\n\nThe model you asked for is gone.", "text beginning 'not found"),
        (b"name\tsize\tsha256\nmodel.bin\t1445157120\tabc\n", "text beginning 'name"),
    ],
)
def test_text_file_renamed_safetensors(tmp_path, content, message):
    path = tmp_path / "control_v11p_sd15_canny.safetensors"
    path.write_bytes(content)
    with pytest.raises(CorruptCheckpointError, match=message) as info:
        load_controlnet(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("seed", range(12))
def test_damaged_pickle_is_called_damaged_not_unsafe(tmp_path, seed):
    """torch words every weights-only failure alike ("Unsupported operand" too): only a request for code is unsafe."""
    g = torch.Generator().manual_seed(seed)
    path = tmp_path / "damaged.pth"
    path.write_bytes(b"\x80\x02" + bytes(torch.randint(0, 256, (200,), generator=g, dtype=torch.uint8).tolist()))
    with pytest.raises(CorruptCheckpointError, match="is a damaged pickle|truncated or damaged") as info:
        load_controlnet(path)
    assert "weights_only" not in str(info.value)  # never torch's advice to load it unsafely


# torch.load's refusals, verbatim, as PyTorch 2.4.1, 2.6.0 and 2.13.0 raised them (tests/fixtures/record_torch_refusals.py
# writes them; 2.4 and 2.6 put a damaged byte's reason on the line of torch's words about weights_only)
REFUSALS = json.loads((pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "torch_refusals.json").read_text())
REASONS = {"operand": "Unsupported operand 172", "magic": "Invalid magic number; corrupt file?"}


@pytest.mark.parametrize(
    ("version", "kind"), [(v, k) for v, msgs in REFUSALS.items() if v != "_about" for k in msgs]
)
def test_only_the_reason_of_a_refusal_reaches_the_message(tmp_path, monkeypatch, version, kind):
    """Whatever torch words around it, the error names what it found and never passes on its advice."""
    import pickle

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(REFUSALS[version][kind])

    path = tmp_path / "control.pth"
    path.write_bytes(b"\x80\x02}q\x00.")
    monkeypatch.setattr(torch, "load", refuse)
    if kind == "global":
        with pytest.raises(UnsafeCheckpointError, match=r"executed \((Unsupported global: )?.*GLOBAL posix\.system") as info:
            load_controlnet(path)
    else:
        with pytest.raises(CorruptCheckpointError, match=rf"is a damaged pickle \({re.escape(REASONS[kind])}\)\. D") as info:
            load_controlnet(path)
    text = str(info.value)
    assert "weights_only" not in text and "add_safe_globals" not in text and "WeightsUnpickler" not in text


def test_unsafe_message_names_what_the_pickle_asked_for(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "p": _Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"executed \(.*GLOBAL [\w.]+ was not an allowed global by default\.\)") as info:
        load_controlnet(path)
    assert "weights_only` set to `False`" not in str(info.value) and "add_safe_globals" not in str(info.value)


@pytest.mark.parametrize("protocol", [4, 5])
def test_plain_python_pickle_is_refused_as_such(tmp_path, protocol):
    """pickle.dump (protocol 4/5), not torch.save: torch's safe loader cannot parse it and said 'damaged'."""
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with path.open("wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f, protocol=protocol)
    with pytest.raises(UnsafeCheckpointError, match=rf"pickle of protocol {protocol} .*refused and nothing in it"):
        load_controlnet(path)
    assert not marker.exists()


@pytest.mark.parametrize("zipped", [True, False])
def test_torch_save_with_a_new_pickle_protocol_is_not_called_damaged(tiny_model, tmp_path, zipped):
    """torch.save(pickle_protocol=4) is a whole file that torch's safe loader cannot parse (FRAME opcode)."""
    path = tmp_path / "p4.pth"
    torch.save(tiny_model.state_dict(), path, pickle_protocol=4, _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafeCheckpointError, match="pickle of protocol 4.*torch.save with pickle_protocol") as info:
        load_controlnet(path)
    assert "Download it again" not in str(info.value)


def test_legacy_pth_cut_anywhere_is_a_typed_error(tiny_model, tmp_path):
    """Cut-off legacy (non-zip) files raised raw struct.error / AssertionError from the unpickler."""
    import io

    buf = io.BytesIO()
    torch.save(dict(list(tiny_model.state_dict().items())[:6]), buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    path = tmp_path / "cut.pth"
    for cut in range(1, len(data), max(1, len(data) // 400)):
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptCheckpointError):
            read_checkpoint(path)


def test_unreadable_file_is_a_typed_error(tiny_model, write_checkpoint, monkeypatch):
    """A file the server may not read (permissions) is named, with the fix; simulated, as root reads anything."""
    from affordance.controlnet import checkpoint
    from affordance.controlnet.errors import UnreadableCheckpointError

    path = write_checkpoint(tiny_model)

    def denied(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(checkpoint, "sniff_container", denied)
    with pytest.raises(UnreadableCheckpointError, match=r"cannot read .*cn.safetensors: Permission denied. .*chmod"):
        load_controlnet(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(bytes(range(7, 255)) * 4)
    with pytest.raises(CorruptCheckpointError, match="neither a safetensors file nor a PyTorch checkpoint"):
        load_controlnet(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.touch()
    with pytest.raises(CorruptCheckpointError, match=r"is empty \(0 bytes\)"):
        load_controlnet(path)


@pytest.mark.parametrize("container", ["safetensors", "pth"])
def test_empty_state_dict(tmp_path, container):
    path = tmp_path / f"empty.{container}"
    if container == "safetensors":
        save_file({}, path)
    else:
        torch.save({"epoch": 1}, path)
    with pytest.raises(CorruptCheckpointError, match="holds no tensors"):
        load_controlnet(path)


@pytest.mark.parametrize(
    ("obj", "kind"), [([torch.zeros(2)], "list"), (5, "int"), (torch.zeros(3), "Tensor"), ("a state dict", "str")]
)
def test_not_a_mapping(tmp_path, obj, kind):
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(UnknownFormatError, match=f"holds a {kind}, not a state dict"):
        load_controlnet(path)


def test_training_wrappers_are_unwrapped_three_deep_with_what_lies_beside_them_named(tmp_path):
    """``state_dict`` inside ``state_dict`` up to three levels (what lies beside each level is skipped, by name);
    a fourth level is not searched: its tensors keep the prefix, as a format check then names them."""
    obj: object = {"w": torch.zeros(2)}
    for level in range(4):
        obj = {"state_dict": obj, f"epoch{level}": 1}
        path = tmp_path / f"wrapped{level}.ckpt"
        torch.save(obj, path)
        raw = read_checkpoint(path)
        if level < 3:
            assert sorted(raw.tensors) == ["w"]
            assert raw.skipped == sorted(f"epoch{i}" for i in range(level + 1))
        else:
            assert sorted(raw.tensors) == ["state_dict.w"]


def test_side_by_side_state_dicts_skip_only_what_holds_no_tensors(tmp_path):
    """An IP-Adapter-style file: its two state dicts are read (as ``part.key``); only ``epoch`` is skipped."""
    path = tmp_path / "ip.bin"
    torch.save({"image_proj": {"proj.weight": torch.zeros(2)}, "ip_adapter": {"1.to_k.weight": torch.ones(2)}, "epoch": 1}, path)
    raw = read_checkpoint(path)
    assert sorted(raw.tensors) == ["image_proj.proj.weight", "ip_adapter.1.to_k.weight"]
    assert raw.skipped == ["epoch"]


def test_fetch_takes_any_iterable_of_names(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"a": torch.ones(2), "b": torch.arange(3.0)}, str(path))
    fetched = read_checkpoint(path).fetch(k for k in ("a", "b"))  # a generator: consumed once, both read
    assert sorted(fetched) == ["a", "b"] and torch.equal(fetched["b"], torch.arange(3.0))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ControlNet file at"):
        load_controlnet(tmp_path / "nope.safetensors")


def test_folder_without_weights(tmp_path):
    with pytest.raises(UnknownFormatError, match="folder without a diffusers weights file"):
        load_controlnet(tmp_path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_weights(tiny_model, tmp_path, value):
    sd = dict(tiny_model.state_dict())
    sd["middle_block_out.0.bias"] = sd["middle_block_out.0.bias"].clone()
    sd["middle_block_out.0.bias"][3] = value
    save_file(sd, tmp_path / "nan.safetensors")
    with pytest.raises(
        InvalidWeightsError, match=r"1 weight tensor\(s\) hold NaN or Inf values \(middle_block_out.0.bias\)"
    ):
        load_controlnet(tmp_path / "nan.safetensors")


def test_integer_weights(tiny_model, tmp_path):
    sd = dict(tiny_model.state_dict())
    sd["middle_block_out.0.bias"] = sd["middle_block_out.0.bias"].to(torch.int8)
    save_file(sd, tmp_path / "int.safetensors")
    with pytest.raises(InvalidWeightsError, match="'middle_block_out.0.bias' is stored as torch.int8"):
        load_controlnet(tmp_path / "int.safetensors")


def test_missing_key_named(tiny_model, tmp_path):
    sd = dict(tiny_model.state_dict())
    del sd["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"]
    save_file(sd, tmp_path / "m.safetensors")
    with pytest.raises(KeyMismatchError, match=r"1 missing: input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"):
        load_controlnet(tmp_path / "m.safetensors")


def test_unexpected_key_named(tiny_model, tmp_path):
    sd = {**tiny_model.state_dict(), "middle_block.9.weight": torch.zeros(3)}
    save_file(sd, tmp_path / "u.safetensors")
    with pytest.raises(KeyMismatchError, match=r"1 unexpected: middle_block.9.weight"):
        load_controlnet(tmp_path / "u.safetensors")


def test_wrong_shape_named(tiny_model, tmp_path):
    sd = dict(tiny_model.state_dict())
    sd["middle_block_out.0.bias"] = torch.zeros(7)
    save_file(sd, tmp_path / "s.safetensors")
    with pytest.raises(KeyMismatchError, match=r"middle_block_out.0.bias \(7,\) \(expected \(64,\)\)"):
        load_controlnet(tmp_path / "s.safetensors")


def test_architecture_key_missing(tiny_model, tmp_path):
    sd = dict(tiny_model.state_dict())
    del sd["input_hint_block.0.weight"]
    sd["zero_convs.0.0.weight"] = sd["zero_convs.0.0.weight"]
    save_file({**sd, "input_hint_block.0.weight": torch.zeros(16, 3, 3, 3)}, tmp_path / "ok.safetensors")
    del sd["input_blocks.0.0.weight"]
    save_file({**sd, "input_hint_block.0.weight": torch.zeros(16, 3, 3, 3)}, tmp_path / "k.safetensors")
    with pytest.raises(KeyMismatchError, match=r"k.safetensors: .*key 'input_blocks.0.0.weight' is missing.*download it again"):
        load_controlnet(tmp_path / "k.safetensors")


@pytest.mark.parametrize(
    ("key", "shape"),
    [("input_blocks.0.0.weight", (0, 4, 3, 3)), ("input_blocks.0.0.weight", (32, 0, 3, 3)), ("input_hint_block.0.weight", (16, 0, 3, 3))],
)
def test_zero_width_layer_is_a_typed_error(tiny_model, tmp_path, key, shape):
    """A layer of width 0 divided by zero while reading the architecture, or built a model with 0 latent or hint
    channels that failed only inside the sampler."""
    sd = dict(tiny_model.state_dict())
    sd[key] = torch.zeros(shape)
    save_file(sd, tmp_path / "z.safetensors")
    with pytest.raises(KeyMismatchError, match=rf"have no elements, e\.g\. '{key}' of shape .*The file is damaged"):
        load_controlnet(tmp_path / "z.safetensors")


@pytest.mark.parametrize(
    ("keys", "family"),
    [
        ({"adapter.body.0.resnets.0.block1.weight": (8, 8, 3, 3)}, "T2I-Adapter"),
        ({"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": (4, 8)}, "LoRA"),
        ({"controlnet_blocks.0.weight": (8, 8), "pos_embed_input.proj.weight": (8, 16, 2, 2)}, "SD3"),
        ({"controlnet_blocks.0.weight": (8, 8), "controlnet_x_embedder.weight": (8, 64)}, "Flux"),
        # families that used to be named as another one (with advice that did not apply) or not named at all;
        # the keys are those of the real layouts
        (
            {
                "controlnet_blocks.0.weight": (8, 8),
                "controlnet_x_embedder.weight": (8, 64),
                "transformer_blocks.0.img_mlp.net.0.proj.weight": (8, 8),
            },
            "Qwen-Image ControlNet",
        ),
        (
            {"task_embedding": (4, 8), "spatial_feat_mapping.0.1.weight": (8, 8), "transformer_layes.0.ln_1.weight": (8,)},
            "CoAdapter fuser",
        ),
        (
            {"task_embedding": (4, 8), "controlnet_cond_embedding.conv_in.weight": (8, 3, 3, 3)},
            "union ControlNet",
        ),
        ({"brushnet_down_blocks.0.weight": (8, 8, 1, 1), "down_blocks.0.resnets.0.conv1.weight": (8, 8, 3, 3)}, "BrushNet"),
        ({"lllite_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.down.0.weight": (8, 8)}, "ControlNet-LLLite"),
        (
            {
                "controlnet_cond_embedding.conv_in.weight": (8, 3, 3, 3),
                "down_blocks.0.motion_modules.0.proj_in.weight": (8, 8),
            },
            "SparseCtrl",
        ),
        ({"down_blocks.0.motion_modules.0.proj_in.weight": (8, 8)}, "AnimateDiff motion module"),
        (
            {"controlnet_cond_embedding.conv_in.weight": (8, 3, 3, 3), "down_blocks.0.base_to_ctrl.0.weight": (8, 8, 1, 1)},
            "ControlNet-XS",
        ),
        (
            {"controlnet_cond_embedding.conv_in.weight": (8, 3, 3, 3), "encoder_hid_proj.weight": (8, 16)},
            "Kolors ControlNet",
        ),
        (
            {"controlnet_blocks.0.weight": (8, 8), "input_block.weight": (8, 8), "text_embedding_padding": (8, 8)},
            "HunyuanDiT ControlNet",
        ),
        ({"style_embedding": (1, 8, 8), "ln_pre.weight": (8,)}, "T2I style adapter"),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
                "first_stage_model.decoder.conv_in.weight": (8, 4, 3, 3),
            },
            "whole Stable Diffusion checkpoint without ControlNet",
        ),
    ],
)
def test_other_family_file(tmp_path, keys, family):
    path = tmp_path / "control_v11p_sd15_canny.safetensors"  # a misleading name: the keys decide
    save_file({k: torch.zeros(s) for k, s in keys.items()}, path)
    with pytest.raises(WrongFamilyError, match=family):
        load_controlnet(path)


def test_controlnet_under_an_unknown_prefix_is_named(tiny_model, tmp_path):
    """It was called 'a whole SD checkpoint without ControlNet weights' and sent to Load Checkpoint."""
    save_file({"model.diffusion_model." + k: v for k, v in tiny_model.state_dict().items()}, tmp_path / "p.safetensors")
    with pytest.raises(
        UnknownFormatError, match=r"ControlNet weights in the original layout, but under the key prefix 'model.diffusion_model.'"
    ):
        load_controlnet(tmp_path / "p.safetensors")


def test_ip_adapter_bin_is_named_not_called_corrupt(tmp_path):
    # IP-Adapter .bin files hold two state dicts side by side; they used to be reported as an empty, corrupt file.
    path = tmp_path / "ip-adapter_sd15.bin"
    torch.save(
        {
            "image_proj": {"proj.weight": torch.zeros(3072, 1024), "norm.weight": torch.ones(768)},
            "ip_adapter": {"1.to_k_ip.weight": torch.zeros(320, 768), "1.to_v_ip.weight": torch.zeros(320, 768)},
        },
        path,
    )
    with pytest.raises(WrongFamilyError, match=r"ip-adapter_sd15.bin is an IP-Adapter .*models/ipadapter"):
        load_controlnet(path)


def test_side_by_side_dicts_without_tensors_still_called_empty(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"a": {"note": "x"}, "b": {"step": 3}}, path)
    with pytest.raises(CorruptCheckpointError, match="holds no tensors .*other entries: a, b"):
        load_controlnet(path)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            {"__metadata__": "oops", "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
            "__metadata__ is a str",
        ),
        ({"__metadata__": [1], "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, "__metadata__ is a list"),
        ({"w": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}}, "header is malformed"),
    ],
)
def test_malformed_safetensors_header_entries(tmp_path, header, message):
    raw = json.dumps(header).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(16))
    with pytest.raises(CorruptCheckpointError, match=message):
        load_controlnet(path)


def test_deeply_nested_header_is_a_typed_error(tmp_path):
    raw = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(CorruptCheckpointError, match="damaged safetensors header"):
        load_controlnet(path)


def test_pth_cut_anywhere_is_a_typed_error(tiny_model, write_checkpoint):
    """A zip checkpoint cut at any point (the zip reader raises OSError for early cuts) is reported as damaged."""
    path = write_checkpoint(tiny_model, container="pth")
    data = path.read_bytes()
    for cut in sorted({64, 512, 4096, 20_000, 70_000, len(data) // 2, len(data) - 10} - {len(data)}):
        path.write_bytes(data[:cut])
        with pytest.raises(CorruptCheckpointError, match="truncated or damaged"):
            load_controlnet(path)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_weights_load_exactly(tiny_model, tmp_path, dtype):
    sd = {k: v.to(dtype) for k, v in tiny_model.state_dict().items()}
    save_file(sd, tmp_path / "fp8.safetensors")
    model, report = load_controlnet(tmp_path / "fp8.safetensors")
    assert report.stored_dtypes == {str(dtype).removeprefix("torch."): len(sd)}
    for key, value in model.state_dict().items():  # every fp8 value is an fp16 value: nothing rounded
        assert value.dtype == torch.float16 and torch.equal(value, sd[key].to(torch.float16)), key
    assert report.storage_dtype == dtype


def test_storage_dtype_counts_elements_not_tensors(tiny_model, tmp_path):
    """Biases and norms kept in fp32 beside fp8 weights: most tensors are fp32, most parameters fp8. The file's
    dtype (what a host keeps the weights in, as ComfyUI's ``weight_dtype``) is the one of most parameters."""
    sd = {k: v if v.ndim == 1 else v.to(torch.float8_e4m3fn) for k, v in tiny_model.state_dict().items()}
    save_file(sd, tmp_path / "mixed.safetensors")
    _, report = load_controlnet(tmp_path / "mixed.safetensors")
    counts = report.stored_dtypes
    assert counts["float32"] > counts["float8_e4m3fn"]  # by tensors fp32 would win
    assert report.stored_elements == {
        "float32": sum(v.numel() for v in sd.values() if v.ndim == 1),
        "float8_e4m3fn": sum(v.numel() for v in sd.values() if v.ndim > 1),
    }
    assert report.storage_dtype == torch.float8_e4m3fn


def test_huge_integer_in_header_is_a_typed_error(tmp_path):
    """An integer of more than 4300 digits: json.loads raises a bare ValueError (Python's int-string limit)."""
    raw = b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}'
    path = tmp_path / "bigint.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    with pytest.raises(CorruptCheckpointError, match="bigint.safetensors has a damaged safetensors header"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "config",
    [
        '{"_class_name": "ControlNetModel", "a": ' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError
        '{"_class_name": "ControlNetModel", "a": ' + "9" * 5000 + "}",  # ValueError: more than 4300 digits
    ],
    ids=["deep", "huge-int"],
)
@pytest.mark.parametrize("given", ["folder", "weights"])
def test_config_json_too_deep_or_with_a_huge_integer_is_a_typed_error(tmp_path, config, given):
    folder = tmp_path / "cn"
    folder.mkdir()
    save_file({"w": torch.zeros(1)}, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(config, encoding="utf-8")
    target = folder if given == "folder" else folder / "diffusion_pytorch_model.safetensors"
    with pytest.raises(CorruptCheckpointError, match=r"cn/config.json is not valid JSON .*Restore the folder's config.json"):
        read_checkpoint(target)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_fifo_is_named_not_called_empty_and_never_read(tiny_model, write_checkpoint, tmp_path):
    """D9: a FIFO was called "empty (0 bytes): the download or copy did not finish" (its st_size); opening it
    for reading would block. It is named before anything is opened (the test keeps both ends open, so a
    regression fails here instead of hanging)."""
    from affordance.controlnet import UnreadableCheckpointError, convert_file
    from affordance.controlnet.inspection import inspect_file

    fifo = tmp_path / "cn.safetensors"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        for read in (read_checkpoint, load_controlnet, inspect_file):
            with pytest.raises(UnreadableCheckpointError, match=r"cn.safetensors is not a regular file \(a FIFO") as info:
                read(fifo)
            assert "empty" not in str(info.value)
        (tmp_path / "out.safetensors").write_bytes(b"x")
        with pytest.raises(UnreadableCheckpointError, match="is not a regular file"):  # before the destination
            convert_file(fifo, tmp_path / "out.safetensors", to="original")
    finally:
        os.close(fd)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_device_is_named_not_called_empty():
    from affordance.controlnet import UnreadableCheckpointError

    with pytest.raises(UnreadableCheckpointError, match=r"/dev/zero is not a regular file \(a character device\)"):
        load_controlnet("/dev/zero")


def test_symlink_loop_is_named_not_called_missing(tiny_model, write_checkpoint, tmp_path):
    """D9: Path.exists() hides ELOOP, so a link loop was "no ControlNet file at ..."."""
    from affordance.controlnet import UnreadableCheckpointError, convert_file

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    try:
        a.symlink_to(b)
        b.symlink_to(a)
    except OSError:
        pytest.skip("no symbolic links here")
    with pytest.raises(UnreadableCheckpointError, match="a.safetensors is a symbolic link loop") as info:
        load_controlnet(a)
    assert "no ControlNet file" not in str(info.value)
    with pytest.raises(UnreadableCheckpointError, match="symbolic link loop"):
        convert_file(a, tmp_path / "out.safetensors", to="original")
    (tmp_path / "dangling.pth").symlink_to(tmp_path / "nowhere.pth")
    with pytest.raises(FileNotFoundError, match="no ControlNet file at"):  # a dangling link is still missing
        load_controlnet(tmp_path / "dangling.pth")


def test_fifo_in_a_diffusers_folder_is_named(tmp_path):
    """A FIFO under the folder's weights name was skipped and the folder called 'without a diffusers weights file';
    a FIFO config.json was skipped silently."""
    from affordance.controlnet import UnreadableCheckpointError

    folder = tmp_path / "cn"
    folder.mkdir()
    os.mkfifo(folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(UnreadableCheckpointError, match=r"diffusion_pytorch_model.safetensors is not a regular file"):
        read_checkpoint(folder)


def test_a_damaged_byte_in_a_protocol_2_pickle_is_not_called_protocol_4(tiny_model, tmp_path, frame_damaged_zip):
    """The file's own header says protocol 2: the FRAME opcode inside it is damage, not a newer protocol."""
    path = tmp_path / "frame.pth"
    path.write_bytes(frame_damaged_zip(tiny_model.state_dict()))
    with pytest.raises(CorruptCheckpointError, match=r"is a damaged pickle \(Unsupported operand 149\)") as info:
        read_checkpoint(path)
    assert "protocol 4" not in str(info.value)


def test_running_out_of_memory_while_unpickling_is_a_typed_error(tiny_model, tmp_path, monkeypatch):
    """A damaged length in a legacy pickle makes torch's unpickler ask for one read of ~4 GiB: under an
    address-space limit (ulimit -v, no overcommit) that is a MemoryError, which escaped untyped (found by fuzzing)."""
    from affordance.controlnet import UnreadableCheckpointError
    from affordance.controlnet import checkpoint as checkpoint_module

    path = tmp_path / "legacy.pth"
    torch.save(tiny_model.state_dict(), path, _use_new_zipfile_serialization=False)

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(checkpoint_module.torch, "load", out_of_memory)
    with pytest.raises(UnreadableCheckpointError, match=r"legacy.pth \([\d,]+ bytes\) could not be read: memory ran out"):
        read_checkpoint(path)


def _typed_safetensors(path: pathlib.Path, entries: dict[str, tuple[str, torch.Tensor]]) -> None:
    """A safetensors file written byte by byte: ``key -> (dtype name, tensor)``, whatever names this safetensors
    knows (tensors are stored as their raw bytes; a little-endian host)."""
    header, blobs, offset = {}, [], 0
    for key, (name, tensor) in entries.items():
        raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
        header[key] = {"dtype": name, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    _raw_safetensors(path, header, b"".join(blobs))


@pytest.mark.parametrize(("name", "attr"), [("F8_E4M3FNUZ", "float8_e4m3fnuz"), ("F8_E5M2FNUZ", "float8_e5m2fnuz")])
def test_amd_fp8_safetensors_weights_load_exactly(tiny_model, tmp_path, name, attr):
    """fp8 in AMD's forms (FNUZ, as ROCm tools write them) loads as every other fp8 file: widened to fp16,
    nothing rounded (they were called a malformed header)."""
    if not hasattr(torch, attr):
        pytest.skip(f"this torch has no {attr}")
    dtype = getattr(torch, attr)
    sd = {k: v.to(dtype) for k, v in tiny_model.state_dict().items()}
    path = tmp_path / "fnuz.safetensors"
    _typed_safetensors(path, {k: (name, v) for k, v in sd.items()})
    model, report = load_controlnet(path)
    assert report.storage_dtype == dtype
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float16 and torch.equal(value, sd[key].to(torch.float16)), key


@pytest.mark.parametrize("name", ["F8_E8M0", "F4", "F6_E2M3", "C64", "U16"])
def test_a_safetensors_data_type_of_no_weights_is_named_not_called_damaged(tiny_model, tmp_path, name):
    """A valid safetensors file holding a data type no ControlNet weight has (the block scales or packed 4/6-bit
    values of quantized formats, unsigned or complex numbers) is named as such, not as a malformed header."""
    sd = {k: ("F32", v) for k, v in tiny_model.state_dict().items()}
    sd["input_blocks.1.0.out_layers.3.bias"] = (name, torch.zeros(32, dtype=torch.uint8))
    path = tmp_path / "quant.safetensors"
    _typed_safetensors(path, sd)
    with pytest.raises(
        InvalidWeightsError,
        match=rf"tensor 'input_blocks.1.0.out_layers.3.bias' is stored as {name}, a data type Affordance does not read",
    ):
        load_controlnet(path)


@pytest.mark.parametrize("attr", ["float8_e8m0fnu", "float4_e2m1fn_x2"])
def test_weights_of_a_scale_or_packed_dtype_are_refused_by_name(tiny_model, tmp_path, attr, caplog):
    """A .pth weight in torch's block-scale (e8m0) or packed fp4 dtype is floating point to torch but no plain
    weight: a typed InvalidWeightsError naming it (the NaN check raised a bare NotImplementedError), and the
    convert command says it and exits 2 instead of printing a traceback."""
    if not hasattr(torch, attr):
        pytest.skip(f"this torch has no {attr}")
    from affordance.controlnet import convert

    sd = dict(tiny_model.state_dict())
    sd["input_blocks.1.0.out_layers.3.bias"] = torch.zeros(32, dtype=torch.uint8).view(getattr(torch, attr))
    path = tmp_path / "scales.pth"
    torch.save(sd, path)
    with pytest.raises(
        InvalidWeightsError,
        match=rf"'input_blocks.1.0.out_layers.3.bias' is stored as torch.{attr}, a format that holds no plain weights",
    ):
        load_controlnet(path)
    assert convert.main([str(path), str(tmp_path / "out.safetensors"), "--to", "original"]) == 2
    assert f"error: {path}: ControlNet weight 'input_blocks.1.0.out_layers.3.bias' is stored as torch.{attr}" in caplog.text
    assert not (tmp_path / "out.safetensors").exists()

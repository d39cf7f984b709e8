"""Loading every layout, container and dtype; the loaded model computes what the source model computes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from affordance.controlnet import Family, Layout, build_controlnet, load_controlnet, read_controlnet
from affordance.controlnet.checkpoint import lazy_zip_reads, read_checkpoint
from affordance.controlnet.config import ControlNetConfig
from affordance.controlnet.convert import diffusers_config
from affordance.controlnet.errors import ConfigError, CorruptCheckpointError, KeyMismatchError
from affordance.controlnet.loader import extract_controlnet

LAYOUTS = [
    ("original", Layout.ORIGINAL),
    ("prefixed", Layout.ORIGINAL_PREFIXED),
    ("merged", Layout.ORIGINAL_MERGED),
    ("diffusers", Layout.DIFFUSERS),
    ("diffusers-folder", Layout.DIFFUSERS),
]


def _same_residuals(a, b, inputs, atol=0.0):
    x, hint, t, ctx, y = inputs(a.config)
    with torch.no_grad():
        ra, rb = a(x, hint, t, ctx, y), b(x, hint, t, ctx, y)
    for u, v in zip(ra.as_list(), rb.as_list()):
        torch.testing.assert_close(u.float(), v.float(), atol=atol, rtol=0 if atol == 0 else 1e-3)


COMBOS = [
    (layout, expected, container)
    for layout, expected in LAYOUTS
    for container in ("safetensors", "pth", "ckpt", "bin")
    if layout != "diffusers-folder" or container in ("safetensors", "bin")  # what a diffusers folder holds
]


@pytest.mark.parametrize(("layout", "expected", "container"), COMBOS)
def test_every_layout_and_container(tiny_model, write_checkpoint, inputs, layout, expected, container):
    path = write_checkpoint(tiny_model, layout, container)
    model, report = load_controlnet(path)
    assert report.layout is expected
    assert report.family is Family.SD1
    assert report.container == ("safetensors" if container == "safetensors" else "torch-zip")
    assert report.num_keys == len(tiny_model.state_dict())
    assert report.dropped_keys == (4 if layout == "merged" else 0)
    if container == "ckpt" and layout != "diffusers-folder":
        assert report.skipped_entries == ("epoch", "global_step")
    assert model.config == tiny_model.config
    # ready for inference: no parameter asks autograd to record the sampler's forwards
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    _same_residuals(model, tiny_model, inputs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("container", ["safetensors", "pth"])
def test_half_precision_files(tiny_model, write_checkpoint, inputs, dtype, container):
    path = write_checkpoint(tiny_model, "original", container, dtype=dtype)
    model, report = load_controlnet(path)
    assert model.dtype == dtype
    assert report.stored_dtypes == {str(dtype).removeprefix("torch."): report.num_keys}
    upcast, _ = load_controlnet(path, dtype=torch.float32)
    assert upcast.dtype == torch.float32
    ref = build_controlnet(read_controlnet(path), dtype=torch.float32)
    _same_residuals(upcast, ref, inputs)
    _same_residuals(upcast, tiny_model, inputs, atol=0.05)


def test_mixed_file_keeps_the_dtype_of_most_elements(tiny_model, tmp_path, inputs):
    """fp32 weights with fp16 biases and norms (more tensors, few elements) is an fp32 file: counting tensors
    made an fp16 model and rounded every weight (ComfyUI's weight_dtype also counts elements)."""
    sd = {k: (v.half() if v.ndim == 1 else v) for k, v in tiny_model.state_dict().items()}
    assert sum(v.dtype == torch.float16 for v in sd.values()) > len(sd) / 2
    path = tmp_path / "mixed.safetensors"
    save_file(sd, str(path))
    model, report = load_controlnet(path)
    assert model.dtype == torch.float32 and report.storage_dtype == torch.float32
    big = max(sd, key=lambda k: sd[k].numel())
    assert torch.equal(model.state_dict()[big], sd[big])  # the fp32 weights are kept exactly


def test_sdxl_family(tiny_xl_model, write_checkpoint, inputs):
    for layout in ("original", "diffusers", "diffusers-folder"):
        model, report = load_controlnet(write_checkpoint(tiny_xl_model, layout, name=layout))
        assert report.family is Family.SDXL
        assert model.config == tiny_xl_model.config
        _same_residuals(model, tiny_xl_model, inputs)


@pytest.mark.parametrize("container", ["safetensors", "pth", "pth-mapped"])
def test_loaded_model_does_not_depend_on_its_file(tiny_model, write_checkpoint, inputs, container, monkeypatch):
    """A loaded model owns its weights: a model viewing a memory-mapped file changed silently when the file was
    replaced (in place, same size) and crashed the process (SIGBUS) at the next forward when it was truncated.
    ``pth-mapped``: a torch before 2.11, where zip checkpoints are still mapped (and the model copies them)."""
    if container == "pth-mapped":
        from affordance.controlnet import checkpoint

        monkeypatch.setattr(checkpoint, "lazy_zip_reads", lambda: False)
    path = write_checkpoint(tiny_model, "original", container.removesuffix("-mapped"))
    weights = read_controlnet(path)
    assert weights.report.mapped is (container == "pth-mapped" or (container == "pth" and not lazy_zip_reads()))
    model = build_controlnet(weights)
    key = "input_blocks.0.0.weight"
    if weights.report.mapped:
        assert model.state_dict()[key].data_ptr() != weights.state_dict[key].data_ptr()
    expected = model.state_dict()[key].clone()
    del weights
    data = path.read_bytes()
    with path.open("r+b") as f:  # overwrite in place: same inode, as `cp new old` does
        f.write(bytes(len(data)))
    assert torch.equal(model.state_dict()[key], expected)
    with path.open("r+b") as f:
        f.truncate(16)
    x, hint, t, ctx, y = inputs(model.config)
    assert torch.isfinite(model(x, hint, t, ctx, y).as_list()[0]).all()
    # and writing a parameter never touches the file
    path.write_bytes(data)
    with torch.no_grad():
        model.input_blocks[0][0].weight.add_(1.0)
    assert path.read_bytes() == data


# torch < 2.11 maps zip checkpoints: a truncation while they load can still crash the process (README)
LAZY_PTH = pytest.param("pth", marks=pytest.mark.skipif(not lazy_zip_reads(), reason="torch < 2.11 maps .pth files"))


@pytest.mark.parametrize("container", ["safetensors", LAZY_PTH])
@pytest.mark.parametrize("change", ["truncate", "replace_in_place", "replace_by_rename", "delete"])
def test_a_file_changed_while_loading_is_an_error_not_a_crash(tiny_model, write_checkpoint, change, container):
    """Between reading the header (a zip checkpoint's pickle) and reading the tensors (a download overwriting
    the file), nothing is mapped: the change is noticed and named (a memory-mapped file cut short killed the
    process with SIGBUS)."""
    path = write_checkpoint(tiny_model, "original", container)
    raw = read_checkpoint(path)
    assert all(t.device.type == "meta" for t in raw.tensors.values())  # nothing read yet
    data = path.read_bytes()
    if change == "truncate":
        with path.open("r+b") as f:
            f.truncate(len(data) // 2)
    elif change == "replace_in_place":
        stamp = path.stat().st_mtime_ns
        with path.open("r+b") as f:
            f.write(bytes(len(data)))
        # a rewrite within one tick of a coarse file-system clock keeps the times (file_identity says so):
        # a download takes longer than that, so the test makes the time move as it would
        os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    elif change == "delete":
        path.unlink()
    else:
        other = path.with_name("other" + path.suffix)
        other.write_bytes(data)
        os.replace(other, path)
    with pytest.raises(CorruptCheckpointError, match="changed while it was being read"):
        extract_controlnet(raw)
    path.write_bytes(data)
    assert extract_controlnet(read_checkpoint(path)).config == tiny_model.config


@pytest.mark.parametrize("container", ["safetensors", LAZY_PTH])
def test_only_the_controlnet_tensors_of_a_merged_file_are_read(tiny_model, tmp_path, monkeypatch, container):
    """A 1.0-style file with a whole SD model beside the ControlNet: only the ControlNet's bytes are read
    (for a zip checkpoint, besides its pickle and directory)."""
    sd = {"control_model." + k: v for k, v in tiny_model.state_dict().items()}
    sd["model.diffusion_model.big.weight"] = torch.zeros(1 << 20)  # 4 MiB that must never be read
    path = tmp_path / f"merged.{container}"
    if container == "pth":
        torch.save(sd, path)
    else:
        save_file(sd, path)
    read, other = [], []  # bytes read into tensors, and by read() (headers, a pickle, a zip directory)
    real_open = Path.open

    class Counting:  # the file object, counting the bytes read into tensors
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def readinto(self, b):
            n = self.f.readinto(b)
            read.append(n)
            return n

        def read(self, *a):
            data = self.f.read(*a)
            other.append(len(data))
            return data

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: Counting(real_open(self, *a, **k)))
    weights = extract_controlnet(read_checkpoint(path))
    control_bytes = sum(t.numel() * t.element_size() for t in tiny_model.state_dict().values())
    assert weights.report.dropped_keys == 1
    if container == "safetensors":
        assert sum(read) == control_bytes
    else:  # torch reads the pickle (and we the zip directory) with readinto too
        assert control_bytes <= sum(read) < control_bytes + (1 << 18)
    assert sum(other) < 1 << 18  # far less than the 4 MiB left alone
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(weights.state_dict[k], v)


def test_global_average_pooling_is_explicit(tiny_model, write_checkpoint):
    path = write_checkpoint(tiny_model, "original")
    assert not load_controlnet(path)[0].config.global_average_pooling
    assert load_controlnet(path, global_average_pooling=True)[0].config.global_average_pooling


def test_global_pool_from_diffusers_config(tiny_model, write_checkpoint):
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["global_pool_conditions"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    assert load_controlnet(folder)[0].config.global_average_pooling


def test_device_argument(tiny_model, write_checkpoint):
    model, _ = load_controlnet(write_checkpoint(tiny_model), device="meta")
    assert model.time_embed[0].weight.device.type == "meta"


def test_weights_file_inside_diffusers_folder_uses_its_config(tiny_model, write_checkpoint):
    """ComfyUI lists 'folder/diffusion_pytorch_model.safetensors'; the folder's config.json still applies."""
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["global_pool_conditions"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    model, report = load_controlnet(folder / "diffusion_pytorch_model.safetensors")
    assert model.config.global_average_pooling and report.layout is Layout.DIFFUSERS


def test_unrelated_config_json_is_ignored(tiny_model, write_checkpoint):
    path = write_checkpoint(tiny_model)
    (path.parent / "config.json").write_text("not json at all")
    assert load_controlnet(path)[1].family is Family.SD1


def _shuffle_config_beside(model, folder):
    import json

    cfg = diffusers_config(model.config)
    cfg["global_pool_conditions"] = True
    (folder / "config.json").write_text(json.dumps(cfg))


def test_stray_config_json_beside_other_weights_is_never_applied(tiny_model, tiny_xl_model, write_checkpoint):
    """A diffusers shuffle config.json left in models/controlnet must not change the other models there."""
    sd15 = write_checkpoint(tiny_model, "diffusers", name="sd15_canny")
    xl = write_checkpoint(tiny_xl_model, "diffusers", name="xl_canny")
    original = write_checkpoint(tiny_model, "original", name="v11_canny")
    _shuffle_config_beside(tiny_model, sd15.parent)  # matches the SD1.5 file's architecture, even
    for path in (sd15, xl, original):
        assert not load_controlnet(path)[0].config.global_average_pooling, path.name


def test_damaged_config_json_beside_diffusers_weights_is_reported(tiny_model, write_checkpoint):
    """Selecting the weights file of a diffusers folder whose config.json is broken used to load silently
    (a shuffle model then lost its pooling)."""
    folder = write_checkpoint(tiny_model, "diffusers-folder")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match=r"config.json is not valid JSON .*Restore the folder's config.json"):
        load_controlnet(folder / "diffusion_pytorch_model.safetensors")


def test_folder_config_json_must_describe_its_weights(tiny_model, tiny_xl_model, write_checkpoint):
    import json

    folder = write_checkpoint(tiny_xl_model, "diffusers-folder")
    (folder / "config.json").write_text(json.dumps(diffusers_config(tiny_model.config)))  # another model's
    with pytest.raises(
        CorruptCheckpointError, match=r"config.json does not describe these weights: block_out_channels"
    ):
        load_controlnet(folder)


def test_another_models_config_json_beside_a_chosen_weights_file_is_ignored(
    tiny_model, tiny_xl_model, write_checkpoint, caplog
):
    """A weights file chosen by itself, beside a config.json of another model (e.g. copied into the same folder):
    the config is said to be ignored and none of its settings apply (here: its pooling and BGR order, which
    would have changed the hint); the weights alone decide. Chosen as a folder, the same config is an error."""
    import json

    folder = write_checkpoint(tiny_xl_model, "diffusers-folder")
    other = diffusers_config(tiny_model.config)
    other.update(global_pool_conditions=True, controlnet_conditioning_channel_order="bgr")
    (folder / "config.json").write_text(json.dumps(other))
    with caplog.at_level("WARNING", logger="affordance.controlnet.loader"):
        model, _ = load_controlnet(folder / "diffusion_pytorch_model.safetensors")
    assert model.config == tiny_xl_model.config
    assert not model.config.global_average_pooling
    assert "ignoring the config.json beside it, which describes another model (block_out_channels" in caplog.text
    with pytest.raises(CorruptCheckpointError, match="does not describe these weights"):
        load_controlnet(folder)


@pytest.mark.parametrize("order", ["bgr", "BGR"])
def test_config_json_asking_for_bgr_hints_is_refused(tiny_model, write_checkpoint, order):
    """A diffusers model trained on BGR hints (controlnet_conditioning_channel_order) would get RGB hints and
    steer wrongly without a word: refused, naming the setting. "rgb" (the default) loads."""
    import json

    from affordance.controlnet.errors import UnknownFormatError

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["controlnet_conditioning_channel_order"] = order
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnknownFormatError, match=r"asks for BGR hints \(controlnet_conditioning_channel_order='bgr'\)"):
        load_controlnet(folder)
    cfg["controlnet_conditioning_channel_order"] = "rgb"
    (folder / "config.json").write_text(json.dumps(cfg))
    assert load_controlnet(folder)[0].config == tiny_model.config


def test_lone_middle_resblock_round_trips_and_its_config_json_is_checked(tiny_config, write_checkpoint):
    """A middle block of one ResBlock (diffusers' UNetMidBlock2D) loads from every layout, bit-identical."""
    import dataclasses
    import json

    from affordance.controlnet.model import ControlNet

    model = ControlNet(dataclasses.replace(tiny_config, transformer_depth_middle=0, middle_resblocks=1))
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.normal_(0.0, 0.05, generator=g)
    assert len(model.middle_block) == 1
    for layout in ("original", "diffusers", "diffusers-folder"):
        loaded, _ = load_controlnet(write_checkpoint(model, layout, name=f"lone_{layout.replace('-', '_')}"))
        assert loaded.config == model.config, layout
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    folder = write_checkpoint(model, "diffusers-folder", name="lone_cfg")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["mid_block_type"] == "UNetMidBlock2D"
    cfg["mid_block_type"] = "UNetMidBlock2DCrossAttn"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptCheckpointError, match="mid_block_type 'UNetMidBlock2DCrossAttn' .*'UNetMidBlock2D'"):
        load_controlnet(folder)


@pytest.mark.parametrize(
    ("key", "value", "wrong"),
    [
        ("mid_block_type", "UNetMidBlock2D", "mid_block_type 'UNetMidBlock2D' (the weights have 'UNetMidBlock2DCrossAttn')"),
        ("layers_per_block", 2, "layers_per_block 2 (the weights have 1)"),
        ("conditioning_channels", 1, "conditioning_channels 1 (the weights have 3)"),
        ("in_channels", 9, "in_channels 9 (the weights have 4)"),
        ("cross_attention_dim", 1024, "cross_attention_dim 1024 (the weights have 768)"),
    ],
)
def test_config_json_contradicting_its_weights_is_named(tiny_model, write_checkpoint, key, value, wrong):
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptCheckpointError, match=re.escape(f"does not describe these weights: {wrong}")):
        load_controlnet(folder)


@pytest.mark.parametrize(
    "edit",
    [
        {"conditioning_channels": None, "in_channels": None, "mid_block_type": None},  # diffusers' defaults fit
        {"attention_head_dim": None},  # no head setting: the weights' family decides (8 heads for SD1)
        {"attention_head_dim": [8, 8]},  # the same count at every level: a fixed count
        {"attention_head_dim": 8},
        {"attention_head_dim": [4, 8], "num_attention_heads": None},  # 8 channels per head at widths 32, 64
    ],
)
def test_config_json_settings_that_fit_the_weights_load(tiny_model, write_checkpoint, edit):
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    for key, value in edit.items():  # None: the key removed
        if value is None:
            del cfg[key]
        else:
            cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    loaded, _ = load_controlnet(folder)
    if edit.get("attention_head_dim") == [4, 8]:
        assert (loaded.config.num_heads, loaded.config.num_head_channels) == (-1, 8)
    else:
        assert loaded.config == tiny_model.config


def test_the_load_report_cannot_be_changed(tiny_model, write_checkpoint):
    import dataclasses

    _, report = load_controlnet(write_checkpoint(tiny_model, "original"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.skipped_entries = ()


@pytest.mark.parametrize("heads", [[None, 8], [0, 8], [[8], [8]], "8", 8.0, True, -1, {"a": 1}])
def test_bad_head_counts_in_config_json_are_typed_errors(tiny_model, write_checkpoint, heads):
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["attention_head_dim"] = heads
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptCheckpointError, match=r"config.json's attention_head_dim is .*not a positive whole"):
        load_controlnet(folder)


def test_bad_num_attention_heads_is_named_as_such(tiny_model, write_checkpoint):
    """diffusers reads num_attention_heads before attention_head_dim: the error names the key whose value is bad."""
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_attention_heads"] = [8, -1]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptCheckpointError, match=r"config.json's num_attention_heads is \[8, -1\], not a positive"):
        load_controlnet(folder)
    cfg["num_attention_heads"] = None  # unset: attention_head_dim is read, as diffusers does
    (folder / "config.json").write_text(json.dumps(cfg))
    loaded, _ = load_controlnet(folder)
    assert loaded.config == tiny_model.config


def test_more_heads_than_channels_in_config_json_is_a_typed_error(tiny_model, write_checkpoint):
    """Head counts above the widths made a head width of 0: a ZeroDivisionError deep in the model (found by fuzzing)."""
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["attention_head_dim"] = [w * 10 for w in cfg["block_out_channels"]]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptCheckpointError, match=r"config.json's attention_head_dim \[.*\] asks for more heads than"):
        load_controlnet(folder)


@pytest.mark.parametrize("field", ["num_heads", "num_head_channels"])
@pytest.mark.parametrize("value", [0, -2])
def test_head_settings_must_be_positive_or_minus_one(field, value):
    other = "num_head_channels" if field == "num_heads" else "num_heads"
    with pytest.raises(ConfigError, match=rf"{field} must be a positive whole number, or -1 to use the other; got {value}"):
        ControlNetConfig(**{field: value, other: -1})


def test_global_pool_needs_a_true_boolean(tiny_model, write_checkpoint):
    import json

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["global_pool_conditions"] = "false"
    (folder / "config.json").write_text(json.dumps(cfg))
    assert not load_controlnet(folder)[0].config.global_average_pooling


@pytest.mark.parametrize("key", ["input_hint_block.0.weight", "input_blocks.1.0.out_layers.3.weight"])
def test_misshapen_architecture_keys_are_typed_errors(tiny_model, tmp_path, key):
    sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    sd[key] = torch.zeros(sd[key].shape[0])
    save_file(sd, tmp_path / "bad.safetensors")
    with pytest.raises(KeyMismatchError, match=rf"{key} should have 4 dimensions, got shape"):
        load_controlnet(tmp_path / "bad.safetensors")


def test_release_hands_converted_weights_over(tiny_model, write_checkpoint, inputs):
    """With release=True a conversion drops each source tensor as it goes (never both copies of every weight)."""
    path = write_checkpoint(tiny_model, "original", "safetensors")
    kept = read_controlnet(path)
    n = len(kept.state_dict)
    reference = build_controlnet(kept, dtype=torch.float64)
    assert len(kept.state_dict) == n  # not released: the caller's weights stay whole
    handed = read_controlnet(path)
    model = build_controlnet(handed, dtype=torch.float64, release=True)
    assert handed.state_dict == {}  # every tensor was converted, so every source went
    same = read_controlnet(path)
    build_controlnet(same, release=True)  # no conversion: the model took the tensors themselves
    assert len(same.state_dict) == n
    x, hint, t, ctx, y = (v.double() if v is not None and v.is_floating_point() else v for v in inputs(model.config))
    for a, b in zip(model(x, hint, t, ctx, y).as_list(), reference(x, hint, t, ctx, y).as_list()):
        assert torch.equal(a, b)


def test_a_safetensors_file_with_wrong_keys_is_refused_before_any_tensor_is_read(tiny_model, tmp_path):
    """Keys and shapes are checked on the header alone: a file that cannot be a ControlNet costs no read."""
    sd = dict(tiny_model.state_dict())
    del sd["middle_block_out.0.bias"]
    path = tmp_path / "missing_key.safetensors"
    save_file(sd, path)
    raw = read_checkpoint(path)

    def no_reads(keys):
        raise AssertionError(f"read {len(list(keys))} tensors before the keys were checked")

    raw.fetch = no_reads
    with pytest.raises(KeyMismatchError, match="middle_block_out.0.bias"):
        extract_controlnet(raw)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_a_half_precision_file_with_fp32_norms_is_a_half_precision_file(tiny_model, tmp_path, half):
    """The storage dtype is the one holding most elements (what ComfyUI's unet_dtype gets): a half file that keeps
    its biases and norms in fp32 is a half file, kept in half, not widened to fp32 (twice the memory)."""
    sd = {k: (v.float() if v.ndim == 1 else v.to(half)) for k, v in tiny_model.state_dict().items()}
    path = tmp_path / "mixed.safetensors"
    save_file(sd, str(path))
    model, report = load_controlnet(path)
    assert report.storage_dtype == half and model.dtype == half
    assert {p.dtype for p in model.parameters()} == {half}  # the norms too: one dtype for the whole network


def test_misshapen_weights_in_a_diffusers_folder_with_its_config_json_are_a_typed_error(tiny_model, write_checkpoint):
    """config.json is compared with the weights only when the weights make a network; misshapen ones are then
    reported by the weights' own check, not as a crash while comparing."""
    from safetensors.torch import load_file

    from affordance.controlnet.errors import CheckpointError
    from affordance.controlnet.keymap import original_to_diffusers

    folder = write_checkpoint(tiny_model, "diffusers-folder")
    (key,) = original_to_diffusers({"input_hint_block.0.weight": None}).keys()
    path = folder / "diffusion_pytorch_model.safetensors"
    sd = load_file(path)
    sd[key] = torch.zeros(sd[key].shape[0])
    save_file(sd, path)
    with pytest.raises(CheckpointError, match="should have 4 dimensions"):
        load_controlnet(folder)


def test_a_one_level_diffusers_folder_with_a_listed_head_count_loads(write_checkpoint):
    """A head count listed once per level, for one level, is that fixed count."""
    import json

    from affordance.controlnet import ControlNet
    from affordance.controlnet.loader import _heads_from_diffusers_config

    assert _heads_from_diffusers_config({"attention_head_dim": [8], "block_out_channels": [32]}, "x") == {"num_heads": 8}
    one = ControlNetConfig(
        model_channels=32, channel_mult=(1,), num_res_blocks=(1,), transformer_depth=(1,),
        transformer_depth_middle=1, context_dim=768, num_heads=8,
    )  # fmt: skip
    folder = write_checkpoint(ControlNet(one), "diffusers-folder")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["attention_head_dim"] = [8]
    (folder / "config.json").write_text(json.dumps(cfg))
    assert load_controlnet(folder)[0].config.num_heads == 8

"""Damaged ControlNet files, by the hundred: every read ends loaded or with a typed error, never another exception.

A seeded, small version of the mutation fuzzing that found untyped escapes (a ZeroDivisionError from a
config.json, MemoryError, NotImplementedError from zipfile); each case names its damage when it fails.
"""

from __future__ import annotations

import json

import pytest
import torch

from affordance.controlnet import load_controlnet
from affordance.controlnet.errors import ControlNetError


def _escaped(cases, write, load) -> list[str]:
    """Each case (``what``, ``data``) written by ``write(data)`` and read by ``load()``: the exceptions that were
    not the typed ControlNetError, each named with its case."""
    escaped = []
    for what, data in cases:
        write(data)
        try:
            load()
        except ControlNetError:
            pass
        except Exception as exc:  # noqa: BLE001 - what this test looks for
            escaped.append(f"{what}: {type(exc).__name__}: {str(exc)[:120]}")
    return escaped


@pytest.mark.parametrize("container", ["safetensors", "pth", "legacy-pth", "ckpt"])
def test_damaged_files_give_typed_errors(tiny_model, tmp_path, write_checkpoint, damaged_copies, container):
    if container == "legacy-pth":
        source = tmp_path / "legacy.pth"
        torch.save(tiny_model.state_dict(), source, _use_new_zipfile_serialization=False)
    else:
        source = write_checkpoint(tiny_model, "prefixed" if container == "ckpt" else "original", container)
    data = source.read_bytes()
    seed = sum(map(ord, container))
    path = tmp_path / f"damaged{source.suffix}"
    assert _escaped(damaged_copies(data, seed, 120), path.write_bytes, lambda: load_controlnet(path)) == []


def _changed_configs(config: dict):
    """Every config.json variant with one value replaced by a number, list, text or null that may not fit."""
    for key, value in sorted(config.items()):
        choices: list = [0, -1, 10**9, 2.5, "8", None, [], True]
        if isinstance(value, int) and not isinstance(value, bool):  # also as per-level lists of other lengths
            choices += [value * 10, value + 1, *([value * 10 * (i + 1) for i in range(k)] for k in range(1, 5))]
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            choices += [[v * 10 for v in value], value[:-1], [*value, value[-1]], [0] * len(value)]
        for new in choices:
            yield f"{key}: {value!r} -> {new!r}", {**config, key: new}


def test_changed_config_json_gives_typed_errors(tiny_model, write_checkpoint):
    folder = write_checkpoint(tiny_model, "diffusers-folder")
    path = folder / "config.json"
    config = json.loads(path.read_text())
    cases = ((what, json.dumps(changed)) for what, changed in _changed_configs(config))
    assert _escaped(cases, path.write_text, lambda: load_controlnet(folder)) == []

"""Damaged annotator files, by the hundred: every load ends loaded or with AnnotatorWeightsError, nothing else.

A seeded, small version of the mutation fuzzing that found untyped escapes (NotImplementedError from zipfile's
check of a zip header, MemoryError); each case names its damage when it fails.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from affordance.preprocessors.weights import AnnotatorWeightsError, load_annotator

NAME = "table5_pidinet.pth"


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.Conv2d(8, 1, 1))


@pytest.mark.parametrize("container", ["safetensors", "zip", "wrapped-zip", "legacy"])
def test_damaged_annotator_files_give_typed_errors(tmp_path, damaged_copies, container):
    sd = _net().state_dict()
    source = tmp_path / "source"
    if container == "safetensors":
        save_file(sd, source)
    elif container == "legacy":
        torch.save(sd, source, _use_new_zipfile_serialization=False)
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}} if container == "wrapped-zip" else sd, source)
    path = tmp_path / NAME
    escaped = []
    for what, data in damaged_copies(source.read_bytes(), sum(map(ord, container)), 120):
        path.write_bytes(data)
        try:
            load_annotator(path, _net(), NAME)
        except AnnotatorWeightsError:
            pass
        except Exception as exc:  # noqa: BLE001 - what this test looks for
            escaped.append(f"{what}: {type(exc).__name__}: {str(exc)[:120]}")
    assert escaped == []

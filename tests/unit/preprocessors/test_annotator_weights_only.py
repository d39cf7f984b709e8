"""Annotator pickles are read with weights_only=True passed explicitly, whatever torch's default."""

from __future__ import annotations

import pytest
import torch

from affordance.preprocessors.hed import HED_FILE, HEDNet
from affordance.preprocessors.weights import AnnotatorWeightsError, load_annotator

# Round 10 (mutant 008): the annotator loader passes weights_only=True itself, never relying on torch's default.
#
# torch>=2.4 is supported, and torch 2.4/2.5 default to weights_only=False; on 2.6+ the environment variable
# TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns the default off too (it applies only where the caller passed nothing).
# Either way a file that asks for code would run it while being "loaded".
RAN = []


def _record(x):
    RAN.append(x)
    return x


class Payload:
    def __reduce__(self):
        return (_record, ("code ran",))


def test_a_pickle_asking_for_code_is_refused_even_where_torch_defaults_to_full_pickles(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = tmp_path / HED_FILE
    torch.save({"w": Payload()}, path)
    RAN.clear()
    with pytest.raises(AnnotatorWeightsError, match="needs to run code"):
        load_annotator(path, HEDNet(), HED_FILE)
    assert RAN == []


def test_torch_load_is_told_weights_only(tmp_path, monkeypatch):
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    path = tmp_path / HED_FILE
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(AnnotatorWeightsError):  # wrong keys for HED, but it was read
        load_annotator(path, HEDNet(), HED_FILE)
    assert seen and all(v is True for v in seen)

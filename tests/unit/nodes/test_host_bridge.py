"""What the nodes take from ComfyUI through ``nodes/_host.py``: its free-memory figure and its progress bar.

The other memory tests replace the nodes' ``free_memory`` itself and the unit tests run outside ComfyUI, where the
progress bar is a no-op; these check that ComfyUI's own figure and bar are the ones used when ComfyUI is there.
"""

from __future__ import annotations

import sys
from types import ModuleType

import pytest
import torch

from affordance.nodes._host import Progress, free_memory
from affordance.preprocessors import ParameterError


def test_free_memory_is_comfyuis_figure_for_the_device(stub_comfy, monkeypatch):
    asked = []
    monkeypatch.setattr(sys.modules["comfy.model_management"], "get_free_memory", lambda device=None: asked.append(device) or 300 << 20)
    assert free_memory(torch.device("cpu")) == 300 << 20
    assert asked == [torch.device("cpu")]


def test_a_node_refuses_what_comfyuis_free_memory_cannot_hold(stub_comfy, monkeypatch):
    from affordance.nodes import preprocess

    monkeypatch.setattr(sys.modules["comfy.model_management"], "get_free_memory", lambda device=None: 300 << 20)
    with pytest.raises(ParameterError, match=r"300 MiB is free on cpu"):
        preprocess.HintResize().process(torch.zeros(1, 4096, 4096, 3), "just_resize", 512, 512)


def test_outside_comfyui_there_is_no_figure_and_no_bar():
    assert free_memory(torch.device("cpu")) is None
    Progress(3).update(1)  # nothing to drive, nothing raised


def test_progress_drives_comfyuis_bar(monkeypatch):
    made = []

    class ProgressBar:
        def __init__(self, total: int) -> None:
            self.total, self.steps = total, []
            made.append(self)

        def update(self, n: int) -> None:
            self.steps.append(n)

    utils = ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar  # type: ignore[attr-defined]
    comfy = ModuleType("comfy")
    comfy.utils = utils  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    bar = Progress(5)
    bar.update(2)
    bar.update()
    assert [(b.total, b.steps) for b in made] == [(5, [2, 1])]

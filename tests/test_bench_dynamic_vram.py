"""bench/_dynamic_vram.py: ComfyUI's dynamic VRAM switched on as its main.py does, with stand-ins for ComfyUI's
modules and comfy-aimdo (neither is installed here, and dynamic VRAM needs an NVIDIA GPU): each reason it stays
off, the calls it makes when it goes on, and what it changes in ComfyUI."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from types import ModuleType, SimpleNamespace

import pytest
import torch

DV = importlib.import_module("affordance.bench._dynamic_vram")
CUDA = torch.device("cuda", 0)  # only its type is read: no GPU is touched


class ModelPatcher:
    pass


class ModelPatcherDynamic(ModelPatcher):
    pass


class FakeAimdo:
    """comfy_aimdo.control: records the calls; ``init`` and ``init_devices`` answer as the test sets (``init_answer``
    may be an exception to raise; ``signature`` the comfy-aimdo version whose ``init`` keywords are taken;
    ``indices_only``: ``init_devices`` refuses (index, headroom) pairs, as 0.4.9 does)."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []
        self.init_answer: object = True
        self.ready, self.indices_only, self.signature = True, False, "0.4.13"

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        allowed = {"0.4.13": {"simple_vram_headroom", "nvml_pressure"}, "0.4.10": {"simple_vram_headroom"}, "0.4.9": set()}
        if set(kwargs) - allowed[self.signature]:
            raise TypeError("init() got an unexpected keyword argument")
        if isinstance(self.init_answer, Exception):
            raise self.init_answer
        return self.init_answer

    def init_devices(self, devices):
        devices = list(devices)
        self.calls.append(("init_devices", devices))
        if self.indices_only and any(isinstance(d, tuple) for d in devices):
            raise TypeError("device ids must be integers")
        return self.ready


@pytest.fixture()
def comfy(monkeypatch):
    """A ComfyUI 0.12+ on one NVIDIA GPU with PyTorch 2.8, and comfy-aimdo 0.4.13 that starts."""
    patchers = ModuleType("comfy.model_patcher")
    patchers.ModelPatcher = ModelPatcher
    patchers.ModelPatcherDynamic = ModelPatcherDynamic
    patchers.CoreModelPatcher = ModelPatcher
    memory = ModuleType("comfy.memory_management")
    memory.aimdo_enabled = False
    mm = SimpleNamespace(
        is_nvidia=lambda: True,
        torch_version_numeric=(2, 8),
        get_all_torch_devices=lambda: [torch.device("cuda", 0), torch.device("cuda", 1)],
    )
    package = ModuleType("comfy")
    package.model_management = mm
    aimdo = FakeAimdo()
    aimdo_package, control = ModuleType("comfy_aimdo"), ModuleType("comfy_aimdo.control")
    control.init, control.init_devices = aimdo.init, aimdo.init_devices
    for name, module in (
        ("comfy", package),
        ("comfy.model_patcher", patchers),
        ("comfy.memory_management", memory),
        ("comfy_aimdo", aimdo_package),
        ("comfy_aimdo.control", control),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "0.4.13" if name == "comfy-aimdo" else real_version(name)
    )
    return SimpleNamespace(package=package, patchers=patchers, memory=memory, mm=mm, aimdo=aimdo, control=control)


def test_goes_on_as_comfyuis_main_py_does(comfy):
    on, line = DV.enable(comfy.package, CUDA)
    assert on and line.startswith("on (comfy-aimdo 0.4.13)") and "ModelPatcherDynamic" in line
    # main.py's defaults: NVML pressure on, no headroom; every GPU registered with no extra headroom
    assert comfy.aimdo.calls == [
        ("init", {"simple_vram_headroom": None, "nvml_pressure": True}),
        ("init_devices", [(0, 0), (1, 0)]),
    ]
    assert comfy.patchers.CoreModelPatcher is ModelPatcherDynamic and comfy.memory.aimdo_enabled is True
    assert DV.core_patcher() is ModelPatcherDynamic  # what the bench then wraps models in


@pytest.mark.parametrize("signature", ["0.4.10", "0.4.9"])
def test_older_comfy_aimdo_signatures_are_followed(comfy, signature):
    comfy.aimdo.signature, comfy.aimdo.indices_only = signature, signature == "0.4.9"
    on, _ = DV.enable(comfy.package, CUDA)
    assert on and comfy.patchers.CoreModelPatcher is ModelPatcherDynamic
    inits = [kwargs for call, kwargs in comfy.aimdo.calls if call == "init"]
    assert inits[-1] == ({"simple_vram_headroom": None} if signature == "0.4.10" else {})
    assert [d for call, d in comfy.aimdo.calls if call == "init_devices"][-1] == ([0, 1] if signature == "0.4.9" else [(0, 0), (1, 0)])


def _stays_off(comfy, line: str, *needles: str) -> None:
    assert all(n in line for n in needles), line
    assert line.startswith("off")
    assert comfy.patchers.CoreModelPatcher is ModelPatcher and comfy.memory.aimdo_enabled is False


def test_off_when_asked(comfy):
    on, line = DV.enable(comfy.package, CUDA, "off")
    assert not on and not comfy.aimdo.calls
    _stays_off(comfy, line, "--comfy-dynamic-vram off")


def test_off_where_comfyui_keeps_its_classic_patcher(comfy):
    on, line = DV.enable(comfy.package, torch.device("cpu"))
    assert not on
    _stays_off(comfy, line, "CPU")
    comfy.mm.is_nvidia = lambda: False
    _stays_off(comfy, DV.enable(comfy.package, CUDA)[1], "NVIDIA")
    comfy.mm.is_amd, comfy.mm.rocm_version = (lambda: True), (7, 14)  # ComfyUI's main.py turns it on there too
    assert DV.enable(comfy.package, CUDA)[0]
    comfy.patchers.CoreModelPatcher, comfy.memory.aimdo_enabled = ModelPatcher, False
    comfy.mm.rocm_version = (7, 13)
    _stays_off(comfy, DV.enable(comfy.package, CUDA)[1], "ROCm 7.14")
    comfy.mm.is_nvidia, comfy.mm.torch_version_numeric = (lambda: True), (2, 7)
    _stays_off(comfy, DV.enable(comfy.package, CUDA)[1], "PyTorch 2.8")
    comfy.mm.torch_version_numeric = (2, 8)
    del comfy.patchers.ModelPatcherDynamic  # a ComfyUI before 0.12
    _stays_off(comfy, DV.enable(comfy.package, CUDA)[1], "predates dynamic VRAM")
    assert len(comfy.aimdo.calls) == 2  # init and init_devices of the AMD one that went on; none since


@pytest.mark.parametrize(
    "setup, needle",
    [
        (lambda c, mp: mp.setitem(sys.modules, "comfy_aimdo.control", None), "not importable"),  # not installed
        (lambda c, mp: setattr(c.aimdo, "init_answer", False), "could not load its library"),
        (lambda c, mp: setattr(c.aimdo, "init_answer", OSError("libcuda.so.1: cannot open")), "libcuda.so.1"),
        (lambda c, mp: setattr(c.aimdo, "ready", False), "found no working GPU"),
    ],
    ids=["missing", "no library", "fails to start", "no device"],
)
def test_off_when_comfy_aimdo_does_not_start(comfy, monkeypatch, setup, needle):
    setup(comfy, monkeypatch)
    on, line = DV.enable(comfy.package, CUDA)
    assert not on
    _stays_off(comfy, line, needle)


def test_a_mode_it_does_not_know_is_refused(comfy):
    with pytest.raises(ValueError, match="auto, off; got 'on'"):
        DV.enable(comfy.package, CUDA, "on")


def test_core_patcher_before_comfyui_0_12(comfy):
    del comfy.patchers.CoreModelPatcher
    assert DV.core_patcher() is ModelPatcher


def test_device_memory_is_not_read_on_the_cpu():
    assert DV.device_used_mib(torch.device("cpu")) is None

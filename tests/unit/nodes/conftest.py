"""A small fake host: SD's discrete EPS sampling and a model object, enough to drive our control object
exactly as ComfyUI's sampler does (pre_run, get_control per model call, cleanup)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from affordance.controlnet import ControlNet, ControlNetConfig
from affordance.nodes.control import AffordanceControl

TINY = ControlNetConfig(
    model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), transformer_depth=(1, 0), context_dim=768
)
TINY_XL = ControlNetConfig(
    model_channels=64,
    channel_mult=(1, 2),
    num_res_blocks=(1, 1),
    transformer_depth=(0, 1),
    transformer_depth_middle=1,
    context_dim=2048,
    use_linear_in_transformer=True,
    num_heads=-1,
    num_head_channels=64,
    adm_in_channels=2816,
)


class FakeSampling:
    """Discrete EPS sampling with SD's scaled-linear betas (1000 steps)."""

    def __init__(self) -> None:
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        alphas = torch.cumprod(1 - betas, 0)
        self.sigmas = ((1 - alphas) / alphas).sqrt().float()
        self.log_sigmas = self.sigmas.log()

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        t = timestep.float().clamp(0, 999)
        lo, hi = t.floor().long(), t.ceil().long()
        w = t.frac()
        return ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]).exp()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        dists = sigma.log()[:, None] - self.log_sigmas[None]
        return dists.abs().argmin(dim=1).view(sigma.shape).float()

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x / (sigma.view(-1, 1, 1, 1) ** 2 + 1.0) ** 0.5

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)))


def make_model(context_dim: int = 768) -> SimpleNamespace:
    return SimpleNamespace(
        model_sampling=FakeSampling(), model_config=SimpleNamespace(unet_config={"context_dim": context_dim})
    )


def randomized(config: ControlNetConfig, seed: int = 0) -> ControlNet:
    net = ControlNet(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(net.named_parameters()):
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval().requires_grad_(False)


@pytest.fixture
def control() -> AffordanceControl:
    return AffordanceControl(randomized(TINY), None, name="tiny.safetensors")


@pytest.fixture
def xl_control() -> AffordanceControl:
    return AffordanceControl(randomized(TINY_XL, 1), None, name="tiny_xl.safetensors")


@pytest.fixture
def fake_model():
    return make_model


@pytest.fixture
def call():
    """Drive ``get_control`` like ComfyUI: latent batch ``n`` per chunk, chunks in ``order`` (0 cond, 1 uncond)."""

    def run(
        ctrl, sigma: float, n: int = 1, order=(1, 0), h: int = 8, w: int = 8, seed: int = 3, y_dim=None, ctx_dim=768,
        extra_cond=None,
    ):
        g = torch.Generator().manual_seed(seed)
        chunks = len(order)
        x = torch.randn(n * chunks, 4, h, w, generator=g)
        t = torch.full((n * chunks,), sigma)
        ctx_dim = ctrl.network.config.context_dim if hasattr(ctrl, "network") else ctx_dim
        cond = {"c_crossattn": torch.randn(n * chunks, 5, ctx_dim, generator=g)}
        if y_dim:
            cond["y"] = torch.randn(n * chunks, y_dim, generator=g)
        cond.update(extra_cond or {})
        opts = {"cond_or_uncond": list(order)}
        return ctrl.get_control(x, t, cond, chunks, opts), (x, t, cond)

    return run


@pytest.fixture
def image():
    def make(b: int = 1, h: int = 64, w: int = 64, c: int = 3, seed: int = 5) -> torch.Tensor:
        return torch.rand(b, h, w, c, generator=torch.Generator().manual_seed(seed))

    return make


def sigma_at(percent: float) -> float:
    return FakeSampling().percent_to_sigma(percent)


@pytest.fixture
def sigma():
    return sigma_at


def assert_close_lists(a, b, atol=1e-6):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        if u is None or v is None:
            assert u is v
        else:
            torch.testing.assert_close(u, v, atol=atol, rtol=0)


@pytest.fixture
def close_lists():
    return assert_close_lists




@pytest.fixture(autouse=True)
def outside_comfyui(monkeypatch):
    """Every node unit test runs outside ComfyUI, also in one pytest run with the comfy tests, which put a real
    checkout on ``sys.path`` (None in ``sys.modules`` makes an import fail as it does without ComfyUI);
    ``stub_comfy`` then puts its stand-in in place."""
    for name in ["comfy", "folder_paths", *(n for n in sys.modules if n.startswith("comfy."))]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def stub_comfy(monkeypatch, tmp_path):
    """Just enough of ComfyUI for the loader: model management, ModelPatcher, ops and folder_paths."""
    mm = ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.get_free_memory = lambda device=None: 16 << 30  # as ComfyUI reports free RAM on the CPU
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.unet_dtype = lambda model_params=0, supported_dtypes=(), weight_dtype=None: torch.float32
    mm.unet_manual_cast = lambda dtype, device: None
    mm.should_use_fp16 = lambda device=None: False
    mm.load_models_gpu = lambda models, **kw: None
    mp = ModuleType("comfy.model_patcher")
    class ModelPatcher(SimpleNamespace):  # a class of its own: ComfyUI's patchers can be weakly referenced
        __slots__ = ("__weakref__",)

    mp.ModelPatcher = lambda model, load_device, offload_device: ModelPatcher(model=model, load_device=load_device)
    ops = ModuleType("comfy.ops")
    ops.pick_operations = lambda dtype, cast: torch.nn
    comfy = ModuleType("comfy")
    comfy.model_management, comfy.model_patcher, comfy.ops = mm, mp, ops
    fp = ModuleType("folder_paths")
    fp.models_dir = str(tmp_path / "models")
    fp.get_temp_directory = lambda: str(tmp_path / "temp")
    fp.get_input_directory = lambda: str(tmp_path / "input")
    # as ComfyUI's folder_paths: folders registered per name (ComfyUI registers its own, controlnet among them, at
    # import), a name nobody registered is a KeyError, and files are listed below every folder of the name
    fp.folder_names_and_paths = {"controlnet": ([str(tmp_path)], set())}

    def add_model_folder_path(name, path, is_default=False):  # a default folder goes first, any other last
        paths = fp.folder_names_and_paths.setdefault(name, ([], set()))[0]
        if path in paths and is_default:
            paths.remove(path)
        if path not in paths:
            paths.insert(0 if is_default else len(paths), path)

    def get_folder_paths(name):
        return list(fp.folder_names_and_paths[name][0])

    def get_filename_list(name):
        found = set()
        for folder in get_folder_paths(name):
            for dirpath, _, files in os.walk(folder):
                found.update(os.path.relpath(os.path.join(dirpath, f), folder).replace(os.sep, "/") for f in files)
        return sorted(found)

    fp.add_model_folder_path = add_model_folder_path
    fp.get_filename_list = get_filename_list

    def get_full_path(name, f):
        if name not in fp.folder_names_and_paths:
            return None
        for folder in get_folder_paths(name):
            if (Path(folder) / f).is_file():
                return str(Path(folder) / f)
        return None

    fp.get_full_path = get_full_path
    fp.get_folder_paths = get_folder_paths
    for name, mod in {"comfy": comfy, "comfy.model_management": mm, "comfy.model_patcher": mp, "comfy.ops": ops, "folder_paths": fp}.items():
        monkeypatch.setitem(sys.modules, name, mod)  # the real ComfyUI's other modules stay hidden (outside_comfyui)
    return tmp_path

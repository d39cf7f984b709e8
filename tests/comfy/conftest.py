"""Harness for the ``comfy``-marked tests: ComfyUI (CPU only) next to our package, and seeded random ControlNets.

ComfyUI's root goes on ``sys.path`` here, and only here: its top-level ``nodes`` must be the one that
``import nodes`` finds. Our package stays importable as ``affordance`` because ``tests/conftest.py``
registers it by file location, never through ``sys.path``.

Every test here needs a ComfyUI checkout in ``COMFYUI_PATH`` and is skipped without one (through the
``comfy`` fixture). Run them with the Python of ComfyUI's venv::

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfy-venv/bin/pytest tests/comfy -v
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

_COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
if _COMFYUI_PATH:
    _root = str(Path(_COMFYUI_PATH).resolve())
    if _root not in sys.path:
        sys.path.insert(0, _root)

FAMILIES = ("sd15", "sd21", "sdxl")

# The UNet configuration ComfyUI uses for a ControlNet of each family: the entries of
# comfy/model_detection.py for SD15, SD21 and SDXL, minus the decoder-only ones. test_key_fixtures checks
# that ComfyUI's own detection (model_config_from_unet) maps each resulting key set back to a configuration
# that builds the very same keys, so these values cannot drift from ComfyUI's.
_COMMON = {
    "image_size": 32,
    "in_channels": 4,
    "model_channels": 320,
    "hint_channels": 3,
    "use_spatial_transformer": True,
    "legacy": False,
    "use_checkpoint": False,
}
UNET_CONFIGS: dict[str, dict[str, object]] = {
    "sd15": {
        **_COMMON,
        "num_res_blocks": [2, 2, 2, 2],
        "channel_mult": [1, 2, 4, 4],
        "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "transformer_depth_middle": 1,
        "context_dim": 768,
        "use_linear_in_transformer": False,
        "num_heads": 8,
        "num_head_channels": -1,
        "adm_in_channels": None,
    },
    "sd21": {
        **_COMMON,
        "num_res_blocks": [2, 2, 2, 2],
        "channel_mult": [1, 2, 4, 4],
        "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "transformer_depth_middle": 1,
        "context_dim": 1024,
        "use_linear_in_transformer": True,
        "num_heads": -1,
        "num_head_channels": 64,
        "adm_in_channels": None,
    },
    "sdxl": {
        **_COMMON,
        "num_res_blocks": [2, 2, 2],
        "channel_mult": [1, 2, 4],
        "transformer_depth": [0, 0, 2, 2, 10, 10],
        "transformer_depth_middle": 10,
        "context_dim": 2048,
        "use_linear_in_transformer": True,
        "num_heads": -1,
        "num_head_channels": 64,
        "adm_in_channels": 2816,
        "num_classes": "sequential",
    },
}
# The class comfy.model_detection.model_config_from_unet picks for each family's ControlNet.
COMFY_MODEL_CLASSES = {"sd15": "SD15", "sd21": "SD20", "sdxl": "SDXL"}

WEIGHT_STD = 0.02
TOLERANCE = 1e-4  # max abs difference allowed between our residuals and ComfyUI's (fp32, CPU)

_PARITY: list[tuple[str, float, float]] = []  # (case, max |diff|, max |residual|) for the summary


@pytest.fixture(scope="session")
def comfy(comfyui_path: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """ComfyUI's modules, imported for the CPU without parsing our command line; its temp and output folders
    (previews, saved images) are the session's own, never the checkout's."""
    if not (comfyui_path / "comfy" / "cldm" / "cldm.py").is_file():
        pytest.fail(f"COMFYUI_PATH={comfyui_path} is not a ComfyUI checkout (no comfy/cldm/cldm.py)")
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_detection
    import comfy.model_management
    import comfy.ops
    import comfy.utils
    import folder_paths

    folder_paths.set_temp_directory(str(tmp_path_factory.mktemp("comfy_temp")))
    folder_paths.set_output_directory(str(tmp_path_factory.mktemp("comfy_output")))

    version_file = comfyui_path / "comfyui_version.py"
    found = re.search(r"__version__\s*=\s*[\"']([^\"']+)", version_file.read_text()) if version_file.is_file() else None
    return SimpleNamespace(
        cldm=comfy.cldm.cldm,
        controlnet=comfy.controlnet,
        model_detection=comfy.model_detection,
        model_management=comfy.model_management,
        ops=comfy.ops,
        utils=comfy.utils,
        path=comfyui_path,
        version=found.group(1) if found else "unknown",
    )


@pytest.fixture(scope="session")
def fixtures_dir(repo_root: Path) -> Path:
    return repo_root / "tests" / "fixtures"


@pytest.fixture(scope="session")
def unet_configs() -> dict[str, dict[str, object]]:
    """Family name -> the unet_config ComfyUI uses for a ControlNet of that family (a fresh copy)."""
    return {family: dict(cfg) for family, cfg in UNET_CONFIGS.items()}


@pytest.fixture(scope="session")
def comfy_model_classes() -> dict[str, str]:
    """Family name -> the comfy.supported_models class ComfyUI's detection picks for its ControlNet."""
    return dict(COMFY_MODEL_CLASSES)


@pytest.fixture(scope="session")
def comfy_controlnet(comfy: SimpleNamespace) -> Callable[..., torch.nn.Module]:
    """``make(config, device="meta")``: ComfyUI's ``cldm.ControlNet`` for a family name or a unet_config dict."""

    def make(config: str | dict[str, object], device: str | torch.device = "meta") -> torch.nn.Module:
        cfg = dict(UNET_CONFIGS[config] if isinstance(config, str) else config)
        cfg.pop("out_channels", None)
        cfg.setdefault("hint_channels", 3)
        cfg["dtype"] = torch.float32
        cfg["device"] = device
        cfg["operations"] = comfy.ops.disable_weight_init
        return comfy.cldm.ControlNet(**cfg)

    return make


@pytest.fixture(scope="session")
def comfy_from_state_dict(comfy: SimpleNamespace, comfy_controlnet) -> Callable[..., torch.nn.Module]:
    """ComfyUI's network for an original-layout state dict, configured the way ComfyUI's loader does it.

    The configuration comes from ``comfy.model_detection.model_config_from_unet(sd, "", True)`` (the cldm
    path of ``comfy.controlnet.load_controlnet_state_dict``), updated with ``overrides``; the tensors are
    assigned, not copied.
    """

    def make(sd: dict[str, torch.Tensor], **overrides: object) -> torch.nn.Module:
        model_config = comfy.model_detection.model_config_from_unet(sd, "", True)
        assert model_config is not None, "ComfyUI did not recognise the state dict"
        cfg = {**model_config.unet_config, **overrides}
        cfg["hint_channels"] = sd["input_hint_block.0.weight"].shape[1]
        model = comfy_controlnet(cfg, device="meta")
        model.load_state_dict(sd, strict=True, assign=True)
        return model.eval().requires_grad_(False)

    return make


@dataclass
class Case:
    """Seeded random weights of one family (original layout) and seeded inputs for it."""

    family: str
    state_dict: dict[str, torch.Tensor]
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]
    seconds_to_make: float


def random_state_dict(model: torch.nn.Module, seed: int, std: float = WEIGHT_STD) -> dict[str, torch.Tensor]:
    """Seeded N(0, std) for every tensor of ``model``'s state dict, zero convs included (so residuals are
    non-zero); norm weights are 1 + N(0, std). Tensor ``i`` in sorted key order uses seed ``seed * 1000003 + i``.
    """
    norms = {
        f"{name}.{p}" if name else p
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm))
        for p, _ in module.named_parameters(recurse=False)
    }
    out: dict[str, torch.Tensor] = {}
    for i, (key, ref) in enumerate(sorted(model.state_dict().items())):
        g = torch.Generator().manual_seed(seed * 1000003 + i)
        t = torch.randn(tuple(ref.shape), generator=g, dtype=torch.float32).mul_(std)
        if key in norms and key.endswith("weight"):
            t.add_(1.0)
        out[key] = t
    return out


def make_inputs(family: str, batch: int = 2, latent: int = 8, tokens: int = 77, seed: int = 42):
    """Latent (N, 4, h, w), hint (N, 3, 8h, 8w) in [0, 1], timesteps, context, and y for SDXL."""
    cfg = UNET_CONFIGS[family]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, latent, latent, generator=g)
    hint = torch.rand(batch, 3, 8 * latent, 8 * latent, generator=g)
    timesteps = torch.tensor([999.0, 321.0, 500.0, 1.0][:batch])
    context = torch.randn(batch, tokens, int(cfg["context_dim"]), generator=g)
    adm = cfg["adm_in_channels"]
    y = torch.randn(batch, int(adm), generator=g) if adm else None
    return x, hint, timesteps, context, y


@pytest.fixture(scope="module")
def case(request: pytest.FixtureRequest, comfy_controlnet) -> Case:
    """Parametrise indirectly with a family name; built once per module and family."""
    family = request.param
    start = time.perf_counter()
    sd = random_state_dict(comfy_controlnet(family, device="meta"), seed=1 + FAMILIES.index(family))
    return Case(family, sd, make_inputs(family), time.perf_counter() - start)


@pytest.fixture(scope="session")
def compare_residuals() -> Callable[..., float]:
    """``compare(name, comfy_out, ours, tol)``: check every residual, record and return the max abs diff."""

    def compare(name: str, comfy_out: dict[str, list[torch.Tensor]], ours, tol: float = TOLERANCE) -> float:
        assert set(comfy_out) == {"middle", "output"}
        theirs = [*comfy_out["output"], *comfy_out["middle"]]
        mine = ours.as_list()
        assert len(mine) == len(theirs), f"{name}: {len(mine)} residuals, ComfyUI gives {len(theirs)}"
        worst, scale = 0.0, 0.0
        for i, (a, b) in enumerate(zip(theirs, mine)):
            assert a.shape == b.shape, f"{name}: residual {i} has shape {tuple(b.shape)}, ComfyUI {tuple(a.shape)}"
            assert a.dtype == b.dtype, f"{name}: residual {i} is {b.dtype}, ComfyUI {a.dtype}"
            assert torch.count_nonzero(a) > 0, f"{name}: residual {i} is all zero; the test weights are too trivial"
            diff = (a.double() - b.double()).abs().max().item()
            scale = max(scale, a.abs().max().item())
            assert diff <= tol, f"{name}: residual {i} {tuple(a.shape)} differs by {diff:.3g} (> {tol:g})"
            worst = max(worst, diff)
        _PARITY.append((name, worst, scale))
        return worst

    return compare


def pytest_terminal_summary(terminalreporter) -> None:
    if _PARITY:
        terminalreporter.section("ControlNet parity with ComfyUI (max |ours - ComfyUI| over all residuals)")
        for name, diff, scale in _PARITY:
            terminalreporter.write_line(f"{name:<48} max|diff| {diff:.3e}   max|residual| {scale:.3g}")
    if _SAMPLING:
        terminalreporter.section(
            "Sampling parity (max |a - b| over sampled latents; effect = max |with - without control|)"
        )
        for name, diff, effect in _SAMPLING:
            terminalreporter.write_line(f"{name:<64} max|diff| {diff:.3e}   effect {effect:.3g}")


# ----- tiny base models for sampling tests --------------------------------------------------------------
#
# ComfyUI samples a real BaseModel (through comfy.sample.sample) built from these reduced UNet configurations
# with seeded random weights, and ControlNets of the same shape saved as safetensors files. They keep the
# structure that matters (conv_in, a transformer level, a downsampler, a second level, a middle block with a
# transformer: 4 input blocks, so 5 ControlNet residuals) at a size that samples in well under a second.
#
# SD1.x keeps model_channels 320 and no linear projections so that ComfyUI's own loader detection
# (comfy.model_detection.model_config_from_unet, used by comfy.controlnet.load_controlnet) matches its SD15
# class and uses SD1's 8 attention heads, as our loader does; the SDXL-family configuration matches no
# ComfyUI class, so ComfyUI's loader falls back to its BASE config, whose 64-wide heads are also SDXL's and ours.
_TINY_COMMON: dict[str, object] = {
    "use_checkpoint": False,
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "num_res_blocks": [1, 1],
    "channel_mult": [1, 1],
    "transformer_depth_middle": 1,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
TINY_UNETS: dict[str, dict[str, object]] = {
    "sd15": {
        **_TINY_COMMON,
        "model_channels": 320,
        "transformer_depth": [1, 0],
        "transformer_depth_output": [1, 1, 0, 0],  # level 0 first; the UNet pops from the end
        "context_dim": 768,
        "use_linear_in_transformer": False,
        "adm_in_channels": None,
    },
    "sdxl": {
        **_TINY_COMMON,
        "model_channels": 128,
        "transformer_depth": [0, 1],
        "transformer_depth_output": [0, 0, 1, 1],
        "context_dim": 2048,
        "use_linear_in_transformer": True,
        "adm_in_channels": 2816,
        "num_classes": "sequential",
    },
}
TINY_MODEL_CLASSES = {"sd15": "SD15", "sdxl": "SDXL"}  # comfy.supported_models class of the sampled model
TINY_LATENT = 4  # latent side (hint 32 px): small enough for many CPU samples
# Scale of the UNet's output conv. Sampled latents are ~100 (noise x sigma_max / the latent scale factor) and
# cfg 7 amplifies the fp32 rounding differences of two ControlNet implementations (~1e-6 relative) up to ~1e-3
# at gain 1; a smaller noise prediction keeps that rounding ~10x under the 1e-3 tolerance while the control
# still moves the latents by far more than the tolerance.
TINY_EPS_GAIN = 0.1
TINY_NUM_RESIDUALS = 5  # 4 input blocks and the middle block
_SAMPLING: list[tuple[str, float, float]] = []  # (case, max |diff|, effect of the control) for the summary


@dataclass
class TinyFamily:
    """A tiny base model of one family, three ControlNet files for it, and seeded inputs.

    Attributes:
        family: ``sd15`` or ``sdxl``.
        patcher: ``comfy.model_patcher.ModelPatcher`` around the ``comfy.model_base`` model (CPU, fp32).
        controlnet_files: three ControlNet safetensors files (original layout) with different random weights.
        comfy_controls: each file loaded by ``comfy.controlnet.load_controlnet``.
        our_controls: each file loaded by our ``load_control``.
    """

    family: str
    patcher: Any
    controlnet_files: tuple[Path, ...]
    comfy_controls: tuple[Any, ...]
    our_controls: tuple[Any, ...]

    @property
    def model(self) -> Any:
        """The ``comfy.model_base.BaseModel`` (what ``pre_run`` receives during sampling)."""
        return self.patcher.model

    @property
    def context_dim(self) -> int:
        return int(TINY_UNETS[self.family]["context_dim"])

    def conditioning(self, seed: int, batch: int = 1) -> list:
        """A CONDITIONING: ``[[context (batch, 77, context_dim), {...}]]``, with SDXL's pooled output and sizes."""
        g = torch.Generator().manual_seed(seed)
        options: dict[str, object] = {}
        context = torch.randn(batch, 77, self.context_dim, generator=g)
        if self.family == "sdxl":
            size = TINY_LATENT * 8
            options.update(pooled_output=torch.randn(batch, 1280, generator=g), width=size, height=size)
        return [[context, options]]

    def image(self, seed: int, batch: int = 1, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """An IMAGE ``(batch, H, W, 3)`` in ``[0, 1]``; by default the latent size x 8."""
        size = TINY_LATENT * 8
        g = torch.Generator().manual_seed(seed)
        return torch.rand(batch, height or size, width or size, 3, generator=g)

    def latent(self, batch: int = 1, seed: int | None = None) -> torch.Tensor:
        """An empty latent (zeros) or, with a seed, a random one (for img2img)."""
        shape = (batch, 4, TINY_LATENT, TINY_LATENT)
        if seed is None:
            return torch.zeros(shape)
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def model_inputs(self, seed: int, batch: int = 2, percent: float = 0.4) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """``(x_noisy, sigmas, cond)`` as the sampler hands them to ``get_control``: ``batch`` rows at the sigma
        of sampling progress ``percent``."""
        g = torch.Generator().manual_seed(seed)
        sigma = self.model.model_sampling.percent_to_sigma(percent)
        x = torch.randn(batch, 4, TINY_LATENT, TINY_LATENT, generator=g) * sigma
        cond: dict[str, torch.Tensor] = {"c_crossattn": torch.randn(batch, 77, self.context_dim, generator=g)}
        if self.family == "sdxl":
            cond["y"] = torch.randn(batch, 2816, generator=g)
        return x, torch.full((batch,), sigma), cond


def tiny_controlnet_weights(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """``random_state_dict``, with the hint encoder's conv weights at He scale (std sqrt(2 / fan_in)).

    At std 0.02 the eight hint convolutions shrink the hint ~1000-fold, so the hint image would hardly matter;
    at He scale the encoded hint is of the order of the features it is added to, and a different hint (or a
    hint resized differently) visibly changes the sampled latents.
    """
    sd = random_state_dict(model, seed)
    for key, t in sd.items():
        if key.startswith("input_hint_block.") and key.endswith(".weight"):
            sd[key] = t * (math.sqrt(2.0 / t[0].numel()) / WEIGHT_STD)
    return sd


@pytest.fixture(scope="session")
def comfy_nodes(comfy: SimpleNamespace) -> Any:
    """ComfyUI's top-level ``nodes`` module (imported after the ``comfy`` fixture disabled argument parsing)."""
    if "nodes" not in sys.modules:
        # As in ComfyUI's main.py: its ``utils`` package first, before nodes.py puts comfy/ (with comfy/utils.py)
        # at the front of sys.path; otherwise ``utils.install_util`` (needed by server.py) cannot be found.
        import utils.extra_config  # noqa: F401
    import nodes

    assert Path(nodes.__file__).resolve() == comfy.path.resolve() / "nodes.py"
    return nodes


@pytest.fixture(scope="session")
def tiny_family(comfy: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], TinyFamily]:
    """``get(family)``: the :class:`TinyFamily` of ``sd15`` or ``sdxl``, built once per session."""
    from comfy import model_patcher, supported_models
    from safetensors.torch import save_file

    from affordance.nodes.loaders import load_control

    built: dict[str, TinyFamily] = {}

    def get(family: str) -> TinyFamily:
        if family in built:
            return built[family]
        unet_config = TINY_UNETS[family]
        model_config = getattr(supported_models, TINY_MODEL_CLASSES[family])(unet_config)
        model_config.set_inference_dtype(torch.float32, None)
        model = model_config.get_model({}, device=torch.device("cpu"))
        unet_sd = random_state_dict(model.diffusion_model, seed=100 + len(built))
        for key in ("out.2.weight", "out.2.bias"):
            unet_sd[key] *= TINY_EPS_GAIN
        model.diffusion_model.load_state_dict(unet_sd, strict=True)
        model.eval().requires_grad_(False)
        cpu = torch.device("cpu")
        patcher = model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)

        cn_config = {k: v for k, v in model_config.unet_config.items() if k not in ("out_channels", "dtype")}
        cn_config.update(hint_channels=3, dtype=torch.float32, device="meta", operations=comfy.ops.disable_weight_init)
        with torch.device("meta"):
            skeleton = comfy.cldm.ControlNet(**cn_config)
        folder = tmp_path_factory.mktemp(f"tiny_{family}")
        files = []
        for i in range(3):
            path = folder / f"tiny_{family}_control_{'abc'[i]}.safetensors"
            save_file(tiny_controlnet_weights(skeleton, seed=200 + 10 * len(built) + i), str(path))
            files.append(path)
        theirs = tuple(comfy.controlnet.load_controlnet(str(p)) for p in files)
        assert all(c is not None for c in theirs), "ComfyUI could not load the tiny ControlNets"
        ours = tuple(load_control(p) for p in files)
        built[family] = TinyFamily(family, patcher, tuple(files), theirs, ours)
        return built[family]

    return get


@pytest.fixture(scope="session")
def comfy_sample(comfy: SimpleNamespace) -> Callable[..., torch.Tensor]:
    """``sample(patcher, positive, negative, latent, steps=4, cfg=7.0, seed=0, denoise=1.0)`` through
    ``comfy.sample.sample`` (euler, normal schedule) with ``comfy.sample.prepare_noise(latent, seed)``."""
    from comfy import sample as comfy_sample_module

    def sample(
        patcher: Any,
        positive: list,
        negative: list,
        latent: torch.Tensor,
        *,
        steps: int = 4,
        cfg: float = 7.0,
        seed: int = 0,
        denoise: float = 1.0,
        sampler_name: str = "euler",
        scheduler: str = "normal",
    ) -> torch.Tensor:
        noise = comfy_sample_module.prepare_noise(latent, seed)
        with torch.inference_mode():
            return comfy_sample_module.sample(
                patcher,
                noise,
                steps,
                cfg,
                sampler_name,
                scheduler,
                positive,
                negative,
                latent,
                denoise=denoise,
                disable_pbar=True,
                seed=seed,
            )

    return sample


@pytest.fixture(scope="session")
def record_sampling() -> Callable[..., float]:
    """``record(name, a, b, effect=0.0)``: the max abs difference of two sampled latents, kept for the summary."""

    def record(name: str, a: torch.Tensor, b: torch.Tensor, effect: float = 0.0) -> float:
        assert a.shape == b.shape, f"{name}: shapes {tuple(a.shape)} and {tuple(b.shape)}"
        diff = (a.double() - b.double()).abs().max().item()
        _SAMPLING.append((name, diff, effect))
        return diff

    return record

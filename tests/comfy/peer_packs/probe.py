"""Our ControlNet under other ComfyUI node packs, in a real ComfyUI: one group of checks per run, in a fresh process.

The packs patch ComfyUI globally (AnimateDiff-Evolved wraps the sampler, Tiled Diffusion the model function,
Ultimate SD Upscale juggles ``sys.modules``), so each group runs in its own interpreter; ``test_peer_packs.py``
starts one per group. Run by hand::

    COMFYUI_PATH=/path/to/ComfyUI AFFORDANCE_PEER_PACKS=/path/to/packs \\
        /path/to/comfy-venv/bin/python -P tests/comfy/peer_packs/probe.py ade|acn|tiled|usdu

``AFFORDANCE_PEER_PACKS`` holds the packs' checkouts under their repository names (see ``PACKS``). Nothing is
written into ComfyUI's tree or the packs' checkouts: a temporary folder gets a ``custom_nodes`` folder of links
(the packs, and this checkout as ``affordance``), ComfyUI's temp/output/input/user folders, its ``models_dir``
(AnimateDiff-Evolved makes its model folders there) and the model files. ComfyUI's own modules are imported
from ``COMFYUI_PATH`` and each pack is loaded by ComfyUI's ``nodes.load_custom_node``, as ComfyUI's start-up
does. No bytecode is written. Torch uses one CPU thread (``--threads``): several threads on a busy machine made
these small models ten times slower.

Models: the tiny random SD1.5-shaped UNet and ControlNet files of ``tests/comfy/conftest.py`` (imported from
there), fp32 on the CPU, euler/normal, cfg 7 (cond and uncond batched). Each check compares two sampled results
(``diff`` <= ``tol``) and says how much what it tests moves the result (every ``effects`` value >= ``min_effect``),
so that a check cannot pass by the control doing nothing; or it expects a given exception.

Output: the packs' log lines, then one line ``PEER_PACKS_RESULT {json}`` with ``group``, ``versions``,
``seconds`` and ``checks`` (each: ``name``, ``ok``, and ``diff``/``tol``/``effects``/``min_effect`` or
``error``/``expected``). Exit status 0 when every check passed, 1 when one failed, 2 when the setup failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
MARK = "PEER_PACKS_RESULT "
ADE, ACN = "ComfyUI-AnimateDiff-Evolved", "ComfyUI-Advanced-ControlNet"
TD, USDU = "ComfyUI-TiledDiffusion", "ComfyUI_UltimateSDUpscale"
# A file each checkout must hold (USDU's comes from its git submodule; without it USDU would download it).
PACKS = {
    ADE: "animatediff/sampling.py",
    ACN: "adv_control/utils.py",
    TD: "tiled_diffusion.py",
    USDU: "repositories/ultimate_sd_upscale/scripts/ultimate-upscale.py",
}
GROUPS = {"ade": (ADE,), "acn": (ADE, ACN), "tiled": (TD,), "usdu": (USDU,)}

CFG = 7.0
WINDOW_TOL = 1e-4  # windows: the same rows through the same networks, only batched differently
PARITY_TOL = 1e-3  # ours vs ComfyUI's ControlNet, sampled latents (as tests/comfy/test_sampling_parity.py)


def missing_packs(packs: Path | None, group: str) -> list[str]:
    """The packs ``group`` needs that ``packs`` lacks (a folder, or a checkout without its ``PACKS`` file)."""
    if packs is None:
        return list(GROUPS[group])
    return [name for name in GROUPS[group] if not (packs / name / PACKS[name]).is_file()]


class Probe:
    """ComfyUI with the packs loaded, the tiny models, and the checks recorded so far."""

    def __init__(self, comfyui: Path, packs: Path, group: str, work: Path, steps: int, threads: int) -> None:
        self.comfyui, self.group, self.work, self.steps = comfyui, group, work, steps
        self.checks: list[dict[str, Any]] = []
        custom_nodes = work / "custom_nodes"
        custom_nodes.mkdir()
        (custom_nodes / "affordance").symlink_to(REPO, target_is_directory=True)
        for name in GROUPS[group]:
            (custom_nodes / name).symlink_to((packs / name).resolve(), target_is_directory=True)

        sys.path.insert(0, str(comfyui))
        import torch

        torch.set_num_threads(threads)
        import comfy.options

        comfy.options.enable_args_parsing(False)
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
        # ComfyUI's ``utils`` package before nodes.py puts comfy/ (with comfy/utils.py) first on sys.path, as main.py.
        import comfy.utils
        import folder_paths
        import utils.extra_config  # noqa: F401

        import nodes

        if Path(nodes.__file__).resolve() != comfyui / "nodes.py":
            raise RuntimeError(f"imported {nodes.__file__}, not {comfyui / 'nodes.py'}")
        for kind in ("temp", "output", "input", "user"):
            (work / kind).mkdir()
            getattr(folder_paths, f"set_{kind}_directory")(str(work / kind))
        # Packs that make their model folders under models_dir (AnimateDiff-Evolved) make them here.
        folder_paths.models_dir = str(work / "models")
        (work / "models").mkdir()
        (work / "controlnet").mkdir()
        folder_paths.add_model_folder_path("controlnet", str(work / "controlnet"), is_default=True)
        comfy.utils.PROGRESS_BAR_ENABLED = False
        self.torch, self.nodes = torch, nodes

        spec = importlib.util.spec_from_file_location("_affordance_comfy_conftest", REPO / "tests/comfy/conftest.py")
        assert spec is not None and spec.loader is not None
        self.h = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = self.h  # dataclasses look their module up
        spec.loader.exec_module(self.h)

        for name in (*GROUPS[group], "affordance"):
            if not asyncio.run(nodes.load_custom_node(str(custom_nodes / name))):
                pack = "" if name == "affordance" else f" {_version(packs / name)}"
                raise RuntimeError(
                    f"ComfyUI {_version(comfyui)} could not load the custom node {name}{pack} (its reason is in the "
                    "log above; a pack newer than the ComfyUI it runs in is the usual cause: the README's 'Tests "
                    "against a real ComfyUI' names the versions checked together)"
                )
        self.versions = {name: _version(packs / name) for name in GROUPS[group]}
        self.versions["ComfyUI"] = _version(comfyui)

    # ----- models and nodes ---------------------------------------------------------------------------------------
    def models(self, controlnets: int) -> tuple[Any, list[str]]:
        """A tiny SD1.5 ModelPatcher and the file names of ``controlnets`` same-shaped random ControlNets."""
        import comfy.cldm.cldm
        import comfy.model_patcher
        import comfy.ops
        import comfy.supported_models
        from safetensors.torch import save_file

        torch, h = self.torch, self.h
        model_config = comfy.supported_models.SD15(h.TINY_UNETS["sd15"])
        model_config.set_inference_dtype(torch.float32, None)
        model = model_config.get_model({}, device=torch.device("cpu"))
        sd = h.random_state_dict(model.diffusion_model, seed=100)
        for key in ("out.2.weight", "out.2.bias"):
            sd[key] *= h.TINY_EPS_GAIN
        model.diffusion_model.load_state_dict(sd, strict=True)
        model.eval().requires_grad_(False)
        cpu = torch.device("cpu")
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)

        cn_config = {k: v for k, v in model_config.unet_config.items() if k not in ("out_channels", "dtype")}
        cn_config.update(hint_channels=3, dtype=torch.float32, device="meta", operations=comfy.ops.disable_weight_init)
        with torch.device("meta"):
            skeleton = comfy.cldm.cldm.ControlNet(**cn_config)
        names = []
        for i in range(controlnets):
            name = f"peer_tiny_sd15_control_{i}.safetensors"
            save_file(h.tiny_controlnet_weights(skeleton, seed=200 + 100 * i), str(self.work / "controlnet" / name))
            names.append(name)
        return patcher, names

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple:
        """A node's outputs (a V1 node's FUNCTION on an instance, or a V3 node's ``execute``)."""
        cls = self.nodes.NODE_CLASS_MAPPINGS[name]
        if hasattr(cls, "FUNCTION") and not hasattr(cls, "define_schema"):
            return tuple(getattr(cls(), cls.FUNCTION)(*args, **kwargs))
        out = cls.execute(*args, **kwargs)
        return tuple(out.args if hasattr(out, "args") else out)

    def sample(self, model: Any, noise: Any, positive: list, negative: list) -> Any:
        import comfy.sample

        latent = self.torch.zeros_like(noise)
        with self.torch.inference_mode():
            return comfy.sample.sample(
                model,
                noise,
                self.steps,
                CFG,
                "euler",
                "normal",
                positive,
                negative,
                latent,
                denoise=1.0,
                disable_pbar=True,
                seed=0,
            )

    def ours(self, cn: Any, pos: list, neg: list, hint: Any, strength: float = 1.0, **extra: Any) -> tuple:
        return self.call("AST_ApplyControlNet", pos, neg, cn, hint, strength, 0.0, 1.0, **extra)[:2]

    def comfy(self, cn: Any, pos: list, neg: list, hint: Any, strength: float = 1.0) -> tuple:
        return self.call("ControlNetApplyAdvanced", pos, neg, cn, hint, strength, 0.0, 1.0)[:2]

    # ----- checks -------------------------------------------------------------------------------------------------
    def compare(self, name: str, build: Callable[[], tuple], tol: float, min_effect: float) -> None:
        """``build()`` -> ``(a, b, effects)``: ``|a - b| <= tol`` and every effect >= ``min_effect``."""
        start = time.perf_counter()
        try:
            a, b, effects = build()
        except Exception as exc:  # noqa: BLE001  any failure is this check's result
            self.checks.append({"name": name, "ok": False, "error": _describe(exc)})
            return
        diff = md(a, b)
        effects = {k: round(v, 6) for k, v in effects.items()}
        ok = diff <= tol and all(v >= min_effect for v in effects.values())
        self.checks.append(
            {
                "name": name,
                "ok": ok,
                "diff": diff,
                "tol": tol,
                "effects": effects,
                "min_effect": min_effect,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )

    def refused(self, name: str, run: Callable[[], Any], expected: str) -> None:
        """``run()`` must raise ``expected`` (``module:Class``; the module named as the end of its path)."""
        try:
            run()
        except Exception as exc:  # noqa: BLE001
            chain = []
            while exc is not None and exc not in chain:
                chain.append(exc)
                exc = exc.__cause__ or exc.__context__
            mod, cls = expected.split(":")
            ok = any(type(e).__name__ == cls and type(e).__module__.endswith(mod) for e in chain)
            self.checks.append({"name": name, "ok": ok, "error": _describe(chain[0]), "expected": expected})
            return
        self.checks.append({"name": name, "ok": False, "error": None, "expected": expected})


def md(a: Any, b: Any) -> float:
    return (a.double() - b.double()).abs().max().item()


def _describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__module__}.{type(exc).__name__}{where}: {' '.join(str(exc).split())[:400]}"


def _version(folder: Path) -> str:
    for name, pattern in (("pyproject.toml", r'^version\s*=\s*"([^"]+)"'), ("comfyui_version.py", r'"([^"]+)"')):
        path = folder / name
        if path.is_file():
            found = re.search(pattern, path.read_text(), re.M)
            if found:
                return found.group(1)
    return "unknown"


# ----- the groups ---------------------------------------------------------------------------------------------------
FRAMES, CONTEXT = 8, 4  # AnimateDiff-Evolved: windows [0..3] and [4..7] (context_length 4, overlap 0, flat fuse)
WINDOWS = (list(range(0, CONTEXT)), list(range(CONTEXT, FRAMES)))


def _windowed(p: Probe, patcher: Any, overlap: int = 0) -> Any:
    """The model under AnimateDiff-Evolved's sliding context; no motion model, so frames stay independent and a
    window must equal sampling its frames alone, with their own noise rows, hints and masks."""
    (ctx,) = p.call(
        "ADE_StandardStaticContextOptions", context_length=CONTEXT, context_overlap=overlap, fuse_method="flat"
    )
    return p.call("ADE_UseEvolvedSampling", patcher, "use existing", context_options=ctx)[0]


def group_ade(p: Probe) -> None:
    torch = p.torch
    patcher, names = p.models(1)
    ours = p.call("AST_ControlNetLoader", names[0])[0]
    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(FRAMES, 4, 8, 8, generator=g)
    hints = torch.rand(FRAMES, 64, 64, 3, generator=g)  # a different hint and mask per frame
    masks = torch.rand(FRAMES, 64, 64, generator=g)
    pos = [[torch.randn(1, 77, 768, generator=g), {}]]
    neg = [[torch.randn(1, 77, 768, generator=g), {}]]
    plain_w1 = p.sample(patcher, noise[WINDOWS[1]], pos, neg)
    refs: dict[bool, list[Any]] = {}

    def apply(idx: list[int] | None, with_masks: bool) -> tuple:
        sel = slice(None) if idx is None else idx
        return p.ours(ours, pos, neg, hints[sel], **({"mask": masks[sel]} if with_masks else {}))

    for with_masks in (False, True):

        def build(with_masks: bool = with_masks) -> tuple:
            out = p.sample(_windowed(p, patcher), noise, *apply(None, with_masks))
            refs[with_masks] = [p.sample(patcher, noise[w], *apply(w, with_masks)) for w in WINDOWS]
            wrong = p.sample(patcher, noise[WINDOWS[1]], *apply(WINDOWS[0], with_masks))
            effects = {
                "control": md(refs[with_masks][1], plain_w1),
                "window 1 with window 0's hints": md(wrong, refs[with_masks][1]),
            }
            return out, torch.cat(refs[with_masks]), effects

        label = "per-frame hints and masks" if with_masks else "per-frame hints"
        p.compare(f"ADE windows 0-3, 4-7: ours ({label}) vs each window alone", build, WINDOW_TOL, 100 * WINDOW_TOL)

    def overlapping() -> tuple:  # windows 0-3, 2-5, 4-7: with flat fuse, (a + a) / 2 == a
        out = p.sample(_windowed(p, patcher, overlap=2), noise, *apply(None, False))
        return out, torch.cat(refs[False]), {"control": md(refs[False][1], plain_w1)}

    p.compare(
        "ADE overlapping windows 0-3, 2-5, 4-7: ours (per-frame hints) vs windows alone",
        overlapping,
        WINDOW_TOL,
        100 * WINDOW_TOL,
    )


def group_acn(p: Probe) -> None:
    torch = p.torch
    patcher, names = p.models(2)
    ours = [p.call("AST_ControlNetLoader", n)[0] for n in names]
    acn = p.call("ACN_ControlNetLoaderAdvanced", names[1])[0]
    comfy0 = p.call("ControlNetLoader", names[0])[0]
    g = torch.Generator().manual_seed(7)
    pos = [[torch.randn(1, 77, 768, generator=g), {}]]
    neg = [[torch.randn(1, 77, 768, generator=g), {}]]
    img = torch.rand(1, 64, 64, 3, generator=g)
    noise = torch.randn(1, 4, 8, 8, generator=g)

    def acn_apply_on_ours() -> tuple:  # ACN's Apply node takes any CONTROL_NET; it once crashed on ours
        got = p.sample(
            patcher, noise, *p.call("ACN_AdvancedControlNetApply_v2", pos, neg, ours[0], img, 0.7, 0.0, 1.0)[:2]
        )
        ref = p.sample(patcher, noise, *p.comfy(comfy0, pos, neg, img, 0.7))
        return got, ref, {"control": md(ref, p.sample(patcher, noise, pos, neg))}

    p.compare(
        "ACN Apply Advanced ControlNet (v2) on our ControlNet vs ComfyUI's apply on ComfyUI's",
        acn_apply_on_ours,
        PARITY_TOL,
        10 * PARITY_TOL,
    )

    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(FRAMES, 4, 8, 8, generator=g)
    h0, h1 = torch.rand(FRAMES, 64, 64, 3, generator=g), torch.rand(FRAMES, 64, 64, 3, generator=g)
    m0, m1 = torch.rand(FRAMES, 64, 64, generator=g), torch.rand(FRAMES, 64, 64, generator=g)
    pos = [[torch.randn(1, 77, 768, generator=g), {}]]
    neg = [[torch.randn(1, 77, 768, generator=g), {}]]

    def link_ours(c: tuple, idx: list[int], masks: bool) -> tuple:
        return p.ours(ours[0], *c, h0[idx], **({"mask": m0[idx]} if masks else {}))

    def link_acn(c: tuple, idx: list[int], masks: bool) -> tuple:
        extra = {"mask_optional": m1[idx]} if masks else {}
        return p.call("ACN_AdvancedControlNetApply_v2", *c, acn, h1[idx], 0.8, 0.0, 1.0, **extra)[:2]

    every = list(range(FRAMES))
    for label, first, second in (("ours -> ACN", link_ours, link_acn), ("ACN -> ours", link_acn, link_ours)):
        for masks in (False, True):

            def build(first=first, second=second, masks: bool = masks) -> tuple:
                out = p.sample(_windowed(p, patcher), noise, *second(first((pos, neg), every, masks), every, masks))
                refs = [p.sample(patcher, noise[w], *second(first((pos, neg), w, masks), w, masks)) for w in WINDOWS]
                w0, w1 = WINDOWS
                wrong = p.sample(patcher, noise[w1], *second(first((pos, neg), w0, masks), w0, masks))
                only_first = p.sample(patcher, noise[w1], *first((pos, neg), w1, masks))
                only_second = p.sample(patcher, noise[w1], *second((pos, neg), w1, masks))
                effects = {
                    "window 1 with window 0's hints": md(wrong, refs[1]),
                    "first link (chain vs second alone)": md(refs[1], only_second),
                    "second link (chain vs first alone)": md(refs[1], only_first),
                }
                return out, torch.cat(refs), effects

            tag = "per-frame hints and masks" if masks else "per-frame hints"
            p.compare(f"ADE windows: chain {label} ({tag}) vs each window alone", build, WINDOW_TOL, 100 * WINDOW_TOL)


TILE_LH, TILE_LW = 12, 16  # latent 16x12 (128x96 px); Tiled Diffusion 64 px tiles, overlap 16: 3 x 2 tiles


def _tiling_inputs(p: Probe) -> tuple:
    torch = p.torch
    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(1, 4, TILE_LH, TILE_LW, generator=g)
    hint = torch.rand(1, TILE_LH * 8, TILE_LW * 8, 3, generator=g)
    torch.rand(1, TILE_LH * 8, TILE_LW * 8, 3, generator=g)  # (the tile probe's second hint: same draws after it)
    pos = [[torch.randn(1, 77, 768, generator=g), {}]]
    neg = [[torch.randn(1, 77, 768, generator=g), {}]]
    return noise, hint, pos, neg


def group_tiled(p: Probe) -> None:
    torch = p.torch
    patcher, names = p.models(1)
    ours = p.call("AST_ControlNetLoader", names[0])[0]
    comfy0 = p.call("ControlNetLoader", names[0])[0]
    noise, hint, pos, neg = _tiling_inputs(p)

    def td(tbs: int) -> Any:  # a fresh Tiled Diffusion model each time (no tiles cached from an earlier run)
        return p.call("TiledDiffusion", patcher, "MultiDiffusion", 64, 64, 16, tbs)[0]

    def weights(preset: str, uncond: float) -> Any:
        return p.call("AST_ControlWeights", preset, 0.825, uncond, "1, 1, 1, 1, 1")[0]

    nc: dict[int, Any] = {}
    for tbs in (1, 2):

        def build(tbs: int = tbs) -> tuple:
            nc[tbs] = p.sample(td(tbs), noise, pos, neg)
            ref = p.sample(td(tbs), noise, *p.comfy(comfy0, pos, neg, hint))
            got = p.sample(td(tbs), noise, *p.ours(ours, pos, neg, hint))
            return got, ref, {"control": md(ref, nc[tbs])}

        p.compare(
            f"Tiled Diffusion MultiDiffusion, 6 tiles, tile_batch_size {tbs}: ours vs ComfyUI's ControlNet",
            build,
            PARITY_TOL,
            10 * PARITY_TOL,
        )

    def uncond_zero() -> tuple:  # 2 tiles a batch; ComfyUI's reference: its control on the positive prompt only
        ref = p.sample(td(2), noise, p.comfy(comfy0, pos, neg, hint)[0], neg)
        got = p.sample(td(2), noise, *p.ours(ours, pos, neg, hint, weights=weights("balanced", 0.0)))
        return got, ref, {"control": md(ref, nc.get(2, ref))}

    p.compare(
        "Tiled Diffusion tile_batch_size 2: ours uncond_multiplier 0 vs ComfyUI's on the positive only",
        uncond_zero,
        PARITY_TOL,
        10 * PARITY_TOL,
    )

    mask = torch.zeros(1, TILE_LH * 8, TILE_LW * 8)
    mask[:, :, : TILE_LW * 4] = 1.0
    for tbs in (1, 2):
        p.refused(
            f"Tiled Diffusion tile_batch_size {tbs}: ours with a mask is refused",
            lambda tbs=tbs: p.sample(td(tbs), noise, *p.ours(ours, pos, neg, hint, mask=mask)),
            "affordance.controlnet.errors:InputError",
        )


def _tiny_vae(p: Probe) -> Any:
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {
        "double_z": True,
        "z_channels": 4,
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32,
        "ch_mult": [1, 2, 2, 2],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
    }
    params = {"ddconfig": ddconfig, "embed_dim": 4}
    sd = p.h.random_state_dict(AutoencoderKL(**params), seed=400, std=0.05)
    return comfy.sd.VAE(sd=sd, config={"params": params}, dtype=p.torch.float32)


def group_usdu(p: Probe) -> None:
    import comfy.sample

    torch = p.torch
    patcher, names = p.models(1)
    ours = p.call("AST_ControlNetLoader", names[0])[0]
    comfy0 = p.call("ControlNetLoader", names[0])[0]
    vae = _tiny_vae(p)
    _, hint, pos, neg = _tiling_inputs(p)
    g = torch.Generator().manual_seed(77)
    small = torch.rand(1, 3, 12, 16, generator=g)
    image = torch.nn.functional.interpolate(small, size=(96, 128), mode="bilinear").movedim(1, -1).contiguous()
    for name in ("usdu_patch", "usdu_nodes", "usdu_utils", "processing"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def usdu(positive: list, negative: list, batch_size: int) -> list[Any]:
        """Ultimate SD Upscale (No Upscale), 64 px tiles: the latents of every tile batch it samples."""
        calls: list[Any] = []
        orig = comfy.sample.sample

        def recording(*args: Any, **kwargs: Any) -> Any:  # each tile batch goes through comfy.sample.sample
            out = orig(*args, **kwargs)
            calls.append(out.detach().clone())
            return out

        comfy.sample.sample = recording
        try:  # as ComfyUI's executor runs a node: in inference mode; USDU's prints kept off the JSON line
            with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):
                p.call(
                    "UltimateSDUpscaleNoUpscale",
                    image,
                    patcher,
                    positive,
                    negative,
                    vae,
                    123,
                    p.steps,
                    CFG,
                    "euler",
                    "normal",
                    0.6,
                    "Linear",
                    64,
                    64,
                    8,
                    16,
                    "None",
                    1.0,
                    8,
                    64,
                    16,
                    True,
                    False,
                    batch_size,
                )
        finally:
            comfy.sample.sample = orig
        return calls

    for bs in (1, 2):

        def build(bs: int = bs) -> tuple:
            nc = usdu(pos, neg, bs)
            ref = usdu(*p.comfy(comfy0, pos, neg, hint), bs)
            got = usdu(*p.ours(ours, pos, neg, hint), bs)
            if not (len(nc) == len(ref) == len(got) > 1):
                raise AssertionError(f"tile batches sampled: {len(nc)}, {len(ref)}, {len(got)}")
            effect = max(md(a, b) for a, b in zip(ref, nc))
            flat = [torch.cat([t.flatten() for t in ts]) for ts in (got, ref)]
            return flat[0], flat[1], {"control": effect, "tile batches": float(len(ref))}

        p.compare(
            f"Ultimate SD Upscale (No Upscale) batch_size {bs}: ours vs ComfyUI's ControlNet, every tile's latents",
            build,
            PARITY_TOL,
            10 * PARITY_TOL,
        )


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


RUN = {"ade": group_ade, "acn": group_acn, "tiled": group_tiled, "usdu": group_usdu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("group", choices=sorted(GROUPS))
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI checkout (COMFYUI_PATH)")
    ap.add_argument("--packs", default=os.environ.get("AFFORDANCE_PEER_PACKS"), help="(AFFORDANCE_PEER_PACKS)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: several probes can run at once)")
    args = ap.parse_args(argv)
    sys.dont_write_bytecode = True  # nothing written into ComfyUI's tree or the packs' checkouts
    logging.basicConfig(level=logging.WARNING)
    if not args.comfyui or not args.packs:
        sys.stderr.write("COMFYUI_PATH and AFFORDANCE_PEER_PACKS (or --comfyui, --packs) are needed\n")
        return 2
    comfyui, packs = Path(args.comfyui).resolve(), Path(args.packs)
    missing = missing_packs(packs, args.group)
    if missing or not (comfyui / "nodes.py").is_file():
        sys.stderr.write(f"missing: {missing or [str(comfyui / 'nodes.py')]}\n")
        return 2
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affordance_peer_packs_") as tmp:
        try:
            probe = Probe(comfyui, packs, args.group, Path(tmp), args.steps, args.threads)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            _emit({"group": args.group, "setup_error": _describe(exc)})
            return 2
        setup = time.perf_counter() - start
        RUN[args.group](probe)
    result = {
        "group": args.group,
        "versions": probe.versions,
        "seconds": round(time.perf_counter() - start, 1),
        "setup_seconds": round(setup, 1),
        "checks": probe.checks,
    }
    _emit(result)
    return 0 if probe.checks and all(c["ok"] for c in probe.checks) else 1


if __name__ == "__main__":
    sys.exit(main())

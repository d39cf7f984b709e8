"""Working memory of one ControlNet step at full size, ours vs ComfyUI vs diffusers, without a GPU.

Every implementation runs on PyTorch's ``meta`` device (exact shapes and dtypes, no data, seconds on any CPU)
under a dispatch mode that follows the bytes of every tensor made during the call until it is freed. It
reports, per forward: the **peak** of those bytes, the bytes still live at the end (the **outputs**), and the
operator and shape at which the peak occurred. Weights and inputs are made before the call and not counted.

Why it matters for issue 7: the step's peak GPU memory must be no higher than ComfyUI's, and a CUDA-graph
recording keeps a forward's whole working memory (its peak) reserved between replays. With a ComfyUI checkout it
also follows one whole sampling model call (ComfyUI's UNet with the ControlNets' residuals, batch 2) for ComfyUI's
path, ours, and ours with CUDA graphs, one and two ControlNets: the activations' side of that target. The GPU
benchmark (``bench_speed.py``) measures the allocator's peaks in a real run; this script says where they come from.

Model of the GPU: attention runs as one fused kernel (``torch.nn.functional.scaled_dot_product_attention`` is
replaced for the run by the flash-attention operator's shape function, which is what SDPA picks for fp16 on
GPUs; on ``meta`` SDPA would otherwise take its unfused path with a full attention matrix). Not counted: kernel
workspaces (cuBLAS, cuDNN) and the caching allocator's rounding (512 B blocks), the same for every implementation.

  python -P bench/bench_memory.py --comfyui /path/to/ComfyUI      # SD1.5 at 512 px and SDXL at 1024 px, fp16
"""

from __future__ import annotations

import argparse
import contextlib
import unittest.mock
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from affordance.bench import _common as C
from affordance.bench.bench_speed import comfy_unet_config
from affordance.controlnet import ControlNet, diffusers_config

MIB = 2**20
META = torch.device("meta")
SHARED = "ours, rows shared"  # ours with the cond and uncond rows sharing the layers before the first cross-attention


class LiveBytes(TorchDispatchMode):
    """Follows the storages made by the operators dispatched inside the mode: current and peak bytes.

    A storage counts from the operator that made it until the last tensor viewing it is freed (views made inside
    the mode keep it alive, as on a device). Storages made outside the mode (weights, inputs) are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bytes: dict[int, int] = {}
        self._views: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_at = ""

    def _release(self, key: int) -> None:
        self._views[key] -= 1
        if not self._views[key]:
            del self._views[key]
            self.current -= self._bytes.pop(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs: set[int] | None = None  # storages of the operator's inputs, read once when first needed
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key not in self._views:
                if inputs is None:
                    inputs = {a.untyped_storage()._cdata for a in tree_flatten(args)[0] if isinstance(a, torch.Tensor)}
                if key in inputs:
                    continue  # a view or in-place result of an input made outside the mode
                self._views[key] = 0
                self._bytes[key] = storage.nbytes()
                self.current += storage.nbytes()
                if self.current > self.peak:
                    self.peak = self.current
                    self.peak_at = f"{func.__name__.split('.')[0]} -> {tuple(t.shape)}"
            self._views[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def _fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """What a fused (flash) attention kernel allocates: its output and log-sum-exp, no attention matrix."""
    if args or kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
        raise NotImplementedError("the memory model covers unmasked, non-causal attention (all a ControlNet uses)")
    try:
        return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[0]
    except NotImplementedError:  # PyTorch 2.4 has no meta kernel for it: make what it makes
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)  # log-sum-exp, beside the output
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))
        del lse
        return out


@contextlib.contextmanager
def fused_attention() -> Iterator[None]:
    """``torch.nn.functional.scaled_dot_product_attention`` modelled as a fused kernel for the block, then restored.

    Ours, ComfyUI's attention_pytorch and diffusers' AttnProcessor2_0 all look the function up at call time.
    """
    with unittest.mock.patch.object(F, "scaled_dot_product_attention", _fused_attention):
        yield


@dataclass
class Memory:
    """One implementation's working memory per forward, in bytes."""

    peak: int
    outputs: int
    peak_at: str


def measure(fn: Callable[[], list[torch.Tensor]]) -> Memory:
    """Peak and end bytes of the tensors made by one call of ``fn`` (on ``meta``, attention fused)."""
    with torch.no_grad(), fused_attention():
        mode = LiveBytes()
        with mode:
            outs = fn()
        live = mode.current
        del outs
    return Memory(mode.peak, live, mode.peak_at)


def meta_inputs(config: Any, size: int, dtype: torch.dtype) -> tuple[C.ForwardInputs, torch.Tensor]:
    """Batch-2 inputs on ``meta`` in :func:`_common.make_inputs`' layout, and the encoded hint."""
    lat = size // 8
    with torch.device(META):
        y = added = None
        if config.adm_in_channels:  # diffusers builds SDXL's label from the pooled text and the 6 size values
            y = torch.empty(2, config.adm_in_channels, dtype=dtype)
            pooled = torch.empty(2, config.adm_in_channels - 6 * 256, dtype=dtype)
            added = {"text_embeds": pooled, "time_ids": torch.empty(2, 6, dtype=dtype)}
        inp = C.ForwardInputs(
            x=torch.empty(2, config.in_channels, lat, lat, dtype=dtype),
            hint=torch.empty(2, config.hint_channels, size, size, dtype=dtype),
            t=torch.empty(2, dtype=dtype),
            context=torch.empty(2, 77, config.context_dim, dtype=dtype),
            y=y,
            added=added,
        )
        enc = torch.empty(2, config.model_channels, lat, lat, dtype=dtype)
    return inp, enc


def ours_working_memory(config: Any, size: int, dtype: torch.dtype) -> Memory:
    """One step of our ControlNet of ``config`` (hint encoded once), measured on ``meta``."""
    with torch.device(META):
        model = ControlNet(config).to(dtype).eval()
    inp, enc = meta_inputs(config, size, dtype)
    return measure(lambda: model(inp["x"], None, inp["t"], inp["context"], inp["y"], encoded_hint=enc).as_list())


def implementations(
    family: str, size: int, dtype: torch.dtype, comfy: Any, use_diffusers: bool, missing: dict[str, str]
) -> tuple[dict[str, Callable[[], list[torch.Tensor]]], int]:
    """The forwards to compare on ``meta`` (same shapes for all) and the parameter bytes of one ControlNet."""
    config = C.config_for(family)
    with torch.device(META):
        ours = ControlNet(config).to(dtype).eval()
    inp, enc = meta_inputs(config, size, dtype)

    def build_comfy() -> torch.nn.Module:
        cfg = {k: v for k, v in comfy_unet_config(config).items() if k != "out_channels"}
        cfg.update(hint_channels=config.hint_channels, dtype=dtype, device=META)
        return comfy.cldm.cldm.ControlNet(**cfg, operations=comfy.ops.disable_weight_init).eval()

    def build_diffusers() -> torch.nn.Module:
        from diffusers import ControlNetModel

        dcfg = {k: v for k, v in diffusers_config(config).items() if not k.startswith("_")}
        with torch.device(META):
            return ControlNetModel.from_config(dcfg).to(dtype).eval()

    cm = C.try_build(f"comfyui ({family})", missing, build_comfy) if comfy else None
    dm = C.try_build(f"diffusers ({family})", missing, build_diffusers) if use_diffusers else None
    impls = C.step_calls(ours, enc, cm, dm, inp)
    if config.adm_in_channels is None:  # a CFG step's cond/uncond pair sharing its text-free layers (SD1.x/2.x)
        impls[SHARED] = lambda: ours(inp["x"], None, inp["t"], inp["context"], None, encoded_hint=enc, shared=(0, 0)).as_list()
    weights = sum(p.numel() * p.element_size() for p in ours.parameters())
    return impls, weights


def family_section(
    family: str, size: int, dtype: torch.dtype, comfy: Any, use_diffusers: bool, missing: dict
) -> dict[str, Memory]:
    impls, weights = implementations(family, size, dtype, comfy, use_diffusers, missing)
    name = str(dtype).removeprefix("torch.")
    print(
        f"\n## {family}: batch 2, {size}x{size} px, {name}; one ControlNet's weights: {weights / MIB:.0f} MiB (not counted)"
    )
    found = {impl: measure(fn) for impl, fn in impls.items()}
    print(f"{'implementation':<20} {'peak MiB':>9} {'outputs MiB':>12} {'peak - outputs':>15}  peak reached at")
    for impl, m in found.items():
        print(
            f"{impl:<20} {m.peak / MIB:>9.1f} {m.outputs / MIB:>12.1f} {(m.peak - m.outputs) / MIB:>15.1f}  {m.peak_at}"
        )
    for peer in ("comfyui", "diffusers"):
        if peer in found:
            for mine in ("ours", "ours, hint in call"):
                print(f"  {mine} / {peer}: peak {found[mine].peak / found[peer].peak:.2f}x")
    print(
        "a CUDA-graph recording of ours keeps its peak reserved between replays "
        f"({found['ours'].peak / MIB:.1f} MiB, of which {found['ours'].outputs / MIB:.1f} MiB are the outputs it hands out)"
    )
    return found


def step_variants(family: str, size: int, dtype: torch.dtype, comfy: Any) -> dict[str, Callable[[], object]]:
    """One sampling model call (batch 2: cond + uncond) of ComfyUI's UNet with each way of adding ControlNets.

    ComfyUI's path: its ControlNet's forward, its own ``control_merge`` (strength applied in place, a chain summed
    into new tensors). Ours: our forward and our ``merge_controls`` (in place). Ours graph: a recording holds its
    working memory (its peak: scratch and static outputs) for the whole run and a replay allocates nothing, so the
    scratch and outputs are made once and held through the step. x2: two ControlNets chained.
    """
    from affordance.nodes.control import merge_controls

    config = C.config_for(family)
    cfg = comfy_unet_config(config)
    unet_cfg = dict(cfg, num_classes="sequential") if config.adm_in_channels else cfg  # SDXL's label input
    with torch.device(META):
        ours = ControlNet(config).to(dtype).eval()
    inp, enc = meta_inputs(config, size, dtype)
    x, hint, t, ctx, y = inp["x"], inp["hint"], inp["t"], inp["context"], inp["y"]
    unet_cls = comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel
    unet = unet_cls(**unet_cfg, dtype=dtype, device=META, operations=comfy.ops.disable_weight_init).eval()
    ccfg = {k: v for k, v in cfg.items() if k != "out_channels"}
    theirs = comfy.cldm.cldm.ControlNet(
        **ccfg, hint_channels=config.hint_channels, dtype=dtype, device=META, operations=comfy.ops.disable_weight_init
    ).eval()
    merger = comfy.controlnet.ControlBase()  # its control_merge: strength 1, constant, no pooling
    scratch = ours_working_memory(config, size, dtype)
    scratch_bytes = scratch.peak - scratch.outputs
    with torch.no_grad(), fused_attention():
        shapes = [o.shape for o in ours(x, None, t, ctx, y, encoded_hint=enc).as_list()]

    def comfy_control(prev: dict | None) -> dict:
        out = theirs(x=x, hint=hint, timesteps=t, context=ctx, y=y)
        return merger.control_merge(out, prev, None)

    def our_control(prev: dict | None) -> dict:
        res = [r.mul_(1.0) for r in ours(x, None, t, ctx, y, encoded_hint=enc).as_list()]
        return merge_controls({"input": [], "middle": res[-1:], "output": res[:-1]}, prev)

    def recording() -> Callable[[dict | None], dict]:
        held = torch.empty(scratch_bytes, dtype=torch.uint8, device=META)  # the recording's scratch
        static = [torch.empty(shape, dtype=dtype, device=META) for shape in shapes]

        def replay(prev: dict | None, _scratch: torch.Tensor = held) -> dict:  # holds the scratch while it exists
            res = [r.mul_(1.0) for r in static]  # a replay rewrites its static outputs; scaled in place
            return merge_controls({"input": [], "middle": res[-1:], "output": res[:-1]}, prev)

        return replay

    def step(controls: list[Callable[[dict | None], dict]]) -> list[torch.Tensor]:
        control = None
        for make in controls:
            control = make(control)
        return [unet(x, timesteps=t, context=ctx, y=y, control=control)]

    def graphs(n: int) -> Callable[[], list[torch.Tensor]]:
        return lambda: step([recording() for _ in range(n)])

    return {
        "UNet only": lambda: step([]),
        "ComfyUI ControlNet": lambda: step([comfy_control]),
        "ours": lambda: step([our_control]),
        "ours graph": graphs(1),
        "ComfyUI ControlNet x2": lambda: step([comfy_control, comfy_control]),
        "ours x2": lambda: step([our_control, our_control]),
        "ours graph x2": graphs(2),
    }


def step_section(family: str, size: int, dtype: torch.dtype, comfy: Any, missing: dict[str, str]) -> dict[str, Memory]:
    """The activations' peak of one sampling model call per way of adding ControlNets (needs ComfyUI's UNet)."""
    variants = C.try_build(f"sampling step ({family})", missing, lambda: step_variants(family, size, dtype, comfy))
    if variants is None:
        return {}
    print(f"\n### {family}: one sampling model call (ComfyUI's UNet, batch 2: cond + uncond), activations only")
    found = {name: measure(fn) for name, fn in variants.items()}
    base = {"": found["ComfyUI ControlNet"].peak, " x2": found["ComfyUI ControlNet x2"].peak}
    print(f"{'variant':<24} {'peak MiB':>9} {'vs ComfyUI':>11}  peak reached at")
    for name, m in found.items():
        ref = base[" x2" if name.endswith(" x2") else ""]
        vs = "" if name == "UNet only" else f"{m.peak / ref:.3f}x"
        print(f"{name:<24} {m.peak / MIB:>9.1f} {vs:>11}  {m.peak_at}")
    return found


def main(argv: list[str] | None = None) -> dict[str, dict[str, Memory]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", choices=["sd15", "sd21", "sdxl"], default=["sd15", "sdxl"])
    p.add_argument("--size", type=int, help="pixels (default: 512, SDXL 1024)")
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    p.add_argument("--comfyui", help="ComfyUI checkout (default: $COMFYUI_PATH)")
    p.add_argument("--no-diffusers", action="store_true", help="leave diffusers out")
    args = p.parse_args(argv)
    if args.size is not None and (args.size <= 0 or args.size % 64):
        p.error(f"--size must be a positive multiple of 64 (three downsamplings of the latent), got {args.size}")
    dtype = getattr(torch, args.dtype)
    C.print_header(
        "bench_memory: working memory of one ControlNet step (meta device, attention fused)", torch.device("cpu")
    )
    print("computed on PyTorch's meta device: exact tensor sizes, no data, no GPU needed")
    comfy, use_diffusers, missing = C.cpu_peers(args.comfyui, not args.no_diffusers)
    found = {}
    with C.comfy_sdpa(comfy):  # ComfyUI's torch-SDPA attention, as on GPUs (then modelled as fused like the rest)
        for family in args.families:
            size = args.size or (1024 if family == "sdxl" else 512)
            found[family] = family_section(family, size, dtype, comfy, use_diffusers, missing)
            if comfy is not None:
                found[f"{family} step"] = step_section(family, size, dtype, comfy, missing)
    for name, why in missing.items():
        print(f"not measured: {name}: {why}")
    return found


if __name__ == "__main__":
    main()

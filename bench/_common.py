"""Helpers shared by the benchmark scripts.

The scripts import it as ``affordance.bench._common`` (the pack is installed, or registered by the tests),
so neither the repository root nor ``bench/`` has to be on ``sys.path``. ComfyUI is only ever imported from a checkout given on
the command line or in ``COMFYUI_PATH``: it is a peer we measure against, never a dependency.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

import torch

from affordance.controlnet import PRESETS, ControlNet, ControlNetConfig
from affordance.controlnet.keymap import original_to_diffusers
from affordance.controlnet.layers import timestep_embedding


def python_command() -> list[str]:
    """This interpreter, for a child process, with ``-P`` when we run with it (Python 3.11+: the script's
    folder stays off ``sys.path``); Python 3.10 has no ``-P``."""
    return [sys.executable, "-P"] if getattr(sys.flags, "safe_path", False) else [sys.executable]


def _rss_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of this process in bytes, from ``/proc/self/status`` (Linux)."""
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def require_peak_memory() -> None:
    """Exit with a message where a process's peak memory cannot be read (not Linux)."""
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("needs Linux (/proc/self/status and clear_refs) to read a process's peak memory")


def report_peak(call: Callable[[], object]) -> None:
    """Run ``call`` and print one JSON line: its peak RSS above the RSS just before it, and its seconds.

    For a child process of :func:`peak_in_child`: what exists before ``call`` (inputs, networks) is not counted.
    """
    base = _rss_status()["VmRSS"]
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:  # restart the peak (VmHWM) from here
        f.write("5")
    t0 = time.perf_counter()
    call()
    seconds = time.perf_counter() - t0
    print(json.dumps({"peak": _rss_status()["VmHWM"] - base, "seconds": seconds}))


def peak_in_child(script: str, *args: object) -> dict[str, float] | str:
    """Run ``script --child ARGS...`` in a fresh process; its :func:`report_peak` line, or why it failed."""
    cmd = python_command() + [str(Path(script).resolve()), "--child", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return f"failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    return json.loads(lines[-1])


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def pick_device(name: str | None) -> torch.device:
    """``--device`` value, or CUDA when available, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """A human name of the device that runs the measurement."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"{cpu_name()} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads)"


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_header(title: str, device: torch.device) -> None:
    """Date, machine, device and versions: the first lines of every result file."""
    print(f"# {title}")
    print(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"device: {device_name(device)}")
    if device.type == "cuda":
        print(f"host CPU: {cpu_name()}")
    print_load_average("start")
    print(f"python {platform.python_version()} ({sys.executable}), torch {torch.__version__}")
    print(f"affordance: {package_version()}")


def package_version() -> str:
    """Where ``affordance`` was imported from, its git commit and whether ``controlnet/`` has local edits."""
    import affordance

    root = Path(affordance.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "controlnet"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(root)
    if not head:
        return str(root)
    return f"{root} at {head}" + (" with uncommitted changes in controlnet/" if dirty else "")


def config_for(family: str) -> ControlNetConfig:
    """The preset of a family name (``sd15``, ``sd21``, ``sdxl``)."""
    return PRESETS[family]


def random_state_dict(
    config: ControlNetConfig,
    *,
    seed: int = 1234,
    std: float = 0.02,
    zero_conv_std: float = 0.05,
    dtype: torch.dtype = torch.float16,
) -> dict[str, torch.Tensor]:
    """Seeded random weights for a full-size ControlNet, in the original (lllyasviel) key layout.

    Every weight and bias is ``normal(0, std)``; the zero convolutions get ``zero_conv_std`` so the
    residuals are not all zero; norm layers get weight 1, bias 0. Each tensor has its own generator
    (seeded from ``seed`` and its index in sorted key order), so the values do not depend on the order
    in which tensors are made. Nothing is allocated for the model itself (built on ``meta``).
    """
    with torch.device("meta"):
        model = ControlNet(config)
    zero_convs = {"zero_convs.": zero_conv_std, "middle_block_out.": zero_conv_std}
    return random_module_weights(model, seed=seed, std=std, dtype=dtype, std_by_prefix=zero_convs)


class ForwardInputs(TypedDict):
    """One ControlNet call's inputs: latent ``x`` (B, C, H/8, W/8), ``hint`` (B, 3, H, W) in [0, 1], timesteps
    ``t`` (B,), text ``context`` (B, 77, D); SDXL also ``y`` (B, adm) and diffusers' ``added`` conditioning,
    both ``None`` otherwise."""

    x: torch.Tensor
    hint: torch.Tensor
    t: torch.Tensor
    context: torch.Tensor
    y: torch.Tensor | None
    added: dict[str, torch.Tensor] | None


def make_inputs(
    config: ControlNetConfig, batch: int, size: int, device: torch.device, dtype: torch.dtype, seed: int
) -> ForwardInputs:
    """Latent, hint, timesteps, text context and (SDXL) pooled text + size conditioning, seeded."""
    g = torch.Generator().manual_seed(seed)
    latent = size // 8
    x = torch.randn(batch, config.in_channels, latent, latent, generator=g)
    hint = torch.rand(batch, config.hint_channels, size, size, generator=g)
    t = torch.linspace(999, 1, batch).round()  # integer timesteps, exact in fp16 (ComfyUI passes the model dtype)
    context = torch.randn(batch, 77, config.context_dim, generator=g)
    y: torch.Tensor | None = None
    added: dict[str, torch.Tensor] | None = None
    if config.adm_in_channels is not None:
        # SDXL: y = pooled text (1280) + sinusoidal embeddings (256 each) of the 6 size/crop values, which
        # is how ComfyUI builds it and what diffusers computes from text_embeds and time_ids.
        time_ids = torch.tensor([[size, size, 0, 0, size, size]] * batch, dtype=torch.float32)
        pooled_width = config.adm_in_channels - 6 * 256
        text_embeds = torch.randn(batch, pooled_width, generator=g)
        y = torch.cat([text_embeds, timestep_embedding(time_ids.flatten(), 256).reshape(batch, -1)], dim=-1)
        y = y.to(device=device, dtype=dtype)
        added = {k: v.to(device=device, dtype=dtype) for k, v in (("text_embeds", text_embeds), ("time_ids", time_ids))}
    return ForwardInputs(
        x=x.to(device=device, dtype=dtype),
        hint=hint.to(device=device, dtype=dtype),
        t=t.to(device=device, dtype=dtype),
        context=context.to(device=device, dtype=dtype),
        y=y,
        added=added,
    )


def build_ours(config: ControlNetConfig, sd: dict[str, torch.Tensor], device: torch.device) -> ControlNet:
    with torch.device("meta"):
        model = ControlNet(config)
    model.load_state_dict(sd, strict=True, assign=True)  # shares the tensors of sd, no copy
    return model.to(device).eval().requires_grad_(False)


def build_comfy(comfy: Any, sd: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    control = comfy.controlnet.load_controlnet_state_dict(sd, model_options={"dtype": dtype})
    if control is None:
        raise RuntimeError("ComfyUI did not recognise the weights as a ControlNet")
    return control.control_model.to(device).eval().requires_grad_(False)


def build_diffusers(config: ControlNetConfig, sd: dict[str, torch.Tensor], device: torch.device) -> Any:
    from diffusers import ControlNetModel

    from affordance.controlnet import diffusers_config

    cfg = {k: v for k, v in diffusers_config(config).items() if not k.startswith("_")}
    dsd = original_to_diffusers(sd)
    try:
        with torch.device("meta"):
            model = ControlNetModel.from_config(cfg)
        model.load_state_dict(dsd, strict=True, assign=True)
    except Exception:  # some diffusers versions cannot be built on "meta": build normally, then copy
        model = ControlNetModel.from_config(cfg).to(next(iter(sd.values())).dtype)
        model.load_state_dict(dsd, strict=True)
    return model.to(device).eval().requires_grad_(False)


def diffusers_multi_controlnet() -> Any:
    """diffusers' ``MultiControlNetModel`` class: exported at the top level by newer releases, kept only under
    ``diffusers.pipelines.controlnet`` by older ones (0.30-0.31, which the test extra allows)."""
    import diffusers

    if hasattr(diffusers, "MultiControlNetModel"):
        return diffusers.MultiControlNetModel
    from diffusers.pipelines.controlnet.multicontrolnet import MultiControlNetModel

    return MultiControlNetModel


def comfyui_root(arg: str | None) -> Path | None:
    """``--comfyui`` or ``COMFYUI_PATH``; ``None`` when neither is set."""
    value = arg or os.environ.get("COMFYUI_PATH")
    return Path(value).expanduser().resolve() if value else None


def import_comfy(root: Path | None, device: torch.device, *, pytorch_attention: bool = False) -> tuple[Any, str]:
    """Import ComfyUI's modules from a checkout, configured for ``device``.

    Returns:
        ``(comfy package, "")`` or ``(None, why it is unavailable)``.
    """
    if root is None:
        return None, "no ComfyUI checkout given (--comfyui PATH or COMFYUI_PATH)"
    if not (root / "comfy" / "cldm" / "cldm.py").is_file():
        return None, f"{root} is not a ComfyUI checkout (no comfy/cldm/cldm.py)"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # the host's own root, never ours
    try:
        import comfy.options  # noqa: TID251 (a benchmark peer, never imported by the pack)

        comfy.options.enable_args_parsing(False)  # ComfyUI must not parse our argv
        import comfy.cli_args  # noqa: TID251

        comfy.cli_args.args.cpu = device.type == "cpu"
        if pytorch_attention:
            comfy.cli_args.args.use_pytorch_cross_attention = True
        import comfy.cldm.cldm  # noqa: TID251
        import comfy.controlnet  # noqa: TID251
        import comfy.ldm.modules.attention  # noqa: TID251
        import comfy.model_management  # noqa: TID251, F401
    except Exception as exc:  # any failure means "peer unavailable"
        return None, f"importing ComfyUI from {root} failed in this interpreter: {type(exc).__name__}: {exc}"
    return comfy, ""


def cpu_peers(comfyui: str | None, want_diffusers: bool) -> tuple[Any, bool, dict[str, str]]:
    """ComfyUI (configured for the CPU) and diffusers as peers of a CPU-side benchmark, each if available.

    Returns ``(comfy package or None, whether diffusers is used, {peer: why it is missing})``; prints
    diffusers' version when it is used.
    """
    missing: dict[str, str] = {}
    comfy, why = import_comfy(comfyui_root(comfyui), torch.device("cpu"))
    if comfy is None:
        missing["comfyui"] = why
    if not want_diffusers:
        return comfy, False, missing
    try:
        import diffusers
    except ImportError as exc:
        missing["diffusers"] = f"not importable: {exc}"
        return comfy, False, missing
    print(f"diffusers: {diffusers.__version__}")
    return comfy, True, missing


def try_build(what: str, missing: dict[str, str], build: Callable[[], Any]) -> Any:
    """``build()``, or ``None`` with the reason recorded in ``missing[what]`` (a peer that cannot be built is
    reported and the rest of a benchmark still runs)."""
    try:
        return build()
    except Exception as exc:
        missing[what] = f"building it failed: {type(exc).__name__}: {exc}"
        return None


def step_calls(
    ours: ControlNet, encoded: torch.Tensor, comfy_model: Any, diffusers_model: Any, inputs: ForwardInputs
) -> dict[str, Callable[[], list[torch.Tensor]]]:
    """One ControlNet step of each implementation, each returning its residuals (input blocks, middle last).

    ``ours`` runs as our sampler integration does (``encoded``: its hint encoded once) and with the hint
    encoded in the call, like for like with the peers, which encode it at every step; a ``None`` peer is left
    out. ``inputs`` as :func:`make_inputs` returns them.
    """
    x, hint, t, ctx, y = inputs["x"], inputs["hint"], inputs["t"], inputs["context"], inputs["y"]
    calls: dict[str, Callable[[], list[torch.Tensor]]] = {
        "ours": lambda: ours(x, None, t, ctx, y, encoded_hint=encoded).as_list(),
        "ours, hint in call": lambda: ours(x, hint, t, ctx, y).as_list(),
    }
    if comfy_model is not None:

        def run_comfy() -> list[torch.Tensor]:
            out = comfy_model(x=x, hint=hint, timesteps=t, context=ctx, y=y)
            return [*out["output"], *out["middle"]]

        calls["comfyui"] = run_comfy
    if diffusers_model is not None:

        def run_diffusers() -> list[torch.Tensor]:
            down, mid = diffusers_model(
                x,
                t,
                encoder_hidden_states=ctx,
                controlnet_cond=hint,
                added_cond_kwargs=inputs["added"],
                return_dict=False,
            )
            return [*down, mid]

        calls["diffusers"] = run_diffusers
    return calls


@contextlib.contextmanager
def comfy_sdpa(comfy: Any) -> Iterator[str]:
    """ComfyUI's attention set to its torch-SDPA function (what it uses on GPUs) for the block, then restored.

    ComfyUI picks its attention function when its attention module is imported (sub-quadratic on the CPU) and
    reads the module's global at every call, so the global is swapped here, and put back (ComfyUI may be
    imported in the same process for other work, e.g. the tests).
    """
    if comfy is None:
        yield ""
        return
    attn = comfy.ldm.modules.attention
    saved = attn.optimized_attention, attn.optimized_attention_masked
    attn.optimized_attention = attn.optimized_attention_masked = attn.attention_pytorch
    try:
        yield attn.optimized_attention.__name__
    finally:
        attn.optimized_attention, attn.optimized_attention_masked = saved


def print_load_average(when: str) -> None:
    """The load average, so that a run disturbed by other processes shows it."""
    if hasattr(os, "getloadavg"):
        print(f"load average at {when} (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


def timed(fn: Callable[[], object], device: torch.device, rounds: int) -> float:
    """Median wall time of ``fn()`` over ``rounds`` calls after one warm-up call (GPU work synchronised)."""
    fn()
    sync(device)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return median(times)


def median(values: list[float]) -> float:
    """Median without numpy."""
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def random_module_weights(
    module: torch.nn.Module,
    *,
    seed: int,
    std: float = 0.02,
    dtype: torch.dtype = torch.float32,
    std_by_prefix: dict[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Seeded random values for every tensor of ``module``'s state dict (any architecture, e.g. a UNet).

    Norm layers get weight 1 and bias 0, everything else ``normal(0, std)`` (or the std of the first
    ``std_by_prefix`` key that starts the tensor's name); tensor ``i`` in sorted key order has its own
    generator, so the values do not depend on the order in which tensors are made. ``module`` may live on
    ``meta`` (only shapes are read).
    """
    norms = {
        f"{name}.{p}" if name else p
        for name, m in module.named_modules()
        if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm))
        for p, _ in m.named_parameters(recurse=False)
    }
    out: dict[str, torch.Tensor] = {}
    for i, (key, ref) in enumerate(sorted(module.state_dict().items())):
        if key in norms:
            t = torch.ones(ref.shape) if key.endswith("weight") else torch.zeros(ref.shape)
        else:
            s = next((v for prefix, v in (std_by_prefix or {}).items() if key.startswith(prefix)), std)
            t = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + i)).mul_(s)
        out[key] = t.to(dtype)
    return out


def interleaved_ms(
    impls: Mapping[str, Callable[[], object]], device: torch.device, *, warmup: int, rounds: int, calls: int
) -> dict[str, list[float]]:
    """Milliseconds per call of each implementation, one value per round, implementations interleaved per round.

    Each implementation first runs ``warmup`` untimed calls; GPU work is synchronised around every timed block.
    """
    for fn in impls.values():
        for _ in range(warmup):
            fn()
    sync(device)
    out: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            sync(device)
            out[name].append((time.perf_counter() - start) / calls * 1000)
    return out


def max_abs_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float | None:
    """Largest ``|a - b|`` over lists of tensors (in fp32); ``None`` when the counts or shapes differ."""
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return None
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))

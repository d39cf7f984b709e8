"""Load a full-size ControlNet file: time and RAM of our loader against the common pattern and ComfyUI.

Writes a full-size SD1.5 ControlNet (361 M parameters, seeded random weights) as an fp16 safetensors
file of about 723 MB (689 MiB) in a temporary folder, or uses ``--file`` (any file ours and ComfyUI load,
e.g. a ``.pth``; the naive variants read safetensors only). Every variant then runs several times,
each time in a fresh Python process, so its peak RSS is its own:

  ours         affordance ``load_controlnet(path)``: stored dtype, the ControlNet's tensors read once into
               the model's own memory (the model owns its weights)
  ours-fp32    affordance ``load_controlnet(path, dtype=torch.float32)`` (a conversion)
  naive-fp16   ``ControlNet(cfg).half()`` + ``safetensors.torch.load_file`` + ``load_state_dict``
  naive-fp32   ``ControlNet(cfg)`` + ``safetensors.torch.load_file`` + ``load_state_dict`` (the common
               pattern: randomly initialise, then overwrite)
  comfy        ComfyUI ``comfy.controlnet.load_controlnet(path)`` with its own dtype choice (fp32 on
               ``--cpu`` for fp16 weights, fp16 on a modern GPU)
  comfy-fp16   the same with ``model_options={"dtype": torch.float16}`` (the stored dtype kept)

The ComfyUI variants run when ``--comfyui PATH`` (or ``COMFYUI_PATH``) points to a checkout that imports
in this interpreter; run the script with ComfyUI's Python for them (see bench/README.md).

Memory is read in the child process: its peak RSS (``VmHWM`` of ``/proc/self/status``; ``ru_maxrss``
from ``getrusage`` too, which Linux seeds at ``exec`` with the RSS of the parent at ``fork``, so the
parent stays small and writes the file in another child), and RssAnon (private memory, polled every 2 ms
for its peak) against RssFile (file pages mapped into the process: shared page cache). Each figure is the
increase over the child's RSS after its imports. The file is read once before the runs, so every
variant reads it from the page cache.

  python -P bench/bench_load.py [--file PATH] [--repeats 3] [--device cpu|cuda] [--comfyui PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from affordance.bench import _common as C

VARIANTS: dict[str, str] = {
    "ours": "affordance load_controlnet(path): stored dtype, tensors read once into the model's memory",
    "ours-fp32": "affordance load_controlnet(path, dtype=torch.float32)",
    "naive-fp16": "ControlNet(cfg).half() + safetensors load_file + load_state_dict",
    "naive-fp32": "ControlNet(cfg) + safetensors load_file + load_state_dict",
    "comfy": "ComfyUI comfy.controlnet.load_controlnet(path), its own dtype choice",
    "comfy-fp16": "ComfyUI load_controlnet(path, model_options={'dtype': torch.float16})",
}
OURS = ("ours", "ours-fp32")
MiB = 1024 * 1024


# ----------------------------------------------------------------------------- child process


def _status() -> dict[str, int]:
    """Memory fields of ``/proc/self/status`` in bytes (empty off Linux)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def _maxrss() -> int:
    """Peak RSS of this process in bytes (``ru_maxrss`` is in KiB on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


class _Sampler(threading.Thread):
    """Polls ``/proc/self/status`` to catch the peak of private (anonymous) memory, which no counter keeps."""

    def __init__(self, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_anon = 0
        self.peak_rss = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            s = _status()
            self.peak_anon = max(self.peak_anon, s.get("RssAnon", 0))
            self.peak_rss = max(self.peak_rss, s.get("VmRSS", 0))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        s = _status()  # the last state counts too
        self.peak_anon = max(self.peak_anon, s.get("RssAnon", 0))
        self.peak_rss = max(self.peak_rss, s.get("VmRSS", 0))


def _file_mapping(path: Path) -> dict[str, int]:
    """Rss and Anonymous (pages copied on write) of this process's mappings of ``path``, in bytes."""
    target = str(path.resolve())
    totals = {"Rss": 0, "Anonymous": 0, "mappings": 0}
    current = False
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as f:
            for line in f:
                first = line.split(maxsplit=5)
                if len(first) >= 5 and "-" in first[0] and ":" in first[3]:  # a mapping header line
                    current = len(first) == 6 and first[5].strip() == target
                    totals["mappings"] += current
                elif current and line.startswith(("Rss:", "Anonymous:")):
                    key = line.split(":", 1)[0]
                    totals[key] += int(line.split()[1]) * 1024
    except OSError:
        pass
    return totals


def _loader(
    variant: str, path: Path, family: str, device: torch.device, comfy_root: Path | None
) -> Callable[[], torch.nn.Module]:
    """Import what ``variant`` needs (before the baseline is taken) and return its load function."""
    if variant in OURS:
        from affordance.controlnet import load_controlnet

        dtype = torch.float32 if variant == "ours-fp32" else None

        def load_ours() -> torch.nn.Module:
            model, _report = load_controlnet(path, dtype=dtype, device=device)
            return model

        return load_ours
    if variant.startswith("naive"):
        from safetensors.torch import load_file

        from affordance.controlnet import ControlNet

        config = C.config_for(family)
        half = variant == "naive-fp16"

        def load_naive() -> torch.nn.Module:
            model = ControlNet(config)
            if half:
                model = model.half()
            model.load_state_dict(load_file(path))
            return model.to(device).eval()

        return load_naive
    comfy, why = C.import_comfy(comfy_root, device)
    if comfy is None:
        raise RuntimeError(why)
    options = {"dtype": torch.float16} if variant == "comfy-fp16" else {}

    def load_comfy() -> torch.nn.Module:
        control = comfy.controlnet.load_controlnet(str(path), model_options=options)
        if control is None:
            raise RuntimeError("ComfyUI did not recognise the file as a ControlNet")
        return control.control_model.to(device)

    return load_comfy


def child(args: argparse.Namespace) -> None:
    device = C.pick_device(args.device)
    path = Path(args.file)
    try:
        load = _loader(args.child, path, args.family, device, C.comfyui_root(args.comfyui))
    except Exception as exc:  # reported to the parent as "peer unavailable"
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return
    if device.type == "cuda":
        torch.zeros(1, device=device)  # create the CUDA context before the baseline
        torch.cuda.reset_peak_memory_stats(device)
    gc.collect()
    base = _status()
    sampler = _Sampler()
    sampler.start()
    t0 = time.perf_counter()
    model = load()
    C.sync(device)
    seconds = time.perf_counter() - t0
    sampler.stop()
    maxrss = _maxrss()
    end = _status()
    params = list(model.parameters())
    base_rss = base.get("VmRSS", 0)
    peak = end.get("VmHWM", maxrss)
    result = {
        "seconds": seconds,
        "dtype": str(params[0].dtype).removeprefix("torch."),
        "device": str(params[0].device),
        "params": sum(p.numel() for p in params),
        "peak_rss_increase": max(peak, sampler.peak_rss) - base_rss,
        "peak_rss_reliable": peak > base.get("VmHWM", 0),
        "ru_maxrss_increase": maxrss - base_rss,
        "peak_private_increase": sampler.peak_anon - base.get("RssAnon", 0),
        "end_private_increase": end.get("RssAnon", 0) - base.get("RssAnon", 0),
        "end_file_backed_increase": end.get("RssFile", 0) - base.get("RssFile", 0),
        "file_mapping": _file_mapping(path),
        "cuda_peak_allocated": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0,
    }
    print(json.dumps(result))


# ----------------------------------------------------------------------------- parent process


def write_random_file(path: Path, family: str) -> None:
    """Write a seeded random fp16 ControlNet of ``family`` to ``path`` (run in a child process)."""
    from safetensors.torch import save_file

    sd = C.random_state_dict(C.config_for(family), dtype=torch.float16)
    save_file(sd, str(path), metadata={"note": "seeded random weights for benchmarks; NOT a trained model"})


def warm_read(path: Path) -> float:
    """Read the whole file once so that every variant finds it in the page cache; returns MiB/s."""
    t0 = time.perf_counter()
    with path.open("rb") as f:
        while f.read(16 * MiB):
            pass
    return path.stat().st_size / MiB / (time.perf_counter() - t0)


def run_child(variant: str, args: argparse.Namespace, path: Path, device: torch.device) -> dict:
    cmd = C.python_command() + [str(Path(__file__).resolve()), "--child", variant, "--file", str(path), "--family", args.family]
    cmd += ["--device", str(device)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    root = C.comfyui_root(args.comfyui)
    if root is not None:
        cmd += ["--comfyui", str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--file",
        help="an existing ControlNet file (default: write one); the naive variants read safetensors only, ours and "
        "ComfyUI's any file they load (e.g. a .pth zip checkpoint)",
    )
    parser.add_argument(
        "--family", default="sd15", choices=["sd15", "sd21", "sdxl"], help="architecture of the written file"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per variant (median reported)")
    parser.add_argument("--device", help="where the loaded model ends up (default: cuda if available, else cpu)")
    parser.add_argument("--comfyui", help="ComfyUI checkout for the ComfyUI variants (default: $COMFYUI_PATH)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per child process")
    parser.add_argument("--threads", type=int, help="torch CPU threads in every process (default: torch's choice)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--write-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return
    if args.write_file:
        write_random_file(Path(args.write_file), args.family)
        return

    device = C.pick_device(args.device)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    C.print_header("bench_load: ControlNet file loading (time and RAM)", device)

    with tempfile.TemporaryDirectory(prefix="affordance-bench-") as tmp:
        if args.file:
            path = Path(args.file).resolve()
            print(f"file: {path} (given)")
        else:
            path = Path(tmp) / f"random_{args.family}_controlnet_fp16.safetensors"
            t0 = time.perf_counter()
            cmd = C.python_command() + [str(Path(__file__).resolve()), "--write-file", str(path), "--family", args.family]
            subprocess.run(cmd, check=True, timeout=args.timeout)
            spent = time.perf_counter() - t0
            print(f"file: {args.family} ControlNet, seeded random weights, fp16 safetensors, written in {spent:.1f} s")
        size = path.stat().st_size
        print(f"file size: {size / 1e6:.0f} MB = {size / MiB:.1f} MiB")
        print(
            f"page cache: the file was read once before the runs ({warm_read(path):.0f} MiB/s), so every variant "
            "reads it from the page cache; dropping the OS cache is not attempted."
        )
        root = C.comfyui_root(args.comfyui)
        print(f"ComfyUI: {root if root else 'not given (--comfyui PATH or COMFYUI_PATH); its variants are skipped'}")
        if root is None:
            variants = [v for v in variants if not v.startswith("comfy")]
        print(
            f"runs: {args.repeats} fresh processes per variant, interleaved; medians reported; model ends on {device}"
        )
        print()

        results: dict[str, list[dict]] = {v: [] for v in variants}
        errors: dict[str, str] = {}
        for r in range(args.repeats):
            for v in variants:
                if v in errors:
                    continue
                res = run_child(v, args, path, device)
                if "error" in res:
                    errors[v] = res["error"]
                    print(f"  [{r + 1}/{args.repeats}] {v}: unavailable: {res['error']}")
                    continue
                results[v].append(res)
                print(
                    f"  [{r + 1}/{args.repeats}] {v}: {res['seconds']:.2f} s, peak RSS +{res['peak_rss_increase'] / MiB:.0f} MiB, "
                    f"peak private +{res['peak_private_increase'] / MiB:.0f} MiB",
                    flush=True,
                )
        print()
        report(results, errors, size, device)
        C.print_load_average("end")


def _med(rows: list[dict], key: str) -> float:
    return C.median([float(r[key]) for r in rows])


def report(results: dict[str, list[dict]], errors: dict[str, str], size: int, device: torch.device) -> None:
    done = {v: rows for v, rows in results.items() if rows}
    print(
        f"{'variant':<11} {'dtype':<8} {'load s':>7} {'peak RSS +MiB':>13} {'x file':>6} {'peak private +MiB':>17} "
        f"{'x file':>6} {'private at end +MiB':>19} {'file pages at end MiB':>21}"
    )
    for v, rows in done.items():
        peak, priv = _med(rows, "peak_rss_increase"), _med(rows, "peak_private_increase")
        print(
            f"{v:<11} {rows[0]['dtype']:<8} {_med(rows, 'seconds'):>7.2f} {peak / MiB:>13.0f} {peak / size:>6.2f} "
            f"{priv / MiB:>17.0f} {priv / size:>6.2f} {_med(rows, 'end_private_increase') / MiB:>19.0f} "
            f"{_med(rows, 'end_file_backed_increase') / MiB:>21.0f}"
        )
        if not all(r["peak_rss_reliable"] for r in rows):
            print(f"  note: {v}: the peak RSS did not grow during the load in some runs (the import peak was higher)")
    for v, why in errors.items():
        print(f"{v:<11} missing: {why}")
    if device.type == "cuda":
        for v, rows in done.items():
            print(f"  {v}: CUDA peak allocated {_med(rows, 'cuda_peak_allocated') / MiB:.0f} MiB")
    print()
    print("peak RSS = VmHWM of the child minus its RSS after imports; it counts file pages mapped into the")
    print("process (shared, reclaimable page cache) as well as private memory. peak private = RssAnon polled")
    print(
        "every 2 ms. ru_maxrss minus the same baseline (median MiB): "
        + ", ".join(f"{v} {_med(rows, 'ru_maxrss_increase') / MiB:.0f}" for v, rows in done.items())
    )
    for v, rows in done.items():
        m = rows[0]["file_mapping"]
        if m["mappings"]:
            print(
                f"{v}: after the load the process still maps the file ({m['mappings']} mapping(s)): "
                f"{m['Rss'] / MiB:.0f} MiB resident, {m['Anonymous'] / MiB:.0f} MiB of it copied on write"
            )
    print()
    print("ratios (ours / peer with the same resulting dtype; < 1 means ours is faster or smaller):")
    for ours in OURS:
        if ours not in done:
            continue
        dtype = done[ours][0]["dtype"]
        for peer, rows in done.items():
            if peer in OURS or rows[0]["dtype"] != dtype:
                continue
            t = _med(done[ours], "seconds") / _med(rows, "seconds")
            peak = _med(done[ours], "peak_rss_increase") / max(_med(rows, "peak_rss_increase"), 1)
            priv = _med(done[ours], "peak_private_increase") / max(_med(rows, "peak_private_increase"), 1)
            speed = f"ours {1 / t:.1f}x faster" if t <= 1 else f"ours {t:.1f}x slower"
            print(
                f"  {ours} vs {peer} ({dtype}): time {t:.2f}x ({speed}), peak RSS increase {peak:.2f}x, "
                f"peak private {priv:.2f}x"
            )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

"""The main job of the pack, from the command line.

- ``python -m affordance`` (no arguments): both demos below, on built-in data.
- ``python -m affordance inspect [FILE ...]``: format, family, architecture, residual shapes and keys of
  each ControlNet file; with no file, a small ControlNet written in every supported format.
- ``python -m affordance hints [IMAGE] [--out DIR] [--resolution N]``: every hint the pack makes, from
  an image (a built-in scene when none is given), written as PNGs with a contact sheet.
- ``python -m affordance annotators FOLDER``: size, SHA-256 (compared with the official file's) and a load
  check of every official annotator file found in FOLDER (e.g. ``ComfyUI/models/annotators``).
- ``python -m affordance convert SRC DST --to {diffusers,original}``: layout conversion.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("affordance.main")


def _inspect(files: Sequence[str]) -> int:
    from .controlnet.errors import ControlNetError
    from .controlnet.inspection import demo_files, inspect_file

    failures = 0
    with tempfile.TemporaryDirectory(prefix="affordance-demo-") as tmp:
        paths = [Path(f) for f in files] or demo_files(Path(tmp))
        if not files:
            log.info("no file given: inspecting a small ControlNet written in each format to %s\n", tmp)
        for path in paths:
            try:
                report = inspect_file(path)
            except (ControlNetError, FileNotFoundError) as exc:
                failures += 1
                log.error("file:        %s\nerror:       %s: %s\n", path, type(exc).__name__, exc)
                continue
            log.info("%s\n", "\n".join(report.lines()))
    log.info("%d file(s) inspected, %d rejected", len(paths) - failures, failures)
    return 1 if failures else 0


def _hints(argv: Sequence[str]) -> int:
    import time

    import numpy as np
    import torch
    from PIL import Image

    from .preprocessors import GALLERY, PreprocessorError
    from .preprocessors.sheet import contact_sheet, demo_scene, save_png

    parser = argparse.ArgumentParser(prog="python -m affordance hints", description="Turn an image into every hint.")
    parser.add_argument("image", nargs="?", help="an image file (default: a built-in scene)")
    parser.add_argument("--out", default="affordance-output/hints", help="output folder (default: %(default)s)")
    parser.add_argument("--resolution", type=int, default=512, help="detection resolution (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.image:
        try:
            with Image.open(args.image) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except OSError as exc:
            log.error("error: cannot read image %s: %s", args.image, exc)
            return 2
        image = torch.from_numpy(arr).permute(2, 0, 1)[None]
        name = Path(args.image).stem
    else:
        image, name = demo_scene(), "demo_scene"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = [("input", image)]
    save_png(image, out / f"{name}.png")
    for key, fn in GALLERY.items():
        start = time.perf_counter()
        try:
            hint = fn(image, args.resolution)
        except PreprocessorError as exc:
            log.error("%s: %s", key, exc)
            return 2
        shown = hint.clamp(0, 1) if key != "inpaint" else (hint + 1) / 2  # -1 (masked) shows as black
        save_png(shown, out / f"{name}_{key}.png")
        items.append((key, shown))
        log.info(
            "%-17s %dx%d in %.0f ms -> %s",
            key,
            hint.shape[-1],
            hint.shape[-2],
            1000 * (time.perf_counter() - start),
            out / f"{name}_{key}.png",
        )
    sheet = out / f"{name}_contact_sheet.png"
    contact_sheet(items).save(sheet)
    log.info("contact sheet: %s", sheet)
    return 0


def _annotators(argv: Sequence[str]) -> int:
    from .preprocessors.errors import PreprocessorError
    from .preprocessors.networks import NETWORK_FOR_FILE
    from .preprocessors.weights import ANNOTATOR_FILES, load_annotator, sha256_of

    parser = argparse.ArgumentParser(
        prog="python -m affordance annotators", description="Check annotator weight files."
    )
    parser.add_argument("folder", help="a folder holding official annotator files (e.g. ComfyUI/models/annotators)")
    args = parser.parse_args(argv)
    bad = 0
    for name in ANNOTATOR_FILES:
        path = Path(args.folder) / name
        if not path.is_file():
            log.info("%-30s missing", name)
            continue
        try:
            load_annotator(path, NETWORK_FOR_FILE[name](), name)
            status = "loads"
        except PreprocessorError as exc:
            bad += 1
            status = f"REJECTED: {exc}"
        digest = sha256_of(path)
        official = ANNOTATOR_FILES[name]
        # a file that differs can still be right (an fp16 or safetensors conversion): said, not failed
        origin = "official" if digest == official.sha256 else f"not the official file (sha256 {official.sha256})"
        log.info("%-30s %12d bytes  sha256 %s  %s, %s", name, path.stat().st_size, digest, status, origin)
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch the sub-commands; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv:
        rc = _inspect([])
        log.info("")
        return rc or _hints([])
    if argv[0] == "convert":
        from .controlnet.convert import main as convert_main

        return convert_main(argv[1:])
    if argv[0] == "hints":
        return _hints(argv[1:])
    if argv[0] == "annotators":
        return _annotators(argv[1:])
    if argv[0] == "inspect":
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="python -m affordance [inspect]",
        description="Inspect ControlNet files (no file: a demo of every format). Other sub-commands: "
        "'hints' (every preprocessor on an image), 'convert' (layout conversion).",
    )
    parser.add_argument("files", nargs="*", help="ControlNet files or diffusers folders")
    args = parser.parse_args(argv)
    return _inspect(args.files)


if __name__ == "__main__":
    sys.exit(main())

"""The main job of the pack, from the command line.

- ``python -m affordance`` (no arguments): both demos below, on built-in data.
- ``python -m affordance inspect [FILE ...]``: format, family, architecture, residual shapes and keys of
  each ControlNet file; with no file, a small ControlNet written in every supported format.
- ``python -m affordance hints [IMAGE] [--out DIR] [--resolution N] [--annotators FOLDER]``: every hint
  that needs no weights, and with ``--annotators`` every learned hint whose official files are in FOLDER,
  from an image (a built-in scene when none is given), written as PNGs with a contact sheet.
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

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
            except (ControlNetError, OSError) as exc:
                failures += 1
                log.error("file:        %s\nerror:       %s: %s\n", path, type(exc).__name__, exc)
                continue
            log.info("%s\n", "\n".join(report.lines()))
    log.info("%d file(s) inspected, %d rejected", len(paths) - failures, failures)
    return 1 if failures else 0


def _read_image(path: str) -> torch.Tensor:
    """An image file as ``(1, 3, H, W)`` float32 in ``[0, 1]``, keeping the range of 16-bit and float images
    (see :func:`preprocessors.sheet.image_array`); alpha is dropped, as ComfyUI's Load Image does.

    Raises:
        OSError: unreadable or not an image (PIL's errors, decompression bombs included, are reported so).
    """
    import numpy as np
    import torch
    from PIL import Image

    from .preprocessors.sheet import image_array

    try:
        with Image.open(path) as im:
            im.load()
            arr = image_array(im)[..., :3]  # alpha dropped, as ComfyUI's Load Image does
    except Image.DecompressionBombError as exc:
        raise OSError(f"{exc} Scale the image down first.") from exc
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]


def _hints(argv: Sequence[str]) -> int:
    import time

    from .preprocessors import GALLERY, PreprocessorError
    from .preprocessors.sheet import contact_sheet, demo_scene, save_png

    parser = argparse.ArgumentParser(
        prog="python -m affordance hints",
        description="Turn an image into every hint that needs no weights, and with --annotators every learned "
        "hint whose official weight files are in that folder.",
    )
    parser.add_argument("image", nargs="?", help="an image file (default: a built-in scene)")
    parser.add_argument("--out", default="affordance-output/hints", help="output folder (default: %(default)s)")
    parser.add_argument("--resolution", type=int, default=512, help="detection resolution (default: %(default)s)")
    parser.add_argument(
        "--annotators",
        metavar="FOLDER",
        help="a folder of official annotator files (e.g. ComfyUI/models/annotators): also make the learned hints "
        "(HED, PiDiNet, M-LSD, lineart, MiDaS, NormalBAE, OpenPose) whose files are there",
    )
    args = parser.parse_args(argv)
    if args.annotators and not Path(args.annotators).is_dir():
        log.error("error: --annotators %s is not a folder; give the folder that holds the annotator files.", args.annotators)
        return 2
    if args.image:
        try:
            image = _read_image(args.image)
        except OSError as exc:
            log.error("error: cannot read image %s: %s", args.image, exc)
            return 2
        name = Path(args.image).stem
    else:
        image, name = demo_scene(), "demo_scene"
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.error("error: cannot use %s as the output folder: %s", out, exc.strerror or exc)
        return 2
    items = [("input", image)]
    # "_input": every file written is NAME_something.png, so the source image itself is never overwritten
    save_png(image, out / f"{name}_input.png")
    for key, fn in GALLERY.items():
        start = time.perf_counter()
        try:
            hint = fn(image, args.resolution)
        except PreprocessorError as exc:
            log.error("%s: %s", key, exc)
            return 2
        shown = hint.clamp(0, 1) if key != "inpaint" else (hint + 1) / 2  # -1 (masked) shows as black
        _keep_hint(shown, out, name, key, items, start)
    failed = _learned_hints(image, args, out, name, items) if args.annotators else 0
    sheet = out / f"{name}_contact_sheet.png"
    contact_sheet(items).save(sheet)
    log.info("contact sheet: %s", sheet)
    return 1 if failed else 0


def _keep_hint(hint: torch.Tensor, out: Path, name: str, key: str, items: list, start: float) -> None:
    """Write ``hint`` (``(1, 3, H, W)`` in ``[0, 1]``) as ``NAME_KEY.png``, add it to the sheet, log its time."""
    import time

    from .preprocessors.sheet import save_png

    path = out / f"{name}_{key}.png"
    save_png(hint, path)
    items.append((key, hint))
    log.info("%-17s %dx%d in %.0f ms -> %s", key, hint.shape[-1], hint.shape[-2], 1000 * (time.perf_counter() - start), path)


def _learned_hints(image: torch.Tensor, args: argparse.Namespace, out: Path, name: str, items: list) -> int:
    """Every learned hint whose files are in ``args.annotators``, written and added to ``items``.

    Each file is loaded once (safely, every key checked); a hint whose files are missing is skipped with a
    line saying which; a file that does not load is reported and its hints skipped. Returns how many failed.
    """
    import time

    import torch

    from .preprocessors.errors import PreprocessorError
    from .preprocessors.networks import LEARNED_GALLERY, NETWORK_FOR_FILE
    from .preprocessors.weights import load_annotator

    folder = Path(args.annotators)
    nets: dict[str, torch.nn.Module | PreprocessorError] = {}
    failed = 0
    for key, (files, run) in LEARNED_GALLERY.items():
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            log.info("%-17s skipped: needs %s in %s", key, ", ".join(missing), folder)
            continue
        for f in files:
            if f not in nets:
                try:
                    nets[f] = load_annotator(folder / f, NETWORK_FOR_FILE[f](), f)
                except PreprocessorError as exc:
                    nets[f] = exc
        broken = [nets[f] for f in files if isinstance(nets[f], PreprocessorError)]
        if broken:
            failed += 1
            log.error("%-17s skipped: %s", key, broken[0])
            continue
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                hint = run(image, [nets[f] for f in files], args.resolution).clamp(0, 1)
        except PreprocessorError as exc:
            failed += 1
            log.error("%-17s %s", key, exc)
            continue
        _keep_hint(hint, out, name, key, items, start)
    return failed


def _annotators(argv: Sequence[str]) -> int:
    from .preprocessors.errors import PreprocessorError
    from .preprocessors.networks import NETWORK_FOR_FILE
    from .preprocessors.weights import ANNOTATOR_FILES, load_annotator, sha256_of

    parser = argparse.ArgumentParser(
        prog="python -m affordance annotators", description="Check annotator weight files."
    )
    parser.add_argument("folder", help="a folder holding official annotator files (e.g. ComfyUI/models/annotators)")
    args = parser.parse_args(argv)
    if not Path(args.folder).is_dir():
        log.error("error: %s is not a folder; give the folder that holds the annotator files.", args.folder)
        return 2
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
        try:
            digest = sha256_of(path)
        except OSError as exc:
            if not status.startswith("REJECTED"):
                bad += 1
                status = f"REJECTED: cannot read it ({exc.strerror or exc})"
            log.info("%-30s %s", name, status)
            continue
        official = ANNOTATOR_FILES[name]
        # a file that differs can still be right (an fp16 or safetensors conversion): said, not failed
        origin = "official" if digest == official.sha256 else f"not the official file (sha256 {official.sha256})"
        log.info("%-30s %12d bytes  sha256 %s  %s, %s", name, path.stat().st_size, digest, status, origin)
    return 1 if bad else 0


_COMMANDS = ("inspect", "hints", "annotators", "convert")


def _looks_like_a_command(word: str) -> bool:
    """A bare word (no folder, no extension) that names no existing file: a mistyped sub-command."""
    return not word.startswith("-") and Path(word).name == word and not Path(word).suffix and not Path(word).exists()


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
    elif _looks_like_a_command(argv[0]):
        import difflib

        near = difflib.get_close_matches(argv[0], _COMMANDS, n=1)
        log.error(
            "error: unknown sub-command %r%s; the sub-commands are %s (or give ControlNet files to inspect).",
            argv[0],
            f" (did you mean {near[0]!r}?)" if near else "",
            ", ".join(_COMMANDS),
        )
        return 2
    parser = argparse.ArgumentParser(
        prog="python -m affordance [inspect]",
        description="Inspect ControlNet files (no file: a demo of every format). Other sub-commands: "
        "'hints' (every preprocessor on an image; learned ones with --annotators FOLDER), 'convert' (layout "
        "conversion), "
        "'annotators' (check a folder of annotator weights).",
    )
    parser.add_argument("files", nargs="*", help="ControlNet files or diffusers folders")
    args = parser.parse_args(argv)
    return _inspect(args.files)


if __name__ == "__main__":
    sys.exit(main())

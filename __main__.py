"""The main job of the pack, from the command line.

- ``python -m affordance`` (no arguments): both demos below, on built-in data (the hint demo replaces its
  own earlier output in ``affordance-output/hints/``).
- ``python -m affordance inspect [FILE ...]``: format, family, architecture, residual shapes and keys of
  each ControlNet file; with no file, a small ControlNet written in every supported format.
- ``python -m affordance hints [IMAGE] [--out DIR] [--resolution N] [--annotators FOLDER] [--force]``: every
  hint that needs no weights, and with ``--annotators`` every learned hint whose official files are in
  FOLDER or its sub-folders, from an image (a built-in scene when none is given), written as PNGs with a contact sheet.
  Everything is checked before anything is written; an existing file is replaced only with ``--force``,
  and then only once its successor is completely written.
- ``python -m affordance annotators FOLDER``: size, SHA-256 (compared with the official file's) and a load
  check of every official annotator file found in FOLDER (e.g. ``ComfyUI/models/annotators``).
- ``python -m affordance convert SRC DST --to {diffusers,original}``: layout conversion.

Reports go to stdout, errors and warnings to stderr (one line each, no traceback); exit code 0 when all
went well, 1 when something was reported as failed or rejected, 2 for a bad argument, input or output place.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("affordance.main")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit code 2) that points at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _path_arg(text: str) -> str:
    """An argparse ``type`` refusing the empty path (which would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"got an empty path ({text!r}); give a file or folder name ('.' for here)")
    return text


def _resolution_arg(text: str) -> int:
    """An argparse ``type`` for ``--resolution``: a whole number in the preprocessors' range."""
    from .preprocessors.base import MAX_RESOLUTION, MIN_SIDE

    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not MIN_SIDE <= value <= MAX_RESOLUTION:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of pixels from {MIN_SIDE} to {MAX_RESOLUTION}, got {text!r}"
        )
    return value


def _setup_logging() -> None:
    """Reports (INFO) to stdout, warnings and errors to stderr, bare messages; nothing if logging is set up."""

    class _BelowWarning(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno < logging.WARNING

    report = logging.StreamHandler(sys.stdout)
    report.addFilter(_BelowWarning())
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[report, problems])


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (OpenCV's span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out: Python's MemoryError, or torch's CPU allocator failing."""
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "not enough memory" in str(exc))
    )


def _file_problem(path: Path) -> str | None:
    """``None`` when ``path`` is a regular file (or a symlink to one), else what it is, in words.

    ``"missing"`` when nothing is there. Only ``stat`` is called: a named pipe is never opened (opening one
    blocks until something writes to it).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop, not a regular file"
        if os.path.islink(path):
            return f"a broken symlink (to {os.readlink(path)}), not a regular file"
        if isinstance(exc, FileNotFoundError):
            return "missing"
        return f"not readable ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kinds: tuple[tuple[Callable[[int], bool], str], ...] = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    return f"{kind}, not a regular file"


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
    """An image file as ``(1, 3, H, W)`` float32 in ``[0, 1]``, as ComfyUI's Load Image reads it: EXIF
    orientation applied (``ImageOps.exif_transpose``), alpha dropped; the range of 16-bit and float images
    is kept (see :func:`preprocessors.sheet.image_array`).

    Only a regular file is opened (a named pipe would block forever), and its size is checked from its
    header, before its pixels are decoded.

    Raises:
        ImageInputError: a side below ``MIN_SIDE`` or above ``MAX_SIDE`` px (from ``preprocessors.base``), or a
            decompression bomb (PIL's warning and error both).
        OSError: missing, not a regular file, unreadable or not an image.
    """
    import warnings

    import numpy as np
    import torch
    from PIL import Image, ImageOps

    from .preprocessors.base import MAX_SIDE, MIN_SIDE
    from .preprocessors.errors import ImageInputError
    from .preprocessors.sheet import image_array

    problem = _file_problem(Path(path))
    if problem is not None:
        raise OSError("there is no such file" if problem == "missing" else f"it is {problem}; give an image file")
    try:
        # PIL's own warnings (corrupt EXIF data...) become one log line each, not Python's two-line display
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if min(w, h) < MIN_SIDE:
                    raise ImageInputError(
                        f"it is {w}x{h} px; the preprocessors need at least {MIN_SIDE}x{MIN_SIDE} px: use a larger image."
                    )
                if max(w, h) > MAX_SIDE:
                    raise ImageInputError(
                        f"it is {w}x{h} px, above the {MAX_SIDE} px limit per side: scale it down first."
                    )
                im.load()
                arr = image_array(ImageOps.exif_transpose(im))[..., :3]  # alpha dropped, as Load Image does
        for w in caught:
            log.warning("warning: image %s: %s", path, " ".join(str(w.message).split()))
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(
            f"it is too large to decode safely ({exc}); the preprocessors take at most {MAX_SIDE} px per side: "
            "scale it down first."
        ) from exc
    except OSError:
        raise
    except Exception as exc:  # a damaged file makes PIL raise many kinds (SyntaxError, ValueError, EOFError...)
        raise OSError(f"not a readable image ({type(exc).__name__}: {_one_line(exc)})") from exc
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]


class _WriteError(Exception):
    """An output file that could not be written; the message names it and the system's reason."""


def _save(picture: torch.Tensor | Image.Image, path: Path) -> None:
    """Write a ``(1, 3, H, W)`` tensor in ``[0, 1]`` or a PIL image as a PNG, staged (see ``write_png``).

    Raises:
        _WriteError: ``cannot write PATH: REASON``.
    """
    from PIL import Image

    from .preprocessors.sheet import save_png, write_png

    try:
        if isinstance(picture, Image.Image):
            write_png(picture, path)
        else:
            save_png(picture, path)
    except OSError as exc:
        raise _WriteError(f"cannot write {path}: {exc.strerror or _one_line(exc)}") from exc


def _learned_keys(folder: Path) -> list[str]:
    """The learned hints whose files are all regular files in ``folder`` or its sub-folders (those a run may write)."""
    from .preprocessors.networks import LEARNED_GALLERY
    from .preprocessors.weights import locate_annotator

    return [
        k
        for k, (files, _) in LEARNED_GALLERY.items()
        if all(_file_problem(locate_annotator(folder, f)) is None for f in files)
    ]


def _check_outputs(out: Path, paths: Sequence[Path], force: bool) -> str | None:
    """Why the run may not write ``paths`` in ``out`` (one line), or ``None``; nothing is written here."""
    if (out.exists() or out.is_symlink()) and not out.is_dir():  # a broken symlink "exists" for mkdir only
        return (
            f"cannot use {out} as the output folder: it is {_file_problem(out) or 'a file'}; give a folder with --out."
        )
    existing: list[Path] = []
    for path in paths:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot write {path}: {exc.strerror or exc}; choose another --out."
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):  # os.replace cannot put a file over a folder
            return f"cannot write {path}: it is {_file_problem(path)}; move it away or choose another --out."
        existing.append(path)
    if existing and not force:
        return (
            f"{out} already holds {len(existing)} file(s) this run would replace: "
            f"{', '.join(p.name for p in existing)}; nothing was written. Pass --force to replace them (each only "
            "once its successor is completely written), or choose another --out."
        )
    return None


def _hints(argv: Sequence[str]) -> int:
    import time

    from .preprocessors import GALLERY, PreprocessorError
    from .preprocessors.base import MAX_RESOLUTION, MAX_SIDE, MIN_SIDE, detection_size
    from .preprocessors.errors import ImageInputError
    from .preprocessors.sheet import contact_sheet, demo_scene, thumbnail

    parser = _Parser(
        prog="python -m affordance hints",
        description="Turn an image into every hint that needs no weights, and with --annotators every learned "
        "hint whose official weight files are in that folder or its sub-folders, written as NAME_HINT.png with a contact sheet. "
        "Everything is checked before anything is written; existing files are replaced only with --force.",
    )
    parser.add_argument(
        "image",
        nargs="?",
        type=_path_arg,
        help=f"an image file, {MIN_SIDE} to {MAX_SIDE} px per side (default: a built-in scene)",
    )
    parser.add_argument(
        "--out", type=_path_arg, default="affordance-output/hints", help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--resolution",
        type=_resolution_arg,
        default=512,
        metavar="N",
        help=f"detection resolution, the short side the image is scaled to before detection: {MIN_SIDE} to "
        f"{MAX_RESOLUTION} (default: %(default)s)",
    )
    parser.add_argument(
        "--annotators",
        metavar="FOLDER",
        type=_path_arg,
        help="a folder of official annotator files (e.g. ComfyUI/models/annotators): also make the learned hints "
        "(HED, PiDiNet, M-LSD, lineart, MiDaS, NormalBAE, OpenPose) whose files are there or in its sub-folders "
        "(the least nested first, as in ComfyUI)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace files already in the output folder (each only once its successor is completely written); "
        "without it the run refuses, naming them, before writing anything",
    )
    args = parser.parse_args(argv)
    if args.annotators and not Path(args.annotators).is_dir():
        log.error(
            "error: --annotators %s is not a folder; give the folder that holds the annotator files.", args.annotators
        )
        return 2
    # 1. the input, checked whole (size from the header, then every pixel) before anything is written
    if args.image:
        try:
            image = _read_image(args.image)
        except ImageInputError as exc:
            log.error("error: cannot use image %s: %s", args.image, exc)
            return 2
        except OSError as exc:
            log.error("error: cannot read image %s: %s", args.image, exc)
            return 2
        name = Path(args.image).stem
    else:
        image, name = demo_scene(), "demo_scene"
    try:
        detection_size(image.shape[-2], image.shape[-1], args.resolution)
    except PreprocessorError as exc:
        log.error("error: cannot use --resolution %d on this image: %s", args.resolution, exc)
        return 2
    # 2. the outputs: "_input" (every file is NAME_something.png, so the source image is never overwritten)
    out = Path(args.out)
    learned = _learned_keys(Path(args.annotators)) if args.annotators else []
    keys = ["input", *GALLERY, *learned, "contact_sheet"]
    paths = {key: out / f"{name}_{key}.png" for key in keys}
    refusal = _check_outputs(out, list(paths.values()), args.force)
    if refusal:
        log.error("error: %s", refusal)
        return 2
    # 3. the folder, made and proven writable before any work
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.error("error: cannot use %s as the output folder: %s", out, exc.strerror or exc)
        return 2
    try:
        fd, probe = tempfile.mkstemp(prefix=".affordance-write-check-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        log.error("error: cannot write %s: %s; give a folder you can write to with --out.", out, exc.strerror or exc)
        return 2
    # 4. the work: one hint failing is reported and the others still run (exit code 1 at the end)
    items: list[tuple[str, Image.Image]] = [("input", thumbnail(image))]  # thumbnails: a 4096 px hint is 200 MB
    failed = 0
    try:
        _save(image, paths["input"])
        for key, fn in GALLERY.items():
            start = time.perf_counter()
            try:
                hint = fn(image, args.resolution)
            except Exception as exc:  # one hint's failure must not cost the others
                failed += 1
                _report_failure(key, exc)
                continue
            shown = hint.clamp(0, 1) if key != "inpaint" else (hint + 1) / 2  # -1 (masked) shows as black
            _keep_hint(shown, paths[key], key, items, start)
        if args.annotators:
            failed += _learned_hints(image, args, paths, items)
        _save(contact_sheet(items), paths["contact_sheet"])
    except _WriteError as exc:
        log.error(
            "error: %s; the files written before it are complete (none is left half-written). Free some space or "
            "choose another --out.",
            exc,
        )
        return 2
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        log.error(
            "error: memory ran out while writing the hints of a %dx%d image (%s); the files written before it are "
            "complete. Use a smaller image, or free memory.",
            image.shape[-1],
            image.shape[-2],
            _one_line(exc),
        )
        return 2
    log.info("contact sheet: %s", paths["contact_sheet"])
    return 1 if failed else 0


def _report_failure(key: str, exc: Exception) -> None:
    """One line naming the hint and its error (an unexpected one with its type, to report it)."""
    from .preprocessors.errors import PreprocessorError

    if isinstance(exc, PreprocessorError):
        log.error("%-17s %s", key, _one_line(exc))
    elif _out_of_memory(exc):
        log.error("%-17s memory ran out (%s); use a smaller image or --resolution, or free memory", key, _one_line(exc))
    else:
        log.error("%-17s failed: unexpected %s: %s (please report it)", key, type(exc).__name__, _one_line(exc))


def _keep_hint(hint: torch.Tensor, path: Path, key: str, items: list, start: float) -> None:
    """Write ``hint`` (``(1, 3, H, W)`` in ``[0, 1]``) to ``path``, add its thumbnail to the sheet, log its time.

    Raises:
        _WriteError: the file cannot be written.
    """
    import time

    from .preprocessors.sheet import thumbnail

    _save(hint, path)
    items.append((key, thumbnail(hint)))
    log.info(
        "%-17s %dx%d in %.0f ms -> %s", key, hint.shape[-1], hint.shape[-2], 1000 * (time.perf_counter() - start), path
    )


def _learned_hints(image: torch.Tensor, args: argparse.Namespace, paths: dict[str, Path], items: list) -> int:
    """Every learned hint whose files are in ``args.annotators``, written to ``paths[key]`` and added to ``items``.

    Each file is loaded once (safely, every key checked); a hint whose files are missing is skipped with a
    line saying which; a file that is not a regular file or does not load is reported and its hints skipped;
    a hint that fails (even unexpectedly) is reported and the others still run. Returns how many failed.

    Raises:
        _WriteError: a hint cannot be written.
    """
    import time

    import torch

    from .preprocessors.errors import PreprocessorError
    from .preprocessors.networks import LEARNED_GALLERY, NETWORK_FOR_FILE
    from .preprocessors.weights import load_annotator, locate_annotator

    folder = Path(args.annotators)
    nets: dict[str, torch.nn.Module | Exception] = {}
    failed = 0
    for key, (files, run) in LEARNED_GALLERY.items():
        where = {f: locate_annotator(folder, f) for f in files}
        problems = {f: _file_problem(where[f]) for f in files}
        missing = [f for f, p in problems.items() if p == "missing"]
        if missing:
            log.info("%-17s skipped: needs %s in %s (or a sub-folder)", key, ", ".join(missing), folder)
            continue
        unusable = [(f, p) for f, p in problems.items() if p is not None]
        if unusable:
            failed += 1
            file, problem = unusable[0]
            log.error("%-17s skipped: %s in %s is %s", key, file, where[file].parent, problem)
            continue
        if key not in paths:  # its files appeared while the run was going: not checked against --out
            log.info("%-17s skipped: its files appeared in %s after the run started", key, folder)
            continue
        for f in files:
            if f not in nets:
                try:
                    nets[f] = load_annotator(where[f], NETWORK_FOR_FILE[f](), f)
                except Exception as exc:  # reported with its hint; the other hints still run
                    nets[f] = exc
        broken = [e for e in (nets[f] for f in files) if isinstance(e, Exception)]
        if broken:
            failed += 1
            error = broken[0]
            reason = (
                _one_line(error)
                if isinstance(error, PreprocessorError)
                else f"unexpected {type(error).__name__}: {_one_line(error)}"
            )
            log.error("%-17s skipped: %s", key, reason)
            continue
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                hint = run(image, [nets[f] for f in files], args.resolution).clamp(0, 1)
        except Exception as exc:  # one hint's failure (an OpenPose crash...) must not cost the others
            failed += 1
            _report_failure(key, exc)
            continue
        _keep_hint(hint, paths[key], key, items, start)
    return failed


def _annotators(argv: Sequence[str]) -> int:
    from .preprocessors.errors import PreprocessorError
    from .preprocessors.networks import NETWORK_FOR_FILE
    from .preprocessors.weights import ANNOTATOR_FILES, load_annotator, locate_annotator, sha256_of

    parser = _Parser(
        prog="python -m affordance annotators",
        description="Check annotator weight files: size, SHA-256 against the official file's, and a load check. "
        "Exit code 1 when a file is rejected or none is found.",
    )
    parser.add_argument(
        "folder",
        type=_path_arg,
        help="a folder holding official annotator files, directly or in sub-folders, the least nested first "
        "(e.g. ComfyUI/models/annotators, or comfyui_controlnet_aux's ckpts)",
    )
    args = parser.parse_args(argv)
    if not Path(args.folder).is_dir():
        log.error("error: %s is not a folder; give the folder that holds the annotator files.", args.folder)
        return 2
    bad = found = 0
    for name in ANNOTATOR_FILES:
        path = locate_annotator(args.folder, name)
        problem = _file_problem(path)
        if problem == "missing":
            log.info("%-30s missing", name)
            continue
        found += 1
        if problem is not None:  # a folder, a named pipe, a symlink loop... under the file's name
            bad += 1
            log.info("%-30s REJECTED: %s", name, problem)
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
        at = "" if path.parent == Path(args.folder) else f" (at {path.relative_to(args.folder).as_posix()})"
        log.info("%-30s %12d bytes  sha256 %s  %s, %s%s", name, path.stat().st_size, digest, status, origin, at)
    if not found:
        log.error(
            "error: no annotator file found in %s or its sub-folders; put the official files there under their "
            "official names (README, 'Annotator weights'), or give the folder that holds them.",
            args.folder,
        )
        return 1
    log.info("%d of %d official file(s) present in %s, %d rejected", found, len(ANNOTATOR_FILES), args.folder, bad)
    return 1 if bad else 0


_COMMANDS = ("inspect", "hints", "annotators", "convert")


def _looks_like_a_command(word: str) -> bool:
    """A bare word (no folder, no extension) that names no existing file: a mistyped sub-command."""
    return not word.startswith("-") and Path(word).name == word and not Path(word).suffix and not Path(word).exists()


def _convert(argv: Sequence[str]) -> int:
    """``convert``: :func:`controlnet.convert.main`, under this command's name where it accepts one."""
    import inspect

    from .controlnet.convert import main as convert_main

    if "prog" in inspect.signature(convert_main).parameters:
        return convert_main(argv, prog="python -m affordance convert")
    return convert_main(argv)


def _stoppable_hints(argv: Sequence[str]) -> int:
    """``hints``, with Ctrl-C and SIGTERM turned into a clean stop: the file being written is dropped (its
    temporary name removed), the ones written before it are complete; exit code 128 + the signal's number."""
    from .controlnet.convert import Interrupted, interruptible

    try:
        with interruptible():
            return _hints(argv)
    except Interrupted as exc:
        log.error("interrupted; the files written before it are complete and none is left half-written.")
        return 128 + exc.signum


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch the sub-commands; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    if not argv:
        rc = _inspect([])
        log.info("")
        # the demo's own files (demo_scene_*.png) are replaced, each once its successor is complete, so the
        # no-argument run can be repeated; `hints` itself never replaces a file without --force
        return rc or _stoppable_hints(["--force"])
    if argv[0] == "convert":
        return _convert(argv[1:])
    if argv[0] == "hints":
        return _stoppable_hints(argv[1:])
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
    parser = _Parser(
        prog="python -m affordance [inspect]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Inspect ControlNet files (no file: a demo of every format). Other sub-commands: "
        "'hints' (every preprocessor on an image; learned ones with --annotators FOLDER), 'convert' (layout "
        "conversion), 'annotators' (check a folder of annotator weights); each has --help.",
        epilog="With no argument at all, `python -m affordance` runs both demos on built-in data: 'inspect' on a\n"
        "small ControlNet written in every supported format, then 'hints' on a drawn scene, written with a\n"
        "contact sheet to affordance-output/hints/ (replacing that demo's own earlier files).\n\n"
        "  python -m affordance inspect [FILE ...]\n"
        "  python -m affordance hints [IMAGE] [--out DIR] [--resolution N] [--annotators FOLDER] [--force]\n"
        "  python -m affordance annotators FOLDER\n"
        "  python -m affordance convert SRC DST --to {diffusers,original} [--prefix] [--force]\n\n"
        "Reports go to stdout, errors to stderr; exit code 0: all good, 1: something failed or was rejected,\n"
        "2: a bad argument, input or output place.",
    )
    parser.add_argument("files", nargs="*", type=_path_arg, help="ControlNet files or diffusers folders")
    args = parser.parse_args(argv)
    return _inspect(args.files)


if __name__ == "__main__":
    sys.exit(main())

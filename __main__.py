"""The main job: ``python -m affordance [inspect] [FILE ...]`` and ``python -m affordance convert ...``.

``inspect`` (the default) reports format, family, architecture, residual shapes and keys of each
ControlNet file given; with no file it writes a small ControlNet in every supported format to a
temporary folder and inspects those.
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


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch the sub-commands; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if argv and argv[0] == "convert":
        from .controlnet.convert import main as convert_main

        return convert_main(argv[1:])
    if argv and argv[0] == "inspect":
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="python -m affordance",
        description="Inspect ControlNet files (no file: a demo of every format). "
        "Sub-command 'convert' converts between layouts (see 'convert --help').",
    )
    parser.add_argument("files", nargs="*", help="ControlNet files or diffusers folders")
    args = parser.parse_args(argv)
    return _inspect(args.files)


if __name__ == "__main__":
    sys.exit(main())

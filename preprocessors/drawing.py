"""Scribble-canvas drawings: checking a drawing's file reference and reading it as a binary hint.

The in-graph canvas (``web/js/lib/strokes.js``) uploads white-on-black PNGs to ComfyUI's input folder
and keeps their path as the node's value. This module reads such a file back with the same rules the
canvas uses: ink where luminance times alpha is above half, the drawing placed top-left on a black
canvas of the node's size. Pure numpy/PIL/torch; the node decides where the input folder is.
"""

from __future__ import annotations

import errno
import math
import numbers
import re
import stat
import struct
from pathlib import Path

import numpy as np
import torch

from .base import clip, shown
from .errors import PreprocessorError
from .sheet import image_array

DRAWING_MAX_SIDE = 4096
"""Largest width or height of a drawing (the canvas and its widgets refuse larger ones too)."""
DRAWING_MIN_SIDE = 8
_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")  # fullmatch: '$' would also match before a final \n


class DrawingError(PreprocessorError):
    """A drawing reference, file or size that cannot be used."""


def check_drawing_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` as ints; refuses a size that is not a whole number of pixels in ``[DRAWING_MIN_SIDE,
    DRAWING_MAX_SIDE]`` (message says what to change). A size linked from another node arrives as that node made
    it (64.0 from a float node is 64)."""
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or int(v) != v:
            raise DrawingError(
                f"the drawing {name} must be a whole number of pixels, got {shown(v)} ({type(v).__name__})."
            )
        if v > DRAWING_MAX_SIDE:
            raise DrawingError(
                f"the drawing is larger than the maximum of {DRAWING_MAX_SIDE}x{DRAWING_MAX_SIDE} pixels: {name} is "
                f"{v}. Lower the {name}."
            )
        if v < DRAWING_MIN_SIDE:
            raise DrawingError(f"the drawing {name} must be at least {DRAWING_MIN_SIDE} pixels, got {v}.")
    return int(width), int(height)


def parse_drawing_reference(value: str) -> tuple[str, ...]:
    """Split a drawing reference (``"affordance_scribbles/scribble_512x512_<hash>.png"``) into path parts.

    Only relative paths of plain names are accepted, so a reference can never leave the input folder.

    Raises:
        DrawingError: an absolute path, ``..``, empty parts, backslashes or other unsafe characters.
    """
    if not isinstance(value, str) or not value:
        raise DrawingError(f"the drawing reference must be a non-empty file path, got {value!r}.")
    parts = tuple(value.split("/"))
    if any(not _SAFE_PART.fullmatch(p) or p in (".", "..") for p in parts):
        raise DrawingError(
            f"the drawing reference {value!r} is not a path the canvas reads: only a relative path of names made of "
            "ASCII letters, digits, spaces, '.', '_' and '-' (starting with a letter or digit), such as "
            "'affordance_scribbles/scribble_512x512_0123456789abcdef.png'. Rename the file, or clear the canvas and "
            "draw again."
        )
    return parts


def resolve_drawing(input_dir: str | Path, value: str) -> Path:
    """The file a reference names inside ``input_dir``.

    Raises:
        DrawingError: an unsafe reference, a file that does not exist (named with the folder), or one that
            cannot be looked up (a name too long for the file system, a symlink loop, an unreadable folder).
    """
    root = Path(input_dir).resolve()
    parts = parse_drawing_reference(value)
    try:
        path = root.joinpath(*parts).resolve()  # RuntimeError: a symlink loop (Python before 3.13)
        inside = path.is_relative_to(root)
        found = False
        if inside:
            try:  # stat itself: Path.is_file hides ELOOP (3.13) and every OSError (3.14), all read as "missing"
                found = stat.S_ISREG(path.stat().st_mode)
            except (FileNotFoundError, NotADirectoryError):
                pass
    except (OSError, RuntimeError) as exc:  # ENAMETOOLONG, ELOOP (3.13+), EACCES
        raise _lookup_error(value, root, exc) from exc
    if not inside:  # a symlink pointing outside
        raise DrawingError(f"the drawing {value!r} resolves outside ComfyUI's input folder ({root}).")
    if not found:
        raise DrawingError(
            f"the drawing {value!r} is not in ComfyUI's input folder ({root}). Open the workflow in the graph editor "
            "(the canvas uploads its drawing again) or draw it anew."
        )
    return path


def _lookup_error(value: str, root: Path, exc: OSError | RuntimeError) -> DrawingError:
    """The error for a drawing reference the file system refused to look up (``exc``)."""
    quoted = clip(value)
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        longest = max(len(p.encode("utf-8")) for p in value.split("/"))
        total = len(str(root / value).encode("utf-8"))
        where = (
            f"a part of it is {longest} bytes, more than the 255 a file name may have"
            if longest > 255
            else f"the whole path is {total} bytes, more than the system allows"
        )
        problem = f"its name is too long for the file system ({where})"
        fix = "Clear the canvas and draw again (the canvas saves its drawings under short names)."
    elif isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP:
        problem = "it is a symbolic link that loops back on itself"
        fix = "Replace the link with the drawing file, or clear the canvas and draw again."
    else:
        problem = f"it cannot be read ({exc.strerror or exc})"
        fix = (
            "Let the user that runs ComfyUI read the input folder and the drawing, or clear the canvas and draw again."
        )
    return DrawingError(f"the drawing {quoted!r} in ComfyUI's input folder ({root}) cannot be used: {problem}. {fix}")


def ink_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """Binary ink of an image: ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 -> ``(H, W)`` bool.

    Ink is luminance (ITU-R 601) times alpha above 127.5, the canvas's rule.
    """
    a = pixels.astype(np.float64)
    if a.ndim == 2:
        lum = a
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        lum = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
        if a.shape[2] == 4:
            lum = lum * (a[..., 3] / 255.0)
    else:
        raise DrawingError(f"a drawing must be a greyscale, RGB or RGBA image, got an array of shape {pixels.shape}.")
    return lum > 127.5


def read_drawing(path: str | Path, width: int, height: int) -> torch.Tensor:
    """Read a drawing file as a ``(height, width)`` float32 tensor of 0/1 (1 = ink), placed top-left.

    A file smaller than the size is padded with black, a larger one cropped (what the canvas shows after
    its width or height changed).

    Raises:
        DrawingError: a size beyond the limits, a file larger than ``DRAWING_MAX_SIDE`` or one that is not
            an image.
    """
    from PIL import Image, UnidentifiedImageError

    width, height = check_drawing_size(width, height)
    try:
        with Image.open(path) as im:
            w, h = im.size  # header only: refuse huge files before decoding them
            if w > DRAWING_MAX_SIDE or h > DRAWING_MAX_SIDE:
                raise DrawingError(
                    f"the drawing file {Path(path).name} is {w}x{h} pixels, larger than the maximum of "
                    f"{DRAWING_MAX_SIDE}x{DRAWING_MAX_SIDE}; use a smaller image or clear the canvas."
                )
            pixels = np.rint(image_array(im) * 255.0).astype(np.uint8)  # 16-bit and float files keep their range
    except DrawingError:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DrawingError(f"the drawing file {Path(path).name} cannot be read as an image ({exc}).") from exc
    except (ValueError, SyntaxError, TypeError, EOFError, IndexError, struct.error) as exc:
        # a damaged file makes PIL raise these too ("Truncated IHDR chunk", "broken PNG file", a bad TIFF tag)
        raise DrawingError(
            f"the drawing file {Path(path).name} is damaged ({type(exc).__name__}: {exc}); draw it anew or clear "
            "the canvas."
        ) from exc
    ink = ink_from_pixels(pixels)
    out = torch.zeros(height, width, dtype=torch.float32)
    hh, ww = min(height, ink.shape[0]), min(width, ink.shape[1])
    out[:hh, :ww] = torch.from_numpy(ink[:hh, :ww].astype(np.float32))
    return out

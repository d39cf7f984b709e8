"""``AST_ScribbleCanvas``: a drawing made in the node (``web/js/scribble_canvas.js``) as a scribble hint.

The canvas uploads its drawing to ComfyUI's input folder (subfolder ``affordance_scribbles``, a
content-hashed name) and keeps that reference as the ``drawing`` value, so a saved workflow reopens
with the same drawing. This node reads the file back: white strokes on black, ready for a scribble
ControlNet, at the node's width and height.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ..preprocessors.drawing import (
    DRAWING_MAX_SIDE,
    DRAWING_MIN_SIDE,
    DrawingError,
    check_drawing_size,
    read_drawing,
    resolve_drawing,
)
from ._host import folder_paths, log, preview_images, unconverted

DRAWING_TYPE = "AST_SCRIBBLE"


def _input_dir() -> str:
    return folder_paths().get_input_directory()


def _side(default: int, what: str) -> tuple:
    return (
        "INT",
        {
            "default": default,
            "min": DRAWING_MIN_SIDE,
            "max": DRAWING_MAX_SIDE,
            "step": 8,
            "tooltip": f"Drawing {what} in pixels (at most {DRAWING_MAX_SIDE}). Changing it keeps the strokes in "
            "place and crops or extends the canvas on the right/bottom.",
        },
    )


class ScribbleCanvas:
    """Draw in the node; outputs the drawing as an IMAGE (white on black) and a MASK of the strokes."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "width": _side(512, "width"),
                "height": _side(512, "height"),
                "drawing": (
                    DRAWING_TYPE,
                    {
                        "default": "",
                        "tooltip": "The drawing: made on the canvas in the node and uploaded to ComfyUI's input "
                        "folder; the workflow keeps its path. Empty means a blank canvas.",
                    },
                ),
            },
            "optional": {
                "background": (
                    "IMAGE",
                    {
                        "tooltip": "An image to trace over: shown under the canvas, never part of the drawing. It "
                        "appears as soon as its source shows a preview (e.g. Load Image) or after a run.",
                    },
                ),
            },
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("scribble", "mask")
    FUNCTION = "draw"
    CATEGORY = "Affordance/preprocessors"
    DESCRIPTION = (
        "A drawing canvas inside the node (brush, eraser, undo, clear, a background image to trace). Outputs "
        "white strokes on black, ready for a scribble ControlNet."
    )

    @classmethod
    def VALIDATE_INPUTS(cls, width: int | None, height: int | None, drawing: str | None) -> bool | str:
        if unconverted((width, int), (height, int)):
            return True
        if drawing is not None and not isinstance(drawing, str):  # our own widget type: ComfyUI converts nothing
            return f"drawing must be a file name in ComfyUI's input folder, got {drawing!r}."
        try:
            if width is not None and height is not None:  # None: fed by a link, checked when the node runs
                check_drawing_size(width, height)
            if drawing:
                resolve_drawing(_input_dir(), drawing)
        except DrawingError as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, width: int, height: int, drawing: str, **_: Any) -> str:
        """The file's content hash: the same reference re-run after the file changed is recomputed."""
        if not drawing:
            return f"blank:{width}x{height}"
        try:
            data = resolve_drawing(_input_dir(), drawing).read_bytes()
        except (DrawingError, OSError) as exc:
            return f"missing:{drawing}:{exc}"
        return f"{width}x{height}:{hashlib.sha256(data).hexdigest()}"

    def draw(
        self, width: int, height: int, drawing: str, background: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """The drawing (a PNG in ComfyUI's input folder) as IMAGE ``(1, height, width, 3)`` and MASK ``(1, height,
        width)``, float32 in ``[0, 1]`` (white ink on black); ``background`` only feeds the canvas preview."""
        width, height = check_drawing_size(width, height)  # linked, they arrive unconverted
        if drawing:
            ink = read_drawing(resolve_drawing(_input_dir(), drawing), width, height)
        else:
            log.warning("AST_ScribbleCanvas: the canvas is empty, so the scribble is all black (no control).")
            ink = torch.zeros(height, width, dtype=torch.float32)
        image = ink[None, :, :, None].expand(1, height, width, 3).contiguous()
        ui: dict[str, list] = {}
        if background is not None:
            bad = not isinstance(background, torch.Tensor) or background.ndim != 4 or background.shape[-1] not in (1, 3, 4)
            if bad or min(background.shape[:3]) < 1:
                got = tuple(background.shape) if isinstance(background, torch.Tensor) else type(background).__name__
                raise DrawingError(f"background must be a ComfyUI IMAGE (batch, height, width, channels), got {got}.")
            bg = background[:1, ..., :3] if background.shape[-1] != 1 else background[:1].expand(-1, -1, -1, 3)
            ui["ast_background"] = preview_images(bg, prefix="affordance_background")
        return {"ui": ui, "result": (image, ink[None].clone())}

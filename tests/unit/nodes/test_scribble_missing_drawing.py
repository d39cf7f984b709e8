"""The Scribble Canvas node with a drawing that is missing, unsafe or unreadable: strings and typed errors, never a crash."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
from PIL import Image

from affordance.nodes import NODE_CLASS_MAPPINGS

Node = NODE_CLASS_MAPPINGS["AST_ScribbleCanvas"]
REF = "affordance_scribbles/scribble_64x48_0123456789abcdef.png"


# Round 10 (mutant 023): IS_CHANGED answers with a string for a drawing that is missing or unsafe, never raises.
#
# ComfyUI calls IS_CHANGED before validation; a raise there is logged as a warning and the node counts as
# changed on every run, instead of VALIDATE_INPUTS naming the missing file.
def test_is_changed_names_a_missing_or_unsafe_drawing(stub_comfy):
    missing = Node.IS_CHANGED(64, 48, REF)
    assert isinstance(missing, str) and missing.startswith(f"missing:{REF}:")
    assert Node.IS_CHANGED(64, 48, REF) == missing  # stable while the file stays missing
    unsafe = Node.IS_CHANGED(64, 48, "../outside.png")
    assert unsafe.startswith("missing:../outside.png:")


# Round 10 (mutants 059, 148): a drawing the file system refuses to look up for another reason than a long name
# or a loop (EACCES: an unreadable input folder) is a DrawingError that names the cause and the fix.


def test_an_unreadable_drawing_is_a_clear_message(stub_comfy, monkeypatch):
    path = (stub_comfy / "input").joinpath(*REF.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(path)
    real = Path.stat

    def stat(self, *args, **kwargs):
        if self.name == path.name:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    msg = Node.VALIDATE_INPUTS(64, 48, REF)
    assert isinstance(msg, str)
    assert "it cannot be read (Permission denied)" in msg
    assert "Let the user that runs ComfyUI read the input folder" in msg

"""What saved workflows depend on, pinned: every released node id, the order, kind and settings (default, min,
max, step, choices) of its inputs, and its outputs with their names (the labels saved workflows show and keep).
ComfyUI saves widget values by position and links by output index, so a changed default, a narrowed range or a reordered input silently changes or breaks users' graphs.

A deliberate change (a new node or input, a wider range) is recorded by running this file with
``AFFORDANCE_UPDATE_INTERFACE=1`` and committing ``tests/fixtures/saved_interface.json`` with it; removing a
node or changing what an existing input means needs a migration, not an update.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from affordance.nodes import NODE_CLASS_MAPPINGS

SNAPSHOT = Path(__file__).resolve().parents[2] / "fixtures" / "saved_interface.json"
SETTINGS = ("default", "min", "max", "step", "multiline", "forceInput")  # not tooltips: wording may change


FILES = ["a.safetensors", "b.pth"]  # what the test puts in the controlnet folder: a list of files, not pinned


def _input(spec: tuple) -> dict[str, Any]:
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, (list, tuple)):
        entry: dict[str, Any] = {"choices": "files of models/controlnet" if list(kind) == FILES else list(kind)}
    else:
        entry = {"type": kind}
    entry.update({k: options[k] for k in SETTINGS if k in options})
    return entry


def interface() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node_id in sorted(NODE_CLASS_MAPPINGS):
        cls = NODE_CLASS_MAPPINGS[node_id]
        spec = cls.INPUT_TYPES()
        out[node_id] = {
            section: [[name, _input(value)] for name, value in spec.get(section, {}).items()]
            for section in ("required", "optional")
        } | {"outputs": list(cls.RETURN_TYPES), "output_names": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))}
    return json.loads(json.dumps(out))  # tuples as lists, as read back


def test_the_saved_interface_of_every_node_is_unchanged(stub_comfy):
    for name in FILES:
        (stub_comfy / name).write_bytes(b"")
    now = interface()
    if os.environ.get("AFFORDANCE_UPDATE_INTERFACE") == "1":
        SNAPSHOT.write_text(json.dumps(now, indent=1) + "\n")
    pinned = json.loads(SNAPSHOT.read_text())
    gone = sorted(set(pinned) - set(now))
    assert not gone, f"released node ids may never go (saved workflows name them): {gone}"
    for node_id, before in pinned.items():
        assert now[node_id] == before, (
            f"{node_id}'s inputs or outputs changed: saved workflows keep widget values by position and links by "
            "output index. If the change is deliberate and keeps old workflows working, record it "
            "(AFFORDANCE_UPDATE_INTERFACE=1)."
        )
    assert sorted(now) == sorted(pinned), "a new node: record it (AFFORDANCE_UPDATE_INTERFACE=1)"


def test_the_snapshot_covers_every_widget_setting():
    """The pin is not vacuous: each node has inputs or outputs in it, and the widgets' numbers are there."""
    pinned = json.loads(SNAPSHOT.read_text())
    assert len(pinned) == len(NODE_CLASS_MAPPINGS) >= 20
    canny = dict(pinned["AST_CannyPreprocessor"]["required"])
    assert canny["low_threshold"] == {"type": "INT", "default": 100, "min": 0, "max": 255, "step": 1}
    assert pinned["AST_ControlNetLoader"]["required"] == [["control_net_name", {"choices": "files of models/controlnet"}]]
    assert pinned["AST_PixelPerfectResolution"]["output_names"] == ["resolution"]
    assert pinned["AST_ScribbleCanvas"]["output_names"] == ["scribble", "mask"]

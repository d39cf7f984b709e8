"""Example workflows are well-formed UI JSON whose Affordance nodes match our schemas exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affordance.nodes import NODE_CLASS_MAPPINGS

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "AST_SCRIBBLE"}  # AST_SCRIBBLE: the canvas widget


def _widgets(cls) -> list[str]:
    spec = cls.INPUT_TYPES()
    names = []
    for section in ("required", "optional"):
        for name, (kind, *_) in spec.get(section, {}).items():
            if isinstance(kind, list) or kind in WIDGET_TYPES:
                names.append(name)
    return names


def _links(cls) -> dict[str, str]:
    spec = cls.INPUT_TYPES()
    return {
        name: kind
        for section in ("required", "optional")
        for name, (kind, *_) in spec.get(section, {}).items()
        if not (isinstance(kind, list) or kind in WIDGET_TYPES)
    }


def test_there_are_example_workflows():
    names = {p.name for p in WORKFLOWS}
    assert {"single_controlnet.json", "style_transfer_two_controlnets.json", "scribble_canvas_to_image.json"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_consistent(path):
    wf = json.loads(path.read_text())
    assert wf["version"] == 0.4
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]) and wf["last_node_id"] >= max(nodes)
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        assert link_id in out["links"] and inp["link"] == link_id
        assert out["type"] == inp["type"] == kind
    ours = [n for n in wf["nodes"] if n["type"].startswith("AST_")]
    assert ours, "an example workflow should use our nodes"
    for n in ours:
        cls = NODE_CLASS_MAPPINGS[n["type"]]
        assert len(n["widgets_values"]) == len(_widgets(cls)), n["type"]
        declared = _links(cls)
        for inp in n["inputs"]:
            assert declared[inp["name"]] == inp["type"], (n["type"], inp["name"])
        required = cls.INPUT_TYPES()["required"]
        for name in required:
            if name in declared:
                assert any(i["name"] == name and i["link"] is not None for i in n["inputs"]), f"{n['type']}.{name} unlinked"
        assert [o["type"] for o in n["outputs"]] == list(cls.RETURN_TYPES)
        # the labels on the sockets: ComfyUI shows the type (AST_CONTROL_WEIGHTS...) where a node names none
        assert [o["name"] for o in n["outputs"]] == list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)), n["type"]


def test_multi_controlnet_example_chains_two(tmp_path):
    wf = json.loads((ROOT / "example_workflows" / "style_transfer_two_controlnets.json").read_text())
    applies = [n for n in wf["nodes"] if n["type"] == "AST_ApplyControlNet"]
    assert len(applies) == 2
    ids = {n["id"] for n in applies}
    chained = [lk for lk in wf["links"] if lk[1] in ids and lk[3] in ids]
    assert len(chained) == 2  # positive and negative flow from the first Apply into the second


def test_scribble_example_keeps_its_strokes_and_reference():
    """The canvas redraws (and re-uploads) the drawing from the strokes kept in the workflow."""
    wf = json.loads((ROOT / "example_workflows" / "scribble_canvas_to_image.json").read_text())
    (canvas,) = [n for n in wf["nodes"] if n["type"] == "AST_ScribbleCanvas"]
    width, height, ref = canvas["widgets_values"]
    assert (width, height) == (512, 512)
    assert ref.startswith(f"affordance_scribbles/scribble_{width}x{height}_") and ref.endswith(".png")
    record = canvas["properties"]["ast_scribble"]
    assert record["v"] == 1 and record["base"] is None and len(record["ops"]) >= 5
    (apply,) = [n for n in wf["nodes"] if n["type"] == "AST_ApplyControlNet"]
    image_link = next(i["link"] for i in apply["inputs"] if i["name"] == "image")
    assert any(lk[0] == image_link and lk[1] == canvas["id"] for lk in wf["links"])

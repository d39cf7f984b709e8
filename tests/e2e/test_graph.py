"""Every AST_ node and every example workflow in the real frontend: added, saved, reloaded, no errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any as Page

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "example_workflows").glob("*.json"))


def node_ids(page: Page) -> list[str]:
    return page.js("return Object.keys(LiteGraph.registered_node_types).filter(t => t.startsWith('AST_')).sort();")


def test_every_ast_node_adds_saves_and_reloads(fresh: Page):
    page = fresh
    ids = node_ids(page)
    server_ids = sorted(k for k in page.server.get("/object_info") if k.startswith("AST_"))
    assert ids == server_ids and len(ids) >= 28
    for i, t in enumerate(ids):
        page.add_node(t, (40 + (i % 6) * 460, 40 + (i // 6) * 620))
    page.js("app.canvas.ds.scale = 0.35; app.canvas.ds.offset = [20, 60]; app.canvas.setDirty(true, true);")
    time.sleep(1.0)
    types = page.js("return app.graph.nodes.map(n => n.type);")
    assert sorted(types) == ids
    assert page.js("return app.graph.nodes.filter(n => n.has_errors).map(n => n.type);") == []
    page.screenshot("every_ast_node")
    saved = page.js("return JSON.stringify(app.graph.serialize());")
    page.js_async("await app.loadGraphData(JSON.parse(arguments[0]), true, true, null);", saved)
    time.sleep(1.0)
    again = json.loads(page.js("return JSON.stringify(app.graph.serialize());"))
    before = json.loads(saved)
    assert [n["type"] for n in again["nodes"]] == [n["type"] for n in before["nodes"]]
    for a, b in zip(again["nodes"], before["nodes"]):
        # the frontend writes no widgets_values for a never-configured node without widgets, [] after a load
        for n in (a, b):
            n.setdefault("widgets_values", [])
        assert a == b, (a["type"], {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
    assert page.console_errors() == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_workflow_opens_without_missing_nodes_or_errors(fresh: Page, path: Path):
    page = fresh
    wf = json.loads(path.read_text())
    page.js_async("await app.loadGraphData(JSON.parse(arguments[0]), true, true, null);", json.dumps(wf))
    time.sleep(1.5)
    missing = page.js(
        "return app.graph.nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type);"
    )
    assert missing == []
    dialogs = page.js("return [...document.querySelectorAll('.p-dialog')].map(d => d.innerText.slice(0, 300));")
    assert not [d for d in dialogs if "missing" in d.lower() and "node" in d.lower()], dialogs
    assert page.js("return app.graph.nodes.length;") == len(wf["nodes"])
    canvases = [n for n in wf["nodes"] if n["type"] == "AST_ScribbleCanvas"]
    if canvases:  # what queueing does: each drawing is uploaded from the workflow's strokes
        page.wait("return app.graph.nodes.every(n => !n.astScribble?.restoring);", 30)
        prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")
    for n in canvases:
        ref = n["widgets_values"][2]
        assert prompt[str(n["id"])]["inputs"]["drawing"] == ref
        assert (page.server.input_dir / ref).exists(), f"the canvas did not upload {ref} from the workflow's strokes"
        status = page.js("return app.graph.getNodeById(arguments[0]).astScribble.el.status.textContent;", n["id"])
        assert "saved as input/" + ref in status
    page.screenshot(f"example_{path.stem}")
    assert page.console_errors() == []


def test_preprocessor_node_shows_its_hint_after_execution(fresh: Page):
    import numpy as np
    from PIL import Image

    page = fresh
    img = np.zeros((96, 128, 3), np.uint8)
    img[24:72, 32:96] = 255
    Image.fromarray(img).save(page.server.input_dir / "square.png")
    load = page.add_node("LoadImage", (40, 40))
    canny = page.add_node("AST_CannyPreprocessor", (420, 40))
    sink = page.add_node("PreviewImage", (800, 40))  # preprocessors are not output nodes: something must use the hint
    page.js("app.graph.getNodeById(arguments[0]).connect(0, app.graph.getNodeById(arguments[1]), 0);", canny, sink)
    page.js(
        "const l = app.graph.getNodeById(arguments[0]); const w = l.widgets.find(w => w.name === 'image');"
        "w.options.values = ['square.png']; w.value = 'square.png';"
        "l.connect(0, app.graph.getNodeById(arguments[1]), 0);",
        load,
        canny,
    )
    prompt = page.js_async(
        "const p = await app.graphToPrompt(); try { return await window.comfyAPI.api.api.queuePrompt(0, p); }"
        " catch (e) { throw new Error(JSON.stringify(e.response || String(e))); }"
    )
    entry = page.server.wait_history(prompt["prompt_id"])
    (record,) = entry["outputs"][str(canny)]["images"]
    assert record["type"] == "temp"
    import io

    with Image.open(io.BytesIO(page.server.view(record))) as im:
        hint = np.asarray(im.convert("L"))
    assert hint.shape == (96, 128) and hint[20:28, 40:88].max() == 255 and hint[40:56, 48:80].max() == 0, "edges"
    # the frontend shows it on the node
    src = page.wait(
        "const n = app.graph.getNodeById(arguments[0]); return n.imgs && n.imgs[0] && n.imgs[0].complete && n.imgs[0].src;",
        30,
        canny,
    )
    assert record["filename"] in src
    page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
    time.sleep(0.5)
    page.screenshot_node(canny, "preprocessor_preview")
    assert page.console_errors() == []


def test_under_the_vue_node_renderer_the_canvas_works_or_one_notice_says_it_cannot(fresh: Page):
    """Frontends differ under their Vue node renderer. 1.27's experimental one shows no extension's own widgets:
    adding our canvas and plots there says so once (a toast and a console warning) instead of leaving them
    missing without a word. Later ones (1.44) show the element but call no widget's onDraw: the canvas's
    per-frame work (following a size set by other code, layout, the background) must run anyway, with no notice."""
    page = fresh
    count = (
        "return [...document.querySelectorAll('.p-toast-message, [data-testid=toast]')].filter(e => e.innerText.includes('Vue renderer')).length;"
    )
    page.add_node("AST_ScribbleCanvas", (40, 40))  # classic renderer: no notice
    assert page.js(count) == 0
    page.clear_graph()
    page.js_async("await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true);")
    try:
        page.load()  # as a user who turned it on: the renderer is set up when the page loads
        page.wait("return LiteGraph.vueNodesMode === true;", 10)
        page.close_dialogs()
        page.clear_graph()
        canvas = page.add_node("AST_ScribbleCanvas", (40, 40))
        for i, t in enumerate(["AST_ControlWeights", "AST_StrengthSchedule", "AST_ScribbleCanvas"]):
            page.add_node(t, (480 + 420 * i, 40))
        shown = "return document.querySelector(`[data-node-id='${arguments[0]}']`);"
        page.wait(shown, 20, canvas)  # the node's Vue component
        time.sleep(0.5)
        mounted = page.js(
            "return document.querySelector(`[data-node-id='${arguments[0]}']`).contains("
            "app.graph.getNodeById(arguments[0]).astScribble.el.root);",
            canvas,
        )
        if mounted:
            page.js(
                "const n = app.graph.getNodeById(arguments[0]); n.widgets.find(w => w.name === 'width').value = 200;",
                canvas,
            )
            page.wait("return app.graph.getNodeById(arguments[0]).astScribble.raster.width === 200;", 10, canvas)
            time.sleep(2.5)  # longer than the notice waits for the element
            assert page.js(count) == 0
        else:
            page.wait(count, 10)
            time.sleep(0.5)
            assert page.js(count) == 1
            warnings = [e["message"] for e in page.driver.get_log("browser") if "Vue renderer" in e["message"]]
            assert len(warnings) == 1 and "affordance" in warnings[0], warnings
        errors = page.console_errors()
    finally:
        page.js_async("await app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false);")
        page.load()
        page.wait("return LiteGraph.vueNodesMode === false;", 10)
        page.close_dialogs()
        page.clear_graph()
    assert errors == []

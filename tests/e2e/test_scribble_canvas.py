"""The scribble canvas in a real browser and server: draw with pointer events, upload, queue, save, reload."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any as Page

import numpy as np
import pytest
from PIL import Image

STATE = "const s = app.graph.getNodeById(arguments[0]).astScribble;"


def add_canvas(page: Page, width: int = 256, height: int = 192) -> int:
    nid = page.add_node("AST_ScribbleCanvas", (60, 60))
    page.js(
        "const n = app.graph.getNodeById(arguments[0]);"
        "n.widgets.find(w => w.name === 'width').value = arguments[1];"
        "n.widgets.find(w => w.name === 'height').value = arguments[2];"
        "n.astScribble.rebuild(); n.setSize([420, 560]); app.canvas.setDirty(true, true);",
        nid,
        width,
        height,
    )
    page.wait(STATE + "const r = s.el.ink.getBoundingClientRect(); return r.width > 50 && r.height > 30;", 20, nid)
    return nid


def draw(page: Page, nid: int, path: list[tuple[float, float]]) -> None:
    """Press, move through ``path`` (fractions of the canvas) and release, as a real mouse's pointer events."""
    from selenium.webdriver.common.action_chains import ActionChains

    el = page.js(STATE + "return s.el.ink;", nid)
    # the element's on-screen box (the graph's zoom is a CSS transform, which el.size does not include)
    w, h = page.js("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", el)

    def off(fx: float, fy: float) -> tuple[int, int]:  # offsets from the element's centre
        return int(round((fx - 0.5) * w)), int(round((fy - 0.5) * h))

    chain = ActionChains(page.driver, duration=10)
    chain.move_to_element_with_offset(el, *off(*path[0])).click_and_hold()
    for p in path[1:]:
        chain.move_to_element_with_offset(el, *off(*p))
    chain.release().perform()


def wait_saved(page: Page, nid: int) -> str:
    page.wait(STATE + "return s.el.status.textContent.includes('saved as input/');", 30, nid)
    return page.js(STATE + "return s.value;", nid)


def raster(page: Page, nid: int) -> np.ndarray:
    b64, w, h = page.js(
        STATE + "const d = s.raster.data; let t = ''; for (let i = 0; i < d.length; i += 8192)"
        " t += String.fromCharCode.apply(null, d.subarray(i, i + 8192)); return [btoa(t), s.raster.width, s.raster.height];",
        nid,
    )
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w)


def test_draw_upload_queue_save_and_reload(fresh: Page):
    page = fresh
    nid = add_canvas(page)
    preview = page.add_node("PreviewImage", (520, 60))
    page.js("app.graph.getNodeById(arguments[0]).connect(0, app.graph.getNodeById(arguments[1]), 0);", nid, preview)
    draw(page, nid, [(0.1, 0.5), (0.5, 0.52), (0.9, 0.5)])
    draw(page, nid, [(0.5, 0.1), (0.5, 0.9)])
    ref = wait_saved(page, nid)
    assert ref.startswith("affordance_scribbles/scribble_256x192_") and ref.endswith(".png")
    drawn = raster(page, nid)
    assert drawn.shape == (192, 256)
    assert drawn[96, 40:216].min() == 255, "the horizontal stroke is continuous"
    assert drawn[30:160, 128].min() == 255, "the vertical stroke is continuous"
    assert (drawn > 0).mean() < 0.2

    # the uploaded file is the drawing, white on black
    path = page.server.input_dir / ref
    with Image.open(path) as im:
        assert im.size == (256, 192)
        uploaded = np.asarray(im.convert("L"))
    assert np.array_equal(uploaded > 127, drawn > 0)
    page.screenshot_node(nid, "scribble_canvas")

    # queue it: the prompt carries the reference and the node outputs the drawing
    prompt = page.js_async("const p = await app.graphToPrompt(); return await api.queuePrompt(0, p);".replace(
        "api.", "window.comfyAPI.api.api."))
    assert not prompt.get("node_errors"), prompt
    entry = page.server.wait_history(prompt["prompt_id"])
    (img,) = entry["outputs"][str(preview)]["images"]
    with Image.open(io.BytesIO(page.server.view(img))) as im:
        out = np.asarray(im.convert("L"))
    assert np.array_equal(out > 127, drawn > 0)
    inputs = entry["prompt"][2][str(nid)]["inputs"]
    assert inputs["drawing"] == ref and inputs["width"] == 256 and inputs["height"] == 192

    # save the workflow and load it back: unchanged, same drawing, no re-upload needed
    saved = page.js("return JSON.stringify(app.graph.serialize());")
    node_json = next(n for n in json.loads(saved)["nodes"] if n["type"] == "AST_ScribbleCanvas")
    assert node_json["widgets_values"] == [256, 192, ref]
    assert len(node_json["properties"]["ast_scribble"]["ops"]) == 2
    page.js_async("await app.loadGraphData(JSON.parse(arguments[0]), true, true, null);", saved)
    page.wait(STATE + "return s && !s.restoring && s.el.status.textContent.includes('saved');", 30, nid)
    again = page.js("return JSON.stringify(app.graph.serialize());")
    for a, b in zip(json.loads(again)["nodes"], json.loads(saved)["nodes"]):
        assert a == b, json.dumps({k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
    assert json.loads(again)["links"] == json.loads(saved)["links"]
    assert np.array_equal(raster(page, nid), drawn)

    # a server without the file (another machine): reopening uploads it again from the kept strokes
    path.unlink()
    page.js_async("await app.loadGraphData(JSON.parse(arguments[0]), true, true, null);", saved)
    deadline = time.time() + 30
    while not path.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert path.exists(), "the drawing was not uploaded again"
    assert page.js(STATE + "return s.value;", nid) == ref
    assert page.console_errors() == []


def test_eraser_undo_clear_and_brush(fresh: Page):
    page = fresh
    nid = add_canvas(page, 128, 128)
    page.js(STATE + "s.el.size.value = '20'; s.el.size.dispatchEvent(new Event('input'));", nid)
    draw(page, nid, [(0.2, 0.5), (0.8, 0.5)])
    thick = raster(page, nid)
    assert 16 <= (thick[:, 64] > 0).sum() <= 24, "brush size 20 on a 128 px canvas"
    assert page.js("return app.graph.getNodeById(arguments[0]).properties.ast_brush;", nid) == 20
    page.js(STATE + "s.el.erase.click();", nid)
    draw(page, nid, [(0.5, 0.1), (0.5, 0.9)])
    erased = raster(page, nid)
    assert erased[64, 64] == 0 and erased[64, 30] == 255
    page.js(STATE + "s.el.undo.click();", nid)
    assert np.array_equal(raster(page, nid), thick)
    page.js(STATE + "s.el.clear.click();", nid)
    assert raster(page, nid).max() == 0
    assert page.js(STATE + "return s.value;", nid) == ""
    page.js(STATE + "s.el.undo.click();", nid)
    assert np.array_equal(raster(page, nid), thick), "clear is undoable"
    assert page.console_errors() == []


def test_failed_upload_is_shown_and_nothing_is_lost(fresh: Page):
    page = fresh
    nid = add_canvas(page, 128, 96)
    page.js(
        "const api = window.comfyAPI.api.api; window.__astRealFetch = api.fetchApi.bind(api);"
        "api.fetchApi = (route, opts) => route.startsWith('/upload/image') ?"
        " Promise.resolve(new Response('disk full', {status: 507, statusText: 'Insufficient Storage'})) :"
        " window.__astRealFetch(route, opts);"
    )
    try:
        draw(page, nid, [(0.2, 0.2), (0.8, 0.8)])
        status = page.wait(
            STATE + "return s.el.status.dataset.state === 'error' && s.el.status.textContent;", 20, nid
        )
        assert "Upload failed: the server answered 507" in status and "kept in the node" in status
        ref = page.js(STATE + "return s.value;", nid)
        assert ref and not (page.server.input_dir / ref).exists()
        # queueing refuses with a clear message instead of running without the drawing
        err = page.js_async(
            "try { await app.graphToPrompt(); return null; } catch (e) { return String(e.message); }"
        )
        assert err and "could not be uploaded" in err and "still in the node" in err
        page.screenshot_node(nid, "scribble_upload_failed")
    finally:
        page.js("window.comfyAPI.api.api.fetchApi = window.__astRealFetch;")
    # the strokes were kept: the next stroke uploads the whole drawing
    draw(page, nid, [(0.8, 0.2), (0.2, 0.8)])
    ref = wait_saved(page, nid)
    with Image.open(page.server.input_dir / ref) as im:
        got = np.asarray(im.convert("L")) > 127
    assert np.array_equal(got, raster(page, nid) > 0)
    # both diagonals: the first (drawn while uploads failed) and the second
    assert got[27:32, 36:41].any() and got[64:70, 36:41].any(), "both diagonals present"
    assert page.console_errors() == []


def test_oversized_drawing_is_refused(fresh: Page):
    page = fresh
    nid = add_canvas(page, 128, 128)
    draw(page, nid, [(0.3, 0.3), (0.7, 0.7)])
    before = wait_saved(page, nid)
    page.js(
        "const n = app.graph.getNodeById(arguments[0]); const w = n.widgets.find(w => w.name === 'width');"
        "w.value = 5000; w.callback(5000);",
        nid,
    )
    status = page.js(STATE + "return s.el.status.textContent;", nid)
    assert "larger than the maximum of 4096x4096 pixels: width is 5000" in status and "Kept 128x128" in status
    assert page.js(STATE + "return [s.raster.width, s.value];", nid) == [128, before], "last good drawing kept"
    assert page.js("return app.graph.getNodeById(arguments[0]).widgets.find(w => w.name === 'width').value;", nid) == 128
    # a prompt written by hand with an oversized canvas is refused by the server, naming the limit
    answer = page.js_async(
        "const r = await fetch('/prompt', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({prompt: {'1': {class_type: 'AST_ScribbleCanvas', inputs: {width: 5000, height: 64,"
        " drawing: ''}}, '2': {class_type: 'PreviewImage', inputs: {images: ['1', 0]}}}})});"
        " return [r.status, await r.text()];"
    )
    assert answer[0] == 400 and "4096" in answer[1], answer
    assert page.console_errors() == []


@pytest.mark.parametrize("source", ["load_image"])
def test_background_image_to_trace(fresh: Page, source: str):
    page = fresh
    img = np.zeros((96, 160, 3), np.uint8)
    img[:, :80] = (200, 60, 20)
    Image.fromarray(img).save(page.server.input_dir / "trace_me.png")
    nid = add_canvas(page, 128, 128)
    load = page.add_node("LoadImage", (520, 60))
    page.js(
        "const l = app.graph.getNodeById(arguments[0]); const w = l.widgets.find(w => w.name === 'image');"
        "w.options.values = ['trace_me.png']; w.value = 'trace_me.png'; w.callback?.('trace_me.png');"
        "l.connect(0, app.graph.getNodeById(arguments[1]), l.connect ? 0 : 0);",
        load,
        nid,
    )
    page.js(
        "const l = app.graph.getNodeById(arguments[0]); const n = app.graph.getNodeById(arguments[1]);"
        "l.connect(0, n, n.inputs.findIndex(i => i.name === 'background'));",
        load,
        nid,
    )
    page.wait(STATE + "app.canvas.setDirty(true, true); app.canvas.draw(true, true); return !!s.bgImage;", 30, nid)
    # the background is shown under the ink but is not part of the drawing
    assert raster(page, nid).max() == 0
    pixel = page.js(STATE + "return Array.from(s.bgCtx.getImageData(10, 64, 1, 1).data);", nid)
    assert pixel[0] > 60 and pixel[2] < pixel[0], pixel
    page.js(STATE + "s.el.fit.click();", nid)
    assert page.js(STATE + "return [s.raster.width, s.raster.height];", nid) == [160, 96]
    draw(page, nid, [(0.1, 0.1), (0.45, 0.9)])
    page.screenshot_node(nid, "scribble_background")
    assert page.console_errors() == []


def test_strokes_land_under_the_pointer_at_any_graph_zoom(fresh: Page):
    page = fresh
    nid = add_canvas(page, 200, 100)
    page.js("app.canvas.ds.scale = 1.6; app.canvas.ds.offset = [-20, -20]; app.canvas.setDirty(true, true);"
            "app.canvas.draw(true, true);")
    page.wait(STATE + "app.canvas.draw(true, true); const r = s.el.ink.getBoundingClientRect(); return r.width > 300;", 20, nid)
    draw(page, nid, [(0.2, 0.5), (0.8, 0.5)])
    drawn = raster(page, nid)
    cols = np.nonzero(drawn[50])[0]
    rows = np.nonzero(drawn[:, 100])[0]
    # brush 8 px: the line spans x = 40..160 (+-4 for the round caps, +-2 for pointer rounding), centred on y = 50
    assert abs(cols.min() - 40) <= 6 and abs(cols.max() - 160) <= 6, (cols.min(), cols.max())
    assert abs(rows.mean() - 50) <= 2 and 6 <= len(rows) <= 10, rows
    page.clear_graph()
    assert page.console_errors() == []

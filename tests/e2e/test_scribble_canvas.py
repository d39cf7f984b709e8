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
    """Press, move through ``path`` (fractions of the canvas) and release, as a real mouse's pointer events.

    On an editable canvas the stroke must be recorded; a press that landed while the new node was still being
    laid out (now and then in headless Chromium) is drawn again once."""
    before = page.js(STATE + "return s.readOnly ? null : s.ops.length;", nid)
    for _ in range(2):
        _stroke(page, nid, path)
        if before is None:
            return
        end = time.time() + 2
        while time.time() < end:
            if page.js(STATE + "return s.ops.length;", nid) > before:
                return
            time.sleep(0.1)
    raise AssertionError(f"the stroke {path} was not recorded by node {nid}")


def _stroke(page: Page, nid: int, path: list[tuple[float, float]]) -> None:
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
    """Make a prompt's value of the canvas (what queueing does: the drawing is uploaded then) and return it."""
    ref = page.js_async("return await app.graph.getNodeById(args[0]).astScribble.serialize();", nid)
    assert page.js(STATE + "return s.el.status.textContent;", nid).endswith("saved as input/" + ref)
    return ref


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
    folder = page.server.input_dir / "affordance_scribbles"
    files = lambda: sorted(folder.glob("*.png")) if folder.is_dir() else []  # noqa: E731
    before = files()
    draw(page, nid, [(0.1, 0.5), (0.5, 0.52), (0.9, 0.5)])
    draw(page, nid, [(0.5, 0.1), (0.5, 0.9)])
    time.sleep(1.0)
    assert files() == before, "strokes alone leave no file in the input folder"
    ref = wait_saved(page, nid)
    assert [p for p in files() if p not in before] == [page.server.input_dir / ref], "one file: the drawing queued"
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
    prompt = page.js_async(
        "const p = await app.graphToPrompt(); return await api.queuePrompt(0, p);".replace(
            "api.", "window.comfyAPI.api.api."
        )
    )
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
    # our nodes (core ones are the frontend's business: 1.44's Preview Image gains an empty widgets_values
    # once its preview widget exists, depending on timing)
    ours = [[n for n in json.loads(doc)["nodes"] if n["type"].startswith("AST_")] for doc in (again, saved)]
    assert len(ours[0]) == len(ours[1]) == 1
    for a, b in zip(*ours):
        assert a == b, json.dumps({k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
    assert json.loads(again)["links"] == json.loads(saved)["links"]
    assert np.array_equal(raster(page, nid), drawn)

    # a server without the file (another machine): queueing the reopened drawing uploads it from its strokes
    path.unlink()
    page.js_async("await app.loadGraphData(JSON.parse(arguments[0]), true, true, null);", saved)
    page.wait(STATE + "return s && !s.restoring;", 30, nid)
    assert not path.exists(), "nothing is uploaded before a prompt is made"
    assert wait_saved(page, nid) == ref  # queueing uploads it from the kept strokes
    assert path.exists(), "the drawing was not uploaded again"
    assert page.console_errors() == []


def shown(page: Page, nid: int) -> np.ndarray:
    """Where the canvas on screen shows ink: its ink layer's opaque pixels (white on a transparent layer)."""
    b64, w, h = page.js(
        STATE + "const c = s.el.ink; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " const a = new Uint8Array(d.length / 4); for (let i = 0; i < a.length; i++) a[i] = d[4 * i + 3];"
        " let t = ''; for (let i = 0; i < a.length; i += 8192) t += String.fromCharCode.apply(null, a.subarray(i, i + 8192));"
        " return [btoa(t), c.width, c.height];",
        nid,
    )
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w)


def test_eraser_undo_clear_and_brush(fresh: Page):
    page = fresh
    nid = add_canvas(page, 128, 128)
    page.js(STATE + "s.el.clear.click();", nid)
    assert page.js(STATE + "return s.ops.length;", nid) == 0, "clearing a blank canvas records no step"
    # the slider's lowest position is the smallest brush, and touch drawing does not scroll the page
    page.js(STATE + "s.el.size.value = '0'; s.el.size.dispatchEvent(new Event('input'));", nid)
    assert page.js("return app.graph.getNodeById(arguments[0]).properties.ast_brush;", nid) == 1
    assert page.js(STATE + "return getComputedStyle(s.el.ink).touchAction;", nid) == "none"
    page.js(STATE + "s.el.size.value = '20'; s.el.size.dispatchEvent(new Event('input'));", nid)
    draw(page, nid, [(0.2, 0.5), (0.8, 0.5)])
    thick = raster(page, nid)
    assert 16 <= (thick[:, 64] > 0).sum() <= 24, "brush size 20 on a 128 px canvas"
    assert np.array_equal(shown(page, nid) > 0, thick > 0), "the stroke is shown as drawn, nothing else"
    assert page.js("return app.graph.getNodeById(arguments[0]).properties.ast_brush;", nid) == 20
    page.js(STATE + "s.el.erase.click();", nid)
    draw(page, nid, [(0.5, 0.1), (0.5, 0.9)])
    erased = raster(page, nid)
    assert erased[64, 64] == 0 and erased[64, 30] == 255
    assert np.array_equal(shown(page, nid) > 0, erased > 0)
    page.js(STATE + "s.el.undo.click();", nid)
    assert np.array_equal(raster(page, nid), thick)
    assert np.array_equal(shown(page, nid) > 0, thick > 0), "undo shows the drawing as it was"
    page.js(STATE + "s.el.clear.click();", nid)
    assert raster(page, nid).max() == 0
    assert shown(page, nid).max() == 0
    assert page.js(STATE + "return s.value;", nid) == ""
    page.js(STATE + "s.el.undo.click();", nid)
    assert np.array_equal(raster(page, nid), thick), "clear is undoable"
    assert page.console_errors() == []


def test_a_press_shows_its_dot_before_the_pointer_moves_or_lifts(fresh: Page):
    """Drawing answers at once: the brush's dot is on screen while the button is still held, before any move."""
    from selenium.webdriver.common.action_chains import ActionChains

    page = fresh
    nid = add_canvas(page, 128, 128)
    ink = page.js(STATE + "return s.el.ink;", nid)
    ActionChains(page.driver, duration=10).move_to_element(ink).click_and_hold().perform()
    try:
        page.wait(STATE + "return !!s.active;", 5, nid)
        held = shown(page, nid)
        ys, xs = np.nonzero(held)
        # a dot of the 8 px brush (about 50 pixels) under the pointer, at the centre (+-2 for pointer rounding)
        assert 30 <= len(ys) <= 80 and abs(ys.mean() - 64) <= 2 and abs(xs.mean() - 64) <= 2, (len(ys), ys.mean(), xs.mean())
    finally:
        ActionChains(page.driver).release().perform()
    page.wait(STATE + "return s.ops.length === 1;", 5, nid)
    assert np.array_equal(raster(page, nid) > 0, held > 0)
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
        assert "saved to the input folder when queued" in page.js(STATE + "return s.el.status.textContent;", nid)
        # queueing refuses with a clear message instead of running without the drawing
        err = page.js_async("try { await app.graphToPrompt(); return null; } catch (e) { return String(e.message); }")
        assert err and "could not be uploaded" in err and "still in the node" in err
        status = page.js(STATE + "return s.el.status.dataset.state === 'error' && s.el.status.textContent;", nid)
        assert "Upload failed: the server answered 507" in status and "kept in the node" in status
        ref = page.js(STATE + "return s.value;", nid)
        assert ref and not (page.server.input_dir / ref).exists()
        page.screenshot_node(nid, "scribble_upload_failed")
    finally:
        page.js("window.comfyAPI.api.api.fetchApi = window.__astRealFetch;")
    # the strokes were kept: the next queue uploads the whole drawing
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
    assert (
        page.js("return app.graph.getNodeById(arguments[0]).widgets.find(w => w.name === 'width').value;", nid) == 128
    )
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
    # fitting sets the size as a user's edit of the widgets does: their callbacks hear of it (ComfyUI's own
    # listeners and other extensions follow a widget through its callback)
    page.js(
        "const n = app.graph.getNodeById(arguments[0]); window.__astHeard = [];"
        "for (const w of n.widgets.filter(w => ['width', 'height'].includes(w.name))) {"
        "  const cb = w.callback; w.callback = function (v, ...rest) {"
        "    window.__astHeard.push([w.name, v]); return cb?.call(this, v, ...rest); }; }",
        nid,
    )
    page.js(STATE + "s.el.fit.click();", nid)
    assert page.js(STATE + "return [s.raster.width, s.raster.height];", nid) == [160, 96]
    assert page.js("return window.__astHeard;") == [["width", 160], ["height", 96]]
    draw(page, nid, [(0.1, 0.1), (0.45, 0.9)])
    page.screenshot_node(nid, "scribble_background")
    # unlinked, the background leaves the canvas (and the drawing stays)
    page.js(
        "const n = app.graph.getNodeById(arguments[0]); n.disconnectInput(n.inputs.findIndex(i => i.name === 'background'));"
        "app.canvas.setDirty(true, true); app.canvas.draw(true, true);",
        nid,
    )
    page.wait(STATE + "app.canvas.setDirty(true, true); app.canvas.draw(true, true); return !s.bgImage;", 10, nid)
    page.js(STATE + "s.el.fit.click(); s.rebuild();", nid)  # no background to fit to: nothing changes
    rgb = "const d = s.bgCtx.getImageData(0, 0, s.raster.width, s.raster.height).data; let m = 0;"
    rgb += " for (let i = 0; i < d.length; i += 4) m = Math.max(m, d[i], d[i + 1], d[i + 2]); return m;"
    assert page.js(STATE + rgb, nid) == 0  # plain black under the ink again
    assert raster(page, nid).max() == 255
    assert page.console_errors() == []


def test_strokes_land_under_the_pointer_at_any_graph_zoom(fresh: Page):
    page = fresh
    nid = add_canvas(page, 200, 100)
    page.js(
        "app.canvas.ds.scale = 1.6; app.canvas.ds.offset = [-20, -20]; app.canvas.setDirty(true, true);"
        "app.canvas.draw(true, true);"
    )
    page.wait(
        STATE + "app.canvas.draw(true, true); const r = s.el.ink.getBoundingClientRect(); return r.width > 300;",
        20,
        nid,
    )
    draw(page, nid, [(0.2, 0.5), (0.8, 0.5)])
    drawn = raster(page, nid)
    cols = np.nonzero(drawn[50])[0]
    rows = np.nonzero(drawn[:, 100])[0]
    # brush 8 px: the line spans x = 40..160 (+-4 for the round caps, +-2 for pointer rounding), centred on y = 50
    assert abs(cols.min() - 40) <= 6 and abs(cols.max() - 160) <= 6, (cols.min(), cols.max())
    assert abs(rows.mean() - 50) <= 2 and 6 <= len(rows) <= 10, rows
    page.clear_graph()
    assert page.console_errors() == []


EMPTY_WORKFLOW = {"nodes": [], "links": [], "version": 0.4, "last_node_id": 0, "last_link_id": 0, "groups": []}
HISTORY = (
    "const ct = app.extensionManager.workflow.activeWorkflow.changeTracker;"
    "const strokes = (s) => s.nodes.filter(n => n.type === 'AST_ScribbleCanvas')"
    "  .map(n => (n.properties?.ast_scribble?.ops ?? []).length);"
    "return {now: strokes(app.graph.serialize()), undo: ct.undoQueue.map(strokes), redo: ct.redoQueue.map(strokes)};"
)


def _ctrl(page: Page, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.js("document.querySelector('#graph-canvas').focus();")
    ActionChains(page.driver).key_down(Keys.CONTROL).send_keys(key).key_up(Keys.CONTROL).perform()


def test_graph_undo_and_redo_step_through_strokes(fresh: Page):
    """Ctrl+Z / Ctrl+Y step through strokes; reloading a step never records the half-loaded graph as a new one."""
    page = fresh
    page.js_async("await app.loadGraphData(arguments[0], true, true, 'undo_history');", EMPTY_WORKFLOW)
    nid = add_canvas(page, 128, 96)
    draw(page, nid, [(0.1, 0.5), (0.9, 0.5)])
    wait_saved(page, nid)
    draw(page, nid, [(0.5, 0.1), (0.5, 0.9)])
    wait_saved(page, nid)
    # strokes per canvas: the empty graph, the new canvas (0 strokes), one stroke, two strokes
    assert page.js(HISTORY) == {"now": [2], "undo": [[], [0], [1]], "redo": []}
    steps = [  # key, then the whole history: a restored step must never add one (nor clear the redo list)
        ("z", {"now": [1], "undo": [[], [0]], "redo": [[2]]}),
        ("y", {"now": [2], "undo": [[], [0], [1]], "redo": []}),
        ("z", {"now": [1], "undo": [[], [0]], "redo": [[2]]}),
        ("z", {"now": [0], "undo": [[]], "redo": [[2], [1]]}),
    ]
    for key, expected in steps:
        _ctrl(page, key)
        page.wait(
            f"return JSON.stringify((() => {{ {HISTORY} }})().now) === {json.dumps(json.dumps(expected['now']))};", 10
        )
        time.sleep(0.5)  # the canvas restores asynchronously: nothing it does may add a step
        assert page.js(HISTORY) == expected, key
    assert page.console_errors() == []


def _canvas_workflow(ref: str, width: int, height: int) -> dict:
    """A workflow written elsewhere: a canvas naming a drawing file, with no strokes kept."""
    return {
        **EMPTY_WORKFLOW,
        "last_node_id": 1,
        "nodes": [
            {
                "id": 1,
                "type": "AST_ScribbleCanvas",
                "pos": [60, 60],
                "size": [420, 560],
                "flags": {},
                "order": 0,
                "mode": 0,
                "inputs": [],
                "outputs": [
                    {"name": "scribble", "type": "IMAGE", "links": None},
                    {"name": "mask", "type": "MASK", "links": None},
                ],
                "properties": {},
                "widgets_values": [width, height, ref],
            }
        ],
    }


def test_damaged_saved_strokes_show_the_drawing_file_say_so_and_stay_until_edited(fresh: Page):
    """A workflow whose kept strokes this version cannot read (edited by hand, a later version's format) loads:
    the canvas shows the drawing file the node names instead, says why as an error that stays, and leaves the
    strokes in the workflow as they were (saving it loses nothing) until the drawing is edited."""
    page = fresh
    ref = "affordance_scribbles/kept_file.png"
    ink = np.zeros((96, 128), np.uint8)
    ink[40:56, 20:100] = 255
    (page.server.input_dir / "affordance_scribbles").mkdir(parents=True, exist_ok=True)
    Image.fromarray(ink).save(page.server.input_dir / ref)
    damaged = {"v": 99, "base": None, "ops": [{"t": "future", "data": [1, 2, 3]}]}
    workflow = _canvas_workflow(ref, 128, 96)
    workflow["nodes"][0]["properties"] = {"ast_scribble": damaged}
    page.js_async("await app.loadGraphData(arguments[0], true, true, 'damaged');", workflow)
    page.wait(STATE + "return !s.restoring && !!s.base;", 20, 1)
    time.sleep(0.5)  # some frames
    assert np.array_equal(raster(page, 1) > 0, ink > 0)
    state, text = page.js(STATE + "return [s.el.status.dataset.state, s.el.status.textContent];", 1)
    assert state == "error" and "The saved strokes cannot be read" in text and "version 99" in text, text
    assert f"showing input/{ref} instead" in text and "until the drawing is edited" in text, text
    kept = "return app.graph.serialize().nodes[0].properties.ast_scribble;"
    assert page.js(kept) == damaged
    # the node still names the file (saved, the workflow reopens as it was; queued, the file is what runs)
    assert page.js("return app.graph.serialize().nodes[0].widgets_values[2];") == ref
    assert page.js_async("const p = await app.graphToPrompt(); return p.output;")["1"]["inputs"]["drawing"] == ref
    draw(page, 1, [(0.5, 0.1), (0.5, 0.9)])  # an edit: a drawing of our own, on top of the file
    record = page.js(kept)
    assert record["v"] != 99 and record["base"] == ref and len(record["ops"]) == 1, record
    drawn = raster(page, 1)
    assert (drawn[20:76, 62:66] > 0).all() and np.array_equal(drawn[:, :56] > 0, ink[:, :56] > 0)
    assert page.js(STATE + "return s.el.status.dataset.state;", 1) == "ok"
    assert page.console_errors() == []


@pytest.mark.parametrize("case", ["missing", "too_large"])
def test_a_drawing_that_cannot_be_shown_is_never_overwritten(fresh: Page, case: str):
    """Queueing sends the file name unchanged (the backend reports the problem) and never uploads over it."""
    page = fresh
    ref = f"affordance_scribbles/{case}_sketch.png"
    path = page.server.input_dir / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if case == "too_large":
        Image.new("L", (4200, 16), 255).save(path)
    before = path.read_bytes() if path.exists() else None
    page.js_async(
        "await app.loadGraphData(arguments[0], true, true, arguments[1]);", _canvas_workflow(ref, 128, 96), case
    )
    status = page.wait(STATE + "return s.el.status.dataset.state === 'error' && s.el.status.textContent;", 20, 1)
    assert "could not be loaded" in status and ".." not in status
    assert page.js(STATE + "return [s.raster.width, s.raster.height];", 1) == [128, 96]
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")
    assert prompt["1"]["inputs"]["drawing"] == ref
    time.sleep(1.0)  # an upload, had one been started, would have landed by now
    assert (path.read_bytes() if path.exists() else None) == before
    answer = page.js_async(
        "const p = await app.graphToPrompt(); const r = await fetch('/prompt', {method: 'POST',"
        " headers: {'Content-Type': 'application/json'}, body: JSON.stringify({prompt: Object.assign(p.output,"
        " {'2': {class_type: 'PreviewImage', inputs: {images: ['1', 0]}}})})}); return [r.status, await r.text()];"
    )
    if case == "missing":  # refused before running, naming the file
        assert answer[0] == 400 and ref.split("/")[-1] in answer[1], answer
    else:  # the file exists, so it runs, and the run fails naming the size
        with pytest.raises(AssertionError, match="4200x16"):
            page.server.wait_history(json.loads(answer[1])["prompt_id"], timeout=60)
    assert (path.read_bytes() if path.exists() else None) == before
    page.console_errors()  # the browser logs the 404 of /view for the missing file: expected


def test_a_canvas_in_a_legacy_group_node_passes_its_drawing_on(fresh: Page):
    """The deprecated group nodes cannot host a working canvas: it is read-only there and never loses the drawing."""
    from selenium.webdriver.common.keys import Keys

    page = fresh
    page.js_async("await app.loadGraphData(arguments[0], true, true, 'group_node');", EMPTY_WORKFLOW)
    nid = add_canvas(page, 128, 96)
    assert page.js(STATE + "return s.readOnly;", nid) is False  # the canvas node itself is editable
    preview = page.add_node("PreviewImage", (560, 60))
    page.js("app.graph.getNodeById(arguments[0]).connect(0, app.graph.getNodeById(arguments[1]), 0);", nid, preview)
    draw(page, nid, [(0.1, 0.5), (0.9, 0.5)])
    ref = wait_saved(page, nid)
    page.js("for (const n of app.graph.nodes) app.canvas.selectNode(n, true);")
    if not page.js("return (app.extensionManager.command.commands ?? []).some(c => c.id === 'Comfy.GroupNode.ConvertSelectedNodesToGroupNode');"):
        pytest.skip("this frontend cannot create group nodes (it migrates them to subgraphs on load)")
    page.js("app.extensionManager.command.execute('Comfy.GroupNode.ConvertSelectedNodesToGroupNode');")
    name = page.wait("return document.querySelector('.p-dialog input')", 10)
    name.send_keys("grp", Keys.ENTER)
    page.wait("return app.graph.nodes.length === 1 && !!app.graph.nodes[0].astScribble", 10)
    gid = page.js("return app.graph.nodes[0].id;")
    assert page.js(STATE + "return s.readOnly;", gid) is True
    assert page.js(STATE + "return [s.el.undo, s.el.clear, s.el.erase, s.el.fit].every(b => b.disabled);", gid)
    page.js(STATE + "s.fitToBackground(); s.rebuild();", gid)  # even if reached, nothing changes
    assert "convert the group node back" in page.js(STATE + "return s.el.status.textContent;", gid)
    draw(page, gid, [(0.5, 0.1), (0.5, 0.9)])  # ignored
    page.js(STATE + "s.el.clear.click(); s.el.undo.click();", gid)
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")
    (canvas,) = [v for v in prompt.values() if v["class_type"] == "AST_ScribbleCanvas"]
    assert canvas["inputs"]["drawing"] == ref and [canvas["inputs"]["width"], canvas["inputs"]["height"]] == [128, 96]
    assert page.console_errors() == []


def test_a_stroke_finished_during_the_upload_is_uploaded_too(fresh: Page):
    """Queueing while an upload is in flight and a stroke ends meanwhile: the prompt names a file the server has."""
    page = fresh
    nid = add_canvas(page, 128, 96)
    draw(page, nid, [(0.1, 0.5), (0.9, 0.5)])
    page.js(
        "const api = window.comfyAPI.api.api; window.__astRealFetch = api.fetchApi.bind(api);"
        "api.fetchApi = async (route, opts) => { if (route.startsWith('/upload/image'))"
        " await new Promise(r => setTimeout(r, 1500)); return window.__astRealFetch(route, opts); };"
    )
    try:
        page.js("window.__astPrompt = app.graphToPrompt();")
        time.sleep(0.3)  # the first upload is in flight
        draw(page, nid, [(0.5, 0.1), (0.5, 0.9)])
        prompt = page.js_async("const p = await window.__astPrompt; return p.output;")
    finally:
        page.js("window.comfyAPI.api.api.fetchApi = window.__astRealFetch;")
    ref = prompt[str(nid)]["inputs"]["drawing"]
    assert ref == page.js(STATE + "return s.value;", nid), "the prompt names the drawing as it is now"
    with Image.open(page.server.input_dir / ref) as im:
        assert np.array_equal(np.asarray(im.convert("L")) > 127, raster(page, nid) > 0)
    assert page.console_errors() == []


def test_a_drawing_the_server_lost_is_uploaded_again(fresh: Page):
    """The input folder was cleaned after a run: the next queue uploads the drawing again (it was refused)."""
    page = fresh
    nid = add_canvas(page, 128, 96)
    draw(page, nid, [(0.1, 0.5), (0.9, 0.5)])
    ref = wait_saved(page, nid)
    path = page.server.input_dir / ref
    first = path.read_bytes()
    stamp = path.stat().st_mtime_ns
    prompt = "const p = await app.graphToPrompt(); return p.output;"
    time.sleep(2.5)  # past the window in which prompts share one upload (a batch count)
    # the server holds the same bytes: it writes nothing (a run reading the file meanwhile is undisturbed)
    assert page.js_async(prompt)[str(nid)]["inputs"]["drawing"] == ref
    assert path.stat().st_mtime_ns == stamp and not list(path.parent.glob(f"{path.stem} (*"))  # no copy set aside
    path.unlink()
    time.sleep(2.5)
    assert page.js_async(prompt)[str(nid)]["inputs"]["drawing"] == ref
    assert path.read_bytes() == first
    # other bytes under the name (another browser's PNG encoder): stored aside by the server, then overwritten
    path.write_bytes(b"not the same png")
    time.sleep(2.5)
    assert page.js_async(prompt)[str(nid)]["inputs"]["drawing"] == ref
    assert path.read_bytes() == first
    assert page.console_errors() == []


def test_width_height_and_brush_set_by_other_code_are_followed(fresh: Page):
    """Another extension sets widget values and properties without callbacks: the canvas follows, so the
    prompt's size is the size drawn on, and the slider shows the brush that will be used."""
    page = fresh
    nid = add_canvas(page, 128, 96)
    draw(page, nid, [(0.1, 0.5), (0.9, 0.5)])
    # (the graph redraws on the next pointer move; the test asks for it instead)
    page.js(
        "app.graph.getNodeById(arguments[0]).widgets.find(w => w.name === 'width').value = 256;"
        "app.canvas.setDirty(true, true);",
        nid,
    )
    page.wait(STATE + "return s.raster.width === 256 && s.raster.height === 96;", 10, nid)
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")[str(nid)]["inputs"]
    assert prompt["width"] == 256 and prompt["drawing"].startswith("affordance_scribbles/scribble_256x96_")
    with Image.open(page.server.input_dir / prompt["drawing"]) as im:
        assert im.size == (256, 96)
        assert np.array_equal(np.asarray(im.convert("L")) > 127, raster(page, nid) > 0)
    assert (raster(page, nid)[48] > 0).sum() > 100, "the stroke was kept"
    page.js("app.graph.getNodeById(arguments[0]).properties.ast_brush = 30; app.canvas.setDirty(true, true);", nid)
    page.wait(STATE + "return s.el.size.value === '30' && s.el.sizeLabel.textContent === '30 px';", 10, nid)
    # a brush the slider cannot show (above its range): the label says it, and frames do not keep rewriting it
    page.js(
        STATE + "app.graph.getNodeById(arguments[0]).properties.ast_brush = 100; window.__astLabelWrites = 0;"
        "new MutationObserver(() => window.__astLabelWrites++).observe(s.el.sizeLabel, {childList: true, characterData: true, subtree: true});"
        "app.canvas.setDirty(true, true);",
        nid,
    )
    page.wait(STATE + "return s.el.sizeLabel.textContent === '100 px';", 10, nid)
    for _ in range(5):
        page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
        time.sleep(0.05)
    assert page.js("return window.__astLabelWrites;") == 1
    # one beyond any brush (above 256) is not used: the default 8 is, and the slider says so
    page.js("app.graph.getNodeById(arguments[0]).properties.ast_brush = 999; app.canvas.setDirty(true, true);", nid)
    page.wait(STATE + "return s.el.size.value === '8' && s.el.sizeLabel.textContent === '8 px';", 10, nid)
    # a collapsed node draws no frames: a height set by other code is applied when the prompt is made
    page.js(
        "const n = app.graph.getNodeById(arguments[0]); n.collapse(true);"
        "n.widgets.find(w => w.name === 'height').value = 64;",
        nid,
    )
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")[str(nid)]["inputs"]
    assert prompt["height"] == 64 and prompt["drawing"].startswith("affordance_scribbles/scribble_256x64_")
    with Image.open(page.server.input_dir / prompt["drawing"]) as im:
        assert im.size == (256, 64)
    assert page.console_errors() == []


def test_a_drawing_named_by_other_code_is_shown(fresh: Page):
    """Another extension sets the drawing widget to a file: the canvas shows that file and its strokes go."""
    page = fresh
    page.js_async("await app.loadGraphData(arguments[0], true, true, 'adopt');", EMPTY_WORKFLOW)
    nid = add_canvas(page, 128, 96)
    draw(page, nid, [(0.1, 0.5), (0.9, 0.5)])
    # frontends >= 1.4x fold a change made within 50 ms of an undo step into that step (ChangeTracker.squashState):
    # let the stroke's step settle first, or "graph undo brings the strokes back" has no stroke to go back to
    page.wait(
        "const ct = app.extensionManager.workflow.activeWorkflow.changeTracker;"
        "return (ct.activeState?.nodes ?? []).some(n => (n.properties?.ast_scribble?.ops ?? []).length === 1);",
        10,
    )
    time.sleep(0.3)
    stroke = raster(page, nid)
    name = "affordance_probe_square.png"
    square = np.zeros((96, 128), np.uint8)
    square[20:60, 30:90] = 255
    Image.fromarray(square).save(page.server.input_dir / name)
    page.js("app.graph.getNodeById(arguments[0]).widgets.find(w => w.name === 'drawing').value = arguments[1];", nid, name)
    page.wait(STATE + "return !s.restoring && !!s.base && s.ops.length === 0;", 20, nid)
    assert np.array_equal(raster(page, nid) > 0, square > 0)
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")[str(nid)]["inputs"]
    with Image.open(page.server.input_dir / prompt["drawing"]) as im:
        assert np.array_equal(np.asarray(im.convert("L")) > 127, square > 0)
    _ctrl(page, "z")  # graph undo brings the strokes back
    page.wait(STATE + "return !s.restoring && s.ops.length === 1 && !s.base;", 20, nid)
    assert np.array_equal(raster(page, nid), stroke)
    assert page.console_errors() == []


def test_strokes_after_a_named_drawing_that_cannot_be_shown_are_drawn_on_black(fresh: Page):
    """Other code names a drawing (shown), then a missing file (an error): strokes drawn next start from black,
    with nothing of the drawing shown before under them, also when the canvas is redrawn from its strokes."""
    page = fresh
    nid = add_canvas(page, 128, 96)
    name = "affordance_probe_square2.png"
    square = np.zeros((96, 128), np.uint8)
    square[20:60, 10:50] = 255
    Image.fromarray(square).save(page.server.input_dir / name)
    named = "app.graph.getNodeById(arguments[0]).widgets.find(w => w.name === 'drawing').value = arguments[1];"
    page.js(named, nid, name)
    page.wait(STATE + "return !s.restoring && !!s.base;", 20, nid)
    page.js(named, nid, "affordance_scribbles/not_there.png")
    page.wait(STATE + "return !s.restoring && s.el.status.dataset.state === 'error';", 20, nid)
    assert raster(page, nid).max() == 0
    draw(page, nid, [(0.8, 0.1), (0.8, 0.9)])
    drawn = raster(page, nid)
    assert drawn[:, 90:115].any() and not drawn[:, :80].any(), "the square named before came back under the stroke"
    page.js(STATE + "s.el.undo.click();", nid)  # redrawn from the strokes: none left, black
    assert raster(page, nid).max() == 0, "the square named before came back on undo"
    assert [e for e in page.console_errors() if "not_there.png" not in e] == []  # (the browser logs the 404)


def _trace_source(page: Page, name: str) -> int:
    """A Load Image node showing a 136x72 picture (its preview appears once the graph draws)."""
    img = np.zeros((72, 136, 3), np.uint8)
    img[:, :60] = (30, 200, 90)
    Image.fromarray(img).save(page.server.input_dir / name)
    load = page.add_node("LoadImage", (520, 60))
    page.js(
        "const w = app.graph.getNodeById(arguments[0]).widgets.find(w => w.name === 'image');"
        "w.options.values = [arguments[1]]; w.value = arguments[1]; w.callback?.(arguments[1]);",
        load,
        name,
    )
    return load


def test_background_through_a_reroute_and_from_outside_a_subgraph(fresh: Page):
    """The image to trace is found through legacy Reroute nodes, and from a canvas inside a subgraph whose
    input brings the image from outside (before any run: from the source node's own preview)."""
    page = fresh
    load = _trace_source(page, "trace_via_reroute.png")
    nid = add_canvas(page, 64, 64)
    reroute = page.add_node("Reroute", (-300, 60))
    page.js(
        "const g = app.graph; const l = g.getNodeById(arguments[0]), r = g.getNodeById(arguments[1]),"
        " n = g.getNodeById(arguments[2]); l.connect(0, r, 0); r.connect(0, n, n.inputs.findIndex(i => i.name === 'background'));",
        load,
        reroute,
        nid,
    )
    page.wait(STATE + "app.canvas.setDirty(true, true); app.canvas.draw(true, true); return !!s.bgImage;", 30, nid)
    src = page.js("return app.graph.getNodeById(arguments[0]).imgs[0].src;", load)
    assert page.js(STATE + "return s.bgSrc;", nid) == src
    # the canvas alone into a subgraph: the Reroute and the Load Image stay outside, behind a subgraph input
    sg = page.js_async(
        "app.canvas.deselectAll(); app.canvas.select(app.graph.getNodeById(args[0]));"
        "await app.extensionManager.command.execute('Comfy.Graph.ConvertToSubgraph');"
        "return app.graph.nodes.find(n => n.isSubgraphNode?.()).id;",
        nid,
    )
    inner = f"const s = app.graph.getNodeById({sg}).subgraph.getNodeById(arguments[0]).astScribble;"
    try:
        page.js("app.canvas.openSubgraph(app.graph.getNodeById(arguments[0]).subgraph);", sg)
        page.wait(inner + "app.canvas.setDirty(true, true); app.canvas.draw(true, true); return !!s.bgImage;", 30, nid)
        assert page.js(inner + "return [s.bgSrc, s.el.fit.style.display];", nid) == [src, ""]
    finally:
        page.js("app.canvas.setGraph(app.graph);")
    assert page.console_errors() == []


def test_background_from_inside_a_subgraph(fresh: Page):
    """The image to trace comes out of a subgraph (the Load Image inside it, the canvas outside): found
    inside, before any run, from the inner node's own preview."""
    page = fresh
    load = _trace_source(page, "trace_from_subgraph.png")
    nid = add_canvas(page, 64, 64)
    page.js(
        "const g = app.graph; const n = g.getNodeById(arguments[1]);"
        "g.getNodeById(arguments[0]).connect(0, n, n.inputs.findIndex(i => i.name === 'background'));",
        load,
        nid,
    )
    page.wait(STATE + "app.canvas.setDirty(true, true); app.canvas.draw(true, true); return !!s.bgImage;", 30, nid)
    src = page.js("return app.graph.getNodeById(arguments[0]).imgs[0].src;", load)
    sg = page.js_async(
        "app.canvas.deselectAll(); app.canvas.select(app.graph.getNodeById(args[0]));"
        "await app.extensionManager.command.execute('Comfy.Graph.ConvertToSubgraph');"
        "return app.graph.nodes.find(n => n.isSubgraphNode?.()).id;",
        load,
    )
    # the background now arrives through the subgraph node's output; the last run's image is not there to
    # fall back on, so the canvas shows it only by following the link into the subgraph
    linked = page.js(
        "const n = app.graph.getNodeById(arguments[0]); const l = app.graph.getLink(n.inputs.find(i => i.name === 'background').link);"
        "return l.origin_id;",
        nid,
    )
    assert str(linked) == str(sg)
    page.js(STATE + "s.bgSrc = null; s.bgImage = null;", nid)
    page.wait(STATE + "app.canvas.setDirty(true, true); app.canvas.draw(true, true); return !!s.bgImage;", 30, nid)
    inner = page.js(
        "return app.graph.getNodeById(arguments[0]).subgraph.nodes.find(n => n.type === 'LoadImage').imgs[0].src;", sg
    )
    assert "filename=trace_from_subgraph.png" in inner and "filename=trace_from_subgraph.png" in src
    assert page.js(STATE + "return [s.bgSrc, s.el.fit.style.display];", nid) == [inner, ""]
    assert page.console_errors() == []


def test_a_size_set_through_an_input_is_drawn_at_and_fit_leaves_it_alone(fresh: Page):
    """Width from a primitive node's link: the canvas is that wide (what runs), not its greyed-out widget's
    width; Fit to background cannot change a linked size and says so instead of changing the widget."""
    page = fresh
    load = _trace_source(page, "trace_via_link.png")
    nid = add_canvas(page, 64, 64)
    prim = page.add_node("PrimitiveInt", (-300, 300))
    page.js(
        "const g = app.graph; const p = g.getNodeById(arguments[0]), n = g.getNodeById(arguments[1]);"
        "p.widgets.find(w => w.name === 'value').value = 128; p.connect(0, n, n.inputs.findIndex(i => i.name === 'width'));"
        "g.getNodeById(arguments[2]).connect(0, n, n.inputs.findIndex(i => i.name === 'background'));"
        "app.canvas.setDirty(true, true);",
        prim,
        nid,
        load,
    )
    page.wait(STATE + "app.canvas.draw(true, true); return s.raster.width === 128 && s.raster.height === 64 && !!s.bgImage;", 20, nid)
    draw(page, nid, [(0.05, 0.5), (0.95, 0.5)])
    page.js(STATE + "s.el.fit.click();", nid)
    status, size, widget = page.js(
        STATE + "const n = app.graph.getNodeById(arguments[0]);"
        "return [s.el.status.textContent, [s.raster.width, s.raster.height], n.widgets.find(w => w.name === 'width').value];",
        nid,
    )
    assert status.startswith("Not fitted: width is set through an input") and "136x72" in status, status
    assert size == [128, 64] and widget == 64
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")[str(nid)]["inputs"]
    assert prompt["width"] == [str(prim), 0] and prompt["drawing"].startswith("affordance_scribbles/scribble_128x64_")
    ink = raster(page, nid)
    assert ink.shape == (64, 128) and ink[:, 100:].max() > 0, "the stroke reaches the right half that runs"
    assert page.console_errors() == []


DRIVEN = (
    "const files = await (await fetch('api/extensions')).json();"
    "const m = await import(new URL(files.find(f => f.endsWith('/vue_nodes.js')), location.href).href);"
    "return m.drivenCount();"
)


def test_copying_a_node_keeps_nothing_alive(fresh: Page):
    """Copying makes a throw-away copy of the node that never enters a graph: it must not be registered with the
    per-frame loop (which kept it, its 2048 px raster and the loop itself alive for the page's life)."""
    page = fresh
    before = page.js_async(DRIVEN)
    nid = add_canvas(page, 256, 256)
    weights = page.add_node("AST_ControlWeights", (520, 60))
    assert page.js_async(DRIVEN) == before + 2
    for node in (nid, weights):
        page.js("app.canvas.deselectAll(); app.canvas.select(app.graph.getNodeById(arguments[0]));", node)
        for _ in range(3):
            page.js("app.canvas.copyToClipboard();")
    assert page.js_async(DRIVEN) == before + 2
    page.js("app.graph.remove(app.graph.getNodeById(arguments[0]));", nid)
    assert page.js_async(DRIVEN) == before + 1
    assert page.console_errors() == []


def test_a_large_drawing_shown_small_is_smoothed_not_sampled(fresh: Page):
    """A 2048 px canvas shown a few hundred pixels wide: nearest-pixel sampling dropped thin strokes from view,
    so a shrunk drawing is smoothed; enlarged it stays sharp."""
    page = fresh
    big = add_canvas(page, 2048, 2048)
    small = add_canvas(page, 64, 64)
    page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
    page.wait(STATE + "return s.el.ink.style.imageRendering === 'auto' && s.el.bg.style.imageRendering === 'auto';", 10, big)
    page.wait(STATE + "return s.el.ink.style.imageRendering === 'pixelated';", 10, small)
    assert page.console_errors() == []


def test_shortcuts_reach_the_graph_after_the_brush_slider_was_used(fresh: Page):
    """Drawing after moving the brush slider: the slider kept the focus (the canvas cancels the press's default),
    and the editor ignores shortcuts from inputs, so Ctrl+Z did nothing."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page = fresh
    page.js_async("await app.loadGraphData(arguments[0], true, true, 'slider_focus');", EMPTY_WORKFLOW)
    nid = add_canvas(page, 128, 96)
    draw(page, nid, [(0.1, 0.5), (0.9, 0.5)])
    wait_saved(page, nid)
    page.js(STATE + "s.el.size.focus(); s.el.size.value = '20'; s.el.size.dispatchEvent(new Event('input'));", nid)
    assert page.js(STATE + "return document.activeElement === s.el.size;", nid)
    draw(page, nid, [(0.5, 0.1), (0.5, 0.9)])
    wait_saved(page, nid)
    assert page.js(STATE + "return !s.el.root.contains(document.activeElement);", nid)
    ActionChains(page.driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    page.wait(f"return JSON.stringify((() => {{ {HISTORY} }})().now) === '[1]';", 10)
    assert page.console_errors() == []


def test_error_text_and_eraser_outline_follow_the_palette(fresh: Page):
    """On the light palette the status line's errors and the active eraser's outline are dark enough to read."""
    page = fresh
    nid = add_canvas(page, 64, 64)
    setting = "await app.extensionManager.setting.set('Comfy.ColorPalette', args[0]);"
    colours = (
        STATE + "app.canvas.setDirty(true, true); app.canvas.draw(true, true);"
        "return [getComputedStyle(s.el.status).color, s.el.erase.style.outline];"
    )
    try:
        page.js_async(setting, "light")
        page.js(STATE + "s.setStatus('refused', true); s.el.erase.click();", nid)
        page.wait(colours.replace("return [", "const c = [") + "return c[0] === 'rgb(160, 16, 16)';", 10, nid)
        assert "rgb(138, 75, 0)" in page.js(colours, nid)[1]
    finally:
        page.js_async(setting, "dark")
    page.wait(colours.replace("return [", "const c = [") + "return c[0] === 'rgb(255, 128, 128)';", 10, nid)
    assert "rgb(232, 163, 60)" in page.js(colours, nid)[1]
    assert page.console_errors() == []

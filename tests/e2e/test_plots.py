"""The weights and schedule plots in a real browser: drawn from the widgets, edited by dragging, bad text refused."""

from __future__ import annotations

import json
import time
from typing import Any as Page

WIDGET = "const n = app.graph.getNodeById(arguments[0]); const w = n.widgets.find(w => w.name === arguments[1]);"


def plot_widget(page: Page, nid: int, name: str) -> None:
    page.js("const n = app.graph.getNodeById(arguments[0]); n.setSize([420, Math.max(n.size[1], 420)]);", nid)
    page.wait(
        WIDGET + "app.canvas.setDirty(true, true); app.canvas.draw(true, true);"
        "const g = w && w.plotGeometry && w.plotGeometry(); return !!g && g.width > 50 && w.element?.getBoundingClientRect().width > 50;",
        20,
        nid,
        name,
    )
    settle(page, nid, name)


def settle(page: Page, nid: int, name: str, timeout: float = 10.0) -> None:
    """Wait until the plot's place and geometry stop changing (the new node's layout settles over a few
    frames; a drag aimed before that can miss its keyframe)."""
    last, stable_since, end = None, None, time.monotonic() + timeout
    while time.monotonic() < end:
        page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
        now = json.dumps(geometry(page, nid, name), sort_keys=True)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 0.3:
            return
        time.sleep(0.05)
    raise AssertionError(f"the plot of node {nid} kept moving for {timeout} s")


def geometry(page: Page, nid: int, name: str) -> dict:
    return page.js(
        WIDGET + "const g = w.plotGeometry(); const r = w.element.getBoundingClientRect();"
        "return {bars: g.bars, points: g.points, plot: g.plot, scale: g.clientScale, left: r.left, top: r.top,"
        " toggle: g.residualToggle || null};",
        nid,
        name,
    )


def value(page: Page, nid: int, name: str):
    return page.js(WIDGET + "return w.value;", nid, name)


def plot_pixels(page: Page, nid: int, name: str) -> str:
    """The plot's canvas as a PNG data URL, after the graph's redraw has redrawn it."""
    page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
    return page.js(WIDGET + "return (w.element.querySelector('canvas') || w.element).toDataURL();", nid, name)


def set_text(page: Page, nid: int, name: str, text: str) -> None:
    """Set a text widget the way the prompt dialog does (value, then its callback)."""
    page.js(WIDGET + "w.value = arguments[2]; w.callback?.(arguments[2], app.canvas, n);", nid, name, text)


def drag(page: Page, nid: int, name: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press at ``start`` and release at ``end`` (local plot pixels), as a real mouse's pointer events."""
    from selenium.webdriver.common.action_chains import ActionChains

    settle(page, nid, name)
    el = page.js(WIDGET + "return w.element.querySelector('canvas') || w.element;", nid, name)
    rect = page.js("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height];", el)
    g = geometry(page, nid, name)
    s = g["scale"]

    def off(p):  # selenium offsets are from the element's centre
        return int(round(p[0] * s - rect[2] / 2)), int(round(p[1] * s - rect[3] / 2))

    ActionChains(page.driver, duration=20).move_to_element_with_offset(
        el, *off(start)
    ).click_and_hold().move_to_element_with_offset(
        el, *off(((start[0] + end[0]) / 2, (start[1] + end[1]) / 2))
    ).move_to_element_with_offset(el, *off(end)).release().perform()


def test_weights_plot_shows_presets_and_edits_by_dragging(fresh: Page):
    page = fresh
    nid = page.add_node("AST_ControlWeights", (60, 60))
    plot_widget(page, nid, "ast_weights_plot")
    assert [b["value"] for b in geometry(page, nid, "ast_weights_plot")["bars"]] == [1.0] * 13
    # a preset change redraws live with the soft weights
    page.js(WIDGET + "w.value = 'prompt_more_important'; w.callback?.(w.value);", nid, "preset")
    time.sleep(0.3)
    page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
    bars = geometry(page, nid, "ast_weights_plot")["bars"]
    assert [round(b["value"], 6) for b in bars] == [round(0.825 ** (12 - i), 6) for i in range(13)]
    page.screenshot_node(nid, "weights_plot_soft")
    # drag bar 3 down to about 0.3: preset becomes custom, custom_weights rewritten
    g = geometry(page, nid, "ast_weights_plot")
    bar = g["bars"][3]
    target_y = page.js(WIDGET + "return w.plotGeometry().yOf(0.3);", nid, "ast_weights_plot")
    drag(page, nid, "ast_weights_plot", (bar["x"], bar["y"]), (bar["x"], target_y))
    assert value(page, nid, "preset") == "custom"
    weights = [float(v) for v in value(page, nid, "custom_weights").split(",")]
    assert len(weights) == 13 and abs(weights[3] - 0.3) < 0.02
    assert weights[12] == 1.0 and abs(weights[0] - round(0.825**12, 3)) < 1e-9
    # the SDXL toggle only applies to presets; custom shows its own count
    assert geometry(page, nid, "ast_weights_plot")["toggle"] is None
    page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
    page.screenshot_node(nid, "weights_plot_custom")
    # the prompt carries the edited text, and the plot itself is never serialised
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")
    assert sorted(prompt[str(nid)]["inputs"]) == ["base_multiplier", "custom_weights", "preset", "uncond_multiplier"]
    saved = json.loads(page.js("return JSON.stringify(app.graph.serialize());"))
    (node,) = [n for n in saved["nodes"] if str(n["id"]) == str(nid)]
    assert len(node["widgets_values"]) == 4 and node["widgets_values"][0] == "custom"
    assert page.console_errors() == []


def test_weights_plot_refuses_bad_text_and_keeps_the_last_good(fresh: Page):
    page = fresh
    nid = page.add_node("AST_ControlWeights", (60, 60))
    plot_widget(page, nid, "ast_weights_plot")
    page.js(WIDGET + "w.value = 'custom'; w.callback?.(w.value);", nid, "preset")
    set_text(page, nid, "custom_weights", "1, 0.5, 0.25")
    assert value(page, nid, "custom_weights") == "1, 0.5, 0.25"
    set_text(page, nid, "custom_weights", "1, zero, 0.25")
    assert value(page, nid, "custom_weights") == "1, 0.5, 0.25", "the last good text is kept"
    page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
    toast = page.wait(
        "return [...document.querySelectorAll('.p-toast-message, [data-testid=toast]')].map(e => e.innerText).join('\\n');", 10
    )
    assert "zero" in toast and "not a number" in toast
    page.screenshot_node(nid, "weights_plot_bad_text")
    assert page.console_errors() == []


def test_schedule_plot_drag_add_remove_and_bad_text(fresh: Page):
    page = fresh
    nid = page.add_node("AST_StrengthSchedule", (60, 60))
    plot_widget(page, nid, "ast_schedule_plot")
    g = geometry(page, nid, "ast_schedule_plot")
    assert [(p["progress"], p["multiplier"]) for p in g["points"]] == [(0.0, 1.0), (0.6, 1.0), (1.0, 0.2)]
    # drag the middle keyframe to about (0.4, 0.5)
    mid = g["points"][1]
    x = page.js(WIDGET + "return w.plotGeometry().xOf(0.4);", nid, "ast_schedule_plot")
    y = page.js(WIDGET + "return w.plotGeometry().yOf(0.5);", nid, "ast_schedule_plot")
    drag(page, nid, "ast_schedule_plot", (mid["x"], mid["y"]), (x, y))
    pairs = [tuple(float(v) for v in kv.split(":")) for kv in value(page, nid, "keyframes").split(",")]
    assert len(pairs) == 3 and pairs[0] == (0.0, 1.0) and pairs[2] == (1.0, 0.2)
    assert abs(pairs[1][0] - 0.4) < 0.015 and abs(pairs[1][1] - 0.5) < 0.015, pairs
    # double-click empty space adds a keyframe; double-click on it removes it again
    from selenium.webdriver.common.action_chains import ActionChains

    el = page.js(WIDGET + "return w.element.querySelector('canvas') || w.element;", nid, "ast_schedule_plot")
    r = page.js("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", el)
    s = geometry(page, nid, "ast_schedule_plot")["scale"]
    ax = page.js(WIDGET + "return w.plotGeometry().xOf(0.8);", nid, "ast_schedule_plot")
    ay = page.js(WIDGET + "return w.plotGeometry().yOf(0.9);", nid, "ast_schedule_plot")
    ActionChains(page.driver).move_to_element_with_offset(
        el, int(ax * s - r[0] / 2), int(ay * s - r[1] / 2)
    ).double_click().perform()
    pts = geometry(page, nid, "ast_schedule_plot")["points"]
    assert len(pts) == 4 and any(abs(p["progress"] - 0.8) < 0.015 for p in pts), value(page, nid, "keyframes")
    added = next(p for p in pts if abs(p["progress"] - 0.8) < 0.015)
    ActionChains(page.driver).move_to_element_with_offset(
        el, int(added["x"] * s - r[0] / 2), int(added["y"] * s - r[1] / 2)
    ).double_click().perform()
    assert len(geometry(page, nid, "ast_schedule_plot")["points"]) == 3
    page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
    page.screenshot_node(nid, "schedule_plot")
    # bad keyframes are refused, the last good text stays; the plot says so until the next good text
    good = value(page, nid, "keyframes")
    before = plot_pixels(page, nid, "ast_schedule_plot")
    set_text(page, nid, "keyframes", "0:1, 1.5:0.2")
    assert value(page, nid, "keyframes") == good
    toast = page.wait(
        "return [...document.querySelectorAll('.p-toast-message, [data-testid=toast]')].map(e => e.innerText).join('\\n');", 10
    )
    assert "1.5" in toast and "between 0 and 1" in toast
    assert plot_pixels(page, nid, "ast_schedule_plot") != before  # "Rejected ..." over the plot
    set_text(page, nid, "keyframes", good)
    assert plot_pixels(page, nid, "ast_schedule_plot") == before
    # step interpolation redraws live
    page.js(WIDGET + "w.value = 'step'; w.callback?.(w.value);", nid, "interpolation")
    page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")
    page.screenshot_node(nid, "schedule_plot_step")
    saved = json.loads(page.js("return JSON.stringify(app.graph.serialize());"))
    (node,) = [n for n in saved["nodes"] if str(n["id"]) == str(nid)]
    assert node["widgets_values"] == [good, "step"]
    # a right click on a keyframe removes it, the first one too
    first = geometry(page, nid, "ast_schedule_plot")["points"][0]
    ActionChains(page.driver).move_to_element_with_offset(
        el, int(first["x"] * s - r[0] / 2), int(first["y"] * s - r[1] / 2)
    ).context_click().perform()
    assert value(page, nid, "keyframes") == good.split(", ", 1)[1]
    assert page.console_errors() == []


def test_text_from_a_link_is_shown_as_sent_never_replaced(fresh: Page):
    """A Primitive node feeding custom_weights / keyframes sends its own text: the plots show it, never revert it."""
    page = fresh
    weights = page.add_node("AST_ControlWeights", (400, 60))
    schedule = page.add_node("AST_StrengthSchedule", (400, 420))
    prims = {}
    for node, name, y in ((weights, "custom_weights", 60), (schedule, "keyframes", 420)):
        prim = page.add_node("PrimitiveNode", (40, y))
        page.js(
            "const p = app.graph.getNodeById(arguments[0]); const n = app.graph.getNodeById(arguments[1]);"
            "p.connect(0, n, n.inputs.findIndex(i => i.widget?.name === arguments[2]));"
            "app.canvas.setDirty(true, true); app.canvas.draw(true, true);",
            prim,
            node,
            name,
        )
        prims[name] = prim
    page.js(WIDGET + "w.value = 'custom'; w.callback?.(w.value);", weights, "preset")
    texts = {"custom_weights": ("0.5, 0.5, 0.5", "0.5, 0.5, 20"), "keyframes": ("0:1, 1:0.5", "0:1, 0.5:abc")}
    for name, sequence in texts.items():
        for text in sequence:  # what typing into the Primitive does: value, then callback
            page.js(
                "const w = app.graph.getNodeById(arguments[0]).widgets[0]; w.value = arguments[1]; w.callback?.(w.value);",
                prims[name],
                text,
            )
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")
    assert prompt[str(weights)]["inputs"]["custom_weights"] == "0.5, 0.5, 20"
    assert prompt[str(schedule)]["inputs"]["keyframes"] == "0:1, 0.5:abc"
    assert (
        value(page, weights, "custom_weights") == "0.5, 0.5, 20"
        and value(page, schedule, "keyframes") == "0:1, 0.5:abc"
    )
    toasts = page.js("return [...document.querySelectorAll('.p-toast-message, [data-testid=toast]')].map(e => e.innerText).join(' ');")
    assert "0.5, 0.5, 20" not in toasts and "0.5:abc" not in toasts, toasts  # (earlier tests' toasts may linger)
    assert page.console_errors() == []


def test_hover_highlight_ends_when_the_pointer_leaves(fresh: Page):
    """A bar highlighted under the pointer goes back to normal once the pointer leaves the plot (it stayed lit)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    page = fresh
    nid = page.add_node("AST_ControlWeights", (100, 100))
    plot_widget(page, nid, "ast_weights_plot")
    settle(page, nid, "ast_weights_plot")
    g = geometry(page, nid, "ast_weights_plot")
    rect = page.js(
        WIDGET + "const r = w.element.getBoundingClientRect(); return [r.left, r.top];", nid, "ast_weights_plot"
    )
    bar, other = g["bars"][3], g["bars"][4]
    y = (bar["y"] + g["plot"]["bottom"]) / 2  # inside both bars (all weights 1)

    def pixel(x: float) -> list[int]:
        return page.js(
            WIDGET + "const c = w.element.querySelector('canvas') || w.element; const k = c.width / c.clientWidth;"
            "return Array.from(c.getContext('2d').getImageData(Math.round(arguments[2] * k), Math.round(arguments[3] * k),"
            " 1, 1).data);",
            nid,
            "ast_weights_plot",
            x,
            y,
        )

    def move(x: float, yy: float) -> None:
        actions = ActionBuilder(page.driver)
        actions.pointer_action.move_to_location(int(x), int(yy))
        actions.perform()
        time.sleep(0.5)
        page.js("app.canvas.setDirty(true, true); app.canvas.draw(true, true);")

    move(rect[0] + bar["x"], rect[1] + y)
    assert pixel(bar["x"]) != pixel(other["x"]), "the hovered bar is highlighted"
    far = page.js("return [window.innerWidth - 40, window.innerHeight - 60];")
    move(*far)  # the empty graph, far from the node
    assert pixel(bar["x"]) == pixel(other["x"]), "the highlight ends when the pointer leaves"
    # the schedule plot's keyframe under the pointer, likewise
    sid = page.add_node("AST_StrengthSchedule", (100, 620))
    plot_widget(page, sid, "ast_schedule_plot")
    plain = plot_pixels(page, sid, "ast_schedule_plot")
    point = geometry(page, sid, "ast_schedule_plot")["points"][1]
    at = page.js(
        WIDGET + "const r = w.element.getBoundingClientRect(); return [r.left, r.top];", sid, "ast_schedule_plot"
    )
    move(at[0] + point["x"], at[1] + point["y"])
    assert plot_pixels(page, sid, "ast_schedule_plot") != plain, "the hovered keyframe is highlighted"
    move(*far)
    assert plot_pixels(page, sid, "ast_schedule_plot") == plain, "the highlight ends when the pointer leaves"
    assert page.console_errors() == []


def test_headers_never_overlap_on_the_narrowest_node(fresh: Page):
    """Dragged to its narrowest, a plot's caption is shortened with "…" instead of running into the
    right-hand label (the weights' 13/10 toggle, whose box caught clicks on the caption's end)."""
    page = fresh
    page.js(
        "const proto = CanvasRenderingContext2D.prototype; window.__astHeader = [];"
        "if (!proto.__astFill) { proto.__astFill = proto.fillText; proto.fillText = function (t, x, y) {"
        " if (y === 10) { const w = this.measureText(t).width; const a = this.textAlign;"
        " window.__astHeader.push({t: String(t), left: a === 'right' ? x - w : x, right: a === 'right' ? x : x + w}); }"
        " return this.__astFill.apply(this, arguments); }; }"
    )
    try:
        for node_type, name, caption in [
            ("AST_ControlWeights", "ast_weights_plot", "balanced"),
            ("AST_StrengthSchedule", "ast_schedule_plot", "strength x multiplier"),
        ]:
            nid = page.add_node(node_type, (60, 60))
            plot_widget(page, nid, name)
            for width in (420, 240, 200):
                page.js(
                    "const n = app.graph.getNodeById(arguments[0]); n.setSize([arguments[1], n.size[1]]);"
                    "app.canvas.setDirty(true, true); app.canvas.draw(true, true);",
                    nid,
                    width,
                )
                time.sleep(0.3)  # the element takes its new size
                page.js(WIDGET + "window.__astHeader = []; w.redraw();", nid, name)
                texts = page.js("return window.__astHeader;")
                # the bitmap follows the element's new width (height unchanged): drawn sharp, not stretched
                sizes = page.js(
                    WIDGET + "const c = w.element.querySelector('canvas') || w.element;"
                    "const k = (window.devicePixelRatio || 1) * Math.min(4, Math.max(1, app.canvas.ds.scale));"
                    "return [c.width, Math.round(c.clientWidth * k), c.height, Math.round(c.clientHeight * k)];",
                    nid,
                    name,
                )
                assert sizes[0] == sizes[1] and sizes[2] == sizes[3], (width, sizes)
                left = [t for t in texts if t["t"].startswith(caption[:4])]
                right = [t for t in texts if not t["t"].startswith(caption[:4])]
                assert left and right, texts
                assert max(t["right"] for t in left) <= min(t["left"] for t in right) - 4, (width, texts)
                if width == 420:
                    assert any(t["t"].startswith(caption) for t in left), texts
                else:
                    assert all(t["t"].endswith("…") for t in left), (width, texts)
            page.js("app.graph.remove(app.graph.getNodeById(arguments[0]));", nid)
    finally:
        page.js("const p = CanvasRenderingContext2D.prototype; if (p.__astFill) { p.fillText = p.__astFill; delete p.__astFill; }")
    assert page.console_errors() == []


def test_a_plot_fed_by_a_node_draws_what_the_run_uses(fresh: Page):
    """ComfyUI's String node feeding keyframes / custom_weights: the plot draws the String's value (the run's),
    not the node's stale own text; from a node that computes it, no curve or bars at all (not known yet)."""
    page = fresh
    schedule = page.add_node("AST_StrengthSchedule", (400, 60))
    weights = page.add_node("AST_ControlWeights", (400, 460))
    plot_widget(page, schedule, "ast_schedule_plot")
    plot_widget(page, weights, "ast_weights_plot")
    page.js(WIDGET + "w.value = 'custom'; w.callback?.(w.value);", weights, "preset")
    feeds = {}
    for node, name, text, y in (
        (schedule, "keyframes", "0:0.2, 0.5:1.5, 1:0", 60),
        (weights, "custom_weights", "0.25, 0.5, 0.75", 460),
    ):
        src = page.add_node("PrimitiveString", (40, y))
        page.js(
            "const p = app.graph.getNodeById(arguments[0]); const n = app.graph.getNodeById(arguments[1]);"
            "p.widgets.find(w => w.name === 'value').value = arguments[3];"
            "p.connect(0, n, n.inputs.findIndex(i => i.widget?.name === arguments[2]));",
            src,
            node,
            name,
            text,
        )
        feeds[name] = src
    page.wait(
        WIDGET + "app.canvas.setDirty(true, true); app.canvas.draw(true, true);"
        "return JSON.stringify(w.plotGeometry().points.map(p => [p.progress, p.multiplier])) === '[[0,0.2],[0.5,1.5],[1,0]]';",
        10,
        schedule,
        "ast_schedule_plot",
    )
    page.wait(
        WIDGET + "app.canvas.setDirty(true, true); app.canvas.draw(true, true);"
        "return JSON.stringify(w.plotGeometry().bars.map(b => b.value)) === '[0.25,0.5,0.75]';",
        10,
        weights,
        "ast_weights_plot",
    )
    assert value(page, schedule, "keyframes") != "0:0.2, 0.5:1.5, 1:0"  # the node's own text is not what runs
    prompt = page.js_async("const p = await app.graphToPrompt(); return p.output;")
    assert prompt[str(schedule)]["inputs"]["keyframes"] == [str(feeds["keyframes"]), 0]
    # a node that computes the text: not known before the run, so nothing is drawn (and nothing can be dragged)
    concat = page.add_node("StringConcatenate", (40, 260))
    page.js(
        "const c = app.graph.getNodeById(arguments[0]); const n = app.graph.getNodeById(arguments[1]);"
        "c.connect(0, n, n.inputs.findIndex(i => i.widget?.name === 'keyframes'));",
        concat,
        schedule,
    )
    page.wait(
        WIDGET + "app.canvas.setDirty(true, true); app.canvas.draw(true, true); return w.plotGeometry().points.length === 0;",
        10,
        schedule,
        "ast_schedule_plot",
    )
    assert page.console_errors() == []

// Colours readable on both of ComfyUI's palettes (web/js/lib/plot.js), and the values the plots draw
// (web/js/plot_widget.js: what the run uses, through links), on stand-ins.
import { test } from "node:test";
import assert from "node:assert/strict";

import { contrast, luminance, signalColours } from "../../web/js/lib/plot.js";
import { runValues } from "../../web/js/plot_widget.js";

test("luminance reads hex, rgb() and hsl() colours, and nothing else", () => {
  assert.equal(luminance("#000"), 0);
  assert.equal(luminance("#FFFFFF"), 1);
  assert.equal(luminance("#ffffff80"), 1);
  // WCAG 2's relative luminance of mid grey, 0x80 = 128: ((128/255 + 0.055) / 1.055) ** 2.4
  assert.ok(Math.abs(luminance("#808080") - 0.21586050011389926) < 1e-12);
  assert.ok(Math.abs(luminance("#0a0a0a") - 10 / 255 / 12.92) < 1e-12); // the linear part near black
  assert.ok(Math.abs(luminance("rgb(212, 212, 212)") - luminance("#d4d4d4")) < 1e-12);
  // the editor hands a node its palette-adjusted colour as hsla() while it draws it
  assert.ok(Math.abs(luminance("hsla(0, 0%, 96.1%, 1)") - luminance("#f5f5f5")) < 2e-3);
  assert.ok(Math.abs(luminance("hsl(120deg 100% 25%)") - luminance("#008000")) < 2e-3);
  assert.ok(Math.abs(luminance("hsla(0, 100%, 50%, 0.5)") - luminance("#ff0000")) < 1e-9);
  assert.equal(luminance("var(--x)"), null);
  assert.equal(luminance(undefined), null);
  assert.ok(Math.abs(contrast("#000", "#fff") - 21) < 1e-9);
});

test("error and active colours reach 4.5:1 on the dark and light palettes' node and widget backgrounds", () => {
  // dark: node #353535, widget #222; light: node #f5f5f5 (and white), widget #d4d4d4
  for (const bg of ["#353535", "#222", "#2b2b2b", "#f5f5f5", "#ffffff", "#d4d4d4", "#e0e0e0"]) {
    const c = signalColours(bg);
    assert.ok(contrast(c.error, bg) >= 4.5, `${c.error} on ${bg}: ${contrast(c.error, bg)}`);
    assert.ok(contrast(c.active, bg) >= 3, `${c.active} on ${bg}`); // an outline, not text
  }
  assert.deepEqual(signalColours("var(--unknown)"), signalColours("#222")); // unknown: the dark default
});

class Graph {
  constructor() {
    this.nodes = [];
    this.links = new Map();
    this.rootGraph = this;
  }
  getLink(id) {
    return this.links.get(id);
  }
  getNodeById(id) {
    return this.nodes.find((n) => n.id === id) ?? null;
  }
  add(node) {
    node.graph = this;
    this.nodes.push(node);
    return node;
  }
}

test("the plots draw what the run uses: a primitive's value through a link, or nothing when not known", () => {
  const g = new Graph();
  const schedule = g.add({
    id: 1,
    inputs: [
      { name: "keyframes", link: null, widget: { name: "keyframes" } },
      { name: "interpolation", link: null, widget: { name: "interpolation" } },
    ],
    widgets: [
      { name: "keyframes", value: "0:1, 0.6:1, 1:0.2" },
      { name: "interpolation", value: "linear" },
    ],
  });
  assert.deepEqual(runValues(schedule, ["keyframes", "interpolation"]), {
    values: { keyframes: "0:1, 0.6:1, 1:0.2", interpolation: "linear" },
    unknown: null,
  });
  // ComfyUI's String node (PrimitiveString): its `value`, not the schedule's stale own text
  g.add({ id: 2, type: "PrimitiveString", inputs: [], widgets: [{ name: "value", value: "0:0.2, 0.5:1.5, 1:0" }] });
  g.links.set(7, { id: 7, origin_id: 2, origin_slot: 0 });
  schedule.inputs[0].link = 7;
  assert.equal(runValues(schedule, ["keyframes"]).values.keyframes, "0:0.2, 0.5:1.5, 1:0");
  // the legacy Primitive node: its one widget, named after the target's
  g.add({ id: 3, type: "PrimitiveNode", inputs: [], widgets: [{ name: "keyframes", value: "0:1, 1:0.5" }] });
  g.links.set(8, { id: 8, origin_id: 3, origin_slot: 0 });
  schedule.inputs[0].link = 8;
  assert.equal(runValues(schedule, ["keyframes"]).values.keyframes, "0:1, 1:0.5");
  // a node that computes it: known only when the workflow runs
  g.add({ id: 4, type: "StringConcatenate", inputs: [], widgets: [{ name: "string_a", value: "0:1" }] });
  g.links.set(9, { id: 9, origin_id: 4, origin_slot: 0 });
  schedule.inputs[1].link = 9;
  assert.deepEqual(runValues(schedule, ["keyframes", "interpolation"]), {
    values: { keyframes: "0:1, 1:0.5", interpolation: "linear" },
    unknown: "interpolation",
  });
});

test("hsl() colours of every hue sector read as their hex, and contrast with an unreadable colour is null", () => {
  const pairs = [
    ["hsl(0, 100%, 50%)", "#ff0000"], ["hsl(60, 100%, 50%)", "#ffff00"], ["hsl(120, 100%, 50%)", "#00ff00"],
    ["hsl(180, 100%, 50%)", "#00ffff"], ["hsl(200, 100%, 50%)", "#00aaff"], ["hsl(240, 100%, 50%)", "#0000ff"],
    ["hsl(300, 100%, 50%)", "#ff00ff"], ["hsl(330, 60%, 40%)", "#a32966"],
  ];
  for (const [hsl, hex] of pairs) assert.ok(Math.abs(luminance(hsl) - luminance(hex)) < 2e-3, `${hsl} vs ${hex}`);
  assert.equal(contrast("red", "#fff"), null);
  assert.equal(contrast("#fff", "var(--fg)"), null);
});

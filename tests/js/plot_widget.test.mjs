// The helpers the plot widgets share with the editor (web/js/plot_widget.js), on stand-ins for a node,
// its widgets and ComfyUI's app object.
import { test } from "node:test";
import assert from "node:assert/strict";

import { guardText, isLinked, markChanged, parseProblem, setWidgetValue } from "../../web/js/plot_widget.js";
import { parseWeightList } from "../../web/js/lib/weights_curve.js";

const node = (linked = []) => ({
  inputs: [
    { name: "custom_weights", widget: { name: "custom_weights" }, link: linked.includes("custom_weights") ? 7 : null },
    { name: "image", link: 3 },
  ],
});

test("isLinked: only a widget converted to an input and fed by a link", () => {
  assert.equal(isLinked(node(), "custom_weights"), false);
  assert.equal(isLinked(node(["custom_weights"]), "custom_weights"), true);
  assert.equal(isLinked(node(), "image"), false); // an input, not a widget's
  assert.equal(isLinked({}, "custom_weights"), false);
});

test("setWidgetValue edits like a user: setValue where the frontend has it, else value and callback", () => {
  const calls = [];
  const app = { canvas: {} };
  const n = node();
  const modern = { value: "a", setValue: (v, opts) => calls.push([v, opts.node === n]) };
  setWidgetValue(app, n, modern, "b");
  setWidgetValue(app, n, modern, "a"); // unchanged: nothing
  assert.deepEqual(calls, [["b", true]]);
  const legacy = { value: "a", callback: (v) => calls.push(["cb", v]) };
  setWidgetValue({}, n, legacy, "c");
  assert.equal(legacy.value, "c");
  assert.deepEqual(calls.at(-1), ["cb", "c"]);
});

test("guardText undoes a user's bad text with a toast, keeps links' text, and adopts observed good text", () => {
  const toasts = [];
  const app = { extensionManager: { toast: { add: (t) => toasts.push(t.summary) } } };
  const n = node();
  const given = [];
  const callback = (v, ...rest) => (given.push([v, ...rest]), "orig");
  const widget = { name: "custom_weights", value: "1, 2", callback };
  const rejected = [];
  let accepted = 0;
  const guard = guardText(app, n, widget, {
    check: parseProblem(parseWeightList),
    label: "weights",
    onAccept: () => accepted++,
    onReject: (r) => rejected.push(r),
  });
  widget.value = "1, x";
  assert.equal(widget.callback(widget.value, "canvas", "node"), "orig");
  assert.equal(widget.value, "1, 2");
  assert.deepEqual(given, [["1, 2", "canvas", "node"]]); // the original callback sees the restored text
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0].text, "1, x");
  assert.equal(rejected[0].kept, "1, 2");
  assert.match(toasts[0], /weights: rejected "1, x"/);
  widget.value = "3";
  widget.callback(widget.value);
  assert.equal(accepted, 1);
  guard.observe("4, 5"); // a loaded workflow's good value becomes the fallback
  widget.value = "bad";
  widget.callback(widget.value);
  assert.equal(widget.value, "4, 5");
  const linked = node(["custom_weights"]);
  const fed = { name: "custom_weights", value: "1", callback: null };
  guardText(app, linked, fed, { check: parseProblem(parseWeightList), label: "weights" });
  fed.value = "bad";
  fed.callback(fed.value);
  assert.equal(fed.value, "bad"); // kept as the link sent it: the backend judges it
});

test("markChanged redraws the node and the graph and lets the change tracker see the edit", () => {
  const seen = [];
  const n = { setDirtyCanvas: (...a) => seen.push(["node", ...a]) };
  const tracker = { captureCanvasState() { seen.push(["tracker", this === tracker]); } };
  const app = {
    graph: { setDirtyCanvas: (...a) => seen.push(["graph", ...a]) },
    extensionManager: { workflow: { activeWorkflow: { changeTracker: tracker } } },
  };
  markChanged(app, n);
  assert.deepEqual(seen, [["node", true, true], ["graph", true, true], ["tracker", true]]);
  const old = { checkState() { seen.push(["checkState"]); } }; // frontends before 1.3x
  markChanged({ extensionManager: { workflow: { activeWorkflow: { changeTracker: old } } } }, {});
  assert.deepEqual(seen.at(-1), ["checkState"]);
});

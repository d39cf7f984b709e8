// web/js/vue_nodes.js's shared per-frame loop: which widgets it serves (only those of nodes in a graph) and
// when it calls their work (each animation frame under the Vue node renderer only), on stand-in nodes.
import { test } from "node:test";
import assert from "node:assert/strict";

import { drivenCount, driveFrames } from "../../web/js/vue_nodes.js";

const frames = [];
globalThis.requestAnimationFrame = (fn) => frames.push(fn);
const runFrame = () => frames.splice(0).forEach((fn) => fn());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function make(inGraph) {
  const calls = { n: 0, added: 0, removed: 0, widgetRemoved: 0 };
  const node = {
    graph: inGraph ? {} : undefined,
    onAdded() {
      calls.added++;
    },
    onRemoved() {
      calls.removed++;
    },
  };
  const widget = {
    onRemove() {
      calls.widgetRemoved++;
    },
  };
  const element = { isConnected: true };
  driveFrames(node, widget, element, () => calls.n++);
  return { node, widget, element, calls };
}

test("a node that never enters a graph (the editor's copy for the clipboard) registers nothing", () => {
  const before = drivenCount();
  make(false);
  make(false);
  assert.equal(drivenCount(), before);
});

test("registered from onAdded (or at once when in a graph) to onRemoved or the widget's onRemove", () => {
  const before = drivenCount();
  const a = make(false);
  a.node.onAdded({});
  assert.equal(drivenCount(), before + 1);
  assert.equal(a.calls.added, 1); // the node's own hook still runs
  a.node.onRemoved();
  assert.equal(drivenCount(), before);
  assert.equal(a.calls.removed, 1);
  const b = make(true);
  assert.equal(drivenCount(), before + 1);
  b.widget.onRemove();
  assert.equal(drivenCount(), before);
  assert.equal(b.calls.widgetRemoved, 1);
});

test("the work runs once per animation frame under the Vue renderer only, for elements in the page", async () => {
  globalThis.LiteGraph = { vueNodesMode: false };
  const a = make(true);
  const hidden = make(true);
  hidden.element.isConnected = false;
  await sleep(700); // the classic renderer: the loop only looks whether Vue nodes were turned on
  assert.equal(a.calls.n, 0);
  assert.equal(frames.length, 0);
  globalThis.LiteGraph.vueNodesMode = true;
  await sleep(700); // noticed within the idle interval: from now on, every animation frame
  assert.equal(a.calls.n, 1); // the check that found it on ran the work once
  runFrame();
  runFrame();
  assert.equal(a.calls.n, 3);
  assert.equal(hidden.calls.n, 0);
  a.node.onRemoved();
  hidden.node.onRemoved();
  assert.equal(drivenCount(), 0);
  runFrame(); // the loop ends with nothing left to serve
  assert.equal(frames.length, 0);
  // a widget registered after the loop ended starts it again
  const later = make(true);
  assert.equal(frames.length, 1);
  runFrame();
  assert.equal(later.calls.n, 1);
  later.node.onRemoved();
  runFrame();
  assert.equal(frames.length, 0);
  globalThis.LiteGraph.vueNodesMode = false;
});

// web/js/vue_nodes.js's once-per-page notice that a frontend's Vue node renderer does not show our widgets, on
// stand-ins for the page (document, CSS) and ComfyUI's app; timers are mocked. A file of its own: the notice's
// "once per page" state lives in the module.
import { mock, test } from "node:test";
import assert from "node:assert/strict";

import { noticeIfVueNodes } from "../../web/js/vue_nodes.js";

test("the notice: only under Vue nodes, looked for again while the node is not rendered, once per page", () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  const rendered = new Map(); // node id -> the element the renderer shows for it
  globalThis.CSS = { escape: (s) => s };
  globalThis.document = { querySelector: (sel) => rendered.get(/data-node-id="(.*)"/.exec(sel)[1]) ?? null };
  const toasts = [];
  const graph = {};
  const app = { canvas: { graph }, extensionManager: { toast: { add: (t) => toasts.push(t.detail) } } };
  const warn = mock.method(console, "warn", () => {});
  const ours = { id: 1 };
  const node = { id: 7, graph };
  const showing = (...children) => ({ contains: (el) => children.includes(el) });
  try {
    globalThis.LiteGraph = { vueNodesMode: false };
    noticeIfVueNodes(app, "The canvas", ours, node);
    mock.timers.tick(60000);
    assert.equal(toasts.length, 0); // the classic renderer draws our widgets

    globalThis.LiteGraph = { vueNodesMode: true };
    noticeIfVueNodes(app, "The canvas", ours, node, 3);
    for (let i = 0; i < 3; i++) mock.timers.tick(1500); // not rendered (out of view): looked for 3 times
    rendered.set("7", showing());
    mock.timers.tick(60000);
    assert.equal(toasts.length, 0);

    rendered.set("7", showing(ours)); // this renderer shows our element
    noticeIfVueNodes(app, "The canvas", ours, node);
    mock.timers.tick(1500);
    assert.equal(toasts.length, 0);

    rendered.set("7", showing()); // a renderer that leaves it out: told once, naming what cannot be shown
    noticeIfVueNodes(app, "The canvas", ours, node);
    mock.timers.tick(1499);
    assert.equal(toasts.length, 0);
    mock.timers.tick(1);
    assert.equal(toasts.length, 1);
    assert.match(toasts[0], /^The canvas cannot be shown while nodes are drawn by this frontend's Vue renderer/);
    assert.equal(warn.mock.callCount(), 1);
    noticeIfVueNodes(app, "A plot", ours, node); // the same renderer, another widget
    mock.timers.tick(60000);
    assert.equal(toasts.length, 1); // once per page
  } finally {
    mock.timers.reset();
    warn.mock.restore();
    delete globalThis.LiteGraph;
    delete globalThis.document;
    delete globalThis.CSS;
  }
});

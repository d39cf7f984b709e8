// Where a node's input comes from, through Reroute nodes and subgraph inputs (web/js/lib/links.js), on
// stand-ins shaped like the graph editor's objects (frontend 1.27: links by id, subgraph inputs as origin -10).
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  MAX_LINKS_PER_WALK,
  SUBGRAPH_INPUT_ID,
  subgraphNodesOf,
  visitSources,
  widgetValue,
} from "../../web/js/lib/links.js";

class Graph {
  constructor(root = null) {
    this.rootGraph = root ?? this;
    this.nodes = [];
    this._links = new Map();
    this.subgraphs = new Map();
    this.nextLink = 1;
  }
  /** A new subgraph of this root graph, registered under `name`. */
  subgraph(name) {
    const g = new Graph(this);
    this.subgraphs.set(name, g);
    return g;
  }
  getLink(id) {
    return this._links.get(id);
  }
  getNodeById(id) {
    return this.nodes.find((n) => n.id === id) ?? null;
  }
  add(node) {
    node.graph = this;
    node.inputs ??= [];
    this.nodes.push(node);
    return node;
  }
  link(originId, originSlot, target, targetSlot) {
    const id = this.nextLink++;
    this._links.set(id, { id, origin_id: originId, origin_slot: originSlot, target_id: target.id });
    target.inputs[targetSlot].link = id;
    return id;
  }
  /** A link inside this subgraph from node `originId`'s output `originSlot` to the subgraph's output `slot`. */
  linkOut(originId, originSlot, slot) {
    const id = this.nextLink++;
    this._links.set(id, { id, origin_id: originId, origin_slot: originSlot, target_id: SUBGRAPH_OUTPUT_ID, target_slot: slot });
    this.outputs ??= [];
    this.outputs[slot] ??= { linkIds: [] };
    this.outputs[slot].linkIds.push(id);
    return id;
  }
}

const SUBGRAPH_OUTPUT_ID = -20;

const canvas = (id) => ({
  id,
  type: "AST_ScribbleCanvas",
  inputs: [
    { name: "background", link: null },
    { name: "width", link: null, widget: { name: "width" } },
    { name: "height", link: null, widget: { name: "height" } },
  ],
  widgets: [
    { name: "width", value: 64 },
    { name: "height", value: 48 },
  ],
});
const preview = (id, src) => ({ id, type: "LoadImage", imgs: src ? [{ src }] : undefined });
const reroute = (id) => ({ id, type: "Reroute", inputs: [{ name: "", link: null }] });
const primitive = (id, value) => ({
  id,
  type: "PrimitiveInt",
  inputs: [{ name: "value", link: null, widget: { name: "value" } }],
  widgets: [{ name: "value", value }],
});
const src = (node, slot) => visitSources(node, slot, (origin) => origin.imgs?.[0]?.src);

test("a direct link and a chain of Reroute nodes lead to the image's node", () => {
  const g = new Graph();
  const c = g.add(canvas(1));
  const img = g.add(preview(2, "/view?a.png"));
  g.link(2, 0, c, 0);
  assert.equal(src(c, 0), "/view?a.png");
  const r1 = g.add(reroute(3));
  const r2 = g.add(reroute(4));
  g.link(2, 0, r1, 0);
  g.link(3, 0, r2, 0);
  g.link(4, 0, c, 0);
  assert.equal(src(c, 0), "/view?a.png");
  img.imgs = undefined; // no preview yet
  assert.equal(src(c, 0), undefined);
  assert.equal(src(c, 1), undefined); // nothing linked
});

test("from inside a subgraph, a subgraph input leads to what feeds the subgraph node outside", () => {
  const root = new Graph();
  const sub = root.subgraph("s");
  const c = sub.add(canvas(1));
  sub.link(SUBGRAPH_INPUT_ID, 1, c, 0); // the subgraph's second input feeds the background
  const outer = root.add({ id: 7, type: "subgraph-uuid", subgraph: sub, inputs: [{ name: "x", link: null }, { name: "image", link: null }] });
  root.add(preview(2, "/view?b.png"));
  root.add(reroute(3));
  root.link(2, 0, root.getNodeById(3), 0);
  root.link(3, 0, outer, 1);
  assert.deepEqual(subgraphNodesOf(sub), [outer]);
  assert.deepEqual(subgraphNodesOf(root), []);
  assert.equal(src(c, 0), "/view?b.png");
});

test("a subgraph used twice: the first use whose source has an image; a nested subgraph is left too", () => {
  const root = new Graph();
  const mid = root.subgraph("mid");
  const sub = root.subgraph("sub");
  const c = sub.add(canvas(1));
  sub.link(SUBGRAPH_INPUT_ID, 0, c, 0);
  const a = root.add({ id: 5, subgraph: sub, inputs: [{ name: "image", link: null }] }); // unlinked use
  const b = mid.add({ id: 6, subgraph: sub, inputs: [{ name: "image", link: null }] }); // use inside `mid`
  mid.link(SUBGRAPH_INPUT_ID, 0, b, 0);
  const m = root.add({ id: 8, subgraph: mid, inputs: [{ name: "image", link: null }] });
  root.add(preview(2, "/view?c.png"));
  root.link(2, 0, m, 0);
  assert.deepEqual(subgraphNodesOf(sub), [a, b]);
  assert.equal(src(c, 0), "/view?c.png");
});

test("a loop of Reroute nodes ends (no hang)", () => {
  const g = new Graph();
  const c = g.add(canvas(1));
  const r1 = g.add(reroute(2));
  const r2 = g.add(reroute(3));
  g.link(3, 0, r1, 0);
  g.link(2, 0, r2, 0);
  g.link(2, 0, c, 0);
  assert.equal(src(c, 0), undefined);
});

test("a widget's value: its own, a primitive's through a link, the promoted widget of the subgraph node", () => {
  const root = new Graph();
  const c = root.add(canvas(1));
  assert.deepEqual(widgetValue(c, "width"), { linked: false, value: 64 });
  root.add(primitive(2, 128));
  root.link(2, 0, c, 1);
  assert.deepEqual(widgetValue(c, "width"), { linked: true, value: 128 });
  assert.deepEqual(widgetValue(c, "height"), { linked: false, value: 48 });
  // a primitive whose own value is linked, or a computing node: not known before the run
  const p2 = root.add(primitive(3, 5));
  root.add({ id: 4, type: "MathExpression", widgets: [{ name: "expression", value: "a*2" }] });
  root.link(4, 0, p2, 0);
  root.link(3, 0, c, 2);
  assert.deepEqual(widgetValue(c, "height"), { linked: true, value: undefined });
  root.link(4, 0, c, 2);
  assert.deepEqual(widgetValue(c, "height"), { linked: true, value: undefined });

  const sub = root.subgraph("s");
  const inner = sub.add(canvas(1));
  sub.link(SUBGRAPH_INPUT_ID, 0, inner, 1);
  const outer = root.add({
    id: 9,
    subgraph: sub,
    inputs: [{ name: "width", link: null, widget: { name: "width" } }],
    widgets: [{ name: "width", value: 200 }],
  });
  assert.deepEqual(widgetValue(inner, "width"), { linked: true, value: 200 }); // promoted widget
  root.add(reroute(10));
  root.link(2, 0, root.getNodeById(10), 0);
  root.link(10, 0, outer, 0);
  assert.deepEqual(widgetValue(inner, "width"), { linked: true, value: 128 }); // a primitive outside
});

test("outside a subgraph, its node's output leads to what feeds that output inside (nested too)", () => {
  const root = new Graph();
  const sub = root.subgraph("s");
  const deep = root.subgraph("d");
  const c = root.add(canvas(1));
  const outer = root.add({ id: 7, type: "subgraph-uuid", subgraph: sub, inputs: [] });
  root.link(7, 1, c, 0); // the subgraph node's second output feeds the background
  sub.add(preview(2, "/view?in.png"));
  sub.add(reroute(3));
  sub.link(2, 0, sub.getNodeById(3), 0);
  sub.linkOut(2, 0, 0);
  sub.linkOut(3, 0, 1);
  assert.equal(src(c, 0), "/view?in.png");
  // the image now comes out of a subgraph nested in `sub`
  sub.outputs[1].linkIds = [];
  sub.add({ id: 4, subgraph: deep, inputs: [] });
  sub.linkOut(4, 0, 1);
  deep.add(preview(5, "/view?deep.png"));
  deep.linkOut(5, 0, 0);
  assert.equal(src(c, 0), "/view?deep.png");
  deep.outputs[0].linkIds = []; // an output with nothing behind it
  assert.equal(src(c, 0), undefined);
  assert.ok(outer);
});

test("through a subgraph whose output comes from its own input: the use the chain came in through", () => {
  // a pass-through subgraph used twice, each use fed a different image; the canvas reads the second use
  const root = new Graph();
  const sub = root.subgraph("s");
  sub.linkOut(SUBGRAPH_INPUT_ID, 0, 0);
  const a = root.add({ id: 5, subgraph: sub, inputs: [{ name: "image", link: null }] });
  const b = root.add({ id: 6, subgraph: sub, inputs: [{ name: "image", link: null }] });
  root.add(preview(2, "/view?a.png"));
  root.add(preview(3, "/view?b.png"));
  root.link(2, 0, a, 0);
  root.link(3, 0, b, 0);
  const c = root.add(canvas(1));
  root.link(6, 0, c, 0);
  assert.equal(src(c, 0), "/view?b.png");
  root.link(5, 0, c, 0);
  assert.equal(src(c, 0), "/view?a.png");
});

test("a widget's value from a primitive inside a subgraph, through the subgraph node's output", () => {
  const root = new Graph();
  const sub = root.subgraph("s");
  const c = root.add(canvas(1));
  root.add({ id: 7, subgraph: sub, inputs: [{ name: "w", link: null, widget: { name: "w" } }], widgets: [{ name: "w", value: 96 }] });
  root.link(7, 0, c, 1);
  sub.add(primitive(2, 320));
  sub.linkOut(2, 0, 0);
  assert.deepEqual(widgetValue(c, "width"), { linked: true, value: 320 });
  // the output passes the subgraph's own input on: its promoted widget's value
  sub.outputs[0].linkIds = [];
  sub.linkOut(SUBGRAPH_INPUT_ID, 0, 0);
  assert.deepEqual(widgetValue(c, "width"), { linked: true, value: 96 });
});

test("frontends from 1.4x give node ids as strings: a subgraph input's link starts at \"-10\"", () => {
  const root = new Graph();
  const sub = root.subgraph("s");
  const c = sub.add(canvas("1"));
  const id = sub.link("-10", 0, c, 0);
  assert.equal(sub.getLink(id).origin_id, "-10");
  const outer = root.add({ id: "7", subgraph: sub, inputs: [{ name: "image", link: null }] });
  root.add(preview("2", "/view?s.png"));
  root.link("2", 0, outer, 0);
  assert.equal(src(c, 0), "/view?s.png");
});

test("a walk that forks at every use of nested subgraphs stops after a bounded number of links", () => {
  // subgraph G0 holds a canvas fed by G0's input; G(k) holds two uses of G(k-1): 2^21 paths out of G0 (a saved
  // workflow can nest so; a subgraph holding two uses of itself is 2^64). Found by fuzzing: the tab froze.
  const root = new Graph();
  const levels = 22;
  const gs = [];
  for (let k = 0; k < levels; k++) {
    const g = root.subgraph(`g${k}`);
    gs.push(g);
  }
  const c = gs[0].add(canvas(1));
  gs[0].link(SUBGRAPH_INPUT_ID, 0, c, 0);
  gs[0].link(SUBGRAPH_INPUT_ID, 0, c, 1);
  for (let k = 1; k < levels; k++) {
    for (const id of [1, 2]) {
      gs[k].link(SUBGRAPH_INPUT_ID, 0, gs[k].add({ id, subgraph: gs[k - 1], inputs: [{ name: "image", link: null }] }), 0);
    }
  }
  root.add({ id: 1, subgraph: gs[levels - 1], inputs: [{ name: "image", link: null }] });
  let looked = 0;
  for (const g of [root, ...gs]) {
    const get = g.getLink.bind(g);
    g.getLink = (id) => (looked++, get(id));
  }
  const start = performance.now();
  assert.equal(src(c, 0), undefined);
  assert.deepEqual(widgetValue(c, "width"), { linked: true, value: undefined });
  assert.ok(looked <= 10000, `looked at ${looked} links`); // two walks of at most 4096 links (MAX_LINKS_PER_WALK)
  assert.ok(performance.now() - start < 5000);
  // a shallow nest within the budget is still followed to its source
  root.add(preview(9, "shallow.png"));
  const g1 = root.subgraph("g1");
  const inner = g1.add(canvas(1));
  g1.link(SUBGRAPH_INPUT_ID, 0, inner, 0);
  root.link(9, 0, root.add({ id: 2, subgraph: g1, inputs: [{ name: "image", link: null }] }), 0);
  assert.equal(src(inner, 0), "shallow.png");
});

test("null entries in a hand-edited workflow's inputs or widgets are skipped, not a TypeError", () => {
  const node = { id: 1, inputs: [null, { name: "width", link: null, widget: { name: "width" } }], widgets: [null, { name: "width", value: 5 }] };
  assert.deepEqual(widgetValue(node, "width"), { linked: false, value: 5 });
});

test("a chain of 64 Reroute nodes is followed, one of 65 is not (the hop limit)", () => {
  for (const [count, expected] of [[64, "/view?far.png"], [65, undefined]]) {
    const g = new Graph();
    const c = g.add(canvas(1));
    g.add(preview(2, "/view?far.png"));
    let from = 2;
    for (let i = 0; i < count; i++) {
      const r = g.add(reroute(100 + i));
      g.link(from, 0, r, 0);
      from = 100 + i;
    }
    g.link(from, 0, c, 0);
    assert.equal(src(c, 0), expected, `${count} Reroute nodes`);
  }
});

test("through nested pass-through subgraphs, each input leads back out through the use the chain came in by", () => {
  // `inner` passes its input out and is used twice inside `outer` (each use fed by another of outer's inputs);
  // outer's output is the second use's. Leaving inner must go to that use, not to every use of inner.
  const root = new Graph();
  const outer = root.subgraph("outer");
  const inner = root.subgraph("inner");
  inner.linkOut(SUBGRAPH_INPUT_ID, 0, 0);
  const first = outer.add({ id: 1, subgraph: inner, inputs: [{ name: "image", link: null }] });
  const second = outer.add({ id: 2, subgraph: inner, inputs: [{ name: "image", link: null }] });
  outer.link(SUBGRAPH_INPUT_ID, 0, first, 0);
  outer.link(SUBGRAPH_INPUT_ID, 1, second, 0);
  outer.linkOut(2, 0, 0);
  const use = root.add({ id: 5, subgraph: outer, inputs: [{ name: "a", link: null }, { name: "b", link: null }] });
  root.add(preview(6, "/view?a.png"));
  root.add(preview(7, "/view?b.png"));
  root.link(6, 0, use, 0);
  root.link(7, 0, use, 1);
  const c = root.add(canvas(8));
  root.link(5, 0, c, 0);
  assert.equal(src(c, 0), "/view?b.png");
  outer.outputs[0].linkIds = [];
  outer.linkOut(1, 0, 0);
  assert.equal(src(c, 0), "/view?a.png");
});

test("a step into a subgraph's output and one out through its input each count towards the hop limit", () => {
  // a chain of uses of one pass-through subgraph: each use is two steps (in through its output, out through
  // its input), so 32 uses are followed (64 hops) and 33 are not
  for (const [count, expected] of [[32, "/view?far.png"], [33, undefined]]) {
    const root = new Graph();
    const pass = root.subgraph("pass");
    pass.linkOut(SUBGRAPH_INPUT_ID, 0, 0);
    root.add(preview(2, "/view?far.png"));
    let from = 2;
    for (let i = 0; i < count; i++) {
      const use = root.add({ id: 100 + i, subgraph: pass, inputs: [{ name: "image", link: null }] });
      root.link(from, 0, use, 0);
      from = 100 + i;
    }
    const c = root.add(canvas(1));
    root.link(from, 0, c, 0);
    assert.equal(src(c, 0), expected, `${count} uses`);
  }
});

test("a walk follows up to MAX_LINKS_PER_WALK links: the source 4096 links away is found, one 4097 away is not", () => {
  // a subgraph used by many nodes, each fed by a node with no image but the last: the walk looks at the link
  // inside, then one link per use
  assert.equal(MAX_LINKS_PER_WALK, 4096);
  for (const [uses, expected] of [[MAX_LINKS_PER_WALK - 1, "/view?last.png"], [MAX_LINKS_PER_WALK, undefined]]) {
    const root = new Graph();
    const sub = root.subgraph("s");
    const c = sub.add(canvas(1));
    sub.link(SUBGRAPH_INPUT_ID, 0, c, 0);
    for (let i = 0; i < uses; i++) {
      const use = root.add({ id: 10000 + i, subgraph: sub, inputs: [{ name: "image", link: null }] });
      root.add(preview(i + 1, i === uses - 1 ? "/view?last.png" : undefined));
      root.link(i + 1, 0, use, 0);
    }
    assert.equal(src(c, 0), expected, `${uses} uses`);
  }
});

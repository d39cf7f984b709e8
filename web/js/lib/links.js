// Pure logic over the graph editor's node objects (no DOM, no ComfyUI import): where a node's input comes
// from, followed through the nodes that only pass a link on.
//
// The graph editor (ComfyUI frontend 1.27, LiteGraph) links an input to the output of the node whose id is
// `link.origin_id`. Three kinds of node only pass a link on and hold no value or preview themselves:
// - the legacy `Reroute` node (its input 0 goes to its output 0);
// - a subgraph's input: inside a subgraph, a link from an input of the subgraph has `origin_id` -10 and
//   `origin_slot` the index of that input; outside, the subgraph node (one per use of the subgraph, in the
//   root graph or in another subgraph) has that input at the same index, linked or holding a promoted widget;
// - a subgraph node's output: inside its subgraph, `subgraph.outputs[i].linkIds` are the links into the
//   subgraph's output node (`target_id` -20), whose origins inside are the source.
// The functions only read `graph.getLink` / `graph._links`, `graph.getNodeById`, `graph.rootGraph`,
// `rootGraph.nodes`, `rootGraph.subgraphs`, `subgraph.outputs[i].linkIds`, and nodes' `inputs`, `widgets`,
// `type`, `subgraph`.

import { toNumber } from "./parse.js";

/** `origin_id` of links that start at a subgraph's inputs (a number on frontend 1.27, the string "-10" from 1.4x on). */
export const SUBGRAPH_INPUT_ID = -10;
/** Deepest chain of pass-through nodes followed (a loop in a broken graph must not hang the editor). */
const MAX_HOPS = 64;
/**
 * Most links one walk looks at. A walk forks at every use of a subgraph and every link into a subgraph's
 * output, so nested subgraphs each used twice make 2^depth paths (a subgraph holding two uses of itself,
 * about 2^64): past this many the walk stops and the value counts as unknown, instead of freezing the tab.
 */
export const MAX_LINKS_PER_WALK = 4096;

/** The link `id` of `graph`, or null. */
function linkIn(graph, id) {
  return graph?.getLink?.(id) ?? graph?._links?.get?.(id) ?? null;
}

/** The link into `node`'s input `slot`, or null. */
export function linkInto(node, slot) {
  const id = node?.inputs?.[slot]?.link;
  return id == null ? null : linkIn(node?.graph, id);
}

/** The subgraph nodes that use subgraph `graph` (none when `graph` is the root graph). */
export function subgraphNodesOf(graph) {
  const root = graph?.rootGraph;
  if (!root || root === graph) return [];
  const graphs = [root, ...(root.subgraphs?.values?.() ?? [])];
  const out = [];
  for (const g of graphs) {
    for (const n of g.nodes ?? g._nodes ?? []) {
      if (n?.subgraph === graph) out.push(n);
    }
  }
  return out;
}

/**
 * The ends of the chain that feeds `node`'s input `slot`, through Reroute nodes, out of subgraphs (a subgraph
 * input: each subgraph node using it, or only the one the chain came in through) and into them (a subgraph
 * node's output: what feeds that output inside). Yields `{ origin, slot }` for the node whose output `slot` is
 * the source, or `{ unlinked, slot }` for a subgraph node's input that has no link (its promoted widget, if
 * any, holds the value). `via` is the stack of subgraph nodes entered on the way; `budget.left` counts down
 * the links this walk may still look at (shared by all its branches).
 */
function* chainEnds(node, slot, hops = 0, via = [], budget = { left: MAX_LINKS_PER_WALK }) {
  if (hops > MAX_HOPS) return;
  const input = node?.inputs?.[slot];
  if (input?.link == null) {
    if (hops > 0 && node?.subgraph) yield { unlinked: node, slot };
    return;
  }
  yield* linkEnds(node.graph, linkInto(node, slot), hops, via, budget);
}

function* linkEnds(graph, link, hops, via, budget) {
  if (!link || hops > MAX_HOPS || --budget.left < 0) return;
  if (toNumber(link.origin_id) === SUBGRAPH_INPUT_ID) {
    const entered = via.at(-1);
    if (entered?.subgraph === graph) {
      yield* chainEnds(entered, link.origin_slot, hops + 1, via.slice(0, -1), budget);
      return;
    }
    for (const outer of subgraphNodesOf(graph)) yield* chainEnds(outer, link.origin_slot, hops + 1, via, budget);
    return;
  }
  const origin = graph.getNodeById?.(link.origin_id);
  if (!origin) return;
  if (origin.type === "Reroute") {
    yield* chainEnds(origin, 0, hops + 1, via, budget);
    return;
  }
  if (origin.subgraph) {
    // a subgraph node's output: inside, links into the subgraph's output node (target -20) end there
    const inner = origin.subgraph;
    for (const id of inner.outputs?.[link.origin_slot]?.linkIds ?? []) {
      yield* linkEnds(inner, linkIn(inner, id), hops + 1, [...via, origin], budget);
    }
    return;
  }
  yield { origin, slot: link.origin_slot };
}

/**
 * Every node whose output feeds `node`'s input `slot`, through Reroute nodes, out of subgraphs (one per use of
 * the subgraph where the link leaves one, usually one) and into subgraphs whose output it is. Calls
 * `visit(origin, outputSlot)` for each and returns the first result that is not undefined.
 */
export function visitSources(node, slot, visit) {
  for (const end of chainEnds(node, slot)) {
    if (!end.origin) continue;
    const r = visit(end.origin, end.slot);
    if (r !== undefined) return r;
  }
  return undefined;
}

/** The input of `node` that widget `name` was turned into (frontend 1.27: every widget has one), or null. */
export function widgetInput(node, name) {
  const i = node?.inputs?.findIndex((input) => input?.widget?.name === name) ?? -1;
  return i >= 0 ? i : null;
}

/**
 * The value widget `name` of `node` will run with, and whether it is set through its input (a link, or a
 * widget of the subgraph node around it).
 *
 * Returns `{ linked, value }`: not linked, `value` is the widget's own; linked, `value` is what the link's
 * source holds where the editor knows it (a primitive node's `value` widget, or the promoted widget of the
 * subgraph node around it), else undefined (a value computed only when the workflow runs).
 */
export function widgetValue(node, name) {
  const own = node?.widgets?.find((w) => w?.name === name)?.value;
  const slot = widgetInput(node, name);
  if (slot === null || node.inputs[slot].link == null) return { linked: false, value: own };
  return { linked: true, value: inputValue(node, slot) };
}

function inputValue(node, slot) {
  for (const end of chainEnds(node, slot)) {
    let v;
    if (end.unlinked) {
      // a subgraph node's input without a link: the widget promoted onto the subgraph node holds the value
      const input = end.unlinked.inputs[end.slot];
      const name = input?.widget?.name ?? input?.name;
      v = end.unlinked.widgets?.find((w) => w?.name === name)?.value;
    } else {
      // a primitive node: ComfyUI's PrimitiveInt, PrimitiveString and the like hold it in their `value` widget
      // (unless that too comes from a link), the legacy PrimitiveNode in its one widget, named after the target's
      const origin = end.origin;
      if (origin.type === "PrimitiveNode") {
        v = origin.widgets?.[0]?.value;
        if (v !== undefined) return v;
        continue;
      }
      const w = origin.widgets?.find((x) => x?.name === "value");
      const valueSlot = widgetInput(origin, "value");
      if (w && !(valueSlot !== null && origin.inputs[valueSlot].link != null)) v = w.value;
    }
    if (v !== undefined) return v;
  }
  return undefined;
}

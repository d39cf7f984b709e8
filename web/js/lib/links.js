// Pure logic over the graph editor's node objects (no DOM, no ComfyUI import): where a node's input comes
// from, followed through the nodes that only pass a link on.
//
// The graph editor (ComfyUI frontend 1.27, LiteGraph) links an input to the output of the node whose id is
// `link.origin_id`. Two kinds of node only pass a link on and hold no value or preview themselves:
// - the legacy `Reroute` node (its input 0 goes to its output 0);
// - a subgraph's input: inside a subgraph, a link from an input of the subgraph has `origin_id` -10 and
//   `origin_slot` the index of that input; outside, the subgraph node (one per use of the subgraph, in the
//   root graph or in another subgraph) has that input at the same index, linked or holding a promoted widget.
// The functions only read `graph.getLink` / `graph._links`, `graph.getNodeById`, `graph.rootGraph`,
// `rootGraph.nodes`, `rootGraph.subgraphs`, and nodes' `inputs`, `widgets`, `type`, `subgraph`.

/** `origin_id` of links that start at a subgraph's inputs. */
export const SUBGRAPH_INPUT_ID = -10;
/** Deepest chain of pass-through nodes followed (a loop in a broken graph must not hang the editor). */
const MAX_HOPS = 64;

/** The link into `node`'s input `slot`, or null. */
export function linkInto(node, slot) {
  const id = node?.inputs?.[slot]?.link;
  const graph = node?.graph;
  if (id == null || !graph) return null;
  return graph.getLink?.(id) ?? graph._links?.get?.(id) ?? null;
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
 * Every node whose output feeds `node`'s input `slot`, through Reroute nodes and out of subgraphs: one per
 * use of the subgraph where the link leaves one (usually one). Calls `visit(origin, outputSlot)` for each and
 * returns the first result that is not undefined.
 */
export function visitSources(node, slot, visit, hops = 0) {
  if (hops > MAX_HOPS) return undefined;
  const link = linkInto(node, slot);
  if (!link) return undefined;
  if (link.origin_id === SUBGRAPH_INPUT_ID) {
    for (const outer of subgraphNodesOf(node.graph)) {
      const r = visitSources(outer, link.origin_slot, visit, hops + 1);
      if (r !== undefined) return r;
    }
    return undefined;
  }
  const origin = node.graph.getNodeById?.(link.origin_id);
  if (!origin) return undefined;
  if (origin.type === "Reroute") return visitSources(origin, 0, visit, hops + 1);
  return visit(origin, link.origin_slot);
}

/** The input of `node` that widget `name` was turned into (frontend 1.27: every widget has one), or null. */
export function widgetInput(node, name) {
  const i = node?.inputs?.findIndex((input) => input.widget?.name === name) ?? -1;
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
  const own = node?.widgets?.find((w) => w.name === name)?.value;
  const slot = widgetInput(node, name);
  if (slot === null || node.inputs[slot].link == null) return { linked: false, value: own };
  return { linked: true, value: inputValue(node, slot, 0) };
}

function inputValue(node, slot, hops) {
  if (hops > MAX_HOPS) return undefined;
  const input = node.inputs?.[slot];
  if (input?.link == null) {
    // a subgraph node's input without a link: the widget promoted onto the subgraph node holds the value
    const name = input?.widget?.name ?? input?.name;
    return node.widgets?.find((w) => w.name === name)?.value;
  }
  const link = linkInto(node, slot);
  if (!link) return undefined;
  if (link.origin_id === SUBGRAPH_INPUT_ID) {
    for (const outer of subgraphNodesOf(node.graph)) {
      const v = inputValue(outer, link.origin_slot, hops + 1);
      if (v !== undefined) return v;
    }
    return undefined;
  }
  const origin = node.graph.getNodeById?.(link.origin_id);
  if (!origin) return undefined;
  if (origin.type === "Reroute") return inputValue(origin, 0, hops + 1);
  // a primitive node (ComfyUI's PrimitiveInt and the like, or the legacy PrimitiveNode): its `value` widget,
  // unless that too comes from a link
  const w = origin.widgets?.find((x) => x.name === "value");
  const valueSlot = widgetInput(origin, "value");
  if (!w || (valueSlot !== null && origin.inputs[valueSlot].link != null)) return undefined;
  return w.value;
}

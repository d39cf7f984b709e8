// Our DOM widgets (scribble canvas, plots) under the graph editor's Vue node renderer ("Vue nodes",
// `LiteGraph.vueNodesMode`). No imports (the caller passes ComfyUI's app), so Node can load this module beside
// the modules that import it.
//
// Frontends differ there, so both helpers go by what the page does, not by version numbers:
// - 1.27's experimental Vue nodes show no extension's own widgets (nor core's webcam and 3D ones): the layer
//   that places DOM widgets is not mounted and only built-in widget types are drawn. Our elements never enter
//   the node's DOM; the user is told once per page.
// - Later ones (1.44, "Nodes 2.0") mount a DOM widget's element inside the Vue node, but never draw the widget
//   on the graph canvas, so its `onDraw` hook (our per-frame work: layout, following sizes set by other code,
//   the background to trace) is not called: `driveFrames` calls it once per animation frame instead.

const SETTLE_MS = 1500; // a new node's Vue component mounts within a few frames
const TRIES = 8; // looked for again while the node is not rendered (scrolled out of view, a closed subgraph)
let shown = false;

/**
 * Toast once per page when `element` (a DOM widget of `node`) is missing from the Vue node that shows `node`:
 * `what` cannot be drawn or edited with this frontend's Vue renderer. Nothing is said for a node that is not
 * rendered (culled out of view, in a closed subgraph) or when the renderer shows the element.
 */
export function noticeIfVueNodes(app, what, element, node, tries = TRIES) {
  if (shown || !globalThis.LiteGraph?.vueNodesMode || tries <= 0) return;
  setTimeout(() => {
    if (shown || !globalThis.LiteGraph?.vueNodesMode || !node?.graph) return;
    const shownNode =
      node.graph === app.canvas?.graph && !node.flags?.collapsed
        ? document.querySelector(`[data-node-id="${CSS.escape(String(node.id))}"]`)
        : null;
    if (!shownNode) {
      noticeIfVueNodes(app, what, element, node, tries - 1); // not rendered now: look again later
      return;
    }
    if (shownNode.contains(element)) return; // this renderer shows our widgets
    shown = true;
    const detail =
      `${what} cannot be shown while nodes are drawn by this frontend's Vue renderer (it shows no ` +
      "extension's own widgets): turn Vue nodes off again to draw and edit them. The nodes still run " +
      "with their saved values.";
    console.warn(`[affordance] ${detail}`);
    try {
      app.extensionManager?.toast?.add({ severity: "warn", summary: "Affordance", detail, life: 10000 });
    } catch {
      /* no toast service: the console says it */
    }
  }, SETTLE_MS);
}

// element -> its per-frame work, run by one shared animation-frame loop while any widget is registered
const frameWork = new Map();
let frame = 0;

function tick() {
  frame = frameWork.size ? requestAnimationFrame(tick) : 0;
  if (!globalThis.LiteGraph?.vueNodesMode) return;
  for (const [element, onFrame] of frameWork) if (element.isConnected) onFrame();
}

/**
 * Call `onFrame` once per animation frame while nodes are drawn by the Vue renderer and `element` is in the
 * page (the classic renderer calls the widget's `onDraw` itself); stops when `widget` is removed.
 */
export function driveFrames(widget, element, onFrame) {
  frameWork.set(element, onFrame);
  if (!frame) frame = requestAnimationFrame(tick);
  const onRemove = widget.onRemove;
  widget.onRemove = function (...args) {
    frameWork.delete(element);
    return onRemove?.apply(this, args);
  };
}

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

// element -> its per-frame work, for the widgets of nodes in a graph; one shared loop runs it while any is
// registered: once per animation frame under the Vue renderer, and otherwise only looks twice a second
// whether that renderer was turned on
const frameWork = new Map();
const IDLE_MS = 500;
let scheduled = false;

function schedule() {
  scheduled = true;
  if (globalThis.LiteGraph?.vueNodesMode) requestAnimationFrame(tick);
  else setTimeout(tick, IDLE_MS);
}

function tick() {
  scheduled = false;
  if (!frameWork.size) return;
  if (globalThis.LiteGraph?.vueNodesMode) for (const [element, onFrame] of frameWork) if (element.isConnected) onFrame();
  schedule();
}

function chain(target, name, fn) {
  const original = target[name];
  target[name] = function (...args) {
    fn();
    return original?.apply(this, args);
  };
}

/**
 * Call `onFrame` once per animation frame while nodes are drawn by the Vue renderer and `element` is in the
 * page (the classic renderer calls the widget's `onDraw` itself), for as long as `node` is in a graph: from
 * its `onAdded` (or now, if it is in one already) to its `onRemoved` or the widget's `onRemove`. A node that
 * never enters a graph (the copy the editor makes to copy a node to the clipboard) registers nothing, so it
 * is neither kept alive by this module nor keeps the loop running.
 */
export function driveFrames(node, widget, element, onFrame) {
  const start = () => {
    frameWork.set(element, onFrame);
    if (!scheduled) schedule();
  };
  const stop = () => frameWork.delete(element);
  chain(node, "onAdded", start);
  chain(node, "onRemoved", stop);
  chain(widget, "onRemove", stop);
  if (node.graph) start();
}

/** How many widgets the loop serves now (for tests). */
export function drivenCount() {
  return frameWork.size;
}

// One notice per page when the graph editor draws nodes with its experimental Vue renderer.
//
// Frontend 1.27's "Vue nodes" mode (setting `Comfy.VueNodes.Enabled`, which sets `LiteGraph.vueNodesMode`)
// shows no DOM or canvas-drawn widget of any extension, nor core's own webcam or 3D widgets: the layer that
// places them is not mounted, and only a fixed list of built-in widget types is drawn. Our scribble canvas
// and plots would be missing without a word; the nodes still run with their saved values. No imports (the
// caller passes ComfyUI's app), so Node can load it beside the modules that import it.

let shown = false;

/** Toast once per page, if nodes are drawn by the Vue renderer, that `what` is only shown by the classic one. */
export function noticeIfVueNodes(app, what) {
  if (shown || !globalThis.LiteGraph?.vueNodesMode) return;
  shown = true;
  const detail =
    `${what} cannot be shown while nodes are drawn by the experimental Vue renderer (no extension's own ` +
    "widgets are, on this frontend): turn Vue nodes off again to draw and edit them. The nodes still run " +
    "with their saved values.";
  console.warn(`[affordance] ${detail}`);
  try {
    app.extensionManager?.toast?.add({ severity: "warn", summary: "Affordance", detail, life: 10000 });
  } catch {
    /* no toast service: the console says it */
  }
}

// AST_ScribbleCanvas: a drawing canvas inside the node (brush, eraser, undo, clear, a background to trace).
//
// The drawing's pixels come from web/js/lib/strokes.js (pure, unit-tested). Each edit makes the drawing's
// reference (subfolder affordance_scribbles of ComfyUI's input folder, content-hashed name) the node's
// `drawing` value; the drawing is uploaded under it when a prompt is made (queue, API export), so only
// drawings that run leave a file in the input folder. The strokes themselves are kept in node.properties,
// so a reopened workflow redraws (and, where the file is missing, uploads when queued) the same drawing.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { visitSources, widgetValue } from "./lib/links.js";
import { toNumber } from "./lib/parse.js";
import { signalColours } from "./lib/plot.js";
import { driveFrames, noticeIfVueNodes } from "./vue_nodes.js";
import * as S from "./lib/strokes.js";
import { imagePixels, loadImage, uploadDrawing, viewURL } from "./scribble_io.js";

const NODE_ID = "AST_ScribbleCanvas";
const RECORD = "ast_scribble";
const BRUSH = "ast_brush";
const RECENT_MS = 2000; // prompts made this soon after a confirmed upload do not upload the drawing again
const LOG = "[affordance.scribble]";

function toast(severity, summary, detail) {
  try {
    app.extensionManager?.toast?.add({ severity, summary, detail, life: 6000 });
  } catch {
    /* no toast service: the node's status line still says it */
  }
}

function button(label, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.title = title;
  b.className = "ast-scribble-btn";
  Object.assign(b.style, {
    padding: "2px 7px", fontSize: "12px", cursor: "pointer", borderRadius: "4px",
    border: "1px solid var(--border-color, #555)", background: "var(--comfy-input-bg, #222)",
    color: "var(--input-text, #ddd)",
  });
  return b;
}

/** All state and DOM of one canvas node. */
class ScribbleCanvas {
  constructor(node) {
    this.node = node;
    this.value = "";
    this.ops = [];
    this.base = null; // raster loaded from a file without strokes (e.g. a workflow written by hand)
    this.baseRef = null;
    this.raster = S.createRaster(512, 512);
    this.active = null; // the stroke being drawn
    this.eraser = false;
    this.uploaded = new Set(); // references this page has seen on the server (for the status line only)
    this.confirmed = null; // { ref, at }: the last upload the server confirmed, and when (performance.now())
    this.uploading = null; // promise of the upload in flight
    this.uploadError = null;
    this.bgSrc = null;
    this.bgExecuted = null;
    this.restoring = null;
    this.refusedSize = null; // a linked size refused once (not again at every frame)
    this.configuring = false;
    this.ownRef = ""; // the reference of the pixels this canvas holds: only that name is ever uploaded
    this.readOnly = true; // until the AST_ScribbleCanvas node itself sets it up (setEditable): shown, never edited
    this.buildDom();
    this.paintAll();
  }

  // ---- DOM --------------------------------------------------------------------------------------------
  buildDom() {
    const root = document.createElement("div");
    root.className = "ast-scribble";
    Object.assign(root.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%", boxSizing: "border-box" });
    const bar = document.createElement("div");
    Object.assign(bar.style, { display: "flex", gap: "4px", alignItems: "center", flexWrap: "wrap", fontSize: "12px", color: "var(--input-text, #ddd)" });
    const size = document.createElement("input");
    size.type = "range";
    size.min = String(S.MIN_BRUSH);
    size.max = "64";
    size.className = "ast-scribble-size";
    size.title = "Brush size (pixels of the drawing)";
    size.style.width = "80px";
    const sizeLabel = document.createElement("span");
    sizeLabel.style.minWidth = "2.5em";
    const erase = button("Eraser", "Toggle the eraser (paints black)");
    erase.classList.add("ast-scribble-eraser");
    const undo = button("Undo", "Undo the last stroke or clear");
    undo.classList.add("ast-scribble-undo");
    const clear = button("Clear", "Clear the canvas (undoable)");
    clear.classList.add("ast-scribble-clear");
    const fit = button("Fit to background", "Set width and height to the background image's size");
    fit.classList.add("ast-scribble-fit");
    fit.style.display = "none";
    bar.append(size, sizeLabel, erase, undo, clear, fit);

    const stage = document.createElement("div");
    Object.assign(stage.style, { flex: "1 1 auto", minHeight: "0", display: "grid", placeItems: "center", overflow: "hidden" });
    const bg = document.createElement("canvas");
    const ink = document.createElement("canvas");
    ink.className = "ast-scribble-canvas";
    for (const c of [bg, ink]) {
      Object.assign(c.style, { gridArea: "1 / 1", imageRendering: "pixelated" });
    }
    Object.assign(ink.style, { cursor: "crosshair", touchAction: "none" });
    bg.style.outline = "1px solid var(--border-color, #555)";
    stage.append(bg, ink);

    const status = document.createElement("div");
    status.className = "ast-scribble-status";
    Object.assign(status.style, { fontSize: "11px", lineHeight: "13px", minHeight: "13px", maxHeight: "39px", overflow: "hidden", overflowWrap: "anywhere", color: "var(--descrip-text, #999)" });
    root.append(bar, stage, status);

    this.el = { root, size, sizeLabel, erase, undo, clear, fit, bg, ink, status };
    this.inkCtx = ink.getContext("2d");
    this.bgCtx = bg.getContext("2d");
    this.bgImage = null;

    this.showBrush();
    size.addEventListener("input", () => {
      this.node.properties[BRUSH] = Number(size.value);
      this.shownBrush = this.brush();
      sizeLabel.textContent = `${size.value} px`;
    });
    erase.addEventListener("click", () => {
      this.eraser = !this.eraser;
      this.paintSignals();
    });
    undo.addEventListener("click", () => this.undo());
    clear.addEventListener("click", () => this.clear());
    fit.addEventListener("click", () => this.fitToBackground());
    for (const type of ["pointerdown", "pointermove", "pointerup", "pointercancel", "lostpointercapture"]) {
      ink.addEventListener(type, (e) => this.onPointer(e));
    }
    for (const el of [root]) {
      // keep the graph from panning/zooming or selecting while the canvas is used
      el.addEventListener("pointerdown", (e) => e.stopPropagation());
      el.addEventListener("wheel", (e) => e.stopPropagation(), { passive: true });
      el.addEventListener("contextmenu", (e) => e.stopPropagation());
    }
  }

  /**
   * Editable only in an AST_ScribbleCanvas node, whose creation hook calls this; a canvas that another node
   * hosts (a legacy group node, which lacks the size and restore hooks) stays read-only and passes its
   * drawing on unchanged.
   */
  setEditable(editable) {
    this.readOnly = !editable;
    this.el.ink.style.cursor = editable ? "crosshair" : "not-allowed";
    for (const b of [this.el.undo, this.el.clear, this.el.erase, this.el.fit]) b.disabled = !editable;
    if (!editable) {
      this.setStatus("Drawing is passed on unchanged here: convert the group node back to edit it in the Scribble Canvas node.");
    }
  }

  brush() {
    const b = toNumber(this.node.properties?.[BRUSH]);
    return Number.isFinite(b) && b >= S.MIN_BRUSH && b <= S.MAX_BRUSH ? b : 8;
  }

  setStatus(text, isError = false) {
    this.el.status.textContent = text;
    this.el.status.title = text;
    this.el.status.dataset.state = isError ? "error" : "ok";
    this.paintSignals();
  }

  /** Error text and the active eraser's outline in colours readable on the node's background (any palette). */
  paintSignals() {
    const bg = this.node.bgcolor ?? globalThis.LiteGraph?.NODE_DEFAULT_BGCOLOR;
    if (!this.signals || bg !== this.signalBg) [this.signalBg, this.signals] = [bg, signalColours(bg)]; // once per colour
    const c = this.signals;
    const key = `${c.error}/${c.active}/${this.eraser}/${this.el.status.dataset.state}`;
    if (key === this.signalKey) return;
    this.signalKey = key;
    this.el.status.style.color = this.el.status.dataset.state === "error" ? c.error : "var(--descrip-text, #999)";
    this.el.erase.style.outline = this.eraser ? `2px solid ${c.active}` : "none";
  }

  widgetValue(name) {
    return this.node.widgets?.find((w) => w.name === name)?.value;
  }

  /**
   * The width or height the run will use: the widget's, or where it is set through its input (a primitive
   * node linked to it, the subgraph node's promoted widget), that source's value when the editor knows it.
   * `linked` says the canvas's own widget does not decide it.
   */
  sizeSetting(name) {
    const { linked, value } = widgetValue(this.node, name);
    return { linked, value: value === undefined ? this.widgetValue(name) : value };
  }

  /**
   * The size the widgets (or the links into them) ask for. A size that is not allowed (e.g. beyond the
   * 4096 px maximum) is refused: widgets of the node go back to the current size, the status line says why,
   * and null is returned.
   */
  wantedSize() {
    const ws = this.sizeSetting("width");
    const hs = this.sizeSetting("height");
    const w = toNumber(ws.value);
    const h = toNumber(hs.value);
    const problem = S.sizeProblem(w, h);
    if (!problem) {
      this.refusedSize = null;
      return [w, h];
    }
    const { width, height } = this.raster;
    for (const [name, v, s] of [["width", width, ws], ["height", height, hs]]) {
      const widget = this.node.widgets?.find((x) => x.name === name);
      if (widget && !s.linked) widget.value = v;
    }
    // a linked size stays as it is: say so once, not at every frame that compares it with the canvas
    if (this.refusedSize === `${w}x${h}`) return null;
    this.refusedSize = ws.linked || hs.linked ? `${w}x${h}` : null;
    const msg = `Size refused: ${problem} Kept ${width}x${height}.`;
    this.setStatus(msg, true);
    toast("warn", "Scribble canvas", msg);
    return null;
  }

  // ---- drawing ------------------------------------------------------------------------------------------
  /**
   * Re-render the whole drawing (size change, undo, clear) and refresh the reference. `track`: whether this
   * is the user's edit, to be recorded by the graph's undo history (not while a node is made or loaded).
   */
  rebuild(track = true) {
    if (this.readOnly) return;
    const size = this.wantedSize();
    if (!size) return;
    this.raster = S.render(size[0], size[1], this.ops, this.base);
    this.paintAll();
    this.afterChange(track);
  }

  paintAll() {
    const { width, height } = this.raster;
    for (const c of [this.el.ink, this.el.bg]) {
      if (c.width !== width || c.height !== height) {
        c.width = width;
        c.height = height;
      }
    }
    this.imageData = this.inkCtx.createImageData(width, height);
    S.toRGBA(this.raster, false, this.imageData.data);
    this.inkCtx.putImageData(this.imageData, 0, 0);
    this.paintBackground();
  }

  paintRect(rect) {
    if (!rect || !this.imageData) return;
    const [l, t, r, b] = rect;
    S.toRGBA(this.raster, false, this.imageData.data, rect);
    this.inkCtx.putImageData(this.imageData, 0, 0, l, t, r - l, b - t);
  }

  paintBackground() {
    const { width, height } = this.raster;
    const ctx = this.bgCtx;
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    if (this.bgImage) {
      ctx.globalAlpha = 0.5;
      ctx.drawImage(this.bgImage, 0, 0, width, height);
      ctx.globalAlpha = 1;
    }
  }

  onPointer(e) {
    const ink = this.el.ink;
    if (e.type === "pointerdown") {
      if (e.button !== 0 || this.readOnly) return;
      e.preventDefault();
      e.stopPropagation();
      // the default focus change is cancelled above: a control of ours keeping the focus (the brush slider)
      // would keep the editor's shortcuts (Ctrl+Z, Delete) from the graph
      if (this.el.root.contains(document.activeElement)) document.activeElement.blur?.();
      if (S.countPoints(this.ops) >= S.MAX_POINTS) {
        this.setStatus(`This drawing already has ${S.MAX_POINTS} points, the most a node keeps: clear it or undo.`, true);
        return;
      }
      ink.setPointerCapture?.(e.pointerId);
      // points are kept at the 0.1 px the workflow stores, so a reopened drawing is pixel-identical
      const [x, y] = S.clientToDrawing(e.clientX, e.clientY, ink.getBoundingClientRect(), this.raster.width, this.raster.height).map(S.quantize);
      this.active = { t: "s", r: this.brush(), e: this.eraser ? 1 : 0, p: [x, y] };
      this.paintRect(S.stampStroke(this.raster, this.active, 0));
      return;
    }
    if (!this.active) return;
    e.preventDefault();
    e.stopPropagation();
    if (e.type === "pointermove") {
      const events = e.getCoalescedEvents?.() ?? [];
      const rect = ink.getBoundingClientRect();
      let changed = null;
      for (const ev of events.length ? events : [e]) {
        const [x, y] = S.clientToDrawing(ev.clientX, ev.clientY, rect, this.raster.width, this.raster.height).map(S.quantize);
        const p = this.active.p;
        if (p[p.length - 2] === x && p[p.length - 1] === y) continue;
        p.push(x, y);
        changed = S.unionRect(changed, S.stampStroke(this.raster, this.active, p.length / 2 - 1));
      }
      this.paintRect(changed);
      return;
    }
    // pointerup / pointercancel / lostpointercapture: the stroke is done
    const op = this.active;
    this.active = null;
    this.ops.push(op);
    this.afterChange();
  }

  undo() {
    if (this.readOnly) return;
    if (!this.ops.length) {
      this.setStatus("Nothing to undo.");
      return;
    }
    this.ops.pop();
    this.rebuild();
  }

  clear() {
    if (this.readOnly || (!this.ops.length && !this.base && !this.value)) return;
    this.ops.push({ t: "c" });
    this.rebuild();
  }

  fitToBackground() {
    if (!this.bgImage || this.readOnly) return;
    const round8 = (v) => Math.max(S.MIN_SIDE, Math.min(S.MAX_SIDE, Math.round(v / 8) * 8));
    const [w, h] = [round8(this.bgImage.naturalWidth), round8(this.bgImage.naturalHeight)];
    const linked = ["width", "height"].filter((name) => this.sizeSetting(name).linked);
    if (linked.length) {
      // the widget would change but the run would not: the link (or the subgraph node's widget) decides
      const msg =
        `Not fitted: ${linked.join(" and ")} ${linked.length > 1 ? "are" : "is"} set through an input (a link, or ` +
        `the subgraph node's widget). Set ${w}x${h} there to fit the background.`;
      this.setStatus(msg, true);
      toast("warn", "Scribble canvas", msg);
      return;
    }
    for (const [name, v] of [["width", w], ["height", h]]) {
      const widget = this.node.widgets?.find((x) => x.name === name);
      if (widget) {
        widget.value = v;
        widget.callback?.(v);
      }
    }
    this.rebuild();
  }

  /**
   * After any edit: keep the strokes in the workflow, point the widget at the drawing's file, upload it.
   * `track`: record the edit in the graph's undo history (false while a node is created or restored, which
   * would otherwise add half-loaded graphs as steps and clear the redo list).
   */
  afterChange(track = true) {
    this.node.properties[RECORD] = S.encodeRecord(this.baseRef, this.ops);
    const blank = !this.base && !this.raster.data.some((v) => v);
    const ref = blank ? "" : S.referenceFor(this.raster);
    this.ownRef = ref;
    if (ref !== this.value) {
      this.value = ref;
      this.widget?.callback?.(ref);
    }
    const { width, height } = this.raster;
    if (!ref) this.setStatus(`${width}x${height} - blank canvas (outputs black)`);
    else if (this.uploaded.has(ref)) this.setStatus(`${width}x${height} - saved as input/${ref}`);
    else this.setStatus(`${width}x${height} - kept in the workflow; saved to the input folder when queued`);
    this.node.setDirtyCanvas?.(true, true);
    if (!track) return;
    try {
      const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
      if (tracker && !tracker._restoringState) (tracker.captureCanvasState ?? tracker.checkState)?.call(tracker);
    } catch {
      /* older frontends track changes on their own */
    }
  }

  // ---- upload -----------------------------------------------------------------------------------------
  /**
   * Upload the current drawing. Every prompt uploads it again (the same bytes under the same name), since
   * the server may have lost the file since the last one (input folder cleaned, another --input-directory);
   * only prompts made within RECENT_MS of a confirmed upload (a batch count, several exports) share it.
   * Resolves true when the server has it, or when the value names a file this canvas does not hold (a
   * drawing that could not be loaded): that file is never overwritten, and the backend reports what is
   * wrong with it.
   */
  upload() {
    const ref = this.value;
    if (!ref || ref !== this.ownRef) return Promise.resolve(true);
    if (this.confirmed?.ref === ref && performance.now() - this.confirmed.at < RECENT_MS) return Promise.resolve(true);
    if (this.uploading?.ref === ref) return this.uploading.promise;
    const raster = this.raster;
    const promise = (async () => {
      try {
        if (this.uploaded.has(ref)) {
          // sent before from this page: the server most likely holds these very bytes, and then writes nothing
          // (a run reading the file meanwhile is undisturbed); a file lost since is written again. Other bytes
          // under the name (another browser's PNG encoder) are stored aside, so the name is overwritten then.
          await uploadDrawing(raster, ref, false).catch(() => uploadDrawing(raster, ref, true));
        } else {
          await uploadDrawing(raster, ref);
        }
        this.uploaded.add(ref);
        this.confirmed = { ref, at: performance.now() };
        this.uploadError = null;
        if (this.value === ref) this.setStatus(`${raster.width}x${raster.height} - saved as input/${ref}`);
        return true;
      } catch (err) {
        this.uploadError = err;
        const msg = `Upload failed: ${err.message}. The drawing is kept in the node and its strokes in the workflow; it is uploaded again when you queue.`;
        if (this.value === ref) this.setStatus(msg, true);
        toast("error", "Scribble canvas: upload failed", msg);
        console.warn(LOG, msg);
        return false;
      } finally {
        if (this.uploading?.ref === ref) this.uploading = null;
      }
    })();
    this.uploading = { ref, promise };
    return promise;
  }

  /**
   * What the prompt gets: waits for the upload, retries once, refuses to queue a drawing the server lacks.
   * A stroke finished while an upload is in flight changes the value: that drawing is uploaded too, so the
   * name returned is always one the server has.
   */
  async serialize() {
    if (this.restoring) await this.restoring;
    this.followSize(); // a collapsed or off-screen node draws no frames: a size set by other code is applied here
    for (let failures = 0; failures < 2; ) {
      const ref = this.value;
      if (!ref) return "";
      const ok = await this.upload();
      if (ok && this.value === ref) return ref;
      if (!ok) failures += 1;
    }
    throw new Error(
      `Scribble canvas (node ${this.node.id}): the drawing could not be uploaded to ComfyUI's input folder ` +
        `(${this.uploadError?.message}). It is still in the node; check the server and queue again.`,
    );
  }

  // ---- restore ----------------------------------------------------------------------------------------
  /**
   * A workflow was loaded (or pasted): redraw from the kept strokes, or from the file alone. `track`: record
   * the result in the graph's undo history (a drawing named by a script, not a workflow being loaded).
   */
  restore(track = false) {
    const task = (async () => {
      const saved = this.value;
      this.ownRef = ""; // until the saved drawing is shown again, its name is not ours to upload
      let record;
      let unreadable = null;
      try {
        record = S.decodeRecord(this.node.properties?.[RECORD]);
      } catch (err) {
        // Strokes this version cannot read (edited by hand, or a later version's format) stay in the workflow
        // as they are until the user edits the drawing: reading the workflow must not rewrite them.
        const shown = saved ? `showing input/${saved} instead` : "the canvas starts blank";
        unreadable = `The saved strokes cannot be read (${err.message}); ${shown}. They stay in the workflow until the drawing is edited.`;
        console.warn(LOG, err.message);
        record = { base: null, ops: [] };
      }
      this.showBrush();
      this.ops = record.ops;
      this.baseRef = record.base;
      if (!this.baseRef && !this.ops.length && saved) this.baseRef = saved;
      this.base = null;
      if (this.baseRef) {
        try {
          const img = await loadImage(viewURL(this.baseRef));
          this.base = S.fromRGBA(imagePixels(img), img.naturalWidth, img.naturalHeight);
          this.uploaded.add(this.baseRef);
        } catch (err) {
          const why = (err instanceof S.ScribbleError ? err.message : `input/${this.baseRef} is missing or not an image`).replace(/\.+$/, "");
          this.setStatus(`The drawing could not be loaded: ${why}. Draw again or clear the canvas; until then the node keeps its file name and the run reports the problem.`, true);
          const [w, h] = this.wantedSize() ?? [this.raster.width, this.raster.height];
          this.raster = S.createRaster(w, h);
          this.paintAll();
          return;
        }
      }
      this.value = saved;
      const [w, h] = this.wantedSize() ?? [this.raster.width, this.raster.height];
      this.raster = S.render(w, h, this.ops, this.base);
      this.paintAll();
      // The saved reference names this very drawing (content hash), but this server may lack the file (a
      // workflow from another machine): it is uploaded when a prompt is made (see upload), rather than probed
      // for with a request that may 404 and log errors.
      if (unreadable) {
        // shown, nothing of the node changed: the strokes and the file's name stay as the workflow has them
        // (the file is not ours to upload over; the first edit makes a drawing of our own on top of it)
        this.setStatus(unreadable, true);
        this.node.setDirtyCanvas?.(true, true);
      } else {
        this.afterChange(track);
      }
    })();
    this.restoring = task.finally(() => {
      this.restoring = null;
    });
    return this.restoring;
  }

  /** Show the brush size on the slider and its label; remembered, since the slider snaps values outside its range. */
  showBrush() {
    this.shownBrush = this.brush();
    this.el.size.value = String(this.shownBrush);
    this.el.sizeLabel.textContent = `${this.shownBrush} px`;
  }

  /** Redraw at the width and height widgets' size if other code changed them without their callbacks. */
  followSize() {
    if (this.readOnly || this.configuring || this.restoring) return;
    const w = this.sizeSetting("width").value;
    const h = this.sizeSetting("height").value;
    if (typeof w === "number" && typeof h === "number" && (w !== this.raster.width || h !== this.raster.height)) this.rebuild();
  }

  /**
   * The `drawing` widget was set to another file by other means than this canvas (another extension, a
   * script): show that file as the drawing, as a workflow naming it would. The strokes drawn so far were on
   * the previous drawing: they go (graph undo brings them back). A file that cannot be shown is kept by name,
   * never overwritten, as in `restore`.
   */
  adopt(ref) {
    this.value = ref;
    this.node.properties[RECORD] = S.encodeRecord(null, []);
    void this.restore(true);
  }

  /**
   * Called on every frame of the graph canvas: follow width/height and the brush size set by other means
   * than our own controls (another extension, the properties panel), fit the drawing to the node and follow
   * the background input.
   */
  onFrame() {
    this.followSize();
    if (this.brush() !== this.shownBrush && document.activeElement !== this.el.size) this.showBrush();
    const stage = this.el.ink.parentElement;
    const sw = stage.clientWidth;
    const sh = stage.clientHeight;
    const { width, height } = this.raster;
    const key = `${sw}x${sh}/${width}x${height}`;
    if (sw > 0 && sh > 0 && key !== this.layoutKey) {
      this.layoutKey = key;
      const scale = Math.min(sw / width, sh / height);
      for (const c of [this.el.ink, this.el.bg]) {
        c.style.width = `${Math.max(1, Math.floor(width * scale))}px`;
        c.style.height = `${Math.max(1, Math.floor(height * scale))}px`;
      }
    }
    // sharp pixels when the drawing is shown enlarged; smoothed when shrunk (graph zoom and screen density
    // included), where nearest-pixel sampling would drop thin lines
    const shown = this.el.ink.getBoundingClientRect().width * (globalThis.devicePixelRatio || 1);
    const rendering = shown > 0 && shown < width ? "auto" : "pixelated";
    if (this.el.ink.style.imageRendering !== rendering) {
      for (const c of [this.el.ink, this.el.bg]) c.style.imageRendering = rendering;
    }
    this.paintSignals();
    this.checkBackground();
  }

  // ---- background to trace ------------------------------------------------------------------------------
  /**
   * The image to trace: the preview of the node connected to `background` (through Reroute nodes and from
   * outside a subgraph the canvas is in), else the last run's.
   */
  checkBackground() {
    const slot = this.node.inputs?.findIndex((i) => i.name === "background") ?? -1;
    let src = null;
    if (slot >= 0 && this.node.inputs[slot].link != null) {
      src = visitSources(this.node, slot, (origin) => origin.imgs?.[0]?.src) ?? this.bgExecuted;
    } else {
      this.bgExecuted = null;
    }
    if (src === this.bgSrc) return;
    this.bgSrc = src;
    this.el.fit.style.display = src ? "" : "none";
    if (!src) {
      this.bgImage = null;
      this.paintBackground();
      return;
    }
    loadImage(src)
      .then((img) => {
        if (this.bgSrc !== src) return;
        this.bgImage = img;
        this.paintBackground();
      })
      .catch(() => this.setStatus("The background image could not be loaded (it is only shown for tracing).", true));
  }
}

app.registerExtension({
  name: "affordance.scribbleCanvas",

  getCustomWidgets() {
    return {
      AST_SCRIBBLE(node, inputName) {
        const state = new ScribbleCanvas(node);
        noticeIfVueNodes(app, "The scribble canvas", state.el.root, node);
        state.setEditable(false); // AST_ScribbleCanvas's onNodeCreated makes it editable; other hosts never do
        const widget = node.addDOMWidget(inputName, "AST_SCRIBBLE", state.el.root, {
          getValue: () => state.value,
          setValue: (v) => {
            const ref = typeof v === "string" ? v : "";
            if (ref === state.value) return;
            // while a workflow loads, the value arrives before the strokes (restored at onConfigure)
            if (state.readOnly || state.configuring || state.restoring) state.value = ref;
            else state.adopt(ref);
          },
          getMinHeight: () => 220,
          onDraw: () => state.onFrame(),
          socketless: true,
        });
        widget.serializeValue = () => state.serialize();
        driveFrames(node, widget, state.el.root, () => state.onFrame());
        state.widget = widget;
        node.astScribble = state;
        return { widget, minWidth: 320, minHeight: 420 };
      },
    };
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_ID) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      const state = this.astScribble;
      if (state) {
        state.setEditable(true);
        this.properties ??= {};
        for (const name of ["width", "height"]) {
          const w = this.widgets?.find((x) => x.name === name);
          if (!w) continue;
          const cb = w.callback;
          w.callback = function () {
            const out = cb?.apply(this, arguments);
            if (!state.configuring && !state.restoring) state.rebuild();
            return out;
          };
        }
        this.setSize([Math.max(this.size[0], 360), Math.max(this.size[1], 500)]);
        state.rebuild(false);
      }
      return r;
    };
    // While a saved node is configured, widget values and properties arrive one by one: no redraw until the
    // end (onConfigure), or a half-restored state would overwrite the saved strokes.
    const configure = nodeType.prototype.configure;
    nodeType.prototype.configure = function () {
      const state = this.astScribble;
      if (state) state.configuring = true;
      try {
        return configure.apply(this, arguments);
      } finally {
        if (state) state.configuring = false;
      }
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const r = onConfigure?.apply(this, arguments);
      void this.astScribble?.restore();
      return r;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const r = onExecuted?.apply(this, arguments);
      const rec = output?.ast_background?.[0];
      if (rec && this.astScribble) {
        const q = new URLSearchParams({ filename: rec.filename, subfolder: rec.subfolder ?? "", type: rec.type ?? "temp" });
        this.astScribble.bgExecuted = api.apiURL(`/view?${q}`);
      }
      return r;
    };
  },
});

// DOM side shared by the weights and schedule plots: a <canvas> in a DOM widget that is never saved into
// the workflow, redrawn when its inputs change, with pointer handling and a guard that keeps the last
// widget text that parsed. Helpers only: importing this module registers nothing.

import { widgetValue } from "./lib/links.js";
import { formatNumber } from "./lib/parse.js";
import { fitText, signalColours, valueToY, wrapText, yTicks } from "./lib/plot.js";
import { driveFrames, noticeIfVueNodes } from "./vue_nodes.js";

const NEUTRAL = { bg: "#222", text: "#ddd", muted: "#999", outline: "#666" };
export const ACCENT = "#4c8ed9";
export const ACCENT_ACTIVE = "#f0a030";

/**
 * Theme colours from LiteGraph (they follow ComfyUI's dark and light palettes), else neutral ones; `error`
 * is a red readable on that background.
 */
export function themeColours() {
  const lg = globalThis.LiteGraph ?? {};
  const bg = lg.WIDGET_BGCOLOR ?? NEUTRAL.bg;
  return {
    bg,
    text: lg.WIDGET_TEXT_COLOR ?? NEUTRAL.text,
    muted: lg.WIDGET_SECONDARY_TEXT_COLOR ?? NEUTRAL.muted,
    outline: lg.WIDGET_OUTLINE_COLOR ?? NEUTRAL.outline,
    error: signalColours(bg).error,
  };
}

/**
 * The values widgets `names` of `node` will run with: each widget's own, or, fed by a link, its source's
 * where the editor knows it (a primitive node, a widget promoted to a subgraph node; `lib/links.js`).
 * `unknown` names the first linked widget whose value exists only when the workflow runs, else null.
 */
export function runValues(node, names) {
  const values = {};
  let unknown = null;
  for (const name of names) {
    const { linked, value } = widgetValue(node, name);
    if (linked && value === undefined) unknown ??= name;
    values[name] = linked && value !== undefined ? value : findWidget(node, name)?.value;
  }
  return { values, unknown };
}

/** The node's widget called ``name``. */
export function findWidget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

/** Whether widget ``name`` is fed by a link (converted to an input), so the plot must not edit it. */
export function isLinked(node, name) {
  return !!node.inputs?.some((input) => input.widget?.name === name && input.link != null);
}

/** Call ``fn`` after ``widget``'s own callback, keeping whatever callback was there. */
export function chainCallback(widget, fn) {
  const original = widget.callback;
  widget.callback = function (...args) {
    const r = original?.apply(this, args);
    fn.apply(this, args);
    return r;
  };
}

/** Show a toast where the frontend offers one (ComfyUI >= 1.x), else log a warning. */
export function toast(app, summary, detail) {
  const t = app.extensionManager?.toast;
  if (t?.add) t.add({ severity: "warn", summary, detail, life: 4000 });
  else console.warn(`${summary}: ${detail}`);
}

/** Mark the graph changed: redraw it and let ComfyUI's change tracker (undo, "modified") see the edit. */
export function markChanged(app, node) {
  node.setDirtyCanvas?.(true, true);
  app.graph?.setDirtyCanvas?.(true, true);
  try {
    const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
    (tracker?.captureCanvasState ?? tracker?.checkState)?.call(tracker); // checkState before frontend 1.3x
  } catch (err) {
    console.warn("affordance: change tracker check failed", err);
  }
}

/** Set a widget the way a user edit does (value, callback, node.onWidgetChanged), when it differs. */
export function setWidgetValue(app, node, widget, value) {
  if (!widget || widget.value === value) return;
  if (typeof widget.setValue === "function" && app.canvas) {
    widget.setValue(value, { e: undefined, node, canvas: app.canvas });
  } else {
    widget.value = value;
    widget.callback?.(widget.value, app.canvas, node);
  }
}

/** A ``check`` for guardText from a parser that throws: ``""`` when the text parses, else the parser's message. */
export function parseProblem(parse) {
  return (text) => {
    try {
      parse(text ?? "");
      return "";
    } catch (err) {
      return err.message;
    }
  };
}

/**
 * Keep the last text of ``widget`` that ``check(text)`` accepts (``check`` returns an error message or "").
 *
 * A user edit that does not parse is undone: the widget gets the last good text back, a toast names the
 * rejected text and why, and ``onReject({text, message, kept})`` lets the plot show it. Values that arrive
 * without a callback (a loaded workflow) are never rewritten; good ones become the new fallback. Nor are
 * values that arrive through a link (the widget is then an input, fed e.g. by a Primitive node, which
 * sends its own text on every queue): the node shows them as they are and the backend judges them.
 * Returns ``{observe(text)}`` to report such values.
 */
export function guardText(app, node, widget, { check, label, onAccept, onReject }) {
  let lastGood = check(widget.value) ? null : widget.value;
  const original = widget.callback;
  widget.callback = function (...args) {
    const text = widget.value;
    const message = check(text);
    if (message && isLinked(node, widget.name)) {
      // kept as sent: the plot draws the parse error of the current text, and the backend refuses it
    } else if (message && lastGood !== null && text !== lastGood) {
      widget.value = lastGood;
      args[0] = widget.value;
      toast(app, `${label}: rejected ${JSON.stringify(text)}`, `${message} Kept ${JSON.stringify(lastGood)}.`);
      onReject?.({ text, message, kept: lastGood });
    } else if (!message) {
      lastGood = text;
      onAccept?.();
    }
    return original?.apply(this, args);
  };
  return {
    observe(text) {
      if (!check(text)) lastGood = text;
    },
  };
}

/**
 * Add a plot canvas to ``node`` as a DOM widget that is not serialised.
 *
 * ``spec``: ``name``, ``className``, ``minHeight``, ``key()`` (a string that changes whenever the picture
 * must change), ``render(ctx, width, height)`` (draws in CSS pixels and returns the geometry the pointer
 * handlers and tests use), and optional pointer handlers ``down(pos, event)`` (return true to capture the
 * pointer and get ``move``/``up``), ``move``, ``up``, ``hover``, ``leave`` (the pointer left the canvas while
 * not dragging: drop any hover highlight), ``dblclick``, ``contextmenu`` (return
 * true to consume). ``pos`` is ``{x, y}`` in CSS pixels of the canvas element.
 */
export function addPlotWidget(app, node, spec) {
  const canvas = document.createElement("canvas");
  noticeIfVueNodes(app, "The weights and schedule plots", canvas, node);
  canvas.className = spec.className;
  Object.assign(canvas.style, {
    width: "100%",
    height: "100%",
    display: "block",
    touchAction: "none",
    userSelect: "none",
    cursor: "default",
  });
  let lastKey = null;
  let geometry = null;

  const pixelRatio = () => (globalThis.devicePixelRatio || 1) * Math.min(4, Math.max(1, app.canvas?.ds?.scale ?? 1));

  function redraw(force = false) {
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const ratio = pixelRatio();
    const key = `${width}x${height}@${ratio}|${JSON.stringify(themeColours())}|${spec.key()}`;
    if (!force && key === lastKey) return;
    lastKey = key;
    const w = Math.round(width * ratio);
    const h = Math.round(height * ratio);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    geometry = spec.render(ctx, width, height);
  }

  const widget = node.addDOMWidget(spec.name, "ast-plot", canvas, {
    serialize: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => spec.minHeight,
    onDraw: () => redraw(),
  });
  // The frontend resizes the element after the frame that called onDraw: redraw when its size changes, so
  // the plot (and the geometry pointer events are hit-tested against) always matches what is on screen.
  if (globalThis.ResizeObserver) new ResizeObserver(() => redraw()).observe(canvas);
  driveFrames(node, widget, canvas, () => redraw()); // the Vue node renderer calls no onDraw: values set by other code
  // LGraphNode.serialize() and configure() test the widget's own `serialize` field (options.serialize only
  // keeps it out of the prompt): without it the plot would take a slot in widgets_values.
  widget.serialize = false;

  const localPos = (event) => {
    const rect = canvas.getBoundingClientRect();
    const sx = rect.width ? canvas.clientWidth / rect.width : 1;
    const sy = rect.height ? canvas.clientHeight / rect.height : 1;
    return { x: (event.clientX - rect.left) * sx, y: (event.clientY - rect.top) * sy };
  };
  let capturing = null;
  canvas.addEventListener("pointerdown", (event) => {
    event.stopPropagation();
    redraw(); // a no-op unless something changed since the last frame: hit-test what is on screen
    if (event.button !== 0 || !geometry) return;
    if (spec.down?.(localPos(event), event)) {
      capturing = event.pointerId;
      canvas.setPointerCapture(event.pointerId);
      redraw(true);
    }
  });
  canvas.addEventListener("pointermove", (event) => {
    event.stopPropagation();
    if (!geometry) return;
    if (capturing === event.pointerId) {
      spec.move?.(localPos(event), event);
      redraw(true);
    } else if (capturing === null) {
      canvas.style.cursor = spec.hover?.(localPos(event)) ?? "default";
    }
  });
  canvas.addEventListener("pointerleave", () => {
    if (capturing !== null) return; // a drag keeps its pointer until it ends
    canvas.style.cursor = "default";
    spec.leave?.();
  });
  const finish = (event) => {
    event.stopPropagation();
    if (capturing !== event.pointerId) return;
    capturing = null;
    if (canvas.hasPointerCapture?.(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    spec.up?.(localPos(event), event);
    redraw(true);
    markChanged(app, node);
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  canvas.addEventListener("dblclick", (event) => {
    event.stopPropagation();
    if (geometry && spec.dblclick?.(localPos(event), event)) {
      event.preventDefault();
      redraw(true);
      markChanged(app, node);
    }
  });
  canvas.addEventListener("contextmenu", (event) => {
    event.stopPropagation();
    event.preventDefault();
    if (geometry && spec.contextmenu?.(localPos(event), event)) {
      redraw(true);
      markChanged(app, node);
    }
  });

  widget.redraw = () => {
    redraw(true);
    node.setDirtyCanvas?.(true, false);
  };
  widget.geometry = () => geometry;
  widget.clientScale = () => {
    const rect = canvas.getBoundingClientRect();
    return canvas.clientWidth ? rect.width / canvas.clientWidth : 1;
  };

  const size = node.computeSize?.();
  if (size) node.setSize?.([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
  return widget;
}

/** The plot's background panel and its y axis: a rounded frame, horizontal grid lines and their labels. */
export function drawPanel(ctx, width, height, frame, colours) {
  ctx.fillStyle = colours.bg;
  ctx.strokeStyle = colours.outline;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.roundRect(0.5, 0.5, width - 1, height - 1, 4);
  ctx.fill();
  ctx.stroke();
  ctx.font = "10px sans-serif";
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  for (const t of yTicks(frame.yMin, frame.yMax)) {
    const y = valueToY(frame, t);
    ctx.strokeStyle = colours.outline;
    ctx.globalAlpha = t === 0 ? 0.9 : 0.35;
    ctx.beginPath();
    ctx.moveTo(frame.left, Math.round(y) + 0.5);
    ctx.lineTo(frame.right, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.fillStyle = colours.muted;
    ctx.fillText(formatNumber(t, 2), frame.left - 8, y); // clear of a point drawn on the axis
  }
}

/**
 * The whole plot when widget ``name`` is fed by a link whose value exists only when the workflow runs: the
 * panel, the ``title`` line and a note saying so (no stale curve or bars).
 */
export function drawUnknownLink(ctx, width, height, frame, colours, title, name) {
  drawPanel(ctx, width, height, frame, colours);
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.fillStyle = colours.text;
  ctx.fillText(fitText(title, width - 12, (t) => ctx.measureText(t).width), 6, 10);
  const note = `${name} comes from a link: its value is known only when the workflow runs.`;
  drawMessage(ctx, frame, note, colours, undefined, colours.muted);
}

/**
 * Draw ``text`` wrapped, on a translucent panel inside ``frame``'s area, from its top: in the theme's red, or
 * in ``colour``.
 */
export function drawMessage(ctx, frame, text, colours, measureFont = "11px sans-serif", colour = colours.error) {
  ctx.font = measureFont;
  const maxWidth = frame.right - frame.left - 12;
  const lines = wrapText(text, maxWidth, (line) => ctx.measureText(line).width);
  const lineHeight = 13;
  const h = Math.min(frame.bottom - frame.top, lines.length * lineHeight + 8);
  ctx.save();
  ctx.globalAlpha = 0.9;
  ctx.fillStyle = colours.bg;
  ctx.fillRect(frame.left + 2, frame.top + 2, frame.right - frame.left - 4, h);
  ctx.restore();
  ctx.fillStyle = colour;
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  lines.forEach((line, i) => {
    const y = frame.top + 6 + i * lineHeight;
    if (y + lineHeight <= frame.top + 2 + h + 1) ctx.fillText(line, frame.left + 6, y);
  });
}

/** A one-line note on a translucent panel, so it stays readable over the plot; ``x`` is its left or right end. */
export function drawNote(ctx, text, x, y, align, colours) {
  const w = ctx.measureText(text).width;
  const left = align === "right" ? x - w : x;
  ctx.save();
  ctx.globalAlpha = 0.85;
  ctx.fillStyle = colours.bg;
  ctx.fillRect(left - 3, y - 2, w + 6, 14);
  ctx.restore();
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  ctx.fillStyle = colours.text;
  ctx.fillText(text, left, y);
}

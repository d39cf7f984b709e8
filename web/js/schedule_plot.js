// AST_StrengthSchedule: the strength multiplier over sampling progress, live, under the node's widgets.
// Drag a keyframe to move it, double-click empty space to add one, double-click or right-click a keyframe
// to remove it (never the last). Text that does not parse is refused and shown.

import { app } from "../../scripts/app.js";
import { dragLimit, fitText, fractionToX, valueToY } from "./lib/plot.js";
import {
  addKeyframe,
  curveVertices,
  keyframeAt,
  moveKeyframe,
  parseKeyframes,
  parseSchedule,
  pointToKeyframe,
  removeKeyframe,
  scheduleGeometry,
} from "./lib/schedule_curve.js";
import { formatNumber } from "./lib/parse.js";
import {
  ACCENT,
  ACCENT_ACTIVE,
  addPlotWidget,
  chainCallback,
  drawMessage,
  drawPanel,
  drawUnknownLink,
  findWidget,
  guardText,
  parseProblem,
  isLinked,
  runValues,
  setWidgetValue,
  themeColours,
} from "./plot_widget.js";

const NODE_TYPE = "AST_StrengthSchedule";
const HIT_RADIUS = 9;
const CAPTION = "strength x multiplier over sampling progress";

function setupSchedulePlot(node) {
  const keyframesWidget = findWidget(node, "keyframes");
  const interpolationWidget = findWidget(node, "interpolation");
  if (!keyframesWidget || !interpolationWidget) return;

  let rejected = null; // {text, message, kept} of the last refused edit, until the next good change
  let drag = null; // {index, yMax, keyframes} while a keyframe is held
  let hover = -1;
  let observed = null;
  let lastShown = null; // keyframes drawn (dimmed) under an error

  const guard = guardText(app, node, keyframesWidget, {
    label: "keyframes",
    check: parseProblem(parseKeyframes),
    onAccept: () => {
      rejected = null;
    },
    onReject: (info) => {
      rejected = info;
      plot.redraw();
    },
  });

  const linked = () => isLinked(node, "keyframes");

  // what the run uses: the widgets' own values, or those of the nodes their links come from
  const runs = () => runValues(node, ["keyframes", "interpolation"]);

  function state() {
    const own = keyframesWidget.value;
    if (own !== observed) {
      observed = own;
      guard.observe(own);
    }
    const { values, unknown } = runs();
    if (unknown) return { keyframes: null, interpolation: values.interpolation, error: "", unknown };
    try {
      const s = parseSchedule(values.keyframes ?? "", values.interpolation);
      lastShown = s.keyframes;
      return { ...s, error: "" };
    } catch (err) {
      return { keyframes: lastShown, interpolation: values.interpolation, error: err.message };
    }
  }

  function render(ctx, width, height) {
    const colours = themeColours();
    const s = state();
    if (s.unknown) {
      // fed by a link whose value exists only when the workflow runs: no curve rather than a stale one
      const geo = scheduleGeometry([[0, 1]], width, height);
      drawUnknownLink(ctx, width, height, geo.frame, colours, CAPTION, s.unknown);
      return { ...geo, points: [], editable: false };
    }
    const keyframes = drag ? drag.keyframes : (s.keyframes ?? [[0, 1]]);
    const interpolation = s.interpolation === "step" ? "step" : "linear";
    const geo = scheduleGeometry(keyframes, width, height, { yMax: drag?.yMax });
    const { frame, points } = geo;

    drawPanel(ctx, width, height, frame, colours);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      const x = fractionToX(frame, t);
      ctx.fillStyle = colours.muted;
      ctx.fillText(String(t), x, frame.bottom + 3);
    }

    const vertices = curveVertices(keyframes, interpolation);
    ctx.globalAlpha = s.error ? 0.35 : 1;
    ctx.fillStyle = ACCENT;
    ctx.globalAlpha *= 0.18;
    ctx.beginPath();
    ctx.moveTo(fractionToX(frame, 0), valueToY(frame, 0));
    for (const [p, m] of vertices) ctx.lineTo(fractionToX(frame, p), valueToY(frame, m));
    ctx.lineTo(fractionToX(frame, 1), valueToY(frame, 0));
    ctx.closePath();
    ctx.fill();
    ctx.globalAlpha = s.error ? 0.35 : 1;
    ctx.strokeStyle = ACCENT;
    ctx.lineWidth = 2;
    ctx.beginPath();
    vertices.forEach(([p, m], i) => {
      const x = fractionToX(frame, p);
      const y = valueToY(frame, m);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.lineWidth = 1;

    const active = drag ? drag.index : hover;
    for (const pt of points) {
      ctx.fillStyle = pt.index === active ? ACCENT_ACTIVE : ACCENT;
      ctx.strokeStyle = colours.text;
      ctx.beginPath();
      ctx.arc(pt.x, pt.y, pt.index === active ? 5.5 : 4.5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    if (drag || hover >= 0) {
      const pt = points[active];
      if (pt) {
        ctx.fillStyle = colours.text;
        ctx.textAlign = pt.x > frame.right - 40 ? "right" : pt.x < frame.left + 40 ? "left" : "center";
        ctx.textBaseline = "bottom";
        ctx.fillText(`${formatNumber(pt.progress)}:${formatNumber(pt.multiplier)}`, pt.x, Math.max(frame.top + 10, pt.y - 7));
      }
    }

    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillStyle = colours.muted;
    const right = linked() ? "from a link" : interpolation;
    ctx.fillText(right, width - 6, 10);
    // the caption gets what the right-hand label leaves (shortened with "…" on a narrow node)
    ctx.textAlign = "left";
    ctx.fillStyle = colours.text;
    const room = width - 6 - ctx.measureText(right).width - 12 - 6;
    ctx.fillText(fitText(CAPTION, room, (t) => ctx.measureText(t).width), 6, 10);

    if (s.error) drawMessage(ctx, frame, s.error, colours);
    else if (rejected) drawMessage(ctx, frame, `Rejected ${JSON.stringify(rejected.text)}: ${rejected.message}`, colours);
    return { ...geo, editable: !s.error && !linked() };
  }

  const write = (result) => {
    if (result.changed) setWidgetValue(app, node, keyframesWidget, result.text);
    return result.changed;
  };

  function applyDrag(pos) {
    const [p, m] = pointToKeyframe(plot.geometry().frame, pos.x, pos.y);
    const result = moveKeyframe(drag.keyframes, drag.index, p, m, dragLimit(drag.yMax));
    drag.keyframes = result.keyframes;
    write(result);
  }

  const plot = addPlotWidget(app, node, {
    name: "ast_schedule_plot",
    className: "ast-schedule-plot",
    minHeight: 140,
    key: () => JSON.stringify([keyframesWidget.value, runs(), drag, hover, rejected, linked()]),
    render,
    hover(pos) {
      const geo = plot.geometry();
      const i = geo.editable ? keyframeAt(geo, pos.x, pos.y, HIT_RADIUS) : -1;
      if (i !== hover) {
        hover = i;
        plot.redraw();
      }
      return i >= 0 ? "grab" : geo.editable ? "crosshair" : "default";
    },
    leave() {
      if (hover !== -1) {
        hover = -1;
        plot.redraw();
      }
    },
    down(pos) {
      const geo = plot.geometry();
      if (!geo.editable) return false;
      const index = keyframeAt(geo, pos.x, pos.y, HIT_RADIUS);
      if (index < 0) return false;
      drag = { index, yMax: geo.frame.yMax, keyframes: geo.points.map((pt) => [pt.progress, pt.multiplier]) };
      return true;
    },
    move(pos) {
      if (drag) applyDrag(pos);
    },
    up() {
      drag = null;
    },
    dblclick(pos) {
      const geo = plot.geometry();
      if (!geo.editable) return false;
      const keyframes = geo.points.map((pt) => [pt.progress, pt.multiplier]);
      const index = keyframeAt(geo, pos.x, pos.y, HIT_RADIUS);
      if (index >= 0) return write(removeKeyframe(keyframes, index));
      if (pos.x < geo.frame.left - 4 || pos.x > geo.frame.right + 4) return false;
      if (pos.y < geo.frame.top - 4 || pos.y > geo.frame.bottom + 4) return false;
      const [p, m] = pointToKeyframe(geo.frame, pos.x, pos.y);
      return write(addKeyframe(keyframes, p, m, dragLimit(geo.frame.yMax)));
    },
    contextmenu(pos) {
      const geo = plot.geometry();
      if (!geo.editable) return false;
      const index = keyframeAt(geo, pos.x, pos.y, HIT_RADIUS);
      if (index < 0) return false;
      hover = -1;
      return write(
        removeKeyframe(
          geo.points.map((pt) => [pt.progress, pt.multiplier]),
          index,
        ),
      );
    },
  });

  for (const w of [keyframesWidget, interpolationWidget]) chainCallback(w, () => plot.redraw());

  /** Where to aim pointer events, in CSS pixels of the canvas element (see web/README.md). */
  plot.plotGeometry = () => {
    const geo = plot.geometry();
    if (!geo) return null;
    const { frame } = geo;
    return {
      width: frame.width,
      height: frame.height,
      clientScale: plot.clientScale(),
      plot: { left: frame.left, top: frame.top, right: frame.right, bottom: frame.bottom, yMin: frame.yMin, yMax: frame.yMax },
      points: geo.points.map(({ index, progress, multiplier, x, y }) => ({ index, progress, multiplier, x, y })),
      xOf: (progress) => fractionToX(frame, progress),
      yOf: (multiplier) => valueToY(frame, multiplier),
    };
  };
}

app.registerExtension({
  name: "affordance.schedulePlot",
  nodeCreated(node) {
    if (node.comfyClass !== NODE_TYPE) return;
    setupSchedulePlot(node);
  },
});

// AST_ControlWeights: a bar plot of the per-residual weights, live, under the node's widgets. Drag a bar
// to set its weight (the preset becomes "custom"); click the "13 / 10" label to switch between
// SD1.x/SD2.x and SDXL residual counts for the presets. Text that does not parse is refused and shown.

import { app } from "../../scripts/app.js";
import { dragLimit, fitText, valueToY } from "./lib/plot.js";
import {
  RESIDUALS,
  barAt,
  barGeometry,
  barLabel,
  dragBar,
  parseWeightList,
  residualCount,
  toggleResiduals,
  valueAtY,
  weightsPlotState,
} from "./lib/weights_curve.js";
import { formatNumber, toNumber } from "./lib/parse.js";
import {
  ACCENT,
  ACCENT_ACTIVE,
  addPlotWidget,
  chainCallback,
  drawMessage,
  drawPanel,
  drawUnknownLink,
  drawNote,
  findWidget,
  guardText,
  parseProblem,
  isLinked,
  markChanged,
  runValues,
  setWidgetValue,
  themeColours,
} from "./plot_widget.js";

const NODE_TYPE = "AST_ControlWeights";
const WIDGETS = ["preset", "base_multiplier", "uncond_multiplier", "custom_weights"];
const PROPERTY = "ast_residuals";

/** What the run uses: each widget's own value, or that of the node its link comes from (`unknown`: not known yet). */
function widgetValues(node) {
  return runValues(node, WIDGETS);
}

function caption(widgets, uncond) {
  const { preset } = widgets;
  const head =
    preset === "balanced"
      ? "balanced: every residual x1"
      : preset === "custom"
        ? "custom weights"
        : `soft: ${formatNumber(toNumber(widgets.base_multiplier))}^(n-1-i)`;
  const side = uncond === 0 ? ", positive side only" : uncond === 1 ? "" : `, negative side x${formatNumber(uncond)}`;
  return head + side;
}

function setupWeightsPlot(node) {
  const customWidget = findWidget(node, "custom_weights");
  const presetWidget = findWidget(node, "preset");
  if (!customWidget || !presetWidget) return;

  let rejected = null; // {text, message, kept} of the last refused edit, until the next good change
  let drag = null; // {index, yMax, values} while a bar is held
  let hover = -1;
  let observed = null;
  let toggleRect = null;

  const residuals = () => residualCount(node.properties?.[PROPERTY]);
  // the plot writes preset and custom_weights: a link feeding either would override what it writes
  const linked = () => isLinked(node, "custom_weights") || isLinked(node, "preset");
  const guard = guardText(app, node, customWidget, {
    label: "custom_weights",
    check: parseProblem(parseWeightList),
    onAccept: () => {
      rejected = null;
    },
    onReject: (info) => {
      rejected = info;
      plot.redraw();
    },
  });

  function state() {
    if (customWidget.value !== observed) {
      observed = customWidget.value;
      guard.observe(observed);
    }
    const { values, unknown } = widgetValues(node);
    return { widgets: values, unknown, plot: unknown ? null : weightsPlotState(values, residuals()) };
  }

  function render(ctx, width, height) {
    const colours = themeColours();
    const { widgets, unknown, plot: s } = state();
    if (unknown) {
      // fed by a link whose value exists only when the workflow runs: no bars rather than stale ones
      const geo = barGeometry([], width, height);
      drawUnknownLink(ctx, width, height, geo.frame, colours, "weight per residual", unknown);
      toggleRect = null;
      return { ...geo, toggleRect, editable: false };
    }
    const shown = drag ? drag.values : s.values;
    const geo = barGeometry(shown, width, height, { yMax: drag?.yMax });
    const { frame, bars } = geo;

    drawPanel(ctx, width, height, frame, colours);

    const active = drag ? drag.index : hover;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const labelEvery = geo.slot < 14 ? 2 : 1;
    for (const bar of bars) {
      const top = Math.min(bar.y, bar.base);
      ctx.fillStyle = bar.index === active ? ACCENT_ACTIVE : ACCENT;
      ctx.globalAlpha = s.error ? 0.35 : 0.85;
      ctx.fillRect(bar.left, top, bar.width, Math.max(1, Math.abs(bar.base - bar.y)));
      ctx.globalAlpha = 1;
      ctx.beginPath();
      ctx.arc(bar.x, bar.y, bar.index === active ? 3.5 : 2.5, 0, 2 * Math.PI);
      ctx.fill();
      if (bar.index % labelEvery === 0 || bar.index === bars.length - 1) {
        ctx.fillStyle = colours.muted;
        ctx.fillText(barLabel(bar.index, bars.length), bar.x, frame.bottom + 3);
      }
    }
    if (drag) {
      const bar = bars[drag.index];
      ctx.fillStyle = colours.text;
      ctx.textBaseline = "bottom";
      ctx.fillText(formatNumber(bar.value), bar.x, Math.max(frame.top + 10, bar.y - 5));
    }

    // header: what the bars mean (left) and the residual count (right; a toggle for presets)
    ctx.textBaseline = "middle";
    const isPreset = widgets.preset !== "custom";
    const right = isPreset
      ? `${residuals()} · ${RESIDUALS[residuals()]} ⇄`
      : s.n
        ? `${s.n} weights${s.family ? ` · ${s.family}` : ""}`
        : "";
    ctx.textAlign = "right";
    const tw = ctx.measureText(right).width;
    toggleRect = isPreset ? { x: width - 6 - tw - 3, y: 2, width: tw + 6, height: 16 } : null;
    if (toggleRect) {
      ctx.strokeStyle = colours.outline;
      ctx.strokeRect(toggleRect.x + 0.5, toggleRect.y + 0.5, toggleRect.width, toggleRect.height);
    }
    ctx.fillStyle = isPreset ? colours.text : colours.muted;
    ctx.fillText(right, width - 6, 10);
    // the caption gets what the right-hand label leaves (shortened with "…" on a narrow node)
    ctx.textAlign = "left";
    ctx.fillStyle = colours.text;
    const room = width - 6 - (right ? tw + 12 : 0) - 6;
    ctx.fillText(fitText(caption(widgets, s.uncond), room, (t) => ctx.measureText(t).width), 6, 10);
    if (s.countNote && !s.error) drawNote(ctx, s.countNote, frame.right - 3, frame.top + 3, "right", colours);
    if (linked()) drawNote(ctx, "fed by a link: not editable here", frame.left + 4, frame.top + 3, "left", colours);

    if (s.error) {
      drawMessage(ctx, frame, s.error, colours);
    } else if (rejected) {
      drawMessage(ctx, frame, `Rejected ${JSON.stringify(rejected.text)}: ${rejected.message}`, colours);
    }
    return { ...geo, toggleRect, editable: !s.error && !linked() };
  }

  const inToggle = (pos) =>
    toggleRect &&
    pos.x >= toggleRect.x &&
    pos.x <= toggleRect.x + toggleRect.width &&
    pos.y >= toggleRect.y &&
    pos.y <= toggleRect.y + toggleRect.height;

  function applyDrag(pos) {
    const frame = plot.geometry().frame;
    const value = valueAtY(frame, pos.y);
    const next = dragBar(drag.values, drag.index, value, dragLimit(drag.yMax));
    drag.values = next.values;
    setWidgetValue(app, node, customWidget, next.text);
    setWidgetValue(app, node, presetWidget, "custom");
  }

  const plot = addPlotWidget(app, node, {
    name: "ast_weights_plot",
    className: "ast-weights-plot",
    minHeight: 150,
    key: () => JSON.stringify([customWidget.value, widgetValues(node), residuals(), drag, hover, rejected, linked()]),
    render,
    hover(pos) {
      const geo = plot.geometry();
      if (inToggle(pos)) return "pointer";
      const i = geo.editable ? barAt(geo, pos.x) : -1;
      const inside = pos.y >= geo.frame.top - 6 && pos.y <= geo.frame.bottom + 6;
      const next = inside ? i : -1;
      if (next !== hover) {
        hover = next;
        plot.redraw();
      }
      return next >= 0 ? "ns-resize" : "default";
    },
    leave() {
      if (hover !== -1) {
        hover = -1;
        plot.redraw();
      }
    },
    down(pos) {
      if (inToggle(pos)) {
        const next = toggleResiduals(residuals());
        if (node.setProperty) node.setProperty(PROPERTY, next);
        else (node.properties ??= {})[PROPERTY] = next;
        plot.redraw();
        markChanged(app, node);
        return false;
      }
      const geo = plot.geometry();
      if (!geo.editable || pos.y < geo.frame.top - 6 || pos.y > geo.frame.bottom + 6) return false;
      const index = barAt(geo, pos.x);
      if (index < 0) return false;
      drag = { index, yMax: geo.frame.yMax, values: geo.bars.map((b) => b.value) };
      applyDrag(pos);
      return true;
    },
    move(pos) {
      if (drag) applyDrag(pos);
    },
    up() {
      drag = null;
    },
  });

  for (const name of WIDGETS) {
    const w = findWidget(node, name);
    if (w) chainCallback(w, () => plot.redraw());
  }

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
      bars: geo.bars.map(({ index, value, x, y }) => ({ index, value, x, y })),
      residualToggle: geo.toggleRect ? { ...geo.toggleRect } : null,
      yOf: (value) => valueToY(frame, value),
    };
  };
}

app.registerExtension({
  name: "affordance.weightsPlot",
  nodeCreated(node) {
    if (node.comfyClass !== NODE_TYPE) return;
    setupWeightsPlot(node);
  },
});

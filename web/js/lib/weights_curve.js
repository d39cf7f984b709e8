// Per-residual ControlNet weights for the AST_ControlWeights plot: the same parsing and presets as
// controlnet/weights.py (parse_weight_list, soft_weights, ControlWeights.resolve, make_weights), the text
// written back after a drag, and the bar geometry. Pure: runs under Node.

import { PAD, axisMax, axisMin, dragLimit, makeFrame, valueToY, yToValue } from "./plot.js";
import { clamp, formatNumber, pyFloat, pyFloatRepr, pySplit, pyStrip, quoted, toNumber, toText } from "./parse.js";

export const SOFT_BASE = 0.825;
/** Largest weight magnitude (controlnet/weights.py MAX_WEIGHT: more only overflows half precision). */
export const MAX_WEIGHT = 10;
export const PRESETS = Object.freeze(["balanced", "prompt_more_important", "controlnet_more_important", "custom"]);
/** Residual counts: 12 input blocks + middle for SD1.x/SD2.x, 9 + middle for SDXL. */
export const RESIDUALS = Object.freeze({ 13: "SD1.x/SD2.x", 10: "SDXL" });
export const DEFAULT_RESIDUALS = 13;
export const COUNT_HINT = "13 = SD1.x/SD2.x, 10 = SDXL";

/** A weight list or preset the backend would refuse (Python's WeightsError). */
export class WeightsError extends Error {
  constructor(message) {
    super(message);
    this.name = "WeightsError";
  }
}

/** ``base ** (n - 1 - i)`` for residual ``i``: the middle block (last) gets 1. */
export function softWeights(n, base = SOFT_BASE) {
  return Array.from({ length: n }, (_, i) => base ** (n - 1 - i));
}

/**
 * Parse ``"1, 0.9, 0.8"`` into numbers; commas, semicolons, newlines or whitespace separate values.
 * @throws {WeightsError} a value that is not a finite number, or an empty list.
 */
export function parseWeightList(text) {
  const parts = toText(text).replaceAll(";", ",").replaceAll("\n", " ").split(","); // a line end separates like a space
  while (parts.length && !pyStrip(parts[parts.length - 1])) parts.pop(); // a trailing comma is harmless
  const gap = parts.findIndex((p) => !pyStrip(p));
  if (parts.length > 1 && gap >= 0) {
    throw new WeightsError(
      `custom weights: field #${gap + 1} between commas is empty (two commas in a row?); every later weight ` +
        "would move to another residual. Write one number between each pair of commas.",
    );
  }
  const items = parts.flatMap(pySplit);
  const values = items.map((tok, i) => {
    const v = pyFloat(tok);
    if (v === null) {
      throw new WeightsError(`custom weight #${i + 1} is ${quoted(tok)}, not a number. Write numbers separated by commas.`);
    }
    if (!Number.isFinite(v) || Math.abs(v) > MAX_WEIGHT) {
      throw new WeightsError(
        `custom weight #${i + 1} is ${quoted(tok)}; weights must be finite numbers from -${MAX_WEIGHT} to ${MAX_WEIGHT}.`,
      );
    }
    return v;
  });
  if (!values.length) {
    throw new WeightsError("custom weights are empty: give one number per residual, separated by commas.");
  }
  return values;
}

/**
 * The weighting the node builds from its widget values (Python's make_weights, checked in the same order).
 * @returns {{preset: string, baseMultiplier: number, custom: number[], uncondMultiplier: number}}
 * @throws {WeightsError} an unknown preset, a multiplier outside 0..1, custom weights that do not parse.
 */
export function makeWeights(preset, baseMultiplier, uncondMultiplier, customWeights) {
  if (!PRESETS.includes(preset)) {
    throw new WeightsError(`preset must be one of ['${PRESETS.join("', '")}'], got ${quoted(preset)}.`);
  }
  const multipliers = {};
  for (const [name, v] of [["base_multiplier", baseMultiplier], ["uncond_multiplier", uncondMultiplier]]) {
    const x = typeof v === "number" || typeof v === "boolean" ? Number(v) : pyFloat(toText(v));
    if (x === null) throw new WeightsError(`${name} must be a number within 0..1, got ${quoted(v)}.`);
    if (!(x >= 0 && x <= 1)) throw new WeightsError(`${name} must be within 0..1, got ${pyFloatRepr(x)}.`); // also NaN
    multipliers[name] = x;
  }
  const custom = preset === "custom" ? parseWeightList(customWeights) : [];
  return {
    preset,
    baseMultiplier: multipliers.base_multiplier,
    custom,
    uncondMultiplier: multipliers.uncond_multiplier,
  };
}

/** Multiplier of control on the negative side: 0 for "ControlNet is more important". */
export function effectiveUncondMultiplier(weights) {
  return weights.preset === "controlnet_more_important" ? 0 : weights.uncondMultiplier;
}

/**
 * One multiplier per residual for a ControlNet with ``n`` residuals (Python's ControlWeights.resolve).
 * @throws {WeightsError} custom weights whose count is not ``n``.
 */
export function resolveWeights(weights, n, family = "this ControlNet") {
  if (weights.preset === "balanced") return Array(n).fill(1);
  if (weights.preset === "prompt_more_important" || weights.preset === "controlnet_more_important") {
    return softWeights(n, weights.baseMultiplier);
  }
  if (weights.custom.length !== n) {
    throw new WeightsError(
      `got ${weights.custom.length} custom weights but ${family} has ${n} residuals ` +
        `(${n - 1} input blocks and the middle block, middle last). SD1.x/SD2.x ControlNets take 13 ` +
        "weights, SDXL ControlNets 10.",
    );
  }
  return weights.custom.slice();
}

/** The residual count the preset bars use: ``node.properties.ast_residuals`` if 13 or 10, else 13. */
export function residualCount(property) {
  const n = toNumber(property);
  return n in RESIDUALS ? n : DEFAULT_RESIDUALS;
}

/** The other residual count (the label on the plot toggles 13 <-> 10). */
export function toggleResiduals(n) {
  return residualCount(n) === 13 ? 10 : 13;
}

/**
 * What the plot shows for the node's widget values.
 *
 * Presets are drawn for ``residuals`` bars (13 or 10, the user's toggle); custom weights for as many bars
 * as they hold. Returns ``{values, n, family, uncond, error, countNote}``: ``error`` is the backend's
 * message when the values would be refused (then ``values`` is empty), ``countNote`` is set for a custom
 * count that is neither 13 nor 10.
 */
export function weightsPlotState(widgets, residuals = DEFAULT_RESIDUALS) {
  const n0 = residualCount(residuals);
  let weights;
  try {
    weights = makeWeights(widgets.preset, widgets.base_multiplier, widgets.uncond_multiplier, widgets.custom_weights);
  } catch (err) {
    if (!(err instanceof WeightsError)) throw err;
    return { values: [], n: 0, family: "", uncond: 1, error: err.message, countNote: "" };
  }
  const n = weights.preset === "custom" ? weights.custom.length : n0;
  return {
    values: resolveWeights(weights, n),
    n,
    family: RESIDUALS[n] ?? "",
    uncond: effectiveUncondMultiplier(weights),
    error: "",
    countNote: n in RESIDUALS ? "" : COUNT_HINT,
  };
}

/** Text for ``custom_weights``: each value rounded to 3 decimals, trailing zeros trimmed, comma separated. */
export function formatWeightList(values) {
  return values.map((v) => formatNumber(v)).join(", ");
}

/**
 * Custom-weights text after bar ``index`` is dragged to ``value`` (limited to ``[0, max]``).
 * @returns {{text: string, values: number[]}} the text and the values it parses to.
 */
export function dragBar(values, index, value, max = Infinity) {
  if (!Number.isInteger(index) || index < 0 || index >= values.length) {
    throw new RangeError(`bar index ${index} is outside 0..${values.length - 1}`);
  }
  const next = values.slice();
  next[index] = clamp(Number.isFinite(value) ? value : 0, 0, Math.min(max, MAX_WEIGHT));
  const text = formatWeightList(next);
  return { text, values: parseWeightList(text) };
}

/**
 * Bar layout on a ``width`` x ``height`` canvas (CSS pixels).
 *
 * Returns ``{frame, bars}``; ``bars[i]`` is ``{index, value, x, y, left, width, base}``: ``(x, y)`` is the
 * centre of the bar's end (its top for a value >= 0), the point a drag grabs; ``base`` is the pixel row of 0.
 * ``yMax`` may be given to freeze the axis (during a drag).
 */
export function barGeometry(values, width, height, { yMax, pad = PAD } = {}) {
  const frame = makeFrame(width, height, axisMin(values), yMax ?? axisMax(values), pad);
  const n = Math.max(values.length, 1);
  const slot = (frame.right - frame.left) / n;
  const barWidth = Math.max(1, slot * 0.7);
  const base = valueToY(frame, 0);
  const bars = values.map((value, index) => {
    const x = frame.left + slot * (index + 0.5);
    return { index, value, x, y: valueToY(frame, value), left: x - barWidth / 2, width: barWidth, base };
  });
  return { frame, bars, slot };
}

/** Index of the bar whose column holds pixel column ``x`` (nearest bar when just outside), or -1. */
export function barAt(geometry, x) {
  const { frame, bars, slot } = geometry;
  if (!bars.length || x < frame.left - slot / 2 || x > frame.right + slot / 2) return -1;
  return clamp(Math.floor((x - frame.left) / slot), 0, bars.length - 1);
}

/** The value a pointer at pixel row ``y`` sets, limited to ``[0, dragLimit(frame.yMax)]``. */
export function valueAtY(frame, y) {
  return clamp(yToValue(frame, y), 0, dragLimit(frame.yMax));
}

/** Short label of residual ``i`` of ``n``: input blocks "0".."n-2", the middle block "M". */
export function barLabel(i, n) {
  return i === n - 1 ? "M" : String(i);
}

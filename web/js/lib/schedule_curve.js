// Strength over sampling progress for the AST_StrengthSchedule plot: the same keyframe parsing and
// interpolation as controlnet/schedule.py (parse_keyframes, StrengthSchedule.parse/.at), the keyframe
// edits a drag, a double-click or a right-click make, and the plot geometry. Pure: runs under Node.

import { PAD, axisMax, fractionToX, makeFrame, nearestPoint, valueToY, xToFraction, yToValue } from "./plot.js";
import { clamp, clip, formatNumber, pyFloat, pyFloatRepr, pyStrip, quoted, roundTo, toText } from "./parse.js";

export const INTERPOLATIONS = Object.freeze(["linear", "step"]);
/** Keyframes written by the editor sit on this progress grid (3 decimals). */
export const GRID = 1000;
/** Largest keyframe multiplier (controlnet/schedule.py MAX_MULTIPLIER: more only overflows half precision). */
export const MAX_MULTIPLIER = 10;

/** A keyframe text or interpolation the backend would refuse (Python's ScheduleError). */
export class ScheduleError extends Error {
  constructor(message) {
    super(message);
    this.name = "ScheduleError";
  }
}

/**
 * Parse ``"0.0:1.0, 0.6:1.0, 1.0:0.2"`` into ``[progress, multiplier]`` pairs sorted by progress.
 * @throws {ScheduleError} a malformed pair, progress outside [0, 1], a repeated progress, a negative or
 *   non-finite multiplier, or no keyframe at all.
 */
export function parseKeyframes(text) {
  const pairs = [];
  const chunks = toText(text).replaceAll(";", ",").replaceAll("\n", ",").split(",").map(pyStrip);
  chunks.forEach((chunk, i) => {
    if (!chunk) return;
    const where = `keyframe #${i + 1} ${quoted(chunk)}`;
    if (chunk.split(":").length !== 2) {
      throw new ScheduleError(`${where} should be 'progress:multiplier', e.g. '0.5:0.8'.`);
    }
    const [a, b] = chunk.split(":").map(pyStrip);
    const p = pyFloat(a);
    const m = pyFloat(b);
    if (p === null || m === null) {
      throw new ScheduleError(`${where} holds something that is not a number; write two numbers, e.g. '0.5:0.8'.`);
    }
    if (!(Number.isFinite(p) && p >= 0 && p <= 1)) {
      throw new ScheduleError(`${where}: progress must be between 0 and 1, got ${clip(a)}.`);
    }
    if (!Number.isFinite(m) || !(m >= 0 && m <= MAX_MULTIPLIER)) {
      throw new ScheduleError(`${where}: the multiplier must be a number from 0 to ${MAX_MULTIPLIER}, got ${clip(b)}.`);
    }
    pairs.push([p, m]);
  });
  if (!pairs.length) {
    throw new ScheduleError("no keyframes: write at least one 'progress:multiplier' pair, e.g. '0.0:1.0'.");
  }
  pairs.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  for (let i = 1; i < pairs.length; i++) {
    if (pairs[i - 1][0] === pairs[i][0]) {
      throw new ScheduleError(`progress ${pyFloatRepr(pairs[i - 1][0])} appears twice; give each keyframe its own progress.`);
    }
  }
  return pairs;
}

/**
 * Keyframes and interpolation as the node builds them (Python's StrengthSchedule.parse).
 * @returns {{keyframes: number[][], interpolation: string}}
 * @throws {ScheduleError}
 */
export function parseSchedule(text, interpolation = "linear") {
  if (!INTERPOLATIONS.includes(interpolation)) {
    throw new ScheduleError(`interpolation must be 'linear' or 'step', got ${quoted(interpolation)}.`);
  }
  return { keyframes: parseKeyframes(text), interpolation };
}

// Python's bisect.bisect_right on the progress column.
function bisectRight(keyframes, x) {
  let lo = 0;
  let hi = keyframes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x < keyframes[mid][0]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * The multiplier at ``progress`` (Python's StrengthSchedule.at): the first value holds before the first
 * keyframe, the last after the last; in between a straight line ("linear") or the earlier value ("step").
 */
export function scheduleAt(keyframes, interpolation, progress) {
  const i = bisectRight(keyframes, progress);
  if (i === 0) return keyframes[0][1];
  if (i === keyframes.length) return keyframes[keyframes.length - 1][1];
  const [p0, m0] = keyframes[i - 1];
  const [p1, m1] = keyframes[i];
  if (interpolation === "step") return m0;
  return m0 + ((m1 - m0) * (progress - p0)) / (p1 - p0);
}

/**
 * Corners of the curve from progress 0 to 1 as ``[progress, multiplier]`` pairs, for a polyline: the
 * keyframes, flat ends, and for "step" the vertical jumps (two corners at each keyframe's progress).
 */
export function curveVertices(keyframes, interpolation) {
  const out = [[0, keyframes[0][1]]];
  keyframes.forEach(([p, m], i) => {
    if (interpolation === "step" && i > 0) out.push([p, keyframes[i - 1][1]]);
    out.push([p, m]);
  });
  out.push([1, keyframes[keyframes.length - 1][1]]);
  return out;
}

/**
 * Keyframe text: ``progress:multiplier`` pairs, 3 decimals, trailing zeros trimmed ("0:1, 0.6:1, 1:0.2").
 * Where rounding would merge two progresses, progresses keep all their digits so the text stays valid.
 */
export function formatKeyframes(keyframes) {
  const rounded = keyframes.map(([p]) => formatNumber(p));
  const progress = new Set(rounded).size === rounded.length ? rounded : keyframes.map(([p]) => String(p));
  return keyframes.map(([, m], i) => `${progress[i]}:${formatNumber(m)}`).join(", ");
}

function gridAbove(p) {
  const k = Math.round(p * GRID);
  return k / GRID > p ? k / GRID : (k + 1) / GRID;
}

function gridBelow(p) {
  const k = Math.round(p * GRID);
  return k / GRID < p ? k / GRID : (k - 1) / GRID;
}

function result(keyframes, index, changed) {
  const text = formatKeyframes(keyframes);
  return { text, keyframes: parseKeyframes(text), index, changed };
}

/**
 * Move keyframe ``index`` towards ``(progress, multiplier)``.
 *
 * The keyframe stays between its neighbours (never on their progress), within [0, 1], on the 3-decimal
 * grid; the multiplier is limited to ``[0, max]``. Returns ``{text, keyframes, index, changed}`` where
 * ``keyframes`` is what ``text`` parses to and ``index`` is the moved keyframe's (unchanged) position.
 */
export function moveKeyframe(keyframes, index, progress, multiplier, max = Infinity) {
  if (!Number.isInteger(index) || index < 0 || index >= keyframes.length) {
    throw new RangeError(`keyframe index ${index} is outside 0..${keyframes.length - 1}`);
  }
  const prev = keyframes[index - 1];
  const next = keyframes[index + 1];
  const lo = prev ? gridAbove(prev[0]) : 0;
  const hi = next ? gridBelow(next[0]) : 1;
  const old = keyframes[index][0];
  const p = lo <= hi ? clamp(roundTo(Number.isFinite(progress) ? progress : old), lo, hi) : old;
  const m = clamp(roundTo(Number.isFinite(multiplier) ? multiplier : 0), 0, Math.min(max, MAX_MULTIPLIER));
  const moved = keyframes.map((k, i) => (i === index ? [p, m] : k.slice()));
  const changed = p !== old || m !== keyframes[index][1];
  return result(moved, index, changed);
}

/**
 * Add a keyframe at ``(progress, multiplier)`` (rounded to 3 decimals, progress within [0, 1], multiplier
 * within ``[0, max]``). Nothing is added where a keyframe already has that progress (``changed`` false).
 */
export function addKeyframe(keyframes, progress, multiplier, max = Infinity) {
  const p = clamp(roundTo(Number.isFinite(progress) ? progress : 0), 0, 1);
  const m = clamp(roundTo(Number.isFinite(multiplier) ? multiplier : 0), 0, Math.min(max, MAX_MULTIPLIER));
  if (keyframes.some(([q]) => q === p || roundTo(q) === p)) return result(keyframes, -1, false);
  const index = bisectRight(keyframes, p);
  const added = [...keyframes.slice(0, index), [p, m], ...keyframes.slice(index)];
  return result(added, index, true);
}

/** Remove keyframe ``index``; the last remaining keyframe is never removed (``changed`` false). */
export function removeKeyframe(keyframes, index) {
  if (keyframes.length <= 1 || !Number.isInteger(index) || index < 0 || index >= keyframes.length) {
    return result(keyframes, -1, false);
  }
  return result(
    keyframes.filter((_, i) => i !== index),
    -1,
    true,
  );
}

/**
 * Layout on a ``width`` x ``height`` canvas (CSS pixels): progress 0..1 across, multiplier up.
 *
 * Returns ``{frame, points}``; ``points[i]`` is ``{index, progress, multiplier, x, y}``, the centre of
 * keyframe ``i``'s handle. ``yMax`` may be given to freeze the axis (during a drag).
 */
export function scheduleGeometry(keyframes, width, height, { yMax, pad = PAD } = {}) {
  const frame = makeFrame(width, height, 0, yMax ?? axisMax(keyframes.map(([, m]) => m)), pad);
  const points = keyframes.map(([progress, multiplier], index) => ({
    index,
    progress,
    multiplier,
    x: fractionToX(frame, progress),
    y: valueToY(frame, multiplier),
  }));
  return { frame, points };
}

/** Index of the keyframe handle within ``radius`` pixels of ``(x, y)``, or -1. */
export function keyframeAt(geometry, x, y, radius = 8) {
  return nearestPoint(geometry.points, x, y, radius);
}

/** ``[progress, multiplier]`` under pixel ``(x, y)``: progress within [0, 1], multiplier not clamped. */
export function pointToKeyframe(frame, x, y) {
  return [clamp(xToFraction(frame, x), 0, 1), yToValue(frame, y)];
}

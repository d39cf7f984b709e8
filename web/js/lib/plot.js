// Plot geometry shared by the weights and schedule plots: value <-> pixel mapping in CSS pixels of the
// canvas element. Pure: no DOM, no ComfyUI; runs under Node.

import { toText } from "./parse.js";

/** Default padding around the plot area (room for the header line and the axis labels). */
export const PAD = Object.freeze({ left: 30, right: 10, top: 20, bottom: 16 });

/** Top of the value axis: ``max(1, largest value rounded up to a multiple of 0.5)``. */
export function axisMax(values) {
  const finite = values.filter(Number.isFinite);
  const top = finite.length ? Math.max(...finite) : 0;
  return Math.max(1, Math.ceil(top / 0.5) * 0.5);
}

/**
 * The highest value a drag may reach while the axis tops at ``yMax`` (the axis stays fixed during a drag;
 * release and it grows, so the next drag can go higher).
 */
export function dragLimit(yMax) {
  return yMax + 0.5;
}

/** Bottom of the value axis: 0, or the smallest value rounded down to a multiple of 0.5 when negative. */
export function axisMin(values) {
  const finite = values.filter(Number.isFinite);
  const low = finite.length ? Math.min(...finite) : 0;
  return Math.min(0, Math.floor(low / 0.5) * 0.5);
}

/**
 * The plot area of a ``width`` x ``height`` canvas and its value range.
 *
 * Returns ``{width, height, left, top, right, bottom, yMin, yMax}``; ``left..right`` and ``top..bottom``
 * bound the area where values are drawn (``top`` shows ``yMax``, ``bottom`` shows ``yMin``).
 */
export function makeFrame(width, height, yMin, yMax, pad = PAD) {
  const left = Math.min(pad.left, width / 2);
  const right = Math.max(left + 1, width - pad.right);
  const top = Math.min(pad.top, height / 2);
  const bottom = Math.max(top + 1, height - pad.bottom);
  return { width, height, left, top, right, bottom, yMin, yMax: yMax > yMin ? yMax : yMin + 1 };
}

/** Pixel row of ``value``. */
export function valueToY(frame, value) {
  const { top, bottom, yMin, yMax } = frame;
  return bottom - ((value - yMin) / (yMax - yMin)) * (bottom - top);
}

/** Value at pixel row ``y`` (the inverse of :func:`valueToY`, not clamped). */
export function yToValue(frame, y) {
  const { top, bottom, yMin, yMax } = frame;
  return yMin + ((bottom - y) / (bottom - top)) * (yMax - yMin);
}

/** Pixel column of a fraction ``t`` in ``[0, 1]`` across the plot area (sampling progress). */
export function fractionToX(frame, t) {
  return frame.left + t * (frame.right - frame.left);
}

/** Fraction across the plot area at pixel column ``x`` (not clamped). */
export function xToFraction(frame, x) {
  return (x - frame.left) / (frame.right - frame.left);
}

/** Tick values for the value axis: steps of 0.5 up to 2, then 1, then wider, always including 0. */
export function yTicks(yMin, yMax) {
  const span = yMax - yMin;
  const step = span <= 2 ? 0.5 : span <= 5 ? 1 : Math.ceil(span / 5);
  const ticks = [];
  for (let v = Math.ceil(yMin / step) * step; v <= yMax + 1e-9; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  return ticks;
}

/** Split ``text`` into lines no wider than ``maxWidth`` as measured by ``measure(str) -> px``. */
export function wrapText(text, maxWidth, measure) {
  const lines = [];
  for (const paragraph of toText(text).split("\n")) {
    let line = "";
    for (const word of paragraph.split(" ")) {
      const candidate = line ? `${line} ${word}` : word;
      if (line && measure(candidate) > maxWidth) {
        lines.push(line);
        line = word;
      } else {
        line = candidate;
      }
    }
    lines.push(line);
  }
  return lines;
}

/**
 * ``text`` as it fits in ``maxWidth`` pixels (``measure(str) -> px``): whole, or cut at a character with "…"
 * appended, or "" when not even "…" fits.
 */
export function fitText(text, maxWidth, measure) {
  text = toText(text);
  if (measure(text) <= maxWidth) return text;
  let lo = 0;
  let hi = text.length - 1; // the longest prefix that fits with "…" is text.slice(0, lo)
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (measure(`${text.slice(0, mid).trimEnd()}…`) <= maxWidth) lo = mid;
    else hi = mid - 1;
  }
  const cut = `${text.slice(0, lo).trimEnd()}…`;
  return measure(cut) <= maxWidth ? cut : "";
}

/** Index of the point nearest to ``(x, y)`` within ``radius`` pixels, or -1. */
export function nearestPoint(points, x, y, radius) {
  let best = -1;
  let bestD = radius * radius;
  points.forEach((pt, i) => {
    const d = (pt.x - x) ** 2 + (pt.y - y) ** 2;
    if (d <= bestD) {
      best = i;
      bestD = d;
    }
  });
  return best;
}

/** `hsl()` components (hue in degrees, saturation and lightness in %) -> `[r, g, b]` in 0..255. */
function hslToRgb(h, sat, light) {
  const s = sat / 100;
  const l = light / 100;
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  return [0, 8, 4].map((n) => 255 * (l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1))));
}

/**
 * Relative luminance (WCAG 2) of a CSS colour written `#rgb`, `#rrggbb` (alpha digits ignored), `rgb()`/
 * `rgba()` or `hsl()`/`hsla()` (how the editor hands a node its palette-adjusted colour while drawing it),
 * in [0, 1]; null for anything else (a named colour, a CSS variable).
 */
export function luminance(css) {
  const s = toText(css ?? "").trim().toLowerCase();
  let rgb = null;
  let m = /^#([0-9a-f]{3,4})$/.exec(s);
  if (m) rgb = [...m[1].slice(0, 3)].map((c) => parseInt(c + c, 16));
  else if ((m = /^#([0-9a-f]{6})(?:[0-9a-f]{2})?$/.exec(s))) rgb = [0, 2, 4].map((i) => parseInt(m[1].slice(i, i + 2), 16));
  else if ((m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/.exec(s))) rgb = m.slice(1, 4).map(Number);
  else if ((m = /^hsla?\(\s*([\d.]+)(?:deg)?[\s,]+([\d.]+)%[\s,]+([\d.]+)%/.exec(s))) {
    rgb = hslToRgb(...m.slice(1, 4).map(Number));
  }
  if (!rgb || rgb.some((v) => !Number.isFinite(v))) return null;
  const lin = rgb.map((v) => {
    const c = Math.min(255, Math.max(0, v)) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

/** Contrast ratio (WCAG 2, 1 to 21) between two CSS colours `luminance` reads, or null. */
export function contrast(a, b) {
  const la = luminance(a);
  const lb = luminance(b);
  if (la === null || lb === null) return null;
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/** Red for error text and amber for an active tool, readable on background `bg` (dark or light palette). */
export function signalColours(bg) {
  const light = (luminance(bg) ?? 0) > 0.4;
  return light ? { error: "#a01010", active: "#8a4b00" } : { error: "#ff8080", active: "#e8a33c" };
}

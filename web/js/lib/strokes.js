// Pure logic of the scribble canvas (no DOM, no ComfyUI): rasterising strokes, the drawing's content
// name, the compact stroke record kept in the workflow, and checks of sizes and references.
//
// A drawing is a binary raster: `{ width, height, data }` with `data` a Uint8Array of width*height bytes,
// 255 where there is ink and 0 elsewhere, row-major from the top-left. Coordinates are drawing pixels:
// x in [0, width), y in [0, height); the centre of pixel (i, j) is (i + 0.5, j + 0.5).
//
// A drawing is rendered from an optional base raster (an image loaded from a file) and an ordered list
// of operations: strokes `{ t: "s", r: size, e: 0|1, p: [x0, y0, x1, y1, ...] }` (e = 1 erases) and
// clears `{ t: "c" }`. Undo removes the last operation, so clear is undoable too.

/** Largest width or height of a drawing, in pixels (the backend refuses larger files too). */
export const MAX_SIDE = 4096;
/** Smallest width or height, in pixels. */
export const MIN_SIDE = 8;
/** Most points a drawing keeps in the workflow (about 2 MB of JSON); further strokes are refused. */
export const MAX_POINTS = 250000;
/** Brush sizes (diameter in drawing pixels). */
export const MIN_BRUSH = 1;
export const MAX_BRUSH = 256;
/** ComfyUI input subfolder the drawings are uploaded to. */
export const SUBFOLDER = "affordance_scribbles";
/** Version of the record kept in node.properties. */
export const RECORD_VERSION = 1;

/** A typed error whose message says what was wrong, what was received and how to fix it. */
export class ScribbleError extends Error {
  constructor(message) {
    super(message);
    this.name = "ScribbleError";
  }
}

/**
 * Check a drawing size.
 * @returns {string|null} why the size cannot be used, or null when it can.
 */
export function sizeProblem(width, height) {
  for (const [name, v] of [["width", width], ["height", height]]) {
    if (!Number.isInteger(v)) return `the drawing ${name} must be a whole number of pixels, got ${v}.`;
    if (v > MAX_SIDE) {
      return `the drawing is larger than the maximum of ${MAX_SIDE}x${MAX_SIDE} pixels: ${name} is ${v}. Lower the ${name}.`;
    }
    if (v < MIN_SIDE) return `the drawing ${name} must be at least ${MIN_SIDE} pixels, got ${v}.`;
  }
  return null;
}

/** A blank (all black) raster. Throws ScribbleError for a size outside [MIN_SIDE, MAX_SIDE]. */
export function createRaster(width, height) {
  const problem = sizeProblem(width, height);
  if (problem) throw new ScribbleError(problem);
  return { width, height, data: new Uint8Array(width * height) };
}

/** Brush radius in pixels for a brush `size` (diameter); never under 1/sqrt(2), so thin lines have no gaps. */
export function brushRadius(size) {
  return Math.max(size / 2, Math.SQRT1_2);
}

/**
 * The x range of the points of the row at height `cy` within `radius` of the segment (x0, y0)-(x1, y1): the
 * two end discs and the band between them. The shape is convex, so its row is one interval; null where the
 * row misses it. (Computed in floating point: callers keep a margin on both sides.)
 */
function rowSpan(x0, y0, x1, y1, radius, cy) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const [x, y] of [[x0, y0], [x1, y1]]) {
    const h = radius * radius - (cy - y) * (cy - y);
    if (h >= 0) {
      const s = Math.sqrt(h);
      lo = Math.min(lo, x - s);
      hi = Math.max(hi, x + s);
    }
  }
  const dx = x1 - x0;
  const dy = y1 - y0;
  const len = Math.hypot(dx, dy);
  if (len > 0) {
    // the band: distance to the line within radius, and the foot of the perpendicular within the segment
    let a = -Infinity;
    let b = Infinity;
    const c = dx * (cy - y0);
    if (dy !== 0) {
      const u = x0 + (c - radius * len) / dy;
      const v = x0 + (c + radius * len) / dy;
      a = Math.max(a, Math.min(u, v));
      b = Math.min(b, Math.max(u, v));
    } else if (Math.abs(c) > radius * len) {
      b = a;
    }
    if (dx !== 0) {
      const u = x0 - ((cy - y0) * dy) / dx;
      const v = x0 + (len * len - (cy - y0) * dy) / dx;
      a = Math.max(a, Math.min(u, v));
      b = Math.min(b, Math.max(u, v));
    } else {
      const t = ((cy - y0) * dy) / (len * len);
      if (t < 0 || t > 1) b = a;
    }
    if (a < b) {
      lo = Math.min(lo, a);
      hi = Math.max(hi, b);
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

/** Pixels deeper than this inside a stroke's outline are filled without the per-pixel test (which floating-point
 * error could only flip within about 1e-7 px of the outline). */
const INNER_MARGIN = 0.01;

/**
 * Paint every pixel whose centre lies within `radius` of the segment (x0, y0)-(x1, y1) with `value`.
 * Each row tests only the pixels near the outline, within a pixel of the shape's span there (not the
 * segment's whole bounding box, which for a long diagonal stroke is thousands of times larger); the pixels
 * more than INNER_MARGIN inside it are filled as one run (a 256 px brush tests ~4 pixels a row, not ~256).
 * @returns {number[]|null} the changed area [left, top, right, bottom) clipped to the raster, or null if empty.
 */
export function stampSegment(raster, x0, y0, x1, y1, radius, value) {
  const { width, height, data } = raster;
  const left = Math.max(0, Math.floor(Math.min(x0, x1) - radius - 0.5));
  const top = Math.max(0, Math.floor(Math.min(y0, y1) - radius - 0.5));
  const right = Math.min(width, Math.ceil(Math.max(x0, x1) + radius + 0.5));
  const bottom = Math.min(height, Math.ceil(Math.max(y0, y1) + radius + 0.5));
  if (left >= right || top >= bottom) return null;
  const dx = x1 - x0;
  const dy = y1 - y0;
  const len2 = dx * dx + dy * dy;
  const r2 = radius * radius;
  const paint = (row, i, cy) => {
    const cx = i + 0.5;
    let t = len2 > 0 ? ((cx - x0) * dx + (cy - y0) * dy) / len2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    const ex = x0 + t * dx - cx;
    const ey = y0 + t * dy - cy;
    if (ex * ex + ey * ey <= r2) data[row + i] = value;
  };
  for (let j = top; j < bottom; j++) {
    const cy = j + 0.5;
    const row = j * width;
    const span = rowSpan(x0, y0, x1, y1, radius, cy);
    if (!span) continue;
    const from = Math.max(left, Math.floor(span[0] - 1.5));
    const to = Math.min(right, Math.ceil(span[1] + 1.5));
    // [fillFrom, fillTo): pixels whose centre is inside the outline by more than INNER_MARGIN
    const inner = radius >= 3 ? rowSpan(x0, y0, x1, y1, radius - INNER_MARGIN, cy) : null; // thin: all tested
    let fillFrom = to;
    let fillTo = to;
    if (inner) {
      fillFrom = Math.max(from, Math.ceil(inner[0] - 0.5 + 1e-6));
      fillTo = Math.min(to, Math.floor(inner[1] - 0.5 - 1e-6) + 1);
      if (fillFrom >= fillTo) fillFrom = fillTo = to;
    }
    if (fillFrom < fillTo) data.fill(value, row + fillFrom, row + fillTo);
    for (let i = from; i < fillFrom; i++) paint(row, i, cy); // the outline's two edges, each pixel tested
    for (let i = fillTo; i < to; i++) paint(row, i, cy);
  }
  return [left, top, right, bottom];
}

/** Union of two changed areas (either may be null). */
export function unionRect(a, b) {
  if (!a) return b;
  if (!b) return a;
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}

/**
 * Paint the segments of a stroke from point index `from` (0 = the whole stroke, a single point is a dot).
 * @returns {number[]|null} the changed area.
 */
export function stampStroke(raster, op, from = 0) {
  const p = op.p;
  const radius = brushRadius(op.r);
  const value = op.e ? 0 : 255;
  const n = p.length / 2;
  if (n === 1 || (from === 0 && n > 0)) {
    // the first point alone (a dot; also the round cap where a stroke starts)
    let rect = stampSegment(raster, p[0], p[1], p[0], p[1], radius, value);
    for (let k = 1; k < n; k++) {
      rect = unionRect(rect, stampSegment(raster, p[2 * k - 2], p[2 * k - 1], p[2 * k], p[2 * k + 1], radius, value));
    }
    return rect;
  }
  let rect = null;
  for (let k = Math.max(1, from); k < n; k++) {
    rect = unionRect(rect, stampSegment(raster, p[2 * k - 2], p[2 * k - 1], p[2 * k], p[2 * k + 1], radius, value));
  }
  return rect;
}

/** Apply one operation to a raster in place; returns the changed area. */
export function applyOp(raster, op) {
  if (op.t === "c") {
    raster.data.fill(0);
    return [0, 0, raster.width, raster.height];
  }
  return stampStroke(raster, op, 0);
}

/**
 * Copy `base` into a new width x height raster at the top-left (cropped or padded with black).
 * @param {{width:number,height:number,data:Uint8Array}|null} base
 */
export function placeBase(width, height, base) {
  const out = createRaster(width, height);
  if (!base) return out;
  const w = Math.min(width, base.width);
  const h = Math.min(height, base.height);
  for (let j = 0; j < h; j++) out.data.set(base.data.subarray(j * base.width, j * base.width + w), j * width);
  return out;
}

/** Render a drawing: the base (top-left, cropped) then every operation in order. A clear wipes the base and
 * everything before it, so only what follows the last clear is drawn. */
export function render(width, height, ops, base = null) {
  let last = -1;
  for (let k = ops.length - 1; k >= 0; k--) {
    if (ops[k].t === "c") {
      last = k;
      break;
    }
  }
  const raster = placeBase(width, height, last >= 0 ? null : base);
  for (let k = last + 1; k < ops.length; k++) applyOp(raster, ops[k]);
  return raster;
}

/** Number of points in a list of operations. */
export function countPoints(ops) {
  let n = 0;
  for (const op of ops) if (op.t === "s") n += op.p.length / 2;
  return n;
}

// 64-bit FNV-1a as two 32-bit lanes (different offsets), over the size and the pixels.
function fnvStep(h, byte) {
  return Math.imul(h ^ byte, 0x01000193) >>> 0;
}

/** A 16-hex-digit content hash of a raster (its size included). */
export function hashRaster(raster) {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  const head = [raster.width & 255, raster.width >> 8, raster.height & 255, raster.height >> 8];
  for (const byte of head) {
    a = fnvStep(a, byte);
    b = fnvStep(b, byte ^ 0x5a);
  }
  const d = raster.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i] ? 1 : 0;
    a = fnvStep(a, v);
    b = fnvStep(b, v ^ (i & 255));
  }
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}

/** File name of a drawing: its size and content hash (so identical drawings share one file). */
export function fileNameFor(raster) {
  return `scribble_${raster.width}x${raster.height}_${hashRaster(raster)}.png`;
}

/** The widget value (ComfyUI input path) of a drawing file: `affordance_scribbles/<name>`. */
export function referenceFor(raster) {
  return `${SUBFOLDER}/${fileNameFor(raster)}`;
}

const SAFE_PART = /^[A-Za-z0-9][A-Za-z0-9 ._-]*$/;

/**
 * Split a widget value into ComfyUI's `{ subfolder, filename }` (for /view and /upload/image).
 * Empty means "no drawing yet" and returns null.
 * @throws {ScribbleError} a value that is not a relative path of safe names (no "..", no absolute path).
 */
export function parseReference(value) {
  if (value === "" || value === null || value === undefined) return null;
  if (typeof value !== "string") throw new ScribbleError(`the drawing reference must be text, got ${typeof value}.`);
  const parts = value.split("/");
  if (parts.some((s) => !SAFE_PART.test(s) || s === "." || s === "..")) {
    throw new ScribbleError(
      `the drawing reference ${JSON.stringify(value)} is not a path the canvas reads: only a relative path of names ` +
        "made of ASCII letters, digits, spaces, '.', '_' and '-' (starting with a letter or digit), such as " +
        "'affordance_scribbles/scribble_512x512_0123456789abcdef.png'. Rename the file, or clear the canvas to start over.",
    );
  }
  return { subfolder: parts.slice(0, -1).join("/"), filename: parts[parts.length - 1] };
}

/** Round a coordinate to 0.1 px (what the workflow keeps). */
export function quantize(v) {
  return Math.round(v * 10) / 10;
}

/**
 * The record kept in node.properties: `{ v, base, ops }` (ops with coordinates at 0.1 px).
 */
export function encodeRecord(base, ops) {
  return {
    v: RECORD_VERSION,
    base: base ?? null,
    ops: ops.map((op) => (op.t === "c" ? { t: "c" } : { t: "s", r: op.r, e: op.e ? 1 : 0, p: op.p.map(quantize) })),
  };
}

/**
 * Read a record from node.properties back into `{ base, ops }`, checking every field; coordinates are
 * rounded to 0.1 px as `encodeRecord` keeps them. A missing record is an empty drawing.
 * @throws {ScribbleError} naming the first bad field.
 */
export function decodeRecord(record) {
  if (record === undefined || record === null) return { base: null, ops: [] };
  if (typeof record !== "object" || Array.isArray(record)) {
    throw new ScribbleError(`the saved drawing must be an object {v, base, ops}, got ${JSON.stringify(record).slice(0, 80)}.`);
  }
  if (record.v !== RECORD_VERSION) {
    throw new ScribbleError(`the saved drawing has version ${JSON.stringify(record.v)}; this version of the pack reads ${RECORD_VERSION}.`);
  }
  const base = record.base ?? null;
  if (base !== null) parseReference(base);
  if (!Array.isArray(record.ops)) throw new ScribbleError(`the saved drawing's ops must be a list, got ${typeof record.ops}.`);
  const ops = [];
  let points = 0;
  record.ops.forEach((op, k) => {
    const where = `stroke #${k + 1}`;
    if (!op || typeof op !== "object") throw new ScribbleError(`${where} of the saved drawing is not an object.`);
    if (op.t === "c") {
      ops.push({ t: "c" });
      return;
    }
    if (op.t !== "s") throw new ScribbleError(`${where} has type ${JSON.stringify(op.t)}; expected "s" (stroke) or "c" (clear).`);
    if (!(typeof op.r === "number" && op.r >= MIN_BRUSH && op.r <= MAX_BRUSH)) {
      throw new ScribbleError(`${where} has brush size ${JSON.stringify(op.r)}; sizes are ${MIN_BRUSH} to ${MAX_BRUSH}.`);
    }
    if (!Array.isArray(op.p) || op.p.length < 2 || op.p.length % 2 !== 0) {
      throw new ScribbleError(`${where} must have an even, non-empty list of coordinates.`);
    }
    if (!op.p.every((v) => typeof v === "number" && Number.isFinite(v) && Math.abs(v) <= 4 * MAX_SIDE)) {
      throw new ScribbleError(`${where} holds a coordinate that is not a finite number within +-${4 * MAX_SIDE}.`);
    }
    if (![0, 1, false, true, undefined].includes(op.e)) {
      throw new ScribbleError(`${where} has eraser flag ${JSON.stringify(op.e)}; expected 0 (draw) or 1 (erase).`);
    }
    points += op.p.length / 2;
    // at the 0.1 px the workflow keeps, so the first load shows (and names) what the next load will
    ops.push({ t: "s", r: op.r, e: op.e ? 1 : 0, p: op.p.map(quantize) });
  });
  if (points > MAX_POINTS) {
    throw new ScribbleError(`the saved drawing has ${points} points, more than the ${MAX_POINTS} a node keeps.`);
  }
  return { base, ops };
}

/**
 * Drawing pixel under a pointer: `rect` is the canvas element's client rectangle (any CSS scale).
 * The result is clamped to the drawing.
 */
export function clientToDrawing(clientX, clientY, rect, width, height) {
  const x = ((clientX - rect.left) * width) / rect.width;
  const y = ((clientY - rect.top) * height) / rect.height;
  const clamp = (v, hi) => (v < 0 ? 0 : v > hi ? hi : v);
  return [clamp(x, width - 1e-3), clamp(y, height - 1e-3)];
}

/**
 * RGBA pixels for display: ink opaque white, the rest transparent (so a background to trace shows through)
 * or opaque black with `opaque` (what is uploaded). Fills `out` (Uint8ClampedArray of 4*w*h) if given.
 * Only the area `rect` [l, t, r, b) is written when given.
 */
export function toRGBA(raster, opaque, out = null, rect = null) {
  const { width, height, data } = raster;
  const rgba = out ?? new Uint8ClampedArray(width * height * 4);
  const [l, t, r, b] = rect ?? [0, 0, width, height];
  const off = opaque ? 255 : 0;
  for (let j = t; j < b; j++) {
    for (let i = l; i < r; i++) {
      const k = j * width + i;
      const v = data[k] ? 255 : 0;
      const q = 4 * k;
      rgba[q] = v;
      rgba[q + 1] = v;
      rgba[q + 2] = v;
      rgba[q + 3] = v ? 255 : off;
    }
  }
  return rgba;
}

/**
 * A raster from RGBA pixels of a loaded image: ink where the luminance is above half (alpha counts as black).
 * @throws {ScribbleError} an image larger than MAX_SIDE.
 */
export function fromRGBA(rgba, width, height) {
  if (width > MAX_SIDE || height > MAX_SIDE) {
    throw new ScribbleError(
      `the drawing file is ${width}x${height} pixels, larger than the maximum of ${MAX_SIDE}x${MAX_SIDE}; ` +
        "use a smaller image or clear the canvas.",
    );
  }
  // a base may be smaller than a drawing (it is placed top-left), so only the maximum applies here
  const raster = { width, height, data: new Uint8Array(width * height) };
  for (let k = 0; k < width * height; k++) {
    const q = 4 * k;
    const lum = (0.299 * rgba[q] + 0.587 * rgba[q + 1] + 0.114 * rgba[q + 2]) * (rgba[q + 3] / 255);
    raster.data[k] = lum > 127.5 ? 255 : 0;
  }
  return raster;
}

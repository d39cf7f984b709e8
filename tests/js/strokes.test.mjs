// Stroke rasterising, content names, saved records and size checks of the scribble canvas.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  MAX_SIDE,
  MAX_POINTS,
  ScribbleError,
  SUBFOLDER,
  brushRadius,
  clientToDrawing,
  countPoints,
  createRaster,
  decodeRecord,
  encodeRecord,
  fileNameFor,
  fromRGBA,
  hashRaster,
  parseReference,
  placeBase,
  referenceFor,
  render,
  sizeProblem,
  stampSegment,
  stampStroke,
  toRGBA,
} from "../../web/js/lib/strokes.js";

const ink = (r) => r.data.reduce((n, v) => n + (v ? 1 : 0), 0);
const at = (r, i, j) => r.data[j * r.width + i];

test("a dot covers exactly the pixels whose centre is within the radius", () => {
  const r = createRaster(64, 64);
  stampSegment(r, 32, 32, 32, 32, 10, 255);
  let expected = 0;
  for (let j = 0; j < 64; j++) {
    for (let i = 0; i < 64; i++) {
      const inside = (i + 0.5 - 32) ** 2 + (j + 0.5 - 32) ** 2 <= 100;
      expected += inside ? 1 : 0;
      assert.equal(at(r, i, j), inside ? 255 : 0, `pixel ${i},${j}`);
    }
  }
  assert.equal(ink(r), expected);
  assert.ok(Math.abs(expected - Math.PI * 100) < 12, `area ${expected} ~ pi r^2`);
});

test("a horizontal line of size 4 is 4 pixels thick with round caps", () => {
  const r = createRaster(40, 20);
  const rect = stampStroke(r, { t: "s", r: 4, e: 0, p: [10, 10, 30, 10] });
  // thickness 4 in the middle: rows 8..11 inclusive
  for (let j = 0; j < 20; j++) assert.equal(at(r, 20, j), j >= 8 && j <= 11 ? 255 : 0, `row ${j}`);
  // caps: reaches x = 8..31 on the centre rows, not beyond
  assert.equal(at(r, 8, 9), 255);
  assert.equal(at(r, 7, 9), 0);
  assert.equal(at(r, 31, 9), 255);
  assert.equal(at(r, 32, 9), 0);
  assert.deepEqual(rect, [7, 7, 33, 13]); // [left, top, right, bottom): the caps' pixels and half a pixel more
  // a bent stroke's changed area covers all its segments (it is redrawn and uploaded from this area)
  const bent = stampStroke(createRaster(64, 64), { t: "s", r: 4, e: 0, p: [10, 10, 30, 10, 30, 40] });
  assert.deepEqual(bent, [7, 7, 33, 43]);
});

test("thin diagonal strokes stay connected (no gaps) at size 1", () => {
  const r = createRaster(50, 50);
  stampStroke(r, { t: "s", r: 1, e: 0, p: [0.2, 0.3, 49.7, 37.1] });
  // 8-connectivity along the stroke: every column it spans has ink
  for (let i = 0; i < 50; i++) {
    let any = false;
    for (let j = 0; j < 50; j++) any ||= at(r, i, j) === 255;
    assert.ok(any, `column ${i} empty`);
  }
  assert.equal(brushRadius(1), Math.SQRT1_2);
  assert.equal(brushRadius(10), 5);
});

test("the eraser clears, clear wipes, undo is replaying all but the last operation", () => {
  const a = { t: "s", r: 6, e: 0, p: [5, 5, 55, 5] };
  const b = { t: "s", r: 6, e: 1, p: [30, 0, 30, 20] };
  const full = render(64, 32, [a, b]);
  assert.equal(at(full, 10, 5), 255);
  assert.equal(at(full, 30, 5), 0, "erased");
  const undone = render(64, 32, [a, b].slice(0, -1));
  assert.equal(at(undone, 30, 5), 255);
  const cleared = render(64, 32, [a, { t: "c" }]);
  assert.equal(ink(cleared), 0);
  const after = render(64, 32, [a, { t: "c" }, b, a]);
  assert.deepEqual(after.data, render(64, 32, [a]).data);
});

test("incremental stamping equals rendering the whole stroke", () => {
  const op = { t: "s", r: 7, e: 0, p: [3, 3] };
  const live = createRaster(80, 60);
  stampStroke(live, op, 0);
  const pts = [[20, 10], [40, 50], [70, 20], [75, 55]];
  for (const [x, y] of pts) {
    op.p.push(x, y);
    stampStroke(live, op, op.p.length / 2 - 1);
  }
  assert.deepEqual(live.data, render(80, 60, [op]).data);
});

test("strokes outside the drawing are clipped, never written out of bounds", () => {
  const r = createRaster(16, 16);
  assert.equal(stampSegment(r, -50, -50, -40, -40, 3, 255), null);
  stampSegment(r, -10, 8, 100, 8, 2, 255);
  assert.equal(r.data.length, 256);
  assert.equal(at(r, 0, 8), 255);
  assert.equal(at(r, 15, 8), 255);
});

test("a base image is placed top-left, cropped or padded when the size changes", () => {
  const base = createRaster(10, 10);
  base.data.fill(255);
  const grown = placeBase(20, 12, base);
  assert.equal(ink(grown), 100);
  assert.equal(at(grown, 9, 9), 255);
  assert.equal(at(grown, 10, 9), 0);
  const cropped = placeBase(8, 8, base);
  assert.equal(ink(cropped), 64);
  assert.equal(ink(render(20, 12, [{ t: "c" }], base)), 0);
});

test("content names: same drawing same name, any change a new name; size included", () => {
  const a = render(64, 64, [{ t: "s", r: 5, e: 0, p: [10, 10, 50, 50] }]);
  const b = render(64, 64, [{ t: "s", r: 5, e: 0, p: [10, 10, 50, 50] }]);
  assert.equal(hashRaster(a), hashRaster(b));
  assert.match(fileNameFor(a), /^scribble_64x64_[0-9a-f]{16}\.png$/);
  assert.equal(referenceFor(a), `${SUBFOLDER}/${fileNameFor(a)}`);
  const c = render(64, 64, [{ t: "s", r: 5, e: 0, p: [10, 10, 50, 51] }]);
  assert.notEqual(hashRaster(a), hashRaster(c));
  a.data[0] = 255;
  assert.notEqual(hashRaster(a), hashRaster(b), "one pixel changes the name");
  assert.notEqual(hashRaster(createRaster(64, 32)), hashRaster(createRaster(32, 64)));
});

test("sizes: the stated maximum and minimum are enforced with a message saying what to change", () => {
  assert.equal(sizeProblem(512, 768), null);
  assert.equal(sizeProblem(MAX_SIDE, MAX_SIDE), null);
  assert.match(sizeProblem(MAX_SIDE + 1, 512), /larger than the maximum of 4096x4096 pixels: width is 4097\. Lower the width/);
  assert.match(sizeProblem(512, 5000), /height is 5000/);
  assert.match(sizeProblem(4, 512), /at least 8/);
  assert.match(sizeProblem(51.5, 512), /whole number/);
  assert.throws(() => createRaster(9000, 10), ScribbleError);
  assert.throws(() => fromRGBA(new Uint8ClampedArray(4), MAX_SIDE + 1, 1), /larger than the maximum/);
});

test("references: safe relative paths only", () => {
  assert.equal(parseReference(""), null);
  assert.deepEqual(parseReference("affordance_scribbles/scribble_8x8_00.png"), {
    subfolder: "affordance_scribbles",
    filename: "scribble_8x8_00.png",
  });
  assert.deepEqual(parseReference("drawing.png"), { subfolder: "", filename: "drawing.png" });
  for (const bad of ["../secret.png", "/etc/passwd", "a/../../b.png", "a//b.png", "a\\b.png", "x/.hidden"]) {
    assert.throws(() => parseReference(bad), ScribbleError, bad);
  }
  assert.throws(() => parseReference(42), /must be text/);
});

test("records round-trip at 0.1 px and bad records are refused with the field named", () => {
  const ops = [{ t: "s", r: 8, e: 0, p: [1.234, 2.26, 30.04, 40] }, { t: "c" }, { t: "s", r: 3, e: 1, p: [5, 5] }];
  const rec = JSON.parse(JSON.stringify(encodeRecord("affordance_scribbles/x.png", ops)));
  assert.deepEqual(rec.ops[0].p, [1.2, 2.3, 30, 40]);
  const back = decodeRecord(rec);
  assert.equal(back.base, "affordance_scribbles/x.png");
  assert.equal(back.ops.length, 3);
  assert.deepEqual(decodeRecord(undefined), { base: null, ops: [] });
  const bad = [
    [[1, 2], /must be an object/],
    [{ v: 99, ops: [] }, /version 99/],
    [{ v: 1, ops: "x" }, /must be a list/],
    [{ v: 1, ops: [{ t: "z" }] }, /stroke #1 has type "z"/],
    [{ v: 1, ops: [{ t: "s", r: 0, p: [1, 1] }] }, /brush size 0/],
    [{ v: 1, ops: [{ t: "s", r: 4, p: [1] }] }, /even, non-empty/],
    [{ v: 1, ops: [{ t: "s", r: 4, p: [] }] }, /stroke #1 must have an even, non-empty list/],
    [{ v: 1, ops: [{ t: "s", r: 4, p: "1,2" }] }, /stroke #1 must have an even, non-empty list/],
    [{ v: 1, ops: [{ t: "c" }, null] }, /stroke #2 of the saved drawing is not an object/],
    [{ v: 1, ops: ["s"] }, /stroke #1 of the saved drawing is not an object/],
    [{ v: 1, ops: [{ t: "c" }, { t: "s", r: 4, p: [1, null] }] }, /stroke #2 holds a coordinate/],
    [{ v: 1, base: "../x.png", ops: [] }, /is not a path the canvas reads/],
    // any other value made an eraser (found by fuzzing saved records)
    [{ v: 1, ops: [{ t: "s", r: 8, e: "0", p: [10, 10, 50, 10] }] }, /stroke #1 has eraser flag "0"; expected 0/],
  ];
  for (const [record, message] of bad) assert.throws(() => decodeRecord(record), message);
  const many = { v: 1, ops: [{ t: "s", r: 2, p: new Array(2 * (MAX_POINTS + 1)).fill(1) }] };
  assert.throws(() => decodeRecord(many), /more than the 250000/);
  assert.equal(countPoints(ops), 3);
  // a hand-written record with finer coordinates is read at 0.1 px: the first load shows and names what the
  // record written back (encodeRecord) will show at the next load
  const fine = { v: 1, ops: [{ t: "s", r: 1, e: 0, p: [10.67, 0.62, 27.51, 5.35] }] };
  const first = decodeRecord(fine);
  assert.deepEqual(first.ops[0].p, [10.7, 0.6, 27.5, 5.4]);
  const again = decodeRecord(JSON.parse(JSON.stringify(encodeRecord(null, first.ops))));
  assert.equal(fileNameFor(render(32, 16, again.ops)), fileNameFor(render(32, 16, first.ops)));
  assert.deepEqual(decodeRecord({ v: 1, ops: [{ t: "s", r: 2, p: [1, 1] }] }).ops[0].e, 0); // no flag: draws
  // the flags a record may hold: 0/1 and the booleans of records written by hand or by other tools
  const flags = [0, 1, false, true].map((e) => decodeRecord({ v: 1, ops: [{ t: "s", r: 2, e, p: [1, 1] }] }).ops[0].e);
  assert.deepEqual(flags, [0, 1, 0, 1]);
  // exactly MAX_POINTS points are kept (one more is refused, above)
  const most = { v: 1, ops: [{ t: "s", r: 2, p: new Array(2 * MAX_POINTS).fill(1) }] };
  assert.equal(countPoints(decodeRecord(most).ops), MAX_POINTS);
});

test("pointer to drawing coordinates follows the element's CSS scale and clamps", () => {
  const rect = { left: 100, top: 50, width: 256, height: 128 };
  assert.deepEqual(clientToDrawing(100, 50, rect, 512, 256), [0, 0]);
  assert.deepEqual(clientToDrawing(228, 114, rect, 512, 256), [256, 128]);
  const [x, y] = clientToDrawing(1000, -5, rect, 512, 256);
  assert.ok(x < 512 && x > 511.99 && y === 0);
});

test("RGBA conversion: opaque white-on-black for upload, transparent for display; and back", () => {
  const r = render(8, 8, [{ t: "s", r: 2, e: 0, p: [4, 4] }]);
  const up = toRGBA(r, true);
  const shown = toRGBA(r, false);
  const k = 4 * (3 * 8 + 3);
  assert.deepEqual([...up.slice(k, k + 4)], [255, 255, 255, 255]);
  assert.deepEqual([...up.slice(0, 4)], [0, 0, 0, 255]);
  assert.deepEqual([...shown.slice(0, 4)], [0, 0, 0, 0]);
  assert.deepEqual(fromRGBA(up, 8, 8).data, r.data);
  // a grey, half-transparent or coloured image thresholds on luminance times alpha
  const px = new Uint8ClampedArray([200, 200, 200, 255, 200, 200, 200, 100, 255, 0, 0, 255, 0, 255, 0, 255]);
  assert.deepEqual([...fromRGBA(px, 4, 1).data], [255, 0, 0, 255]);
});

test("a drawing made of quantized points renders identically after the workflow round trip", () => {
  const q = (v) => Math.round(v * 10) / 10;
  const ops = [{ t: "s", r: 9, e: 0, p: [12.3456, 40.987, 100.02, 77.77, 180.55, 20.01].map(q) }, { t: "s", r: 3, e: 1, p: [90.04, 60.06].map(q) }];
  const before = render(200, 100, ops);
  const record = JSON.parse(JSON.stringify(encodeRecord(null, ops)));
  const after = render(200, 100, decodeRecord(record).ops);
  assert.equal(fileNameFor(after), fileNameFor(before));
});

test("the scribble example workflow's strokes render to the drawing it references", async () => {
  const { readFileSync } = await import("node:fs");
  const wf = JSON.parse(readFileSync(new URL("../../example_workflows/scribble_canvas_to_image.json", import.meta.url), "utf8"));
  const node = wf.nodes.find((n) => n.type === "AST_ScribbleCanvas");
  const [width, height, ref] = node.widgets_values;
  const { base, ops } = decodeRecord(node.properties.ast_scribble);
  assert.equal(base, null);
  assert.equal(referenceFor(render(width, height, ops)), ref);
});

// The rasteriser before it tested only near each row's span: every pixel of the segment's bounding box.
function stampBoxReference(raster, x0, y0, x1, y1, radius, value) {
  const { width, height, data } = raster;
  const left = Math.max(0, Math.floor(Math.min(x0, x1) - radius - 0.5));
  const top = Math.max(0, Math.floor(Math.min(y0, y1) - radius - 0.5));
  const right = Math.min(width, Math.ceil(Math.max(x0, x1) + radius + 0.5));
  const bottom = Math.min(height, Math.ceil(Math.max(y0, y1) + radius + 0.5));
  if (left >= right || top >= bottom) return null;
  const dx = x1 - x0;
  const dy = y1 - y0;
  const len2 = dx * dx + dy * dy;
  for (let j = top; j < bottom; j++) {
    for (let i = left; i < right; i++) {
      let t = len2 > 0 ? ((i + 0.5 - x0) * dx + (j + 0.5 - y0) * dy) / len2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ex = x0 + t * dx - (i + 0.5);
      const ey = y0 + t * dy - (j + 0.5);
      if (ex * ex + ey * ey <= radius * radius) data[j * width + i] = value;
    }
  }
  return [left, top, right, bottom];
}

test("segments paint exactly the pixels the whole-box test paints (so saved drawings keep their names)", () => {
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const coord = (span) => {
    const r = rand();
    if (r < 0.15) return Math.round(rand() * span * 10) / 10; // the 0.1 px grid the workflow keeps
    if (r < 0.2) return Math.round(rand() * span) + 0.5; // pixel centres
    return rand() * (span + 40) - 20; // anywhere, also outside
  };
  for (let k = 0; k < 6000; k++) {
    const [w, h] = k % 3 ? [64, 48] : [300, 200]; // small, and large enough to hold a 256 px brush's outline
    const x0 = coord(w);
    const y0 = coord(h);
    const kind = rand();
    let x1 = coord(w);
    let y1 = coord(h);
    if (kind < 0.1) [x1, y1] = [x0, y0]; // a dot
    else if (kind < 0.2) y1 = y0; // horizontal
    else if (kind < 0.3) x1 = x0; // vertical
    else if (kind < 0.35) y1 = y0 + 1e-9; // nearly horizontal
    else if (kind < 0.4) x1 = x0 - 1e-12; // nearly vertical
    const pick = rand();
    const size = pick < 0.3 ? 1 + Math.floor(rand() * 8) : pick < 0.7 ? 1 + rand() * 40 : 1 + rand() * 255;
    const radius = brushRadius(size);
    const a = createRaster(w, h);
    const b = createRaster(w, h);
    const ra = stampSegment(a, x0, y0, x1, y1, radius, 255);
    const rb = stampBoxReference(b, x0, y0, x1, y1, radius, 255);
    assert.deepEqual(ra, rb);
    assert.ok(a.data.every((v, i) => v === b.data[i]), JSON.stringify({ x0, y0, x1, y1, radius }));
  }
});

test("a saved drawing renders in time proportional to its ink, and clears drop what came before", () => {
  // found by fuzzing saved records: a zig-zag across a 4096 px drawing tested every pixel of each segment's
  // bounding box (hours for 250,000 points), and each of a million clears refilled the whole drawing
  const zigzag = [];
  for (let k = 0; k < 200; k++) zigzag.push(k % 2 ? 4095 : 0, k % 2 ? 4095 : 0, k % 2 ? 0 : 4095, k % 2 ? 4095 : 0);
  const ops = [{ t: "s", r: 1, e: 0, p: zigzag }, ...Array(100000).fill({ t: "c" }), { t: "s", r: 2, e: 0, p: [10, 10, 20, 10] }];
  const start = performance.now();
  const raster = render(4096, 4096, ops);
  assert.ok(performance.now() - start < 5000, `${performance.now() - start} ms`);
  const after = render(4096, 4096, ops.slice(-1)); // only the stroke after the last clear
  assert.ok(raster.data.every((v, i) => v === after.data[i]));
  assert.equal(raster.data.reduce((n, v) => n + (v ? 1 : 0), 0), 24);
  const strokeOnly = render(4096, 4096, [{ t: "s", r: 1, e: 0, p: zigzag }]);
  assert.ok(strokeOnly.data[0] === 255 && strokeOnly.data[4095 * 4096 + 4095] === 255);
});

test("a record's coordinates must be finite and within four drawing sides", () => {
  for (const bad of [[1e9, 0], [0, -16385], [NaN, 0], [Infinity, 0], ["1", 0]]) {
    assert.throws(() => decodeRecord({ v: 1, ops: [{ t: "s", r: 4, p: bad }] }), /not a finite number within \+-16384/);
  }
  assert.equal(decodeRecord({ v: 1, ops: [{ t: "s", r: 4, p: [16384, -16384] }] }).ops.length, 1);
});

test("fromRGBA takes images of the maximum side and weighs each colour channel like the backend", () => {
  assert.equal(fromRGBA(new Uint8Array(4 * MAX_SIDE), MAX_SIDE, 1).width, MAX_SIDE);
  assert.throws(() => fromRGBA(new Uint8Array(4 * (MAX_SIDE + 1)), MAX_SIDE + 1, 1), ScribbleError);
  // the same pixels as tests/unit/nodes/test_scribble_node.py: luminance 0.299 R + 0.587 G + 0.114 B above 127.5
  const px = [[0, 200, 255], [0, 180, 200], [0, 170, 200], [255, 88, 0], [255, 87, 0]];
  const rgba = new Uint8Array(px.flatMap((p) => [...p, 255]));
  assert.deepEqual([...fromRGBA(rgba, px.length, 1).data], [255, 255, 0, 255, 0]);
});

test("stamping a stroke from point k returns the area of the new segments only", () => {
  const op = { t: "s", r: 2, e: 0, p: [2, 2, 2, 40, 30, 40] };
  const r = createRaster(64, 64);
  const whole = stampStroke(r, op, 0);
  const tail = stampStroke(createRaster(64, 64), op, 2);
  assert.ok(tail[1] > whole[1], `the tail starts below the stroke's start: ${tail} vs ${whole}`);
  assert.deepEqual(tail, stampSegment(createRaster(64, 64), 2, 40, 30, 40, brushRadius(2), 255));
});

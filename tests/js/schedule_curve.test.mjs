// web/js/lib/schedule_curve.js: the AST_StrengthSchedule plot's logic. Parity with the Python backend on
// large tables is in tests/unit/web/test_js_python_parity.py.

import { test } from "node:test";
import assert from "node:assert/strict";

import {
  ScheduleError,
  addKeyframe,
  curveVertices,
  formatKeyframes,
  keyframeAt,
  moveKeyframe,
  parseKeyframes,
  parseSchedule,
  pointToKeyframe,
  removeKeyframe,
  scheduleAt,
  scheduleGeometry,
} from "../../web/js/lib/schedule_curve.js";
import { fractionToX, valueToY } from "../../web/js/lib/plot.js";

const DEFAULT = "0.0:1.0, 0.6:1.0, 1.0:0.2";
const near = (a, b, tol = 1e-12) => Math.abs(a - b) <= tol;

test("parseKeyframes: pairs sorted by progress; commas, semicolons and newlines separate", () => {
  assert.deepEqual(parseKeyframes(DEFAULT), [
    [0, 1],
    [0.6, 1],
    [1, 0.2],
  ]);
  assert.deepEqual(parseKeyframes("1:0; 0:1\n 0.5 : 2 ,"), [
    [0, 1],
    [0.5, 2],
    [1, 0],
  ]);
  assert.deepEqual(parseKeyframes(".5:.5"), [[0.5, 0.5]]);
  assert.deepEqual(parseKeyframes("1e-3:1e1"), [[0.001, 10]]);
});

test("parseKeyframes refuses what the backend refuses, with the same messages", () => {
  const cases = [
    ["0.5", "keyframe #1 '0.5' should be 'progress:multiplier', e.g. '0.5:0.8'."],
    ["0.5:1:2", "keyframe #1 '0.5:1:2' should be 'progress:multiplier', e.g. '0.5:0.8'."],
    ["0:1, 0.5:", "keyframe #2 '0.5:' holds something that is not a number; write two numbers, e.g. '0.5:0.8'."],
    [":1", "keyframe #1 ':1' holds something that is not a number; write two numbers, e.g. '0.5:0.8'."],
    ["1.2:1", "keyframe #1 '1.2:1': progress must be between 0 and 1, got 1.2."],
    ["nan:1", "keyframe #1 'nan:1': progress must be between 0 and 1, got nan."],
    ["0.5:-1", "keyframe #1 '0.5:-1': the multiplier must be a number from 0 to 10, got -1."],
    ["0.5:inf", "keyframe #1 '0.5:inf': the multiplier must be a number from 0 to 10, got inf."],
    ["0.5:10.5", "keyframe #1 '0.5:10.5': the multiplier must be a number from 0 to 10, got 10.5."],
    ["0:1, 0.0:2", "progress 0.0 appears twice; give each keyframe its own progress."],
    ["", "no keyframes: write at least one 'progress:multiplier' pair, e.g. '0.0:1.0'."],
    [" , ;", "no keyframes: write at least one 'progress:multiplier' pair, e.g. '0.0:1.0'."],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseKeyframes(text), { name: "ScheduleError", message }, text);
  }
  // empty chunks still count in the keyframe number, as in Python's enumerate
  assert.throws(() => parseKeyframes("0:1,,x"), /keyframe #3 'x'/);
  assert.ok(new ScheduleError("x") instanceof Error);
});

test("parseSchedule checks the interpolation first", () => {
  assert.equal(parseSchedule(DEFAULT, "step").interpolation, "step");
  assert.throws(() => parseSchedule("bad", "cubic"), /interpolation must be 'linear' or 'step', got 'cubic'\./);
});

test("scheduleAt: linear ramps, step holds, flat outside the keyframes", () => {
  const k = parseKeyframes(DEFAULT);
  assert.equal(scheduleAt(k, "linear", 0.3), 1);
  assert.ok(near(scheduleAt(k, "linear", 0.8), 0.6));
  assert.equal(scheduleAt(k, "step", 0.8), 1);
  assert.equal(scheduleAt(k, "step", 1), 0.2);
  assert.equal(scheduleAt(parseKeyframes("0:1, 1:0"), "linear", 0.25), 0.75);
  const inner = parseKeyframes("0.25:2, 0.75:0");
  assert.equal(scheduleAt(inner, "linear", 0), 2);
  assert.equal(scheduleAt(inner, "linear", 1), 0);
  assert.equal(scheduleAt(inner, "linear", 0.5), 1);
  assert.equal(scheduleAt(inner, "step", 0.75), 0);
  assert.equal(scheduleAt(inner, "step", 0.7499), 2);
  assert.equal(scheduleAt([[0.5, 3]], "linear", 0.1), 3);
});

test("curveVertices draw the same function scheduleAt computes", () => {
  for (const interp of ["linear", "step"]) {
    const k = parseKeyframes("0.2:0.5, 0.5:2, 0.9:1");
    const v = curveVertices(k, interp);
    assert.deepEqual(v[0], [0, 0.5]);
    assert.deepEqual(v[v.length - 1], [1, 1]);
    // between consecutive vertices the curve is a straight segment: check its midpoints
    for (let i = 1; i < v.length; i++) {
      const [p0, m0] = v[i - 1];
      const [p1, m1] = v[i];
      if (p1 === p0) continue;
      const mid = (p0 + p1) / 2;
      assert.ok(near(scheduleAt(k, interp, mid), (m0 + m1) / 2), `${interp} at ${mid}`);
    }
  }
  assert.equal(curveVertices([[0, 1]], "step").length, 3);
});

test("formatKeyframes: compact text that parses back", () => {
  assert.equal(formatKeyframes(parseKeyframes(DEFAULT)), "0:1, 0.6:1, 1:0.2");
  assert.equal(formatKeyframes([[0.12345, 0.98765]]), "0.123:0.988");
  // rounding would merge two progresses: they keep their digits
  const close = [
    [0.3001, 1],
    [0.3004, 2],
  ];
  assert.equal(formatKeyframes(close), "0.3001:1, 0.3004:2");
  assert.deepEqual(parseKeyframes(formatKeyframes(close)), close);
});

test("moveKeyframe stays within its neighbours, [0, 1] and multiplier >= 0", () => {
  const k = parseKeyframes(DEFAULT);
  let r = moveKeyframe(k, 1, 0.123456, 0.98765);
  assert.equal(r.text, "0:1, 0.123:0.988, 1:0.2");
  assert.deepEqual(r.keyframes, parseKeyframes(r.text));
  assert.equal(r.index, 1);
  assert.equal(r.changed, true);
  r = moveKeyframe(k, 1, 5, -1);
  assert.deepEqual(r.keyframes[1], [0.999, 0]);
  r = moveKeyframe(k, 1, -5, 1);
  assert.deepEqual(r.keyframes[1], [0.001, 1]);
  r = moveKeyframe(k, 0, 0.9, 3);
  assert.deepEqual(r.keyframes[0], [0.599, 3]);
  r = moveKeyframe(k, 2, 2, 0.5, 1.5);
  assert.deepEqual(r.keyframes[2], [1, 0.5]);
  r = moveKeyframe(k, 2, 0.8, 7, 1.5);
  assert.deepEqual(r.keyframes[2], [0.8, 1.5]);
  assert.equal(moveKeyframe(k, 1, 0.6, 1).changed, false);
  // no room between the neighbours: the progress stays
  const tight = [
    [0.3, 1],
    [0.3005, 2],
    [0.301, 3],
  ];
  r = moveKeyframe(tight, 1, 0.9, 2.5);
  assert.equal(r.keyframes[1][0], 0.3005);
  assert.equal(r.keyframes.length, 3);
  assert.throws(() => moveKeyframe(k, 3, 0, 0), RangeError);
});

test("addKeyframe inserts in order and refuses a progress already taken", () => {
  const k = parseKeyframes(DEFAULT);
  let r = addKeyframe(k, 0.3, 0.5);
  assert.equal(r.text, "0:1, 0.3:0.5, 0.6:1, 1:0.2");
  assert.equal(r.index, 1);
  assert.equal(r.changed, true);
  r = addKeyframe(k, 0.6001, 0.5);
  assert.equal(r.changed, false);
  assert.equal(r.index, -1); // no keyframe was added
  assert.equal(r.text, "0:1, 0.6:1, 1:0.2");
  r = addKeyframe([[0.5, 1]], -3, 7.25, 2);
  assert.deepEqual(r.keyframes, [
    [0, 2],
    [0.5, 1],
  ]);
  assert.equal(r.index, 0);
  r = addKeyframe([[0.5, 1]], 0.75, -1);
  assert.deepEqual(r.keyframes[1], [0.75, 0]);
  // a pointer position that is not a number adds at progress 0 with multiplier 0
  r = addKeyframe([[0.5, 1]], NaN, Infinity);
  assert.deepEqual(r.keyframes[0], [0, 0]);
});

test("removeKeyframe never removes the last one", () => {
  const k = parseKeyframes(DEFAULT);
  const r = removeKeyframe(k, 1);
  assert.equal(r.text, "0:1, 1:0.2");
  assert.equal(r.changed, true);
  assert.equal(r.index, -1); // nothing is selected afterwards
  const one = removeKeyframe([[0.5, 1]], 0);
  assert.equal(one.changed, false);
  assert.equal(one.text, "0.5:1");
  assert.equal(removeKeyframe(k, 9).changed, false);
  // only an index of a keyframe removes one: not the length, a fraction, NaN or text
  for (const index of [k.length, 1.5, NaN, "1", -1]) {
    const kept = removeKeyframe(k, index);
    assert.equal(kept.changed, false, String(index));
    assert.equal(kept.text, "0:1, 0.6:1, 1:0.2", String(index));
  }
});

test("add then remove, and move there and back, round-trip the text", () => {
  const k = parseKeyframes(DEFAULT);
  const added = addKeyframe(k, 0.42, 0.7);
  assert.equal(removeKeyframe(added.keyframes, added.index).text, formatKeyframes(k));
  const moved = moveKeyframe(k, 1, 0.3, 0.1);
  assert.equal(moveKeyframe(moved.keyframes, 1, 0.6, 1).text, formatKeyframes(k));
});

test("scheduleGeometry puts each keyframe at (progress, multiplier) and hit-tests it", () => {
  const k = parseKeyframes("0:1, 0.5:2.2, 1:0");
  const geo = scheduleGeometry(k, 300, 160);
  const { frame, points } = geo;
  assert.equal(frame.yMax, 2.5);
  assert.equal(frame.yMin, 0);
  points.forEach((pt, i) => {
    assert.ok(near(pt.x, fractionToX(frame, k[i][0])));
    assert.ok(near(pt.y, valueToY(frame, k[i][1])));
    assert.equal(keyframeAt(geo, pt.x + 3, pt.y - 3), i);
    const [p, m] = pointToKeyframe(frame, pt.x, pt.y);
    assert.ok(near(p, k[i][0]) && near(m, k[i][1]));
  });
  assert.equal(keyframeAt(geo, points[1].x + 30, points[1].y), -1);
  assert.equal(pointToKeyframe(frame, -50, 0)[0], 0);
  assert.equal(pointToKeyframe(frame, 5000, 0)[0], 1);
  assert.equal(scheduleGeometry(k, 300, 160, { yMax: 1 }).frame.yMax, 1);
});

test("drag round trip: pointer -> keyframe -> text -> parsed -> point under the pointer", () => {
  const k = parseKeyframes(DEFAULT);
  const geo = scheduleGeometry(k, 400, 200);
  const target = { x: fractionToX(geo.frame, 0.35), y: valueToY(geo.frame, 0.45) };
  const [p, m] = pointToKeyframe(geo.frame, target.x, target.y);
  const r = moveKeyframe(k, 1, p, m);
  assert.deepEqual(r.keyframes[1], [0.35, 0.45]);
  const again = scheduleGeometry(parseKeyframes(r.text), 400, 200);
  assert.ok(Math.abs(again.points[1].x - target.x) < 0.5 && Math.abs(again.points[1].y - target.y) < 0.5);
});

test("keyframes or an interpolation that String() cannot convert are refused, not a TypeError", () => {
  const odd = { toString: 0 }; // valid JSON in a hand-edited workflow
  assert.throws(() => parseKeyframes(odd), ScheduleError);
  assert.throws(() => parseSchedule("0:1", odd), /interpolation must be 'linear' or 'step', got '\[object Object\]'\./);
});

test("a keyframe off the 0.001 grid between close neighbours is snapped onto it; a refused removal says index -1", () => {
  const r = moveKeyframe([[0.1, 1], [0.1015, 1], [0.102, 1]], 1, 0.5, 1);
  assert.equal(r.keyframes[1][0], 0.101);
  assert.equal(r.changed, true);
  assert.ok(Object.is(removeKeyframe([[0.5, 1]], 0).index, -1));
  assert.ok(Object.is(removeKeyframe([[0.2, 1], [0.5, 1]], 7).index, -1));
});

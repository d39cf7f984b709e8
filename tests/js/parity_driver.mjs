// Runs the plot modules on cases read as JSON (from the file named as first argument, else stdin) and
// prints a JSON list with one result per case, for
// tests/unit/web/test_js_python_parity.py (which compares them with the Python backend).
// A case is {kind, ...}; a result is {ok: true, ...} or {ok: false, error, type}.

import { readFileSync } from "node:fs";

import {
  dragBar,
  effectiveUncondMultiplier,
  makeWeights,
  parseWeightList,
  resolveWeights,
} from "../../web/js/lib/weights_curve.js";
import {
  addKeyframe,
  moveKeyframe,
  parseKeyframes,
  parseSchedule,
  removeKeyframe,
  scheduleAt,
} from "../../web/js/lib/schedule_curve.js";
import { pyFloat } from "../../web/js/lib/parse.js";

// JSON has no NaN or infinities: send them as strings, the way Python's repr spells them.
const num = (x) => (Number.isNaN(x) ? "nan" : x === Infinity ? "inf" : x === -Infinity ? "-inf" : x);

const RUNNERS = {
  float: ({ text }) => {
    const v = pyFloat(text);
    return v === null ? { ok: false, error: "not a float", type: "ValueError" } : { ok: true, value: num(v) };
  },
  weights: ({ text }) => ({ ok: true, values: parseWeightList(text) }),
  make: ({ preset, base, uncond, custom, n }) => {
    const w = makeWeights(preset, base, uncond, custom);
    return { ok: true, uncond: effectiveUncondMultiplier(w), values: resolveWeights(w, n) };
  },
  keyframes: ({ text }) => ({ ok: true, keyframes: parseKeyframes(text) }),
  schedule: ({ text, interpolation, progresses }) => {
    const s = parseSchedule(text, interpolation);
    return { ok: true, keyframes: s.keyframes, values: progresses.map((p) => scheduleAt(s.keyframes, s.interpolation, p)) };
  },
  drag_bar: ({ values, index, value }) => ({ ok: true, ...dragBar(values, index, value) }),
  move_keyframe: ({ keyframes, index, progress, multiplier }) => ({
    ok: true,
    ...moveKeyframe(keyframes, index, progress, multiplier),
  }),
  add_keyframe: ({ keyframes, progress, multiplier }) => ({ ok: true, ...addKeyframe(keyframes, progress, multiplier) }),
  remove_keyframe: ({ keyframes, index }) => ({ ok: true, ...removeKeyframe(keyframes, index) }),
};

function run(c) {
  try {
    return RUNNERS[c.kind](c);
  } catch (err) {
    if (err.name === "WeightsError" || err.name === "ScheduleError") return { ok: false, error: err.message, type: err.name };
    throw err;
  }
}

let input = "";
if (process.argv[2]) {
  input = readFileSync(process.argv[2], "utf8");
} else {
  process.stdin.setEncoding("utf8");
  for await (const chunk of process.stdin) input += chunk;
}
process.stdout.write(JSON.stringify(JSON.parse(input).map(run)));

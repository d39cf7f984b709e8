// web/js/lib/weights_curve.js (and the shared parse.js / plot.js helpers): the AST_ControlWeights plot's
// logic. Parity with the Python backend on large tables is in tests/unit/web/test_js_python_parity.py.

import { test } from "node:test";
import assert from "node:assert/strict";

import {
  COUNT_HINT,
  PRESETS,
  WeightsError,
  barAt,
  barGeometry,
  barLabel,
  dragBar,
  effectiveUncondMultiplier,
  formatWeightList,
  makeWeights,
  parseWeightList,
  residualCount,
  resolveWeights,
  softWeights,
  toggleResiduals,
  valueAtY,
  weightsPlotState,
} from "../../web/js/lib/weights_curve.js";
import { axisMax, axisMin, dragLimit, fitText, makeFrame, valueToY, wrapText, yTicks, yToValue } from "../../web/js/lib/plot.js";
import { formatNumber, pyAscii, pyFloat, pySplit, pyStrip } from "../../web/js/lib/parse.js";

const near = (a, b, tol = 1e-12) => Math.abs(a - b) <= tol;
const widgets = (over = {}) => ({
  preset: "balanced",
  base_multiplier: 0.825,
  uncond_multiplier: 1,
  custom_weights: "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",
  ...over,
});

test("pyFloat reads what Python's float() reads and refuses the rest", () => {
  assert.equal(pyFloat("0.5"), 0.5);
  assert.equal(pyFloat(" 1e-3\t"), 0.001);
  assert.equal(pyFloat(".5"), 0.5);
  assert.equal(pyFloat("5."), 5);
  assert.equal(pyFloat("1_000"), 1000);
  assert.equal(pyFloat("١٢"), 12); // Arabic-Indic digits count, as in Python
  assert.equal(pyFloat("-inf"), -Infinity);
  assert.ok(Number.isNaN(pyFloat("NaN")));
  for (const bad of ["", " ", "0x10", "1__0", "_1", "1_", "1e", ".", "Infinit", "1,5", "- 1", "\ufeff1"]) {
    assert.equal(pyFloat(bad), null, bad);
  }
});

test("pySplit / pyStrip use Python's whitespace, not JavaScript's", () => {
  assert.deepEqual(pySplit(" a\u2003b\x1cc\ufeffd "), ["a", "b", "c\ufeffd"]);
  assert.equal(pyStrip("\x85 x \u3000"), "x");
  assert.equal(pyAscii("it's"), `"it's"`);
  assert.equal(pyAscii(`a'b"c`), `'a\\'b"c'`); // both quotes: single ones, the ' escaped
  assert.equal(pyAscii("a\nb"), "'a\\nb'");
  // Python's ascii(): every non-ASCII character escaped, whatever Unicode version the browser knows
  assert.equal(pyAscii("\u00bd \u0661 \u{11f51}\x1c"), "'\\xbd \\u0661 \\U00011f51\\x1c'");
});

test("parseWeightList: commas, semicolons, newlines and whitespace all separate", () => {
  assert.deepEqual(parseWeightList("1, 0.9, 0.8"), [1, 0.9, 0.8]);
  assert.deepEqual(parseWeightList("1;0.5\n0.25 0.125\t2"), [1, 0.5, 0.25, 0.125, 2]);
  assert.deepEqual(parseWeightList(" 1 , 2 , "), [1, 2]); // a trailing comma is harmless
  assert.deepEqual(parseWeightList("-1, +2, 1e-3"), [-1, 2, 0.001]);
});

test("parseWeightList refuses bad tokens, non-finite values and empty lists, naming the token", () => {
  assert.throws(() => parseWeightList("1, abc"), {
    name: "WeightsError",
    message: "custom weight #2 is 'abc', not a number. Write numbers separated by commas.",
  });
  assert.throws(() => parseWeightList("1 nan"), /custom weight #2 is 'nan'; weights must be finite numbers from -10 to 10\./);
  assert.throws(() => parseWeightList("1, -10.5"), /custom weight #2 is '-10.5'; .* from -10 to 10\./);
  for (const gap of ["1,,2", ",1", "1, ,2"]) {
    assert.throws(() => parseWeightList(gap), /between commas is empty .*would move to another residual/, gap);
  }
  assert.throws(() => parseWeightList("inf"), /finite/);
  assert.throws(() => parseWeightList("1e400"), /finite/);
  for (const empty of ["", "  ", ",", ";;", "\n"]) {
    assert.throws(() => parseWeightList(empty), /custom weights are empty/, JSON.stringify(empty));
  }
  assert.ok(new WeightsError("x") instanceof Error);
});

test("softWeights: base^(n-1-i), middle block (last) gets 1", () => {
  assert.deepEqual(softWeights(3, 0.5), [0.25, 0.5, 1]);
  const w = softWeights(13);
  assert.equal(w.length, 13);
  assert.equal(w[12], 1);
  assert.ok(near(w[0], 0.825 ** 12));
  assert.deepEqual(softWeights(0), []);
});

test("makeWeights + resolveWeights mirror the node for every preset", () => {
  const balanced = makeWeights("balanced", 0.825, 1, "garbage is ignored unless custom");
  assert.deepEqual(resolveWeights(balanced, 10), Array(10).fill(1));
  const soft = makeWeights("prompt_more_important", 0.5, 1, "");
  assert.deepEqual(resolveWeights(soft, 4), [0.125, 0.25, 0.5, 1]);
  assert.equal(effectiveUncondMultiplier(soft), 1);
  const guess = makeWeights("controlnet_more_important", 0.825, 0.7, "");
  assert.deepEqual(resolveWeights(guess, 13), softWeights(13));
  assert.equal(effectiveUncondMultiplier(guess), 0);
  const custom = makeWeights("custom", 0.825, 0.4, "1 2 3");
  assert.deepEqual(resolveWeights(custom, 3), [1, 2, 3]);
  assert.equal(effectiveUncondMultiplier(custom), 0.4);
  assert.throws(() => resolveWeights(custom, 13), /got 3 custom weights but this ControlNet has 13 residuals/);
  assert.throws(() => makeWeights("Balanced", 0.825, 1, ""), /preset must be one of \['balanced', /);
  assert.throws(() => makeWeights("custom", 0.825, 1, "x"), /not a number/);
  assert.throws(() => makeWeights("balanced", NaN, 1, ""), /base_multiplier must be within 0\.\.1, got nan\./);
  // the node's range, checked before the custom text as the node does (the plot drew weights up to 130)
  assert.throws(() => makeWeights("prompt_more_important", 1.5, 1, ""), /base_multiplier must be within 0\.\.1, got 1\.5\./);
  assert.throws(() => makeWeights("custom", 0.825, 2, "1,,2"), /uncond_multiplier must be within 0\.\.1, got 2\.0\./);
  assert.deepEqual(PRESETS, ["balanced", "prompt_more_important", "controlnet_more_important", "custom"]);
});

test("weightsPlotState: presets use the residual toggle, custom its own count", () => {
  assert.equal(weightsPlotState(widgets()).n, 13);
  assert.equal(weightsPlotState(widgets(), 10).n, 10);
  assert.equal(weightsPlotState(widgets(), 10).family, "SDXL");
  const soft = weightsPlotState(widgets({ preset: "prompt_more_important", base_multiplier: 0.5 }), 10);
  assert.deepEqual(soft.values, softWeights(10, 0.5));
  const custom = weightsPlotState(widgets({ preset: "custom", custom_weights: "1 1 1 1 1 1 1 1 1 0.5" }), 13);
  assert.equal(custom.n, 10);
  assert.equal(custom.family, "SDXL");
  assert.equal(custom.countNote, "");
  const odd = weightsPlotState(widgets({ preset: "custom", custom_weights: "1, 2, 3" }));
  assert.equal(odd.countNote, COUNT_HINT);
  assert.equal(odd.countNote, "13 = SD1.x/SD2.x, 10 = SDXL");
  const bad = weightsPlotState(widgets({ preset: "custom", custom_weights: "1, x" }));
  assert.match(bad.error, /'x', not a number/);
  assert.deepEqual(bad.values, []);
  // a bad custom text does not matter to a preset, as in the backend
  assert.equal(weightsPlotState(widgets({ custom_weights: "1, x" })).error, "");
  assert.equal(weightsPlotState(widgets({ preset: "controlnet_more_important" })).uncond, 0);
});

test("residual toggle: 13 <-> 10, anything else reads as 13", () => {
  assert.equal(residualCount(undefined), 13);
  assert.equal(residualCount(10), 10);
  assert.equal(residualCount("10"), 10);
  assert.equal(residualCount(12), 13);
  assert.equal(toggleResiduals(13), 10);
  assert.equal(toggleResiduals(10), 13);
  assert.equal(toggleResiduals(undefined), 10);
});

test("formatWeightList: compact, 3 decimals, no -0", () => {
  assert.equal(formatWeightList([1, 0.5, 0.25]), "1, 0.5, 0.25");
  assert.equal(formatWeightList(softWeights(3)), "0.681, 0.825, 1");
  assert.equal(formatWeightList([-0.0001, 1.23456, 2e-7]), "0, 1.235, 0");
  assert.equal(formatNumber(1e300), "1e+300");
  assert.equal(formatNumber(0.1 + 0.2), "0.3");
});

test("dragBar writes text that parses back to what is shown", () => {
  const r = dragBar(Array(13).fill(1), 4, 0.33333);
  assert.equal(r.text, "1, 1, 1, 1, 0.333, 1, 1, 1, 1, 1, 1, 1, 1");
  assert.deepEqual(parseWeightList(r.text), r.values);
  assert.equal(r.values[4], 0.333);
  // a drag below zero stops at 0, above the limit at the limit
  assert.equal(dragBar([1, 1], 0, -3).values[0], 0);
  assert.equal(dragBar([1, 1], 1, 9, dragLimit(1)).values[1], 1.5);
  assert.equal(dragBar([1, 1], 1, NaN).values[1], 0);
  // presets become custom text of the same count, rounded
  const soft = dragBar(softWeights(10), 9, 1.2);
  assert.equal(soft.values.length, 10);
  assert.equal(soft.text.split(", ")[0], "0.177");
  assert.throws(() => dragBar([1, 1], 2, 0.5), RangeError);
  assert.throws(() => dragBar([1, 1], 0.5, 0.5), RangeError);
});

test("axis: top is max(1, largest rounded up to 0.5), bottom 0 unless negative", () => {
  assert.equal(axisMax([]), 1);
  assert.equal(axisMax([0.2, 0.9]), 1);
  assert.equal(axisMax([1]), 1);
  assert.equal(axisMax([1.01]), 1.5);
  assert.equal(axisMax([1.5]), 1.5);
  assert.equal(axisMax([2.2, NaN]), 2.5);
  assert.equal(axisMin([0, 1]), 0);
  assert.equal(axisMin([-0.2]), -0.5);
  assert.deepEqual(yTicks(0, 1), [0, 0.5, 1]);
  assert.deepEqual(yTicks(0, 3), [0, 1, 2, 3]);
  assert.deepEqual(yTicks(-0.5, 1), [-0.5, 0, 0.5, 1]);
  assert.deepEqual(yTicks(0, 7), [0, 2, 4, 6]); // wider spans: about five steps, rounded up to whole numbers
  assert.deepEqual(yTicks(-3, 10), [-3, 0, 3, 6, 9]);
  assert.equal(dragLimit(1), 1.5);
});

test("value <-> pixel mapping round-trips and puts yMax at the top of the plot area", () => {
  const f = makeFrame(300, 150, 0, 1.5);
  assert.equal(valueToY(f, 1.5), f.top);
  assert.equal(valueToY(f, 0), f.bottom);
  for (const v of [0, 0.3, 1, 1.5, 2]) assert.ok(near(yToValue(f, valueToY(f, v)), v));
  const tiny = makeFrame(10, 10, 0, 1);
  assert.ok(tiny.right > tiny.left && tiny.bottom > tiny.top);
});

test("makeFrame keeps the padding on each side, and half of a side too short for it", () => {
  const f = makeFrame(300, 150, 0, 1.5);
  assert.deepEqual([f.left, f.top, f.right, f.bottom], [30, 20, 290, 134]); // PAD: left 30, top 20, right 10, bottom 16
  // an empty value range (all values equal) is widened to one unit above, not divided by
  assert.deepEqual([makeFrame(300, 150, 0, 0).yMax, makeFrame(300, 150, 2, 1).yMax], [1, 3]);
  assert.equal(valueToY(makeFrame(300, 150, 0, 0), 0), 134);
  const flat = makeFrame(300, 30, 0, 1); // 20 + 16 rows of padding do not fit in 30
  assert.deepEqual([flat.top, flat.bottom], [15, 16]);
  assert.equal(makeFrame(300, 150, 0, 1, { left: 5, right: 7, top: 3, bottom: 11 }).bottom, 139);
});

test("the value axis reaches down to the lowest value when some are negative, whatever the others", () => {
  assert.equal(axisMin([-1.2, 3]), -1.5);
  assert.equal(axisMin([2, -0.1, 0.7]), -0.5);
  const frame = makeFrame(200, 100, -1, 1);
  assert.equal(valueToY(frame, -1), frame.bottom);
  assert.equal(valueToY(frame, 0), (frame.top + frame.bottom) / 2);
  assert.equal(valueToY(frame, 1), frame.top);
});

test("bars stay at least 1 px wide however many share a narrow plot", () => {
  const { bars, slot } = barGeometry(new Array(200).fill(1), 100, 80);
  assert.ok(slot < 1);
  for (const b of bars) assert.equal(b.width, 1);
  assert.ok(near(barGeometry([1, 1], 330, 150).bars[0].width, 0.7 * 145)); // 70 % of a slot otherwise
});

test("barGeometry: one bar per value, centred in equal slots, handle at the bar's end", () => {
  const values = [0.5, 1, 0.25];
  const geo = barGeometry(values, 330, 150);
  const { frame, bars } = geo;
  assert.equal(bars.length, 3);
  assert.equal(frame.yMax, 1);
  const slot = (frame.right - frame.left) / 3;
  bars.forEach((b, i) => {
    assert.ok(near(b.x, frame.left + slot * (i + 0.5)));
    assert.ok(near(b.y, valueToY(frame, values[i])));
    assert.equal(b.base, frame.bottom);
    assert.equal(barAt(geo, b.x), i);
    assert.ok(near(valueAtY(frame, b.y), values[i]));
  });
  assert.equal(barAt(geo, frame.left - slot), -1);
  assert.equal(barAt(geo, frame.left - 1), 0);
  assert.equal(barAt(geo, frame.right + 1), 2);
  // a frozen axis (during a drag) and the drag limit
  const frozen = barGeometry([3], 100, 100, { yMax: 1 });
  assert.equal(frozen.frame.yMax, 1);
  assert.equal(valueAtY(frozen.frame, -1000), 1.5);
  assert.equal(valueAtY(frozen.frame, 1000), 0);
  assert.equal(barLabel(12, 13), "M");
  assert.equal(barLabel(0, 13), "0");
});

test("drag round trip: pointer row -> value -> text -> parsed -> bar top at that row", () => {
  const geo = barGeometry(Array(13).fill(1), 400, 160);
  const target = valueToY(geo.frame, 0.4);
  const r = dragBar(geo.bars.map((b) => b.value), barAt(geo, geo.bars[7].x), valueAtY(geo.frame, target));
  assert.equal(r.values[7], 0.4);
  const again = barGeometry(parseWeightList(r.text), 400, 160);
  assert.ok(Math.abs(again.bars[7].y - target) < 0.5);
});

test("wrapText breaks on spaces at the measured width", () => {
  const lines = wrapText("aa bb cc dd", 5, (s) => s.length);
  assert.deepEqual(lines, ["aa bb", "cc dd"]);
  assert.deepEqual(wrapText("one\ntwo", 100, (s) => s.length), ["one", "two"]);
});

test("the browser extensions import only names the modules export", async () => {
  // The extensions import ComfyUI's app and cannot run under Node; check their relative imports instead.
  const { readFileSync } = await import("node:fs");
  const web = new URL("../../web/js/", import.meta.url);
  for (const file of ["weights_plot.js", "schedule_plot.js", "plot_widget.js"]) {
    const source = readFileSync(new URL(file, web), "utf8");
    const imports = [...source.matchAll(/import\s*\{([^}]*)\}\s*from\s*"(\.\/[^"]+)"/g)];
    assert.ok(imports.length > 0, file);
    for (const [, names, path] of imports) {
      const mod = await import(new URL(path, web));
      for (const name of names.split(",").map((s) => s.trim()).filter(Boolean)) {
        assert.ok(name in mod, `${file} imports ${name} from ${path}, which does not export it`);
      }
    }
  }
});

test("fitText keeps what fits and cuts the rest with an ellipsis", () => {
  const len = (s) => s.length; // one pixel per character
  assert.equal(fitText("balanced: every residual x1", 100, len), "balanced: every residual x1");
  assert.equal(fitText("balanced: every residual x1", 27, len), "balanced: every residual x1");
  assert.equal(fitText("balanced: every residual x1", 26, len), "balanced: every residual…");
  assert.equal(fitText("balanced: every residual x1", 10, len), "balanced:…"); // no space before the ellipsis
  assert.equal(fitText("balanced: every residual x1", 1, len), "…");
  assert.equal(fitText("balanced: every residual x1", 0, len), "");
  assert.equal(fitText("abc", -5, len), "");
  for (let w = 1; w < 30; w++) assert.ok(fitText("strength x multiplier over sampling progress", w, len).length <= w);
});

test("values a hand-edited workflow can hold that String()/Number() cannot convert are refused, not a TypeError", () => {
  const odd = { toString: 0 }; // valid JSON: {"toString": 0}
  assert.equal(residualCount(odd), 13);
  assert.throws(() => makeWeights(odd, 0.825, 1, ""), WeightsError);
  assert.throws(() => makeWeights("balanced", odd, 1, ""), /base_multiplier must be a number within 0\.\.1, got '\[object Object\]'\./);
  assert.throws(() => parseWeightList(odd), WeightsError);
  assert.equal(pyFloat(odd), null);
  assert.equal(weightsPlotState(widgets({ preset: "custom", custom_weights: odd })).error.length > 0, true);
});

test("a plot with negative weights maps rows to values from its own bottom value, and narrow canvases keep a margin", () => {
  const frame = makeFrame(200, 100, -1, 1);
  assert.equal(yToValue(frame, frame.top), 1);
  assert.equal(yToValue(frame, frame.bottom), -1);
  assert.equal(yToValue(frame, (frame.top + frame.bottom) / 2), 0);
  assert.equal(makeFrame(40, 100, 0, 1).left, 20); // half the width when the padding would not fit
  assert.equal(makeFrame(400, 100, 0, 1).left, 30);
});

test("weightsPlotState of refused settings has no bars", () => {
  const s = weightsPlotState({ preset: "custom", base_multiplier: 0.825, uncond_multiplier: 1, custom_weights: "1, x" });
  assert.equal(s.n, 0);
  assert.deepEqual(s.values, []);
  assert.match(s.error, /custom weight #2 is 'x'/);
});

test("bars are 70 % of their slot, centred on it, and a pointer half a slot outside still picks the edge bar", () => {
  const g = barGeometry([1, 1, 1, 1], 230, 100);
  const slot = g.slot;
  assert.equal(slot, (g.frame.right - g.frame.left) / 4);
  for (const bar of g.bars) {
    assert.ok(Math.abs(bar.width - 0.7 * slot) < 1e-9);
    assert.ok(Math.abs(bar.left + bar.width / 2 - bar.x) < 1e-9);
  }
  assert.equal(barAt(g, g.frame.right + slot / 2), 3);
  assert.equal(barAt(g, g.frame.right + slot / 2 + 0.01), -1);
  assert.equal(barAt(g, g.frame.left - slot / 2), 0);
  assert.equal(barAt(g, g.frame.left - slot / 2 - 0.01), -1);
});

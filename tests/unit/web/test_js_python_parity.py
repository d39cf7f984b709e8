"""The plots' JavaScript (web/js/lib) accepts, refuses and computes exactly what the Python backend does.

Each table runs once through tests/js/parity_driver.mjs under Node and once through
``affordance.controlnet.weights`` / ``affordance.controlnet.schedule``; parse success must agree on every
case, error messages must be the same text and values must match to 1e-12.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from affordance.controlnet.numbers import parse_float
from affordance.controlnet.schedule import ScheduleError, StrengthSchedule, parse_keyframes
from affordance.controlnet.weights import WeightsError, make_weights, parse_weight_list

ROOT = Path(__file__).resolve().parents[3]
TOL = 1e-12

# Texts both parsers see: separators, whitespace of every kind, Python float() spellings, bad tokens.
FLOAT_TEXTS = [
    "1", "-1", "+1", "0.5", ".5", "5.", "-.5", "+.5", "1e-3", "1E3", "1.5e+2", "1.e5", "1e", "e1", ".", "",
    " ", " 1.5 ", "\t2\n", "nan", "NaN", "-nan", "+nan", "inf", "-inf", "+inf", "Infinity", "-infinity",
    "iNfInItY", "infinit", "in f", "1e400", "-1e400", "1e-400", "0x10", "0b1", "0o7", "1_000", "1_000.5",
    "1e1_0", "1__0", "_1", "1_", "1_.5", "1._5", "1_e5", "1.2.3", "1,5", "- 1", "+-1", "--1", "١٢",
    "١_٢", "𝟙𝟚", "\u00a01\u3000", "1\u2003", "\ufeff1", "1\x00", "½", "²", "0", "-0", "00.5", "0e0",
    "0.\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", "\u0669", "\uff19\u09ef",
    "1" * 400, "0." + "0" * 330 + "1", "4.9e-324", "2.5e-324", "1.7976931348623157e308", "1.8e308",
    # ASCII separators \x1c-\x1f are whitespace to str.split() but not around a number for float(); digits beyond
    # the BMP (math digits, Osmanya of Unicode 4, Kawi of Unicode 15) are refused on both sides
    "\x1c1", "1\x1f", "\x1d", "\U000104a1", "\U00011f51", "1\U0001e4f2", "\uff11\uff0e\uff15", "\u0967",
]  # fmt: skip

WEIGHT_TEXTS = [
    "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1", "1, 0.9, 0.8", "1;0.5;0.25", "1\n2\n3", "1 2 3", "1\t2  3",
    "  1 ,, 2 ", "1,2,", ",1", "", "   ", ",", ";;", "\n", "nan", "1, nan", "inf", "-inf", "1, Infinity",
    "1e-3", "1e-3, 2E2", ".5 5. -1 +1", "1_000, 2", "1__0", "0x10", "1, 2, abc", "1.2.3", "1e400",
    "1e-400", "\t1\r\n2", "1\u00a02", "1\u20032", "1\x1c2", "1\x852", "1\ufeff2", "١,٢", "𝟙 𝟚",
    "- 1", "1e", "1;2\n3 4,5", "0.825, 0.825", "1,\n", "1\r2", "-0", "1\x002", "0.1" + ", 0.2" * 40,
    "10", "-10", "10.000001", "1, -1e3", "1,\u00a0,2", "1 ,\t, 2", "1,2,,", ",", "1,,", "1,\n2", "1;\n2",
    "1, 2\n\n3", "1,\n,2", "\n,1", "1, \U00011f51", "\U0001d7d9", "\uff11, \u0662", "1, \xbd", "1, e\u0301",
    "1, \u0870", "1, \U0001f600",
    # a linked value can be a megabyte: messages quote its start and end (code points, as Python counts)
    "1, " + "x" * 200, "1, " + "\U0001f600" * 100 + "1", "1, " + "9" * 400,
    # whole up to 80 code points, clipped from 81 (the same boundary on both sides)
    "1, " + "x" * 80, "1, " + "x" * 81, "1, " + "\u00e9" * 80, "1, " + "\u00e9" * 81,
    # every character Python's str.isspace() knows separates values; digits 0-9 of another script; escapes
    *("1" + chr(c) + "2" for c in range(0x110000) if chr(c).isspace()),
    "1, a\x7fb", "1, a\u00ffb\u0100c", "1, a\uffffb\U00010000c",
    # quotes: ascii() picks double quotes for a text with ' and no ", else single quotes with ' escaped
    "1, it's", "1, a'b\"c", '1, say "hi"', "1, '", "1, \\'",
]  # fmt: skip

KEYFRAME_TEXTS = [
    "0.0:1.0, 0.6:1.0, 1.0:0.2", "0:1", "0.5:", ":1", "0.5", ":", "0.5:1:2", "1.2:1", "-0.1:1", "0.5:-1",
    "0.5:-0", "0.5:nan", "nan:1", "inf:1", "0.5:inf", "0.5:1e400", "0:1, 0:2", "0:1, -0:2", "0.0:1, 0:1",
    ".5:.5", "0:1;1:0", "0:1\n1:0", "", " , ", ",,", "0 : 1 , 1 : 0", "0. 5:1", "1e-3:1e3", "1:0, 0:1",
    "0.5:1, 0.25:2, 0.75:0", "0_5:1", "0.5:1_0", "  0.3:0.5  ,", "0.5:0", "1:0", "0:0", "1.0:2, 1:3",
    "0.3:1, 0.30000000000000004:2", "0:1, 0.5:x", "a:b", "0:1 1:0", "0\u00a0:\u20031", "٠:١", "+0.5:+1",
    "0.5:1;;0.7:2", "0.5:1\r\n0.7:2", "1e-400:1", "0.5:1e-400", "0.2:1, 0.1:1, 0.1:2",
    "0:10", "0:10.0001", "0:1e3", "0:1, \U00011f51:0.5", "\uff10:\uff11",
    "0:" + "x" * 200, "0.5:" + "9" * 400, "9" * 300 + ":1", "0:1:" + "\u00e9" * 90,
]  # fmt: skip

SCHEDULES = [
    ("0.0:1.0, 0.6:1.0, 1.0:0.2", "linear"),
    ("0.0:1.0, 0.6:1.0, 1.0:0.2", "step"),
    ("0.5:0.7", "linear"),
    ("0.25:2, 0.75:0", "linear"),
    ("0.25:2, 0.75:0", "step"),
    ("0:0, 0.1:3, 0.2:0.5, 0.9:1.5, 1:0", "linear"),
    ("0:0, 0.1:3, 0.2:0.5, 0.9:1.5, 1:0", "step"),
    ("0.3:1, 0.30000000000000004:2", "linear"),
    ("1:0, 0:1", "linear"),
    ("0:1", "cubic"),
    ("0:1", "LINEAR"),
    ("bad", "linear"),
]


def progresses(text: str) -> list[float]:
    ps = [i / 400 for i in range(401)] + [-0.5, 1.5, 1e-300, 1 - 1e-16]
    try:
        for p, _ in parse_keyframes(text):
            ps += [p, math.nextafter(p, -1.0), math.nextafter(p, 2.0)]
    except ScheduleError:
        pass
    return ps


def run_js(node, tmp_path: Path, cases: list[dict]) -> list[dict]:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases), encoding="utf-8")
    out = node(["tests/js/parity_driver.mjs", str(path)])
    assert out.returncode == 0, out.stderr[-4000:]
    results = json.loads(out.stdout)
    assert len(results) == len(cases)
    return results


def as_float(x: float | str) -> float:
    return float(x)  # "nan", "inf", "-inf" come as strings


def close(a: list[float], b: list[float] | tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= TOL for x, y in zip(a, b))


def test_float_syntax_matches_python(node, tmp_path: Path) -> None:
    results = run_js(node, tmp_path, [{"kind": "float", "text": t} for t in FLOAT_TEXTS])
    for text, res in zip(FLOAT_TEXTS, results):
        try:
            expected = parse_float(text)
        except ValueError:
            assert not res["ok"], (text, res)
            continue
        assert res["ok"], (text, res)
        got = as_float(res["value"])
        assert (math.isnan(got) and math.isnan(expected)) or got == expected, (text, got, expected)


def test_weight_lists_match_python(node, tmp_path: Path) -> None:
    results = run_js(node, tmp_path, [{"kind": "weights", "text": t} for t in WEIGHT_TEXTS])
    for text, res in zip(WEIGHT_TEXTS, results):
        try:
            expected = parse_weight_list(text)
        except WeightsError as exc:
            assert not res["ok"], (text, res)
            assert res["type"] == "WeightsError"
            assert res["error"] == str(exc), (text, res["error"], str(exc))
            continue
        assert res["ok"], (text, res)
        assert close(res["values"], expected), (text, res["values"], expected)


WEIGHT_SETTINGS = [
    (preset, base, uncond, custom, n)
    for preset in ("balanced", "prompt_more_important", "controlnet_more_important", "custom", "Balanced", "soft")
    for base in (0.825, 0.5, 0.0, 1.0, 0.999, 1.5, -0.1, float("nan"))
    for uncond in (1.0, 0.0, 0.35, 2.0)
    for custom, n in (
        ("1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1", 13),
        ("1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1", 10),
        ("0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1", 10),
        ("nope", 13),
        ("", 13),
        ("2", 1),
    )
    for n in ((n, 0) if custom == "2" else (n,))
]


def python_weights(preset: str, base: float, uncond: float, custom: str, n: int) -> tuple[float, tuple[float, ...]]:
    """What the ControlNet Weights node builds (make_weights), resolved for ``n`` residuals."""
    w = make_weights(preset, base, uncond, custom)
    return w.effective_uncond_multiplier, w.resolve(n)


def test_presets_and_custom_weights_resolve_like_python(node, tmp_path: Path) -> None:
    cases = [
        {"kind": "make", "preset": p, "base": b, "uncond": u, "custom": c, "n": n} for p, b, u, c, n in WEIGHT_SETTINGS
    ]
    for case in cases:  # JSON has no NaN: the editor gets the text "nan" (Python compares with the float)
        case.update({k: "nan" for k in ("base", "uncond") if math.isnan(case[k])})
    results = run_js(node, tmp_path, cases)
    refused = 0
    for case, res in zip(cases, results):
        try:
            uncond, values = python_weights(
                case["preset"], float(case["base"]), float(case["uncond"]), case["custom"], case["n"]
            )
        except WeightsError as exc:
            assert not res["ok"], (case, res)
            assert res["error"] == str(exc), (case, res["error"], str(exc))
            refused += 1
            continue
        assert res["ok"], (case, res)
        assert res["uncond"] == uncond, (case, res)
        assert close(res["values"], values), (case, res["values"], values)
    assert 0 < refused < len(cases)


def test_keyframes_match_python(node, tmp_path: Path) -> None:
    results = run_js(node, tmp_path, [{"kind": "keyframes", "text": t} for t in KEYFRAME_TEXTS])
    for text, res in zip(KEYFRAME_TEXTS, results):
        try:
            expected = parse_keyframes(text)
        except ScheduleError as exc:
            assert not res["ok"], (text, res)
            assert res["type"] == "ScheduleError"
            assert res["error"] == str(exc), (text, res["error"], str(exc))
            continue
        assert res["ok"], (text, res)
        assert [tuple(k) for k in res["keyframes"]] == list(expected), (text, res["keyframes"], expected)


def test_duplicate_progress_message_matches_python(node, tmp_path: Path) -> None:
    # repr() writes 1e-05 but 0.0001 (exponents from -4 up are written out)
    texts = ["0:1, 0:2", "0.5:1, 0.5:1", "1e-05:1, 0.00001:2", "0.0001:1, 1e-4:2", "0.00011:1, 1.1e-4:0",
             "1:1, 1.0:0", "-0:2, 0:1", "0:2, -0:1"]  # fmt: skip
    results = run_js(node, tmp_path, [{"kind": "keyframes", "text": t} for t in texts])
    for text, res in zip(texts, results):
        with pytest.raises(ScheduleError) as exc:
            parse_keyframes(text)
        assert res["error"] == str(exc.value)


def test_schedules_sample_like_python(node, tmp_path: Path) -> None:
    cases = [{"kind": "schedule", "text": t, "interpolation": i, "progresses": progresses(t)} for t, i in SCHEDULES]
    results = run_js(node, tmp_path, cases)
    for case, res in zip(cases, results):
        try:
            schedule = StrengthSchedule.parse(case["text"], case["interpolation"])
        except ScheduleError as exc:
            assert not res["ok"], (case["text"], res)
            assert res["error"] == str(exc), (case["text"], res["error"], str(exc))
            continue
        assert res["ok"], (case["text"], res)
        expected = [schedule.at(p) for p in case["progresses"]]
        assert close(res["values"], expected), case["text"]


EDIT_KEYFRAMES = [[0.0, 1.0], [0.6, 1.0], [1.0, 0.2]]
EDITS = [
    {"kind": "drag_bar", "values": [1.0] * 13, "index": 4, "value": 0.33333},
    {"kind": "drag_bar", "values": [0.825 ** (12 - i) for i in range(13)], "index": 12, "value": 1.75},
    {"kind": "drag_bar", "values": [1.0] * 10, "index": 0, "value": -2.0},
    {"kind": "drag_bar", "values": [9.99999, 1e-9, 2.5], "index": 2, "value": 0.0005},
    {"kind": "drag_bar", "values": [1.0, 2.0], "index": 0, "value": 50.0},  # held at the largest weight, 10
    {"kind": "move_keyframe", "keyframes": EDIT_KEYFRAMES, "index": 1, "progress": 0.123456, "multiplier": 0.98765},
    {"kind": "move_keyframe", "keyframes": EDIT_KEYFRAMES, "index": 1, "progress": 5.0, "multiplier": -1.0},
    {"kind": "move_keyframe", "keyframes": EDIT_KEYFRAMES, "index": 0, "progress": 0.9, "multiplier": 3.0},
    {"kind": "move_keyframe", "keyframes": [[0.3, 1.0], [0.3004, 2.0]], "index": 1, "progress": 0.0, "multiplier": 1},
    {"kind": "move_keyframe", "keyframes": [[0.3006, 1.0], [0.9, 2.0]], "index": 1, "progress": 0.0, "multiplier": 1},
    {"kind": "add_keyframe", "keyframes": EDIT_KEYFRAMES, "progress": 0.3, "multiplier": 0.5},
    {"kind": "add_keyframe", "keyframes": EDIT_KEYFRAMES, "progress": 0.6001, "multiplier": 0.5},
    {"kind": "add_keyframe", "keyframes": [[0.5, 1.0]], "progress": -3.0, "multiplier": 7.25},
    {"kind": "remove_keyframe", "keyframes": EDIT_KEYFRAMES, "index": 2},
    {"kind": "remove_keyframe", "keyframes": [[0.5, 1.0]], "index": 0},
]


def test_text_written_by_edits_parses_in_python_to_what_the_plot_shows(node, tmp_path: Path) -> None:
    results = run_js(node, tmp_path, EDITS)
    for case, res in zip(EDITS, results):
        assert res["ok"], (case, res)
        if case["kind"] == "drag_bar":
            assert close(res["values"], parse_weight_list(res["text"])), (case, res)
            continue
        parsed = parse_keyframes(res["text"])
        assert [tuple(k) for k in res["keyframes"]] == list(parsed), (case, res)
        assert len({p for p, _ in parsed}) == len(parsed)

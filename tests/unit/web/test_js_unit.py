"""Runs the JavaScript unit tests (tests/js, Node's built-in test runner) as part of the pytest suite."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_javascript_unit_tests_pass(node) -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert files, "no JavaScript tests found in tests/js (*.test.mjs)"
    out = node(["--test", "--test-reporter=spec", *files])
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-6000:]
    # every file ran and at least one test per file passed (a runner that found nothing must not pass)
    assert "# pass 0" not in report and "ℹ pass 0" not in report, report[-3000:]

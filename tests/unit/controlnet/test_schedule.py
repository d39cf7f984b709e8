"""Keyframe parsing, interpolation, window checks and the sigma -> progress map."""

from __future__ import annotations

import dataclasses
import math

import pytest

from affordance.controlnet.schedule import (
    ProgressMap,
    ScheduleError,
    StrengthSchedule,
    check_window,
    parse_keyframes,
)


def test_parse_and_sort():
    assert parse_keyframes("1.0:0.2, 0.0:1.0; 0.6:1") == ((0.0, 1.0), (0.6, 1.0), (1.0, 0.2))


def test_a_schedule_is_immutable_and_hashable():
    """Shared by every control that a graph's cached output reaches: none may change it for the others."""
    schedule = StrengthSchedule.parse("0:1, 1:0.5")
    assert hash(schedule) == hash(StrengthSchedule.parse("0:1, 1:0.5"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.keyframes = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.5", r"should be 'progress:multiplier'"),
        ("a:1", "not a number"),
        ("1.5:1", "progress must be between 0 and 1"),
        ("0.5:-1", "multiplier must be a number from 0 to 10"),
        ("0:1e308, 1:1e308", "multiplier must be a number from 0 to 10, got 1e308"),  # overflowed to inf
        ("0.5:1, 0.5:2", "appears twice"),
        (" ", "no keyframes"),
    ],
)
def test_malformed_keyframes(text, message):
    with pytest.raises(ScheduleError, match=message):
        parse_keyframes(text)


def test_linear_and_step():
    lin = StrengthSchedule.parse("0.0:1.0, 0.6:1.0, 1.0:0.2")
    assert lin.at(0.0) == 1.0 and lin.at(0.6) == 1.0
    assert lin.at(0.8) == pytest.approx(0.6)
    assert lin.at(1.0) == pytest.approx(0.2)
    step = StrengthSchedule.parse("0.0:1.0, 0.5:0.0", "step")
    assert step.at(0.49) == 1.0 and step.at(0.5) == 0.0 and step.at(1.0) == 0.0
    held = StrengthSchedule.parse("0.2:0.5, 0.8:1.0")
    assert held.at(0.0) == 0.5 and held.at(0.9) == 1.0


def test_bad_interpolation():
    with pytest.raises(ScheduleError, match="'linear' or 'step'"):
        StrengthSchedule.parse("0:1", "cubic")


def test_window_checks():
    check_window(0.0, 1.0)
    check_window(1.0, 1.0)  # a window of one point, at either end
    check_window(0.0, 0.0)
    with pytest.raises(ScheduleError, match="within 0..1"):
        check_window(0.5, 1.005)
    with pytest.raises(ScheduleError, match="after end_percent"):
        check_window(0.7, 0.3)
    with pytest.raises(ScheduleError, match="within 0..1"):
        check_window(-0.1, 1.0)
    with pytest.raises(ScheduleError, match=r"within 0..1, got 1.5 and 1.0"):  # out of range, not "swap them"
        check_window(1.5, 1.0)


def test_progress_map_inverts_a_sigma_schedule():
    # An SD-like schedule: percent 0 -> a sentinel, then decreasing to 0 at percent 1.
    def p2s(p: float) -> float:
        if p <= 0:
            return 999999999.9
        if p >= 1:
            return 0.0
        return 14.6 * math.exp(-6 * p)

    pm = ProgressMap(p2s)
    for p in (0.1, 0.25, 0.5, 0.9):
        assert pm.progress(p2s(p)) == pytest.approx(p, abs=2e-3)
    assert pm.progress(1e12) == 0.0
    assert pm.progress(0.0) == 1.0


def test_window_and_keyframes_refuse_booleans_and_progress_beyond_1():
    with pytest.raises(ScheduleError, match="must be numbers within 0..1, got bool"):
        check_window(False, True)
    check_window(0, 1)
    assert parse_keyframes("0:1, 1:0.5") == ((0.0, 1.0), (1.0, 0.5))
    with pytest.raises(ScheduleError):
        parse_keyframes("0:1, 1.005:0.5")


def test_progress_map_interpolates_between_its_samples():
    """Linear between samples, exactly: with 4 samples of a linear schedule the map is that line's inverse."""
    pm = ProgressMap(lambda p: 1.0 - p, resolution=4)
    for sigma, progress in ((0.625, 0.375), (0.1, 0.9), (0.9, 0.1), (0.5, 0.5)):
        assert pm.progress(sigma) == pytest.approx(progress, abs=1e-12)


def _flow_percent_to_sigma(percent: float, shift: float = 3.0) -> float:
    """ComfyUI's ModelSamplingDiscreteFlow.percent_to_sigma (the ModelSamplingSD3 node on an SDXL flow finetune)."""
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    t = 1.0 - percent
    return shift * t / (1 + (shift - 1) * t)


def test_the_first_sigma_of_flow_sampling_is_progress_0():
    """Flow sampling's percent_to_sigma(0) is 1.0, the very sigma of its first step (discrete models give 1e9, never
    sampled): it is progress 0, not past the end of the map (an IndexError at the first step)."""
    assert ProgressMap(_flow_percent_to_sigma).progress(1.0) == 0.0


def test_a_sigma_at_or_below_the_last_sampled_sigma_is_progress_1():
    """A host whose schedule ends above 0 (or is flat at its end) still maps its last sigma, and anything below
    it, to progress 1: never beyond [0, 1], never the start of a flat tail."""
    pm = ProgressMap(lambda p: 2.0 - p, resolution=4)  # the last sigma is 1.0, not 0
    for sigma in (1.0, 0.999, 0.5, 0.0):
        assert pm.progress(sigma) == 1.0
    flat = ProgressMap(lambda p: max(0.0, 0.5 - p), resolution=10)  # sigma 0 from progress 0.5 on
    assert flat.progress(0.0) == 1.0
    assert flat.progress(0.25) == pytest.approx(0.25, abs=1e-12)

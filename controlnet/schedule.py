"""When control applies during sampling: a start/end window and a strength-over-progress curve.

Progress is the fraction of sampling done, 0 at the first (noisiest) step and 1 at the end, the
meaning ComfyUI gives ``start_percent``/``end_percent``. A host maps its timesteps (sigmas) to
progress with :class:`ProgressMap`, built from its own ``percent -> sigma`` function.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ControlNetError
from .numbers import clip, parse_float, quoted

# A keyframe multiplier above this only overflows half precision in the UNet; Apply's strength stops at 10 too.
MAX_MULTIPLIER = 10.0


class ScheduleError(ControlNetError, ValueError):
    """A keyframe text or window that cannot be used."""


class Interpolation(str, enum.Enum):
    """Between two keyframes: a straight line, or hold the earlier value."""

    LINEAR = "linear"
    STEP = "step"


def parse_keyframes(text: str) -> tuple[tuple[float, float], ...]:
    """Parse ``"0.0:1.0, 0.6:1.0, 1.0:0.2"`` into sorted ``(progress, multiplier)`` pairs.

    Raises:
        ScheduleError: a malformed pair, progress outside ``[0, 1]``, a repeated progress, a negative or
            non-finite multiplier, or no keyframe at all.
    """
    if not isinstance(text, str):
        raise ScheduleError(f"keyframes must be text such as '0.0:1.0, 1.0:0.2', got {type(text).__name__}.")
    pairs: list[tuple[float, float]] = []
    for i, chunk in enumerate(c.strip() for c in text.replace(";", ",").replace("\n", ",").split(",")):
        if not chunk:
            continue
        if chunk.count(":") != 1:
            raise ScheduleError(f"keyframe #{i + 1} {quoted(chunk)} should be 'progress:multiplier', e.g. '0.5:0.8'.")
        a, b = (s.strip() for s in chunk.split(":"))
        try:
            p, m = parse_float(a), parse_float(b)
        except ValueError:
            raise ScheduleError(
                f"keyframe #{i + 1} {quoted(chunk)} holds something that is not a number; write two numbers, e.g. '0.5:0.8'."
            ) from None
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ScheduleError(f"keyframe #{i + 1} {quoted(chunk)}: progress must be between 0 and 1, got {clip(a)}.")
        if not math.isfinite(m) or not 0 <= m <= MAX_MULTIPLIER:
            raise ScheduleError(
                f"keyframe #{i + 1} {quoted(chunk)}: the multiplier must be a number from 0 to {MAX_MULTIPLIER:g}, got {clip(b)}."
            )
        pairs.append((p, m))
    if not pairs:
        raise ScheduleError("no keyframes: write at least one 'progress:multiplier' pair, e.g. '0.0:1.0'.")
    pairs.sort()
    for (p1, _), (p2, _) in zip(pairs, pairs[1:]):
        if p1 == p2:
            raise ScheduleError(f"progress {p1} appears twice; give each keyframe its own progress.")
    return tuple(pairs)


@dataclass(frozen=True)
class StrengthSchedule:
    """A strength multiplier as a function of sampling progress.

    Before the first keyframe the first value holds, after the last the last value holds.
    """

    keyframes: tuple[tuple[float, float], ...]
    interpolation: Interpolation = Interpolation.LINEAR

    @classmethod
    def parse(cls, text: str, interpolation: str | Interpolation = Interpolation.LINEAR) -> StrengthSchedule:
        """Build from keyframe text (see :func:`parse_keyframes`)."""
        try:
            interp = Interpolation(interpolation)
        except ValueError:
            raise ScheduleError(f"interpolation must be 'linear' or 'step', got {quoted(interpolation)}.") from None
        return cls(parse_keyframes(text), interp)

    def at(self, progress: float) -> float:
        """The multiplier at ``progress`` in ``[0, 1]``.

        >>> StrengthSchedule(((0.0, 1.0), (1.0, 0.0))).at(0.25)
        0.75
        """
        ps = [p for p, _ in self.keyframes]
        i = bisect.bisect_right(ps, progress)
        if i == 0:
            return self.keyframes[0][1]
        if i == len(ps):
            return self.keyframes[-1][1]
        (p0, m0), (p1, m1) = self.keyframes[i - 1], self.keyframes[i]
        if self.interpolation is Interpolation.STEP:
            return m0
        return m0 + (m1 - m0) * (progress - p0) / (p1 - p0)


class ProgressMap:
    """Maps a host's sigma to sampling progress by inverting its ``percent -> sigma`` function.

    Args:
        percent_to_sigma: decreasing in percent (percent 0 gives the largest sigma).
        resolution: number of samples of the function.
    """

    def __init__(self, percent_to_sigma: Callable[[float], float], resolution: int = 1000) -> None:
        self._ps = [i / resolution for i in range(resolution + 1)]
        # ascending sigmas for bisect: reverse the decreasing curve
        self._sig = [float(percent_to_sigma(p)) for p in reversed(self._ps)]
        self._pr = list(reversed(self._ps))

    def progress(self, sigma: float) -> float:
        """Progress in ``[0, 1]`` for ``sigma`` (linear between samples)."""
        sig = self._sig
        if sigma <= sig[0]:
            return self._pr[0]
        if sigma >= sig[-1]:
            return self._pr[-1]
        i = bisect.bisect_right(sig, sigma)
        s0, s1 = sig[i - 1], sig[i]
        p0, p1 = self._pr[i - 1], self._pr[i]
        return p0 if s1 == s0 else p0 + (p1 - p0) * (sigma - s0) / (s1 - s0)


def check_window(start: float, end: float) -> None:
    """Refuse a window that is not two numbers within ``[0, 1]``, or with start after end."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, end)):
        raise ScheduleError(
            f"start_percent and end_percent must be numbers within 0..1, got {type(start).__name__} "
            f"{str(start)[:40]!a} and {type(end).__name__} {str(end)[:40]!a}."
        )
    if not (0.0 <= start <= 1.0 and 0.0 <= end <= 1.0):
        raise ScheduleError(f"start_percent and end_percent must be within 0..1, got {start} and {end}.")
    if start > end:
        raise ScheduleError(f"start_percent ({start}) is after end_percent ({end}); swap them.")

"""Per-residual weights: balanced, A1111's soft weights, control on the conditional side only, custom.

Weights are listed in residual order, input blocks first and the middle block last.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .errors import ControlNetError
from .numbers import parse_float, quoted

SOFT_BASE = 0.825
# Larger weights only overflow half precision (65504) on the way through the UNet; Apply's strength stops at 10 too.
MAX_WEIGHT = 10.0


class WeightsError(ControlNetError, ValueError):
    """A weight list or preset that cannot apply to the ControlNet it meets."""


class Preset(str, enum.Enum):
    """How control is weighted across residuals (names follow the A1111 control modes)."""

    BALANCED = "balanced"
    PROMPT_MORE_IMPORTANT = "prompt_more_important"
    CONTROLNET_MORE_IMPORTANT = "controlnet_more_important"
    CUSTOM = "custom"


def soft_weights(n: int, base: float = SOFT_BASE) -> tuple[float, ...]:
    """``base ** (n - 1 - i)`` for residual ``i``: the deepest (middle) gets 1, the first input block least.

    >>> [round(w, 4) for w in soft_weights(3, 0.5)]
    [0.25, 0.5, 1.0]
    """
    return tuple(base ** float(n - 1 - i) for i in range(n))


def parse_weight_list(text: str) -> tuple[float, ...]:
    """Parse ``"1, 0.9, 0.8"`` into floats; commas, semicolons or whitespace (line ends too) separate values.

    An empty field between two commas (or semicolons) is refused, since every later weight would move to
    another residual; a trailing one is ignored.

    Raises:
        WeightsError: a value that is not a finite number, or an empty list (or not text at all).
    """
    if not isinstance(text, str):
        raise WeightsError(f"custom weights must be text such as '1, 0.9, 0.8', got {type(text).__name__}.")
    parts = text.replace(";", ",").replace("\n", " ").split(",")  # a line end separates like a space
    while parts and not parts[-1].strip():  # a trailing comma (or blank line) is harmless
        parts.pop()
    gap = next((i for i, p in enumerate(parts) if not p.strip()), None)
    if len(parts) > 1 and gap is not None:
        raise WeightsError(
            f"custom weights: field #{gap + 1} between commas is empty (two commas in a row?); every later weight "
            "would move to another residual. Write one number between each pair of commas."
        )
    items = [tok for p in parts for tok in p.split()]
    values = []
    for i, tok in enumerate(items):
        try:
            v = parse_float(tok)
        except ValueError:
            raise WeightsError(f"custom weight #{i + 1} is {quoted(tok)}, not a number. Write numbers separated by commas.") from None
        if not math.isfinite(v) or abs(v) > MAX_WEIGHT:
            raise WeightsError(
                f"custom weight #{i + 1} is {quoted(tok)}; weights must be finite numbers from -{MAX_WEIGHT:g} to {MAX_WEIGHT:g}."
            )
        values.append(v)
    if not values:
        raise WeightsError("custom weights are empty: give one number per residual, separated by commas.")
    return tuple(values)


def _refuse_boolean(name: str, value: object) -> None:
    """A multiplier may not be a boolean (refused as strength and the window refuse one): ``float(False)`` is 0.0,
    which would switch a side's control off unnoticed."""
    if isinstance(value, bool):
        raise WeightsError(f"{name} must be a number, got the boolean {value}; give 0.0 or 1.0.")


@dataclass(frozen=True)
class ControlWeights:
    """A weighting of a ControlNet's residuals, resolved against the residual count it meets.

    Attributes:
        preset: the mode.
        base_multiplier: base of the soft weights (A1111 uses 0.825).
        custom: with ``Preset.CUSTOM``, one weight per residual, middle last.
        uncond_multiplier: multiplies control on the unconditional (negative) side; 1 keeps it.
    """

    preset: Preset = Preset.BALANCED
    base_multiplier: float = SOFT_BASE
    custom: tuple[float, ...] = ()
    uncond_multiplier: float = 1.0

    def __post_init__(self) -> None:
        if self.preset is Preset.CUSTOM and not self.custom:
            raise WeightsError("the custom preset needs custom weights: one number per residual, middle last.")
        _refuse_boolean("base_multiplier", self.base_multiplier)
        _refuse_boolean("uncond_multiplier", self.uncond_multiplier)
        if not math.isfinite(self.uncond_multiplier) or not math.isfinite(self.base_multiplier):
            raise WeightsError("base_multiplier and uncond_multiplier must be finite numbers.")

    @property
    def cond_only(self) -> bool:
        """Whether the unconditional side gets no control at all."""
        return self.preset is Preset.CONTROLNET_MORE_IMPORTANT or self.uncond_multiplier == 0.0

    @property
    def effective_uncond_multiplier(self) -> float:
        """``0`` for "ControlNet is more important" (guess mode), else ``uncond_multiplier``."""
        return 0.0 if self.preset is Preset.CONTROLNET_MORE_IMPORTANT else self.uncond_multiplier

    def resolve(self, n: int, family: str = "this ControlNet") -> tuple[float, ...]:
        """One multiplier per residual for a ControlNet with ``n`` residuals.

        Raises:
            WeightsError: custom weights whose count is not ``n`` (named with the family).
        """
        if self.preset is Preset.BALANCED:
            return (1.0,) * n
        if self.preset in (Preset.PROMPT_MORE_IMPORTANT, Preset.CONTROLNET_MORE_IMPORTANT):
            return soft_weights(n, self.base_multiplier)
        if len(self.custom) != n:
            raise WeightsError(
                f"got {len(self.custom)} custom weights but {family} has {n} residuals "
                f"({n - 1} input blocks and the middle block, middle last). SD1.x/SD2.x ControlNets take 13 "
                "weights, SDXL ControlNets 10."
            )
        return self.custom


def make_weights(preset: str, base_multiplier: float, uncond_multiplier: float, custom_weights: str) -> ControlWeights:
    """A weighting from the ControlNet Weights node's widget values (the editor's plot checks the same).

    Raises:
        WeightsError: an unknown preset, a multiplier outside ``0..1`` (or not a number, or a boolean), or custom
            weights that do not parse (only read with the ``custom`` preset; counted when applied).
    """
    try:
        p = Preset(preset)
    except ValueError:
        raise WeightsError(f"preset must be one of {[x.value for x in Preset]}, got {quoted(preset)}.") from None
    multipliers = []
    for name, v in (("base_multiplier", base_multiplier), ("uncond_multiplier", uncond_multiplier)):
        _refuse_boolean(name, v)
        try:
            x = parse_float(v) if isinstance(v, str) else float(v)
        except (TypeError, ValueError):
            raise WeightsError(f"{name} must be a number within 0..1, got {quoted(v)}.") from None
        if not 0.0 <= x <= 1.0:  # also NaN
            raise WeightsError(f"{name} must be within 0..1, got {x!r}.")
        multipliers.append(x)
    custom = parse_weight_list(custom_weights) if p is Preset.CUSTOM else ()
    return ControlWeights(p, multipliers[0], custom, multipliers[1])

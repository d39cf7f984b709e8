"""The result of a ControlNet forward: one residual per UNet input block plus one for the middle block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import InputError


@dataclass(frozen=True)
class ControlResiduals:
    """Residuals to add to the UNet's skip connections (``down``) and middle block (``mid``).

    Attributes:
        down: one tensor per UNet input block, in input-block order (12 for SD1/2, 9 for SDXL);
            entry ``i`` is ``(N, C_i, H / f_i, W / f_i)`` for latent ``(N, 4, H, W)``.
        mid: ``(N, C_mid, H / 8, W / 8)`` (SD1/2) or ``(N, C_mid, H / 4, W / 4)`` (SDXL).

    An entry is ``None`` only when the forward was asked not to compute it (``needed``); ``None`` counts
    as zero (it is what ComfyUI's UNet skips).
    """

    down: tuple[torch.Tensor | None, ...]
    mid: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.down) + 1

    def as_list(self) -> list[torch.Tensor | None]:
        """All residuals in order, middle last (the order weight lists use)."""
        return [*self.down, self.mid]

    def scaled(self, weights: float | Sequence[float]) -> ControlResiduals:
        """Multiply by one weight, or by one weight per residual (middle last); returns new tensors."""
        if isinstance(weights, (int, float)):
            weights = [float(weights)] * len(self)
        if len(weights) != len(self):
            raise InputError(
                f"got {len(weights)} weights for {len(self)} residuals: give one per input block "
                f"({len(self.down)}) and one for the middle block, middle last."
            )
        out = [None if r is None else r * w for r, w in zip(self.as_list(), weights)]
        return ControlResiduals(tuple(out[:-1]), out[-1])

    def __add__(self, other: ControlResiduals) -> ControlResiduals:
        if len(other) != len(self):
            raise InputError(f"cannot add residuals of {len(self)} and {len(other)} entries (different families).")
        total = [_add(a, b) for a, b in zip(self.as_list(), other.as_list())]
        return ControlResiduals(tuple(total[:-1]), total[-1])


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Sum where ``None`` is zero."""
    if a is None:
        return b
    return a if b is None else a + b

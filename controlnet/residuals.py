"""The result of a ControlNet forward: one residual per UNet input block plus one for the middle block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ControlResiduals:
    """Residuals to add to the UNet's skip connections (``down``) and middle block (``mid``).

    Attributes:
        down: one tensor per UNet input block, in input-block order (12 for SD1/2, 9 for SDXL);
            entry ``i`` is ``(N, C_i, H / f_i, W / f_i)`` for latent ``(N, 4, H, W)``.
        mid: ``(N, C_mid, H / 8, W / 8)`` (SD1/2) or ``(N, C_mid, H / 4, W / 4)`` (SDXL).
    """

    down: tuple[torch.Tensor, ...]
    mid: torch.Tensor

    def __len__(self) -> int:
        return len(self.down) + 1

    def as_list(self) -> list[torch.Tensor]:
        """All residuals in order, middle last (the order weight lists use)."""
        return [*self.down, self.mid]

    def scaled(self, weights: float | Sequence[float]) -> ControlResiduals:
        """Multiply by one weight, or by one weight per residual (middle last); returns new tensors."""
        if isinstance(weights, (int, float)):
            weights = [float(weights)] * len(self)
        if len(weights) != len(self):
            raise ValueError(
                f"got {len(weights)} weights for {len(self)} residuals: give one per input block "
                f"({len(self.down)}) and one for the middle block, middle last."
            )
        out = [r * w for r, w in zip(self.as_list(), weights)]
        return ControlResiduals(tuple(out[:-1]), out[-1])

    def __add__(self, other: ControlResiduals) -> ControlResiduals:
        if len(other) != len(self):
            raise ValueError(f"cannot add residuals of {len(self)} and {len(other)} entries (different families).")
        return ControlResiduals(tuple(a + b for a, b in zip(self.down, other.down)), self.mid + other.mid)

"""The part of ComfyUI's ``model_conds`` protocol shared by our per-row marks (:mod:`.negative_rows`, :mod:`.row_places`).

ComfyUI makes one entry per chunk with ``process_cond`` (each mark's own), joins the entries of the chunks batched
into one model call with ``concat`` (when every pair ``can_concat``) and asks each for its ``size`` when it
estimates memory. The marks hold host tuples only, one value per row, never tensors.
"""

from __future__ import annotations

from typing import Any


class RowTuple:
    """A ``model_conds`` entry holding one host value per row of a conditioning chunk, in ``cond``."""

    __slots__ = ("cond",)

    def __init__(self, rows: tuple[Any, ...]) -> None:
        self.cond: tuple[Any, ...] = tuple(rows)

    def can_concat(self, other: object) -> bool:
        """Any two entries of one kind join: a mark never stops ComfyUI from batching cond and uncond together."""
        return isinstance(other, type(self))

    def concat(self, others: list[Any]) -> tuple[Any, ...]:
        """One value per row of the model call, chunks in ComfyUI's batch order."""
        rows = self.cond
        for o in others:
            rows = rows + o.cond
        return rows

    def size(self) -> list[int]:
        """The row count (ComfyUI's memory estimate asks every entry; unknown keys cost nothing there)."""
        return [len(self.cond)]

"""Which rows of a model call came through an Apply node's ``negative`` input, told to our control by ComfyUI itself.

ComfyUI tells a control only each chunk's index in the guider's call (``cond_or_uncond``): KSampler passes
(positive, negative), so 1 means the negative there, but SelfAttentionGuidance's extra pass, DualCFGGuider and
PerpNegGuider order their calls differently. ``uncond_multiplier`` and "ControlNet is more important" must find the
negative whatever the guider, so our Apply node marks each conditioning entry it returns with the input it came
through, as a ``model_conds`` entry. ComfyUI keeps ``model_conds`` through its conditioning nodes, repeats each entry
to a chunk's batch (``process_cond``) and joins the chunks batched into one model call (``concat``): the control
then finds one flag per row of that call in its ``cond`` argument, on the host (no device work, no sync).
"""

from __future__ import annotations

from typing import Any

from .row_conds import RowTuple

KEY = "affordance_negative"
"""The ``model_conds`` key (and the key of the joined flags in a model call's ``cond``)."""


class NegativeRows(RowTuple):
    """A ``model_conds`` entry: for each row of a conditioning chunk, whether it came through a ``negative`` input.

    Follows ComfyUI's conds protocol (:class:`.row_conds.RowTuple`) by duck typing, so it needs no ComfyUI import.
    It holds a host tuple, never a tensor: ComfyUI moves tensors to the device and slices them for context windows;
    a model call passes other values to the UNet, which ignores keys it does not know.
    """

    __slots__ = ()

    def __init__(self, rows: tuple[bool, ...]) -> None:
        if not rows:
            raise ValueError("NegativeRows needs at least one row flag, got none.")
        super().__init__(tuple(bool(r) for r in rows))

    def process_cond(self, batch_size: int, **kwargs: Any) -> NegativeRows:
        """The entry for a chunk of ``batch_size`` rows: the flags repeated in turn (cut to ``batch_size``)."""
        reps = -(-batch_size // len(self.cond))
        return NegativeRows((self.cond * reps)[:batch_size])


def mark(options: dict, negative: bool) -> dict:
    """A copy of a conditioning entry's options whose ``model_conds`` says which input it came through.

    Args:
        options: the entry's options dict (not modified; its ``model_conds`` dict is copied, not changed).
        negative: True for the Apply node's ``negative`` input.
    """
    out = options.copy()
    out["model_conds"] = {**options.get("model_conds", {}), KEY: NegativeRows((negative,))}
    return out


def row_flags(cond: dict, order: list | tuple, n: int, chunks: int, tiled: bool = False) -> tuple[bool, ...] | None:
    """Per-row "is negative" for a model call of ``n`` rows, or ``None`` when neither source can say.

    Args:
        cond: the call's conditioning; our marks joined under :data:`KEY` when every batched entry has one.
        order: ComfyUI's ``cond_or_uncond`` (one index per chunk, 1 = the guider's second list), the fallback for
            entries not marked by our Apply node (e.g. ComfyUI's Apply nodes on our ControlNet).
        n: rows in the call (``chunks`` x per-chunk batch).
        chunks: the call's chunk count (ComfyUI's ``batched_number``).
        tiled: the call holds the rows of one call once per tile, in turn (a tiling host such as Tiled Diffusion
            set the hint): marks for one call's rows are repeated in turn. Otherwise marks that do not cover the
            call (an entry that did not come through our Apply node) are not used.
    """
    marked = cond.get(KEY)
    if isinstance(marked, tuple) and len(marked) == n:
        return marked
    if tiled and isinstance(marked, tuple) and marked and n % len(marked) == 0:
        # a host that tiles the sampling (Tiled Diffusion) batches the call's rows once per tile, in turn, and
        # hands the flags on as they were: they repeat in turn too
        return marked * (n // len(marked))
    if not order or len(order) != chunks or n % chunks:
        return None
    per = n // chunks
    return tuple(c == 1 for c in order for _ in range(per))

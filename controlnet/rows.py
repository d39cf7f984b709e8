"""Running a ControlNet on some rows of a model batch only, decided on the host (nothing here reads the device).

Skipped rows: ComfyUI batches cond and uncond chunks into one model call; when the negative rows' control is
weighted zero ("ControlNet is more important", ``uncond_multiplier`` 0) their residuals are zeros, so the network
runs on the other rows and the residuals are spread back to the whole batch with zeros in between. Rows come in
runs (one per chunk), so taking them is a view for one run and one copy for several.

Shared rows: the chunks of one ComfyUI call sample the same latent at the same timestep with the same hint, and
differ only in their text. Rows whose network inputs are equal share the part of the forward that reads nothing
else (:func:`shared_layout`, :func:`repeat_rows`); the caller says which rows are equal (:func:`first_equal`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F

Runs = tuple[tuple[int, int], ...]
"""Half-open row ranges ``(start, stop)``, ascending and disjoint."""


def kept_runs(skipped: tuple[bool, ...]) -> Runs:
    """The runs of rows not skipped, e.g. ``(True, False, False, True)`` -> ``((1, 3),)``; ``()`` if all are."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, skip in enumerate((*skipped, True)):
        if not skip and start is None:
            start = i
        elif skip and start is not None:
            runs.append((start, i))
            start = None
    return tuple(runs)


def take_rows(t: torch.Tensor, runs: Runs) -> torch.Tensor:
    """Rows ``runs`` of ``(N, ...)`` ``t`` as ``(kept, ...)``: a view for one run, else one new tensor."""
    if len(runs) == 1:
        start, stop = runs[0]
        return t[start:stop]
    return torch.cat([t[start:stop] for start, stop in runs])


def spread_rows(t: torch.Tensor, runs: Runs, n: int) -> torch.Tensor:
    """``(kept, ...)`` rows back at ``runs`` of a new ``(n, ...)`` tensor of ``t``'s dtype/device, zeros elsewhere.

    One run (the usual case: one cond chunk beside one uncond chunk) is a single zero-padding call, so a step
    dispatches one operator per residual; several runs fill a zero tensor run by run.

    Raises:
        ValueError: runs reaching beyond ``n`` rows (or before row 0), or holding another row count than ``t``.
    """
    if runs and (runs[0][0] < 0 or runs[-1][1] > n):
        raise ValueError(f"spread_rows: the runs {runs} reach beyond the {n} rows of the batch.")
    if len(runs) == 1 and runs[0][1] - runs[0][0] == t.shape[0]:
        start, stop = runs[0]
        return F.pad(t, (0, 0) * (t.dim() - 1) + (start, n - stop))
    held = sum(stop - start for start, stop in runs)
    if held != t.shape[0]:
        raise ValueError(f"spread_rows: the runs {runs} hold {held} rows but the tensor has {t.shape[0]}.")
    out = t.new_zeros((n, *t.shape[1:]))
    offset = 0
    for start, stop in runs:
        out[start:stop] = t[offset : offset + stop - start]
        offset += stop - start
    return out


Pieces = tuple[tuple[int, int], ...]
"""Row ranges ``(start, stop)`` of a smaller batch, in output order; a range may repeat (see :func:`repeat_rows`)."""


def first_equal(keys: Sequence[Hashable | None]) -> tuple[int, ...]:
    """Per row, the index of the first row with the same key; a ``None`` key (unknown) matches no other row.

    E.g. ``(a, a)`` -> ``(0, 0)``; ``(a, b, a, b)`` -> ``(0, 1, 0, 1)``; ``(None, None)`` -> ``(0, 1)``.
    """
    first: dict[Hashable, int] = {}
    out = []
    for i, key in enumerate(keys):
        out.append(i if key is None else first.setdefault(key, i))
    return tuple(out)


def check_shared(shared: Sequence[int], n: int) -> str | None:
    """Why ``shared`` cannot describe a batch of ``n`` rows (``None`` if it can).

    ``shared[r]`` must be an int in ``0..r`` naming a row that names itself: the first row of its group.
    """
    if len(shared) != n:
        return f"it has {len(shared)} entries for a batch of {n} rows"
    for r, s in enumerate(shared):
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= r:
            return f"entry {r} is {s!r}, not a row number from 0 to {r}"
        if shared[s] != s:
            return f"entry {r} names row {s}, which itself names row {shared[s]} (name the first row of the group)"
    return None


def shared_layout(shared: Sequence[int]) -> tuple[Runs, Pieces] | None:
    """How to compute a batch once per group of equal rows and rebuild it; ``None`` when no two rows are equal.

    Args:
        shared: per row, the first row whose inputs it repeats (as :func:`first_equal` gives; checked with
            :func:`check_shared`).

    Returns:
        ``(take, back)``: ``take`` the runs of first rows (pass to :func:`take_rows`), ``back`` the pieces of the
        taken rows that rebuild all rows in order (pass to :func:`repeat_rows`). E.g. ``(0, 1, 0, 1)`` ->
        ``(((0, 2),), ((0, 2), (0, 2)))``.
    """
    firsts = [r for r, s in enumerate(shared) if s == r]
    if len(firsts) == len(shared):
        return None
    at = {r: k for k, r in enumerate(firsts)}
    return _ranges(firsts), _ranges([at[s] for s in shared])


def _ranges(index: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Consecutive ascending stretches of ``index`` as ``(start, stop)`` ranges, e.g. ``(0, 1, 0, 1)`` -> ``((0, 2), (0, 2))``."""
    out: list[tuple[int, int]] = []
    for i in index:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return tuple(out)


def repeat_rows(t: torch.Tensor, back: Pieces) -> torch.Tensor:
    """The rows of ``(kept, ...)`` ``t`` at ``back`` (one :func:`shared_layout` result) as one new ``(n, ...)`` tensor.

    Always a new tensor, never a view of ``t``: callers scale residuals in place. It keeps ``t``'s memory layout
    when rows are ``t``'s outermost dimension (a token sequence that is a transposed view of an image, a
    channels-last image), so the layers after it see the strides they would without sharing: a layout changed
    here would follow through the rest of the network (on the CPU every convolution then repacks its weights).
    """
    strides = t.stride()
    order = [0, *sorted(range(1, t.dim()), key=lambda d: -strides[d])]  # t's dimensions from outer to inner
    keep = order != list(range(t.dim()))  # a permuted layout: tokens of an image, channels-last
    laid = t.permute(order) if keep else t  # rows outermost, the rest in t's own memory order
    if list(back) == [(0, t.shape[0])] * len(back):  # the usual case (cond and uncond of the same latents)
        out = laid.repeat(len(back), *([1] * (t.dim() - 1)))  # one operator: a step dispatches few more
    else:
        out = torch.cat([laid[start:stop] for start, stop in back])
    return out.permute([order.index(d) for d in range(t.dim())]) if keep else out

"""Running a ControlNet on some rows of a model batch only: the rows whose control is weighted zero are skipped.

ComfyUI batches cond and uncond chunks into one model call; when the negative rows' control is weighted zero
("ControlNet is more important", ``uncond_multiplier`` 0) their residuals are zeros, so the network runs on the
other rows and the residuals are spread back to the whole batch with zeros in between. Rows come in runs (one
per chunk), so taking them is a view for one run and one copy for several; nothing here reads the device.
"""

from __future__ import annotations

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

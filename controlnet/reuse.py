"""Lossy residual reuse: compute the ControlNet every ``k`` model evaluations and reuse its outputs in between.

A ControlNet runs once per model evaluation, and its residuals change slowly from one denoising step to the
next. Reusing them for ``k - 1`` evaluations saves that share of the ControlNet's cost at the price of a
small, measurable change of the result (``bench/bench_reuse.py``); ``k = 1`` is the exact behaviour.

What is cached is the network's **unweighted** output: the host applies strength, schedule, per-residual
weights and masks to it at every evaluation, so everything that varies in time stays exact in time and only
the network's own dependence on the noisy latent and the timestep is approximated.

The cache is host-free. The host describes each call with

* ``sigma``: the noise level of the evaluation (a change of sigma is a new evaluation; a rising sigma, as at
  a sampler restart, drops everything cached);
* ``layout``: any hashable key for the batch layout (shape, dtype, device, which rows are conditional...);
  residuals are only ever reused for the very same layout;
* ``conditioning``: the tensors the network reads besides the latent (text context, SDXL label); residuals
  are only reused when these are equal, so two prompts batched separately never share residuals.

An entry is reused while it has served fewer than ``k - 1`` reuses and is fewer than ``k`` evaluations old;
the first evaluation of each layout, and every evaluation outside the policy's progress window, is computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from .errors import ControlNetError
from .graphs import Outputs

MAX_EVERY_K = 16


class ReuseError(ControlNetError, ValueError):
    """A residual-reuse setting that cannot be used."""


@dataclass(frozen=True)
class ReusePolicy:
    """How often the ControlNet really runs.

    Attributes:
        every_k: compute the residuals at one evaluation in ``every_k`` and reuse them for the ``every_k - 1``
            evaluations after it; ``1`` computes every time (exact).
        start_percent: sampling progress (0 = first, noisiest step; 1 = end) from which reuse is allowed.
        end_percent: sampling progress after which every evaluation is computed again (e.g. 0.8 keeps the
            last fifth of sampling exact).

    Raises:
        ReuseError: ``every_k`` not an integer in ``1..MAX_EVERY_K``, or a window outside ``[0, 1]`` or reversed.
    """

    every_k: int = 1
    start_percent: float = 0.0
    end_percent: float = 1.0

    def __post_init__(self) -> None:
        k = self.every_k
        if isinstance(k, bool) or not isinstance(k, int):
            raise ReuseError(
                f"every_k_steps must be a whole number from 1 to {MAX_EVERY_K}, got {k!r} ({type(k).__name__}); "
                "use 1 for exact sampling, 2 to run the ControlNet every other step."
            )
        if not 1 <= k <= MAX_EVERY_K:
            raise ReuseError(
                f"every_k_steps must be from 1 to {MAX_EVERY_K}, got {k}; use 1 for exact sampling, 2 to run the "
                "ControlNet every other step."
            )
        s, e = self.start_percent, self.end_percent
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (s, e)):
            raise ReuseError(f"the reuse window must be two numbers within 0..1, got {s!r} and {e!r}.")
        if not (0.0 <= s <= 1.0 and 0.0 <= e <= 1.0):
            raise ReuseError(f"the reuse window's start_percent and end_percent must be within 0..1, got {s} and {e}.")
        if s > e:
            raise ReuseError(f"the reuse window's start_percent ({s}) is after its end_percent ({e}); swap them.")

    @property
    def lossy(self) -> bool:
        """``True`` when residuals may be reused (``every_k > 1``)."""
        return self.every_k > 1

    @property
    def windowed(self) -> bool:
        """``True`` when reuse is restricted to part of sampling (the host must then supply progress)."""
        return (self.start_percent, self.end_percent) != (0.0, 1.0)

    def allows(self, progress: float | None) -> bool:
        """Whether reuse is allowed at sampling ``progress`` in ``[0, 1]`` (``None``: unknown, allowed if unwindowed).

        >>> ReusePolicy(2, 0.0, 0.8).allows(0.9)
        False
        """
        if not self.windowed:
            return True
        if progress is None:
            return False
        return self.start_percent <= progress <= self.end_percent


@dataclass
class ReuseStats:
    """How many evaluations computed the residuals and how many reused them (one sampling run)."""

    computed: int = 0
    reused: int = 0


@dataclass
class _Entry:
    layout: Hashable
    conditioning: tuple[torch.Tensor | None, ...]
    residuals: Outputs
    clock: int
    reuses: int = 0


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


class ResidualCache:
    """Unweighted residuals of recent evaluations, served again for up to ``every_k - 1`` later evaluations.

    One cache lives for one sampling run (the host makes a new one per run). Entries that can no longer be
    reused are dropped as sampling advances, so at most one entry per layout and conditioning is held: for
    SD1.5 at 512 px with cond and uncond batched, about 27 MB in fp16. A noise level sampled in several calls
    of different layouts (the windows of a long video, the tiles of a tiled upscale) keeps one entry per call:
    they are reused at the next levels as one call's would be.

    Args:
        policy: the reuse policy.
        max_entries: at most this many entries are kept (oldest dropped first), or as many as the current noise
            level computed when that is more.

    Example:
        >>> cache = ResidualCache(ReusePolicy(every_k=2))
        >>> calls = []
        >>> def compute():
        ...     calls.append(1)
        ...     return [torch.ones(1)]
        >>> for sigma in (14.6, 2.9, 0.9, 0.03):
        ...     _ = cache.get(sigma, "layout", (), compute)
        >>> len(calls), cache.stats.reused
        (2, 2)
    """

    def __init__(self, policy: ReusePolicy, max_entries: int = 8) -> None:
        self.policy = policy
        self.max_entries = max_entries
        self.stats = ReuseStats()
        self._entries: list[_Entry] = []
        self._sigma: float | None = None
        self._clock = 0

    def _advance(self, sigma: float) -> None:
        if self._sigma is not None and sigma == self._sigma:
            return
        if self._sigma is not None and sigma > self._sigma:
            self._entries.clear()  # noise went up (a restart, or a new run without a reset): start afresh
        self._sigma = sigma
        self._clock += 1
        k = self.policy.every_k
        self._entries = [e for e in self._entries if self._clock - e.clock < k]

    def invalidate(self) -> None:
        """Forget every entry: an evaluation ran without this control, so the next one computes afresh."""
        self._entries.clear()

    def get(
        self,
        sigma: float,
        layout: Hashable,
        conditioning: Sequence[torch.Tensor | None],
        compute: Callable[[], Outputs],
        *,
        reuse_allowed: bool = True,
    ) -> Outputs:
        """The residuals for one evaluation: reused when the policy allows it, else ``compute()`` (and cached).

        Args:
            sigma: the evaluation's noise level.
            layout: hashable description of the batch layout.
            conditioning: the non-latent tensors the network reads (compared with :func:`torch.equal`).
            compute: runs the network; returns the unweighted residuals, e.g. ``13 x (N, C_i, h_i, w_i)``.
            reuse_allowed: ``False`` forces a computation (outside the policy's progress window).

        Returns:
            The cached list itself when reused: callers must not modify its tensors in place.
        """
        self._advance(sigma)
        k = self.policy.every_k
        cond = tuple(conditioning)
        entry = next(
            (
                e
                for e in self._entries
                if e.layout == layout
                and len(e.conditioning) == len(cond)
                and all(_same(a, b) for a, b in zip(e.conditioning, cond))
            ),
            None,
        )
        # Never within one noise level (0 < age): two calls there with the same layout and text are other
        # latents (two same-size areas on a host that names no conditioning uuids), not a later step.
        if entry is not None and reuse_allowed and entry.reuses + 1 < k and 0 < self._clock - entry.clock < k:
            entry.reuses += 1
            self.stats.reused += 1
            return entry.residuals
        if entry is not None:  # replaced: its residuals go before the new ones are made, not after
            self._entries.remove(entry)
            del entry
        residuals = compute()
        self.stats.computed += 1
        if k > 1:
            kept = tuple(None if c is None else c.detach().clone() for c in cond)
            self._entries.append(_Entry(layout, kept, residuals, self._clock))
            limit = max(self.max_entries, sum(1 for e in self._entries if e.clock == self._clock))
            del self._entries[: max(0, len(self._entries) - limit)]
        return residuals

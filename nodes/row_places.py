"""Which rows of a model call hold the same ControlNet inputs, told to our control by ComfyUI itself.

ComfyUI batches the cond and uncond chunks of one sampling step into one model call. Each chunk's rows are the
step's latent (or the part of it an area conditioning crops), at the step's timestep, with our control's hint:
rows at the same place of chunks cropped alike hold the same ControlNet inputs and differ only in their text. The
ControlNet then computes the layers that read no text once for them (:func:`controlnet.rows.shared_layout`).

Only ComfyUI knows each chunk's crop: it passes it to every ``model_conds`` entry as ``process_cond(area=...)``.
Our Apply node adds a :class:`RowPlaces` entry to each conditioning entry it returns; ComfyUI keeps it through its
conditioning nodes, makes one per chunk with the chunk's area (``process_cond``) and joins the chunks batched into
one call (``concat``). The control finds one place per row in its ``cond`` argument, on the host: no device work,
no sync. A row whose place is unknown (an entry not marked by our Apply node, a host that gives no area) shares
nothing.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..controlnet.rows import Runs, first_equal
from .row_conds import RowTuple

KEY = "affordance_place"
"""The ``model_conds`` key (and the key of the joined places in a model call's ``cond``)."""

_NOT_GIVEN = object()

Place = tuple[Hashable, int] | None
"""A row's place: the chunk's crop (``None`` for the whole latent or a crop at its origin, else ComfyUI's area) and the
row's index within its chunk; ``None`` when unknown."""


class RowPlaces(RowTuple):
    """A ``model_conds`` entry: each row's place in the step's latent (see the module).

    Follows ComfyUI's conds protocol (:class:`.row_conds.RowTuple`) by duck typing, so it needs no ComfyUI import,
    and holds host values only (ComfyUI moves tensors and slices them for context windows). The entry an Apply
    node adds holds no rows: ComfyUI makes the rows of each chunk with ``process_cond``.
    """

    __slots__ = ()

    def __init__(self, rows: tuple[Place, ...] = ()) -> None:
        super().__init__(rows)

    def process_cond(self, batch_size: int, area: Any = _NOT_GIVEN, **kwargs: Any) -> RowPlaces:
        """The entry for a chunk of ``batch_size`` rows cropped to ``area`` (ComfyUI's list, or ``None``)."""
        crop = _crop(area)
        if crop is _NOT_GIVEN:  # a host that does not say where its rows lie, or in terms we do not know
            return RowPlaces((None,) * batch_size)
        return RowPlaces(tuple((crop, j) for j in range(batch_size)))


def _crop(area: Any) -> Hashable:
    """``area`` as a hashable key, or ``_NOT_GIVEN`` when it is not a list of numbers.

    ``None`` stands for the whole latent and for a crop at its origin (ComfyUI's area is sizes, then offsets, one per
    latent dimension): places are compared within one model call only, and ComfyUI batches chunks of one shape only,
    so there such a crop samples what the whole latent's chunks and the other crops at the origin do (e.g. a mask's
    bounds covering the latent).
    """
    if area is None:
        return None
    if isinstance(area, (list, tuple)) and all(isinstance(a, (int, float)) for a in area):
        crop = tuple(area)
        return None if crop and len(crop) % 2 == 0 and not any(crop[len(crop) // 2 :]) else crop
    return _NOT_GIVEN


def mark_places(options: dict) -> dict:
    """``options`` (a conditioning entry's, copied already) with a :class:`RowPlaces` entry in a new ``model_conds``."""
    options["model_conds"] = {**options.get("model_conds", {}), KEY: RowPlaces()}
    return options


def row_places(cond: dict, n: int) -> tuple[Place, ...] | None:
    """Each row's place for a model call of ``n`` rows, or ``None`` when the call's ``cond`` cannot say.

    Places that do not cover the call (an entry batched in that did not come through our Apply node) are not used.
    """
    places = cond.get(KEY)
    if isinstance(places, tuple) and len(places) == n:
        return places
    return None


def shared_rows(cond: dict, n: int, runs: Runs | None = None) -> tuple[int, ...] | None:
    """For the rows a ControlNet runs on (``runs`` of the call's ``n``, or all), the first row holding the same inputs.

    Rows at the same place of chunks cropped alike sample the same latent at the same timestep with the control's
    hint (:mod:`controlnet.rows`' ``shared``). ``None`` when no two rows share or the places are unknown: every row
    is computed.
    """
    places = row_places(cond, n)
    if places is None:
        return None
    if runs is not None:
        places = tuple(p for start, stop in runs for p in places[start:stop])
    shared = first_equal(places)
    return None if all(s == r for r, s in enumerate(shared)) else shared

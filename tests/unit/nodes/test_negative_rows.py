"""Our Apply node's marks of the negative rows, driven through the protocol ComfyUI uses on ``model_conds``."""

from __future__ import annotations

import pytest

from affordance.nodes.negative_rows import KEY, NegativeRows, mark, row_flags


def test_an_entry_is_repeated_to_each_chunk_and_chunks_join_in_order():
    pos, neg = NegativeRows((False,)), NegativeRows((True,))
    a, b = neg.process_cond(batch_size=2, area=None), pos.process_cond(batch_size=3, device="cpu")
    assert a.cond == (True, True) and b.cond == (False, False, False)
    assert a.size() == [2] and b.size() == [3]
    assert a.can_concat(b) and b.can_concat(a)
    assert a.concat([b]) == (True, True, False, False, False)
    assert b.concat([]) == (False, False, False)


def test_a_longer_pattern_is_cycled_or_cut_like_comfyui_repeats_batches():
    rows = NegativeRows((True, False))
    assert rows.process_cond(batch_size=3).cond == (True, False, True)
    assert rows.process_cond(batch_size=1).cond == (True,)


def test_other_conds_are_not_joined_with_marks():
    class Other:
        cond = (True,)

    assert not NegativeRows((True,)).can_concat(Other())


def test_no_flags_is_refused():
    with pytest.raises(ValueError, match="at least one row flag"):
        NegativeRows(())


def test_mark_copies_and_keeps_the_other_model_conds():
    other = object()
    options = {"control": None, "model_conds": {"y": other}}
    out = mark(options, True)
    assert options == {"control": None, "model_conds": {"y": other}}  # neither dict changed
    assert out["model_conds"]["y"] is other and out["model_conds"][KEY].cond == (True,)
    assert mark({}, False)["model_conds"][KEY].cond == (False,)


@pytest.mark.parametrize(
    ("cond", "order", "n", "chunks", "expected"),
    [
        ({KEY: (False, True)}, [1, 0], 2, 2, (False, True)),  # marks win over ComfyUI's per-call index
        ({}, [1, 0], 4, 2, (True, True, False, False)),  # no marks: index 1 is the negative (KSampler's order)
        ({KEY: (True,)}, [0, 1], 2, 2, (False, True)),  # marks that do not cover the call are not used
        ({}, [], 2, 1, None),
        ({}, [0, 1], 2, 1, None),  # an index list that does not match the chunks says nothing
        ({}, [0, 1], 3, 2, None),
    ],
)
def test_row_flags(cond, order, n, chunks, expected):
    assert row_flags(cond, order, n, chunks) == expected


def test_row_flags_repeat_per_tile_only_when_tiled():
    """A tiling host repeats a call's rows per tile and passes the marks on as they were; without tiling, marks
    that do not cover the call stay unused (the chunk index decides)."""
    cond = {KEY: (True, False)}
    assert row_flags(cond, [1, 0], 6, 2, tiled=True) == (True, False) * 3
    assert row_flags(cond, [1, 0], 4, 2) == (True, True, False, False)
    assert row_flags({KEY: (True, False, True)}, [1, 0], 4, 2, tiled=True) == (True, True, False, False)

"""Taking some rows of a batch and spreading results back (the skipped rows' control is zero); rows computed once per group of equal rows and repeated."""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet.rows import first_equal, kept_runs, repeat_rows, shared_layout, spread_rows, take_rows


@pytest.mark.parametrize(
    ("skipped", "runs"),
    [
        ((True, False), ((1, 2),)),
        ((False, False, True, True), ((0, 2),)),
        ((False, True, False), ((0, 1), (2, 3))),
        ((True, True), ()),
        ((False,), ((0, 1),)),
        ((), ()),
    ],
)
def test_kept_runs(skipped, runs):
    assert kept_runs(skipped) == runs


def test_one_run_is_a_view_and_several_are_joined():
    t = torch.arange(12.0).view(4, 3)
    view = take_rows(t, ((1, 3),))
    assert view.data_ptr() == t[1].data_ptr() and torch.equal(view, t[1:3])
    joined = take_rows(t, ((0, 1), (2, 4)))
    assert torch.equal(joined, t[[0, 2, 3]])


def test_spread_puts_rows_back_with_zeros_between():
    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float16)
    out = spread_rows(rows, ((0, 1), (2, 3)), 4)
    assert out.dtype == torch.float16 and out.shape == (4, 2)
    assert out.tolist() == [[1.0, 2.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]


@pytest.mark.parametrize("runs", [((0, 2),), ((1, 3),), ((2, 4),)], ids=["first", "middle", "last"])
def test_one_run_is_padded_with_zeros(runs):
    rows = torch.arange(1.0, 13.0, dtype=torch.bfloat16).view(2, 3, 2)
    out = spread_rows(rows, runs, 4)
    start, stop = runs[0]
    assert out.shape == (4, 3, 2) and out.dtype == torch.bfloat16
    assert torch.equal(out[start:stop], rows)
    assert torch.count_nonzero(out) == rows.numel()
    assert out.data_ptr() != rows.data_ptr()


@pytest.mark.parametrize("runs", [((0, 2),), ((2, 4),)], ids=["first", "last"])
def test_one_run_is_one_operator(runs):
    """The usual step (one cond chunk beside one uncond chunk) spreads each residual with a single padding
    operator, not a zero tensor filled run by run: a step dispatches one operator per residual."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(func.__name__)
            return func(*args, **(kwargs or {}))

    rows = torch.ones(2, 3, 2)
    with torch.inference_mode(), Ops() as ops:
        out = spread_rows(rows, runs, 4)
    assert len(ops.seen) == 1, ops.seen
    assert torch.count_nonzero(out[runs[0][0] : runs[0][1]]) == rows.numel() == torch.count_nonzero(out)


def test_spread_refuses_runs_that_do_not_match_the_rows():
    with pytest.raises(ValueError, match="hold 1 rows but the tensor has 2"):
        spread_rows(torch.ones(2, 3), ((0, 1),), 3)
    with pytest.raises(ValueError, match="hold 3 rows but the tensor has 2"):
        spread_rows(torch.ones(2, 3), ((0, 1), (2, 4)), 5)


def test_spread_with_several_runs_anywhere():
    """Three runs, the first not at row 0: each run gets its rows in order, zeros elsewhere."""
    rows = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert spread_rows(rows, ((1, 2), (3, 5), (6, 7)), 8).flatten().tolist() == [0, 1, 0, 2, 3, 0, 4, 0]
    assert spread_rows(rows[:2], ((1, 2), (3, 4)), 4).flatten().tolist() == [0, 1, 0, 2]


def test_spread_names_runs_that_overrun_the_rows_before_torch_does():
    """Runs holding more rows than the tensor in a way that cannot broadcast got torch's RuntimeError."""
    with pytest.raises(ValueError, match="hold 3 rows but the tensor has 2"):
        spread_rows(torch.ones(2, 3), ((0, 2), (3, 4)), 5)


def test_one_run_not_at_row_0_that_does_not_match_the_rows_is_refused():
    """The fast path takes one run of exactly the tensor's rows, wherever it starts (the other refusals start at 0,
    where start + stop and stop - start agree)."""
    with pytest.raises(ValueError, match="hold 1 rows but the tensor has 3"):
        spread_rows(torch.ones(3, 2), ((1, 2),), 4)


@pytest.mark.parametrize("runs", [((2, 4),), ((0, 1), (3, 4)), ((-1, 1),)], ids=["one", "several", "negative"])
def test_runs_beyond_the_batch_are_refused_not_cropped(runs):
    """A run ending past n (or starting before 0) is refused; one run past n was cropped by a negative pad,
    losing rows without a word."""
    with pytest.raises(ValueError, match=r"reach beyond the 3 rows of the batch"):
        spread_rows(torch.tensor([[1.0], [2.0]]), runs, 3)


@pytest.mark.parametrize(
    ("keys", "first"),
    [
        (("a", "a"), (0, 0)),
        (("a", "b", "a", "b"), (0, 1, 0, 1)),
        ((None, None), (0, 1)),
        (("a", None, "a", None), (0, 1, 0, 3)),
        ((("area", 1), "whole", "whole", ("area", 1)), (0, 1, 1, 0)),
    ],
)
def test_first_equal_names_each_rows_first_twin_and_unknown_rows_match_nothing(keys, first):
    assert first_equal(keys) == first


@pytest.mark.parametrize(
    ("shared", "layout"),
    [
        ((0, 1), None),
        ((0, 0), (((0, 1),), ((0, 1), (0, 1)))),
        ((0, 1, 0, 1), (((0, 2),), ((0, 2), (0, 2)))),
        ((0, 1, 0, 3), (((0, 2), (3, 4)), ((0, 2), (0, 1), (2, 3)))),
        ((0, 1, 1, 0), (((0, 2),), ((0, 2), (1, 2), (0, 1)))),
        # ranges that grow from a row other than 0: the cond chunks of areas P and Q, then an uncond chunk of Q
        ((0, 1, 2, 3, 2, 3), (((0, 4),), ((0, 4), (2, 4)))),
        ((0, 0, 2, 3), (((0, 1), (2, 4)), ((0, 1), (0, 3)))),
    ],
)
def test_shared_layout_takes_first_rows_and_rebuilds_the_batch_in_order(shared, layout):
    assert shared_layout(shared) == layout
    if layout is not None:
        t = torch.arange(len(shared) * 3.0).view(len(shared), 3)
        kept = take_rows(t, layout[0])
        torch.testing.assert_close(repeat_rows(kept, layout[1]), t[list(shared)])


def test_repeat_rows_is_a_new_tensor_even_for_one_piece():
    t = torch.randn(2, 3)
    out = repeat_rows(t, ((0, 2),))
    assert out.data_ptr() != t.data_ptr()
    out.mul_(0)
    assert t.abs().sum() > 0


@pytest.mark.parametrize("layout", ["tokens", "channels_last", "contiguous"])
@pytest.mark.parametrize("back", [((0, 2), (0, 2)), ((0, 2), (1, 2), (0, 1))], ids=["whole", "pieces"])
def test_repeat_rows_keeps_the_memory_layout(layout, back):
    if layout == "tokens":  # a transformer's tokens: a transposed view of an image
        t = torch.randn(2, 6, 4, 4).flatten(2).transpose(1, 2)
    elif layout == "channels_last":
        t = torch.randn(2, 6, 4, 4).contiguous(memory_format=torch.channels_last)
    else:
        t = torch.randn(2, 6, 4, 4)
    out = repeat_rows(t, back)
    assert out.shape[0] == 4 and out[:2].stride() == t.stride()
    torch.testing.assert_close(out, torch.cat([t[a:b] for a, b in back]))


def test_a_whole_repeat_of_a_view_with_gaps_is_contiguous_and_right():
    t = torch.randn(2, 8, 8)[:, ::2, :]
    out = repeat_rows(t, ((0, 2), (0, 2)))
    assert out.is_contiguous()
    torch.testing.assert_close(out, torch.cat([t, t]))


def test_repeat_rows_of_a_view_with_gaps_is_contiguous_and_right():
    base = torch.randn(2, 8, 8)
    t = base[:, ::2, :]  # rows of 32 values spread over 64: no layout to keep
    out = repeat_rows(t, ((1, 2), (0, 2)))
    assert out.is_contiguous()
    torch.testing.assert_close(out, torch.cat([t[1:2], t]))

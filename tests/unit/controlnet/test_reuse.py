"""The residual-reuse policy and cache: when residuals are computed, when they are served again."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from affordance.controlnet.reuse import MAX_EVERY_K, ResidualCache, ReuseError, ReusePolicy

SIGMAS = [14.6, 9.7, 6.1, 4.0, 2.9, 1.9, 1.2, 0.9, 0.5, 0.03]


class Net:
    """A stand-in network: counts calls and returns fresh residuals tagged with the call number."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> list[torch.Tensor]:
        self.calls += 1
        return [torch.full((2, 3), float(self.calls))]


def run(cache: ResidualCache, sigmas, layout="L", conditioning=(), net: Net | None = None) -> tuple[Net, list[float]]:
    net = net or Net()
    tags = [float(cache.get(s, layout, conditioning, net)[0][0, 0]) for s in sigmas]
    return net, tags


# ----- policy ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "message"),
    [
        (0, "every_k_steps must be from 1 to 16, got 0"),
        (MAX_EVERY_K + 1, "every_k_steps must be from 1 to 16, got 17"),
        (-2, "got -2"),
        (2.0, r"whole number from 1 to 16, got 2.0 \(float\)"),
        ("2", r"got '2' \(str\)"),
        (True, r"got True \(bool\)"),
        (None, r"got None \(NoneType\)"),
    ],
)
def test_bad_k_is_refused_with_what_and_how(k, message):
    with pytest.raises(ReuseError, match=message) as info:
        ReusePolicy(k)
    assert "use 1 for exact sampling" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (-0.1, 1.0, "within 0..1, got -0.1 and 1.0"),
        (0.0, 1.5, "within 0..1, got 0.0 and 1.5"),
        (0.8, 0.2, r"start_percent \(0.8\) is after its end_percent \(0.2\); swap them"),
        (float("nan"), 1.0, "two numbers within 0..1"),
        ("0", 1.0, "two numbers within 0..1"),
    ],
)
def test_bad_window_is_refused(start, end, message):
    with pytest.raises(ReuseError, match=message):
        ReusePolicy(2, start, end)


def test_policy_flags_and_window():
    assert not ReusePolicy().lossy and ReusePolicy(2).lossy
    assert not ReusePolicy(2).windowed and ReusePolicy(2, 0.0, 0.8).windowed
    p = ReusePolicy(3, 0.2, 0.8)
    assert [p.allows(x) for x in (0.0, 0.2, 0.5, 0.8, 0.81)] == [False, True, True, True, False]
    assert p.allows(None) is False  # windowed but no progress known: stay exact
    assert ReusePolicy(3).allows(None) is True


# ----- cache -----------------------------------------------------------------------------------------------
def test_k1_computes_every_evaluation_and_keeps_nothing():
    cache = ResidualCache(ReusePolicy(1))
    net, tags = run(cache, SIGMAS)
    assert net.calls == len(SIGMAS) and tags == [float(i + 1) for i in range(len(SIGMAS))]
    assert cache._entries == [] and cache.stats.reused == 0


@pytest.mark.parametrize(("k", "computed"), [(2, 5), (3, 4), (4, 3), (16, 1)])
def test_every_k_computes_one_evaluation_in_k(k, computed):
    cache = ResidualCache(ReusePolicy(k))
    net, tags = run(cache, SIGMAS)
    assert net.calls == computed == cache.stats.computed
    assert cache.stats.reused == len(SIGMAS) - computed
    # computed at evaluations 0, k, 2k...; each reuse serves the latest computation
    assert tags == [float(i // k + 1) for i in range(len(SIGMAS))]


def test_first_evaluation_is_always_computed():
    cache = ResidualCache(ReusePolicy(4))
    net, _ = run(cache, SIGMAS[:1])
    assert net.calls == 1 and cache.stats.reused == 0


def test_reuse_serves_the_cached_list_itself():
    cache = ResidualCache(ReusePolicy(2))
    a = cache.get(10.0, "L", (), Net())
    b = cache.get(5.0, "L", (), Net())
    assert b is a


def test_each_layout_has_its_own_entry():
    """cond and uncond split into two calls per step: each layout is computed, then reused, on its own."""
    cache = ResidualCache(ReusePolicy(2))
    net = Net()
    tags = []
    for s in SIGMAS[:4]:
        for layout in ("cond", "uncond"):
            tags.append(float(cache.get(s, layout, (), net)[0][0, 0]))
    assert tags == [1, 2, 1, 2, 3, 4, 3, 4]


def test_layout_change_forces_a_computation_and_old_entries_expire():
    cache = ResidualCache(ReusePolicy(2))
    net = Net()
    cache.get(SIGMAS[0], ("batched", 2), (), net)  # computed
    cache.get(SIGMAS[1], ("split", 1), (), net)  # new layout: computed
    cache.get(SIGMAS[2], ("batched", 2), (), net)  # its entry is 2 evaluations old: computed, not reused
    assert net.calls == 3 and cache.stats.reused == 0


def test_conditioning_must_be_equal_not_identical():
    cache = ResidualCache(ReusePolicy(2))
    net = Net()
    ctx = torch.randn(2, 5, 8)
    cache.get(SIGMAS[0], "L", (ctx, None), net)
    cache.get(SIGMAS[1], "L", (ctx.clone(), None), net)  # same values, new tensor: reused
    assert net.calls == 1
    cache.get(SIGMAS[2], "L", (ctx, None), net)
    cache.get(SIGMAS[3], "L", (ctx + 1, None), net)  # another prompt: computed
    cache.get(SIGMAS[4], "L", (ctx, torch.zeros(2, 4)), net)  # a label where there was none: computed
    cache.get(SIGMAS[5], "L", (ctx.double(), None), net)  # another dtype: computed
    assert net.calls == 5


def test_cached_conditioning_is_a_copy():
    cache = ResidualCache(ReusePolicy(2))
    net = Net()
    ctx = torch.zeros(1, 3)
    cache.get(SIGMAS[0], "L", (ctx,), net)
    ctx += 1  # the host changes its tensor in place: the cache must not follow it
    cache.get(SIGMAS[1], "L", (ctx,), net)
    assert net.calls == 2


def test_repeated_sigma_counts_as_a_new_evaluation_for_the_same_layout():
    """Heun-like samplers evaluate twice at some sigmas: with k=2 every other evaluation is still computed."""
    cache = ResidualCache(ReusePolicy(2))
    net, tags = run(cache, [14.6, 2.9, 2.9, 0.9, 0.9, 0.03])
    assert tags == [1, 1, 2, 2, 3, 3] and net.calls == 3


def test_rising_sigma_drops_the_cache():
    cache = ResidualCache(ReusePolicy(4))
    net, _ = run(cache, [14.6, 2.9, 14.6, 2.9])
    assert net.calls == 2  # the rise at the third call recomputes; the fourth reuses that


def test_reuse_not_allowed_computes_and_refreshes():
    cache = ResidualCache(ReusePolicy(2))
    net = Net()
    cache.get(SIGMAS[0], "L", (), net)
    cache.get(SIGMAS[1], "L", (), net, reuse_allowed=False)
    assert net.calls == 2
    assert float(cache.get(SIGMAS[2], "L", (), net)[0][0, 0]) == 2  # reuses the forced computation
    assert net.calls == 2


def test_invalidate_forces_the_next_computation():
    cache = ResidualCache(ReusePolicy(4))
    net = Net()
    cache.get(SIGMAS[0], "L", (), net)
    cache.invalidate()
    cache.get(SIGMAS[1], "L", (), net)
    assert net.calls == 2


def test_entries_are_bounded():
    """Across noise levels the oldest entries go beyond ``max_entries``; one level keeps every call it made."""
    cache = ResidualCache(ReusePolicy(16), max_entries=3)
    net = Net()
    for i in range(10):
        cache.get(10.0 - i, ("layout", i), (), net)
    assert len(cache._entries) == 3
    assert [e.layout for e in cache._entries] == [("layout", 7), ("layout", 8), ("layout", 9)]
    for i in range(5):
        cache.get(0.5, ("window", i), (), net)
    assert [e.layout for e in cache._entries] == [("window", i) for i in range(5)]


def test_a_set_that_is_replaced_is_let_go_before_its_successor_is_computed():
    """Outside the reuse window (e.g. an exact tail) a young entry is replaced, not served: the peak holds one
    residual set per layout, not two, because the old one is dropped before compute() runs."""
    import weakref

    cache = ResidualCache(ReusePolicy(2))
    refs: list = []
    alive_at_compute = []

    def net():
        alive_at_compute.append(sum(1 for r in refs if r() is not None))
        out = [torch.full((2, 3), float(len(refs)))]
        refs.append(weakref.ref(out[0]))
        return out

    cache.get(SIGMAS[0], "L", (), net)
    cache.get(SIGMAS[1], "L", (), net, reuse_allowed=False)  # its entry is one step old: reusable, but not here
    assert alive_at_compute == [0, 0] and cache.stats.computed == 2


def test_a_level_sampled_in_many_calls_keeps_them_all():
    """16 windows (or tiles) per noise level: each is reused at the next level. Before, only the last 8 calls'
    entries were kept, and at the next level each computed call pushed out an entry still to be reused: none was."""
    cache = ResidualCache(ReusePolicy(2))
    calls = []

    def compute(i):
        calls.append(i)
        return [torch.full((1,), float(i))]

    for sigma in (14.6, 2.9):
        out = [cache.get(sigma, ("window", i), (), lambda i=i: compute(i))[0] for i in range(16)]
        assert [float(o) for o in out] == list(range(16))
    assert len(calls) == 16 and cache.stats.reused == 16


def test_conditioning_that_appears_where_there_was_none_is_a_new_computation():
    """An entry cached for no text conditioning (None) is not served to a call that has one."""
    cache = ResidualCache(ReusePolicy(4))
    net = Net()
    cache.get(SIGMAS[0], "L", (None,), net)
    cache.get(SIGMAS[1], "L", (torch.ones(2),), net)
    assert net.calls == 2


def test_conditioning_that_disappears_or_grows_is_a_new_computation():
    """Conditioning compared entry by entry: a tensor now None, or one more tensor, is not the same text."""
    for later in ((None,), (torch.ones(2), torch.ones(3))):
        cache = ResidualCache(ReusePolicy(4))
        net = Net()
        cache.get(SIGMAS[0], "L", (torch.ones(2),), net)
        cache.get(SIGMAS[1], "L", later, net)
        assert net.calls == 2, later


def test_residuals_of_a_layout_no_longer_sampled_are_released_after_k_evaluations():
    cache = ResidualCache(ReusePolicy(2))
    out = cache.get(SIGMAS[0], "tile A", (), lambda: [torch.ones(4)])
    released = weakref.ref(out[0])
    del out
    for sigma in SIGMAS[1:3]:  # only tile B from here on
        cache.get(sigma, "tile B", (), lambda: [torch.ones(4)])
    gc.collect()
    assert released() is None


def test_zero_width_and_edge_reuse_windows_are_valid():
    for start, end in ((0.5, 0.5), (0.0, 0.0), (1.0, 1.0)):
        p = ReusePolicy(2, start, end)
        assert p.windowed and p.allows(start) and not p.allows(start + 0.01 if start < 1 else 0.99)


def test_a_reuse_window_of_booleans_is_refused():
    with pytest.raises(ReuseError):
        ReusePolicy(2, start_percent=False, end_percent=True)


def test_the_cache_keeps_eight_layouts_by_default():
    """One layout per noise level, all within k: the ninth drops the oldest, which is then computed again."""
    cache = ResidualCache(ReusePolicy(every_k=16))
    calls = []

    def compute(i):
        def run():
            calls.append(i)
            return [torch.full((1,), float(i))]

        return run

    sigmas = [20.0 - i for i in range(11)]
    for i in range(9):
        cache.get(sigmas[i], f"layout{i}", (), compute(i))
    cache.get(sigmas[9], "layout0", (), compute(0))
    assert calls == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0]
    cache.get(sigmas[10], "layout8", (), compute(8))  # the newest is still held
    assert calls == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0] and cache.stats.reused == 1


def test_a_reuse_policy_is_frozen_and_hashable():
    """A control's copies share their policy: none can change another's."""
    import dataclasses

    p = ReusePolicy(2, 0.1, 0.9)
    assert hash(p) == hash(ReusePolicy(2, 0.1, 0.9))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.every_k = 3  # type: ignore[misc]


def test_an_end_just_above_1_is_refused():
    """A window end linked in from another node's arithmetic (no widget bounds) just above 1 is refused."""
    with pytest.raises(ReuseError, match="within 0..1"):
        ReusePolicy(2, 0.0, 1.005)

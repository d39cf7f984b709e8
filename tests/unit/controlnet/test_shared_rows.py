"""Rows with equal inputs (ComfyUI's cond and uncond chunks) share the layers that read no text: same residuals."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from affordance.controlnet import ControlNet, ControlNetConfig, InputError

from .conftest import TINY, randomize

_SMALL = replace(TINY, transformer_depth_middle=1, context_dim=64, num_heads=4)
# level 0 without attention, level 1 with: the text is first read two ResBlocks and a downsampling in
NO_ATTENTION_FIRST = replace(_SMALL, transformer_depth=(0, 1))
# no attention in the input blocks: the middle block's transformer is the first to read the text
MIDDLE_ONLY = replace(_SMALL, transformer_depth=(0, 0), transformer_depth_middle=2)
# no attention at all (depth-0 transformers are norms and projections): nothing reads the text
NO_TEXT = replace(_SMALL, transformer_depth=(0, 0), transformer_depth_middle=0, attention=(True, False), attention_middle=True)


def _model(config: ControlNetConfig) -> ControlNet:
    return randomize(ControlNet(config))


def _cond_uncond(config: ControlNetConfig, per: int = 1, chunks: int = 2, h: int = 8, w: int = 8):
    """A ComfyUI-style call: ``chunks`` chunks of the same ``per`` latents and timesteps, each with its own text."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(per, config.in_channels, h, w, generator=g).repeat(chunks, 1, 1, 1)
    t = torch.tensor([500.0, 20.0, 999.0][:per]).repeat(chunks)
    ctx = torch.randn(per * chunks, 5, config.context_dim, generator=g)
    hint = torch.rand(per, config.hint_channels, 8 * h, 8 * w, generator=g).repeat(chunks, 1, 1, 1)
    return x, hint, t, ctx


def _first_rows(per: int, chunks: int) -> tuple[int, ...]:
    return tuple(r % per for r in range(per * chunks))


def _same(a: list, b: list) -> None:
    assert [o is None for o in a] == [o is None for o in b]
    for p, q in zip(a, b):
        if p is not None:
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [TINY, NO_ATTENTION_FIRST, MIDDLE_ONLY, NO_TEXT], ids=["tiny", "late", "middle", "none"])
@pytest.mark.parametrize(("per", "chunks"), [(1, 2), (2, 2), (1, 3)], ids=["cfg", "batch2", "three-chunks"])
def test_sharing_gives_the_residuals_of_every_row_computed(config, per, chunks):
    model = _model(config)
    x, hint, t, ctx = _cond_uncond(config, per, chunks)
    with torch.no_grad():
        enc = model.encode_hint(hint)
        full = model(x, None, t, ctx, encoded_hint=enc).as_list()
        shared = model(x, None, t, ctx, encoded_hint=enc, shared=_first_rows(per, chunks)).as_list()
        one_hint = model(x, None, t, ctx, encoded_hint=enc[:per] if per == 1 else enc, shared=_first_rows(per, chunks))
    _same(shared, full)
    _same(one_hint.as_list(), full)
    assert all(o.shape[0] == per * chunks for o in shared)


def _batch_sizes(modules: list[torch.nn.Module]) -> list[list[int]]:
    seen: list[list[int]] = [[] for _ in modules]
    for i, m in enumerate(modules):
        m.register_forward_pre_hook(lambda mod, args, i=i: seen[i].append(args[0].shape[0]))
    return seen


def test_the_layers_before_the_first_cross_attention_run_once_per_group():
    """Honesty: the shared part really runs on one row per group, and everything from the cross-attention on all."""
    model = _model(TINY)
    x, hint, t, ctx = _cond_uncond(TINY)
    block = model.input_blocks[1][1].transformer_blocks[0]
    watched = [
        model.input_blocks[0][0],
        model.zero_convs[0][0],
        model.input_blocks[1][0].in_layers[2],
        block.attn1.to_q,
        block.attn2.to_q,
        block.norm3,
        model.zero_convs[1][0],
        model.middle_block_out[0],
    ]
    seen = _batch_sizes(watched)
    with torch.no_grad():
        model(x, hint, t, ctx, shared=(0, 0))
    assert seen == [[1], [1], [1], [1], [2], [2], [2], [2]]


def test_groups_are_computed_from_their_first_row_whatever_the_others_hold():
    """The caller vouches for equal rows: the second row's latent is never read (the residuals are the first's
    before the text is read), which is what makes the call cheaper."""
    model = _model(TINY)
    x, hint, t, ctx = _cond_uncond(TINY)
    other = x.clone()
    other[1] = torch.randn_like(other[1])
    with torch.no_grad():
        a = model(x, hint, t, ctx, shared=(0, 0)).as_list()
        b = model(other, hint, t, ctx, shared=(0, 0)).as_list()
    _same(b, a)


def test_rows_of_different_groups_stay_apart():
    model = _model(TINY)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 4, 8, 8, generator=g)
    x[2] = x[0]  # rows 0 and 2 are equal; rows 1 and 3 differ from everything
    t = torch.full((4,), 400.0)
    ctx = torch.randn(4, 5, TINY.context_dim, generator=g)
    hint = torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        full = model(x, hint, t, ctx).as_list()
        shared = model(x, hint, t, ctx, shared=(0, 1, 0, 3)).as_list()
    _same(shared, full)


def test_sdxl_label_rows_are_never_shared(tiny_xl_model, inputs):
    """With SDXL's label every ResBlock reads a per-row embedding: rows given as shared are still all computed."""
    cfg = tiny_xl_model.config
    x, hint, t, ctx, y = inputs(cfg)
    x, t, hint = x[:1].repeat(2, 1, 1, 1), t[:1].repeat(2), hint[:1].repeat(2, 1, 1, 1)
    assert not torch.equal(y[0], y[1])
    seen = _batch_sizes([tiny_xl_model.input_blocks[0][0]])
    with torch.no_grad():
        full = tiny_xl_model(x, hint, t, ctx, y).as_list()
        shared = tiny_xl_model(x, hint, t, ctx, y, shared=(0, 0)).as_list()
    _same(shared, full)
    assert seen == [[2, 2]]


def test_sharing_with_needed_residuals_only():
    model = _model(TINY)
    x, hint, t, ctx = _cond_uncond(TINY)
    for needed in ([True] + [False] * (TINY.num_residuals - 1), [False] * (TINY.num_residuals - 1) + [True]):
        with torch.no_grad():
            full = model(x, hint, t, ctx, needed=needed).as_list()
            shared = model(x, hint, t, ctx, needed=needed, shared=(0, 0)).as_list()
        _same(shared, full)


def test_layers_after_the_shared_part_see_the_memory_layout_they_would_without_it():
    """A token sequence repeated as a new contiguous tensor turned every later image channels-last, and the CPU's
    convolutions then repacked their weights on every call (a shared step took 1.3x as long)."""
    model = _model(TINY)
    x, hint, t, ctx = _cond_uncond(TINY)
    strides: dict[str, list] = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_pre_hook(lambda mod, args, name=name: strides.setdefault(name, []).append(args[0].stride()))
    with torch.no_grad():
        model(x, hint, t, ctx)
        model(x, hint, t, ctx, shared=(0, 0))
    later = [name for name in strides if not name.startswith(("input_blocks.0", "input_hint", "zero_convs.0", "input_blocks.1.0"))]
    assert later and "input_blocks.1.1.proj_out" in later
    for name in later:
        assert strides[name][0] == strides[name][1], name


@pytest.mark.parametrize(
    ("shared", "n", "match"),
    [
        ((0,), 2, "it has 1 entries for a batch of 2 rows"),
        ((0, 2), 2, "entry 1 is 2, not a row number from 0 to 1"),
        ((1, 1), 2, "entry 0 is 1, not a row number from 0 to 0"),
        ((0, True), 2, "entry 1 is True"),
        ((0, 0.0), 2, "entry 1 is 0.0"),
        ((0, 0, 1), 3, "entry 2 names row 1, which itself names row 0"),
    ],
)
def test_a_bad_sharing_is_refused_naming_the_entry(shared, n, match):
    model = _model(TINY)
    x, hint, t, ctx = _cond_uncond(TINY, chunks=n)
    with pytest.raises(InputError, match=match):
        model(x, hint, t, ctx, shared=shared)


def test_sharing_traces_as_one_graph():
    model = _model(TINY)
    x, hint, t, ctx = _cond_uncond(TINY)
    torch._dynamo.reset()
    try:
        traced = torch.compile(model, backend="eager", fullgraph=True)
        with torch.no_grad():
            enc = model.encode_hint(hint)
            got = traced(x, None, t, ctx, encoded_hint=enc, shared=(0, 0)).as_list()
            want = model(x, None, t, ctx, encoded_hint=enc).as_list()
    finally:
        torch._dynamo.reset()
    _same(got, want)


def test_sharing_adds_few_operators_to_a_step():
    """An eager GPU step waits on the CPU dispatching operators: the sharing's own work is a few views and one
    repeat per shared tensor (7 operators for the usual cond/uncond pair), not a copy per row."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    model = _model(TINY)
    x, hint, t, ctx = _cond_uncond(TINY)
    counts = []
    with torch.inference_mode():
        enc = model.encode_hint(hint[:1])
        for shared in (None, (0, 0)):
            with Count() as c:
                model(x, None, t, ctx, encoded_hint=enc, shared=shared)
            counts.append(c.n)
    assert counts[1] - counts[0] <= 7, counts

"""The network: residual count and shapes, zero init, hint and input checks, dtype and pooling."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from affordance.controlnet import SD15, SD21, SDXL, ConfigError, ControlNet, ControlNetConfig, HintError, InputError
from affordance.controlnet.layers import timestep_embedding


@pytest.mark.parametrize(("preset", "count"), [(SD15, 13), (SD21, 13), (SDXL, 10)])
def test_full_size_residual_layout(preset, count):
    with torch.device("meta"):
        model = ControlNet(preset)
    assert preset.num_residuals == count
    assert len(model.zero_convs) == count - 1
    chans = [m[0].out_channels for m in model.zero_convs] + [model.middle_block_out[0].out_channels]
    assert tuple(chans) == preset.residual_channels()


def test_sd15_parameter_count():
    with torch.device("meta"):
        model = ControlNet(SD15)
    # 361.3 M parameters, as ComfyUI's cldm.ControlNet and the official 1.1 files have.
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 361.3


def test_fresh_model_returns_zero_residuals(tiny_config, inputs):
    model = ControlNet(tiny_config).eval()
    x, hint, t, ctx, y = inputs(tiny_config)
    out = model(x, hint, t, ctx, y)
    assert len(out) == tiny_config.num_residuals
    assert all(torch.count_nonzero(r) == 0 for r in out.as_list())


def test_residual_shapes_follow_latent(tiny_model, inputs):
    cfg = tiny_model.config
    x, hint, t, ctx, y = inputs(cfg, n=3, h=8, w=16)
    with torch.no_grad():
        out = tiny_model(x, hint, t, ctx, y)
    for r, c, f in zip(out.as_list(), cfg.residual_channels(), cfg.residual_downsampling()):
        assert r.shape == (3, c, 8 // f, 16 // f)
    assert all(r.abs().sum() > 0 for r in out.as_list())


def test_hint_batch_of_one_broadcasts(tiny_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_model.config, n=2)
    with torch.no_grad():
        one = tiny_model(x, hint[:1], t, ctx, y)
        both = tiny_model(x, hint[:1].expand(2, -1, -1, -1), t, ctx, y)
    torch.testing.assert_close(one.mid, both.mid)


def test_encoded_hint_equals_hint(tiny_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_model.config)
    with torch.no_grad():
        a = tiny_model(x, hint, t, ctx, y)
        b = tiny_model(x, None, t, ctx, y, encoded_hint=tiny_model.encode_hint(hint))
    for r1, r2 in zip(a.as_list(), b.as_list()):
        assert torch.equal(r1, r2)


def test_hint_wrong_channels(tiny_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_model.config)
    with pytest.raises(HintError, match=r"\(N, 3, H, W\), got \(2, 1, 64, 64\).*RGB"):
        tiny_model(x, hint[:, :1], t, ctx, y)


@pytest.mark.parametrize("shape", [(2, 3, 1, 64, 64), (3, 64, 64)])
def test_hint_of_other_dimensions(tiny_model, inputs, shape):
    x, _, t, ctx, y = inputs(tiny_model.config)
    with pytest.raises(HintError, match=rf"\(N, 3, H, W\), got \({', '.join(map(str, shape))}\)"):
        tiny_model(x, torch.rand(shape), t, ctx, y)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 4, 1, 8, 8), (4, 8, 8)])
def test_latent_shape_checked(tiny_model, inputs, shape):
    _, hint, t, ctx, y = inputs(tiny_model.config)
    with pytest.raises(InputError, match=rf"latent must be \(N, 4, h, w\), got \({', '.join(map(str, shape))}\)"):
        tiny_model(torch.randn(shape), hint, t, ctx, y)


def test_hint_not_divisible_by_8(tiny_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_model.config)
    with pytest.raises(HintError, match="60x60 is not divisible by 8"):
        tiny_model(x, hint[..., :60, :60], t, ctx, y)


@pytest.mark.parametrize(("h", "w"), [(64, 60), (60, 64)], ids=["width", "height"])
def test_a_hint_with_one_side_not_divisible_by_8_is_refused(tiny_model, h, w):
    """One side off is enough (a tiling host's hint is encoded as given, unresized)."""
    with pytest.raises(HintError, match=f"{w}x{h} is not divisible by 8"):
        tiny_model.encode_hint(torch.rand(1, 3, h, w))


def test_hint_size_must_match_latent(tiny_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_model.config)
    with pytest.raises(HintError, match="needs 64x64 px"):
        tiny_model(x, hint[..., :56, :56], t, ctx, y)


def test_no_hint_at_all_is_a_hint_error(tiny_model, inputs):
    """Neither a hint image nor an encoded hint: a HintError saying to pass one (not a TypeError from inside)."""
    x, _, t, ctx, y = inputs(tiny_model.config)
    with pytest.raises(HintError, match="no hint given: pass hint or encoded_hint"):
        tiny_model(x, None, t, ctx, y)


def test_hint_batch_mismatch(tiny_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_model.config, n=3)
    with pytest.raises(HintError, match="hint batch 2 fits no latent batch of 3"):
        tiny_model(x, hint[:2], t, ctx, y)


def test_context_width_checked(tiny_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_model.config)
    with pytest.raises(InputError, match="context must be"):
        tiny_model(x, hint, t, torch.randn(2, 7, 1024), y)


def test_label_width_checked(tiny_xl_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_xl_model.config)
    width = tiny_xl_model.config.adm_in_channels
    with pytest.raises(InputError, match=rf"label vector y of shape \(N, {width}\), got \(2, {width - 1}\)"):
        tiny_xl_model(x, hint, t, ctx, y[:, :-1])  # was a raw "mat1 and mat2 shapes cannot be multiplied"


def test_sdxl_requires_label(tiny_xl_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_xl_model.config)
    with pytest.raises(InputError, match="label vector y of width 64"):
        tiny_xl_model(x, hint, t, ctx, None)
    with torch.no_grad():
        out = tiny_xl_model(x, hint, t, ctx, y)
    assert len(out) == tiny_xl_model.config.num_residuals


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtype_follows_model(tiny_model, inputs, dtype):
    model = tiny_model.to(dtype)
    x, hint, t, ctx, y = inputs(model.config)
    with torch.no_grad():
        out = model(x, hint, t, ctx, y)
        ref = tiny_model.float()(x, hint, t, ctx, y)
    assert all(r.dtype == dtype for r in out.as_list())
    for a, b in zip(out.as_list(), ref.as_list()):
        torch.testing.assert_close(a.float(), b, atol=5e-2, rtol=5e-2)


def test_global_average_pooling(tiny_model, inputs):
    pooled = ControlNet(tiny_model.config.with_options(global_average_pooling=True)).eval()
    pooled.load_state_dict(tiny_model.state_dict())
    x, hint, t, ctx, y = inputs(tiny_model.config)
    with torch.no_grad():
        plain, avg = tiny_model(x, hint, t, ctx, y), pooled(x, hint, t, ctx, y)
    for p, a in zip(plain.as_list(), avg.as_list()):
        assert a.shape == p.shape
        torch.testing.assert_close(a, p.mean(dim=(2, 3), keepdim=True).expand_as(p))


def test_timestep_embedding_formula():
    t = torch.tensor([0.0, 999.0])
    emb = timestep_embedding(t, 6)
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(3) / 3)
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=1)
    torch.testing.assert_close(emb, expected)
    assert emb[0, :3].eq(1).all() and emb[0, 3:].eq(0).all()


def test_residual_scaling_and_sum(tiny_model, inputs):
    x, hint, t, ctx, y = inputs(tiny_model.config)
    with torch.no_grad():
        out = tiny_model(x, hint, t, ctx, y)
    zero = out.scaled(0.0)
    assert all(torch.count_nonzero(r) == 0 for r in zero.as_list())
    both = out + out.scaled(0.5)
    torch.testing.assert_close(both.mid, out.mid * 1.5)
    with pytest.raises(InputError, match="got 3 weights for 5 residuals"):
        out.scaled([1.0, 1.0, 1.0])


def _count_calls(modules) -> list[int]:
    counts = [0] * len(modules)
    for i, m in enumerate(modules):
        m.register_forward_hook(lambda *a, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


def test_needed_skips_zero_convs_and_trailing_blocks(tiny_model, inputs):
    cfg = tiny_model.config
    x, hint, t, ctx, y = inputs(cfg)
    with torch.no_grad():
        full = tiny_model(x, hint, t, ctx, y).as_list()
        needed = [False] * cfg.num_residuals
        needed[0] = needed[2] = True
        blocks = _count_calls(list(tiny_model.input_blocks) + [tiny_model.middle_block])
        convs = _count_calls([z[0] for z in tiny_model.zero_convs] + [tiny_model.middle_block_out[0]])
        part = tiny_model(x, hint, t, ctx, y, needed=needed).as_list()
    for i, (a, b) in enumerate(zip(part, full)):
        if needed[i]:
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        else:
            assert a is None
    assert blocks == [1, 1, 1] + [0] * (cfg.num_residuals - 3)  # nothing after the last needed residual runs
    assert convs == [int(f) for f in needed]


def test_needed_middle_only_runs_every_block(tiny_model, inputs):
    cfg = tiny_model.config
    x, hint, t, ctx, y = inputs(cfg)
    needed = [False] * (cfg.num_residuals - 1) + [True]
    with torch.no_grad():
        full = tiny_model(x, hint, t, ctx, y)
        convs = _count_calls([z[0] for z in tiny_model.zero_convs])
        part = tiny_model(x, hint, t, ctx, y, needed=needed)
    assert all(r is None for r in part.down) and not any(convs)
    torch.testing.assert_close(part.mid, full.mid, rtol=0, atol=0)


def test_needed_nothing_runs_nothing(tiny_model, inputs):
    cfg = tiny_model.config
    x, hint, t, ctx, y = inputs(cfg)
    calls = _count_calls([tiny_model.time_embed[0], tiny_model.input_blocks[0]])
    out = tiny_model(x, None, t, ctx, y, encoded_hint=tiny_model.encode_hint(hint), needed=[False] * cfg.num_residuals)
    assert out.as_list() == [None] * cfg.num_residuals and calls == [0, 0]
    assert out.scaled(2.0).as_list() == [None] * cfg.num_residuals


def test_needed_of_wrong_length_is_refused(tiny_model, inputs):
    cfg = tiny_model.config
    x, hint, t, ctx, y = inputs(cfg)
    with pytest.raises(InputError, match=f"needed has 3 flags but this .* has {cfg.num_residuals} residuals"):
        tiny_model(x, hint, t, ctx, y, needed=[True] * 3)


def test_residuals_with_holes_add_and_scale(tiny_model, inputs):
    cfg = tiny_model.config
    x, hint, t, ctx, y = inputs(cfg)
    needed = [i % 2 == 0 for i in range(cfg.num_residuals)]
    with torch.no_grad():
        full = tiny_model(x, hint, t, ctx, y)
        part = tiny_model(x, hint, t, ctx, y, needed=needed)
    total = (part + full).as_list()
    for i, (s, f) in enumerate(zip(total, full.as_list())):
        torch.testing.assert_close(s, f * 2 if needed[i] else f)
    holes = (part + part.scaled(0.5)).as_list()
    assert [h is None for h in holes] == [not f for f in needed]


def _checkpoint_forward(model: ControlNet, x, hint, t, ctx, y) -> list[torch.Tensor]:
    """The forward as the checkpoints' containers spell it: every ``nn.Sequential`` called whole, and each
    ResBlock applying its own ``emb_layers`` (SiLU, Linear) to the raw embedding."""
    from affordance.controlnet.layers import ResBlock, SpatialTransformer

    emb = model.time_embed(timestep_embedding(t, model.config.model_channels))
    if y is not None:
        emb = emb + model.label_emb(y)

    def run(seq, h):
        for layer in seq:
            if isinstance(layer, ResBlock):
                e = layer.emb_layers(emb)[:, :, None, None]
                h = layer.skip_connection(h) + layer.out_layers(layer.in_layers(h) + e)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, None, ctx)
            else:
                h = layer(h)
        return h

    outs, h = [], x
    for i, (block, zero) in enumerate(zip(model.input_blocks, model.zero_convs)):
        h = run(block, h)
        if i == 0:
            h = h + model.input_hint_block(hint, None, None)
        outs.append(zero(h, None, None))
    return outs + [model.middle_block_out(run(model.middle_block, h), None, None)]


@pytest.mark.parametrize("which", ["tiny_model", "tiny_xl_model"])
def test_step_shortcuts_equal_the_checkpoint_containers(which, request, inputs):
    """The per-step path skips no-op modules and applies the embedding's SiLU once: bit-identical results."""
    model = request.getfixturevalue(which)
    x, hint, t, ctx, y = inputs(model.config)
    with torch.no_grad():
        ours = model(x, hint, t, ctx, y).as_list()
        ref = _checkpoint_forward(model, x, hint, t, ctx, y)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_step_calls_no_parameter_free_module(tiny_xl_model, inputs):
    """SiLU, dropout-at-0 and identity modules cost Python calls per step and are applied directly instead."""
    from torch import nn

    model = tiny_xl_model
    x, hint, t, ctx, y = inputs(model.config)
    free = [m for name, m in model.named_modules() if isinstance(m, (nn.SiLU, nn.Dropout, nn.Identity))]
    free = [m for m in free if not any(m is h for h in model.input_hint_block.modules())]
    assert free  # the checkpoint layout has them (emb_layers.0, to_out.1, net.1, skip_connection...)
    calls = _count_calls(free)
    with torch.no_grad():
        model(x, None, t, ctx, y, encoded_hint=model.encode_hint(hint))
    assert sum(calls) == 0


def test_inconsistent_architectures_are_config_errors():
    """ControlNetConfig and the model refuse contradictions with a ConfigError that says what to change."""
    with pytest.raises(ConfigError, match="num_res_blocks has 1 levels but channel_mult has 2"):
        ControlNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=(1,), transformer_depth=(1,))
    with pytest.raises(ConfigError, match="set exactly one of num_heads"):
        replace(SD15, num_head_channels=64)
    with pytest.raises(ConfigError, match="64 attention channels cannot be split into heads"):
        ControlNet(
            replace(SD15, model_channels=64, channel_mult=(1,), num_res_blocks=(1,), transformer_depth=(1,), num_heads=3)
        )
    tiny = ControlNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), transformer_depth=(1, 0))
    assert replace(tiny, attention=(True, False)).attention == (True, False)  # an explicit list that fits
    assert replace(tiny, attention=(True, True)).attention == (True, True)  # attention without transformers
    with pytest.raises(ConfigError, match="a residual block with transformer blocks must have its attention layer"):
        replace(tiny, attention=(False, False))
    with pytest.raises(ConfigError, match="the middle block has 1 or 2 ResBlocks, got 3"):
        replace(tiny, middle_resblocks=3)


@pytest.mark.parametrize("which", ["tiny_model", "tiny_xl_model"])
def test_forward_traces_as_one_graph(which, request, inputs):
    """torch.compile captures a whole step, holes included, with no graph break (fullgraph raises on one)."""
    model = request.getfixturevalue(which)
    cfg = model.config
    x, hint, t, ctx, y = inputs(cfg)
    needed = [i % 3 != 1 for i in range(cfg.num_residuals)]
    torch._dynamo.reset()
    try:
        traced = torch.compile(model, backend="eager", fullgraph=True)
        with torch.no_grad():
            enc = model.encode_hint(hint)
            got = traced(x, None, t, ctx, y, encoded_hint=enc, needed=needed).as_list()
            want = model(x, None, t, ctx, y, encoded_hint=enc, needed=needed).as_list()
    finally:
        torch._dynamo.reset()
    assert [g is None for g in got] == [not f for f in needed]
    for g, w in zip(got, want):
        if w is not None:
            torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_a_video_of_hints_is_encoded_a_slice_at_a_time(tiny_model):
    """37 hints go through the encoder 16, 16 and 5 at a time (the encoder's full-resolution activations never
    exist for the whole batch), with the result of encoding each hint alone."""
    from affordance.controlnet.model import HINT_ENCODE_ROWS

    hint = torch.rand(37, tiny_model.config.hint_channels, 16, 16, generator=torch.Generator().manual_seed(2))
    seen: list[int] = []
    tiny_model.input_hint_block.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    with torch.no_grad():
        enc = tiny_model.encode_hint(hint)
        seen_batch, seen[:] = list(seen), []
        alone = torch.cat([tiny_model.encode_hint(hint[i : i + 1]) for i in range(37)])
    assert HINT_ENCODE_ROWS == 16 and seen_batch == [16, 16, 5]
    torch.testing.assert_close(enc, alone, atol=1e-6, rtol=1e-5)


def test_residuals_of_different_lengths_cannot_be_added_and_are_immutable():
    from dataclasses import FrozenInstanceError

    from affordance.controlnet.residuals import ControlResiduals

    a = ControlResiduals((torch.ones(1), torch.ones(1)), torch.ones(1))
    b = ControlResiduals((torch.ones(1),), torch.ones(1))
    with pytest.raises(InputError, match="cannot add residuals of 3 and 2 entries"):
        a + b
    with pytest.raises(FrozenInstanceError):
        a.mid = None

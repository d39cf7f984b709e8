"""The CUDA-graph runner: replays match the eager forward, layouts, refusals, failed or wrong recordings."""

from __future__ import annotations

import logging

import pytest
import torch

from affordance.controlnet.graphs import CudaGraphBackend, GraphedControlNet, agree, weights_movable_reason


def _eager(model, x, t, ctx, y, enc, needed=None):
    return model(x, None, t, ctx, y, encoded_hint=enc, needed=needed).as_list()


def _steps(model, inputs, n=3):
    x, hint, t, ctx, y = inputs(model.config)
    enc = model.encode_hint(hint)
    for i in range(n):  # new values, same layout: what a sampling run does
        yield x * (1 + i) + i, t - 100 * i, ctx.roll(i, dims=1), y, enc


def _assert_same(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert (p is None) == (q is None)
        if p is not None:
            torch.testing.assert_close(p, q, rtol=0, atol=0)


@torch.no_grad()
def test_replays_follow_new_inputs(tiny_model, inputs, standin_graphs):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend)
    seen = []
    for args in _steps(tiny_model, inputs):
        got = runner(*args)
        _assert_same(got, _eager(tiny_model, *args))
        seen.append(got)
    assert backend.captures == 1 and runner.replays == 3 and runner.eager_calls == 0 and runner.recorded == 1
    assert all(a is b for a, b in zip(seen[0], seen[2]))  # static outputs: the next call overwrites them


@torch.no_grad()
def test_each_layout_is_recorded_once_up_to_a_limit(tiny_model, inputs, standin_graphs):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend, max_layouts=2)
    cfg = tiny_model.config
    for n, h in [(2, 8), (1, 8), (2, 8), (2, 16), (1, 8)]:
        x, hint, t, ctx, y = inputs(cfg, n=n, h=h, w=h)
        enc = tiny_model.encode_hint(hint)
        _assert_same(runner(x, t, ctx, y, enc), _eager(tiny_model, x, t, ctx, y, enc))
    assert backend.captures == 2 and runner.recorded == 2 and runner.eager_calls == 1  # the third layout ran eagerly
    runner.release()
    assert runner.recorded == 0


@torch.no_grad()
def test_four_layouts_are_recorded_by_default(tiny_model, inputs, standin_graphs):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend)
    cfg = tiny_model.config
    for n, h in [(1, 8), (2, 8), (3, 8), (4, 8), (1, 16), (2, 16)]:
        x, hint, t, ctx, y = inputs(cfg, n=n, h=h, w=h)
        runner(x, t, ctx, y, tiny_model.encode_hint(hint))
    assert backend.captures == 4 and runner.recorded == 4 and runner.eager_calls == 2


@torch.no_grad()
def test_needed_flags_are_part_of_the_layout(tiny_model, inputs, standin_graphs):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend)
    x, hint, t, ctx, y = inputs(tiny_model.config)
    enc = tiny_model.encode_hint(hint)
    needed = [True, False] + [False] * (tiny_model.config.num_residuals - 2)
    _assert_same(runner(x, t, ctx, y, enc, needed), _eager(tiny_model, x, t, ctx, y, enc, needed))
    _assert_same(runner(x, t, ctx, y, enc), _eager(tiny_model, x, t, ctx, y, enc))
    assert backend.captures == 2


@torch.no_grad()
def test_shared_rows_are_part_of_the_layout_and_reach_the_network(tiny_model, inputs, standin_graphs):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend)
    x, hint, t, ctx, y = inputs(tiny_model.config)
    x, t = x[:1].repeat(2, 1, 1, 1), t[:1].repeat(2)  # cond and uncond rows of one ComfyUI call
    enc = tiny_model.encode_hint(hint[:1])
    seen = []
    tiny_model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs.get("shared")), with_kwargs=True)
    want = _eager(tiny_model, x, t, ctx, y, enc)
    got = runner(x, t, ctx, y, enc, None, (0, 0))
    for p, q in zip(got, want):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    runner(x, t, ctx, y, enc)
    runner(x, t, ctx, y, enc, None, (0, 0))
    assert backend.captures == 2 and runner.replays == 3
    assert (0, 0) in seen[1:] and seen[1:].count(None) >= 1  # each recording ran the network with its own sharing


@torch.no_grad()
@pytest.mark.parametrize("backend_args", [{"reason": "weights are offloaded"}, {"fail": "capture failed"}])
def test_the_eager_fallback_skips_the_residuals_not_needed(tiny_model, inputs, standin_graphs, backend_args):
    """Graphs refused or failed: the eager forward still skips the residuals weighted zero (they come back as None,
    as from a recording), at the first call that decides and at the next that runs eagerly directly."""
    runner = GraphedControlNet(tiny_model, standin_graphs(**backend_args))
    x, hint, t, ctx, y = inputs(tiny_model.config)
    enc = tiny_model.encode_hint(hint)
    needed = [True, False] + [False] * (tiny_model.config.num_residuals - 2)
    for _ in range(2):
        got = runner(x, t, ctx, y, enc, needed)
        assert [o is None for o in got] == [not f for f in needed]
        _assert_same(got, _eager(tiny_model, x, t, ctx, y, enc, needed))
    assert runner.recorded == 0 and runner.eager_calls >= 1


@torch.no_grad()
@pytest.mark.parametrize("backend_args", [{"reason": "weights are offloaded"}, {"fail": "capture failed"}])
def test_the_eager_fallback_shares_the_rows(tiny_model, inputs, standin_graphs, backend_args):
    """Graphs refused or failed: the eager forward still computes the shared rows once (and gives the residuals of
    every row), at the first call that decides and at the next that runs eagerly directly."""
    runner = GraphedControlNet(tiny_model, standin_graphs(**backend_args))
    x, hint, t, ctx, y = inputs(tiny_model.config)
    x, t = x[:1].repeat(2, 1, 1, 1), t[:1].repeat(2)  # cond and uncond rows of one ComfyUI call
    enc = tiny_model.encode_hint(hint[:1])
    want = _eager(tiny_model, x, t, ctx, y, enc)
    seen = []
    tiny_model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs.get("shared")), with_kwargs=True)
    for _ in range(2):
        got = runner(x, t, ctx, y, enc, None, (0, 0))
        for p, q in zip(got, want):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert runner.recorded == 0 and runner.eager_calls == 2
    assert seen and all(s == (0, 0) for s in seen)


@torch.no_grad()
@pytest.mark.parametrize(
    ("backend_args", "message"),
    [
        ({"reason": "weights are offloaded"}, "CUDA graphs off for this ControlNet: weights are offloaded"),
        ({"fail": "operation not permitted when stream is capturing"}, "capture failed (RuntimeError: operation not"),
        ({"corrupt": True}, "the replay disagreed with the eager forward"),
        # a recording that writes nothing (made on another device's stream): the capture's own outputs do not count
        ({"empty": True}, "the replay disagreed with the eager forward"),
        # a backend that hands back no eager forward cannot be checked: not trusted (was a TypeError in agree)
        ({"no_reference": True}, "the replay disagreed with the eager forward"),
    ],
)
def test_refusals_and_bad_recordings_fall_back_to_eager(tiny_model, inputs, standin_graphs, caplog, backend_args, message):
    runner = GraphedControlNet(tiny_model, standin_graphs(**backend_args))
    with caplog.at_level(logging.INFO, logger="affordance.controlnet"):
        for args in _steps(tiny_model, inputs):
            _assert_same(runner(*args), _eager(tiny_model, *args))
    assert message in caplog.text and caplog.text.count(message) == 1
    assert runner.recorded == 0 and runner.replays == 0


@torch.no_grad()
def test_replaced_weights_are_recorded_again_and_in_place_updates_are_not(tiny_model, inputs, standin_graphs, caplog):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend, max_rerecords=2)
    args = next(_steps(tiny_model, inputs, n=1))
    conv = tiny_model.zero_convs[0][0]
    with caplog.at_level(logging.INFO, logger="affordance.controlnet"):
        runner(*args)
        conv.weight.mul_(2)  # in place: a recording reads the new values at the same address
        _assert_same(runner(*args), _eager(tiny_model, *args))
        assert backend.captures == 1 and runner.rerecords == 0
        for i in range(3):  # as ComfyUI's patcher does (set_attr_param): a new tensor at a new address
            conv.weight = torch.nn.Parameter(conv.weight * 0.5, requires_grad=False)
            _assert_same(runner(*args), _eager(tiny_model, *args))
            assert backend.captures == min(i + 2, 3)
        _assert_same(runner(*args), _eager(tiny_model, *args))
    assert caplog.text.count("weights were replaced or moved; recording again") == 2
    assert "CUDA graphs off for this run: the ControlNet's weights were replaced 3 times" in caplog.text
    assert runner.rerecords == 3 and runner.recorded == 0 and runner.eager_calls == 2


class Stop(Exception):
    """What a host raises to stop the work (ComfyUI's InterruptProcessingException is an Exception too)."""


@torch.no_grad()
def test_a_request_to_stop_during_capture_is_raised_not_swallowed(tiny_model, inputs, standin_graphs, caplog):
    backend = standin_graphs(fail=Stop("cancelled"))
    runner = GraphedControlNet(tiny_model, backend)
    args = next(_steps(tiny_model, inputs, n=1))
    with caplog.at_level(logging.INFO, logger="affordance.controlnet"), pytest.raises(Stop, match="cancelled"):
        runner(*args)
    assert "capture failed" not in caplog.text and runner.recorded == 0
    backend.fail = None  # the next run records as usual: nothing was remembered as eager-only
    _assert_same(runner(*args), _eager(tiny_model, *args))
    assert runner.recorded == 1


@torch.no_grad()
def test_layouts_share_one_pool_and_drop_their_eager_reference(tiny_model, inputs, standin_graphs):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend)
    cfg = tiny_model.config
    for n, h in [(2, 8), (1, 8), (2, 16)]:
        x, hint, t, ctx, y = inputs(cfg, n=n, h=h, w=h)
        enc = tiny_model.encode_hint(hint)
        _assert_same(runner(x, t, ctx, y, enc), _eager(tiny_model, x, t, ctx, y, enc))
    first = backend.pools[1]
    assert backend.pools == [None, first, first] and first is not None
    assert all(layout.captured.reference is None for layout in runner._layouts.values())
    runner.release()  # a new run: a new pool
    x, hint, t, ctx, y = inputs(cfg)
    runner(x, t, ctx, y, tiny_model.encode_hint(hint))
    assert backend.pools[-1] is None


def test_a_recording_made_in_inference_mode_is_not_replayed_outside_it(tiny_model, inputs, standin_graphs):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend)
    args = next(_steps(tiny_model, inputs, n=1))
    with torch.inference_mode():
        _assert_same(runner(*args), _eager(tiny_model, *args))
    with torch.no_grad():  # static buffers made in inference mode could not be written here
        _assert_same(runner(*args), _eager(tiny_model, *args))
    assert backend.captures == 2 and runner.recorded == 2


@torch.no_grad()
def test_a_removed_weight_turns_graphs_off_instead_of_blinding_the_check(tiny_model, inputs, standin_graphs, caplog):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend)
    args = next(_steps(tiny_model, inputs, n=1))
    conv = tiny_model.zero_convs[0][0]
    bias = conv.bias
    with caplog.at_level(logging.INFO, logger="affordance.controlnet"):
        _assert_same(runner(*args), _eager(tiny_model, *args))
        conv.bias = None  # a weight slot emptied: its address can no longer be followed
        _assert_same(runner(*args), _eager(tiny_model, *args))
        conv.bias = torch.nn.Parameter(bias * 3, requires_grad=False)  # back, at a new address
        _assert_same(runner(*args), _eager(tiny_model, *args))
    assert "one of its weights was removed" in caplog.text
    assert backend.captures == 1 and runner.recorded == 0


def test_weights_that_cannot_be_recorded(tiny_model):
    assert weights_movable_reason(tiny_model, torch.device("cpu")) is not None  # autograd on, trainable weights
    with torch.no_grad():
        assert weights_movable_reason(tiny_model, torch.device("cpu")) is None
        assert "not cuda" in weights_movable_reason(tiny_model, torch.device("cuda"))
        layer = tiny_model.input_blocks[0][0]
        layer.comfy_cast_weights = True
        assert "input_blocks.0.0 casts its weights per call" in weights_movable_reason(tiny_model, torch.device("cpu"))
        layer.comfy_cast_weights = False
        layer.weight_function = [lambda w: w * 2]
        assert "input_blocks.0.0 patches its weights per call" in weights_movable_reason(tiny_model, torch.device("cpu"))
        layer.weight_function = []
        layer.bias_function = [lambda b: b + 1]  # a bias patch alone (a LoRA's bias, a weight adjustment)
        assert "input_blocks.0.0 patches its weights per call" in weights_movable_reason(tiny_model, torch.device("cpu"))


def test_cuda_backend_refuses_cpu_inputs(tiny_model):
    assert "not a CUDA device" in CudaGraphBackend().why_not(tiny_model, torch.zeros(1))


def test_agree_compares_holes_shapes_and_values():
    a = [torch.ones(2, 3), None]
    assert agree(a, [torch.ones(2, 3) * (1 + 1e-4), None])
    assert not agree(a, [torch.ones(2, 3) * 1.01, None])
    assert not agree(a, [torch.ones(2, 3), torch.ones(1)])
    assert not agree(a, [torch.ones(3, 2), None])
    assert not agree(a, a[:1])


@pytest.mark.gpu
@torch.inference_mode()
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_graph_replays_equal_eager_on_a_gpu(tiny_model, inputs, dtype):
    x, hint, t, ctx, y = inputs(tiny_model.config)
    model = tiny_model.to("cuda", dtype)
    enc = model.encode_hint(hint.to("cuda", dtype))
    runner = GraphedControlNet(model)
    for i in range(3):
        args = ((x * (1 + i) + i).to("cuda", dtype), (t - 100 * i).cuda(), ctx.roll(i, 1).to("cuda", dtype), None, enc)
        got = [o.clone() for o in runner(*args)]
        assert agree(got, _eager(model, *args), rtol=1e-3)
    assert runner.recorded == 1 and runner.replays == 3


@pytest.mark.gpu
@torch.inference_mode()
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_replay_with_shared_rows_equals_eager_on_a_gpu(tiny_model, inputs, dtype):
    """The cond/uncond pair sharing its text-free layers, recorded and replayed: the repeat of the shared rows is
    part of the recording, and each replay follows the new latent."""
    x, hint, t, ctx, y = inputs(tiny_model.config)
    model = tiny_model.to("cuda", dtype)
    enc = model.encode_hint(hint[:1].to("cuda", dtype))
    runner = GraphedControlNet(model)
    for i in range(3):
        xi = (x[:1] * (1 + i) + i).repeat(2, 1, 1, 1).to("cuda", dtype)
        args = (xi, t[:1].repeat(2).cuda() - 100 * i, ctx.roll(i, 1).to("cuda", dtype), None, enc)
        got = [o.clone() for o in runner(*args, None, (0, 0))]
        assert agree(got, _eager(model, *args), rtol=1e-3)
    assert runner.recorded == 1 and runner.replays == 3


@pytest.mark.gpu
@torch.inference_mode()
@pytest.mark.parametrize("which", ["tiny_model", "tiny_xl_model"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_layouts_sharing_a_pool_alternate_without_corrupting_each_other(which, request, inputs, dtype):
    """Two layouts (batch 2 with holes, batch 1 with a one-row hint) recorded into one pool and replayed in turn,
    on a side stream as ComfyUI may: every call equals the eager forward at once. A second run of the same leaves
    no memory behind (no new cuBLAS workspace per capture, the recordings' memory back on release)."""
    model = request.getfixturevalue(which).to("cuda", dtype)
    cfg = model.config
    needed = [i % 3 != 1 for i in range(cfg.num_residuals)]
    layouts = []
    for n, flags in ((2, needed), (1, None)):
        x, hint, t, ctx, y = (None if v is None else v.cuda() for v in inputs(cfg, n=n))
        enc = model.encode_hint(hint[:1].to(dtype))  # one hint row, broadcast over the batch
        layouts.append((x.to(dtype), t, ctx.to(dtype), None if y is None else y.to(dtype), enc, flags))
    stream = torch.cuda.Stream()

    def run() -> None:
        runner = GraphedControlNet(model)
        with torch.cuda.stream(stream):
            for i in range(6):
                x, t, ctx, y, enc, flags = layouts[i % 2]
                args = (x * (1 + i), t - 50 * i, ctx.roll(i, 1), y, enc)
                got = [None if o is None else o.clone() for o in runner(*args, flags)]
                assert agree(got, _eager(model, *args, needed=flags), rtol=1e-3), f"call {i}"
        torch.cuda.synchronize()
        assert runner.recorded == 2 and runner.replays == 6 and runner.eager_calls == 0
        runner.release()
        torch.cuda.synchronize()

    run()  # the first run makes what lasts by design (each stream's cuBLAS workspace, made once)
    before = torch.cuda.memory_allocated()
    run()
    if torch.cuda.get_allocator_backend() == "native":  # cudaMallocAsync (ComfyUI's default) frees on its own terms
        assert torch.cuda.memory_allocated() <= before


def test_one_capture_stream_per_device_made_once(monkeypatch):
    from affordance.controlnet import graphs

    made = []

    class FakeStream:
        def __init__(self, device):
            made.append(device)

    monkeypatch.setattr(graphs, "_CAPTURE_STREAMS", {})
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    first = graphs.capture_stream(torch.device("cuda", 0))
    assert graphs.capture_stream(torch.device("cuda")) is first  # "cuda" is the current device, 0 here
    other = graphs.capture_stream(torch.device("cuda", 1))
    assert other is not first and graphs.capture_stream(torch.device("cuda", 1)) is other
    assert made == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert CudaGraphBackend().stream is None and CudaGraphBackend(first).stream is first


def test_agree_scales_its_tolerance_with_each_tensors_range():
    """A small value next to a large one may differ by a share of the large one's range (fp16 rounding)."""
    assert agree([torch.tensor([100.0, 0.1])], [torch.tensor([100.0, 0.0])])
    assert not agree([torch.tensor([1.0, 0.1])], [torch.tensor([1.0, 0.0])])
    assert agree([torch.zeros(0)], [torch.zeros(0)])


def test_an_all_zero_reference_keeps_a_tolerance_floor():
    """A residual still all zeros (an untrained zero convolution, one weighted away): rounding noise of another
    kernel agrees with it, a real difference does not."""
    zero = torch.zeros(2, 3)
    assert agree([zero + 1e-10], [zero])
    assert not agree([zero + 1e-8], [zero])
    # the floor is rtol millionths of a unit: 2e-9 at the default rtol 2e-3, scaling with rtol
    assert agree([zero + 1.5e-9], [zero]) and not agree([zero + 3e-9], [zero])
    assert agree([zero + 3e-9], [zero], rtol=4e-3)


@torch.no_grad()
def test_by_default_the_runner_records_again_three_times(tiny_model, inputs, standin_graphs):
    backend = standin_graphs()
    runner = GraphedControlNet(tiny_model, backend)
    x, hint, t, ctx, y = inputs(tiny_model.config)
    args = (x, t, ctx, y, tiny_model.encode_hint(hint))
    runner(*args)
    conv = tiny_model.zero_convs[0][0]
    for _ in range(4):  # ComfyUI's patcher replaces the parameter: a new tensor at a new address
        conv.weight = torch.nn.Parameter(conv.weight * 0.5, requires_grad=False)
        runner(*args)
    assert backend.captures == 4  # the first recording and three more; after the fourth replacement, eager
    assert runner.rerecords == 4 and runner.recorded == 0 and runner.eager_calls == 1


@torch.no_grad()
def test_without_the_check_a_recording_is_trusted(tiny_model, inputs, standin_graphs):
    backend = standin_graphs(no_reference=True)
    runner = GraphedControlNet(tiny_model, backend, check=False)
    x, hint, t, ctx, y = inputs(tiny_model.config)
    enc = tiny_model.encode_hint(hint)
    runner(x, t, ctx, y, enc)
    runner(x, t, ctx, y, enc)
    assert runner.recorded == 1 and runner.replays == 2 and runner.eager_calls == 0


def test_frozen_weights_can_be_recorded_with_grad_mode_on(tiny_model):
    """Only a weight that asks for gradients rules graphs out, not grad mode itself."""
    tiny_model.requires_grad_(False)
    with torch.enable_grad():
        assert weights_movable_reason(tiny_model, torch.device("cpu")) is None
        tiny_model.zero_convs[0][0].weight.requires_grad_(True)
        assert weights_movable_reason(tiny_model, torch.device("cpu")) == "autograd is on (graphs are for inference)"

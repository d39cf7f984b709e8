"""CUDA-graph replay inside our control object (stand-in backend): same residuals as eager, per run."""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet.reuse import ReusePolicy
from affordance.controlnet.weights import ControlWeights, Preset
from affordance.nodes.control import GRAPHS_ENV, AffordanceControl, graphs_requested


def _ready(base: AffordanceControl, fake_model, image, graphs, backend=None, **extras) -> AffordanceControl:
    c = base.copy().set_cond_hint(image().movedim(-1, 1), extras.pop("strength", 1.0))
    c.cuda_graphs, c.graph_backend = graphs, backend
    reuse = extras.pop("reuse", None)
    if extras:
        c.configure(**extras)
    if reuse:
        c.set_reuse(reuse)
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    return c


def _flat(out):
    return None if out is None else out["output"] + out["middle"]


def _same(a, b):
    assert (a is None) == (b is None)
    for p, q in zip(a or [], b or []):
        assert (p is None) == (q is None)
        if p is not None:
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


# sigmas of a short run, each called with cond+uncond batched, then cond and uncond one at a time (as ComfyUI
# does when they do not fit together): two recorded layouts, three kinds of call with different inputs
SCHEDULE = [(p, order) for p in (0.05, 0.2, 0.45, 0.7, 0.9) for order in ((1, 0), (0,), (1,))]


@pytest.mark.parametrize(
    "extras",
    [
        {},
        {"weights": ControlWeights(uncond_multiplier=0.3), "mask": torch.ones(1, 64, 64).tril()},
        {"weights": ControlWeights(Preset.CUSTOM, custom=(1.0, 0.0, 0.5, 0.0, 2.0)), "strength": 0.7},
        {"reuse": ReusePolicy(2)},
        {"weights": ControlWeights(Preset.CONTROLNET_MORE_IMPORTANT)},
        {"weights": ControlWeights(uncond_multiplier=0.0), "reuse": ReusePolicy(2), "mask": torch.ones(1, 64, 64).tril()},
    ],
    ids=["plain", "uncond-and-mask", "zero-weights", "reuse", "uncond-rows-skipped", "uncond-rows-skipped-reuse"],
)
def test_graphed_run_equals_eager_run(control, fake_model, image, call, sigma, standin_graphs, extras):
    backend = standin_graphs()
    eager = _ready(control, fake_model, image, False, **dict(extras))
    graphed = _ready(control, fake_model, image, True, backend, **dict(extras))
    with torch.no_grad():
        for p, order in SCHEDULE:
            s = sigma(p)
            a, _ = call(eager, s, order=order, seed=sum(order) + len(order))
            b, _ = call(graphed, s, order=order, seed=sum(order) + len(order))
            _same(_flat(b), _flat(a))
    # negative rows weighted zero are skipped: the batched call runs the cond row only, the uncond call nothing
    skips = "weights" in extras and extras["weights"].effective_uncond_multiplier == 0.0
    assert backend.captures == (1 if skips else 2)
    if "reuse" in extras:  # residuals kept for reuse must not be overwritten by later replays
        assert graphed.reuse_stats.reused > 0 and graphed._graph.replays == graphed.reuse_stats.computed
    else:
        assert graphed._graph.replays == len(SCHEDULE) - (sum(order == (1,) for _, order in SCHEDULE) if skips else 0)
    graphed.cleanup()
    assert graphed._graph is None


def test_two_controls_on_one_network_do_not_share_a_recording(control, fake_model, image, call, sigma, standin_graphs):
    def chain(graphs):
        backend = standin_graphs()
        first = _ready(control, fake_model, image, graphs, backend)
        second = _ready(control, fake_model, lambda: image(seed=9), graphs, backend, strength=0.5)
        second.set_previous_controlnet(first)
        return second, backend

    eager, _ = chain(False)
    graphed, backend = chain(True)
    with torch.no_grad():
        for p in (0.1, 0.5, 0.8):
            s = sigma(p)
            _same(_flat(call(graphed, s)[0]), _flat(call(eager, s)[0]))
    assert backend.captures == 2  # one recording per control object, each with its own outputs


def test_graphs_off_by_default_and_requested_by_environment(control, monkeypatch):
    monkeypatch.delenv(GRAPHS_ENV, raising=False)
    assert not graphs_requested() and not AffordanceControl(control.network).cuda_graphs
    for value, on in [("1", True), ("on", True), (" TRUE ", True), ("0", False), ("off", False), ("", False)]:
        monkeypatch.setenv(GRAPHS_ENV, value)
        assert graphs_requested() is on
    monkeypatch.setenv(GRAPHS_ENV, "1")
    c = AffordanceControl(control.network)
    assert c.cuda_graphs and c.copy().cuda_graphs


def test_graphs_requested_on_the_cpu_run_eagerly(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image, True)  # the real CUDA backend refuses CPU inputs
    ref = _ready(control, fake_model, image, False)
    with torch.no_grad():
        _same(_flat(call(c, sigma(0.5))[0]), _flat(call(ref, sigma(0.5))[0]))
    assert c._graph.recorded == 0 and c._graph.eager_calls == 1


def test_a_new_run_never_replays_the_last_runs_recordings(control, fake_model, image, call, sigma, standin_graphs):
    backend = standin_graphs()
    c = _ready(control, fake_model, image, True, backend)
    with torch.no_grad():
        call(c, sigma(0.5))
        first = c._graph
        model = fake_model()
        c.pre_run(model, model.model_sampling.percent_to_sigma)  # no cleanup() in between
        assert c._graph is None and first.recorded == 0
        call(c, sigma(0.5))
    assert backend.captures == 2


def test_what_a_cancelled_run_left_is_dropped_before_the_next_run_loads(control, fake_model, image, call, sigma, standin_graphs):
    """ComfyUI skips cleanup when a run is cancelled or fails, then calls get_models for the next run before it
    loads any model: recordings, encoded hints and reused residuals of the unfinished run go there."""
    backend = standin_graphs()
    c = _ready(control, fake_model, image, True, backend, reuse=ReusePolicy(2), mask=torch.ones(1, 64, 64))
    for p in (0.1, 0.3):
        call(c, sigma(p))
    graph = c._graph
    assert graph is not None and graph.recorded == 1 and c._encoded_hints and c._reuse_cache is not None
    assert c._mask_cache  # no cleanup(): the run was cancelled here
    assert c.get_models() == []  # no patcher outside ComfyUI
    assert c._graph is None and graph.recorded == 0  # the recording's memory is released
    assert not c._encoded_hints and not c._hint_layouts and not c._mask_cache and not c._factor_cache
    assert c._reuse_cache is None
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)  # the next run works as usual
    fresh = _ready(control, fake_model, image, False, reuse=ReusePolicy(2), mask=torch.ones(1, 64, 64))
    _same(_flat(call(c, sigma(0.2))[0]), _flat(call(fresh, sigma(0.2))[0]))


def test_copy_keeps_the_cuda_graphs_setting(control, monkeypatch):
    """A control (and its graph backend) set to replay graphs (as bench_speed sets it) or kept eager (a MultiGPU clone) stays so when
    copied, whatever the environment says then."""
    monkeypatch.delenv(GRAPHS_ENV, raising=False)
    on = AffordanceControl(control.network)
    backend = object()
    on.cuda_graphs, on.graph_backend = True, backend
    assert on.copy().cuda_graphs is True and on.copy().graph_backend is backend
    monkeypatch.setenv(GRAPHS_ENV, "1")
    off = AffordanceControl(control.network)
    off.cuda_graphs = False
    assert off.copy().cuda_graphs is False

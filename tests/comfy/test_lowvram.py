"""Our ControlNet under ComfyUI's low-VRAM loading: layers that stream their weights give the same residuals.

ComfyUI's ``ModelPatcher.load(..., lowvram_model_memory=...)`` leaves the layers that do not fit on the offload
device and makes them cast their weights at every call (``comfy_cast_weights``). On this CPU machine both
devices are the CPU, so the weights do not move, but every layer goes through ComfyUI's per-call cast path,
which is the code a low-VRAM GPU run takes. CUDA-graph recording must refuse such a network.
"""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet.graphs import weights_movable_reason

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def sd15(tiny_family):
    return tiny_family("sd15")


def _flat(out):
    return out["output"] + out["middle"]


@pytest.mark.parametrize("budget", [1, 0.5], ids=["nothing-fits", "half-fits"])
def test_streamed_layers_give_the_same_residuals(sd15, budget):
    control = sd15.our_controls[0]
    patcher, network = control.patcher, control.network
    ctrl = control.copy().set_cond_hint(sd15.image(3).movedim(-1, 1), 0.8, (0.0, 1.0))
    ctrl.pre_run(sd15.model, sd15.model.model_sampling.percent_to_sigma)
    x, t, cond = sd15.model_inputs(seed=5)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        patcher.load(cpu, full_load=True)
        assert not any(getattr(m, "comfy_cast_weights", False) for m in network.modules())
        full = _flat(ctrl.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]}))
        patcher.unpatch_model(cpu)
        memory = 1 if budget == 1 else int(patcher.model_size() * budget)
        patcher.load(cpu, lowvram_model_memory=memory)
        try:
            streamed = [m for m in network.modules() if getattr(m, "comfy_cast_weights", False)]
            assert streamed and patcher.model.model_lowvram
            ctrl.cuda_graphs = True  # requested, but a streaming network is never recorded
            assert "casts its weights per call" in weights_movable_reason(network, cpu)
            low = _flat(ctrl.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]}))
        finally:
            patcher.unpatch_model(cpu)
    assert not any(getattr(m, "comfy_cast_weights", False) for m in network.modules())
    assert len(low) == len(full)
    for a, b in zip(low, full):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ctrl._graph is not None and ctrl._graph.recorded == 0


def test_fast_fp8_layers_are_never_picked_for_our_weights(sd15, comfy, monkeypatch):
    """``--fast`` on a GPU with fp8 compute makes ComfyUI pick its fp8 layers, which cast every weight at every
    call (and so rule out CUDA graphs): for weights kept in fp16 or wider (any file but an fp8 one) ours keeps
    the plain layers, as ComfyUI's own ControlNet loader does."""
    import comfy.cli_args as cli_args  # noqa: TID251 (the host under test)

    from affordance.nodes.loaders import load_control

    monkeypatch.setattr(cli_args.args, "fast", {cli_args.PerformanceFeature.Fp8MatrixMultiplication})
    monkeypatch.setattr(comfy.model_management, "supports_fp8_compute", lambda device=None: True)
    ops = comfy.ops
    assert ops.pick_operations(torch.float32, None) is ops.fp8_ops  # what ComfyUI itself picks in this setting
    control = load_control(sd15.controlnet_files[0])
    network = control.network
    assert not any(getattr(m, "comfy_cast_weights", False) for m in network.modules())
    assert not any(isinstance(m, (ops.fp8_ops.Linear,)) for m in network.modules())
    with torch.no_grad():
        assert weights_movable_reason(network, torch.device("cpu")) is None

"""ComfyUI 0.23+'s MultiGPU members of a control object: ``multigpu_clones``, ``get_instance_for_device``,
``deepclone_multigpu``.

ComfyUI reads ``multigpu_clones`` at every run (``pre_run_control``), also on one GPU: without it every
sampling run with our control on top of a chain fails. With MultiGPU work units it deep-clones each control of
a chain per extra device, relinks the clones per device and runs each device's model calls on its clones. The
protocol is played here as ComfyUI 0.23's ``sampler_helpers.preprocess_multigpu_conds`` and
``samplers.pre_run_control`` do it (read from ComfyUI's source); the real ComfyUI runs in tests/comfy.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import torch

from affordance.nodes.control import AffordanceControl

OTHER = torch.device("cpu", 1)  # stands for a second GPU: only used as a key and a load_device here


def _comfy_prepare(controls, devices):
    """ComfyUI 0.23's preprocess_multigpu_conds for ``controls`` (tops of chains) and extra ``devices``."""
    for top in controls:
        cur = top
        while cur is not None:
            for d in devices:
                if d not in cur.multigpu_clones:
                    cur.deepclone_multigpu(d, autoregister=True)
            cur = cur.previous_controlnet
    for top in controls:
        cur = top
        while cur is not None:
            prev = cur.previous_controlnet
            for d in devices:
                cur.get_instance_for_device(d).set_previous_controlnet(
                    prev.get_instance_for_device(d) if prev is not None else None
                )
            cur = prev


def _pre_run(top, model, percent_to_sigma):
    """ComfyUI 0.23's pre_run_control for one conditioning entry."""
    top.pre_run(model, percent_to_sigma)
    for _device, clone in top.multigpu_clones.items():
        clone.pre_run(model, percent_to_sigma)


def _ready(control, fake_model, image, strength=1.0):
    c = control.copy().set_cond_hint(image().movedim(-1, 1), strength)
    model = fake_model()
    return c, model


def test_every_control_has_its_own_clone_table_and_is_its_own_instance_without_clones(control):
    assert control.multigpu_clones == {}
    c = control.copy()
    assert c.multigpu_clones == {} and c.multigpu_clones is not control.multigpu_clones
    assert control.get_instance_for_device(OTHER) is control
    assert control.get_instance_for_device(torch.device("cpu")) is control


def test_one_gpu_run_reads_the_empty_table(control, fake_model, image, call, sigma):
    """What ComfyUI 0.23+ does at every run: pre_run, then pre_run of each clone (none): the run works."""
    c, model = _ready(control, fake_model, image)
    _pre_run(c, model, model.model_sampling.percent_to_sigma)
    out, _ = call(c, sigma(0.3))
    assert out is not None and len(out["output"]) + len(out["middle"]) == c.num_residuals
    c.cleanup()


def test_clones_per_device_compute_what_the_original_computes_on_their_own_network(
    control, fake_model, image, call, sigma, close_lists
):
    first, model = _ready(control, fake_model, image, strength=0.7)
    second = control.copy().set_cond_hint(image(seed=9).movedim(-1, 1), 0.5).set_previous_controlnet(first)
    _comfy_prepare([second], [OTHER])
    top = second.get_instance_for_device(OTHER)
    below = first.get_instance_for_device(OTHER)
    assert top is second.multigpu_clones[OTHER] and below is first.multigpu_clones[OTHER]
    assert top.previous_controlnet is below and below.previous_controlnet is None  # relinked per device
    assert second.previous_controlnet is first  # the originals' chain is untouched
    for clone, orig in ((top, second), (below, first)):
        assert clone.network is not orig.network and clone.cuda_graphs is False
        for (name, a), (_, b) in zip(clone.network.state_dict().items(), orig.network.state_dict().items(), strict=True):
            assert a.data_ptr() != b.data_ptr() and torch.equal(a, b), name
        assert clone.cond_hint_original is orig.cond_hint_original and clone.strength == orig.strength
    _pre_run(second, model, model.model_sampling.percent_to_sigma)
    on_main, _ = call(second, sigma(0.4))
    on_other, _ = call(top, sigma(0.4))
    close_lists(on_main["output"] + on_main["middle"], on_other["output"] + on_other["middle"])
    # a second run finds the clones made and makes no more
    _comfy_prepare([second], [OTHER])
    assert second.multigpu_clones[OTHER] is top and list(first.multigpu_clones) == [OTHER]


def test_clones_get_a_patcher_for_their_device_and_are_loaded_and_cleaned_with_the_original(
    control, fake_model, image, call, sigma, stub_comfy, monkeypatch
):
    made = []

    def patcher(model, load_device, offload_device):
        p = SimpleNamespace(model=model, load_device=load_device, offload_device=offload_device)
        made.append(p)
        return p

    monkeypatch.setattr(sys.modules["comfy.model_patcher"], "ModelPatcher", patcher)  # stub_comfy's module
    own = SimpleNamespace(model=control.network, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    base = AffordanceControl(control.network, own, name="tiny.safetensors")
    first, model = _ready(base, fake_model, image)
    second = base.copy().set_cond_hint(image(seed=9).movedim(-1, 1)).set_previous_controlnet(first)
    _comfy_prepare([second], [OTHER])
    p_top, p_below = second.multigpu_clones[OTHER].patcher, first.multigpu_clones[OTHER].patcher
    assert [p.load_device for p in made] == [OTHER, OTHER] and {id(p_top), id(p_below)} == {id(p) for p in made}
    assert p_top.model is second.multigpu_clones[OTHER].network and p_top.offload_device == torch.device("cpu")
    models = second.get_models()
    # each clone's patcher once (not the clone's chain again), the chain's, ours
    assert [id(m) for m in models] == [id(p_top), id(p_below), id(own), id(own)]
    cleaned = []
    for c in (first, second, *first.multigpu_clones.values(), *second.multigpu_clones.values()):
        real = c.cleanup
        c.cleanup = lambda real=real, c=c: cleaned.append(c) or real()
    _pre_run(second, model, model.model_sampling.percent_to_sigma)
    call(second.multigpu_clones[OTHER], sigma(0.3))
    second.cleanup()
    # every object once: the original chain, then each clone alone (its chain is cleaned as a clone of its own)
    assert sorted(map(id, cleaned)) == sorted(
        map(id, [first, second, first.multigpu_clones[OTHER], second.multigpu_clones[OTHER]])
    )
    assert second.multigpu_clones[OTHER].previous_controlnet is first.multigpu_clones[OTHER]  # the link is kept


def test_clones_are_registered_only_when_asked_and_get_models_drops_their_state(control, fake_model, image, call, sigma):
    """``deepclone_multigpu(d)`` alone registers nothing; ComfyUI's ``get_models`` before loading the next
    run's models drops what the clones keep on their device (encoded hints), as the original's."""
    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    assert c.deepclone_multigpu(OTHER) is not c and c.multigpu_clones == {}
    clone = c.deepclone_multigpu(OTHER, autoregister=True)
    assert c.multigpu_clones == {OTHER: clone}
    model = fake_model()
    for ctrl in (c, clone):
        ctrl.pre_run(model, model.model_sampling.percent_to_sigma)
        assert call(ctrl, sigma(0.5))[0] is not None and ctrl._encoded_hints
    c.get_models()
    assert not c._encoded_hints and not clone._encoded_hints


def test_a_multigpu_clone_of_a_graphing_control_is_eager(control):
    """Recordings are made for one device and stream: a clone replays none, even of a control that has them on."""
    control.cuda_graphs = True
    clone = control.deepclone_multigpu(torch.device("cpu"))
    assert control.cuda_graphs is True and clone.cuda_graphs is False

"""ComfyUI's own MultiGPU preparation (0.23+: ``sampler_helpers.preprocess_multigpu_conds`` and
``samplers.pre_run_control``) on a chain of our ControlNet over ComfyUI's: clones per extra device, relinked per
device, ours on its own network and patcher for that device, computing what the original computes.

Skipped on ComfyUI versions without MultiGPU work units. The extra device is a second name for the CPU (no
machine here has two GPUs): ComfyUI only uses it as a key and as the clones' load device.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from affordance.nodes.apply import apply_control

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def sd15(tiny_family):
    return tiny_family("sd15")


def test_comfyuis_multigpu_preparation_clones_and_relinks_our_controlnet(sd15):
    from comfy import sampler_helpers, samplers

    if not hasattr(sampler_helpers, "preprocess_multigpu_conds"):
        pytest.skip("this ComfyUI has no MultiGPU work units (0.23+)")
    import nodes

    other = torch.device("cpu", 1)
    positive, negative = sd15.conditioning(1), sd15.conditioning(2)
    hint = sd15.image(5)
    # ComfyUI's ControlNet first, ours on top (the top object is the one ComfyUI reads multigpu_clones from)
    positive, negative = nodes.ControlNetApplyAdvanced().apply_controlnet(
        positive, negative, sd15.comfy_controls[1], hint, 0.8, 0.0, 1.0
    )
    positive, negative = apply_control(positive, negative, sd15.our_controls[0], hint, 0.9, 0.0, 1.0)
    ours = positive[0][1]["control"]
    theirs = ours.previous_controlnet
    conds = {"positive": [dict(positive[0][1])], "negative": [dict(negative[0][1])]}
    model = SimpleNamespace(get_additional_models_with_key=lambda key: [SimpleNamespace(load_device=other)])
    sampler_helpers.preprocess_multigpu_conds(conds, model, {})

    clone = ours.get_instance_for_device(other)
    assert clone is ours.multigpu_clones[other] and clone is not ours
    assert clone.previous_controlnet is theirs.get_instance_for_device(other) is not theirs
    assert clone.patcher.load_device == other and clone.network is not ours.network
    assert ours.previous_controlnet is theirs  # the originals' chain is untouched
    patchers = ours.get_models()
    assert clone.patcher in patchers and ours.patcher in patchers

    # ComfyUI's pre_run_control runs pre_run on the original and on each clone
    samplers.pre_run_control(sd15.model, [{"control": ours}])
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.full((2,), float(sd15.model.model_sampling.percent_to_sigma(0.4)))
    c = {"c_crossattn": torch.randn(2, 77, sd15.context_dim, generator=g)}
    opts = {"cond_or_uncond": [1, 0]}
    with torch.inference_mode():
        a = ours.get_control(x, t, c, 2, opts)
        b = clone.get_control(x, t, c, 2, opts)
    for u, v in zip(a["output"] + a["middle"], b["output"] + b["middle"], strict=True):
        torch.testing.assert_close(u, v, atol=1e-5, rtol=0)
    ours.cleanup()

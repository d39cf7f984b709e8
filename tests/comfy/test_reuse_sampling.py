"""AST_ControlResidualReuse inside ComfyUI's own sampler: k = 1 is exact, k = 2 runs the ControlNet half as often.

The tiny SD1.x-family model of ``conftest.py`` is sampled by ``comfy.sample.sample`` (CPU, fp32) with a
ControlNet applied by AST_ApplyControlNet's logic, with and without the reuse node in between.
"""

from __future__ import annotations

import pytest
import torch

from affordance.nodes.apply import apply_control
from affordance.nodes.reuse import reuse_residuals

pytestmark = pytest.mark.comfy

STEPS = 4


@pytest.fixture(scope="module")
def sd15(tiny_family):
    return tiny_family("sd15")


@pytest.fixture
def counted(sd15):
    """The number of forward calls of the first tiny ControlNet's network during the test."""
    calls = []
    handle = sd15.our_controls[0].network.register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def _sample(sd15, comfy_sample, k: int | None, sampler: str = "euler", cfg: float = 7.0) -> torch.Tensor:
    prompts = sd15.conditioning(1), sd15.conditioning(2)
    cond = apply_control(*prompts, sd15.our_controls[0], sd15.image(11), 1.0, 0.0, 1.0)
    if k is not None:
        cond = reuse_residuals(*cond, k)
    return comfy_sample(sd15.patcher, *cond, sd15.latent(), steps=STEPS, cfg=cfg, sampler_name=sampler)


@pytest.mark.parametrize("cfg", [7.0, 1.0], ids=["cfg7", "cfg1"])
def test_k1_is_bit_identical_to_the_plain_run(sd15, comfy_sample, counted, cfg):
    exact = _sample(sd15, comfy_sample, None, cfg=cfg)
    calls_exact = len(counted)
    through_node = _sample(sd15, comfy_sample, 1, cfg=cfg)
    assert torch.equal(through_node, exact)
    assert len(counted) - calls_exact == calls_exact == STEPS


@pytest.mark.parametrize(("sampler", "evaluations"), [("euler", 4), ("heun", 7)])
def test_k2_halves_controlnet_calls_and_stays_close(sd15, comfy_sample, counted, record_sampling, sampler, evaluations):
    exact = _sample(sd15, comfy_sample, None, sampler=sampler)
    assert len(counted) == evaluations  # cond and uncond batched: one ControlNet call per model evaluation
    counted.clear()
    reused = _sample(sd15, comfy_sample, 2, sampler=sampler)
    assert len(counted) == (evaluations + 1) // 2
    no_control = comfy_sample(
        sd15.patcher, sd15.conditioning(1), sd15.conditioning(2), sd15.latent(), steps=STEPS, sampler_name=sampler
    )
    effect = (exact.double() - no_control.double()).abs().max().item()
    diff = record_sampling(f"sd15 {sampler} reuse every 2 vs exact (lossy)", reused, exact, effect)
    assert 0.0 < diff < effect  # lossy, but far less than what the ControlNet itself contributes


def test_a_cancelled_run_leaves_nothing_held_when_the_next_run_loads(sd15, comfy_sample, monkeypatch):
    """ComfyUI skips the controls' cleanup when a run is cancelled (or fails): what the run kept (encoded hint,
    reused residuals) must be gone when the next run loads its models, and that run must equal a fresh one."""
    import comfy.model_management as mm  # noqa: TID251 (the host under test)
    import comfy.sample  # noqa: TID251

    def applied():
        cond = apply_control(sd15.conditioning(1), sd15.conditioning(2), sd15.our_controls[0], sd15.image(11), 1.0, 0.0, 1.0)
        return reuse_residuals(*cond, 2)

    pos, neg = applied()
    ctrl = pos[0][1]["control"]
    latent = sd15.latent()

    def cancel(step, x0, x, total):
        if step == 1:
            raise mm.InterruptProcessingException()

    with torch.inference_mode(), pytest.raises(mm.InterruptProcessingException):
        comfy.sample.sample(
            sd15.patcher, comfy.sample.prepare_noise(latent, 0), STEPS, 7.0, "euler", "normal", pos, neg, latent,
            callback=cancel, disable_pbar=True, seed=0,
        )  # fmt: skip
    assert ctrl._encoded_hints and ctrl._reuse_cache is not None  # ComfyUI did not clean up
    held_at_load = []
    load = mm.load_models_gpu

    def spy(*args, **kwargs):
        held_at_load.append((len(ctrl._encoded_hints), ctrl._reuse_cache))
        return load(*args, **kwargs)

    monkeypatch.setattr(mm, "load_models_gpu", spy)
    again = comfy_sample(sd15.patcher, pos, neg, latent)
    assert held_at_load and held_at_load[0] == (0, None)
    assert torch.equal(again, comfy_sample(sd15.patcher, *applied(), latent))

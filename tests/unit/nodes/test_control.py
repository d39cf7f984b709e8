"""Our control object driven through ComfyUI's calling sequence by a fake host."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from affordance.controlnet.errors import HintError
from affordance.controlnet.schedule import StrengthSchedule
from affordance.controlnet.weights import ControlWeights, Preset, WeightsError, soft_weights
from affordance.nodes.control import AffordanceControl, FamilyMismatchError, merge_controls
from affordance.nodes.negative_rows import KEY as NEGATIVE_KEY


def _ready(ctrl: AffordanceControl, fake_model, image, strength=1.0, window=(0.0, 1.0), **extras):
    c = ctrl.copy().set_cond_hint(image().movedim(-1, 1), strength, window)
    if extras:
        c.configure(**extras)
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    return c


def _expected(ctrl, x, t, cond):
    """The network's own residuals for the same call, with ComfyUI's sigma conversions."""
    ms = ctrl._sampling
    hint = torch.nn.functional.interpolate(ctrl.cond_hint_original, size=(x.shape[-2] * 8, x.shape[-1] * 8), mode="nearest-exact")
    res = ctrl.network(ms.calculate_input(t, x), hint, ms.timestep(t), cond["c_crossattn"], cond.get("y"))
    return res.as_list()


def test_returns_network_residuals_in_comfy_layout(control, fake_model, image, call, sigma, close_lists):
    c = _ready(control, fake_model, image)
    out, (x, t, cond) = call(c, sigma(0.3))
    assert set(out) == {"input", "middle", "output"} and out["input"] == []
    assert len(out["output"]) == 4 and len(out["middle"]) == 1
    close_lists(out["output"] + out["middle"], _expected(c, x, t, cond))


def test_fresh_lists_every_call(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image)
    a, _ = call(c, sigma(0.3))
    b, _ = call(c, sigma(0.3))
    assert a["output"] is not b["output"] and a["middle"] is not b["middle"]
    a["output"].pop()  # the UNet pops; the next call must not notice
    assert len(call(c, sigma(0.3))[0]["output"]) == 4


def test_window_gates_by_sigma(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image, window=(0.3, 0.6))
    assert call(c, sigma(0.1))[0] is None
    assert call(c, sigma(0.8))[0] is None
    assert call(c, sigma(0.45))[0] is not None


def test_strength_and_soft_weights(control, fake_model, image, call, sigma, close_lists):
    base = _ready(control, fake_model, image)
    ref, _ = call(base, sigma(0.5))
    soft = _ready(control, fake_model, image, strength=0.5, weights=ControlWeights(Preset.PROMPT_MORE_IMPORTANT))
    got, _ = call(soft, sigma(0.5))
    w = soft_weights(5)
    close_lists(got["output"] + got["middle"], [r * 0.5 * wi for r, wi in zip(ref["output"] + ref["middle"], w)])


def test_controlnet_more_important_is_cond_only(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image, weights=ControlWeights(Preset.CONTROLNET_MORE_IMPORTANT))
    out, _ = call(c, sigma(0.5), n=2, order=(1, 0))  # uncond rows first, as ComfyUI batches them
    for r in out["output"] + out["middle"]:
        assert torch.count_nonzero(r[:2]) == 0
        assert torch.count_nonzero(r[2:]) > 0


def test_uncond_multiplier(control, fake_model, image, call, sigma, close_lists):
    ref, _ = call(_ready(control, fake_model, image), sigma(0.5), order=(0, 1))
    half, _ = call(_ready(control, fake_model, image, weights=ControlWeights(uncond_multiplier=0.25)), sigma(0.5), order=(0, 1))
    for r, h in zip(ref["output"], half["output"]):
        torch.testing.assert_close(h[:1], r[:1])
        torch.testing.assert_close(h[1:], r[1:] * 0.25)


@pytest.mark.parametrize("preset", ["uncond_multiplier", "controlnet_more_important"])
def test_marked_negative_rows_win_over_the_call_index(control, fake_model, image, call, sigma, preset):
    """A guider that passes the negative first (DualCFGGuider) or alone (SAG's extra pass): the index says
    nothing there, our Apply node's marks say which rows are the negative."""
    if preset == "uncond_multiplier":
        weights, plain, factor = ControlWeights(uncond_multiplier=0.25), ControlWeights(), 0.25
    else:  # the same soft weights, and nothing on the negative
        weights, plain, factor = ControlWeights(Preset.CONTROLNET_MORE_IMPORTANT), ControlWeights(Preset.PROMPT_MORE_IMPORTANT), 0.0
    ref, _ = call(_ready(control, fake_model, image, weights=plain), sigma(0.5), order=(1, 0))
    c = _ready(control, fake_model, image, weights=weights)
    marked, _ = call(c, sigma(0.5), order=(1, 0), extra_cond={NEGATIVE_KEY: (False, True)})
    alone, _ = call(c, sigma(0.5), order=(0,), extra_cond={NEGATIVE_KEY: (True,)})
    ref_alone, _ = call(_ready(control, fake_model, image, weights=plain), sigma(0.5), order=(0,))
    if factor == 0.0:
        assert alone is None  # nothing to compute: the negative alone gets no control
    for i, (r, m, ra) in enumerate(zip(ref["output"], marked["output"], ref_alone["output"])):
        torch.testing.assert_close(m[:1], r[:1])
        torch.testing.assert_close(m[1:], r[1:] * factor)
        if factor != 0.0:
            torch.testing.assert_close(alone["output"][i], ra * factor)
        assert torch.count_nonzero(r[1:]) > 0


@pytest.mark.parametrize(
    ("order", "n", "batch_seen"),
    [((1, 0), 2, 2), ((0, 1, 0), 1, 2), ((1,), 1, None)],
    ids=["cond+uncond", "uncond between two conds", "uncond alone"],
)
@pytest.mark.parametrize("weights", [ControlWeights(Preset.CONTROLNET_MORE_IMPORTANT), ControlWeights(uncond_multiplier=0.0)])
def test_rows_weighted_zero_are_never_computed(control, fake_model, image, call, sigma, order, n, batch_seen, weights):
    """The negative rows' control is zero: the network runs on the other rows only, and the result is what the
    whole batch gives once multiplied by zero there."""
    plain = ControlWeights(Preset.PROMPT_MORE_IMPORTANT) if weights.preset is Preset.CONTROLNET_MORE_IMPORTANT else ControlWeights()
    ref, _ = call(_ready(control, fake_model, image, weights=plain), sigma(0.5), n=n, order=order)
    c = _ready(control, fake_model, image, weights=weights)
    batches = []
    c.network.register_forward_pre_hook(lambda mod, args, kwargs: batches.append(args[0].shape[0]), with_kwargs=True)
    out, _ = call(c, sigma(0.5), n=n, order=order)
    if batch_seen is None:
        assert out is None and batches == []  # nothing to add: the UNet gets no control for this call
        return
    assert batches == [batch_seen]
    negative = [o == 1 for o in order for _ in range(n)]
    for r, g in zip(ref["output"] + ref["middle"], out["output"] + out["middle"]):
        assert g.shape == r.shape
        for row, neg in enumerate(negative):
            if neg:
                assert torch.count_nonzero(g[row]) == 0
            else:
                torch.testing.assert_close(g[row], r[row], atol=1e-5, rtol=1e-5)


def test_skipped_rows_keep_each_latent_its_own_hint(control, fake_model, image, call, sigma):
    """One hint per latent: the rows that are computed still get their own hints."""
    hints = lambda: image(b=2)  # noqa: E731
    ref, _ = call(_ready(control, fake_model, hints, weights=ControlWeights(Preset.PROMPT_MORE_IMPORTANT)), sigma(0.5), n=2, order=(1, 0))
    got, _ = call(_ready(control, fake_model, hints, weights=ControlWeights(Preset.CONTROLNET_MORE_IMPORTANT)), sigma(0.5), n=2, order=(1, 0))
    for r, g in zip(ref["output"] + ref["middle"], got["output"] + got["middle"]):
        assert torch.count_nonzero(g[:2]) == 0
        torch.testing.assert_close(g[2:], r[2:], atol=1e-5, rtol=1e-5)


def test_custom_weights_checked_against_family(control):
    with pytest.raises(WeightsError, match="got 13 custom weights but this SD1.x ControlNet has 5 residuals"):
        control.copy().configure(weights=ControlWeights(Preset.CUSTOM, custom=(1.0,) * 13))


def test_zero_weights_skip_work(control, fake_model, image, call, sigma):
    calls = []
    c = _ready(control, fake_model, image, weights=ControlWeights(Preset.CUSTOM, custom=(0.0,) * 5))
    c.network.register_forward_hook(lambda *a: calls.append(1))
    assert call(c, sigma(0.5))[0] is None and not calls


def test_mask_ones_zeros_and_region(control, fake_model, image, call, sigma, close_lists):
    ref, _ = call(_ready(control, fake_model, image), sigma(0.5))
    ones, _ = call(_ready(control, fake_model, image, mask=torch.ones(1, 64, 64)), sigma(0.5))
    close_lists(ones["output"] + ones["middle"], ref["output"] + ref["middle"], atol=0)
    zeros, _ = call(_ready(control, fake_model, image, mask=torch.zeros(1, 64, 64)), sigma(0.5))
    assert all(torch.count_nonzero(r) == 0 for r in zeros["output"] + zeros["middle"])
    left = torch.zeros(1, 64, 64)
    left[..., :32] = 1
    half, _ = call(_ready(control, fake_model, image, mask=left), sigma(0.5))
    r, m = half["output"][0], ref["output"][0]
    torch.testing.assert_close(r[..., :4], m[..., :4])
    assert torch.count_nonzero(r[..., 4:]) == 0


def test_schedule_scales_by_progress(control, fake_model, image, call, sigma, close_lists):
    ref, _ = call(_ready(control, fake_model, image), sigma(0.8))
    sched = StrengthSchedule.parse("0.0:1.0, 0.6:1.0, 1.0:0.2")
    got, _ = call(_ready(control, fake_model, image, schedule=sched), sigma(0.8))
    factor = sched.at(0.8)
    assert factor == pytest.approx(0.6)
    close_lists(got["output"], [r * factor for r in ref["output"]], atol=1e-3)


def test_hint_encoded_once_per_run(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image)
    calls = []
    c.network.input_hint_block.register_forward_hook(lambda *a: calls.append(1))
    for p in (0.1, 0.4, 0.7, 0.9):
        call(c, sigma(p))
    assert len(calls) == 1
    c.cleanup()
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    call(c, sigma(0.5))
    assert len(calls) == 2


def test_copy_shares_weights_not_state(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image)
    call(c, sigma(0.5))
    d = c.copy()
    assert d.network is c.network and d.patcher is c.patcher
    assert d._encoded_hints == {} and d._window is None and d.previous_controlnet is None
    assert c._encoded_hints


def test_cleanup_leaves_object_reusable(control, fake_model, image, call, sigma, close_lists):
    c = _ready(control, fake_model, image)
    first, _ = call(c, sigma(0.5))
    c.cleanup()
    assert c._window is None and c._encoded_hints == {}
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    again, _ = call(c, sigma(0.5))
    close_lists(first["output"], again["output"], atol=0)


class ComfyLikeControl:
    """Stands for ComfyUI's ControlNet/T2I objects: same contract, its own output shape."""

    def __init__(self, value: float, previous=None) -> None:
        self.value, self.previous_controlnet, self.extra_hooks = value, previous, None
        self.calls = []

    def get_control(self, x, t, cond, batched_number, transformer_options):
        prev = self.previous_controlnet.get_control(x, t, cond, batched_number, transformer_options) if self.previous_controlnet else None
        n = x.shape[0]
        out = {
            "input": [torch.full((n, 32, 8, 8), self.value)],
            "middle": [torch.full((n, 64, 4, 4), self.value)],
            "output": [torch.full((n, 32, 8, 8), self.value), None],
        }
        if prev:
            for k in out:
                for i, p in enumerate(prev[k]):
                    if i >= len(out[k]):
                        out[k].append(p)
                    elif p is not None:
                        out[k][i] = p if out[k][i] is None else p + out[k][i]
        return out

    def pre_run(self, model, f):
        self.calls.append("pre_run")

    def cleanup(self):
        self.calls.append("cleanup")

    def get_models(self):
        return ["comfy-patcher"]

    def get_extra_hooks(self):
        return []

    def inference_memory_requirements(self, dtype):
        return 123


def test_chains_onto_comfy_control(control, fake_model, image, call, sigma):
    prev = ComfyLikeControl(2.0)
    mine = _ready(control, fake_model, image)
    alone, _ = call(mine, sigma(0.5))
    mine.set_previous_controlnet(prev)
    chained, _ = call(mine, sigma(0.5))
    assert len(chained["input"]) == 1 and torch.all(chained["input"][0] == 2.0)
    torch.testing.assert_close(chained["output"][0], alone["output"][0] + 2.0)
    torch.testing.assert_close(chained["output"][1], alone["output"][1])  # prev had a hole there
    torch.testing.assert_close(chained["middle"][0], alone["middle"][0] + 2.0)
    assert mine.get_models() == ["comfy-patcher"]
    assert mine.inference_memory_requirements(torch.float32) == 123
    model = fake_model()
    mine.pre_run(model, model.model_sampling.percent_to_sigma)
    mine.cleanup()
    assert prev.calls == ["pre_run", "cleanup"]


def test_comfy_control_chains_onto_ours(control, fake_model, image, call, sigma):
    mine = _ready(control, fake_model, image)
    alone, _ = call(mine, sigma(0.5))
    theirs = ComfyLikeControl(1.0, previous=mine)
    out, _ = call(theirs, sigma(0.5))
    torch.testing.assert_close(out["output"][0], alone["output"][0] + 1.0)
    torch.testing.assert_close(out["output"][2], alone["output"][2])


def test_outside_window_passes_previous_through(control, fake_model, image, call, sigma):
    prev = ComfyLikeControl(3.0)
    c = _ready(control, fake_model, image, window=(0.5, 1.0)).set_previous_controlnet(prev)
    out, _ = call(c, sigma(0.1))
    assert torch.all(out["output"][0] == 3.0)


def test_sdxl_control_on_sd15_model_is_refused(xl_control, fake_model, image):
    c = xl_control.copy().set_cond_hint(image().movedim(-1, 1))
    model = fake_model(context_dim=768)
    with pytest.raises(FamilyMismatchError, match="SDXL ControlNet .* the model being sampled is SD1.x"):
        c.pre_run(model, model.model_sampling.percent_to_sigma)


@pytest.mark.parametrize(
    "unet_config",
    [
        {"image_model": "flux", "guidance_embed": True},
        {"in_channels": 16},  # SD3
        {"image_model": "hunyuan3d2_1", "context_dim": 1024},  # reports a text width, still no UNet
    ],
)
def test_transformer_models_are_refused_before_sampling(control, image, unet_config):
    from .conftest import FakeSampling

    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    model = SimpleNamespace(model_sampling=FakeSampling(), model_config=SimpleNamespace(unet_config=unet_config))
    with pytest.raises(FamilyMismatchError, match="is not an SD1.x, SD2.x or SDXL UNet"):
        c.pre_run(model, model.model_sampling.percent_to_sigma)


def test_sdxl_uses_label(xl_control, fake_model, image, call, sigma):
    c = xl_control.copy().set_cond_hint(image().movedim(-1, 1))
    model = fake_model(context_dim=2048)
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    out, _ = call(c, sigma(0.5), y_dim=2816)
    assert len(out["output"]) == 4
    with pytest.raises(FamilyMismatchError, match="no SDXL label"):
        call(c, sigma(0.5))


def test_hint_batch_that_fits_no_latent_batch(control, fake_model, image, call, sigma):
    c = control.copy().set_cond_hint(image(b=3).movedim(-1, 1))
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    with pytest.raises(ValueError, match="a batch of 3 hint images fits no latent batch of 2"):
        call(c, sigma(0.5), n=2)


@pytest.mark.parametrize("order", [(1, 0), (0,)], ids=["cond-uncond-batched", "one-chunk"])
def test_hint_batch_larger_than_latent_batch_refused_in_every_layout(control, fake_model, image, call, sigma, order):
    # 4 hints for 2 latents: with cond and uncond batched the model batch is 4 too, which must not let it pass
    # (it used to, mapping hints 3-4 onto the uncond rows) while separate chunks refused it.
    c = control.copy().set_cond_hint(image(b=4).movedim(-1, 1))
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    with pytest.raises(ValueError, match="a batch of 4 hint images fits no latent batch of 2"):
        call(c, sigma(0.5), n=2, order=order)


def test_batch_of_hints_maps_to_batch_of_latents(control, fake_model, image, call, sigma):
    hints = image(b=2).movedim(-1, 1)
    both = control.copy().set_cond_hint(hints)
    model = fake_model()
    both.pre_run(model, model.model_sampling.percent_to_sigma)
    out, (x, t, cond) = call(both, sigma(0.5), n=2, order=(0,))
    for i in range(2):
        single = control.copy().set_cond_hint(hints[i : i + 1])
        single.pre_run(model, model.model_sampling.percent_to_sigma)
        sub = single.get_control(x[i : i + 1], t[i : i + 1], {"c_crossattn": cond["c_crossattn"][i : i + 1]}, 1, {"cond_or_uncond": [0]})
        torch.testing.assert_close(out["output"][0][i : i + 1], sub["output"][0], atol=1e-5, rtol=0)


def test_residuals_weighted_zero_are_holes_and_not_computed(control, fake_model, image, call, sigma, close_lists):
    ref, _ = call(_ready(control, fake_model, image), sigma(0.5))
    weights = (1.0, 0.0, 0.5, 0.0, 0.0)  # 4 skips + middle: the last input block and the middle are not needed
    c = _ready(control, fake_model, image, weights=ControlWeights(Preset.CUSTOM, custom=weights))
    calls = []
    c.network.middle_block.register_forward_hook(lambda *a: calls.append("middle"))
    c.network.input_blocks[-1].register_forward_hook(lambda *a: calls.append("last input"))
    out, _ = call(c, sigma(0.5))
    got = out["output"] + out["middle"]
    assert [r is None for r in got] == [w == 0.0 for w in weights]
    close_lists([got[0], got[2]], [ref["output"][0], ref["output"][2] * 0.5])
    assert calls == []


def test_merging_never_modifies_the_previous_controls_tensors(control, fake_model, image, call, sigma):
    first = _ready(control, fake_model, image)
    kept = []
    original = first.get_control

    def spy(*args):
        out = original(*args)
        kept.append([r.clone() for r in out["output"] + out["middle"]])
        kept.append(out["output"] + out["middle"])
        return out

    first.get_control = spy
    second = _ready(control, fake_model, image, strength=0.5).set_previous_controlnet(first)
    alone, _ = call(_ready(control, fake_model, image, strength=0.5), sigma(0.5))
    out, _ = call(second, sigma(0.5))
    before, tensors = kept
    for b, a in zip(before, tensors):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the previous control's outputs are untouched
    for o, a, b in zip(out["output"] + out["middle"], alone["output"] + alone["middle"], before):
        torch.testing.assert_close(o, a + b)


class _Dispatched(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the operators dispatched in a call, in order: host reads of tensor values (``float(t)``,
    ``.item()``: on a GPU each one waits for it), convolutions (the networks' work) and multiplications of a
    residual (a 4-D tensor of more than the latent's 4 channels), each a kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if func is torch.ops.aten._local_scalar_dense.default:
            self.events.append("read")
        elif name == "convolution":
            self.events.append("conv")
        elif name in ("mul", "mul_") and isinstance(args[0], torch.Tensor) and args[0].dim() == 4 and args[0].shape[1] != 4:
            self.events.append("product")
        return func(*args, **(kwargs or {}))

    @property
    def reads(self) -> int:
        return self.events.count("read")

    @property
    def count(self) -> int:
        """Multiplications of a residual."""
        return self.events.count("product")



@pytest.mark.parametrize(
    ("extras", "reads"),
    [
        ({}, False),
        ({"weights": ControlWeights(uncond_multiplier=0.5)}, False),
        ({"mask": torch.ones(1, 64, 64)}, False),
        ({"window": (0.0, 0.5)}, True),
        ({"schedule": StrengthSchedule.parse("0:1, 1:0.5")}, True),
    ],
)
def test_no_host_reads_unless_the_window_or_schedule_needs_the_sigma(control, fake_model, image, call, sigma, extras, reads):
    window = extras.pop("window", (0.0, 1.0))
    c = _ready(control, fake_model, image, window=window, **extras)
    call(c, sigma(0.3), order=(1, 0))  # first call of the run: hint encoded, factors made
    s = sigma(0.4)
    with _Dispatched() as mode:
        out, _ = call(c, s, order=(1, 0))
    assert out is not None
    assert (mode.reads > 0) == reads


@pytest.mark.parametrize(
    ("strength", "weights", "products"),
    [
        (1.0, None, 0),  # the usual case: strength 1, balanced weights: the residuals are handed on as computed
        (0.5, None, 5),
        (1.0, ControlWeights(Preset.CUSTOM, custom=(1.0, 0.5, 1.0, 1.0, 1.0)), 1),
    ],
)
def test_a_residual_scaled_by_exactly_one_launches_no_kernel(
    control, fake_model, image, call, sigma, strength, weights, products
):
    c = _ready(control, fake_model, image, strength=strength, **({"weights": weights} if weights else {}))
    ref, _ = call(_ready(control, fake_model, image), sigma(0.4))
    computed = []
    real = c.network.forward

    def network(*args, **kwargs):  # the network's own products are not the scaling's
        with torch.utils._python_dispatch._disable_current_modes():
            out = real(*args, **kwargs)
        computed.append(out.as_list())
        return out

    c.network.forward = network
    with _Dispatched() as mode:
        out, _ = call(c, sigma(0.4))
    assert mode.count == products
    scales = [strength * w for w in (weights.custom if weights else (1.0,) * 5)]
    got = out["output"] + out["middle"]
    for o, r, fresh, k in zip(got, ref["output"] + ref["middle"], computed[0], scales):
        assert o is fresh  # scaled in place or handed on: never a copy
        torch.testing.assert_close(o, r * k, rtol=0, atol=0)


def test_the_sigma_is_read_before_the_previous_control_queues_its_work(control, fake_model, image, call, sigma):
    """On a GPU a host read waits for all the work queued before it: read after the previous ControlNet's work was
    queued, it would wait for that work and leave the GPU idle while this call prepares its own."""
    first = _ready(control, fake_model, image)  # full window: reads nothing
    second = _ready(control, fake_model, image, window=(0.0, 0.5)).set_previous_controlnet(first)
    call(second, sigma(0.3))  # hints encoded, factors made
    inside, outside = sigma(0.4), sigma(0.7)  # (the fake host's sigma is read on the host too)
    with _Dispatched() as mode:
        out, _ = call(second, inside)
    assert out is not None and mode.events[0] == "read" and mode.events.count("read") == 1
    assert "conv" in mode.events
    with _Dispatched() as mode:  # outside this one's window: the previous control's residuals alone
        out, _ = call(second, outside)
    alone, _ = call(_ready(control, fake_model, image), outside)
    assert mode.events[0] == "read" and mode.events.count("read") == 1 and "conv" in mode.events
    for o, a in zip(out["output"] + out["middle"], alone["output"] + alone["middle"]):
        torch.testing.assert_close(o, a, rtol=0, atol=0)


def test_batch_one_hint_is_never_copied_per_step(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image)
    call(c, sigma(0.3), n=2, order=(1, 0))
    (enc,) = c._encoded_hints.values()
    call(c, sigma(0.5), n=2, order=(1, 0))
    assert tuple(c._encoded_hints.values()) == (enc,) and enc.shape[0] == 1 and c._hint_layouts == {}


def test_hint_encoded_once_per_latent_size_even_when_sizes_alternate(control, fake_model, image, call, sigma):
    """Two area conditionings of different sizes alternate within each step: each size is encoded once."""
    c = _ready(control, fake_model, image)
    calls = []
    real = c.network.encode_hint
    c.network.encode_hint = lambda hint: calls.append(hint.shape) or real(hint)
    try:
        for p in (0.2, 0.4, 0.6, 0.8):
            call(c, sigma(p), h=8, w=8)
            call(c, sigma(p), h=8, w=16)
    finally:
        del c.network.encode_hint
    assert sorted(s[-1] for s in calls) == [64, 128]


def test_chained_residuals_of_another_shape_are_a_typed_error():
    mine = {"input": [], "middle": [torch.zeros(2, 8, 4, 4)], "output": [torch.zeros(2, 4, 8, 8)]}
    theirs = {"middle": [None], "output": [torch.ones(2, 4, 16, 16)]}
    with pytest.raises(ValueError, match=r"output residual #0 the shape \(2, 4, 16, 16\), this one \(2, 4, 8, 8\)"):
        merge_controls(mine, theirs)
    pooled = {"output": [torch.ones(2, 4, 1, 1)]}  # a pooled (shuffle) residual broadcasts, as in ComfyUI
    out = merge_controls({"input": [], "middle": [], "output": [torch.zeros(2, 4, 8, 8)]}, pooled)
    assert out["output"][0].shape == (2, 4, 8, 8) and out["output"][0].eq(1).all()


def test_configure_after_an_uncleaned_run_leaves_no_stale_mask_or_factors(control, fake_model, image, call, sigma):
    """A cancelled run skips cleanup(); new settings must not meet the old mask or uncond factors."""
    model = fake_model()
    first, second = torch.ones(1, 64, 64), torch.zeros(1, 64, 64)
    second[:, :, :32] = 1
    c = control.copy().set_cond_hint(image().movedim(-1, 1)).configure(mask=first)
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    call(c, sigma(0.3))  # no cleanup
    c.configure(mask=second, weights=ControlWeights(uncond_multiplier=0.5))
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    fresh = control.copy().set_cond_hint(image().movedim(-1, 1))
    fresh.configure(mask=second, weights=ControlWeights(uncond_multiplier=0.5))
    fresh.pre_run(model, model.model_sampling.percent_to_sigma)
    for a, b in zip(call(c, sigma(0.3))[0]["output"], call(fresh, sigma(0.3))[0]["output"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_schedule_follows_the_model_of_each_run(control, fake_model, image, call, sigma):
    """A progress map built for model A was kept through a run on model B without a schedule and reused."""
    from .conftest import FakeSampling

    class Shifted(FakeSampling):
        def __init__(self):
            super().__init__()
            self.sigmas = self.sigmas * 3
            self.log_sigmas = self.sigmas.log()

    a = fake_model()
    b = SimpleNamespace(model_sampling=Shifted(), model_config=a.model_config)
    ramp = StrengthSchedule.parse("0:1, 1:0")
    c = control.copy().set_cond_hint(image().movedim(-1, 1)).configure(schedule=ramp)
    c.pre_run(a, a.model_sampling.percent_to_sigma)
    call(c, sigma(0.3))
    c.configure(schedule=None)
    c.pre_run(b, b.model_sampling.percent_to_sigma)
    c.configure(schedule=ramp)
    c.pre_run(b, b.model_sampling.percent_to_sigma)
    fresh = control.copy().set_cond_hint(image().movedim(-1, 1)).configure(schedule=ramp)
    fresh.pre_run(b, b.model_sampling.percent_to_sigma)
    s = b.model_sampling.percent_to_sigma(0.5)
    assert c._multiplier(s) == pytest.approx(fresh._multiplier(s)) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    ("unet", "fits"),
    [
        ({"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": [1, 1]}, True),
        ({"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1}, True),  # an int: every level
        ({"model_channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": [1, 1, 1]}, False),  # one level more
        ({"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": [2, 1]}, False),  # a block more
        ({"model_channels": 64, "channel_mult": [1, 2], "num_res_blocks": [1, 1]}, False),  # wider
        ({"model_channels": 32, "channel_mult": "odd", "num_res_blocks": [1, 1]}, True),  # unreadable: not judged
    ],
)
def test_a_unet_of_another_shape_is_refused_before_sampling(control, image, unet, fits):
    """A same-family ControlNet whose residuals do not fit the UNet's skip connections (a distilled UNet):
    ComfyUI would add residuals to the wrong skip connections or skip them, and the run would complete."""
    from .conftest import FakeSampling

    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    model = SimpleNamespace(
        model_sampling=FakeSampling(), model_config=SimpleNamespace(unet_config={"context_dim": 768, **unet})
    )
    if fits:
        c.pre_run(model, model.model_sampling.percent_to_sigma)
        return
    with pytest.raises(FamilyMismatchError, match=r"does not fit the model being sampled: its 5 residuals have 32 x3, 64 x2 channels"):
        c.pre_run(model, model.model_sampling.percent_to_sigma)


def test_the_progress_map_is_built_once_per_model_not_per_run(control, fake_model, image, call, sigma):
    """Building it asks the host for a thousand sigmas (each a GPU wait when the model's tables are there)."""
    model, other = fake_model(), fake_model()
    asked = []

    def counting(sampling):
        def percent_to_sigma(p):
            asked.append(p)
            return sampling.percent_to_sigma(p)

        return percent_to_sigma

    c = control.copy().set_cond_hint(image().movedim(-1, 1)).configure(schedule=StrengthSchedule.parse("0:1, 1:0"))
    for _ in range(3):  # three runs on one model, each ended as ComfyUI ends them
        c.get_models()
        c.pre_run(model, counting(model.model_sampling))
        call(c, sigma(0.5))
        c.cleanup()
    once = len(asked)
    assert 1000 < once < 1010  # the map's 1001 samples and the window's two ends, per run
    c.get_models()
    c.pre_run(other, counting(other.model_sampling))  # another model (its own sigmas): built again
    assert len(asked) > once + 1000
    s = model.model_sampling.percent_to_sigma(0.5)
    assert c._multiplier(s) == pytest.approx(0.5, abs=0.02)


def test_get_models_in_the_middle_of_a_run_costs_only_recomputation(control, fake_model, image, call, sigma):
    """A host asking for the models mid-run (ComfyUI asks before loading) keeps the run's window and sampling."""
    model = fake_model()
    c = control.copy().set_cond_hint(image().movedim(-1, 1), 0.7, (0.0, 0.6))
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    before = call(c, sigma(0.3))[0]
    c.get_models()
    assert not c._encoded_hints
    after = call(c, sigma(0.3))[0]
    for a, b in zip(before["output"] + before["middle"], after["output"] + after["middle"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert call(c, sigma(0.8))[0] is None  # the window still holds


def test_skipped_negative_rows_get_no_row_scaling_pass(control, fake_model, image, call, sigma):
    """With the negative weighted 0 its rows are never computed (zeros): without a mask, nothing multiplies the
    residuals by a per-row factor; with one, only the mask is applied. Same results as scaling them."""
    model = fake_model()
    for mask in (None, torch.ones(1, 64, 64).tril()):
        c = control.copy().set_cond_hint(image().movedim(-1, 1)).configure(
            weights=ControlWeights(uncond_multiplier=0.0), mask=mask
        )
        c.pre_run(model, model.model_sampling.percent_to_sigma)
        out = call(c, sigma(0.4), n=2)[0]
        factors = list(c._factor_cache.values())
        if mask is None:
            assert factors and all(f is None for f in factors)
        else:  # the mask alone (one row, broadcast), no per-row factor folded in
            assert factors and all(f.shape[0] == 1 for f in factors)
        for r in out["output"] + out["middle"]:
            assert not r[:2].any()  # the uncond chunk (order (1, 0): rows 0-1) stays zero


@pytest.mark.parametrize(("latent_channels", "fits"), [(4, True), (16, False)])
def test_latent_channels_are_checked_before_sampling(image, latent_channels, fits):
    """A ControlNet whose first layer takes 9 channels (made from an inpainting UNet) loaded, then failed at the
    first step: ComfyUI hands a ControlNet the latent alone (4 channels for SD)."""
    import dataclasses

    from .conftest import TINY, FakeSampling, randomized

    nine = AffordanceControl(randomized(dataclasses.replace(TINY, in_channels=9)), None, name="inpaint-based")
    four = AffordanceControl(randomized(TINY), None, name="plain")
    model = SimpleNamespace(
        model_sampling=FakeSampling(),
        model_config=SimpleNamespace(unet_config={"context_dim": 768}),
        latent_format=SimpleNamespace(latent_channels=latent_channels),
    )
    with pytest.raises(FamilyMismatchError, match=rf"takes latents of 9 channels, but .* works on {latent_channels}-channel"):
        nine.copy().set_cond_hint(image().movedim(-1, 1)).pre_run(model, model.model_sampling.percent_to_sigma)
    ours = four.copy().set_cond_hint(image().movedim(-1, 1))
    if fits:
        ours.pre_run(model, model.model_sampling.percent_to_sigma)
    else:
        with pytest.raises(FamilyMismatchError, match="takes latents of 4 channels"):
            ours.pre_run(model, model.model_sampling.percent_to_sigma)


# --- edges found unguarded by a mutation-testing run (session 19): each test fails on its mutant ---


@pytest.mark.parametrize("skip", ["strength 0", "negative rows only"])
def test_a_control_that_skips_its_call_passes_the_chain_on(control, fake_model, image, call, sigma, close_lists, skip):
    """Skipping work (strength 0, or a call of negative rows with the negative weighted 0) must still hand the
    ControlNet chained below its own residuals, not nothing."""
    below = _ready(control, fake_model, lambda: image(seed=7))
    order = (1, 0) if skip == "strength 0" else (1,)
    alone, _ = call(below, sigma(0.5), order=order)
    top = control.copy().set_cond_hint(image().movedim(-1, 1), 0.0 if skip == "strength 0" else 1.0)
    if skip != "strength 0":
        top.configure(weights=ControlWeights(uncond_multiplier=0.0))
    model = fake_model()
    top.set_previous_controlnet(below).pre_run(model, model.model_sampling.percent_to_sigma)
    out, _ = call(top, sigma(0.5), order=order)
    assert out is not None
    close_lists(out["output"] + out["middle"], alone["output"] + alone["middle"], atol=0)


def test_a_hole_in_ours_is_filled_by_the_chained_residual():
    mine = {"input": [], "middle": [torch.zeros(1, 2)], "output": [None, torch.ones(1, 2)]}
    theirs = {"middle": [None], "output": [torch.full((1, 2), 3.0), torch.full((1, 2), 2.0)]}
    out = merge_controls(mine, theirs)
    assert out["output"][0] is theirs["output"][0]
    assert out["output"][1].eq(3.0).all() and out["middle"][0].eq(0.0).all()


def test_chained_residuals_of_another_dtype_are_promoted_not_cast_down():
    """Ours in fp16 + theirs in fp32 of the same shape: the sum is fp32 (as ``a + b`` gives), never fp16."""
    mine = {"input": [], "middle": [torch.ones(1, 2, dtype=torch.float16)], "output": []}
    theirs = {"middle": [torch.full((1, 2), 1 / 3)]}
    out = merge_controls(mine, theirs)
    assert out["middle"][0].dtype == torch.float32
    torch.testing.assert_close(out["middle"][0], torch.full((1, 2), 4 / 3))


def test_weights_apply_on_top_of_a_mask(control, fake_model, image, call, sigma, close_lists):
    mask = torch.ones(1, 64, 64).tril()
    half = _ready(control, fake_model, image, mask=mask, weights=ControlWeights(Preset.CUSTOM, custom=(0.5,) * 5))
    full = _ready(control, fake_model, image, mask=mask)
    got, _ = call(half, sigma(0.5))
    ref, _ = call(full, sigma(0.5))
    close_lists(got["output"] + got["middle"], [0.5 * r for r in ref["output"] + ref["middle"]])


def test_a_mask_on_a_latent_wider_than_high(control, fake_model, image, call, sigma):
    """The mask is fitted to each residual's height and width, not to a square."""
    mask = torch.zeros(1, 64, 128)
    mask[:, :, :64] = 1.0  # left half
    c = _ready(control, fake_model, lambda: image(h=64, w=128), mask=mask)
    out, _ = call(c, sigma(0.5), h=8, w=16)
    for r in out["output"]:
        w = r.shape[-1]
        assert torch.count_nonzero(r[..., w // 2 :]) == 0 and torch.count_nonzero(r[..., : w // 2])


def test_a_mask_per_latent_in_calls_of_one_chunk_and_of_two_layouts(control, fake_model, image, call, sigma):
    """Masks (B = latent batch 2) follow each latent in a one-chunk call (cfg 1, SAG's pass) as in a batched
    one, also when both layouts come in one run (a mask fitted for one layout is not reused for the other)."""
    masks = torch.zeros(2, 64, 64)
    masks[0, :, :32] = 1.0  # latent 0: left half
    masks[1, :, 32:] = 1.0  # latent 1: right half
    c = _ready(control, fake_model, image, mask=masks)
    for order in [(0,), (1, 0), (0,)]:
        out, _ = call(c, sigma(0.5), n=2, order=order)
        for r in out["output"]:
            half = r.shape[-1] // 2
            rows = r.view(len(order), 2, *r.shape[1:])
            assert torch.count_nonzero(rows[:, 0, ..., half:]) == 0 and torch.count_nonzero(rows[:, 0, ..., :half])
            assert torch.count_nonzero(rows[:, 1, ..., :half]) == 0 and torch.count_nonzero(rows[:, 1, ..., half:])


@pytest.mark.parametrize("edge", ["start", "end"])
def test_a_call_exactly_at_the_windows_edge_runs(control, fake_model, image, call, sigma, edge):
    """start_percent/end_percent are inclusive, as in ComfyUI: the step at the edge's sigma is controlled."""
    window = (0.5, 1.0) if edge == "start" else (0.0, 0.5)
    c = _ready(control, fake_model, image, window=window)
    at = c._window[0] if edge == "start" else c._window[1]
    assert call(c, at)[0] is not None
    outside = at * 1.01 if edge == "start" else at * 0.99
    assert call(c, outside)[0] is None


def test_sdxl_with_the_negative_weighted_zero_takes_the_label_of_the_kept_rows(xl_control, fake_model, image, call, sigma):
    """Only the positive rows run; their label (y) rows are taken with them: the positive residuals equal those
    of the run with both sides, the negative ones are zero."""
    model = fake_model(context_dim=2048)
    outs = []
    for uncond in (0.0, 1.0):
        c = xl_control.copy().set_cond_hint(image().movedim(-1, 1)).configure(
            weights=ControlWeights(uncond_multiplier=uncond)
        )
        c.pre_run(model, model.model_sampling.percent_to_sigma)
        outs.append(call(c, sigma(0.5), n=2, order=(0, 1), y_dim=2816)[0])
    skipped, both = outs
    for s, b in zip(skipped["output"] + skipped["middle"], both["output"] + both["middle"]):
        torch.testing.assert_close(s[:2], b[:2], atol=1e-5, rtol=0)
        assert torch.count_nonzero(s[2:]) == 0 and torch.count_nonzero(b[2:])


def test_copy_keeps_a_hosts_hooks_and_extra_args(control):
    class Hooks:
        def clone(self):
            return Hooks()

    control.extra_hooks = Hooks()
    control.set_extra_arg("control_type", [1])
    c = control.copy()
    assert isinstance(c.extra_hooks, Hooks) and c.extra_hooks is not control.extra_hooks
    assert c.extra_args == {"control_type": [1]} and c.extra_args is not control.extra_args
    top = control.copy().set_previous_controlnet(c)
    assert len(top.get_extra_hooks()) == 2  # the chain's hook groups, below first


def test_a_call_after_cleanup_without_pre_run_is_refused(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image)
    assert call(c, sigma(0.5))[0] is not None
    c.cleanup()
    with pytest.raises(RuntimeError, match="was called before pre_run; ComfyUI's sampler always calls pre_run first"):
        call(c, sigma(0.5))


@pytest.mark.parametrize(("context_dim", "family"), [(1024, "SD2.x"), (2048, "SDXL")])
def test_the_family_of_the_model_being_sampled_is_named(control, fake_model, image, context_dim, family):
    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    model = fake_model(context_dim)
    with pytest.raises(FamilyMismatchError, match=rf"SD1.x ControlNet .* the model being sampled is {family}\."):
        c.pre_run(model, model.model_sampling.percent_to_sigma)


def test_residual_channels_in_messages_shorten_runs():
    from affordance.nodes.control import _channels

    assert _channels((320, 320, 640)) == "320 x2, 640"
    assert _channels((320, 640, 640, 640, 1280)) == "320, 640 x3, 1280"
    assert _channels(()) == ""


def test_a_mask_batch_that_fits_no_latent_batch_is_refused(control, fake_model, image, call, sigma):
    c = _ready(control, fake_model, image, mask=torch.ones(3, 64, 64))
    with pytest.raises(HintError, match="3 masks fits no latent batch of 2"):
        call(c, sigma(0.5), n=2)


def test_a_call_without_negative_rows_takes_no_row_skipping_path(control, fake_model, image, call, sigma, monkeypatch):
    """With the negative side weighted 0, a cond-only call runs the network on its rows as they are."""
    import affordance.nodes.control as control_module

    c = _ready(control, fake_model, image, weights=ControlWeights(uncond_multiplier=0.0))
    spread = []
    real = control_module.spread_rows
    monkeypatch.setattr(control_module, "spread_rows", lambda *a: spread.append(1) or real(*a))
    out, _ = call(c, sigma(0.5), n=2, order=(0,))
    assert out is not None and torch.count_nonzero(out["output"][0]) > 0
    assert spread == []
    call(c, sigma(0.5), n=2, order=(1, 0))  # with negative rows: taken out and spread back
    assert spread


def test_fresh_residuals_are_scaled_in_place_when_the_sigma_is_read(control, fake_model, image, call, sigma):
    """A window makes each call read the sigma; without reuse the network's outputs are still scaled in place,
    with no copy per residual per step."""
    c = _ready(control, fake_model, image, strength=0.5, window=(0.0, 0.9))
    made = []
    handle = c.network.register_forward_hook(lambda mod, args, out: made.append([t.data_ptr() for t in out.as_list()]))
    try:
        out, _ = call(c, sigma(0.5))
    finally:
        handle.remove()
    assert [t.data_ptr() for t in out["output"] + out["middle"]] == made[0]


def test_a_windowed_control_called_before_pre_run_says_so(control, call):
    c = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64), 1.0, (0.2, 0.8))
    with pytest.raises(RuntimeError, match="before pre_run"):
        call(c, 1.0)


def _host_reads_of_a_call(c, fake_model, call, sigma, hint=None) -> int:
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    if hint is not None:
        c.cond_hint = hint  # as Tiled Diffusion sets each tile's hint
    call(c, sigma(0.3))  # the first call of the run: hint encoded, factors made
    s = sigma(0.4)  # the fake host's own sigma maths reads values: outside the count
    with _Dispatched() as mode:
        out, _ = call(c, s)
    assert out is not None
    return mode.reads


def test_a_hint_set_without_a_window_covers_the_whole_run(control, fake_model, call, sigma):
    """``set_cond_hint(hint)`` (as hosts and tiling packs call it) and a control whose ``cond_hint`` alone was set
    (as Tiled Diffusion sets each tile's) control every step and read no sigma on the host."""
    hint = torch.rand(1, 3, 64, 64)
    c = control.copy().set_cond_hint(hint)
    assert _host_reads_of_a_call(c, fake_model, call, sigma) == 0
    assert call(c, sigma(0.001))[0] is not None  # the very start of sampling too
    fresh = AffordanceControl(control.network, None, name="fresh")
    assert _host_reads_of_a_call(fresh, fake_model, call, sigma, hint) == 0


def test_inference_memory_is_the_chains_own(control):
    """Our weights are counted through the patcher: no extra inference memory, a previous control's passed on."""
    assert control.inference_memory_requirements(torch.float16) == 0
    prev = SimpleNamespace(inference_memory_requirements=lambda dtype: 1234)
    assert control.copy().set_previous_controlnet(prev).inference_memory_requirements(torch.float16) == 1234


def test_a_unet_config_without_context_dim_is_checked_by_its_channels(control, fake_model):
    """Only a config with neither a text width nor UNet channels is a transformer's; one with channels samples."""
    c = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64))
    cfg = c.network.config
    model = fake_model()
    model.model_config = SimpleNamespace(
        unet_config={"model_channels": cfg.model_channels, "channel_mult": list(cfg.channel_mult),
                     "num_res_blocks": list(cfg.num_res_blocks)}  # fmt: skip
    )
    c.pre_run(model, model.model_sampling.percent_to_sigma)  # no FamilyMismatchError


def test_a_model_that_says_nothing_of_its_unet_is_not_family_checked(control, fake_model, call, sigma):
    c = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64))
    model = SimpleNamespace(model_sampling=fake_model().model_sampling)  # no model_config
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    out, _ = call(c, sigma(0.5))
    assert out is not None


@pytest.mark.parametrize("blocks", [[1], [1, 1, 1], []], ids=["shorter", "longer", "empty"])
def test_a_unet_config_that_does_not_say_its_residuals_skips_the_channel_check(control, fake_model, blocks):
    """num_res_blocks of another length than channel_mult (or both empty) name no residual channels."""
    c = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64))
    cfg = c.network.config
    model = fake_model()
    model.model_config = SimpleNamespace(
        unet_config={"context_dim": cfg.context_dim, "model_channels": cfg.model_channels,
                     "channel_mult": list(cfg.channel_mult) if blocks else [], "num_res_blocks": blocks}  # fmt: skip
    )
    c.pre_run(model, model.model_sampling.percent_to_sigma)


def test_a_never_applied_control_applies_at_strength_one(control, fake_model, call, sigma):
    """A control a tiling host only sets ``cond_hint`` on gives the residuals as applied at strength 1."""
    hint = torch.rand(1, 3, 64, 64)
    model = fake_model()
    outs = []
    for c in (AffordanceControl(control.network, None), AffordanceControl(control.network, None).set_cond_hint(hint, 1.0)):
        c.pre_run(model, model.model_sampling.percent_to_sigma)
        c.cond_hint = hint
        out, _ = call(c, sigma(0.5))
        outs.append(out["output"] + out["middle"])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


# ----- untested behaviours found by the rest of mutation round 5 (each test fails on its mutant) --------------------
def test_an_int_num_res_blocks_is_still_checked(control, image):
    """An int num_res_blocks means that many at every level (as ComfyUI's UNetModel reads it): still checked."""
    from .conftest import FakeSampling

    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    unet = {"context_dim": 768, "model_channels": 64, "channel_mult": [1, 2], "num_res_blocks": 1}
    model = SimpleNamespace(model_sampling=FakeSampling(), model_config=SimpleNamespace(unet_config=unet))
    with pytest.raises(FamilyMismatchError, match="does not fit the model being sampled"):
        c.pre_run(model, model.model_sampling.percent_to_sigma)


def test_copy_keeps_the_window(control, fake_model, image, call, sigma):
    """The Reuse node and ComfyUI's hosts copy applied controls: the copy keeps the user's start/end."""
    c = control.copy().set_cond_hint(image().movedim(-1, 1), 1.0, (0.5, 1.0))
    d = c.copy()
    assert d.timestep_percent_range == (0.5, 1.0)
    model = fake_model()
    d.pre_run(model, model.model_sampling.percent_to_sigma)
    out, _ = call(d, sigma(0.1))  # before the window starts: nothing
    assert out is None


def test_the_reuse_node_keeps_the_apply_nodes_window(control, fake_model, image, call, sigma):
    """The user's path: Apply ControlNet with start_percent 0.5, then the Reuse node (which copies each control)."""
    from affordance.nodes.apply import apply_control
    from affordance.nodes.reuse import reuse_residuals

    def cond(c=None):
        return [[torch.zeros(1, 77, 768), {} if c is None else {"control": c}]]

    pos, _ = apply_control(cond(), cond(), control, image(), 1.0, 0.5, 1.0)
    pos, _ = reuse_residuals(cond(pos[0][1]["control"]), cond(pos[0][1]["control"]), 2)
    ctrl = pos[0][1]["control"]
    model = fake_model()
    ctrl.pre_run(model, model.model_sampling.percent_to_sigma)
    out, _ = call(ctrl, sigma(0.1))  # before the window starts: nothing
    assert out is None


def test_a_new_hint_replaces_the_encoded_one(control, fake_model, image, call, sigma, close_lists):
    """set_cond_hint on a control that has run (a host re-using it with a new hint of the same size) drops the old
    hint's encoding."""
    model = fake_model()
    c = control.copy().set_cond_hint(image(seed=1).movedim(-1, 1))
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    old, _ = call(c, sigma(0.5))
    c.set_cond_hint(image(seed=2).movedim(-1, 1))
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    new, _ = call(c, sigma(0.5))
    fresh = control.copy().set_cond_hint(image(seed=2).movedim(-1, 1))
    fresh.pre_run(model, model.model_sampling.percent_to_sigma)
    want, _ = call(fresh, sigma(0.5))
    close_lists(new["output"], want["output"])
    assert not torch.allclose(old["output"][0], new["output"][0])


def test_set_cond_hint_defaults_to_strength_1(control, image):
    c = AffordanceControl(control.network).set_cond_hint(image().movedim(-1, 1))
    assert c.strength == 1.0


def test_a_call_without_negative_rows_gets_no_row_factor(control, fake_model, call, sigma):
    """With an uncond_multiplier, a cond-only call (ComfyUI at cfg 1) multiplies its residuals by no row factor."""
    c = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64))
    c.configure(weights=ControlWeights(uncond_multiplier=0.5))
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    out, _ = call(c, sigma(0.5), n=2, order=(0,))  # the positive alone
    assert out is not None
    assert c._factor_cache and all(f is None for f in c._factor_cache.values())


def test_exact_reuse_with_a_window_builds_no_progress_map(control, fake_model):
    """every_k_steps 1 is the exact path even with a window: pre_run asks the host for the two window sigmas only."""
    from affordance.controlnet.reuse import ReusePolicy

    c = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64)).set_reuse(ReusePolicy(1, 0.2, 0.8))
    model = fake_model()
    asked = []
    c.pre_run(model, lambda p: asked.append(p) or model.model_sampling.percent_to_sigma(p))
    assert len(asked) == 2


def test_a_replay_without_reuse_is_not_copied(control, fake_model, image, call, sigma, standin_graphs, monkeypatch):
    """Without lossy reuse a replay's outputs are scaled in place and handed on, never cloned (one copy each)."""
    import affordance.nodes.control as control_module

    c = control.copy().set_cond_hint(image().movedim(-1, 1), 0.7)
    c.cuda_graphs, c.graph_backend = True, standin_graphs()
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    replayed = []
    real = control_module.GraphedControlNet.__call__

    def spy(self, *a, **k):
        outs = real(self, *a, **k)
        replayed.append(list(outs))
        return outs

    monkeypatch.setattr(control_module.GraphedControlNet, "__call__", spy)
    with torch.no_grad():
        for p in (0.2, 0.5):
            out, _ = call(c, sigma(p))
            got = out["output"] + out["middle"]
            assert replayed and all(a is b for a, b in zip(got, replayed[-1]) if b is not None)


def test_get_control_before_pre_run_with_a_schedule_names_pre_run(control, image, call, sigma):
    """A scheduled control called before pre_run says so (as a windowed one does), not an AttributeError."""
    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    c.configure(schedule=StrengthSchedule(((0.0, 1.0), (1.0, 0.5))))
    with pytest.raises(RuntimeError, match="called before pre_run"):
        call(c, sigma(0.5))


def test_the_negative_rows_factor_is_made_where_and_as_the_residuals_are(control, fake_model, call, sigma):
    """The uncond row factor takes the residuals' device (a CPU factor fails against CUDA residuals; the meta
    device stands in) and dtype: kept (reusable) residuals are multiplied into a new tensor, which an fp32 factor
    would widen from bf16 to fp32."""
    from affordance.controlnet.reuse import ReusePolicy

    c = control.copy().configure(weights=ControlWeights(uncond_multiplier=0.5))
    rows = c._row_scale((False, True), torch.device("meta"), torch.float16)
    assert rows is not None and rows.shape == (2, 1, 1, 1)
    assert rows.device.type == "meta" and rows.dtype == torch.float16

    half = AffordanceControl(copy.deepcopy(control.network).to(torch.bfloat16), None, name="tiny_bf16.safetensors")
    half = half.set_cond_hint(torch.rand(1, 3, 64, 64)).set_reuse(ReusePolicy(2))
    half.configure(weights=ControlWeights(uncond_multiplier=0.5))
    model = fake_model()
    half.pre_run(model, model.model_sampling.percent_to_sigma)
    out, _ = call(half, sigma(0.5))
    residuals = [r for r in out["output"] + out["middle"] if r is not None]
    assert residuals and all(r.dtype == torch.bfloat16 for r in residuals)

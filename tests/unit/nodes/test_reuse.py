"""AST_ControlResidualReuse and the lossy reuse inside our control object, driven like ComfyUI's sampler."""

from __future__ import annotations

import logging

import pytest
import torch

from affordance.controlnet.reuse import ReuseError, ReusePolicy
from affordance.controlnet.schedule import ProgressMap, StrengthSchedule
from affordance.controlnet.weights import ControlWeights, Preset
from affordance.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from affordance.nodes.apply import apply_control
from affordance.nodes.control import AffordanceControl
from affordance.nodes.reuse import ControlResidualReuse, reuse_residuals


def _cond(control=None) -> list:
    d = {} if control is None else {"control": control}
    return [[torch.zeros(1, 77, 768), d]]


def _applied(control, image, strength=1.0, **extras) -> AffordanceControl:
    """The control object AST_ApplyControlNet attaches (shared by positive and negative)."""
    pos, _ = apply_control(_cond(), _cond(), control, image(), strength, 0.0, 1.0, **extras)
    return pos[0][1]["control"]


def _with_reuse(ctrl, k, start=0.0, end=1.0) -> AffordanceControl:
    pos, neg = reuse_residuals(_cond(ctrl), _cond(ctrl), k, start, end)
    out = pos[0][1]["control"]
    assert neg[0][1]["control"] is out
    return out


class Counter:
    """Counts the network's forward calls (the hint encoder runs once per run and is not counted)."""

    def __init__(self, ctrl: AffordanceControl) -> None:
        self.calls = 0
        self._handle = ctrl.network.register_forward_hook(self._hook)

    def _hook(self, *args) -> None:
        self.calls += 1

    def close(self) -> None:
        self._handle.remove()


def progresses(steps: int) -> list[float]:
    """Mid-step progress of a run of ``steps`` evaluations (never exactly on a window edge)."""
    return [(i + 0.5) / steps for i in range(steps)]


@pytest.fixture
def drive(fake_model, sigma):
    """``drive(ctrl, progress_list, orders=None, n=1, uuids=None, y_dim=None, run=True)``: one sampling run.

    Each evaluation gets a new noisy latent (seeded by its index) and the same text context, as in a real
    run; ``orders`` gives the cond/uncond chunk layout per evaluation (default ``(1, 0)``). Returns the
    ``get_control`` outputs; ``pre_run`` comes first and, with ``run=True``, ``cleanup`` last.
    """

    def run(ctrl, ps, orders=None, n=1, uuids=None, y_dim=None, cleanup=True):
        model = fake_model(ctrl.network.config.context_dim)
        ctrl.pre_run(model, model.model_sampling.percent_to_sigma)
        g = torch.Generator().manual_seed(7)
        ctx = torch.randn(4 * n, 5, ctrl.network.config.context_dim, generator=g)
        y = torch.randn(4 * n, y_dim, generator=g) if y_dim else None
        outs = []
        for i, p in enumerate(ps):
            order = (orders[i] if orders else None) or (1, 0)
            rows = n * len(order)
            x = torch.randn(rows, 4, 8, 8, generator=torch.Generator().manual_seed(100 + i))
            cond = {"c_crossattn": ctx[:rows].clone()}
            if y is not None:
                cond["y"] = y[:rows].clone()
            opts = {"cond_or_uncond": list(order)}
            if uuids:
                opts["uuids"] = list(uuids[i])
            outs.append(ctrl.get_control(x, torch.full((rows,), sigma(p)), cond, len(order), opts))
        if cleanup:
            ctrl.cleanup()
        return outs

    return run


def flat(out: dict) -> list[torch.Tensor]:
    return [*out["output"], *out["middle"]]


# ----- exactness and call counts ---------------------------------------------------------------------------
def test_k1_through_the_node_is_bit_identical_to_exact(control, image, drive):
    exact = _applied(control, image, 0.8)
    reused = _with_reuse(exact, 1)
    a = drive(exact, progresses(6))
    b = drive(reused, progresses(6))
    for u, v in zip(a, b):
        assert all(torch.equal(p, q) for p, q in zip(flat(u), flat(v)))


@pytest.mark.parametrize(("k", "steps", "forwards"), [(1, 8, 8), (2, 8, 4), (3, 9, 3), (4, 10, 3)])
def test_k_runs_the_network_once_every_k_steps(control, image, drive, k, steps, forwards, caplog):
    ctrl = _with_reuse(_applied(control, image), k)
    counter = Counter(ctrl)
    drive(ctrl, progresses(steps), cleanup=False)
    assert counter.calls == forwards
    if k > 1:
        assert (ctrl.reuse_stats.computed, ctrl.reuse_stats.reused) == (forwards, steps - forwards)
    with caplog.at_level(logging.INFO, logger="affordance.nodes"):
        ctrl.cleanup()
    assert ctrl.reuse_stats is None
    # the run's counts are logged as it ends, when residuals were reused (an exact run logs nothing)
    said = f"computed {forwards} times, reused {steps - forwards} times (every_k_steps={k}, lossy)"
    assert (said in caplog.text) == (k > 1)


def test_reused_residuals_are_weighted_by_the_current_step(control, image, drive, fake_model):
    """Strength x schedule x uncond multiplier x mask of the step itself, on the last computed raw residuals."""
    sched = StrengthSchedule.parse("0.0:1.0, 1.0:0.1")
    mask = torch.zeros(1, 64, 64)
    mask[..., :32] = 1
    ps = progresses(6)
    raw = drive(_applied(control, image), ps)  # exact, unweighted
    extras = dict(schedule=sched, weights=ControlWeights(uncond_multiplier=0.5), mask=mask)
    ctrl = _with_reuse(_applied(control, image, 0.7, **extras), 2)
    got = drive(ctrl, ps)
    progress = ProgressMap(fake_model().model_sampling.percent_to_sigma)
    rows = torch.tensor([0.5, 1.0]).view(-1, 1, 1, 1)  # order (1, 0): uncond row first
    for i, p in enumerate(ps):
        m = 0.7 * sched.at(progress.progress(_sigma_of(fake_model, p)))
        source = raw[i - i % 2]  # computed at even steps, reused at odd ones
        for r, s in zip(flat(got[i]), flat(source)):
            expected = s * m * rows
            expected[..., expected.shape[-1] // 2 :] = 0
            torch.testing.assert_close(r, expected, atol=1e-6, rtol=1e-5)
    # computed steps are the exact run's; reused ones really differ from it (the approximation is visible)
    exact = drive(_applied(control, image, 0.7, **extras), ps)
    assert all(torch.equal(u, v) for u, v in zip(flat(got[2]), flat(exact[2])))
    assert not torch.allclose(flat(got[3])[0], flat(exact[3])[0])


def _sigma_of(fake_model, p: float) -> float:
    return fake_model().model_sampling.percent_to_sigma(p)


def test_reused_outputs_are_fresh_lists(control, image, drive):
    """The UNet pops from the lists it gets: a reused step must hand out new lists and new tensors."""
    ctrl = _with_reuse(_applied(control, image), 4)
    a, b = drive(ctrl, progresses(2))
    assert a["output"] is not b["output"] and a["middle"] is not b["middle"]
    assert all(p is not q for p, q in zip(flat(a), flat(b)))


# ----- when residuals are computed ------------------------------------------------------------------------
def test_layout_change_forces_a_computation(control, image, drive):
    ctrl = _with_reuse(_applied(control, image), 2)
    counter = Counter(ctrl)
    # (1, 0) computed; (1, 0) reused; cond only (cfg 1 / a split batch): computed; (1, 0) again: its entry is
    # two evaluations old, computed; uncond first: computed; uncond first again: reused.
    orders = [(1, 0), (1, 0), (0,), (1, 0), (0, 1), (0, 1)]
    drive(ctrl, progresses(6), orders=orders, cleanup=False)
    assert counter.calls == 4 and ctrl.reuse_stats.reused == 2
    ctrl.cleanup()


def test_batch_size_change_forces_a_computation(control, image, drive):
    ctrl = _with_reuse(_applied(control, image), 4)
    counter = Counter(ctrl)
    drive(ctrl, progresses(1), n=1, cleanup=False)
    drive(ctrl, progresses(1), n=2, cleanup=False)
    assert counter.calls == 2


def test_other_conditioning_entries_never_share_residuals(control, image, drive):
    """ComfyUI names the conditioning entries batched in a call (uuids): other entries, other residuals."""
    ctrl = _with_reuse(_applied(control, image), 2)
    counter = Counter(ctrl)
    drive(ctrl, progresses(2), uuids=[("a", "b"), ("c", "d")])
    assert counter.calls == 2  # the second step's entries are others: computed, not served the first's residuals
    drive(ctrl, progresses(3), uuids=[("a", "b"), ("c", "d"), ("c", "d")])
    assert counter.calls == 4  # a new run: its third step reuses its second (the same entries)


def test_a_new_run_never_reuses_the_last_one(control, image, drive):
    ctrl = _with_reuse(_applied(control, image), 16)
    counter = Counter(ctrl)
    drive(ctrl, [0.1], cleanup=False)
    drive(ctrl, [0.2], cleanup=False)  # pre_run again, lower sigma, same layout: still computed
    drive(ctrl, [0.3])
    drive(ctrl, [0.4])  # after cleanup
    assert counter.calls == 4


def test_zero_strength_gap_is_not_bridged(control, image, drive):
    sched = StrengthSchedule.parse("0.0:1.0, 0.4:0.0, 0.5:1.0", "step")
    ctrl = _with_reuse(_applied(control, image, schedule=sched), 16)
    counter = Counter(ctrl)
    outs = drive(ctrl, [0.0, 0.1, 0.45, 0.6, 0.7])
    assert outs[2] is None
    assert counter.calls == 2  # 0.0 computed, 0.1 reused, 0.45 off, 0.6 computed afresh, 0.7 reused


def test_reuse_window_keeps_steps_outside_it_exact(control, image, drive):
    ps = progresses(10)
    exact = drive(_applied(control, image), ps)
    ctrl = _with_reuse(_applied(control, image), 2, 0.0, 0.5)
    counter = Counter(ctrl)
    got = drive(ctrl, ps)
    assert counter.calls == 3 + 5  # steps 0, 2, 4 inside the window; 5..9 outside, all computed
    for i in range(5, 10):
        assert all(torch.equal(a, b) for a, b in zip(flat(got[i]), flat(exact[i])))


def test_sdxl_label_takes_part_and_reuse_works(xl_control, image, drive):
    ctrl = _with_reuse(_applied(xl_control, image), 2)
    counter = Counter(ctrl)
    drive(ctrl, progresses(4), y_dim=2816)
    assert counter.calls == 2


# ----- the node --------------------------------------------------------------------------------------------
class Foreign:
    """Stands for ComfyUI's own control objects: copy() keeps settings, not the chain link."""

    def __init__(self, value: float) -> None:
        self.value, self.previous_controlnet = value, None

    def copy(self) -> Foreign:
        return Foreign(self.value)

    def set_previous_controlnet(self, controlnet) -> Foreign:
        self.previous_controlnet = controlnet
        return self


def test_node_is_registered_with_its_permanent_inputs():
    assert NODE_CLASS_MAPPINGS["AST_ControlResidualReuse"] is ControlResidualReuse
    assert "lossy" in NODE_DISPLAY_NAME_MAPPINGS["AST_ControlResidualReuse"]
    spec = ControlResidualReuse.INPUT_TYPES()
    assert list(spec["required"]) == ["positive", "negative", "every_k_steps", "start_percent", "end_percent"]
    k = spec["required"]["every_k_steps"][1]
    assert (k["default"], k["min"], k["max"]) == (2, 1, 16) and "LOSSY" in k["tooltip"]
    assert ControlResidualReuse.CATEGORY == "Affordance/speed"
    assert "LOSSY" in ControlResidualReuse.DESCRIPTION and "fidelity" in ControlResidualReuse.DESCRIPTION
    assert ControlResidualReuse.RETURN_TYPES == ("CONDITIONING", "CONDITIONING")


def test_node_walks_the_whole_chain_and_leaves_inputs_alone(control, image):
    a = _applied(control, image)
    b = Foreign(2.0).set_previous_controlnet(a)  # ComfyUI's ControlNet applied after ours
    c = _applied(control, image).set_previous_controlnet(b)  # ours on top
    other = Foreign(5.0)  # another chain with nothing of ours
    pos_in = _cond(c) + _cond(other)
    neg_in = _cond(c)
    pos, neg = ControlResidualReuse().apply(pos_in, neg_in, 3, 0.0, 1.0)
    top = pos[0][1]["control"]
    assert neg[0][1]["control"] is top  # still one object for cond and uncond
    assert isinstance(top, AffordanceControl) and top is not c and top.reuse == ReusePolicy(3)
    mid = top.previous_controlnet
    assert isinstance(mid, Foreign) and mid is not b and mid.value == 2.0  # re-linked copy
    bottom = mid.previous_controlnet
    assert isinstance(bottom, AffordanceControl) and bottom is not a and bottom.reuse == ReusePolicy(3)
    assert bottom.cond_hint_original is a.cond_hint_original
    assert pos[1][1]["control"] is other  # nothing of ours below it: untouched
    # the inputs are unchanged
    assert pos_in[0][1]["control"] is c and c.reuse is None and a.reuse is None and b.previous_controlnet is a


def test_copy_keeps_the_reuse_policy(control):
    c = control.copy().set_reuse(ReusePolicy(2))
    assert c.copy().reuse == ReusePolicy(2)


@pytest.mark.parametrize(
    ("k", "start", "end", "message"),
    [
        (0, 0.0, 1.0, "every_k_steps must be from 1 to 16, got 0"),
        (17, 0.0, 1.0, "got 17"),
        (2.5, 0.0, 1.0, r"whole number from 1 to 16, got 2.5 \(float\)"),
        (2, 0.9, 0.1, "swap them"),
    ],
)
def test_bad_settings_are_typed_errors(control, image, k, start, end, message):
    ctrl = _applied(control, image)
    with pytest.raises(ReuseError, match=message):
        reuse_residuals(_cond(ctrl), _cond(ctrl), k, start, end)
    verdict = ControlResidualReuse.VALIDATE_INPUTS(k, start, end)
    assert isinstance(verdict, str) and verdict.startswith(("every_k_steps", "the reuse window"))
    assert ControlResidualReuse.VALIDATE_INPUTS(2, 0.0, 1.0) is True


def test_no_affordance_controlnet_passes_the_conditioning_on_with_a_warning(control, image, caplog):
    """An Apply ControlNet at strength 0 passes its conditioning on untouched (how a ControlNet is switched off to
    compare): the Reuse node after it used to fail the whole run ("nothing to speed up... Put it after the Apply
    ControlNet node(s)", where it already was). Now it changes nothing and the log says why."""
    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    pos, neg = _cond(), _cond()  # as they come from the text encoders
    off_pos, off_neg = apply_control(pos, neg, c, image(), 0.0, 0.0, 1.0)
    assert off_pos is pos and off_neg is neg
    with caplog.at_level(logging.WARNING, logger="affordance.nodes"):
        out = reuse_residuals(off_pos, off_neg, 2)
    assert out[0] is pos and out[1] is neg
    assert "changes nothing" in caplog.text and "strength 0" in caplog.text
    foreign = _cond(Foreign(1.0))
    assert reuse_residuals(foreign, _cond(), 2)[0] is foreign  # ComfyUI's own ControlNets only: the same
    with pytest.raises(ReuseError, match="positive must be a CONDITIONING"):
        reuse_residuals(None, _cond(), 2)


def test_no_reuse_between_two_latents_at_one_noise_level(control, image, fake_model, sigma):
    """Two same-size areas of one prompt on a host that sends no conditioning uuids: same layout and text,
    other latents. The second used to get the first one's residuals."""
    model = fake_model()
    c = control.copy().set_cond_hint(image().movedim(-1, 1)).set_reuse(ReusePolicy(2))
    exact = control.copy().set_cond_hint(image().movedim(-1, 1))
    for ctl in (c, exact):
        ctl.pre_run(model, model.model_sampling.percent_to_sigma)
    g = torch.Generator().manual_seed(1)
    ctx = torch.randn(1, 5, 768, generator=g)
    xa, xb = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    t = torch.full((1,), sigma(0.3))
    c.get_control(xa, t, {"c_crossattn": ctx}, 1, {"cond_or_uncond": [0]})
    got = c.get_control(xb, t, {"c_crossattn": ctx}, 1, {"cond_or_uncond": [0]})
    want = exact.get_control(xb, t, {"c_crossattn": ctx}, 1, {"cond_or_uncond": [0]})
    for a, b in zip(got["output"], want["output"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert c.reuse_stats.reused == 0


def test_the_nodes_logic_keeps_each_entrys_tensor_and_defaults_to_the_whole_run(control, image):
    ctrl = _applied(control, image)
    pos = _cond(ctrl)
    out, _ = reuse_residuals(pos, _cond(ctrl), 3)
    assert out[0][0] is pos[0][0]
    assert out[0][1]["control"].reuse == ReusePolicy(3, 0.0, 1.0)


def test_a_foreign_control_that_cannot_be_relinked_is_kept_with_a_warning(control, image, caplog):
    """A control above ours with copy() but no set_previous_controlnet() (or neither) is kept as it is: ours
    below it stay exact, and the log says so."""

    class CopyOnly:
        def __init__(self, prev):
            self.previous_controlnet = prev

        def copy(self):
            return CopyOnly(self.previous_controlnet)

    class Neither:
        def __init__(self, prev):
            self.previous_controlnet = prev

    ctrl = _applied(control, image)
    for kind in (CopyOnly, Neither):
        top = kind(ctrl)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="affordance.nodes"):
            pos, _ = reuse_residuals(_cond(top), _cond(), 2)
        assert pos[0][1]["control"] is top and top.previous_controlnet is ctrl and ctrl.reuse is None
        assert f"{kind.__name__} has no copy()/set_previous_controlnet()" in caplog.text


def test_lossy_reuse_applies_strength_and_weights_like_the_exact_path(control, image, drive):
    """Without a mask or uncond factor the lossy path scales kept outputs out of place: same values."""
    w = ControlWeights(Preset.CUSTOM, custom=(0.5, 0.25, 1.0, 0.75, 0.5))
    exact = _applied(control, image, 0.7, weights=w)
    lossy = _with_reuse(_applied(control, image, 0.7, weights=w), 2)
    ps = progresses(4)
    for a, b in zip(drive(lossy, ps[:1]), drive(exact, ps[:1])):
        for x, y in zip(flat(a), flat(b)):
            torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)


def test_a_new_policy_starts_a_new_cache(control, image, drive):
    c = _with_reuse(_applied(control, image), 2)
    drive(c, progresses(4)[:2], cleanup=False)
    assert c.reuse_stats is not None and c.reuse_stats.computed == 1
    c.set_reuse(ReusePolicy(3))
    assert c.reuse_stats is None


class _Uncopyable:
    """Another pack's control above ours: it chains, but cannot be copied."""

    def __init__(self, prev) -> None:
        self.previous_controlnet = prev

    def get_control(self, *args):
        return None

    def set_previous_controlnet(self, prev):
        self.previous_controlnet = prev
        return self


def test_a_foreign_control_that_cannot_be_copied_is_kept_with_a_warning(control, image, caplog):
    ours = _applied(control, image)
    foreign = _Uncopyable(ours)
    with caplog.at_level(logging.WARNING, logger="affordance.nodes"):
        pos, _ = reuse_residuals(_cond(foreign), _cond(foreign), 2)
    assert pos[0][1]["control"] is foreign and foreign.previous_controlnet is ours
    assert "has no copy()/set_previous_controlnet()" in caplog.text


def test_reuse_over_the_whole_run_asks_the_host_for_two_sigmas_only(control, fake_model):
    """Without a reuse window or schedule no progress map is made: each of its 1001 sigmas is a GPU wait when the
    model's sigma tables live there."""
    c = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64), 1.0, (0.0, 1.0)).set_reuse(ReusePolicy(2))
    model = fake_model()
    asked = []
    c.pre_run(model, lambda p: asked.append(p) or model.model_sampling.percent_to_sigma(p))
    assert len(asked) == 2
    windowed = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64), 1.0, (0.0, 1.0))
    windowed.set_reuse(ReusePolicy(2, start_percent=0.2, end_percent=0.8))
    asked.clear()
    windowed.pre_run(model, lambda p: asked.append(p) or model.model_sampling.percent_to_sigma(p))
    assert len(asked) > 2


def test_reuse_every_step_is_the_exact_path(control, fake_model, call, sigma):
    """k = 1 reuses nothing: no sigma read on the host and the fresh residuals scaled in place, as without reuse."""
    from .test_control import _Dispatched

    c = control.copy().set_cond_hint(torch.rand(1, 3, 64, 64), 0.5).set_reuse(ReusePolicy(1))
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    call(c, sigma(0.3))
    s = sigma(0.4)
    made = []
    handle = c.network.register_forward_hook(lambda mod, args, out: made.append([t.data_ptr() for t in out.as_list()]))
    try:
        with _Dispatched() as mode:
            out, _ = call(c, s)
    finally:
        handle.remove()
    assert mode.reads == 0
    assert [t.data_ptr() for t in out["output"] + out["middle"]] == made[0]

"""Our Apply node's row places, driven through ComfyUI's ``model_conds`` protocol, and the sharing they give the control."""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet.weights import ControlWeights
from affordance.nodes.apply import apply_control
from affordance.nodes.negative_rows import KEY as NEGATIVE_KEY
from affordance.nodes.row_places import KEY, RowPlaces, mark_places, row_places


def test_each_chunk_gets_its_rows_places_and_chunks_join_in_order():
    entry = RowPlaces()
    whole = entry.process_cond(batch_size=2, area=None)
    crop = entry.process_cond(batch_size=2, area=[4, 6, 0, 2], device="cpu")
    assert whole.cond == ((None, 0), (None, 1))
    assert crop.cond == (((4, 6, 0, 2), 0), ((4, 6, 0, 2), 1))
    assert whole.size() == [2] and entry.size() == [0]
    assert whole.can_concat(crop) and not whole.can_concat(object())
    assert whole.concat([crop, whole]) == whole.cond + crop.cond + whole.cond


@pytest.mark.parametrize("area", ["missing", torch.tensor([4, 4, 0, 0]), ["4", 4], 7], ids=["missing", "tensor", "text", "number"])
def test_a_chunk_whose_area_is_not_given_or_not_understood_has_unknown_places(area):
    entry = RowPlaces()
    out = entry.process_cond(batch_size=3) if isinstance(area, str) else entry.process_cond(batch_size=3, area=area)
    assert out.cond == (None, None, None)


def test_mark_places_keeps_the_other_model_conds_and_the_callers_dict():
    other = object()
    inner = {"y": other}
    out = mark_places({"model_conds": inner})
    assert inner == {"y": other}  # the model_conds dict is replaced, not changed
    assert out["model_conds"]["y"] is other and isinstance(out["model_conds"][KEY], RowPlaces)
    assert isinstance(mark_places({})["model_conds"][KEY], RowPlaces)


@pytest.mark.parametrize(
    ("cond", "n", "expected"),
    [
        ({KEY: ((None, 0), (None, 0))}, 2, ((None, 0), (None, 0))),
        ({KEY: ((None, 0),)}, 2, None),  # places that do not cover the call are not used
        ({KEY: "other"}, 1, None),
        ({}, 2, None),
    ],
)
def test_row_places(cond, n, expected):
    assert row_places(cond, n) == expected


def _comfy_call(ctrl, chunks, areas=None, sigma=1.0, weights=None, negative_marks=None, seed=3):
    """One model call as ComfyUI's calc_cond_batch makes it: every chunk is the step's latent (cropped alike here)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g).repeat(len(chunks), 1, 1, 1)
    t = torch.full((len(chunks),), sigma)
    cond = {"c_crossattn": torch.randn(len(chunks), 5, ctrl.network.config.context_dim, generator=g)}
    if areas is not None:
        parts = [RowPlaces().process_cond(batch_size=1, area=a) for a in areas]
        cond[KEY] = parts[0].concat(parts[1:])
    if negative_marks is not None:
        cond[NEGATIVE_KEY] = negative_marks
    return ctrl.get_control(x, t, cond, len(chunks), {"cond_or_uncond": list(chunks)})


def _ready(control, fake_model, image, context_dim=768, **extras):
    c = control.copy().set_cond_hint(image().movedim(-1, 1), 1.0, (0.0, 1.0))
    if extras:
        c.configure(**extras)
    model = fake_model(context_dim=context_dim)
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    return c


def _spy(ctrl) -> list:
    seen: list = []
    ctrl.network.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs.get("shared")), with_kwargs=True)
    return seen


@pytest.mark.parametrize(
    ("chunks", "areas", "shared"),
    [
        ((0, 1), (None, None), (0, 0)),
        ((1, 0, 1), ([8, 4, 0, 4], [8, 4, 0, 0], [8, 4, 0, 4]), (0, 1, 0)),  # crops of one size, two alike
        ((0, 1), ([8, 4, 0, 0], [8, 4, 0, 4]), None),  # two crops of the same size: different latents
        # a crop at offset 0 batched with a whole chunk (so of the latent's size): the whole latent by another name
        ((0, 1, 1, 0), ([8, 8, 0, 0], None, None, [8, 8, 0, 0]), (0, 0, 0, 0)),
        ((0, 1), None, None),  # no places (ComfyUI's own Apply node on our ControlNet): nothing shared
    ],
    ids=["cond+uncond", "a crop between", "two areas", "whole crops", "unmarked"],
)
def test_the_control_shares_rows_at_the_same_place_and_gives_the_same_residuals(
    control, fake_model, image, close_lists, chunks, areas, shared
):
    ref = _comfy_call(_ready(control, fake_model, image), chunks)  # unmarked: every row computed
    c = _ready(control, fake_model, image)
    seen = _spy(c)
    out = _comfy_call(c, chunks, areas)
    assert seen == [shared]
    close_lists(out["output"] + out["middle"], ref["output"] + ref["middle"], atol=1e-5)


def test_rows_skipped_for_their_zero_weight_are_left_out_of_the_sharing(control, fake_model, image, close_lists):
    """uncond_multiplier 0: the network runs on the two cond rows only, which share (DualCFG's two positives)."""
    weights = ControlWeights(uncond_multiplier=0.0)
    marks = (False, True, False)
    ref = _comfy_call(_ready(control, fake_model, image, weights=weights), (0, 1, 2), negative_marks=marks)
    c = _ready(control, fake_model, image, weights=weights)
    seen = _spy(c)
    out = _comfy_call(c, (0, 1, 2), (None, None, None), negative_marks=marks)
    assert seen == [(0, 0)]
    close_lists(out["output"] + out["middle"], ref["output"] + ref["middle"], atol=1e-5)
    assert all(torch.count_nonzero(r[1]) == 0 for r in out["output"])


def test_an_sdxl_control_shares_nothing(xl_control, fake_model, image):
    """SDXL's label differs per row and every ResBlock reads it: nothing is shared, and nothing is even asked."""
    c = _ready(xl_control, fake_model, image, context_dim=2048)
    seen = _spy(c)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g).repeat(2, 1, 1, 1)
    parts = [RowPlaces().process_cond(batch_size=1, area=None) for _ in range(2)]
    cond = {
        "c_crossattn": torch.randn(2, 5, 2048, generator=g),
        "y": torch.randn(2, 2816, generator=g),
        KEY: parts[0].concat(parts[1:]),
    }
    c.get_control(x, torch.full((2,), 1.0), cond, 2, {"cond_or_uncond": [0, 1]})
    assert seen == [None]


def test_our_apply_node_marks_both_sides_and_comfyui_fills_in_the_places(control, image):
    pos, neg = apply_control([[torch.zeros(1, 77, 768), {}]], [[torch.zeros(1, 77, 768), {}]], control, image(), 1.0, 0.0, 1.0)
    # what ComfyUI's get_area_and_mult and cond_cat then do with every model_conds entry
    chunks = [entries[0][1]["model_conds"][KEY].process_cond(batch_size=2, area=None) for entries in (pos, neg)]
    joined = chunks[0].concat(chunks[1:])
    assert joined == ((None, 0), (None, 1), (None, 0), (None, 1))

"""Cond and uncond rows share the ControlNet's text-free layers inside ComfyUI's own sampler, and sample the same.

ComfyUI passes each chunk's area to our Apply node's ``model_conds`` entry (``process_cond(area=...)``); rows of
chunks cropped alike then share. Each case samples with ComfyUI's sampler, records the sharing the network was
asked for, and compares with the same conditioning without the places (every row computed).
"""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet.model import ControlNet
from affordance.nodes.apply import apply_control
from affordance.nodes.row_places import KEY

pytestmark = pytest.mark.comfy

TOL = 1e-3  # max |shared - every row| over sampled latents (fp32, CPU), as in test_sampling_parity
LATENT = 8


@pytest.fixture(scope="module")
def sd15(tiny_family):
    return tiny_family("sd15")


def record_sharing(monkeypatch) -> list:
    """The ``shared`` argument of every forward of our network."""
    seen = []
    original = ControlNet.forward

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("shared"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ControlNet, "forward", spy)
    return seen


def without_places(conditioning: list) -> list:
    out = []
    for tensor, options in conditioning:
        out.append([tensor, dict(options, model_conds={k: v for k, v in options["model_conds"].items() if k != KEY})])
    return out


def sample(comfy_sample, fam, positive, negative, batch=1, steps=3):
    latent = torch.zeros(batch, 4, LATENT, LATENT)
    return comfy_sample(fam.patcher, positive, negative, latent, steps=steps, seed=5)


@pytest.mark.parametrize("batch", [1, 2])
def test_ksampler_cond_and_uncond_rows_share_and_sample_the_same(comfy, sd15, comfy_sample, record_sampling, monkeypatch, batch):
    positive, negative = sd15.conditioning(1, batch), sd15.conditioning(2, batch)
    pair = apply_control(positive, negative, sd15.our_controls[0], sd15.image(11), 1.0, 0.0, 1.0)
    seen = record_sharing(monkeypatch)
    shared = sample(comfy_sample, sd15, *pair, batch=batch)
    assert seen == [tuple(range(batch)) * 2] * 3  # every step: each latent's cond row and uncond row share
    seen.clear()
    every_row = sample(comfy_sample, sd15, *map(without_places, pair), batch=batch)
    assert seen == [None] * 3
    plain = sample(comfy_sample, sd15, positive, negative, batch=batch)
    effect = (every_row.double() - plain.double()).abs().max().item()
    diff = record_sampling(f"shared cond/uncond rows, batch {batch}", shared, every_row, effect)
    assert effect > 50 * TOL and diff <= TOL, (diff, effect)


@pytest.mark.parametrize("region", ["area", "mask"])
def test_rows_of_differently_cropped_chunks_are_kept_apart(
    comfy, comfy_nodes, sd15, comfy_sample, record_sampling, monkeypatch, region
):
    """A positive split into a full and a regional entry: ComfyUI crops the regional chunks (and its copies of the
    negative) to the area, so only chunks of the same crop share, in whatever calls ComfyUI batches them."""
    positive, negative, other = sd15.conditioning(1), sd15.conditioning(2), sd15.conditioning(3)
    if region == "area":
        part = comfy_nodes.ConditioningSetArea().append(other, 32, 16, 0, 16, 1.0)[0]
    else:  # mask bounds: ComfyUI sets the area to the mask's bounds, so these chunks are cropped too
        mask = torch.zeros(1, LATENT * 8, LATENT * 8)
        mask[:, :, : LATENT * 4] = 1.0
        part = comfy_nodes.ConditioningSetMask().append(other, mask, "mask bounds", 1.0)[0]
    positive = comfy_nodes.ConditioningCombine().combine(positive, part)[0]
    pair = apply_control(positive, negative, sd15.our_controls[0], sd15.image(11), 1.0, 0.0, 1.0)
    seen = record_sharing(monkeypatch)
    shared = sample(comfy_sample, sd15, *pair)
    # area: the full and the cropped chunks in a call each per step, each call a shared pair. mask: all four chunks
    # in one call per step; ComfyUI gives the masked ones an area, (8, 8, 0, 0) here: the whole latent by another
    # name, so all four rows share
    assert seen == ([(0, 0)] * 6 if region == "area" else [(0, 0, 0, 0)] * 3), seen
    seen.clear()
    every_row = sample(comfy_sample, sd15, *map(without_places, pair))
    assert set(seen) == {None}
    plain = sample(comfy_sample, sd15, positive, negative)
    effect = (every_row.double() - plain.double()).abs().max().item()
    diff = record_sampling(f"shared rows with {region} conditioning", shared, every_row, effect)
    assert effect > 50 * TOL and diff <= TOL, (diff, effect)

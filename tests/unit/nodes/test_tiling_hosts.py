"""Hosts that tile the sampling (Tiled Diffusion): they crop the hint per tile and set it as ``cond_hint``.

Tiled Diffusion wraps the model function: for each batch of tiles it builds the whole hint from
``cond_hint_original`` (resized with ``upscale_algorithm`` to the latent size x ``compression_ratio``, passed
through ``preprocess_image``, with ``vae``/``latent_format``/``extra_concat_orig`` for other kinds of ControlNet),
cuts each tile's crop, repeats it for the rows of the call, sets the result as ``cond_hint`` and calls
``get_control`` with the tiles' latents (rows: tile after tile, each with the call's cond/uncond rows). The
host below does that, as that package does for ComfyUI's own ControlNet.
"""

from __future__ import annotations

import pytest
import torch

from affordance.controlnet.errors import HintError, InputError
from affordance.controlnet.hint import fit_hint
from affordance.controlnet.reuse import ReusePolicy
from affordance.controlnet.weights import ControlWeights, Preset
from affordance.nodes.control import AffordanceControl
from affordance.nodes.negative_rows import KEY as NEGATIVE_KEY

H, W, TILE = 8, 16, 8  # latent 8x16, two tiles of 8x8 side by side


def _ready(control: AffordanceControl, fake_model, hint: torch.Tensor, **extras) -> AffordanceControl:
    c = control.copy().set_cond_hint(hint)
    if extras:
        c.configure(**extras)
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    return c


def _hint() -> torch.Tensor:
    """``(1, 3, 64, 128)``: the two halves differ everywhere."""
    return torch.rand(1, 3, 8 * H, 8 * W, generator=torch.Generator().manual_seed(4))


def _tile_hints(control: AffordanceControl, tiles: list[int], rows: int) -> torch.Tensor:
    """What the host sets as ``cond_hint`` for the tiles starting at latent columns ``tiles``."""
    r = control.compression_ratio
    whole = fit_hint(control.cond_hint_original, W * r, H * r, control.upscale_algorithm)
    whole = control.preprocess_image(whole)
    assert control.vae is None and control.latent_format is None and not control.extra_concat_orig
    return torch.cat([whole[..., c * r : (c + TILE) * r].repeat(rows, 1, 1, 1) for c in tiles])


def _tiled_call(control, x: torch.Tensor, sigma: float, tiles: list[int], order=(1, 0), extra_cond=None):
    """One model call on the tiles ``tiles`` of the full latent ``x`` (rows: cond/uncond chunks of one latent)."""
    rows = x.shape[0]
    x_tile = torch.cat([x[..., c : c + TILE] for c in tiles])
    g = torch.Generator().manual_seed(9)
    context = torch.randn(rows, 5, 768, generator=g)
    cond = {"c_crossattn": context.repeat(len(tiles), 1, 1), **(extra_cond or {})}
    control.cond_hint = _tile_hints(control, tiles, rows)
    t = torch.full((x_tile.shape[0],), sigma)
    out = control.get_control(x_tile, t, cond, len(order), {"cond_or_uncond": list(order)})
    return out, x_tile, t, cond


def _all(out: dict) -> list[torch.Tensor]:
    return out["output"] + out["middle"]


def test_the_attributes_tiling_hosts_read_exist(control):
    """Tiled Diffusion reads these before it sets anything; it stopped with an AttributeError on ``cond_hint``."""
    c = control.copy()
    assert c.cond_hint is None and c.compression_ratio == 8 and c.upscale_algorithm == "nearest-exact"
    assert c.vae is None and c.latent_format is None and c.extra_concat_orig == []
    image = torch.rand(1, 3, 16, 16)
    assert c.preprocess_image(image) is image


@pytest.mark.parametrize("tiles", [[0], [8], [0, 8]], ids=["left", "right", "both in one call"])
def test_each_tile_gets_its_crop_of_the_hint(control, fake_model, sigma, tiles):
    """A call on tiles gets the residuals of those tiles' crops of the hint, as if each crop were the hint."""
    hint = _hint()
    c = _ready(control, fake_model, hint)
    x = torch.randn(2, 4, H, W, generator=torch.Generator().manual_seed(3))
    got, x_tile, t, cond = _tiled_call(c, x, sigma(0.4), tiles)
    crops = torch.cat([fit_hint(hint, 8 * W, 8 * H)[..., 8 * col : 8 * (col + TILE)] for col in tiles])
    if len(tiles) == 1:
        ref = _ready(control, fake_model, crops).get_control(x_tile, t, cond, 2, {"cond_or_uncond": [1, 0]})
    else:  # one hint per tile row: the reference lays one crop per chunk of two rows
        ref = _ready(control, fake_model, crops.repeat_interleave(2, 0)).get_control(
            x_tile, t, cond, 1, {"cond_or_uncond": [0]}
        )
    for g, r in zip(_all(got), _all(ref)):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)
    whole = _ready(control, fake_model, hint).get_control(x_tile, t, cond, 2 * len(tiles), {"cond_or_uncond": [1, 0] * len(tiles)})
    assert any(not torch.allclose(g, w, atol=1e-3) for g, w in zip(_all(got), _all(whole)))  # the crop matters


@pytest.mark.parametrize("inference", [False, True], ids=["grad mode off", "inference mode"])
def test_a_tile_hint_is_encoded_once_per_tile(control, fake_model, sigma, inference):
    """The host sets the same tensor for a tile at every step: it is encoded once, not at every step. ComfyUI
    samples in inference mode, whose tensors keep no version counter (reading it raised)."""
    if inference:
        with torch.inference_mode():
            test_a_tile_hint_is_encoded_once_per_tile(control, fake_model, sigma, False)
        return
    c = _ready(control, fake_model, _hint())
    encodes = []
    c.network.input_hint_block.register_forward_pre_hook(lambda mod, args: encodes.append(args[0].shape[0]))
    x = torch.randn(2, 4, H, W, generator=torch.Generator().manual_seed(3))
    hints = {}
    for percent in (0.2, 0.4, 0.6):
        for tile in (0, 8):
            if tile in hints:
                c.cond_hint = hints[tile]
                x_tile = x[..., tile : tile + TILE]
                c.get_control(x_tile, torch.full((2,), sigma(percent)), {"c_crossattn": torch.zeros(2, 5, 768)}, 2, {})
            else:
                _tiled_call(c, x, sigma(percent), [tile])
                hints[tile] = c.cond_hint
    assert len(encodes) == 2


def test_reused_residuals_stay_with_their_tile(control, fake_model, sigma):
    """Lossy reuse keys residuals by tile: tiles have the same shapes and differ only by their hint."""
    c = _ready(control, fake_model, _hint())
    c.set_reuse(ReusePolicy(every_k=2))
    x = torch.randn(2, 4, H, W, generator=torch.Generator().manual_seed(3))
    out, x_tile, _, cond = _tiled_call(c, x, sigma(0.3), [0])
    left, left_hint = [r.clone() for r in _all(out)], c.cond_hint
    right = [r.clone() for r in _all(_tiled_call(c, x, sigma(0.3), [8])[0])]
    c.cond_hint = left_hint  # the host sets the same tensor for the left tile at the next step
    again = c.get_control(x_tile, torch.full((2,), sigma(0.35)), cond, 2, {"cond_or_uncond": [1, 0]})
    assert c.reuse_stats.reused == 1
    for g, r, other in zip(_all(again), left, right):
        torch.testing.assert_close(g, r, atol=0, rtol=0)
        assert not torch.equal(g, other)


def test_negative_rows_repeat_with_the_tiles(control, fake_model, sigma):
    """The host repeats the call's rows per tile and hands our Apply node's marks on as they were: the uncond
    rows of every tile get no control ("ControlNet is more important"). Before, the marks did not fit the rows
    and the chunk order was read as if the rows were cond/uncond halves: the second tile's rows were swapped."""
    c = _ready(control, fake_model, _hint(), weights=ControlWeights(Preset.CONTROLNET_MORE_IMPORTANT))
    x = torch.randn(2, 4, H, W, generator=torch.Generator().manual_seed(3))
    out, *_ = _tiled_call(c, x, sigma(0.4), [0, 8], order=(1, 0), extra_cond={NEGATIVE_KEY: (True, False)})
    for r in _all(out):  # rows: tile 0 uncond, tile 0 cond, tile 1 uncond, tile 1 cond
        assert torch.count_nonzero(r[0::2]) == 0
        assert torch.count_nonzero(r[1]) > 0 and torch.count_nonzero(r[3]) > 0


def test_a_mask_under_tiling_is_refused(control, fake_model, sigma):
    """The host crops the hint, not our mask, which would be squeezed into every tile."""
    c = _ready(control, fake_model, _hint(), mask=torch.ones(1, 8 * H, 8 * W))
    x = torch.randn(2, 4, H, W, generator=torch.Generator().manual_seed(3))
    with pytest.raises(InputError, match="has a mask, but a node tiles the sampling .* sets each tile's hint"):
        _tiled_call(c, x, sigma(0.4), [0])


def test_a_hint_replaced_by_a_tile_crop_with_a_mask_is_refused(control, fake_model, sigma):
    """Ultimate SD Upscale copies the control and puts each tile's crop in ``cond_hint_original``: without a mask
    that is the tile's control (as ComfyUI's ControlNet gets it); a mask cannot follow the crop."""
    hint = _hint()
    x = torch.randn(2, 4, H, TILE, generator=torch.Generator().manual_seed(3))
    cond = {"c_crossattn": torch.randn(2, 5, 768, generator=torch.Generator().manual_seed(1))}
    t = torch.full((2,), sigma(0.4))
    for mask in (None, torch.ones(1, 8 * H, 8 * W)):
        tile = _ready(control, fake_model, hint, mask=mask).copy()
        tile.cond_hint_original = hint[..., : 8 * TILE]
        model = fake_model()
        tile.pre_run(model, model.model_sampling.percent_to_sigma)
        if mask is None:
            got = tile.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
            ref = _ready(control, fake_model, hint[..., : 8 * TILE]).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
            for g, r in zip(_all(got), _all(ref)):
                torch.testing.assert_close(g, r, atol=1e-6, rtol=0)
        else:
            with pytest.raises(InputError, match="replaced the 128x64 hint with a 64x64 crop"):
                tile.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})


def test_a_hint_set_for_another_size_or_an_earlier_run_is_not_used(control, fake_model, sigma, close_lists):
    hint = _hint()
    c = _ready(control, fake_model, hint)
    x = torch.randn(2, 4, H, W, generator=torch.Generator().manual_seed(3))
    cond = {"c_crossattn": torch.randn(2, 5, 768, generator=torch.Generator().manual_seed(1))}
    t = torch.full((2,), sigma(0.4))
    ref = _ready(control, fake_model, hint).get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})
    c.cond_hint = torch.rand(2, 3, 64, 64)  # a tile's hint: not the size of this latent x8
    close_lists(_all(c.get_control(x, t, cond, 2, {"cond_or_uncond": [1, 0]})), _all(ref), atol=1e-6)
    c.cond_hint = torch.rand(2, 3, 8 * H, 8 * W)
    c.cleanup()
    assert c.cond_hint is None
    c.cond_hint = torch.rand(2, 3, 8 * H, 8 * W)  # left by a run that ended without cleanup
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    assert c.cond_hint is None


def test_a_malformed_tile_hint_is_a_typed_error(control, fake_model, sigma):
    c = _ready(control, fake_model, _hint())
    c.cond_hint = torch.rand(2, 1, 64, 64)
    with pytest.raises(HintError, match=r"was given a hint of shape \(2, 1, 64, 64\) as cond_hint .* takes \(N, 3, H, W\)"):
        c.get_control(torch.randn(2, 4, 8, 8), torch.full((2,), sigma(0.4)), {"c_crossattn": torch.zeros(2, 5, 768)}, 2, {})


BATCHED = {"cond_or_uncond": [1, 0]}


def _whole_latents(rows: int, sigma: float):
    """A model call on the whole latent (no tiles), ``rows`` = 2 chunks x latents."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(rows, 4, H, W, generator=g)
    return x, torch.full((rows,), sigma), {"c_crossattn": torch.randn(rows, 5, 768, generator=g)}


def _given_as_if_applied(control, fake_model, sigma, close_lists, hint: torch.Tensor, rows: int) -> AffordanceControl:
    """A hint set by the host for the whole latent gives what the same hint given to Apply gives."""
    c = _ready(control, fake_model, _hint())
    x, t, cond = _whole_latents(rows, sigma(0.4))
    c.cond_hint = hint
    ref = _ready(control, fake_model, hint).get_control(x, t, cond, 2, BATCHED)
    close_lists(_all(c.get_control(x, t, cond, 2, BATCHED)), _all(ref), atol=1e-5)
    return c


def _hints(rows: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(rows, 3, 8 * H, 8 * W, generator=torch.Generator().manual_seed(seed))


def test_a_one_row_tile_hint_is_used_and_an_empty_one_refused(control, fake_model, sigma, close_lists):
    c = _given_as_if_applied(control, fake_model, sigma, close_lists, _hints(1, 8), rows=2)
    c.cond_hint = torch.rand(0, 3, 8 * H, 8 * W)
    with pytest.raises(HintError, match=r"was given a hint of shape \(0, 3, 64, 128\) as cond_hint"):
        c.get_control(*_whole_latents(2, sigma(0.4)), 2, BATCHED)


def test_a_tile_hint_per_latent_is_laid_out_for_every_chunk(control, fake_model, sigma, close_lists):
    """Two latents, cond and uncond: a tile hint of one row per latent serves both chunks."""
    _given_as_if_applied(control, fake_model, sigma, close_lists, _hints(2), rows=4)


def test_a_tile_hint_batch_of_a_divisor_is_repeated_and_another_is_refused(control, fake_model, sigma, close_lists):
    """Two chunks of four latents (8 rows): a tile hint of 2 rows is repeated as a hint batch of 2 would be; one
    of 3 fits no latent batch of 4."""
    c = _given_as_if_applied(control, fake_model, sigma, close_lists, _hints(2), rows=8)
    c.cond_hint = _hints(3)
    with pytest.raises(HintError, match="a batch of 3 hint images fits no latent batch of 4"):
        c.get_control(*_whole_latents(8, sigma(0.4)), 2, BATCHED)


def test_a_tile_hint_changed_in_place_outside_inference_mode_is_encoded_again(control, fake_model, sigma):
    """Outside inference mode a tensor counts its in-place changes: a host that edits its hint gets it
    re-encoded. (Under ComfyUI's inference mode there is no counter; Tiled Diffusion sets new tensors.)"""
    c = _ready(control, fake_model, _hint())
    inputs = _whole_latents(2, sigma(0.4))
    c.cond_hint = _hints(2)
    before = [r.clone() for r in _all(c.get_control(*inputs, 2, BATCHED))]
    c.cond_hint.mul_(0.0)
    after = _all(c.get_control(*inputs, 2, BATCHED))
    assert not all(torch.equal(a, b) for a, b in zip(before, after))


# ----- the encoded tile hints' cache (mutation round 5: each test fails on its mutant) -------------------------------
def _seeded_tile_hint(seed: int, h: int = 8, w: int = 16) -> torch.Tensor:
    return torch.rand(2, 3, 8 * h, 8 * w, generator=torch.Generator().manual_seed(seed))


def _one_tile_call(c: AffordanceControl, sigma, hint: torch.Tensor, h: int = 8, w: int = 16) -> dict:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, h, w, generator=g)
    cond = {"c_crossattn": torch.randn(2, 5, 768, generator=g)}
    c.cond_hint = hint
    return c.get_control(x, torch.full((2,), sigma(0.4)), cond, 2, {"cond_or_uncond": [1, 0]})


@pytest.mark.parametrize("first_alive", [False, True], ids=["first dropped", "first alive"])
def test_a_tile_hint_sharing_an_id_with_a_cached_one_is_encoded_again(
    control, fake_model, sigma, image, close_lists, monkeypatch, first_alive
):
    """The cache is keyed by id(); a new tensor given the id of a cached one (CPython reuses a dropped object's id
    at once) is not served that one's encoding. Every tensor is given one id here: waiting for the allocator to
    hand an address on is not reliable (this suite's torch never did in 200 tries)."""
    import gc

    import affordance.nodes.control as control_module

    model = fake_model()

    def ready() -> AffordanceControl:
        c = control.copy().set_cond_hint(image().movedim(-1, 1))
        c.pre_run(model, model.model_sampling.percent_to_sigma)
        return c

    c = ready()
    monkeypatch.setattr(control_module, "id", lambda _obj: 7, raising=False)  # the module's name lookup finds it
    first = _seeded_tile_hint(1)
    _one_tile_call(c, sigma, first)
    assert list(c._given_hints) == [7]  # the forced id is the cache's key: the collision below is real
    c.cond_hint = None
    if not first_alive:
        del first
        gc.collect()
    second = _seeded_tile_hint(2)
    got = _one_tile_call(c, sigma, second)
    want = _one_tile_call(ready(), sigma, second)
    close_lists(got["output"] + got["middle"], want["output"] + want["middle"], atol=1e-6)


def test_encoded_hints_of_dropped_tile_tensors_are_released(control, fake_model, sigma, image):
    """A host that sets a new tensor per call (Tiled Diffusion under inference mode) does not pile up encodings."""
    import gc

    model = fake_model()
    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    for seed in range(5):
        _one_tile_call(c, sigma, _seeded_tile_hint(seed))
        c.cond_hint = None
        gc.collect()
    assert len(c._given_hints) <= 1  # at most the last call's entry, not one per tile tensor


def test_a_tile_hint_batch_dividing_a_one_chunk_call_is_repeated(control, fake_model, image, sigma):
    """In a call of one chunk (cond only, ComfyUI at cfg 1) a tile hint batch that divides all n rows is repeated."""
    c = control.copy().set_cond_hint(image().movedim(-1, 1))
    model = fake_model()
    c.pre_run(model, model.model_sampling.percent_to_sigma)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, 8, 8, generator=g)
    cond = {"c_crossattn": torch.randn(6, 5, 768, generator=g)}
    c.cond_hint = torch.rand(2, 3, 64, 64)
    out = c.get_control(x, torch.full((6,), sigma(0.4)), cond, 1, {"cond_or_uncond": [0]})
    assert out["output"][0].shape[0] == 6

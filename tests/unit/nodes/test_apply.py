"""The node layer without ComfyUI: schemas, the Apply node's logic, and the loader with a stub host."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from affordance.controlnet.errors import HintError, InputError
from affordance.controlnet.weights import ControlWeights, Preset, WeightsError
from affordance.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from affordance.nodes.apply import apply_control
from affordance.nodes.control import AffordanceControl
from affordance.nodes.negative_rows import KEY as NEGATIVE_KEY
from affordance.nodes.row_places import KEY as PLACE_KEY
from affordance.nodes.row_places import RowPlaces
from affordance.nodes.weights import ControlWeightsNode, StrengthScheduleNode


def _cond(n: int = 1, control=None):
    d = {"pooled_output": None}
    if control is not None:
        d["control"] = control
    return [[torch.zeros(1, 77, 768), dict(d)] for _ in range(n)]


def test_every_node_is_prefixed_documented_and_tooltipped():
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("AST_")
        assert cls.CATEGORY.startswith("Affordance/") and cls.DESCRIPTION
        assert hasattr(cls, cls.FUNCTION)
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, value in spec.get(section, {}).items():
                assert len(value) == 2 and value[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_strength_zero_returns_inputs_untouched(control, image):
    pos, neg = _cond(), _cond()
    out = apply_control(pos, neg, control, image(), 0.0, 0.0, 1.0)
    assert out[0] is pos and out[1] is neg


def test_positive_and_negative_share_one_control(control, image):
    pos, neg = apply_control(_cond(2), _cond(1), control, image(), 1.0, 0.0, 1.0)
    objs = {id(d["control"]) for _, d in pos + neg}
    assert len(objs) == 1
    c = pos[0][1]["control"]
    assert isinstance(c, AffordanceControl) and c is not control  # a copy; the loader output stays clean
    assert control.cond_hint_original is None
    assert c.cond_hint_original.shape == (1, 3, 64, 64)
    assert all(d["control_apply_to_uncond"] is False for _, d in pos + neg)


def test_chains_onto_existing_control(control, image):
    class Previous:  # any control object (ComfyUI's, another pack's)
        def get_control(self, *args):
            return None

    prev = Previous()
    pos, neg = apply_control(_cond(1, prev), _cond(1), control, image(), 0.7, 0.1, 0.9)
    a, b = pos[0][1]["control"], neg[0][1]["control"]
    assert a.previous_controlnet is prev and b.previous_controlnet is None and a is not b
    assert a.strength == 0.7 and a.timestep_percent_range == (0.1, 0.9)


def test_inputs_are_not_mutated(control, image):
    pos = _cond(1)
    apply_control(pos, _cond(1), control, image(), 1.0, 0.0, 1.0)
    assert "control" not in pos[0][1]


def test_entries_are_marked_with_the_input_they_came_through(control, image):
    pos, neg = _cond(2), _cond(1)
    neg[0][1]["model_conds"] = {"c_concat": "kept"}
    out_pos, out_neg = apply_control(pos, neg, control, image(), 1.0, 0.0, 1.0)
    assert [d["model_conds"][NEGATIVE_KEY].cond for _, d in out_pos] == [(False,), (False,)]
    conds = out_neg[0][1]["model_conds"]
    assert conds == {"c_concat": "kept", NEGATIVE_KEY: conds[NEGATIVE_KEY], PLACE_KEY: conds[PLACE_KEY]}
    assert out_neg[0][1]["model_conds"][NEGATIVE_KEY].cond == (True,)
    # every entry is marked for its place too, which ComfyUI fills in per chunk
    assert all(isinstance(d["model_conds"][PLACE_KEY], RowPlaces) for _, d in out_pos + out_neg)
    assert neg[0][1]["model_conds"] == {"c_concat": "kept"} and "model_conds" not in pos[0][1]


def test_a_chain_of_our_apply_nodes_keeps_the_last_mark(control, image):
    pos, neg = apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0)
    swapped_pos, swapped_neg = apply_control(neg, pos, control, image(), 1.0, 0.0, 1.0)
    assert swapped_pos[0][1]["model_conds"][NEGATIVE_KEY].cond == (False,)
    assert swapped_neg[0][1]["model_conds"][NEGATIVE_KEY].cond == (True,)


@pytest.mark.parametrize(("c", "expected"), [(1, 3), (4, 3), (3, 3)])
def test_greyscale_and_rgba_images(control, image, c, expected):
    pos, _ = apply_control(_cond(), _cond(), control, image(c=c), 1.0, 0.0, 1.0)
    assert pos[0][1]["control"].cond_hint_original.shape[1] == expected


def test_bad_images(control, image):
    with pytest.raises(ValueError, match="image has 2 channels"):
        apply_control(_cond(), _cond(), control, image(c=2), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"got \(64, 64, 3\)"):
        apply_control(_cond(), _cond(), control, image()[0], 1.0, 0.0, 1.0)


def test_window_order_checked(control, image):
    with pytest.raises(ValueError, match="after end_percent"):
        apply_control(_cond(), _cond(), control, image(), 1.0, 0.8, 0.2)


def test_weight_count_checked_at_apply(control, image):
    w = ControlWeights(Preset.CUSTOM, custom=(1.0,) * 10)
    with pytest.raises(WeightsError, match="got 10 custom weights but this SD1.x ControlNet has 5 residuals"):
        apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0, weights=w)


def test_mask_rank_checked(control, image):
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, height, width\).*rank 4"):
        apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0, mask=torch.ones(1, 64, 64, 3))
    pos, _ = apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0, mask=torch.ones(64, 64))
    assert pos[0][1]["control"].mask.shape == (1, 64, 64)
    pos, _ = apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0, mask=torch.ones(2, 1, 64, 64))
    assert pos[0][1]["control"].mask.shape == (2, 64, 64)  # a channel axis of 1, as some nodes keep it


def test_hints_of_8_bit_levels_and_booleans_are_read_as_the_preprocessors_read_them():
    """A uint8 IMAGE holds 8-bit levels: it reached the ControlNet as 0..255 (255 times too strong), while the
    preprocessors divide it by 255."""
    from affordance.nodes._host import image_to_hint

    levels = torch.randint(0, 256, (1, 8, 8, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    hint = image_to_hint(levels)
    assert hint.dtype == torch.float32 and torch.equal(hint, image_to_hint(levels.float() / 255.0))
    assert torch.equal(image_to_hint(levels > 127), image_to_hint((levels > 127).float()))
    with pytest.raises(HintError, match=r"the image holds int64 values; a hint is a float IMAGE in \[0, 1\]"):
        image_to_hint(levels.long())


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_strength_is_refused(control, image, strength):
    # ComfyUI's min/max check lets NaN through (and a linked value is not checked at all): a black image
    with pytest.raises(ValueError, match=r"strength must be a finite number, got (nan|inf|-inf)"):
        apply_control(_cond(), _cond(), control, image(), strength, 0.0, 1.0)


def test_masks_are_brought_into_0_1(control, image):
    raw = torch.tensor([[[0.5, float("nan")], [2.0, -1.0]]])
    pos, _ = apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0, mask=raw)
    assert pos[0][1]["control"].mask.tolist() == [[[0.5, 0.0], [1.0, 0.0]]]
    eight_bit = torch.tensor([[[0, 255], [51, 255]]], dtype=torch.uint8)
    pos, _ = apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0, mask=eight_bit)
    torch.testing.assert_close(pos[0][1]["control"].mask, torch.tensor([[[0.0, 1.0], [0.2, 1.0]]]))
    pos, _ = apply_control(
        _cond(), _cond(), control, image(), 1.0, 0.0, 1.0, mask=torch.ones(1, 2, 2, dtype=torch.bool)
    )
    assert pos[0][1]["control"].mask.dtype == torch.float32


@pytest.mark.parametrize(("hint_channels", "c"), [(1, 1), (1, 3), (1, 4), (4, 4)])
def test_controlnets_of_other_hint_widths_get_hints_they_take(image, fake_model, call, sigma, hint_channels, c):
    """A 1- or 4-channel ControlNet loads; Apply must hand it hints of its width (it used to force RGB)."""
    import dataclasses

    from .conftest import TINY, randomized

    ctl = AffordanceControl(randomized(dataclasses.replace(TINY, hint_channels=hint_channels)), None, name="odd")
    img = image(c=c)
    pos, _ = apply_control(_cond(), _cond(), ctl, img, 1.0, 0.0, 1.0)
    mine = pos[0][1]["control"]
    hint = mine.cond_hint_original
    assert hint.shape == (1, hint_channels, 64, 64)
    if hint_channels == 1 and c >= 3:  # luminance, as PIL's "L"
        luma = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
        torch.testing.assert_close(hint[:, 0], luma)
    model = fake_model()
    mine.pre_run(model, model.model_sampling.percent_to_sigma)
    out, _ = call(mine, sigma(0.5))
    assert all(torch.isfinite(t).all() for t in out["output"] if t is not None)


def test_four_channel_controlnet_needs_rgba(image):
    import dataclasses

    from .conftest import TINY, randomized

    ctl = AffordanceControl(randomized(dataclasses.replace(TINY, hint_channels=4)), None, name="rgba")
    with pytest.raises(ValueError, match="takes 4-channel hints but the image has 3 channel.*RGBA"):
        apply_control(_cond(), _cond(), ctl, image(c=3), 1.0, 0.0, 1.0)


class ForeignControl:
    """A ComfyUI ControlNet stand-in (no weights/schedule/mask support)."""

    def __init__(self, latent_format=None) -> None:
        self.latent_format = latent_format
        self.previous_controlnet = None
        self.hint = None

    def copy(self):
        return ForeignControl(self.latent_format)

    def set_cond_hint(self, hint, strength=1.0, timestep_percent_range=(0.0, 1.0), vae=None, extra_concat=()):
        self.hint, self.strength, self.vae = hint, strength, vae
        return self

    def set_previous_controlnet(self, c):
        self.previous_controlnet = c
        return self


def test_foreign_control_is_applied_like_comfyui(image):
    pos, neg = apply_control(_cond(), _cond(), ForeignControl(), image(), 0.5, 0.0, 1.0)
    c = pos[0][1]["control"]
    assert isinstance(c, ForeignControl) and c is neg[0][1]["control"] and c.strength == 0.5
    assert all("model_conds" not in d for _, d in pos + neg)  # marks are read by our control only


def test_foreign_control_rejects_our_extras(image):
    with pytest.raises(InputError, match="weights, mask input\\(s\\) need a ControlNet loaded with"):
        apply_control(
            _cond(),
            _cond(),
            ForeignControl(),
            image(),
            1.0,
            0.0,
            1.0,
            weights=ControlWeights(),
            mask=torch.ones(1, 8, 8),
        )


def test_wrong_objects_get_typed_errors(control, image):
    with pytest.raises(InputError, match="control_net must be a CONTROL_NET from a ControlNet loader, got str"):
        apply_control(_cond(), _cond(), "control_v11p_sd15_canny.pth", image(), 1.0, 0.0, 1.0)
    with pytest.raises(InputError, match="takes no extra concatenated inputs \\(got 1\\)"):
        control.copy().set_cond_hint(image().movedim(-1, 1), 1.0, (0.0, 1.0), extra_concat=[torch.zeros(1)])
    with pytest.raises(HintError, match="has no hint image"):
        control.copy()._encoded(torch.zeros(2, 4, 8, 8), torch.float32, 2, 2)


def test_controlnet_needing_a_vae_without_one(image):
    with pytest.raises(InputError, match="needs a VAE to encode its hint: connect a VAE"):
        apply_control(_cond(), _cond(), ForeignControl(latent_format="sd3"), image(), 1.0, 0.0, 1.0)
    pos, _ = apply_control(_cond(), _cond(), ForeignControl(latent_format="sd3"), image(), 1.0, 0.0, 1.0, vae="vae")
    assert pos[0][1]["control"].vae == "vae"


def test_weights_node_validation():
    assert ControlWeightsNode.VALIDATE_INPUTS("custom", 0.825, 1.0, "1, 2, x") == (
        "custom weight #3 is 'x', not a number. Write numbers separated by commas."
    )
    assert ControlWeightsNode.VALIDATE_INPUTS("balanced", 0.825, 1.0, "ignored, x") is True
    (w,) = ControlWeightsNode().build("prompt_more_important", 0.9, 0.5, "")
    assert w.resolve(13)[0] == pytest.approx(0.9**12) and w.uncond_multiplier == 0.5


def test_schedule_node_validation():
    assert "progress must be between 0 and 1" in StrengthScheduleNode.VALIDATE_INPUTS("2:1", "linear")
    (s,) = StrengthScheduleNode().build("0:1, 1:0", "linear")
    assert s.at(0.5) == 0.5


def test_loader_node_with_stub_host(stub_comfy, control):
    save_file(control.network.state_dict(), stub_comfy / "tiny.safetensors")
    cls = NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]
    assert cls.INPUT_TYPES()["required"]["control_net_name"][0] == ["tiny.safetensors"]
    (loaded,) = cls().load("tiny.safetensors")
    assert isinstance(loaded, AffordanceControl) and loaded.get_models() == [loaded.patcher]
    assert loaded.patcher.model is loaded.network and loaded.network.config == control.network.config
    with pytest.raises(FileNotFoundError, match="'missing.pth' is not in ComfyUI's controlnet folders"):
        cls().load("missing.pth")


@pytest.mark.parametrize("fast_fp8", [True, False])
def test_loader_asks_comfyui_for_dtype_casting_and_layers_as_its_own_loader_does(stub_comfy, control, monkeypatch, fast_fp8):
    """The file's own dtype and "never fits" (-1) to unet_dtype, so an fp8 file stays fp8; the chosen dtype and the
    load device to unet_manual_cast; ComfyUI's layer classes without fast fp8 where its pick_operations knows of
    them; the manual-cast dtype set on the network; the file's tensors released as they are copied in."""
    import sys

    from affordance.nodes import loaders

    mm, ops = sys.modules["comfy.model_management"], sys.modules["comfy.ops"]
    calls: dict[str, object] = {}
    monkeypatch.setattr(mm, "get_torch_device", lambda: torch.device("meta"))  # stands for the GPU
    monkeypatch.setattr(
        mm,
        "unet_dtype",
        lambda model_params=0, supported_dtypes=(), weight_dtype=None: calls.update(
            unet_dtype=(model_params, list(supported_dtypes), weight_dtype)
        )
        or torch.bfloat16,
    )
    monkeypatch.setattr(mm, "unet_manual_cast", lambda dtype, device: calls.update(cast=(dtype, device)) or torch.float32)
    if fast_fp8:
        pick = lambda dtype, manual_cast, disable_fast_fp8=False: calls.update(ops=(dtype, manual_cast, disable_fast_fp8)) or torch.nn  # noqa: E731
    else:
        pick = lambda dtype, manual_cast: calls.update(ops=(dtype, manual_cast)) or torch.nn  # noqa: E731
    monkeypatch.setattr(ops, "pick_operations", pick)
    real_build = loaders.build_controlnet
    monkeypatch.setattr(loaders, "build_controlnet", lambda *a, **kw: calls.update(release=kw.get("release")) or real_build(*a, **kw))
    save_file({k: v.half() for k, v in control.network.state_dict().items()}, stub_comfy / "tiny.safetensors")
    (loaded,) = NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]().load("tiny.safetensors")
    assert calls["unet_dtype"] == (-1, [torch.float16, torch.bfloat16, torch.float32], torch.float16)
    assert calls["cast"] == (torch.bfloat16, torch.device("meta"))
    assert calls["ops"] == ((torch.bfloat16, torch.float32, True) if fast_fp8 else (torch.bfloat16, torch.float32))
    assert calls["release"] is True
    assert loaded.network.compute_dtype == torch.float32 and loaded.manual_cast_dtype == torch.float32
    assert next(loaded.network.parameters()).dtype == torch.bfloat16 and loaded.patcher.load_device == torch.device("meta")


@pytest.mark.parametrize(("choice", "pooled"), [("from file", False), ("on", True), ("off", False)])
def test_loader_global_average_pooling_choice(stub_comfy, control, choice, pooled, caplog):
    """The 1.1 shuffle model needs pooling and its file cannot say so: the loader takes it as a choice (optional,
    so API prompts saved before it existed stay valid), and names the likely need when a *shuffle* file loads
    without it and without a choice (ComfyUI's loader guesses from that name; ours never decides by names)."""
    cls = NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]
    spec = cls.INPUT_TYPES()
    assert "global_average_pooling" not in spec["required"]
    assert spec["optional"]["global_average_pooling"][0] == ["from file", "on", "off"]
    save_file(control.network.state_dict(), stub_comfy / "control_v11e_sd15_shuffle.safetensors")
    with caplog.at_level("WARNING"):
        (loaded,) = cls().load("control_v11e_sd15_shuffle.safetensors", global_average_pooling=choice)
    assert loaded.network.config.global_average_pooling is pooled
    assert ("set the loader's global_average_pooling to 'on'" in caplog.text) is (choice == "from file")
    assert cls.IS_CHANGED("control_v11e_sd15_shuffle.safetensors", global_average_pooling=choice)


def test_loader_says_comfyui_differs_on_attention_without_transformer(stub_comfy, caplog):
    """diffusers' SDXL small/mid ControlNets: ours equals diffusers, ComfyUI's loader drops those layers' norm and
    projections (0.5-0.6 relative off diffusers, measured): the log says the two loaders differ on such a file."""
    import dataclasses

    from .conftest import TINY, randomized

    cls = NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]
    small = dataclasses.replace(TINY, transformer_depth=(0, 0), attention=(True, False))
    save_file(randomized(small).state_dict(), stub_comfy / "small.safetensors")
    save_file(randomized(TINY).state_dict(), stub_comfy / "plain.safetensors")
    with caplog.at_level("INFO"):
        assert cls().load("small.safetensors")[0].network.config.attention == (True, False)
    assert "ComfyUI's own loader drops their norm and projection weights" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        cls().load("plain.safetensors")
    assert "without a transformer block" not in caplog.text


def test_loader_pooling_from_a_converted_file(stub_comfy, control, caplog):
    """'from file' takes the marker a conversion with --global-average-pooling writes; 'off' overrides it."""
    save_file(
        control.network.state_dict(),
        stub_comfy / "tiny.safetensors",
        metadata={"affordance.global_average_pooling": "true"},
    )
    cls = NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]
    assert cls().load("tiny.safetensors")[0].network.config.global_average_pooling is True
    assert cls().load("tiny.safetensors", "off")[0].network.config.global_average_pooling is False
    assert "global average pooling" not in caplog.text  # not a shuffle name: nothing to say


def test_loader_reloads_a_file_replaced_on_disk(stub_comfy, control):
    """ComfyUI re-runs a node whose IS_CHANGED answer changes: a re-downloaded file must not need a restart."""
    cls = NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]
    path = stub_comfy / "tiny.safetensors"
    save_file(control.network.state_dict(), path)
    first = cls.IS_CHANGED("tiny.safetensors")
    assert cls.IS_CHANGED("tiny.safetensors") == first  # unchanged file: ComfyUI keeps the loaded model
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    touched = cls.IS_CHANGED("tiny.safetensors")
    assert touched != first
    (stub_comfy / "config.json").write_text("{}")  # a config.json appearing beside it changes what loads
    assert cls.IS_CHANGED("tiny.safetensors") != touched
    with pytest.raises(FileNotFoundError, match="'missing.pth' is not in"):
        cls.IS_CHANGED("missing.pth")  # ComfyUI logs it and re-runs the node, whose load names the problem
    # another file of the same size given the same modification time (cp -p, rsync -t, an unpacked archive)
    before = cls.IS_CHANGED("tiny.safetensors")
    stamp = path.stat().st_mtime_ns
    other = stub_comfy / "other.safetensors"
    save_file({k: v + 1 for k, v in control.network.state_dict().items()}, other)
    assert other.stat().st_size == path.stat().st_size
    os.replace(other, path)
    os.utime(path, ns=(stamp, stamp))
    assert cls.IS_CHANGED("tiny.safetensors") != before


@pytest.mark.parametrize("target", ["gone.safetensors", "loop.safetensors"])
def test_loader_names_a_broken_link(stub_comfy, target):
    (stub_comfy / "loop.safetensors").symlink_to(stub_comfy / target)  # missing target, or itself
    with pytest.raises(FileNotFoundError, match=rf"'loop.safetensors' is a broken symbolic link .*{target}"):
        NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]().load("loop.safetensors")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_loader_names_a_file_that_is_not_a_regular_file(stub_comfy, kind):
    """ComfyUI lists a pipe or a link to /dev/zero under a model name; reading it would hang or never end."""
    path = stub_comfy / "odd.safetensors"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(FileNotFoundError, match=r"'odd.safetensors' in .* is not a regular file \(a pipe, socket or device"):
        NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]().load("odd.safetensors")


def test_loader_node_refuses_bad_file(stub_comfy):
    (stub_comfy / "tiny.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ValueError, match="Git LFS pointer"):
        NODE_CLASS_MAPPINGS["AST_ControlNetLoader"]().load("tiny.safetensors")


def _widget_defaults(cls) -> dict:
    spec = cls.INPUT_TYPES()
    out = {}
    for section in ("required", "optional"):
        for name, (kind, opts) in spec.get(section, {}).items():
            if "default" in opts:
                out[name] = opts["default"]
            elif isinstance(kind, list) and kind:
                out[name] = kind[0]
    return out


def test_validate_inputs_accepts_linked_widgets():
    """ComfyUI validates a prompt with None for every widget fed by a link (e.g. Pixel Perfect -> Canny)."""
    import inspect

    checked = 0
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        if not hasattr(cls, "VALIDATE_INPUTS"):
            continue
        params = list(inspect.signature(cls.VALIDATE_INPUTS).parameters)
        defaults = _widget_defaults(cls)
        assert cls.VALIDATE_INPUTS(**{p: defaults[p] for p in params}) is True, node_id
        for linked in params:  # each widget linked in turn, the others at their defaults
            args = {p: None if p == linked else defaults[p] for p in params}
            assert cls.VALIDATE_INPUTS(**args) is True, f"{node_id} with {linked} linked"
        assert cls.VALIDATE_INPUTS(**dict.fromkeys(params)) is True, node_id
        checked += 1
    assert checked >= 6


def test_range_checks_that_validate_inputs_takes_over_from_comfyui():
    """Inputs named in VALIDATE_INPUTS skip ComfyUI's min/max check, so ours must refuse out-of-range values."""
    apply_cls = NODE_CLASS_MAPPINGS["AST_ApplyControlNet"]
    assert "within 0..1" in apply_cls.VALIDATE_INPUTS(start_percent=-0.5, end_percent=1.0)
    assert "within 0..1" in apply_cls.VALIDATE_INPUTS(start_percent=0.0, end_percent=3.0)
    msg = ControlWeightsNode.VALIDATE_INPUTS("prompt_more_important", 50.0, 1.0, "")
    assert isinstance(msg, str) and "base_multiplier must be within 0..1, got 50.0" in msg
    msg = ControlWeightsNode.VALIDATE_INPUTS("balanced", 0.825, -3.0, "")
    assert isinstance(msg, str) and "uncond_multiplier" in msg
    with pytest.raises(WeightsError, match="uncond_multiplier"):
        ControlWeightsNode().build("balanced", 0.825, float("nan"), "")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_hint_with_nan_or_inf_is_refused_at_apply(control, image, value):
    """One bad pixel (a VAE decode of a broken latent) would make every value the sampler computes NaN."""
    bad = image().clone()
    bad[0, 10, 10, 1] = value
    with pytest.raises(HintError, match=r"holds 1 NaN or infinite value\(s\), which would make the whole result NaN"):
        apply_control(_cond(), _cond(), control, bad, 1.0, 0.0, 1.0)


def test_the_nan_check_of_a_hint_makes_no_image_sized_temporary(monkeypatch):
    """A video's hints are gigabytes: checking them for NaN/Inf must not build boolean or float copies of them
    (``isfinite`` of the whole image, its negation, a sum), only look at their minimum and maximum."""
    from affordance.nodes._host import image_to_hint

    largest = []
    isfinite = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: largest.append(t.numel()) or isfinite(t))
    hint = image_to_hint(torch.rand(2, 32, 48, 3))
    assert hint.shape == (2, 3, 32, 48)
    assert largest and max(largest) == 1  # per value of (min, max), never the image


@pytest.mark.parametrize("shape", [(1, 64, 0, 3), (1, 0, 64, 3)])
def test_a_hint_without_pixels_is_refused_at_apply(control, shape):
    with pytest.raises(HintError, match=r"the image has no pixels \(\d+x\d+\)"):
        apply_control(_cond(), _cond(), control, torch.zeros(shape), 1.0, 0.0, 1.0)


def test_an_empty_window_is_applied_with_a_warning(control, image, caplog):
    """start == end is valid (ComfyUI accepts it too) but the ControlNet never runs: the log says so."""
    with caplog.at_level("WARNING", logger="affordance.nodes"):
        pos, _ = apply_control(_cond(), _cond(), control, image(), 1.0, 0.5, 0.5)
    assert "start_percent equals end_percent (0.5), so this ControlNet never runs" in caplog.text
    assert pos[0][1]["control"].timestep_percent_range == (0.5, 0.5)
    caplog.clear()
    with caplog.at_level("WARNING", logger="affordance.nodes"):
        apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0)
    assert "never runs" not in caplog.text


def test_greyscale_hints_keep_their_batch_and_values():
    """A greyscale IMAGE becomes RGB by repeating its channel, row for row (a batch of 2 stays 2)."""
    from affordance.nodes._host import image_to_hint

    grey = torch.rand(2, 4, 5, 1, generator=torch.Generator().manual_seed(1))
    hint = image_to_hint(grey, 3)
    assert hint.shape == (2, 3, 4, 5)
    for ch in range(3):
        assert torch.equal(hint[:, ch], grey[..., 0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_one_channel_hint_is_the_luminance_in_the_images_dtype(dtype):
    """A 1-channel ControlNet gets the colour IMAGE's luminance in the IMAGE's own dtype: a half-precision video's
    hints do not come back float32 (twice the memory), a float64 image's weights are not rounded to float32."""
    from affordance.nodes._host import image_to_hint

    image = torch.rand(2, 4, 5, 3, generator=torch.Generator().manual_seed(0)).to(dtype)
    hint = image_to_hint(image, 1)
    assert hint.shape == (2, 1, 4, 5) and hint.dtype == dtype
    want = (image * torch.tensor((0.299, 0.587, 0.114), dtype=dtype)).sum(-1, keepdim=True).movedim(-1, 1)
    assert torch.equal(hint, want)


def test_hint_magnitude_limit_is_inclusive_and_two_sided():
    """65504 itself is a half-precision number and passes; beyond it, above or below zero, is refused."""
    from affordance.nodes._host import HINT_MAX_MAGNITUDE, image_to_hint

    assert HINT_MAX_MAGNITUDE == 65504.0
    assert image_to_hint(torch.full((1, 2, 2, 3), 65504.0)).shape == (1, 3, 2, 2)
    assert image_to_hint(torch.full((1, 2, 2, 3), -65504.0)).shape == (1, 3, 2, 2)
    for value in (70000.0, -70000.0):
        with pytest.raises(HintError, match=r"the image holds values from -?70000 to -?70000; .* beyond 65504"):
            image_to_hint(torch.full((1, 2, 2, 3), value))


def test_empty_image_batch_and_masks_are_typed_errors():
    from affordance.nodes._host import image_to_hint, mask_batch

    with pytest.raises(HintError, match="the image batch is empty; connect an image"):
        image_to_hint(torch.zeros(0, 8, 8, 3))
    for empty in (torch.zeros(0, 8, 8), torch.zeros(1, 0, 8), torch.zeros(1, 8, 0)):
        with pytest.raises(HintError, match=r"the mask is empty \(shape"):
            mask_batch(empty)
    with pytest.raises(HintError, match="mask must be a ComfyUI MASK tensor, got list"):
        mask_batch([[0.0, 1.0]])
    one = mask_batch(torch.full((1, 1, 1), 0.25))  # a 1x1 mask is a constant mask, not an empty one
    assert one.shape == (1, 1, 1) and one.item() == 0.25


def test_controlnet_files_outside_comfyui_are_an_empty_list():
    """The loader's widget choices: a list even without ComfyUI's folder_paths."""
    from affordance.nodes._host import controlnet_files

    assert controlnet_files() == []


def test_the_widgets_largest_strength_is_accepted(control, image):
    pos, neg = apply_control(_cond(), _cond(), control, image(), 10.0, 0.0, 1.0)
    assert pos[0][1]["control"].strength == 10.0 and neg[0][1]["control"] is pos[0][1]["control"]


def test_an_object_with_copy_but_no_set_cond_hint_is_not_a_controlnet(image):
    class OnlyCopies:
        def copy(self):
            return self

    with pytest.raises(InputError, match="control_net must be a CONTROL_NET from a ControlNet loader, got OnlyCopies"):
        apply_control(_cond(), _cond(), OnlyCopies(), image(), 1.0, 0.0, 1.0)


def test_the_apply_node_method_is_apply_control(control, image):
    """``ApplyControlNet.apply`` (what ComfyUI calls) passes every input, optional ones included, through."""
    node = NODE_CLASS_MAPPINGS["AST_ApplyControlNet"]()
    mask = torch.ones(1, 64, 64).tril()
    pos, neg = node.apply(_cond(), _cond(), control, image(), 0.6, 0.1, 0.9, mask=mask)
    ctrl = pos[0][1]["control"]
    assert ctrl is neg[0][1]["control"] and ctrl.strength == 0.6 and ctrl.timestep_percent_range == (0.1, 0.9)
    assert torch.equal(ctrl.mask, mask)
    positive, negative = [[torch.ones(1, 77, 768), {}]], [[torch.zeros(1, 77, 768), {}]]
    pos, neg = node.apply(positive, negative, control, image(), 1.0, 0.0, 1.0)
    assert pos[0][0] is positive[0][0] and neg[0][0] is negative[0][0]  # each side stays on its side
    assert pos[0][1]["model_conds"][NEGATIVE_KEY].cond == (False,)
    assert neg[0][1]["model_conds"][NEGATIVE_KEY].cond == (True,)


class _SetsAHintOnly:
    def set_cond_hint(self, *args, **kwargs):
        return self


def test_a_control_net_that_cannot_be_copied_is_named(image):
    with pytest.raises(InputError, match="control_net must be a CONTROL_NET from a ControlNet loader, got _SetsAHintOnly"):
        apply_control(_cond(), _cond(), _SetsAHintOnly(), image(), 1.0, 0.0, 1.0)


def test_the_applied_copy_keeps_the_file_name_for_its_messages(control, image):
    """Errors during sampling name the ControlNet's file: the copy Apply attaches keeps its name."""
    from types import SimpleNamespace

    from affordance.nodes.control import FamilyMismatchError

    pos, _ = apply_control(_cond(), _cond(), control, image(), 1.0, 0.0, 1.0)
    applied = pos[0][1]["control"]
    assert applied is not control and applied.name == control.name == "tiny.safetensors"
    sdxl = SimpleNamespace(model_config=SimpleNamespace(unet_config={"context_dim": 2048, "model_channels": 320}))
    with pytest.raises(FamilyMismatchError, match=r"^tiny\.safetensors is an SD1\.x ControlNet"):
        applied.pre_run(sdxl, lambda p: 1.0 - p)

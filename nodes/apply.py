"""``AST_ApplyControlNet``: attach a ControlNet (ours or ComfyUI's) to positive and negative conditioning."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..controlnet.errors import InputError
from ..controlnet.schedule import ScheduleError, StrengthSchedule, check_window
from ..controlnet.weights import ControlWeights
from ._host import image_to_hint, log, mask_batch, unconverted
from .control import AffordanceControl
from .negative_rows import mark
from .row_places import mark_places
from .weights import SCHEDULE_TYPE, WEIGHTS_TYPE

MAX_STRENGTH = 10.0  # the strength widget's maximum; a linked value may be negative, down to -MAX_STRENGTH


def check_conditioning(conditioning: Any, side: str, error: type[Exception] = InputError) -> list:
    """``conditioning`` if it is a CONDITIONING: a list of ``[tensor, options]`` entries, each options a dict
    (with ``model_conds``, when there, a dict too). Linked from a node that makes something else, it is refused
    naming ``side`` (``"positive"`` or ``"negative"``) and the first bad entry, with ``error``."""
    what = f"{side} must be a CONDITIONING (a list of [tensor, options] entries, as a text encoder makes)"
    if not isinstance(conditioning, list):
        raise error(f"{what}, got {type(conditioning).__name__}.")
    for k, item in enumerate(conditioning):
        ok = isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], torch.Tensor)
        ok = ok and isinstance(item[1], dict) and isinstance(item[1].get("model_conds", {}), dict)
        if not ok:
            shown = type(item).__name__ + (f" of {len(item)}" if isinstance(item, (list, tuple)) else "")
            raise error(f"{what}; its entry #{k + 1} is a {shown} that is not one.")
    return conditioning


def _attach(conditioning: list, make: Any, cache: dict, negative: bool | None) -> list:
    """New conditioning whose entries carry a control chained onto what each already had.

    One control object per distinct previous control, shared by positive and negative, so ComfyUI can
    batch cond and uncond in one model call. ``negative`` (our ControlNets only, else ``None``) marks each
    entry with the input it came through, so our control finds the negative rows whatever the guider, and with
    a place that ComfyUI fills in per chunk, so our control finds the rows holding the same inputs (:mod:`.row_places`).
    """
    out = []
    for tensor, options in conditioning:
        d = options.copy() if negative is None else mark_places(mark(options, negative))
        prev = d.get("control")
        if prev is not None and not callable(getattr(prev, "get_control", None)):
            raise InputError(
                f"the conditioning carries a control of type {type(prev).__name__}, not a ControlNet's; it did not come "
                "from an Apply ControlNet node. Feed this node the conditioning of a text encoder or an Apply node."
            )
        if prev not in cache:
            cache[prev] = make().set_previous_controlnet(prev)
        d["control"] = cache[prev]
        d["control_apply_to_uncond"] = False
        out.append([tensor, d])
    return out


def apply_control(
    positive: list,
    negative: list,
    control_net: Any,
    image: torch.Tensor,
    strength: float,
    start_percent: float,
    end_percent: float,
    weights: ControlWeights | None = None,
    schedule: StrengthSchedule | None = None,
    mask: torch.Tensor | None = None,
    vae: Any = None,
) -> tuple[list, list]:
    """The node's logic, callable without ComfyUI. Strength 0 returns the inputs untouched.

    Args:
        positive, negative: ComfyUI CONDITIONING lists of ``[tensor, options]``; the control is attached to copies.
        control_net: ours (:class:`AffordanceControl`) or any ComfyUI control object.
        image: hint IMAGE ``(B, H, W, C)`` float in ``[0, 1]``; B = 1 or the latent batch.
        strength: finite multiplier of every residual (0 returns the inputs).
        start_percent, end_percent: sampling window, ``0 <= start <= end <= 1``.
        weights, schedule, mask: our extras (ours only); mask ``(B, H, W)`` or ``(H, W)``, brought into 0..1.
        vae: for ComfyUI ControlNets whose hint is a latent.

    Returns:
        New ``(positive, negative)`` lists; the inputs are never modified. With our ControlNets each entry is also
        marked with the input it came through (:mod:`.negative_rows`), so the uncond settings find the negative
        whatever order a guider calls the model in, and with its place (:mod:`.row_places`), so cond and uncond
        rows of one step share the layers that read no text.

    Raises:
        ScheduleError: a non-finite strength or a bad window. InputError: a control object of the wrong kind,
        extras on a ComfyUI ControlNet, a missing VAE. HintError: a hint that cannot be used.
    """
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        got = repr(strength) if isinstance(strength, (int, float)) else f"a {type(strength).__name__}"
        raise ScheduleError(f"strength must be a finite number, got {got}.")
    if abs(strength) > MAX_STRENGTH:  # only a linked value can be: far beyond, the residuals overflow to inf
        raise ScheduleError(
            f"strength must be within -{MAX_STRENGTH:g}..{MAX_STRENGTH:g} (the widget takes 0 to {MAX_STRENGTH:g}), "
            f"got {strength:g}."
        )
    check_conditioning(positive, "positive")
    check_conditioning(negative, "negative")
    if weights is not None and not isinstance(weights, ControlWeights):
        raise InputError(f"weights must come from a 'ControlNet Weights (Affordance)' node, got {type(weights).__name__}.")
    if schedule is not None and not isinstance(schedule, StrengthSchedule):
        raise InputError(
            f"schedule must come from a 'Strength Schedule (Affordance)' node, got {type(schedule).__name__}."
        )
    if strength == 0:
        return positive, negative
    check_window(start_percent, end_percent)
    if start_percent == end_percent:
        log.warning(
            "Apply ControlNet: start_percent equals end_percent (%s), so this ControlNet never runs; widen the window "
            "(0.0 and 1.0 run it over the whole sampling).",
            start_percent,
        )
    ours = isinstance(control_net, AffordanceControl)
    hint = image_to_hint(image, control_net.network.config.hint_channels if ours else 3)
    masks = mask_batch(mask) if mask is not None else None
    if not ours:
        if not hasattr(control_net, "copy") or not hasattr(control_net, "set_cond_hint"):
            raise InputError(
                f"control_net must be a CONTROL_NET from a ControlNet loader, got {type(control_net).__name__}."
            )
        extras = [n for n, v in (("weights", weights), ("schedule", schedule), ("mask", mask)) if v is not None]
        if extras:
            raise InputError(
                f"the {', '.join(extras)} input(s) need a ControlNet loaded with 'Load ControlNet (Affordance)'; "
                f"this one comes from another loader ({type(control_net).__name__})."
            )
        if getattr(control_net, "latent_format", None) is not None and vae is None:
            raise InputError("this ControlNet needs a VAE to encode its hint: connect a VAE to the 'vae' input.")

    def make() -> Any:
        c = control_net.copy().set_cond_hint(hint, strength, (start_percent, end_percent), vae=vae)
        if ours:
            c.configure(weights=weights, schedule=schedule, mask=masks)
        return c

    cache: dict = {}
    return _attach(positive, make, cache, False if ours else None), _attach(negative, make, cache, True if ours else None)


class ApplyControlNet:
    """Apply a ControlNet to positive and negative conditioning, chained onto any control already there."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "positive": (
                    "CONDITIONING",
                    {"tooltip": "Positive conditioning; control is added to what it carries."},
                ),
                "negative": ("CONDITIONING", {"tooltip": "Negative conditioning; shares the control object."}),
                "control_net": ("CONTROL_NET", {"tooltip": "From 'Load ControlNet (Affordance)' or ComfyUI's loader."}),
                "image": ("IMAGE", {"tooltip": "The hint (edges, depth, pose...); resized to the latent x8."}),
                "strength": (
                    "FLOAT",
                    {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01, "tooltip": "Overall strength; 0 disables."},
                ),
                "start_percent": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.001,
                        "tooltip": "Sampling progress where control starts.",
                    },
                ),
                "end_percent": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.001,
                        "tooltip": "Sampling progress where control ends.",
                    },
                ),
            },
            "optional": {
                "weights": (WEIGHTS_TYPE, {"tooltip": "Per-residual weights from 'ControlNet Weights (Affordance)'."}),
                "schedule": (SCHEDULE_TYPE, {"tooltip": "Strength over time from 'Strength Schedule (Affordance)'."}),
                "mask": (
                    "MASK",
                    {"tooltip": "Restrict control to a region (1 = full control): one mask, one per latent, or a number "
                        "that divides the latent batch (repeated in turn)."},
                ),
                "vae": ("VAE", {"tooltip": "Only for ComfyUI ControlNets that need one (e.g. SD3); ours never do."}),
            },
        }

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply"
    CATEGORY = "Affordance/conditioning"
    DESCRIPTION = (
        "Adds a ControlNet to the conditioning with strength, a start/end window, optional per-residual weights, a "
        "strength schedule and a mask. Chains with ComfyUI's ControlNets and T2I-Adapters in both directions."
    )

    @classmethod
    def VALIDATE_INPUTS(cls, start_percent: float | None, end_percent: float | None) -> bool | str:
        # naming them here turns off ComfyUI's own range check, so the whole window is checked; a widget fed by a
        # link is None here and is checked when the node runs (apply_control)
        if start_percent is None or end_percent is None or unconverted((start_percent, float), (end_percent, float)):
            return True
        try:
            check_window(start_percent, end_percent)
        except ScheduleError as exc:
            return str(exc)
        return True

    def apply(
        self,
        positive: list,
        negative: list,
        control_net: Any,
        image: torch.Tensor,
        strength: float,
        start_percent: float,
        end_percent: float,
        **optional: Any,
    ) -> tuple[list, list]:
        return apply_control(positive, negative, control_net, image, strength, start_percent, end_percent, **optional)

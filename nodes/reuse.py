"""``AST_ControlResidualReuse``: a lossy speed-up that runs Affordance ControlNets only every k steps."""

from __future__ import annotations

import logging
from typing import Any

from ..controlnet.reuse import MAX_EVERY_K, ReuseError, ReusePolicy
from .apply import check_conditioning
from .control import AffordanceControl

log = logging.getLogger("affordance.nodes")
_VISITING = object()  # in the memo while a control's chain below it is being copied


def _with_reuse(control: Any, policy: ReusePolicy, memo: dict[int, tuple[Any, Any]], found: list[str]) -> Any:
    """``control``'s chain with every Affordance control copied and set to ``policy``.

    Other objects (ComfyUI's ControlNets, T2I-Adapters, other packs') keep their settings: the very same
    object when nothing of ours is below it in the chain, otherwise a ``copy()`` re-linked to the new chain
    (what ComfyUI's own Apply node does). ``memo`` maps each original to its replacement, so positive and
    negative keep sharing one object (ComfyUI batches cond and uncond only then).
    """
    if control is None:
        return None
    if id(control) in memo:
        if memo[id(control)][1] is _VISITING:
            raise ReuseError(
                f"the control chain loops back to a {type(control).__name__} it already passed: it was not made by "
                "Apply ControlNet nodes. Rebuild the conditioning with them."
            )
        return memo[id(control)][1]
    memo[id(control)] = (control, _VISITING)
    prev = getattr(control, "previous_controlnet", None)
    new_prev = _with_reuse(prev, policy, memo, found)
    if isinstance(control, AffordanceControl):
        new = control.copy().set_reuse(policy).set_previous_controlnet(new_prev)
        found.append(control.name)
    elif new_prev is prev:
        new = control
    elif callable(getattr(control, "copy", None)) and callable(getattr(control, "set_previous_controlnet", None)):
        new = control.copy()
        new.set_previous_controlnet(new_prev)
    else:
        log.warning(
            "residual reuse: %s has no copy()/set_previous_controlnet(); the Affordance ControlNets chained below "
            "it stay exact",
            type(control).__name__,
        )
        new = control
    memo[id(control)] = (control, new)  # keeps the original alive, so its id is not recycled meanwhile
    return new


def _rechain(conditioning: list, policy: ReusePolicy, memo: dict, found: list[str], side: str) -> list:
    check_conditioning(conditioning, side, ReuseError)
    out = []
    for item in conditioning:
        tensor, options = item[0], item[1]
        d = options.copy()
        if d.get("control") is not None:
            d["control"] = _with_reuse(d["control"], policy, memo, found)
        out.append([tensor, d])
    return out


def reuse_residuals(
    positive: list,
    negative: list,
    every_k_steps: int,
    start_percent: float = 0.0,
    end_percent: float = 1.0,
) -> tuple[list, list]:
    """The node's logic, callable without ComfyUI: new conditionings whose Affordance controls reuse residuals.

    Without an Affordance ControlNet in either conditioning there is nothing to speed up: the inputs come back
    unchanged, with a warning in the log (an Apply ControlNet at strength 0 passes its conditioning on untouched,
    which is how a ControlNet is switched off to compare; a Reuse node placed before the Apply nodes is the other
    cause).

    Raises:
        ReuseError: a bad ``every_k_steps`` or window, or a conditioning that is not a list.
    """
    policy = ReusePolicy(every_k_steps, start_percent, end_percent)
    memo: dict[int, tuple[Any, Any]] = {}
    found: list[str] = []
    pos = _rechain(positive, policy, memo, found, "positive")
    neg = _rechain(negative, policy, memo, found, "negative")
    if not found:
        log.warning(
            "ControlNet Residual Reuse: no ControlNet applied with 'Apply ControlNet (Affordance)' or loaded with "
            "'Load ControlNet (Affordance)' reaches this node, so it changes nothing. Either the Apply ControlNet "
            "nodes before it have strength 0 (they then pass the conditioning on untouched), or this node is not "
            "between them and the sampler; ComfyUI's own ControlNets are left as they are."
        )
        return positive, negative
    log.debug("residual reuse every %d steps set on %s", every_k_steps, ", ".join(found))
    return pos, neg


class ControlResidualReuse:
    """Run Affordance ControlNets only every k sampling steps and reuse their residuals in between (lossy)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "positive": ("CONDITIONING", {"tooltip": "Positive conditioning carrying Affordance ControlNets."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative conditioning (shares the control objects)."}),
                "every_k_steps": (
                    "INT",
                    {
                        "default": 2,
                        "min": 1,
                        "max": MAX_EVERY_K,
                        "step": 1,
                        "tooltip": "LOSSY. Run the ControlNet at one model call in k and reuse its output for the "
                        "next k-1; strength, schedule, weights and mask are still applied at every step. 1 = exact "
                        "(off). Higher is faster and drifts further from the exact image.",
                    },
                ),
                "start_percent": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.001,
                        "tooltip": "Sampling progress from which reuse is allowed; before it every step is exact.",
                    },
                ),
                "end_percent": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.001,
                        "tooltip": "Sampling progress after which every step is exact again (e.g. 0.8 keeps the "
                        "last steps, which draw fine detail, exact).",
                    },
                ),
            }
        }

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply"
    CATEGORY = "Affordance/speed"
    DESCRIPTION = (
        "LOSSY speed-up: Affordance ControlNets run only every k model calls and reuse their residuals in between, "
        "trading fidelity for speed (the image differs slightly from the exact one; see the README for measured "
        "speed and PSNR). Place it between the Apply ControlNet node(s) and the sampler. ComfyUI's own ControlNets "
        "in the chain are left exact. every_k_steps 1 is exact."
    )

    @classmethod
    def VALIDATE_INPUTS(
        cls, every_k_steps: int | None, start_percent: float | None, end_percent: float | None
    ) -> bool | str:
        if every_k_steps is None or start_percent is None or end_percent is None:
            return True  # a linked widget: its value is checked when the node runs
        try:
            ReusePolicy(every_k_steps, start_percent, end_percent)
        except ReuseError as exc:
            return str(exc)
        return True

    def apply(
        self, positive: list, negative: list, every_k_steps: int, start_percent: float, end_percent: float
    ) -> tuple[list, list]:
        return reuse_residuals(positive, negative, every_k_steps, start_percent, end_percent)

"""``AST_ControlWeights`` and ``AST_StrengthSchedule``: how control is spread over residuals and time."""

from __future__ import annotations

from ..controlnet.schedule import Interpolation, ScheduleError, StrengthSchedule
from ..controlnet.weights import ControlWeights, Preset, WeightsError, make_weights
from ._host import unconverted

WEIGHTS_TYPE = "AST_CONTROL_WEIGHTS"
SCHEDULE_TYPE = "AST_STRENGTH_SCHEDULE"


class ControlWeightsNode:
    """Per-residual weights for AST_ApplyControlNet (balanced, A1111's soft modes, or custom)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "preset": (
                    [p.value for p in Preset],
                    {
                        "default": Preset.BALANCED.value,
                        "tooltip": "balanced: every residual x1. prompt_more_important: soft weights "
                        "base^(n-1-i), deeper blocks stronger (A1111). controlnet_more_important: soft weights "
                        "and control on the positive side only (A1111, diffusers' guess mode). custom: your list.",
                    },
                ),
                "base_multiplier": (
                    "FLOAT",
                    {"default": 0.825, "min": 0.0, "max": 1.0, "step": 0.001, "tooltip": "Base of the soft weights."},
                ),
                "uncond_multiplier": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "Control on the negative side (what Apply ControlNet (Affordance) got as negative); 0 "
                        "applies it to the positive side only and skips computing the negative.",
                    },
                ),
                "custom_weights": (
                    "STRING",
                    {
                        "default": "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1",
                        "multiline": False,
                        "tooltip": "With preset 'custom': one weight per residual separated by commas, middle block "
                        "last (13 for SD1.x/SD2.x, 10 for SDXL).",
                    },
                ),
            }
        }

    RETURN_TYPES = (WEIGHTS_TYPE,)
    RETURN_NAMES = ("weights",)
    FUNCTION = "build"
    CATEGORY = "Affordance/weights"
    DESCRIPTION = "How strongly each ControlNet residual (12 or 9 skip connections and the middle block) is applied."

    @classmethod
    def VALIDATE_INPUTS(
        cls, preset: str | None, base_multiplier: float | None, uncond_multiplier: float | None, custom_weights: str | None
    ) -> bool | str:
        if preset is None or base_multiplier is None or uncond_multiplier is None or custom_weights is None:
            return True  # a linked widget: its value is checked when the node runs
        # preset is a list widget: ComfyUI converts nothing there, so its value is checked below whatever it is
        if unconverted((base_multiplier, float), (uncond_multiplier, float), (custom_weights, str)):
            return True
        try:
            make_weights(preset, base_multiplier, uncond_multiplier, custom_weights)
        except WeightsError as exc:
            return str(exc)
        return True

    def build(
        self, preset: str, base_multiplier: float, uncond_multiplier: float, custom_weights: str
    ) -> tuple[ControlWeights]:
        return (make_weights(preset, base_multiplier, uncond_multiplier, custom_weights),)


class StrengthScheduleNode:
    """Strength over sampling progress, from keyframes."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "keyframes": (
                    "STRING",
                    {
                        "default": "0.0:1.0, 0.6:1.0, 1.0:0.2",
                        "tooltip": "progress:multiplier pairs separated by commas; progress 0 is the first step, "
                        "1 the last. The multiplier scales the Apply node's strength.",
                    },
                ),
                "interpolation": (
                    [i.value for i in Interpolation],
                    {"default": Interpolation.LINEAR.value, "tooltip": "linear: ramp between keyframes; step: hold."},
                ),
            }
        }

    RETURN_TYPES = (SCHEDULE_TYPE,)
    RETURN_NAMES = ("schedule",)
    FUNCTION = "build"
    CATEGORY = "Affordance/weights"
    DESCRIPTION = "A strength multiplier that changes during sampling (e.g. strong early for layout, weak late)."

    @classmethod
    def VALIDATE_INPUTS(cls, keyframes: str | None, interpolation: str | None) -> bool | str:
        if keyframes is None or interpolation is None:
            return True  # a linked widget: its value is checked when the node runs
        if unconverted((keyframes, str)):  # interpolation is a list widget: checked below whatever it is
            return True
        try:
            StrengthSchedule.parse(keyframes, interpolation)
        except ScheduleError as exc:
            return str(exc)
        return True

    def build(self, keyframes: str, interpolation: str) -> tuple[StrengthSchedule]:
        return (StrengthSchedule.parse(keyframes, interpolation),)

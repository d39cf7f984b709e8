"""Preprocessor nodes: IMAGE in, IMAGE hint out at the input's size, batched on ComfyUI's device.

Each node is declared by a small spec (function, parameters, description); the shared base class
converts layouts and devices, runs the batch in chunks with a progress bar, and validates parameters
before execution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..preprocessors import (
    ImageInputError,
    ParameterError,
    ResizeMode,
    binary,
    canny,
    color_grid,
    inpaint,
    invert,
    lineart_standard,
    luminance,
    pixel_perfect_resolution,
    resize_hint,
    scribble,
    scribble_xdog,
    shuffle,
    tile,
)
from ..preprocessors.base import (
    MAX_RESOLUTION,
    PAD_MULTIPLE,
    check_image,
    check_resolution,
    detection_size,
    shown,
    to_detection_size,
)
from ..preprocessors.color import check_inpaint_mask
from ..preprocessors.geometry import check_target_size
from ._host import Progress, free_memory, mask_batch, preview_images, processing_device, unconverted

CHUNK = 16  # images per batched call at most: bounds memory while keeping the work batched
MEMORY_SHARE = 0.5  # of the memory free before a preprocessor runs, what one chunk's working memory may take
GiB = 1 << 30
# Resize Hint's peak per output pixel of one image, plus per input pixel (telling an image's kind, an inpaint
# hint's mask): CPU fp32, at most 25.3 and 16.3 measured (bench/bench_resize_memory.py,
# bench/results/2026-12-05-cpu-resize-memory.txt), with at least a quarter more as margin
RESIZE_BYTES_PER_PIXEL = 40
RESIZE_INPUT_BYTES_PER_PIXEL = 21
OUT_BYTES_PER_PIXEL = 24  # a finished IMAGE pixel (3 x float32), twice: the chunks' results and their join


def memory_text(nbytes: float, rounding: Callable[[float], float] = round) -> str:
    """A memory size for a message: GiB with one decimal from 1 GiB up, whole MiB below ("less than 1 MiB" last).

    ``rounding`` (``math.ceil`` for what is needed, ``math.floor`` for what is free) keeps a need just above
    the free memory from reading as the same figure.
    """
    if nbytes >= GiB:
        return f"{rounding(nbytes / GiB * 10) / 10:.1f} GiB"
    mib = int(rounding(nbytes / (1 << 20)))
    return f"{mib} MiB" if mib >= 1 else "less than 1 MiB"


def need_and_free(need: float, free: float) -> tuple[str, str]:
    """``need`` rounded up and ``free`` rounded down, as :func:`memory_text` writes them."""
    return memory_text(need, math.ceil), memory_text(free, math.floor)


RESOLUTION = (
    "INT",
    {
        "default": 512,
        "min": 64,
        "max": MAX_RESOLUTION,
        "step": 64,
        "tooltip": "Detection resolution: the short side the image is processed at (the hint comes back at the "
        "input size unless output_size is 'detection').",
    },
)
OUTPUT_SIZES = ("image", "detection")
OUTPUT_SIZE = (
    list(OUTPUT_SIZES),
    {
        "default": "image",
        "tooltip": "image: the hint at the input image's size (it overlays the image). detection: at the detection "
        "resolution, as comfyui_controlnet_aux returns it; with Pixel Perfect Resolution's value, one hint pixel per "
        "generated pixel, so one-pixel lines stay one pixel wide.",
    },
)


def require_image(image: Any) -> torch.Tensor:
    """``image`` itself if it is a 4-D tensor (an IMAGE's rank; its channels are checked where it is converted).

    Raises:
        ImageInputError: anything else, named.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ImageInputError(f"image must be a ComfyUI IMAGE (batch, height, width, channels), got {got}.")
    return image


def to_bchw(image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """IMAGE ``(B, H, W, C)`` -> ``(B, 3, H, W)`` float on ``device`` (greyscale/RGBA converted, checked).

    An fp16 or bf16 IMAGE (some nodes emit them) is processed in float32, as ComfyUI's IMAGE normally is: in
    half precision ``x * 255`` misses 8-bit levels, so Canny would not match OpenCV's and filters would drift.
    The node's output is float32 either way.
    """
    x = require_image(image).movedim(-1, 1).to(device)
    return check_image(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)


def to_image(hint: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> IMAGE ``(B, H, W, 3)`` float32 on the CPU."""
    return hint.movedim(1, -1).float().cpu().contiguous()


def with_preview(hint: torch.Tensor, *more: Any) -> dict[str, Any]:
    """A node result that also shows ``hint`` on the node after execution (ComfyUI's UI images)."""
    return {"ui": {"images": preview_images(hint)}, "result": (hint, *more)}


def run_batched(
    image: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    resolution: int | None = None,
    pixels: int | None = None,
    bytes_per_pixel: int | None = None,
    what: str = "this preprocessor",
    output_size: str = "image",
    input_bytes_per_pixel: int = 0,
) -> torch.Tensor:
    """Run ``fn`` over an IMAGE batch in chunks on ComfyUI's device, with a progress bar.

    Args:
        image: ComfyUI IMAGE ``(B, H, W, C)`` (C = 1, 3 or 4), checked and converted by :func:`to_bchw`.
        fn: ``(b, 3, H, W)`` float in ``[0, 1]`` on the device -> ``(b, 3, H', W')`` hint, for chunks of at
            most ``CHUNK`` images.
        resolution, bytes_per_pixel: for a learned annotator, its detection resolution and the working memory
            it needs per pixel processed (measured peaks, ``bench/bench_annotator_memory.py``). Chunks are then
            sized to take at most ``MEMORY_SHARE`` of the memory ComfyUI reports free, and on the CPU an image
            that alone needs more than is free is refused before anything runs (the system would kill the
            server, losing its queue). On a GPU nothing is refused: ComfyUI's figure leaves out models it could
            unload (and is a constant under DirectML), and running out there is an error ComfyUI reports.
            ``what`` names the node in that message. ``pixels``: instead of a resolution, the pixels each image
            is processed at (e.g. a resize's output size). ``input_bytes_per_pixel``: working memory per pixel
            of the input image besides.
        output_size: ``"detection"`` (with a ``resolution``): each chunk is brought to the detection size before
            ``fn`` runs, so ``fn`` (which detects at ``resolution``) processes it as it is and the hint comes back
            at the detection size; ``"image"``: as ``fn`` returns it (the input's size for every preprocessor).

    Returns:
        IMAGE ``(B, H', W', 3)`` float32 on the CPU.

    Raises:
        ParameterError: on the CPU, one image needs more working memory than is free; an unknown ``output_size``.
    """
    if output_size not in OUTPUT_SIZES:
        raise ParameterError(f"output_size must be one of {list(OUTPUT_SIZES)}, got {shown(output_size)}.")
    if resolution is not None:  # a linked value reaches here unconverted: checked before anything uses it
        resolution = check_resolution(resolution)
    detect_at = resolution if output_size == "detection" else None  # the detection size's resolution
    x = to_bchw(image, processing_device())
    if detect_at is not None:
        _check_output_memory(x, detect_at, what)
    chunk = CHUNK
    if (resolution is not None or pixels is not None) and bytes_per_pixel is not None:
        chunk = _chunk_for_memory(x, resolution, pixels, bytes_per_pixel, what, input_bytes_per_pixel)
    bar = Progress(x.shape[0])
    out = []
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk]
        n = part.shape[0]
        if detect_at is not None:
            part = to_detection_size(part, detect_at)
        out.append(to_image(fn(part)))
        bar.update(n)
    return torch.cat(out)


def _check_output_memory(x: torch.Tensor, resolution: int, what: str) -> None:
    """On the CPU, refuse hints at the detection size that cannot fit in the free memory as an IMAGE.

    At the image's size a hint is never larger than its input; at the detection size it can be (4096 / short
    side) squared times larger.
    """
    free = free_memory(x.device) if x.device.type == "cpu" else None
    if free is None:
        return
    dh, dw = detection_size(x.shape[-2], x.shape[-1], resolution)
    need = OUT_BYTES_PER_PIXEL * dh * dw * x.shape[0]
    if need > free:
        shown_need, shown_free = need_and_free(need, free)
        raise ParameterError(
            f"{what}: {x.shape[0]} hint(s) at the detection size {dw}x{dh} px take about {shown_need} as a "
            f"ComfyUI IMAGE (with the copy made while the batch is joined), but {shown_free} is free. Lower "
            "resolution, set output_size to 'image', or send fewer images."
        )


def _chunk_for_memory(
    x: torch.Tensor,
    resolution: int | None,
    pixels: int | None,
    bytes_per_pixel: int,
    what: str,
    input_bytes_per_pixel: int = 0,
) -> int:
    """Images per call so that one call's working memory stays within ``MEMORY_SHARE`` of the free memory."""
    free = free_memory(x.device)
    if free is None:  # outside ComfyUI: nothing to ask
        return CHUNK
    if resolution is not None:
        dh, dw = detection_size(x.shape[-2], x.shape[-1], resolution)
        padded = (-(-dh // PAD_MULTIPLE) * PAD_MULTIPLE) * (-(-dw // PAD_MULTIPLE) * PAD_MULTIPLE)
        how = f"at resolution {resolution} processes this {x.shape[-1]}x{x.shape[-2]} image at {dw}x{dh} px"
        fix = (
            "Lower resolution (with output_size 'image' the hint comes back at the image's size whatever it is; "
            "512-1024 is what the ControlNets were trained with), or free memory."
        )
    else:
        padded = int(pixels or 0)
        how = f"makes images of {padded / 1e6:.2g} megapixels"
        fix = "Choose a smaller size, or free memory."
    work = bytes_per_pixel * padded
    reading = input_bytes_per_pixel * x.shape[-2] * x.shape[-1]  # the input image's own share
    per_image = work + reading
    if per_image > free and x.device.type == "cpu":
        if reading > work:  # a smaller output would hardly help: the input is what is large
            how += f" from this {x.shape[-1]}x{x.shape[-2]} image"
            fix = (
                f"The input image takes {memory_text(reading, math.ceil)} of it: scale it down first (e.g. with ComfyUI's "
                "Upscale Image node), or free memory."
            )
        shown_need, shown_free = need_and_free(per_image, free)
        raise ParameterError(
            f"{what} {how}, which needs about {shown_need} of working memory per image, but "
            f"{shown_free} is free on {x.device}. {fix}"
        )
    return max(1, min(CHUNK, int(free * MEMORY_SHARE) // per_image))


class _Preprocessor:
    """Base of the simple preprocessor nodes: ``image`` (+ ``resolution``) + parameters -> ``IMAGE``."""

    PARAMS: dict[str, tuple] = {}
    USES_RESOLUTION = True
    # peak working memory per pixel processed, fp32 on the CPU, with a quarter more as margin
    # (``bench/bench_annotator_memory.py``; bench/results/2026-12-05-cpu-preprocessor-memory.txt): chunks are
    # sized to the memory free and, on the CPU, an image that alone needs more is refused before running
    WORK_BYTES_PER_PIXEL: int | None = None
    LABEL = "this preprocessor"  # names the node in that refusal
    RETURN_TYPES: tuple[str, ...] = ("IMAGE",)
    RETURN_NAMES: tuple[str, ...] = ("hint",)
    FUNCTION = "process"
    CATEGORY = "Affordance/preprocessors"

    @staticmethod
    def compute(x: torch.Tensor, **params: Any) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        required: dict[str, tuple] = {"image": ("IMAGE", {"tooltip": "The image(s) to turn into a hint."})}
        required.update(cls.PARAMS)
        if not cls.USES_RESOLUTION:
            return {"required": required}
        required["resolution"] = RESOLUTION
        return {"required": required, "optional": {"output_size": OUTPUT_SIZE}}  # optional: saved workflows stay valid

    def batched(
        self,
        image: torch.Tensor,
        resolution: int | None,
        fn: Callable[[torch.Tensor], torch.Tensor],
        output_size: str = "image",
    ) -> torch.Tensor:
        """``run_batched`` with this node's memory estimate (IMAGE in, hint IMAGE out)."""
        return run_batched(
            image,
            fn,
            resolution=resolution,
            bytes_per_pixel=self.WORK_BYTES_PER_PIXEL,
            what=self.LABEL,
            output_size=output_size,
        )

    def process(self, image: torch.Tensor, *, output_size: str = "image", **params: Any) -> dict[str, Any]:
        def fn(x: torch.Tensor) -> torch.Tensor:
            return self.compute(x, **params)

        return with_preview(self.batched(image, params.get("resolution"), fn, output_size))


def _int(default: int, lo: int, hi: int, tip: str) -> tuple:
    return ("INT", {"default": default, "min": lo, "max": hi, "step": 1, "tooltip": tip})


def _float(default: float, lo: float, hi: float, step: float, tip: str) -> tuple:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, "tooltip": tip})


class CannyPreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 90
    LABEL = "Canny"
    DESCRIPTION = (
        "Canny edges exactly as OpenCV computes them (ControlNet's Canny), batched; on the GPU when there is one."
    )
    PARAMS = {
        "low_threshold": _int(100, 0, 255, "Weak-edge threshold on the 0-255 gradient scale (ControlNet: 100)."),
        "high_threshold": _int(200, 0, 255, "Strong-edge threshold (ControlNet: 200); must be >= low_threshold."),
    }

    @classmethod
    def VALIDATE_INPUTS(
        cls, low_threshold: int | None, high_threshold: int | None, resolution: int | None
    ) -> bool | str:
        # a widget fed by a link is None here (its value exists only when the node runs, and is checked then)
        if unconverted((low_threshold, int), (high_threshold, int), (resolution, int)):
            return True
        for name, v in (("low_threshold", low_threshold), ("high_threshold", high_threshold)):
            if v is not None and not 0 <= v <= 255:
                return f"{name} must be between 0 and 255, got {v}."
        if low_threshold is not None and high_threshold is not None and low_threshold > high_threshold:
            return f"low_threshold ({low_threshold}) is above high_threshold ({high_threshold}); swap them."
        if resolution is not None and not 64 <= resolution <= MAX_RESOLUTION:
            return f"resolution must be between 64 and {MAX_RESOLUTION}, got {resolution}."
        return True

    @staticmethod
    def compute(x: torch.Tensor, low_threshold: int, high_threshold: int, resolution: int) -> torch.Tensor:
        return canny(x, low_threshold, high_threshold, resolution)


class ScribblePreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 45
    LABEL = "Scribble"
    DESCRIPTION = "A dark-on-light drawing -> white strokes on black (ControlNet's scribble app)."

    @staticmethod
    def compute(x: torch.Tensor, resolution: int) -> torch.Tensor:
        return scribble(x, resolution)


class ScribbleXDoGPreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 265
    LABEL = "Scribble XDoG"
    DESCRIPTION = "Scribble-like lines from a photo by the eXtended Difference of Gaussians."
    PARAMS = {"threshold": _int(32, 1, 64, "Lower keeps more lines.")}

    @staticmethod
    def compute(x: torch.Tensor, threshold: int, resolution: int) -> torch.Tensor:
        return scribble_xdog(x, threshold, resolution)


class BinaryPreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 85
    LABEL = "Binary"
    DESCRIPTION = "Black/white hint: bright areas white. Threshold 0 or 255 picks Otsu's threshold per image."
    PARAMS = {"threshold": _int(100, 0, 255, "Luminance threshold; 0 or 255 = automatic (Otsu).")}

    @staticmethod
    def compute(x: torch.Tensor, threshold: int, resolution: int) -> torch.Tensor:
        return binary(x, threshold, resolution)


class LineartStandardPreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 195
    LABEL = "Lineart Standard"
    DESCRIPTION = "Lineart from a photo without a network (Gaussian difference)."
    PARAMS = {
        "sigma": _float(6.0, 0.1, 100.0, 0.1, "Width of the Gaussian surround in pixels."),
        "intensity": _float(8.0, 0.0, 1000.0, 0.1, "Line strength (8 = the reference)."),
    }

    @staticmethod
    def compute(x: torch.Tensor, sigma: float, intensity: float, resolution: int) -> torch.Tensor:
        return lineart_standard(x, sigma, intensity, resolution)


class ShufflePreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 120
    LABEL = "Shuffle"
    DESCRIPTION = (
        "Content shuffle for the 1.1 shuffle model: a smooth random warp, fixed by the seed (the same warp for every "
        "image of a batch, so video frames stay steady)."
    )
    PARAMS = {
        "seed": (
            "INT",
            {
                "default": 0,
                "min": 0,
                "max": 0xFFFFFFFFFFFFFFFF,
                "tooltip": "Random seed of the warp (one warp for the whole batch).",
            },
        )
    }

    @staticmethod
    def compute(x: torch.Tensor, seed: int, resolution: int) -> torch.Tensor:
        return shuffle(x, seed, resolution)


class TilePreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 75
    LABEL = "Tile"
    DESCRIPTION = "Tile hint: shrink by 2^iterations then pyrUp back (for tile/upscale ControlNets)."
    PARAMS = {"pyrup_iters": _int(3, 0, 6, "Number of halvings and pyrUp steps; more = blurrier.")}

    @staticmethod
    def compute(x: torch.Tensor, pyrup_iters: int, resolution: int) -> torch.Tensor:
        return tile(x, pyrup_iters, resolution)


class ColorPreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 60
    LABEL = "Color"
    DESCRIPTION = "Colour grid: the image averaged on 64 px cells (the T2I colour hint)."

    @staticmethod
    def compute(x: torch.Tensor, resolution: int) -> torch.Tensor:
        return color_grid(x, resolution)


class LuminancePreprocessor(_Preprocessor):
    WORK_BYTES_PER_PIXEL = 100
    LABEL = "Luminance"
    DESCRIPTION = "Recolour hint: Lab lightness raised to gamma, as grey."
    PARAMS = {"gamma": _float(1.0, 0.01, 10.0, 0.01, "Gamma applied to the lightness (1 = unchanged).")}

    @staticmethod
    def compute(x: torch.Tensor, gamma: float, resolution: int) -> torch.Tensor:
        return luminance(x, gamma, resolution)


class InvertHint(_Preprocessor):
    DESCRIPTION = "Swap black and white (e.g. black-on-white lineart to the white-on-black ControlNet expects)."
    CATEGORY = "Affordance/hints"
    USES_RESOLUTION = False

    @staticmethod
    def compute(x: torch.Tensor) -> torch.Tensor:
        return invert(x)


class InpaintPreprocessor:
    WORK_BYTES_PER_PIXEL = 75  # measured 56 at 512 px (bench_annotator_memory.py --hints inpaint), x1.25
    DESCRIPTION = "The 1.1 inpaint hint: masked pixels become -1 (as control_v11p_sd15_inpaint expects)."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("hint",)
    FUNCTION = "process"
    CATEGORY = "Affordance/preprocessors"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The image to inpaint."}),
                "mask": ("MASK", {"tooltip": "Where to inpaint (1 = repaint); resized to the image."}),
            }
        }

    def process(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        shape = require_image(image).shape  # the image named first: a mask batch cannot fit what is not an image
        m = check_inpaint_mask(mask_batch(mask), shape[0])  # whole-batch check, before the batch is split into chunks
        done = 0

        def fn(x: torch.Tensor) -> torch.Tensor:  # chunks arrive in order: the masks of these rows
            nonlocal done
            rows = m if m.shape[0] == 1 else m[done : done + x.shape[0]]
            done += x.shape[0]
            return inpaint(x, rows.to(x.device))

        pixels = int(shape[1]) * int(shape[2])
        return with_preview(
            run_batched(image, fn, pixels=pixels, bytes_per_pixel=self.WORK_BYTES_PER_PIXEL, what="Inpaint Hint")
        )


def latent_pixel_size(latent: Any) -> tuple[int, int]:
    """``(height, width)`` in pixels of a ComfyUI LATENT (``{"samples": (B, C, h, w)}``): its size x 8.

    Raises:
        ParameterError: ``latent`` is not a LATENT dictionary with a 4- or 5-dimensional ``samples`` tensor.
    """
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim not in (4, 5):
        got = (
            f"samples of shape {tuple(samples.shape)}"
            if isinstance(samples, torch.Tensor)
            else f"keys {sorted(latent)}"
            if isinstance(latent, dict)
            else type(latent).__name__
        )
        raise ParameterError(
            f"latent must be a ComfyUI LATENT (a dict whose 'samples' is (batch, channels, height, width)), got {got}. "
            "Connect the output of Empty Latent Image or VAE Encode."
        )
    return int(samples.shape[-2]) * 8, int(samples.shape[-1]) * 8


class HintResize:
    DESCRIPTION = (
        "Bring hints to a size: just resize, crop and resize (cover), or resize and fill (fit + border colour)."
    )
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("hint",)
    FUNCTION = "process"
    CATEGORY = "Affordance/hints"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The hint(s) to resize."}),
                "mode": (
                    [m.value for m in ResizeMode],
                    {
                        "default": ResizeMode.CROP_AND_RESIZE.value,
                        "tooltip": "just_resize: stretch. crop_and_resize: cover and crop the centre. resize_and_fill: fit inside, fill the rest with the border colour.",
                    },
                ),
                "width": (
                    "INT",
                    {
                        "default": 512,
                        "min": 8,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "Target width (ignored when a latent is connected).",
                    },
                ),
                "height": (
                    "INT",
                    {
                        "default": 512,
                        "min": 8,
                        "max": 16384,
                        "step": 8,
                        "tooltip": "Target height (ignored when a latent is connected).",
                    },
                ),
            },
            "optional": {"latent": ("LATENT", {"tooltip": "Take the size from this latent (its size x 8)."})},
        }

    def process(
        self, image: torch.Tensor, mode: str, width: int, height: int, latent: dict | None = None
    ) -> dict[str, Any]:
        if latent is not None:
            height, width = latent_pixel_size(latent)
            if not (8 <= min(height, width) and max(height, width) <= 16384):
                raise ParameterError(
                    f"Resize Hint: the connected latent is {width // 8}x{height // 8}, so the hint would be "
                    f"{width}x{height} px; it must be 8 to 16384 px per side. Connect the latent the sampler uses."
                )
        # before any size arithmetic: a linked width or height reaches here without ComfyUI's min/max check
        width, height = check_target_size(width, height)
        batch = image.shape[0] if isinstance(image, torch.Tensor) and image.ndim == 4 else 0
        device = processing_device()
        free = free_memory(device) if device.type == "cpu" else None
        out_bytes = OUT_BYTES_PER_PIXEL * width * height * batch
        if free is not None and out_bytes > free:
            shown_need, shown_free = need_and_free(out_bytes, free)
            raise ParameterError(
                f"Resize Hint: {batch} hint(s) of {width}x{height} px take about {shown_need} as a ComfyUI "
                f"IMAGE (with the copy made while the batch is joined), but {shown_free} is free. Choose a "
                "smaller size (the ControlNet takes the latent's size x 8), or fewer images."
            )
        return with_preview(
            run_batched(
                image,
                lambda x: resize_hint(x, width, height, mode),
                pixels=width * height,
                bytes_per_pixel=RESIZE_BYTES_PER_PIXEL,
                input_bytes_per_pixel=RESIZE_INPUT_BYTES_PER_PIXEL,
                what="Resize Hint",
            )
        )


class PixelPerfectResolution:
    DESCRIPTION = (
        "The detection resolution that maps one hint pixel to one generated pixel for a target size: wire it into a "
        "preprocessor's resolution and set that node's output_size to 'detection' (at 'image' the hint is brought "
        "back to the input image's size)."
    )
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("resolution",)
    FUNCTION = "process"
    CATEGORY = "Affordance/hints"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        spec = HintResize.INPUT_TYPES()  # the same widgets (saved workflows rely on them), its own tooltips
        req, opt = spec["required"], spec["optional"]
        req["image"] = ("IMAGE", {"tooltip": "The image the hint will be made from (only its size is read)."})
        req["mode"] = (
            req["mode"][0],
            {
                **req["mode"][1],
                "tooltip": "How the hint will be brought to the target size (as in Resize Hint): just_resize, "
                "crop_and_resize (cover) or resize_and_fill (fit).",
            },
        )
        for side in ("width", "height"):
            req[side] = (
                "INT",
                {
                    **req[side][1],
                    "tooltip": f"Target {side} of the generated image (ignored when a latent is connected).",
                },
            )
        opt["latent"] = ("LATENT", {"tooltip": "Take the target size from this latent (its size x 8)."})
        return spec

    def process(
        self, image: torch.Tensor, mode: str, width: int, height: int, latent: dict | None = None
    ) -> tuple[int]:
        if latent is not None:
            height, width = latent_pixel_size(latent)
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] == 0:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ImageInputError(
                f"image must be a non-empty ComfyUI IMAGE (batch, height, width, channels), got {got}."
            )
        return (pixel_perfect_resolution(image.shape[1], image.shape[2], height, width, mode),)


NODES: dict[str, tuple[type, str]] = {
    "AST_CannyPreprocessor": (CannyPreprocessor, "Canny (Affordance)"),
    "AST_ScribblePreprocessor": (ScribblePreprocessor, "Scribble (Affordance)"),
    "AST_ScribbleXDoGPreprocessor": (ScribbleXDoGPreprocessor, "Scribble XDoG (Affordance)"),
    "AST_BinaryPreprocessor": (BinaryPreprocessor, "Binary (Affordance)"),
    "AST_LineartStandardPreprocessor": (LineartStandardPreprocessor, "Lineart Standard (Affordance)"),
    "AST_ShufflePreprocessor": (ShufflePreprocessor, "Content Shuffle (Affordance)"),
    "AST_TilePreprocessor": (TilePreprocessor, "Tile (Affordance)"),
    "AST_ColorPreprocessor": (ColorPreprocessor, "Colour Grid (Affordance)"),
    "AST_LuminancePreprocessor": (LuminancePreprocessor, "Luminance (Affordance)"),
    "AST_InpaintPreprocessor": (InpaintPreprocessor, "Inpaint Hint (Affordance)"),
    "AST_HintResize": (HintResize, "Resize Hint (Affordance)"),
    "AST_PixelPerfectResolution": (PixelPerfectResolution, "Pixel Perfect Resolution (Affordance)"),
    "AST_InvertHint": (InvertHint, "Invert Hint (Affordance)"),
}

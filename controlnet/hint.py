"""Hint geometry at apply time: resize to the latent x8 grid, batch broadcasting, masks per residual."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import HintError
from .rows import take_rows


def center_crop_to_aspect(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop ``(..., H, W)`` symmetrically so its aspect ratio matches ``width / height``.

    The cropped margin on each side is ``round((size - size * ratio) / 2)``, so an image that already
    has the target aspect is returned unchanged. At least one row and column always remain: a strip
    far thinner than the target (say 1 x 4 px for a square) keeps its middle pixel instead of becoming
    empty.
    """
    old_h, old_w = image.shape[-2:]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    x, y = min(x, (old_w - 1) // 2), min(y, (old_h - 1) // 2)
    return image.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)


def fit_hint(hint: torch.Tensor, width: int, height: int, mode: str = "nearest-exact") -> torch.Tensor:
    """Resize a hint to ``width x height`` pixels, cropping the centre to keep its aspect ratio.

    This is what ComfyUI's ControlNet does with a hint (centre crop, then nearest-exact), so our nodes
    give the same control as ComfyUI's for the same image.

    Args:
        hint: ``(B, C, H, W)`` float, usually in ``[0, 1]``.
        width, height: target size in pixels (latent size x 8).
        mode: ``torch.nn.functional.interpolate`` mode.

    Returns:
        ``(B, C, height, width)`` with ``hint``'s dtype and device.
    """
    if hint.ndim != 4:
        raise HintError(f"a hint must be (B, C, H, W), got shape {tuple(hint.shape)}.")
    if hint.numel() == 0:  # no image, no channel or no pixel
        raise HintError(f"the hint is empty (shape {tuple(hint.shape)}).")
    cropped = center_crop_to_aspect(hint, width, height)
    if cropped.shape[-2:] == (height, width):
        return cropped
    return F.interpolate(cropped, size=(height, width), mode=mode)


def broadcast_batch(t: torch.Tensor, target: int, chunks: int) -> torch.Tensor:
    """Bring a per-image tensor to a model batch of ``target`` rows made of ``chunks`` equal chunks.

    A batch of 1 is returned as is (it broadcasts). Otherwise the first ``target // chunks`` entries are
    taken (repeated cyclically when there are fewer) and repeated for every chunk (cond, uncond, ...),
    which is how ComfyUI lays out one latent batch per chunk.

    Raises:
        HintError: ``target`` is not a multiple of ``chunks``.
    """
    if t.shape[0] == 1:
        return t
    if chunks < 1 or target % chunks:
        raise HintError(f"a batch of {target} cannot be split into {chunks} equal chunks.")
    per = target // chunks
    t = t[:per]
    if t.shape[0] < per:
        reps = -(-per // t.shape[0])
        t = t.repeat(reps, *([1] * (t.ndim - 1)))[:per]
    return t.repeat(chunks, *([1] * (t.ndim - 1))) if chunks > 1 else t


def check_hint_batch(hint_batch: int, latent_batch: int, what: str = "hint images") -> None:
    """A batch of hints (or masks) must be 1, one per latent, or a divisor of the latent batch.

    Raises:
        HintError: naming both batch sizes and the fix.
    """
    if hint_batch == 1 or (hint_batch <= latent_batch and latent_batch % hint_batch == 0):
        return
    fits = "1" if latent_batch == 1 else f"1, {latent_batch} (one per latent), or a number that divides {latent_batch}"
    raise HintError(f"a batch of {hint_batch} {what} fits no latent batch of {latent_batch}: use {fits}.")


def window_batch(t: torch.Tensor, frames: tuple[int, ...], chunks: int, what: str = "hint images") -> torch.Tensor:
    """The rows of a per-frame batch that one context window of a video samples, repeated for every chunk.

    Under sliding context windows (ComfyUI's Context Windows nodes, AnimateDiff-Evolved's context options) the
    model sees a few frames of a longer video at a time; a hint (or mask) batch holding one entry per frame of
    the whole video is indexed by the window's frame numbers, so each frame keeps its own hint.

    Args:
        t: ``(N, ...)`` one entry per frame of the whole video (any dtype and device).
        frames: the window's frame indices within the video (any order, e.g. a closed loop's ``(14, 15, 0, 1)``).
        chunks: cond/uncond chunks of the model call; the window's rows are repeated for each.
        what: what ``t`` holds, for the message.

    Returns:
        ``(chunks * len(frames), ...)`` on ``t``'s device: a view of ``t`` for one chunk of consecutive frames,
        else a new tensor.

    Raises:
        HintError: a frame index outside the batch (a batch made for a shorter video).
    """
    if not frames:
        raise HintError("a context window must hold at least one frame, got none.")
    low, high = min(frames), max(frames)
    if low < 0 or high >= t.shape[0]:
        raise HintError(
            f"a batch of {t.shape[0]} {what} cannot follow this context window: it samples frames {low} to {high} of "
            f"the video. Give one {what[:-1] if what.endswith('s') else what} per frame of the whole video (or one for "
            "all frames)."
        )
    # runs of consecutive frames are taken as slices: an index tensor would be copied to the device at every
    # call, which waits for the work queued before it
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1]:
            runs[-1] = (runs[-1][0], f + 1)
        else:
            runs.append((f, f + 1))
    rows = take_rows(t, tuple(runs))
    return rows if chunks == 1 else torch.cat([rows] * chunks)


def mask_for(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a ``(B, H, W)`` mask in ``[0, 1]`` to ``(B, 1, height, width)`` float32 by area averaging.

    Area averaging keeps a residual's share of a masked region proportional to its coverage at every
    resolution (bilinear when upsampling).
    """
    m = mask[:, None].float()
    if m.shape[-2:] == (height, width):
        return m
    if m.shape[-2] >= height and m.shape[-1] >= width:
        return F.adaptive_avg_pool2d(m, (height, width))
    return F.interpolate(m, size=(height, width), mode="bilinear", align_corners=False)

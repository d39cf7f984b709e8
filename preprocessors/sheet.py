"""Pictures for the main job: reading user images, a built-in demo scene and a contact sheet of hints."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw


def image_array(im: Image.Image) -> np.ndarray:
    """A PIL image as ``(H, W, 3)`` (or ``(H, W, 4)`` with alpha) float32 in ``[0, 1]``, any bit depth.

    8-bit modes are converted to RGB/RGBA and divided by 255. 16- and 32-bit integer images (``I;16``,
    ``I``) are divided by 65535 (or their maximum above it) and float images (``F``) taken as they are
    within ``[0, 1]``, else divided by their maximum: converting those with PIL clips them to 8 bits
    (a 16-bit photo turns almost white, a float one black).
    """
    if im.mode.startswith("I") or im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max(initial=0.0))
        scale = (1.0 if top <= 1.0 else top) if im.mode == "F" else max(65535.0, top)
        grey = np.nan_to_num(arr / scale).clip(0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=-1)
    rgba = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    return np.asarray(im.convert("RGBA" if rgba else "RGB"), dtype=np.float32) / 255.0


def demo_scene(height: int = 512, width: int = 768, seed: int = 0) -> torch.Tensor:
    """A drawn landscape (sky, sun, hills, a house, a tree, a path) with some texture.

    Made by code, so it ships with the pack and belongs to nobody else.

    Returns:
        ``(1, 3, height, width)`` float32 in ``[0, 1]``.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    img = (np.array([90, 150, 230]) * (1 - y) + np.array([200, 225, 250]) * y).repeat(width, 1)
    img = np.ascontiguousarray(img, dtype=np.float32)
    s = width / 768
    cv2.circle(img, (int(620 * s), int(90 * s)), int(45 * s), (255, 220, 90), -1, cv2.LINE_AA)
    hills = np.array(
        [
            [0, int(height * 0.55)],
            [int(width * 0.3), int(height * 0.42)],
            [int(width * 0.65), int(height * 0.5)],
            [width, int(height * 0.4)],
            [width, height],
            [0, height],
        ],
        np.int32,
    )
    cv2.fillPoly(img, [hills], (95, 160, 70), cv2.LINE_AA)
    path = np.array(
        [
            [int(width * 0.42), height],
            [int(width * 0.58), height],
            [int(width * 0.5), int(height * 0.62)],
            [int(width * 0.47), int(height * 0.62)],
        ],
        np.int32,
    )
    cv2.fillPoly(img, [path], (190, 170, 130), cv2.LINE_AA)
    x0, y0, hw, hh = int(width * 0.3), int(height * 0.45), int(width * 0.2), int(height * 0.18)
    cv2.rectangle(img, (x0, y0), (x0 + hw, y0 + hh), (215, 190, 150), -1)
    roof = np.array([[x0 - int(12 * s), y0], [x0 + hw + int(12 * s), y0], [x0 + hw // 2, y0 - int(70 * s)]], np.int32)
    cv2.fillPoly(img, [roof], (160, 60, 50), cv2.LINE_AA)
    cv2.rectangle(
        img,
        (x0 + hw // 2 - int(14 * s), y0 + hh - int(50 * s)),
        (x0 + hw // 2 + int(14 * s), y0 + hh),
        (110, 70, 40),
        -1,
    )
    for dx in (int(hw * 0.15), int(hw * 0.7)):
        cv2.rectangle(img, (x0 + dx, y0 + int(18 * s)), (x0 + dx + int(26 * s), y0 + int(44 * s)), (250, 240, 170), -1)
        cv2.rectangle(img, (x0 + dx, y0 + int(18 * s)), (x0 + dx + int(26 * s), y0 + int(44 * s)), (90, 60, 40), 2)
    tx, ty = int(width * 0.75), int(height * 0.55)
    cv2.rectangle(img, (tx - int(8 * s), ty), (tx + int(8 * s), ty + int(80 * s)), (100, 70, 40), -1)
    cv2.circle(img, (tx, ty - int(10 * s)), int(55 * s), (50, 120, 50), -1, cv2.LINE_AA)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(np.clip(img, 0, 255), (0, 0), 0.7)
    return torch.from_numpy(img / 255.0).permute(2, 0, 1)[None].float().clamp(0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, 3, H, W)`` in ``[0, 1]`` (values outside are clipped) -> RGB PIL image."""
    if image.ndim == 4:
        image = image[0]
    arr = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def _fit(width: int, height: int, box: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled to fit inside ``box`` x ``box``, aspect kept, each side at least 1 px."""
    scale = box / max(width, height)
    return max(1, min(box, round(width * scale))), max(1, min(box, round(height * scale)))


def thumbnail(image: torch.Tensor | Image.Image, thumb: int = 320) -> Image.Image:
    """``image`` (``(3, H, W)``/``(1, 3, H, W)`` in ``[0, 1]``, or RGB PIL) as the contact sheet shows it: its
    aspect kept, fitted inside ``thumb`` x ``thumb`` (each side at least 1 px), bilinear.

    Keeping this instead of a full-size hint until the sheet is made holds a few hundred KB, not 200 MB for
    a 4096 px hint. An image already of its thumbnail's size is returned as it is.
    """
    im = image if isinstance(image, Image.Image) else to_pil(image)
    size = _fit(im.size[0], im.size[1], thumb)
    return im if im.size == size else im.resize(size, Image.Resampling.BILINEAR)


def contact_sheet(
    items: Sequence[tuple[str, torch.Tensor | Image.Image]], columns: int = 4, thumb: int = 320
) -> Image.Image:
    """Thumbnails with labels on a grid; ``items`` are ``(label, (3, H, W) or (1, 3, H, W))``, or ``(label, PIL
    image)`` (e.g. made by :func:`thumbnail` with the same ``thumb``).

    Each thumbnail keeps its image's aspect and fits inside a ``thumb`` x ``thumb`` box, each side at least
    1 px: an 8000x8 image makes a 320x1 strip and an 8x8000 one a 1x320 strip, so the sheet's size is
    bounded by the number of items whatever their shapes. Cells are ``thumb`` px wide and as tall as the
    tallest thumbnail; each thumbnail is centred in its cell (letterboxed on the dark background).

    Raises:
        ValueError: no item, ``columns`` or ``thumb`` below 1, or an image with an empty side.
    """
    if not items:
        raise ValueError("contact_sheet needs at least one (label, image) item, got none.")
    if columns < 1 or thumb < 1:
        raise ValueError(f"contact_sheet needs columns >= 1 and thumb >= 1, got columns={columns}, thumb={thumb}.")
    for label, img in items:
        w, h = img.size if isinstance(img, Image.Image) else (img.shape[-1], img.shape[-2])
        if min(w, h) < 1:
            raise ValueError(f"contact_sheet item {label!r} is {w}x{h} px; give a non-empty image.")
    thumbnails = [thumbnail(img, thumb) for _, img in items]
    sizes = [t.size for t in thumbnails]
    rows = (len(items) + columns - 1) // columns
    label_h = 22
    cell_w, cell_h = thumb, max(th for _, th in sizes)
    sheet = Image.new("RGB", (columns * cell_w, rows * (cell_h + label_h)), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for i, ((label, _), small, (tw, th)) in enumerate(zip(items, thumbnails, sizes)):
        r, c = divmod(i, columns)
        x, y = c * cell_w, r * (cell_h + label_h)
        sheet.paste(small, (x + (cell_w - tw) // 2, y + label_h + (cell_h - th) // 2))
        draw.text((x + 6, y + 5), label, fill=(235, 235, 235))
    return sheet


def write_png(im: Image.Image, path: Path) -> None:
    """Write ``im`` as a PNG at ``path``, staged: under a temporary name in the same folder, then renamed.

    A file already at ``path`` is replaced only once its successor is completely written (flushed to disk),
    and keeps its permissions; a new file gets those of any new file (the umask applies). On any failure
    (disk full, no permission, an interrupt) the temporary file is removed and ``path`` is left as it was.

    Raises:
        OSError: the folder cannot be written (the caller names ``path`` in its message).
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-{secrets.token_hex(6)}-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        if path.is_file() and not path.is_symlink():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write ``(3, H, W)``/``(1, 3, H, W)`` in ``[0, 1]`` as a PNG, staged as :func:`write_png` does."""
    write_png(to_pil(image), path)

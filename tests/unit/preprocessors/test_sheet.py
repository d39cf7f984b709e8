"""The main job's built-in demo scene: it holds what its docstring names (the hints of `hints` are made from it);
the contact sheet refuses a layout or an image it cannot draw."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from PIL import Image

from affordance.preprocessors.sheet import contact_sheet, demo_scene, write_png


def test_demo_scene_shows_its_sun_hills_and_windows():
    scene = demo_scene()
    assert scene.shape == (1, 3, 512, 768)
    im = scene[0] * 255

    def rgb(x: int, y: int) -> list[int]:
        return [round(v) for v in im[:, y, x].tolist()]

    r, g, b = rgb(620, 90)  # the sun's centre: filled yellow, not sky
    assert r > 230 and b < 130
    r, g, b = rgb(100, 400)  # the hills: green
    assert g > r + 30 and g > b + 60
    assert rgb(265, 261)[1] > 220  # a window: light
    assert max(rgb(252, 261)) < 120  # its dark frame


@pytest.mark.parametrize(("columns", "thumb"), [(0, 320), (4, 0), (-1, -5)])
def test_contact_sheet_refuses_a_layout_below_one(columns, thumb):
    """columns or thumb below 1 is a ValueError that gives both values."""
    with pytest.raises(ValueError, match=rf"columns >= 1 and thumb >= 1, got columns={columns}, thumb={thumb}\."):
        contact_sheet([("a", torch.rand(1, 3, 8, 8))], columns=columns, thumb=thumb)


@pytest.mark.parametrize(
    ("image", "size"),
    [
        (torch.rand(1, 3, 8, 0), "0x8"),
        (torch.rand(3, 0, 8), "8x0"),
        (Image.new("RGB", (0, 4)), "0x4"),
        (Image.new("RGB", (6, 0)), "6x0"),
    ],
)
def test_contact_sheet_names_an_item_with_an_empty_side(image, size):
    """An image 0 px wide or high (tensor or PIL) is refused with its label and size, wherever it is in the list."""
    items = [("fine", torch.rand(1, 3, 8, 8)), ("hollow", image)]
    with pytest.raises(ValueError, match=rf"contact_sheet item 'hollow' is {size} px; give a non-empty image\."):
        contact_sheet(items)


def test_contact_sheet_takes_the_smallest_layout():
    """One column of 1 px thumbnails is the smallest sheet, not a refusal (the refusal is below 1)."""
    sheet = contact_sheet([("a", torch.rand(1, 3, 8, 8)), ("b", torch.rand(1, 3, 4, 8))], columns=1, thumb=1)
    assert sheet.width >= 1 and sheet.height > 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_written_pngs_have_a_new_files_permissions_and_replaced_ones_keep_theirs(tmp_path):
    """A new sheet gets what any new file gets under the umask (0644 under 022: readable, never executable);
    a sheet written over an existing file keeps that file's permissions."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "sheet.png"
        write_png(Image.new("RGB", (4, 4)), path)
        assert path.stat().st_mode & 0o7777 == 0o644
        os.chmod(path, 0o600)
        write_png(Image.new("RGB", (4, 4), (255, 0, 0)), path)
        assert path.stat().st_mode & 0o7777 == 0o600
        with Image.open(path) as im:
            assert im.getpixel((0, 0)) == (255, 0, 0)
        assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # no staging file left
    finally:
        os.umask(old)

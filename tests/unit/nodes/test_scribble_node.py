"""AST_ScribbleCanvas: reads the canvas's uploaded drawing back as a white-on-black hint, refuses bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from affordance.nodes import NODE_CLASS_MAPPINGS
from affordance.preprocessors.drawing import (
    DRAWING_MAX_SIDE,
    DrawingError,
    ink_from_pixels,
    parse_drawing_reference,
    read_drawing,
)

Node = NODE_CLASS_MAPPINGS["AST_ScribbleCanvas"]
REF = "affordance_scribbles/scribble_64x48_0123456789abcdef.png"


def write_drawing(input_dir: Path, ref: str, pixels: np.ndarray) -> Path:
    path = input_dir.joinpath(*ref.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def strokes(h: int = 48, w: int = 64) -> np.ndarray:
    a = np.zeros((h, w), np.uint8)
    a[10:14, 5:60] = 255  # a horizontal bar
    a[:, 30:32] = 255  # a vertical one
    return a


def test_widget_types_and_limits():
    spec = Node.INPUT_TYPES()
    assert list(spec["required"]) == ["width", "height", "drawing"]
    assert spec["required"]["drawing"][0] == "AST_SCRIBBLE"
    assert spec["required"]["width"][1]["max"] == DRAWING_MAX_SIDE == 4096
    assert spec["optional"]["background"][0] == "IMAGE"
    assert Node.RETURN_TYPES == ("IMAGE", "MASK")


def test_reads_the_drawing_as_white_on_black(stub_comfy):
    write_drawing(stub_comfy / "input", REF, strokes())
    assert Node.VALIDATE_INPUTS(64, 48, REF) is True
    out = Node().draw(64, 48, REF)
    image, mask = out["result"]
    assert image.shape == (1, 48, 64, 3) and image.dtype == torch.float32
    assert mask.shape == (1, 48, 64)
    expected = torch.from_numpy(strokes().astype(np.float32) / 255.0)
    assert torch.equal(mask[0], expected)
    assert torch.equal(image[0, ..., 0], expected) and torch.equal(image[0, ..., 2], expected)
    assert out["ui"] == {}


def test_size_change_crops_or_pads_top_left(stub_comfy):
    write_drawing(stub_comfy / "input", REF, strokes())
    small = Node().draw(32, 16, REF)["result"][1][0]
    assert torch.equal(small, torch.from_numpy(strokes()[:16, :32].astype(np.float32) / 255))
    big = Node().draw(80, 56, REF)["result"][1][0]
    assert big.shape == (56, 80) and big[48:].sum() == 0 and big[:, 64:].sum() == 0
    assert torch.equal(big[:48, :64], torch.from_numpy(strokes().astype(np.float32) / 255))


def test_rgba_and_grey_files_use_the_canvas_rule():
    px = np.array([[[200, 200, 200, 255], [200, 200, 200, 100], [255, 0, 0, 255], [0, 255, 0, 255]]], np.uint8)
    # the same four pixels as tests/js/strokes.test.mjs (luminance times alpha above half)
    assert ink_from_pixels(px).tolist() == [[True, False, False, True]]
    assert ink_from_pixels(np.array([[127, 128]], np.uint8)).tolist() == [[False, True]]
    # coloured pixels near the threshold: each channel's weight counts (0.299, 0.587, 0.114)
    near = np.array([[[0, 200, 255], [0, 180, 200], [0, 170, 200], [255, 88, 0], [255, 87, 0]]], np.uint8)
    assert ink_from_pixels(near).tolist() == [[True, True, False, True, False]]
    with pytest.raises(DrawingError, match="greyscale, RGB or RGBA"):
        ink_from_pixels(np.zeros((2, 2, 2), np.uint8))


def test_empty_canvas_is_black_at_the_node_size(stub_comfy):
    assert Node.VALIDATE_INPUTS(64, 32, "") is True
    image, mask = Node().draw(64, 32, "")["result"]
    assert image.shape == (1, 32, 64, 3) and image.sum() == 0 and mask.sum() == 0


def test_background_is_shown_for_tracing_never_drawn(stub_comfy):
    write_drawing(stub_comfy / "input", REF, strokes())
    bg = torch.rand(2, 40, 50, 3)
    out = Node().draw(64, 48, REF, background=bg)
    (record,) = out["ui"]["ast_background"]
    assert record["type"] == "temp"
    with Image.open(stub_comfy / "temp" / record["filename"]) as im:
        assert im.size == (50, 40)
    assert torch.equal(out["result"][1][0], torch.from_numpy(strokes().astype(np.float32) / 255))
    with pytest.raises(DrawingError, match="background must be a ComfyUI IMAGE"):
        Node().draw(64, 48, REF, background=torch.rand(40, 50))


@pytest.mark.parametrize(("shape", "channel_of"), [((1, 40, 50, 3), (0, 1, 2)), ((1, 40, 50, 4), (0, 1, 2)),
                                                   ((1, 40, 50, 1), (0, 0, 0)), ((3, 40, 50, 1), (0, 0, 0))])
def test_backgrounds_of_one_image_grey_or_rgba_preview_their_first_image_in_rgb(stub_comfy, shape, channel_of):
    torch.manual_seed(0)
    bg = torch.rand(shape)
    (record,) = Node().draw(64, 48, "", background=bg)["ui"]["ast_background"]
    with Image.open(stub_comfy / "temp" / record["filename"]) as im:
        assert (im.mode, im.size) == ("RGB", (50, 40))
        shown = np.asarray(im)
    expected = (bg[0, :, :, list(channel_of)] * 255).round().numpy()
    assert np.abs(shown.astype(np.float32) - expected).max() <= 1  # the first image, its RGB (alpha dropped)


@pytest.mark.parametrize("background", [[[1.0]], np.zeros((1, 4, 4, 3)), torch.zeros(0, 4, 4, 3), torch.zeros(1, 4, 4, 2)])
def test_a_background_that_is_not_an_image_is_named(stub_comfy, background):
    with pytest.raises(DrawingError, match=r"background must be a ComfyUI IMAGE \(batch, height, width, channels\), got "):
        Node().draw(64, 48, "", background=background)


def test_missing_unsafe_and_oversized_drawings_are_refused(stub_comfy):
    msg = Node.VALIDATE_INPUTS(64, 48, REF)
    assert "is not in ComfyUI's input folder" in msg and "draw it anew" in msg
    # a final line end passed a '$' pattern (the editor refused it; found by fuzzing both parsers)
    bad_names = ("../outside.png", "/etc/passwd", "a//b.png", "a\\b.png", "affordance_scribbles/é.png", REF + "\n")
    for bad in bad_names:
        assert "is not a path the canvas reads: only a relative path of names" in Node.VALIDATE_INPUTS(64, 48, bad)
        with pytest.raises(DrawingError):
            parse_drawing_reference(bad)
    assert "larger than the maximum of 4096x4096 pixels: width is 5000" in Node.VALIDATE_INPUTS(5000, 48, "")
    big = "affordance_scribbles/huge.png"
    path = write_drawing(stub_comfy / "input", big, np.zeros((8, DRAWING_MAX_SIDE + 8), np.uint8))
    with pytest.raises(DrawingError, match=r"is 4104x8 pixels, larger than the maximum"):
        read_drawing(path, 64, 48)
    # the largest drawing the canvas makes is read (cropped to the size asked for), on either side
    for shape in ((8, DRAWING_MAX_SIDE), (DRAWING_MAX_SIDE, 8)):
        ink = np.zeros(shape, np.uint8)
        ink[:, :2] = 255
        path = write_drawing(stub_comfy / "input", "affordance_scribbles/largest.png", ink)
        want = torch.zeros(48, 64)
        want[: shape[0], :2] = 1.0
        assert torch.equal(read_drawing(path, 64, 48), want)
    (stub_comfy / "input" / "affordance_scribbles" / "junk.png").write_bytes(b"not a png")
    with pytest.raises(DrawingError, match="cannot be read as an image"):
        Node().draw(64, 48, "affordance_scribbles/junk.png")


def test_symlink_out_of_the_input_folder_is_refused(stub_comfy, tmp_path):
    outside = tmp_path / "elsewhere.png"
    Image.fromarray(strokes()).save(outside)
    (stub_comfy / "input").mkdir(exist_ok=True)
    (stub_comfy / "input" / "link.png").symlink_to(outside)
    assert "outside ComfyUI's input folder" in Node.VALIDATE_INPUTS(64, 48, "link.png")


def test_is_changed_follows_the_file_content(stub_comfy):
    path = write_drawing(stub_comfy / "input", REF, strokes())
    first = Node.IS_CHANGED(64, 48, REF)
    assert Node.IS_CHANGED(64, 48, REF) == first
    a = strokes()
    a[40:, :] = 255
    Image.fromarray(a).save(path)
    assert Node.IS_CHANGED(64, 48, REF) != first
    assert Node.IS_CHANGED(64, 48, "") != Node.IS_CHANGED(64, 40, "")


def test_decompression_bomb_drawing_is_a_drawing_error(tmp_path):
    """A tiny PNG whose header claims 16384x16384 px: PIL's own bomb check fires before ours."""
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("1", (16384, 16384)).save(path)
    with pytest.raises(DrawingError, match="cannot be read as an image .*decompression bomb"):
        read_drawing(path, 64, 48)


def test_16_bit_drawing_keeps_its_range(tmp_path):
    """A nearly black 16-bit file used to become all ink (PIL's 8-bit conversion clips 1000 to 255)."""
    import numpy as np
    from PIL import Image

    path = tmp_path / "dark16.png"
    arr = np.full((16, 16), 1000, np.uint16)
    arr[:, 8:] = 60000  # right half nearly white: ink
    Image.fromarray(arr).save(path)
    out = read_drawing(path, 16, 16)
    assert out[:, :8].sum() == 0 and out[:, 8:].eq(1).all()


@pytest.mark.parametrize(
    "ref, detail",
    [
        ("a" * 300 + ".png", "a part of it is 304 bytes, more than the 255 a file name may have"),
        ("/".join(["a"] * 3000) + ".png", "the whole path is"),
        ("c" * 252 + ".png", "a part of it is 256 bytes, more than the 255"),  # one byte too long
        ("/".join(["b" * 255] * 20 + ["x.png"]), "the whole path is"),  # 255-byte parts are allowed names
    ],
    ids=["long-name", "long-path", "name-one-byte-too-long", "long-path-of-longest-names"],
)
def test_a_name_too_long_for_the_file_system_is_a_clear_message(stub_comfy, ref, detail):
    """Allowed characters, but more than the file system takes: was a bare OSError ("[Errno 36] File name too
    long") from the lookup at validation."""
    (stub_comfy / "input").mkdir(exist_ok=True)
    msg = Node.VALIDATE_INPUTS(64, 48, ref)
    assert isinstance(msg, str) and "cannot be used: its name is too long for the file system" in msg, msg
    assert detail in msg and "Clear the canvas and draw again" in msg and len(msg) < 400
    with pytest.raises(DrawingError, match="its name is too long"):
        Node().draw(64, 48, ref)


def test_a_symlink_loop_is_a_clear_message(stub_comfy):
    (stub_comfy / "input").mkdir(exist_ok=True)
    (stub_comfy / "input" / "loop.png").symlink_to("loop.png")
    assert "it is a symbolic link that loops back on itself" in Node.VALIDATE_INPUTS(64, 48, "loop.png")


def test_a_symlink_loop_is_named_where_resolve_does_not_raise(stub_comfy, monkeypatch):
    """From Python 3.13 a lenient ``Path.resolve`` returns a looping link as it is and ``Path.is_file`` answers
    False for it (3.14: for every OSError): the lookup must still say what is wrong, not "not in the folder"."""
    (stub_comfy / "input").mkdir(exist_ok=True)
    (stub_comfy / "input" / "loop.png").symlink_to("loop.png")
    monkeypatch.setattr(Path, "resolve", lambda self, strict=False: Path(os.path.abspath(self)))
    assert "it is a symbolic link that loops back on itself" in Node.VALIDATE_INPUTS(64, 48, "loop.png")


def _png_chunks(data: bytes) -> list[list[bytes]]:
    import struct

    out, pos = [], 8
    while pos < len(data):
        n = struct.unpack(">I", data[pos : pos + 4])[0]
        out.append([data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]])
        pos += 12 + n
    return out


def _png_from_chunks(chunks: list[list[bytes]]) -> bytes:
    import struct
    import zlib

    body = b"".join(struct.pack(">I", len(x)) + t + x + struct.pack(">I", zlib.crc32(t + x)) for t, x in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


def test_damaged_drawing_files_are_drawing_errors(tmp_path, damaged_copies):
    """PIL raises ValueError, SyntaxError or TypeError for some damaged files; they escaped the node untyped
    (found by fuzzing the image readers): a truncated header chunk, a transparency chunk longer than the palette."""
    import io

    def png(im: Image.Image, **kw) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "PNG", **kw)
        return buf.getvalue()

    chunks = _png_chunks(png(Image.new("L", (40, 24))))
    chunks[0][1] = chunks[0][1][:5]  # IHDR of 5 bytes, CRC correct: ValueError
    long_trns = [[t, x + bytes(300) if t == b"tRNS" else x] for t, x in _png_chunks(png(Image.new("P", (40, 24)), transparency=0))]
    path = tmp_path / "drawing.png"
    for data in (_png_from_chunks(chunks), _png_from_chunks(long_trns)):
        path.write_bytes(data)
        with pytest.raises(DrawingError, match=r"the drawing file drawing.png is damaged \(ValueError: "):
            read_drawing(path, 64, 48)
    escaped = []
    for what, data in damaged_copies(png(Image.fromarray(strokes())), 3, 200):
        path.write_bytes(data)
        try:
            read_drawing(path, 64, 48)
        except DrawingError:
            pass
        except Exception as exc:  # noqa: BLE001 - what this test looks for
            escaped.append(f"{what}: {type(exc).__name__}: {exc}")
    assert escaped == []


def test_drawing_sizes_below_the_minimum_are_refused():
    from affordance.preprocessors.drawing import DRAWING_MIN_SIDE, check_drawing_size

    assert check_drawing_size(DRAWING_MIN_SIDE, 64.0) == (DRAWING_MIN_SIDE, 64)
    for size in [(DRAWING_MIN_SIDE - 1, 64), (64, 4)]:
        with pytest.raises(DrawingError, match=rf"must be at least {DRAWING_MIN_SIDE} pixels, got"):
            check_drawing_size(*size)

"""Number text and message quoting shared by the nodes and mirrored by the editor (web/js/lib/parse.js)."""

from __future__ import annotations

import pytest

from affordance.controlnet.numbers import CLIP, clip, parse_float, quoted


def test_clip_keeps_up_to_80_characters_and_cuts_longer_text_around_an_ellipsis():
    assert CLIP == 80
    assert clip("x" * 80) == "x" * 80
    cut = clip("a" * 60 + "m" * 5 + "z" * 16)  # 81 characters
    assert cut == "a" * 60 + "..." + "z" * 16 and len(cut) == 79
    assert quoted("\u00e9" * 81) == ascii("\u00e9" * 60 + "..." + "\u00e9" * 16)
    assert quoted(1.5) == "1.5"


def test_parse_float_refuses_characters_beyond_the_bmp():
    assert parse_float("\u0661.5") == 1.5  # an Arabic-Indic digit, as float() reads it
    with pytest.raises(ValueError, match="could not convert string to float"):
        parse_float("\U0001d7d9")  # a mathematical digit one: float() knows it, a browser may not

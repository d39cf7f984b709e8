"""Text typed into widgets: numbers read with Python's ``float()``, alike in every supported Python and in the
editor, and that text quoted in messages.

The editor's plots (``web/js/lib/parse.js``) accept and refuse exactly what this does, with the same messages.
"""

from __future__ import annotations

BMP_END = 0xFFFF  # the last code point of Unicode's Basic Multilingual Plane


def parse_float(text: str) -> float:
    """``float(text)``, except that characters beyond Unicode's Basic Multilingual Plane are refused.

    ``float()`` reads any Unicode decimal digit (ASCII, Arabic-Indic, full-width...). Unicode adds new digits
    with most versions, all of them beyond the BMP since Unicode 6, and which ones ``float()`` knows depends on
    the Python version (3.10 has Unicode 13, 3.13 has 15.1), as the editor's depends on the browser: refusing
    them makes every Python and every browser agree. The 370 decimal digits of the BMP are the same in all.

    Raises:
        ValueError: what ``float()`` refuses, or a character beyond the BMP.
    """
    if any(ord(c) > BMP_END for c in text):
        raise ValueError(f"could not convert string to float: {text!r}")
    return float(text)


CLIP = 80  # longest text a message quotes whole


def clip(text: str) -> str:
    """``text`` whole up to ``CLIP`` characters, else its first 60 and last 16 around '...' (a value linked from
    another node can be a megabyte long, and ComfyUI shows the whole message)."""
    return text if len(text) <= CLIP else f"{text[:60]}...{text[-16:]}"


def quoted(value: object) -> str:
    """``ascii(value)`` for a message, text clipped (:func:`clip`): every non-ASCII character escaped, so the
    message reads the same in every Python and browser and invisible characters show."""
    return ascii(clip(value) if isinstance(value, str) else value)

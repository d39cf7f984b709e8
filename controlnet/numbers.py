"""Numbers typed into widgets: Python's ``float()``, read alike by every supported Python and by the editor.

The editor's plots (``web/js/lib/parse.js``) accept and refuse exactly what this does.
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

// Python's text-to-number rules in JavaScript, so the plots accept and refuse exactly what the backend
// does (controlnet/weights.py and controlnet/schedule.py). Pure: no DOM, no ComfyUI; runs under Node.

// Characters Python's str.isspace() accepts (str.split() and str.strip() use the same set).
const PY_SPACES = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002,
  0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

const ND = /^\p{Nd}$/u;
const BMP_END = 0xffff; // the last code point of Unicode's Basic Multilingual Plane
const ASCII_SPACES = new Set([" ", "\t", "\n", "\v", "\f", "\r"]);
const FLOAT_SYNTAX = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan)$/i;

/**
 * ``String(value)``, or ``"[object Object]"``-style text where that conversion throws: a hand-edited workflow
 * can put an object such as ``{"toString": 0}`` in a widget value or a node property.
 */
export function toText(value) {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** ``Number(value)``, or NaN where that conversion throws (see ``toText``). */
export function toNumber(value) {
  try {
    return Number(value);
  } catch {
    return NaN;
  }
}

/** Whether a one-code-point string is whitespace for Python's str.isspace(). */
export function isPySpace(ch) {
  return PY_SPACES.has(ch.codePointAt(0));
}

/** Python's ``text.split()`` (no argument): split on runs of whitespace, drop empty pieces. */
export function pySplit(text) {
  const out = [];
  let cur = "";
  for (const ch of text) {
    if (isPySpace(ch)) {
      if (cur) out.push(cur);
      cur = "";
    } else {
      cur += ch;
    }
  }
  if (cur) out.push(cur);
  return out;
}

/** Python's ``text.strip()`` (no argument). */
export function pyStrip(text) {
  const chars = [...text];
  let a = 0;
  let b = chars.length;
  while (a < b && isPySpace(chars[a])) a++;
  while (b > a && isPySpace(chars[b - 1])) b--;
  return chars.slice(a, b).join("");
}

// Value of a Unicode decimal digit (category Nd). Unicode encodes them in runs of ten, 0 to 9, so the
// value is the distance from the start of the run, modulo ten (some runs of ten abut each other).
function digitValue(cp) {
  let start = cp;
  while (start > 0 && ND.test(String.fromCodePoint(start - 1))) start--;
  return (cp - start) % 10;
}

/**
 * The backend's ``parse_float(text)`` (controlnet/numbers.py): Python's ``float(text)``, refusing characters
 * beyond Unicode's Basic Multilingual Plane; the number, or ``null`` where Python raises ValueError.
 *
 * Follows CPython: non-ASCII Unicode whitespace and decimal digits count as their ASCII forms, underscores
 * are allowed only between digits, surrounding ASCII whitespace is ignored, "inf", "infinity" and "nan" are
 * read in any case with an optional sign. Numbers too large become +-Infinity, as in Python. Decimal digits
 * beyond the BMP, which Unicode keeps adding (so browsers and Python versions know different ones), are
 * refused, as the backend refuses them.
 */
export function pyFloat(text) {
  let ascii = "";
  for (const ch of toText(text)) {
    const cp = ch.codePointAt(0);
    if (cp <= 127) ascii += ch; // CPython keeps ASCII as it is: \x1c-\x1f are not surrounding whitespace there
    else if (cp > BMP_END) ascii += "?"; // digits beyond the BMP depend on the Unicode version: refused, as in Python
    else if (PY_SPACES.has(cp)) ascii += " ";
    else if (ND.test(ch)) ascii += String(digitValue(cp));
    else ascii += "?";
  }
  if (ascii.includes("\0")) return null;
  if (ascii.includes("_")) {
    let kept = "";
    let prev = "";
    for (const ch of ascii) {
      const digit = ch >= "0" && ch <= "9";
      if (ch === "_" && !(prev >= "0" && prev <= "9")) return null;
      if (ch !== "_" && prev === "_" && !digit) return null;
      if (ch !== "_") kept += ch;
      prev = ch;
    }
    if (prev === "_") return null;
    ascii = kept;
  }
  let a = 0;
  let b = ascii.length;
  while (a < b && ASCII_SPACES.has(ascii[a])) a++;
  while (b > a && ASCII_SPACES.has(ascii[b - 1])) b--;
  const s = ascii.slice(a, b);
  if (!FLOAT_SYNTAX.test(s)) return null;
  const body = s.replace(/^[+-]/, "").toLowerCase();
  const sign = s.startsWith("-") ? -1 : 1;
  if (body === "nan") return NaN;
  if (body === "inf" || body === "infinity") return sign * Infinity;
  return Number(s);
}

/**
 * Python's ``ascii(str)``: quoted, every character outside printable ASCII escaped (for error messages).
 * Unlike ``repr``, it does not depend on which characters a Unicode version knows, so the backend's messages
 * and the editor's read the same in every Python and browser, and invisible characters show.
 */
export function pyAscii(text) {
  const s = toText(text);
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (ch === "\\") out += "\\\\";
    else if (ch === quote) out += "\\" + quote;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (cp >= 0x20 && cp < 0x7f) out += ch;
    else if (cp < 0x100) out += "\\x" + cp.toString(16).padStart(2, "0");
    else if (cp < 0x10000) out += "\\u" + cp.toString(16).padStart(4, "0");
    else out += "\\U" + cp.toString(16).padStart(8, "0");
  }
  return quote + out + quote;
}

/** Longest text a message quotes whole (controlnet/numbers.py's CLIP). */
const CLIP = 80;

/** ``text`` whole up to 80 characters (code points, as Python counts), else its first 60 and last 16 around '...'. */
export function clip(text) {
  const chars = [...text];
  return chars.length <= CLIP ? text : chars.slice(0, 60).join("") + "..." + chars.slice(-16).join("");
}

/** The backend's ``quoted(value)``: Python's ``ascii()`` of the value for a message, text clipped. */
export function quoted(value) {
  return pyAscii(typeof value === "string" ? clip(value) : value);
}

/** Roughly Python's ``repr(float)``: "1.0", "0.25", "1e-05", "inf" (for error messages). */
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, e] = x.toExponential().split("e");
  const exp = Number(e);
  if (exp < -4 || exp >= 16) return `${mantissa}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  const s = String(x);
  return s.includes(".") || s.includes("e") ? s : s + ".0";
}

/**
 * Compact text for a number written back into a widget: rounded to ``decimals`` places, trailing zeros
 * trimmed ("1", "0.5", "0.099"); never "-0". Values too large to round keep their full digits.
 */
export function formatNumber(x, decimals = 3) {
  const scale = 10 ** decimals;
  const r = Math.abs(x) < 1e15 ? Math.round(x * scale) / scale : x;
  return String(r); // String(-0) is "0"
}

/** Round to ``decimals`` places (the value the formatted text parses back to). */
export function roundTo(x, decimals = 3) {
  return Number(formatNumber(x, decimals));
}

/** ``x`` limited to ``[lo, hi]``. */
export function clamp(x, lo, hi) {
  return Math.min(hi, Math.max(lo, x));
}

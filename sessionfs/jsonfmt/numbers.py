"""JavaScript numbers: ``Number::toString`` for ints and floats, and the pass that corrects
the number tokens in orjson output to what ``JSON.stringify`` prints."""

from __future__ import annotations

import re

__all__ = [
    "fix_numbers_compact",
    "fix_numbers_indented",
    "js_float",
    "js_int",
    "js_number_token",
    "numbers_like_javascript",
]

_MAX_SAFE_INT = 2**53
_INF = float("inf")

# --------------------------------------------------------------------------------------------
# Numbers: ECMAScript Number::toString
# --------------------------------------------------------------------------------------------


def js_float(x: float) -> str:
    """``String(x)`` in JavaScript; non-finite values become ``null`` as in JSON.stringify."""
    if x != x or x == _INF or x == -_INF:
        return "null"
    if x == 0.0:
        return "0"  # also -0.0: JSON.stringify(-0) is "0"
    r = float.__repr__(x)
    if "e" not in r:
        # Python uses fixed notation for 1e-4 <= |x| < 1e16, where JavaScript does too; the
        # digits (shortest round trip) are the same, only Python adds ".0" to integers.
        return r[:-2] if r.endswith(".0") else r
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mantissa, _, exp = r.partition("e")
    int_part, _, frac = mantissa.partition(".")
    digits = (int_part + frac).lstrip("0")
    s = digits.rstrip("0")
    k = len(s)
    # value = s * 10**(n - k)
    n = int(exp) - len(frac) + (len(digits) - k) + k
    if k <= n <= 21:
        return sign + s + "0" * (n - k)
    if 0 < n <= 21:
        return sign + s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + s
    e = n - 1
    e_str = f"e+{e}" if e >= 0 else f"e-{-e}"
    if k == 1:
        return sign + s + e_str
    return sign + s[0] + "." + s[1:] + e_str


def js_int(i: int) -> str:
    """A Python int as JavaScript prints the double ``JSON.parse`` would have made of it."""
    if -_MAX_SAFE_INT <= i <= _MAX_SAFE_INT:
        return int.__repr__(i)
    try:
        return js_float(float(i))
    except OverflowError:  # beyond the double range: JSON.parse gives ±Infinity
        return "null"


def js_number_token(tok: bytes) -> bytes:
    """Re-format one number token of orjson output (a float, or an int of 16+ digits)."""
    if b"." in tok or b"e" in tok or b"E" in tok:
        return js_float(float(tok)).encode()
    return js_int(int(tok)).encode()


# Indented output puts every scalar on a line of its own, so a line that ends in a digit
# (plus an optional ',') ends in a number token, preceded by a space: strings end in '"',
# literals in letters, containers in brackets. Searched in the REVERSED output, where such a
# line starts with a literal '\n' that the regex engine finds fast. Only tokens that may need
# JavaScript formatting match: floats (with '.' or 'e') and integers of 16+ digits; a
# negative integer matches too and is left as it is.
_NUMBER_LINE_REVERSED = re.compile(rb"\n,?([0-9]+(?:[.e+\-][0-9.e+\-]*|(?<=[0-9]{16})-?)) ")

# Compact output has no such layout: walk it token by token, skipping strings, structure and
# integers of at most 15 digits (always exact), stopping at each number that may need fixing
# or where the walk ends. Linear time without possessive quantifiers (broken before CPython
# 3.11.5, gh-106052; Debian 12 has 3.11.2): each alternative of the walk is told apart by its
# first byte, so no iteration can match another way, and the tail after the walk always
# matches (a number, or nothing: group 1 None), so the engine never backtracks into the walk.
_NUMBER_TO_FIX = re.compile(
    rb'(?s)(?:[^"0-9\-]+|"[^"\\]*(?:\\.[^"\\]*)*"|-?[0-9]{1,15}(?![0-9.eE]))*'
    rb"(?:(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|)"
)
# Cheap pre-check: no digit followed by '.', 'e' or a 16th digit anywhere -> nothing to fix.
_MAYBE_NUMBER_TO_FIX = re.compile(rb"[0-9](?:[.eE]|[0-9]{15})")


def fix_numbers_indented(out: bytes) -> bytes:
    rev = out[::-1]
    size = len(out)
    fixes = []
    for m in _NUMBER_LINE_REVERSED.finditer(rev):
        tok = m.group(1)[::-1]
        new = js_number_token(tok)
        if new != tok:
            fixes.append((size - m.end(1), size - m.start(1), new))
    if not fixes:
        return out
    parts: list[bytes] = []
    last = 0
    for start, end, new in reversed(fixes):
        parts.append(out[last:start])
        parts.append(new)
        last = end
    parts.append(out[last:])
    return b"".join(parts)


# A line of indented output that ends in a number token (a digit, then ',' or nothing): the
# regex engine finds the literal '\n' fast and looks back two or three bytes from each.
_NUMBER_LINE_END = re.compile(rb"\n(?:(?<=[0-9],\n)|(?<=[0-9]\n))")


def numbers_like_javascript(out: bytes) -> bool:
    """Whether indented output already writes every number as JavaScript does
    (``fix_numbers_indented(out) is out``), without building the fixed copy: a forward scan of
    the line ends (2.5x faster than reversing the text for :data:`_NUMBER_LINE_REVERSED`)."""
    for match in _NUMBER_LINE_END.finditer(out):
        end = match.start()
        if out[end - 1] == 0x2C:  # ','
            end -= 1
        token = out[out.rfind(b" ", 0, end) + 1:end]  # every scalar follows a space
        if (len(token) >= 16 or b"." in token or b"e" in token or b"E" in token) \
                and js_number_token(token) != token:
            return False
    return True


def fix_numbers_compact(out: bytes) -> bytes:
    if _MAYBE_NUMBER_TO_FIX.search(out) is None:
        return out
    parts: list[bytes] = []
    last = 0
    for m in _NUMBER_TO_FIX.finditer(out):
        tok = m.group(1)
        if tok is None:
            break
        new = js_number_token(tok)
        if new != tok:
            parts.append(out[last : m.start(1)])
            parts.append(new)
            last = m.end(1)
    if not parts:
        return out
    parts.append(out[last:])
    return b"".join(parts)


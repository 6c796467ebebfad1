"""JSON exactly as openclaw's Node.js writes and reads it.

openclaw writes its store with ``JSON.stringify(store, null, 2)``. To leave a file it did not
change byte for byte as it was, sessionfs has to produce the same bytes. Python's ``json`` and
plain ``orjson`` differ from JavaScript in number formatting, in key order (JavaScript puts
array-index keys first) and in lone surrogates. This module matches JavaScript:

* :func:`stringify` / :func:`dumps`: ``JSON.stringify(value, null, indent)``. orjson does the
  work; its output is then checked with regular expressions and corrected where it would
  differ. Only the subtrees that orjson cannot do exactly go through a pure-Python encoder.
* :func:`loads`: fast, strict parsing of store files (orjson, then the standard library for
  what orjson refuses but ``JSON.parse`` accepts).
* :func:`parse_document`: the strictest parse, for bytes a user writes (no duplicate keys, depth
  limit, no BOM, UTF-8 errors reported by byte offset).
* :class:`PrefixChecker`: an incremental syntax check, so that a FUSE ``write()`` can fail as
  soon as the bytes written so far can no longer become valid JSON.
"""

from __future__ import annotations

import codecs
import enum
import json
import re
import uuid
from itertools import accumulate
from json.encoder import encode_basestring as _encode_basestring  # C accelerated
from typing import Any

import orjson

from sessionfs.errors import InvalidJSON

__all__ = ["PrefixChecker", "dumps", "loads", "parse_document", "stringify"]

DEFAULT_MAX_DEPTH = 512

_MAX_SAFE_INT = 2**53
_MAX_ARRAY_INDEX = 2**32 - 2
_INF = float("inf")

# --------------------------------------------------------------------------------------------
# Numbers: ECMAScript Number::toString
# --------------------------------------------------------------------------------------------


def _js_float(x: float) -> str:
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


def _js_int(i: int) -> str:
    """A Python int as JavaScript prints the double ``JSON.parse`` would have made of it."""
    if -_MAX_SAFE_INT <= i <= _MAX_SAFE_INT:
        return int.__repr__(i)
    try:
        return _js_float(float(i))
    except OverflowError:  # beyond the double range: JSON.parse gives ±Infinity
        return "null"


def _js_number_token(tok: bytes) -> bytes:
    """Re-format one number token of orjson output (a float, or an int of 16+ digits)."""
    if b"." in tok or b"e" in tok or b"E" in tok:
        return _js_float(float(tok)).encode()
    return _js_int(int(tok)).encode()


# --------------------------------------------------------------------------------------------
# Strings and keys
# --------------------------------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")
_INDEX_KEY = re.compile(r"0|[1-9][0-9]{0,9}")


def _fix_surrogate(m: re.Match[str]) -> str:
    s = m.group()
    if len(s) == 2:  # a pair is one UTF-16 character for JavaScript
        return chr(0x10000 + ((ord(s[0]) - 0xD800) << 10) + (ord(s[1]) - 0xDC00))
    return f"\\u{ord(s):04x}"


def _fix_surrogates(text: str) -> str:
    """Escape lone surrogates as JavaScript does (ES2019 well-formed JSON.stringify)."""
    if text.isascii() or not _SURROGATES.search(text):
        return text
    return _SURROGATES.sub(_fix_surrogate, text)


def _is_array_index(key: str) -> bool:
    return _INDEX_KEY.fullmatch(key) is not None and int(key) <= _MAX_ARRAY_INDEX


def _js_items(d: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """Items in JavaScript property order: array indices ascending, then insertion order."""
    items = list(d.items())
    index_keys = [
        kv
        for kv in items
        if isinstance(kv[0], str) and kv[0][:1].isdigit() and _is_array_index(kv[0])
    ]
    if not index_keys:
        return items
    index_keys.sort(key=lambda kv: int(kv[0]))
    return index_keys + [
        kv for kv in items if not (isinstance(kv[0], str) and _is_array_index(kv[0]))
    ]


# --------------------------------------------------------------------------------------------
# stringify
# --------------------------------------------------------------------------------------------

# datetime and dataclasses are JSON to orjson but not to us: send them to the pure-Python
# encoder, which raises TypeError. (orjson always serialises uuid.UUID and enum members; the
# pure-Python encoder mirrors that so the output never depends on the path taken.)
_ORJSON_COMPACT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_ORJSON_INDENT = _ORJSON_COMPACT | orjson.OPT_INDENT_2

# A key that is an array index (or a 10-digit number that might be one) in orjson output.
# Indented: every key starts its own line. Compact: every key follows "{" or ",". A content
# quote is always escaped (\"), so neither pattern can start inside a string.
_INDEX_KEY_INDENTED = re.compile(rb'\n *"(?:0|[1-9][0-9]{0,9})": ')
_INDEX_KEY_COMPACT = re.compile(rb'[{,]"(?:0|[1-9][0-9]{0,9})":')

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


def _fix_numbers_indented(out: bytes) -> bytes:
    rev = out[::-1]
    size = len(out)
    fixes = []
    for m in _NUMBER_LINE_REVERSED.finditer(rev):
        tok = m.group(1)[::-1]
        new = _js_number_token(tok)
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


def _fix_numbers_compact(out: bytes) -> bytes:
    if _MAYBE_NUMBER_TO_FIX.search(out) is None:
        return out
    parts: list[bytes] = []
    last = 0
    for m in _NUMBER_TO_FIX.finditer(out):
        tok = m.group(1)
        if tok is None:
            break
        new = _js_number_token(tok)
        if new != tok:
            parts.append(out[last : m.start(1)])
            parts.append(new)
            last = m.end(1)
    if not parts:
        return out
    parts.append(out[last:])
    return b"".join(parts)


def _fast(value: Any, gap: str) -> bytes | None:
    """orjson output for a container when it can be made exact, else None.

    orjson matches JSON.stringify for strings (same escapes: short forms, lowercase \\u00XX,
    raw U+2028/U+007F) and layout (two spaces, ``": "``, empty ``{}``/``[]``). It differs in
    numbers (fixed by ``_fix_numbers_*``) and key order (array-index keys -> None); lone
    surrogates, ints beyond 64 bits, depth over 254 and foreign types make it raise (-> None).
    """
    if gap == "  ":
        option, index_key, fix = _ORJSON_INDENT, _INDEX_KEY_INDENTED, _fix_numbers_indented
    elif not gap:
        option, index_key, fix = _ORJSON_COMPACT, _INDEX_KEY_COMPACT, _fix_numbers_compact
    else:
        return None
    try:
        out = orjson.dumps(value, option=option)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return None
    if index_key.search(out) is not None:
        return None
    fixed = fix(out)
    # orjson over-allocates the bytes it returns (~8 KB for a 500-byte entry) and never
    # shrinks them; a copy is exact-size (100k cached entries: 1.1 GB -> ~200 MB).
    return bytes(memoryview(fixed)) if fixed is out else fixed


_END = object()


def _scalar(value: Any) -> str | None:
    """The JSON text of a scalar, or None for a container."""
    if isinstance(value, str):
        return _encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return _js_int(value)
    if isinstance(value, float):
        return _js_float(value)
    if isinstance(value, (dict, list, tuple)):
        return None
    if isinstance(value, uuid.UUID):
        return f'"{value}"'
    if isinstance(value, enum.Enum):
        return _scalar(value.value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encode(value: Any, gap: str, fast: bool = True) -> str:
    """The pure-Python encoder, iterative so that depth is no problem.

    With ``fast``, nested containers still try orjson first, so only the subtrees orjson
    cannot do exactly (and their ancestors) are encoded here.
    """
    out: list[str] = []
    emit = out.append
    sep = ": " if gap else ":"
    # One frame per open container: [members iterator, is_dict, level of members, first?]
    stack: list[list[Any]] = []
    level = 0
    while True:
        text = _scalar(value)
        if text is not None:
            emit(text)
        else:
            while isinstance(value, enum.Enum):  # an enum member holding a container
                value = value.value
            if isinstance(value, tuple):
                value = list(value)
            fast_out = _fast(value, gap) if level and fast else None
            if fast_out is not None:
                text = fast_out.decode()
                emit(text.replace("\n", "\n" + gap * level) if gap else text)
            elif isinstance(value, dict):
                if not value:
                    emit("{}")
                else:
                    items = _js_items(value)
                    for key, _ in items:
                        if not isinstance(key, str):
                            raise TypeError(f"keys must be str, not {type(key).__name__}")
                    emit("{")
                    stack.append([iter(items), True, level + 1, True])
            elif not value:
                emit("[]")
            else:
                emit("[")
                stack.append([iter(value), False, level + 1, True])
        # Find the next value to write, closing finished containers.
        while stack:
            frame = stack[-1]
            member = next(frame[0], _END)
            if member is _END:
                stack.pop()
                close = "}" if frame[1] else "]"
                emit("\n" + gap * (frame[2] - 1) + close if gap else close)
                continue
            if frame[3]:
                frame[3] = False
            else:
                emit(",")
            level = frame[2]
            if gap:
                emit("\n" + gap * level)
            if frame[1]:
                key, value = member
                emit(_encode_basestring(key) + sep)
            else:
                value = member
            break
        else:
            return "".join(out)


def _gap(indent: int | None) -> str:
    if indent is None:
        return ""
    if isinstance(indent, bool) or not isinstance(indent, int):
        raise TypeError(f"indent must be an int or None, not {type(indent).__name__}")
    return " " * min(10, indent) if indent >= 1 else ""  # JavaScript clamps to 10


def stringify(value: Any, indent: int | None = 2) -> str:
    """``JSON.stringify(value, null, indent)``, byte for byte as Node.js writes it.

    ``value`` is made of dict (str keys), list, str, int, float, bool and None; anything else
    raises TypeError. ``indent=None`` (or < 1) gives the compact form, and indents above 10
    are clamped to 10 as in JavaScript.
    """
    gap = _gap(indent)
    if isinstance(value, (dict, list)):
        fast = _fast(value, gap)
        if fast is not None:
            return fast.decode()
    return _fix_surrogates(_encode(value, gap))


def dumps(value: Any, indent: int | None = 2) -> bytes:
    """:func:`stringify` as UTF-8 bytes, the form written to disk."""
    gap = _gap(indent)
    if isinstance(value, (dict, list)):
        fast = _fast(value, gap)
        if fast is not None:
            return fast
    return _fix_surrogates(_encode(value, gap)).encode()


def _stringify_pure(value: Any, indent: int | None = 2) -> str:
    """The pure-Python encoder alone (no orjson anywhere); for tests and comparisons."""
    return _fix_surrogates(_encode(value, _gap(indent), fast=False))


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_BOM = b"\xef\xbb\xbf"
_WS = b" \t\n\r"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _location(text: bytes, offset: int) -> str:
    """'line L column C (byte N)', the column counted in characters."""
    line_start = text.rfind(b"\n", 0, offset) + 1
    line = text.count(b"\n", 0, offset) + 1
    column = len(text[line_start:offset].decode("utf-8", "replace")) + 1
    return f"line {line} column {column} (byte {offset})"


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return bytes(data)


def _diagnose(data: bytes, max_depth: int | None) -> InvalidJSON | None:
    """The first problem in ``data`` as a precise InvalidJSON, or None if it is valid JSON."""
    if not data.strip(_WS):
        return InvalidJSON("empty")
    if data.startswith(_BOM):
        return InvalidJSON(
            "starts with a UTF-8 byte order mark (BOM), which JSON does not allow; "
            "save the file as UTF-8 without BOM"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InvalidJSON(f"not valid UTF-8 at byte {exc.start} ({_location(data, exc.start)})")
    checker = PrefixChecker(max_depth=max_depth if max_depth is not None else 1 << 62)
    try:
        checker.feed(data)
        checker.finish()
    except InvalidJSON as exc:
        pos, what = checker._error_at
        return InvalidJSON(f"{what} at {_location(data, pos)}") if pos >= 0 else exc
    return None


def _problem(data: bytes, max_depth: int | None) -> InvalidJSON:
    """:func:`_diagnose` for data already known to be bad."""
    problem = _diagnose(data, max_depth)
    if problem is None:  # pragma: no cover - callers only come here with bad data
        raise AssertionError("expected a JSON problem")
    return problem


def _parse_int(digits: str) -> int | float:
    """Integers as orjson reads them: exact within [-2**63, 2**64), else the double JSON.parse
    makes of them (Infinity past the double range), whichever parser ran."""
    if len(digits) <= 20:
        value = int(digits)
        if -(2**63) <= value < 2**64:
            return value
    return float(digits)


def _stdlib_loads(text: str, **kw: Any) -> Any:
    return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int, **kw)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Strict JSON for reading stores: whatever ``JSON.parse`` accepts, except that integers
    and floats come back as Python int/float (stringify prints them as JavaScript would).

    orjson does the work; what it refuses and JSON.parse accepts (lone-surrogate escapes,
    numbers that overflow to Infinity) goes through the standard library. NaN/Infinity
    literals, trailing garbage, a BOM and empty input raise InvalidJSON with the position.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    raw = _as_bytes(data)
    try:
        text = data if isinstance(data, str) else raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("BOM")
        return _stdlib_loads(text)
    except (ValueError, RecursionError) as exc:
        first = exc
    problem = _diagnose(raw, None)
    if problem is not None:
        raise problem from None
    if isinstance(first, RecursionError):
        raise InvalidJSON("nesting too deep to parse") from None
    raise InvalidJSON(str(first)) from None


_KEEP_STRUCTURE = bytes(b for b in range(256) if b not in b'":[]{}')
_REDUCED_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _skeleton(data: bytes) -> bytes:
    """The colons and brackets of a VALID JSON text that lie outside its strings.

    Mostly bytes-level passes in C: drop escaped backslashes (pairs from the left, as JSON
    reads them) and escaped quotes, so every remaining '"' delimits a string; keep only quotes,
    colons and brackets; drop '""' (removing two adjacent quotes never changes which side of
    a string anything else is on); then delete the few strings still holding a colon/bracket.
    """
    reduced = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _KEEP_STRUCTURE)
    return _REDUCED_STRING.sub(b"", reduced.replace(b'""', b""))


def _max_depth_of(skeleton: bytes) -> int:
    brackets = skeleton.translate(None, _NOT_BRACKETS).translate(_BRACKET_STEPS)
    if not brackets:
        return 0
    return max(accumulate(memoryview(brackets).cast("b")))


def _count_pairs(value: Any) -> int:
    """Number of object members in a parsed value (iterative: no recursion limit)."""
    total = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        v = pop()
        if type(v) is dict:
            total += len(v)
            for x in v.values():
                if type(x) is dict or type(x) is list:
                    push(x)
        else:
            for x in v:
                if type(x) is dict or type(x) is list:
                    push(x)
    return total


def _find_duplicate(text: str) -> InvalidJSON:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            seen: set[str] = set()
            for k, _ in pairs:
                if k in seen:
                    raise _Duplicate(k)
                seen.add(k)
        return d

    try:
        _stdlib_loads(text, object_pairs_hook=hook)
    except _Duplicate as exc:
        return InvalidJSON(
            f"duplicate key {json.dumps(exc.args[0], ensure_ascii=False)} in an object"
        )
    return InvalidJSON("duplicate key in an object")  # pragma: no cover - counts said so


class _Duplicate(Exception):
    pass


def parse_document(
    data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """The strictest parse, for bytes a user writes into a session file.

    Rejects (InvalidJSON, with line/column/byte): empty or whitespace-only input, a BOM,
    invalid UTF-8, anything JSON.parse rejects, NaN/Infinity, duplicate keys in any object
    (JSON.parse would silently keep the last one) and nesting deeper than ``max_depth``
    containers. Never recurses on the input, so 100k-deep ``[[[[`` is just an error.
    """
    data = _as_bytes(data)
    if data.startswith(_BOM) or not data.strip(_WS):
        raise _problem(data, max_depth)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        problem = _diagnose(data, max_depth)
        if problem is not None:
            raise problem from None
        # Valid JSON that orjson refuses: lone-surrogate escapes, numbers beyond double range.
        text = data.decode("utf-8")
        try:
            value = _stdlib_loads(text, object_pairs_hook=_no_duplicates)
        except _Duplicate as exc:
            raise _find_duplicate(text) from exc
        except RecursionError:
            raise InvalidJSON("nesting too deep to parse") from None
        except ValueError as exc:
            raise InvalidJSON(str(exc)) from None
        return value
    # Valid JSON: now the depth, and duplicate keys, which orjson silently collapses: the text
    # has more members (colons outside strings) than the parsed dicts hold iff some repeat.
    objects = data.count(b"{")
    opens = objects + data.count(b"[")
    if opens > max_depth or objects:
        skeleton = _skeleton(data)
        if opens > max_depth and _max_depth_of(skeleton) > max_depth:
            raise _problem(data, max_depth)
        members = skeleton.count(b":")
        if members > 1 and members != _count_pairs(value):
            raise _find_duplicate(data.decode("utf-8"))
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Duplicate()
    return d


# --------------------------------------------------------------------------------------------
# PrefixChecker
# --------------------------------------------------------------------------------------------

# Parser states.
_VALUE = 0  # a value must come (document start, after ':' or after ',' in an array)
_VALUE_OR_CLOSE = 1  # after '['
_KEY = 2  # after ',' in an object
_KEY_OR_CLOSE = 3  # after '{'
_COLON = 4
_AFTER = 5  # after a value inside a container: ',' or the closing bracket
_DONE = 6  # after the top-level value: only whitespace
_STRING = 7
_ESCAPE = 8  # after a backslash in a string
_HEX = 9  # inside \uXXXX
_LITERAL = 10  # inside true/false/null
_N_MINUS = 11  # number states: after '-'
_N_ZERO = 12  # leading 0 (complete)
_N_INT = 13  # integer digits (complete)
_N_DOT = 14  # after '.'
_N_FRAC = 15  # fraction digits (complete)
_N_E = 16  # after 'e'
_N_ESIGN = 17  # after 'e+' / 'e-'
_N_EXP = 18  # exponent digits (complete)

_EXPECTED = {
    _VALUE: "expected a JSON value",
    _VALUE_OR_CLOSE: "expected a JSON value or ']'",
    _KEY: "expected a string key",
    _KEY_OR_CLOSE: "expected a string key or '}'",
    _COLON: "expected ':' after the key",
    _DONE: "unexpected data after the JSON value",
    _N_MINUS: "expected a digit after '-'",
    _N_DOT: "expected a digit after '.'",
    _N_E: "expected a digit or sign in the exponent",
    _N_ESIGN: "expected a digit in the exponent",
    _HEX: "expected a hex digit in a \\u escape",
}

_WS_RUN = re.compile(rb"[ \t\n\r]*")
_STRING_BODY = re.compile(rb"[^\"\\\x00-\x1f]*")
_DIGITS = re.compile(rb"[0-9]*")
_HEX_RUN = re.compile(rb"[0-9a-fA-F]{0,4}")
_ESCAPE_FULL = re.compile(rb'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')

_WS_B = rb"[ \t\n\r]*"
_STR_B = rb'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
_NUM_B = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_SCALAR_B = rb"(?:" + _STR_B + rb"|" + _NUM_B + rb"|true|false|null)"
# Runs of complete scalar members, each followed by ',' (or by the closing bracket: group 1).
_OBJECT_RUN = re.compile(
    rb"(?:" + _WS_B + _STR_B + _WS_B + rb":" + _WS_B + _SCALAR_B + _WS_B + rb",)*"
    rb"(" + _WS_B + _STR_B + _WS_B + rb":" + _WS_B + _SCALAR_B + _WS_B + rb"\})?"
)
_ARRAY_RUN = re.compile(
    rb"(?:" + _WS_B + _SCALAR_B + _WS_B + rb",)*(" + _WS_B + _SCALAR_B + _WS_B + rb"\])?"
)

# The start of a UTF-8 sequence that can still be completed (Python's incremental decoder
# waits on some impossible ones, such as the surrogate prefix ED A0).
_UTF8_INCOMPLETE = re.compile(
    rb"[\xc2-\xf4]|[\xe1-\xec\xee\xef\xf1-\xf3][\x80-\xbf]|\xe0[\xa0-\xbf]|\xed[\x80-\x9f]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]?|[\xf1-\xf3][\x80-\xbf]{2}|\xf4[\x80-\x8f][\x80-\xbf]?"
)

_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
_ESCAPABLE = frozenset(b'"\\/bfnrtu')
_DIGIT_SET = frozenset(b"0123456789")
_WS_SET = frozenset(b" \t\n\r")


class _SyntaxFail(Exception):
    def __init__(self, pos: int, what: str) -> None:
        super().__init__(pos, what)
        self.pos = pos
        self.what = what


class PrefixChecker:
    """Incremental check that the bytes written so far can still begin a valid JSON text.

    A FUSE filesystem cannot rely on close() to report a bad file (shells ignore close
    errors), so it feeds each sequential write here: :meth:`feed` raises InvalidJSON as soon
    as no continuation could make the data valid (syntax, invalid UTF-8, depth), and accepts
    data that is merely incomplete (``{"a": tr``, half a UTF-8 character, ``1e``). The state is
    kept between feeds, so the total cost is linear in the bytes fed. :meth:`finish` checks
    that the data is a complete JSON text.
    """

    def __init__(self, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self._state = _VALUE
        self._stack = bytearray()  # b"{" / b"[" per open container
        self._is_key = False
        self._hex_left = 0
        self._literal = b""
        self._literal_at = 0
        self._offset = 0
        self._utf8_tail = b""
        self._lines = 0  # newlines before self._offset
        self._line_start = 0
        self._error: InvalidJSON | None = None
        self._error_at: tuple[int, str] = (-1, "")

    @property
    def offset(self) -> int:
        """Bytes accepted so far."""
        return self._offset

    @property
    def depth(self) -> int:
        """Containers currently open."""
        return len(self._stack)

    @property
    def complete(self) -> bool:
        """Whether the bytes so far are a complete JSON text (more whitespace may follow)."""
        return (
            self._error is None
            and not self._utf8_tail
            and (
                self._state == _DONE
                or (not self._stack and self._state in (_N_ZERO, _N_INT, _N_FRAC, _N_EXP))
            )
        )

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Accept the next bytes, or raise InvalidJSON if the data can no longer be valid.

        After an error every further call raises the same error.
        """
        if self._error is not None:
            raise self._error
        data = bytes(chunk)
        if not data:
            return
        bad_utf8 = self._check_utf8(data)
        try:
            self._scan(data)
        except _SyntaxFail as fail:
            if bad_utf8 is None or fail.pos < bad_utf8:
                self._fail(data, fail.pos, fail.what)
        if bad_utf8 is not None:
            self._fail(data, bad_utf8, "not valid UTF-8")
        self._lines += data.count(b"\n")
        nl = data.rfind(b"\n")
        if nl >= 0:
            self._line_start = self._offset + nl + 1
        self._offset += len(data)

    def finish(self) -> None:
        """Raise InvalidJSON unless the bytes fed form one complete JSON text."""
        if self._error is not None:
            raise self._error
        if self.complete:
            return
        if self._utf8_tail:
            what = "truncated UTF-8 character"
            pos = self._offset - len(self._utf8_tail)
        elif self._state == _VALUE and not self._stack:  # only whitespace so far
            what, pos = "empty", -1
        else:
            what, pos = "unexpected end of data", self._offset
        self._error_at = (pos, what)
        self._error = InvalidJSON(what if pos < 0 else f"{what} at {self._where(pos)}")
        raise self._error

    # -- internals -----------------------------------------------------------------------------

    def _where(self, pos: int, data: bytes = b"") -> str:
        """'line L column C (byte N)'; here the column counts bytes (the checker keeps no
        text to count characters in; parse_document and loads report characters)."""
        rel = pos - self._offset  # position inside the current chunk (may be negative)
        lines = self._lines
        line_start = self._line_start
        if rel > 0 and data:
            lines += data.count(b"\n", 0, rel)
            nl = data.rfind(b"\n", 0, rel)
            if nl >= 0:
                line_start = self._offset + nl + 1
        return f"line {lines + 1} column {pos - line_start + 1} (byte {pos})"

    def _fail(self, data: bytes, rel: int, what: str) -> None:
        pos = self._offset + rel
        if 0 <= rel < len(data) and what.startswith(("expected", "unexpected")):
            b = data[rel]
            shown = repr(chr(b)) if 0x20 <= b < 0x7F else f"byte 0x{b:02x}"
            what = f"{what}, found {shown}"
        self._error_at = (pos, what)
        self._error = InvalidJSON(f"{what} at {self._where(pos, data)}")
        raise self._error

    def _check_utf8(self, data: bytes) -> int | None:
        """Chunk-relative offset of the first invalid UTF-8 byte, or None."""
        tail = self._utf8_tail
        if not tail and data.isascii():
            return None
        buf = tail + data if tail else data
        try:
            _, used = codecs.utf_8_decode(buf, "strict", False)
        except UnicodeDecodeError as exc:
            return exc.start - len(tail)
        rest = buf[used:]
        if rest and not _UTF8_INCOMPLETE.fullmatch(rest):
            return used - len(tail)
        self._utf8_tail = rest
        return None

    def _scan(self, data: bytes) -> None:
        n = len(data)
        pos = 0
        state = self._state
        stack = self._stack
        max_depth = self.max_depth
        try:
            while pos < n:
                if state == _STRING:
                    pos = _STRING_BODY.match(data, pos).end()  # type: ignore[union-attr]
                    if pos >= n:
                        break
                    c = data[pos]
                    if c == 0x22:  # closing quote
                        pos += 1
                        state = _COLON if self._is_key else _AFTER if stack else _DONE
                    elif c == 0x5C:
                        m = _ESCAPE_FULL.match(data, pos)
                        if m is not None:
                            pos = m.end()
                        else:
                            pos += 1
                            state = _ESCAPE
                    else:
                        raise _SyntaxFail(
                            pos, f"control character U+{c:04X} must be escaped in a string"
                        )
                    continue

                c = data[pos]
                if c in _WS_SET and state <= _DONE:
                    pos = _WS_RUN.match(data, pos).end()  # type: ignore[union-attr]
                    continue

                if state == _AFTER:
                    top = stack[-1]
                    if c == 0x2C:  # ,
                        pos += 1
                        if top == 0x7B:
                            state = _KEY
                            m = _OBJECT_RUN.match(data, pos)
                        else:
                            state = _VALUE
                            m = _ARRAY_RUN.match(data, pos)
                        pos, state = self._after_run(m, pos, state, stack)
                    elif (c == 0x7D and top == 0x7B) or (c == 0x5D and top == 0x5B):
                        pos += 1
                        stack.pop()
                        state = _AFTER if stack else _DONE
                    else:
                        raise _SyntaxFail(
                            pos, "expected ',' or '}'" if top == 0x7B else "expected ',' or ']'"
                        )
                elif state <= _VALUE_OR_CLOSE:
                    if c == 0x22:
                        pos += 1
                        state = _STRING
                        self._is_key = False
                    elif c == 0x7B or c == 0x5B:
                        if len(stack) >= max_depth:
                            raise _SyntaxFail(pos, f"nesting deeper than {max_depth} levels")
                        stack.append(c)
                        pos += 1
                        if c == 0x7B:
                            state = _KEY_OR_CLOSE
                            m = _OBJECT_RUN.match(data, pos)
                        else:
                            state = _VALUE_OR_CLOSE
                            m = _ARRAY_RUN.match(data, pos)
                        pos, state = self._after_run(m, pos, state, stack)
                    elif c == 0x2D:
                        pos += 1
                        state = _N_MINUS
                    elif c == 0x30:
                        pos += 1
                        state = _N_ZERO
                    elif c in _DIGIT_SET:
                        pos = _DIGITS.match(data, pos + 1).end()  # type: ignore[union-attr]
                        state = _N_INT
                    elif c in _LITERALS:
                        self._literal = _LITERALS[c]
                        self._literal_at = 1
                        pos += 1
                        state = _LITERAL
                    elif c == 0x5D and state == _VALUE_OR_CLOSE:
                        pos += 1
                        stack.pop()
                        state = _AFTER if stack else _DONE
                    else:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                elif state in (_KEY, _KEY_OR_CLOSE):
                    if c == 0x22:
                        pos += 1
                        state = _STRING
                        self._is_key = True
                    elif c == 0x7D and state == _KEY_OR_CLOSE:
                        pos += 1
                        stack.pop()
                        state = _AFTER if stack else _DONE
                    else:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                elif state == _COLON:
                    if c != 0x3A:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                    state = _VALUE
                elif state == _DONE:
                    raise _SyntaxFail(pos, _EXPECTED[state])
                elif state == _ESCAPE:
                    if c not in _ESCAPABLE:
                        raise _SyntaxFail(pos, "invalid escape in a string")
                    pos += 1
                    if c == 0x75:  # u
                        state = _HEX
                        self._hex_left = 4
                    else:
                        state = _STRING
                elif state == _HEX:
                    end = _HEX_RUN.match(data, pos, min(n, pos + self._hex_left)).end()  # type: ignore[union-attr]
                    self._hex_left -= end - pos
                    pos = end
                    if self._hex_left == 0:
                        state = _STRING
                    elif pos < n:
                        raise _SyntaxFail(pos, _EXPECTED[_HEX])
                elif state == _LITERAL:
                    lit = self._literal
                    i = self._literal_at
                    want = lit[i:]
                    got = data[pos : pos + len(want)]
                    if want.startswith(got):
                        pos += len(got)
                        self._literal_at = i + len(got)
                        if self._literal_at == len(lit):
                            state = _AFTER if stack else _DONE
                    else:
                        bad = next(j for j in range(len(got)) if got[j] != want[j])
                        raise _SyntaxFail(pos + bad, f"expected '{lit.decode()}'")
                # numbers
                elif state in (_N_INT, _N_FRAC, _N_EXP):
                    pos = _DIGITS.match(data, pos).end()  # type: ignore[union-attr]
                    if pos >= n:
                        break
                    c = data[pos]
                    if c == 0x2E and state == _N_INT:
                        pos += 1
                        state = _N_DOT
                    elif (c == 0x65 or c == 0x45) and state != _N_EXP:
                        pos += 1
                        state = _N_E
                    else:
                        state = _AFTER if stack else _DONE
                elif state == _N_ZERO:
                    if c == 0x2E:
                        pos += 1
                        state = _N_DOT
                    elif c == 0x65 or c == 0x45:
                        pos += 1
                        state = _N_E
                    else:
                        state = _AFTER if stack else _DONE
                elif state == _N_MINUS:
                    if c == 0x30:
                        state = _N_ZERO
                    elif c in _DIGIT_SET:
                        state = _N_INT
                    else:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                elif state == _N_DOT:
                    if c not in _DIGIT_SET:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                    state = _N_FRAC
                elif state == _N_E:
                    if c == 0x2B or c == 0x2D:
                        state = _N_ESIGN
                    elif c in _DIGIT_SET:
                        state = _N_EXP
                    else:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                else:  # _N_ESIGN
                    if c not in _DIGIT_SET:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                    state = _N_EXP
        finally:
            self._state = state

    @staticmethod
    def _after_run(
        m: re.Match[bytes] | None, pos: int, state: int, stack: bytearray
    ) -> tuple[int, int]:
        """Apply a successful run of scalar members (see _OBJECT_RUN / _ARRAY_RUN)."""
        if m is None or m.end() == pos:
            return pos, state
        if m.group(1) is not None:  # the run ended with the closing bracket
            stack.pop()
            return m.end(), (_AFTER if stack else _DONE)
        return m.end(), (_KEY if state in (_KEY, _KEY_OR_CLOSE) else _VALUE)

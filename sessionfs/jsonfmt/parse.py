"""Strict parsing: :func:`loads` for store files, :func:`parse_document` for bytes a user
writes (no duplicate keys, depth limit, no BOM, errors located by line, column and byte)."""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import orjson

from sessionfs.errors import InvalidJSON
from sessionfs.jsonfmt.syntax import DEFAULT_MAX_DEPTH, PrefixChecker

__all__ = ["loads", "parse_document"]

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



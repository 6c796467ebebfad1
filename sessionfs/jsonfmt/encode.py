"""``JSON.stringify`` byte for byte: orjson where its output can be made exact, a pure-Python
encoder for the rest (array-index keys first, lone surrogates, foreign scalars)."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable
from json.encoder import encode_basestring as _encode_basestring  # C accelerated
from typing import Any, TypeVar, cast

import orjson

from sessionfs.jsonfmt.numbers import (
    fix_numbers_compact,
    fix_numbers_indented,
    js_float,
    js_int,
)

__all__ = ["dumps", "has_index_key_member", "in_js_key_order", "is_array_index", "stringify"]

K = TypeVar("K")
V = TypeVar("V")

_MAX_ARRAY_INDEX = 2**32 - 2

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


# -- the one home of JavaScript key order: array-index keys first, ascending, then the rest in
# -- insertion order (``OrdinaryOwnPropertyKeys``); an array index is a canonical integer < 2**32-1.
def is_array_index(key: str) -> bool:
    """Whether JavaScript treats the property name ``key`` as an array index."""
    return _INDEX_KEY.fullmatch(key) is not None and int(key) <= _MAX_ARRAY_INDEX


def in_js_key_order(items: Iterable[tuple[K, V]]) -> list[tuple[K, V]]:
    """``(key, value)`` pairs in JavaScript property order: array indices ascending, then the
    other keys in the order given (``JSON.stringify`` and ``Object.keys`` order)."""
    items = list(items)
    index_keys = [
        kv
        for kv in items
        if isinstance(kv[0], str) and kv[0][:1].isdigit() and is_array_index(kv[0])
    ]
    if not index_keys:
        return items
    index_keys.sort(key=lambda kv: int(cast(str, kv[0])))
    return index_keys + [
        kv for kv in items if not (isinstance(kv[0], str) and is_array_index(kv[0]))
    ]


def has_index_key_member(indented: bytes) -> bool:
    """Whether 2-space-indented JSON text has a member whose key may be an array index (so
    JavaScript may order it differently from the text); see ``_INDEX_KEY_INDENTED``."""
    return _INDEX_KEY_INDENTED.search(indented) is not None


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


def _fast(value: Any, gap: str) -> bytes | None:
    """orjson output for a container when it can be made exact, else None.

    orjson matches JSON.stringify for strings (same escapes: short forms, lowercase \\u00XX,
    raw U+2028/U+007F) and layout (two spaces, ``": "``, empty ``{}``/``[]``). It differs in
    numbers (fixed by ``_fix_numbers_*``) and key order (array-index keys -> None); lone
    surrogates, ints beyond 64 bits, depth over 254 and foreign types make it raise (-> None).
    """
    if gap == "  ":
        option, index_key, fix = _ORJSON_INDENT, _INDEX_KEY_INDENTED, fix_numbers_indented
    elif not gap:
        option, index_key, fix = _ORJSON_COMPACT, _INDEX_KEY_COMPACT, fix_numbers_compact
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
        return js_int(value)
    if isinstance(value, float):
        return js_float(value)
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
                    items = in_js_key_order(value.items())
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
            member: Any = next(frame[0], _END)
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


"""What counts as a session entry: openclaw's own acceptance rules, checked before every write.

openclaw's newer load paths silently drop an entry whose ``sessionId`` is unsafe and zero a bad
``updatedAt``; we refuse such writes instead, so nothing the user wrote is dropped later.
Unknown fields are kept untouched: the field set grows with every openclaw release.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from sessionfs import jsonfmt
from sessionfs.errors import EntryTooLarge, InvalidEntry, InvalidJSON

__all__ = [
    "DEFAULT_MAX_ENTRY_BYTES",
    "SESSION_ID_PATTERN",
    "parse_entry",
    "parse_new_entry",
    "serialize_entry",
    "updated_at_from_bytes",
    "updated_at_ms",
    "validate_entry",
]

#: openclaw's SAFE_SESSION_ID_RE, case-insensitive as JavaScript's /i is: ASCII only (Python's
#: Unicode case folding would let U+212A KELVIN SIGN match "k").
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
DEFAULT_MAX_ENTRY_BYTES = 16 * 1024 * 1024


def _describe(value: Any) -> str:
    kind = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value))
    return kind or ("a number" if isinstance(value, int | float) else type(value).__name__)


# -- the one home of "updatedAt as a number": a JSON number (epoch ms), never a boolean --------
def _is_number(value: Any) -> bool:
    """A JSON number as parsed: an int or a float, but not a bool (a Python int subclass)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def updated_at_ms(entry: Mapping[str, Any]) -> float | None:
    """The entry's ``updatedAt`` (epoch ms) when it is a number, else None."""
    value = entry.get("updatedAt")
    return value if _is_number(value) else None


# ``updatedAt`` as a top-level member of JSON.stringify(entry, null, 2): two-space indent.
_UPDATED_AT_MEMBER = re.compile(
    rb'^  "updatedAt": (-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)[,\n]', re.MULTILINE)


def updated_at_from_bytes(data: bytes) -> float | None:
    """``updatedAt`` (ms) of canonical entry bytes without parsing them; None when it is not
    found there or is negative (a caller then parses the entry)."""
    found = _UPDATED_AT_MEMBER.search(data)
    if found is None:
        return None
    value = float(found.group(1))
    return value if value >= 0 else None


def validate_entry(entry: Any, *, key: str | None = None) -> None:
    """Raise InvalidEntry (naming the field) unless ``entry`` is an entry openclaw keeps."""
    if not isinstance(entry, dict):
        raise InvalidEntry(f"an entry must be a JSON object, not {_describe(entry)}", key=key)
    session_id = entry.get("sessionId")
    if "sessionId" not in entry:
        raise InvalidEntry("field 'sessionId' is missing", field="sessionId", key=key)
    if not isinstance(session_id, str):
        raise InvalidEntry(f"field 'sessionId' must be a string, not {_describe(session_id)}",
                           field="sessionId", key=key)
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        raise InvalidEntry(
            f"field 'sessionId' {session_id[:80]!r} is not a safe session id "
            "(1-128 characters of a-z 0-9 . _ -, starting with a letter or digit)",
            field="sessionId", key=key)
    if "updatedAt" not in entry:
        raise InvalidEntry("field 'updatedAt' is missing", field="updatedAt", key=key)
    updated_at = entry["updatedAt"]
    if not _is_number(updated_at):
        raise InvalidEntry(
            f"field 'updatedAt' must be a number (epoch ms), not {_describe(updated_at)}",
            field="updatedAt", key=key)
    try:  # an int past the double range is Infinity to JavaScript
        finite = math.isfinite(float(updated_at))
    except OverflowError:
        finite = False
    if not finite:
        raise InvalidEntry("field 'updatedAt' must be finite", field="updatedAt", key=key)
    if updated_at < 0:
        raise InvalidEntry("field 'updatedAt' must be >= 0", field="updatedAt", key=key)


def parse_entry(data: bytes, *, key: str | None = None,
                max_size: int = DEFAULT_MAX_ENTRY_BYTES) -> dict[str, Any]:
    """Strictly parse bytes a user offers as an entry, and validate them.

    :raises EntryTooLarge: over ``max_size`` bytes (checked before parsing).
    :raises InvalidJSON: not strict UTF-8 JSON (duplicate keys, NaN, too deep, ...).
    :raises InvalidEntry: valid JSON but not an acceptable entry.
    """
    if len(data) > max_size:
        raise EntryTooLarge(f"entry is {len(data)} bytes, over the limit of {max_size} bytes")
    try:
        entry = jsonfmt.parse_document(data)
    except InvalidJSON as exc:
        raise InvalidJSON(f"not valid JSON: {exc}") from exc
    validate_entry(entry, key=key)
    return entry


def parse_new_entry(data: bytes, *, key: str | None = None,
                    max_size: int = DEFAULT_MAX_ENTRY_BYTES) -> dict[str, Any]:
    """Bytes offered for a session openclaw's Gateway will create: a strict JSON object, which
    needs no ``sessionId`` or ``updatedAt`` (openclaw chooses both)."""
    if len(data) > max_size:
        raise EntryTooLarge(f"entry is {len(data)} bytes, over the limit of {max_size} bytes")
    try:
        entry = jsonfmt.parse_document(data) if data.strip() else {}
    except InvalidJSON as exc:
        raise InvalidJSON(f"not valid JSON: {exc}") from exc
    if not isinstance(entry, dict):
        raise InvalidEntry(f"an entry must be a JSON object, not {_describe(entry)}", key=key)
    return entry


def serialize_entry(entry: dict[str, Any]) -> bytes:
    """The bytes openclaw would write for this entry: ``JSON.stringify(entry, null, 2)``."""
    return jsonfmt.dumps(entry)

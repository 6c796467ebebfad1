"""The SQLite generation's rows as openclaw's own reader judges them: rows it refuses (which
sessionfs still serves, and ``status``/``check`` name with the remedy) and damaged rows (which
cost only their own session: EIO).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sessionfs.store.base import RefusedRow
from sessionfs.store.sqlite_schema import is_utf8

__all__ = ["DAMAGED_REMEDY", "FLAGGED_ROWS_SQL", "REMEDY", "damaged_row", "json_kind",
           "openclaw_refusals"]

REMEDY = "stop the gateway and run 'openclaw doctor --fix'"
DAMAGED_REMEDY = ("restore the database from a backup, or stop the gateway and run 'openclaw "
                  "doctor --fix'")

#: ``(key, entry_valid, current_session_id, updated_at, entry's sessionId as bytes, entry's
#: updatedAt)`` of every row openclaw's ``parseSqliteSessionEntryRecord`` may refuse. CASE, not
#: AND: json_extract of malformed JSON is an error for the whole query.
FLAGGED_ROWS_SQL = (
    "SELECT session_key, entry_valid, current_session_id, updated_at, "
    "CAST(sid AS BLOB), upd FROM "
    "(SELECT session_key, entry_valid, current_session_id, updated_at, "
    "CASE WHEN json_valid(entry_json) THEN json_extract(entry_json, '$.sessionId') "
    "END AS sid, CASE WHEN json_valid(entry_json) THEN "
    "json_extract(entry_json, '$.updatedAt') END AS upd FROM session_nodes "
    "WHERE NOT (entry_valid = -1 AND entry_json = '{}')) "
    "WHERE entry_valid != 1 OR sid IS NOT current_session_id "
    "OR upd IS NOT updated_at ORDER BY session_key")


def openclaw_refusals(flagged_rows: Iterable[Sequence[object]], keys: Iterable[str],
                      agent: str | None, damaged: dict[str, RefusedRow]) -> list[RefusedRow]:
    """The rows openclaw refuses, by key, then the ``damaged`` ones: ``flagged_rows`` as
    :data:`FLAGGED_ROWS_SQL` gives them, ``keys`` every session's key, ``agent`` the
    database's agent id (a key of another agent is not canonical here)."""
    foreign = {key for key in keys if not key.startswith("agent:")
               or (agent and not key.startswith(f"agent:{agent}:"))}
    flagged = {row[0]: row for row in flagged_rows if isinstance(row[0], str) and is_utf8(row[0])}
    refused = []
    for key in sorted(set(flagged) | foreign):
        row = flagged.get(key)
        refused += _validity(key, row[1] if row is not None else 1)
        if key in foreign:
            refused.append(RefusedRow(
                key, "non-canonical session key (SESSION_CANONICAL_KEY_MIGRATION_REQUIRED): "
                "openclaw refuses to read this agent's sessions", REMEDY))
        if row is not None and key not in damaged:
            refused += _disagreements(key, row)
    return refused + list(damaged.values())


def _validity(key: str, valid: object) -> list[RefusedRow]:
    if valid == 0:
        return [RefusedRow(key, "invalid persisted session row (entry_valid = 0): openclaw "
                           "refuses to read this agent's sessions", REMEDY)]
    if valid == -1:
        return [RefusedRow(key, "row marked deleted (entry_valid = -1) but still holding an "
                           "entry", REMEDY)]
    return []


def _disagreements(key: str, row: Sequence[object]) -> list[RefusedRow]:
    """Where the entry and its row's columns say different things (openclaw refuses it)."""
    current_id, updated_at, entry_id_bytes, entry_updated = row[2:]
    entry_id = (bytes(entry_id_bytes).decode("utf-8", "replace")
                if isinstance(entry_id_bytes, bytes) else entry_id_bytes)
    found = []
    if entry_id != current_id:
        found.append(RefusedRow(
            key, f"entry_json's sessionId {entry_id!r} is not the row's current_session_id "
            f"{current_id!r}: openclaw refuses this row; the transcript shown (and its file "
            "name) is that of current_session_id, the session's own window", REMEDY))
    if not _same_number(entry_updated, updated_at):
        found.append(RefusedRow(
            key, f"entry_json's updatedAt {entry_updated!r} is not the row's updated_at "
            f"{updated_at!r}: openclaw refuses this row", REMEDY))
    return found


def damaged_row(key: str, reason: str) -> RefusedRow:
    """A row that cannot be read: reported like a refused one, but its session answers EIO."""
    prefix = f"session {key!r}: "
    reason = reason[len(prefix):] if reason.startswith(prefix) else reason
    return RefusedRow(key, f"damaged row: {reason}; sessionfs answers EIO for this session and "
                      "leaves it out of sessions.json (openclaw refuses to read this agent's "
                      "sessions)", DAMAGED_REMEDY)


def json_kind(value: object) -> str:
    """What a JSON value that is not an object is, for the message that refuses it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "a number"


def _same_number(entry_value: object, column: object) -> bool:
    """JavaScript's ``===`` between the entry's ``updatedAt`` and the ``updated_at`` column."""
    if isinstance(entry_value, bool) or not isinstance(entry_value, int | float):
        return False
    return isinstance(column, int | float) and entry_value == column

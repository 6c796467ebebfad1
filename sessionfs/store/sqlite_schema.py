"""The SQLite generation's database as sessionfs opens and recognises it: read-only
connections (``mode=ro``, ``query_only``), the schema (which generation, which tables and
columns), and TEXT values that may not be UTF-8 (each is its own row's problem).
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from sessionfs.errors import UnsupportedSchema

__all__ = ["FIRST_SUPPORTED_SCHEMA", "NEWEST_KNOWN_SCHEMA", "SNAPSHOT_FIELDS", "SQLITE_MAGIC",
           "SchemaInfo", "connect", "inspect_schema", "is_busy", "is_locked", "is_utf8",
           "ms_to_ns", "shown"]

#: ``session_nodes`` appeared in agent schema 14 (openclaw#113071).
FIRST_SUPPORTED_SCHEMA = 14
#: The newest schema whose changes are known (25: validation triggers retired). A newer one is
#: still served when the tables and columns read here are all there.
NEWEST_KNOWN_SCHEMA = 25
#: Fields openclaw ≥ schema 24 keeps in ``session_entry_snapshots``, in its reader's order.
SNAPSHOT_FIELDS = ("sessionDiffBaseline", "skillsSnapshot", "systemPromptReport")
SQLITE_MAGIC = b"SQLite format 3\x00"
_NODE_COLUMNS = ("session_key", "current_session_id", "entry_json", "entry_valid", "updated_at")
_EVENT_COLUMNS = ("session_id", "seq", "event_json")


@dataclass(frozen=True)
class SchemaInfo:
    """What the database says it is."""

    user_version: int
    schema_version: int | None  # schema_meta's primary row, when there is one
    agent_id: str | None
    app_version: str | None
    tables: frozenset[str]
    has_zstd: bool  # transcript_events.event_zstd (schema 23+)
    has_snapshots: bool  # session_entry_snapshots (schema 24+)

    @property
    def version(self) -> int:
        return self.schema_version if self.schema_version is not None else self.user_version

    def describe(self) -> str:
        app = f", written by openclaw {self.app_version}" if self.app_version else ""
        return f"sqlite (agent schema {self.version}{app})"


def _uri(path: Path) -> str:
    return "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A read-only connection: ``mode=ro``, ``query_only``, autocommit (we BEGIN ourselves)."""
    conn = sqlite3.connect(_uri(path), uri=True, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False, cached_statements=64)
    conn.text_factory = _text
    try:
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA trusted_schema = 0")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _text(data: bytes) -> str:
    """A TEXT value as ``str``; bytes that are not UTF-8 become lone surrogates (PEP 383), so
    one damaged value is its row's problem (:func:`is_utf8`), never the whole query's."""
    return data.decode("utf-8", "surrogateescape")


def is_utf8(text: object) -> bool:
    """Whether a TEXT value read through :func:`_text` was valid UTF-8 (usable as a key, a
    name or a query parameter)."""
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text: str) -> str:
    """A damaged TEXT value for messages: its bytes, invalid ones as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def is_locked(path: Path, wait: float = 0.2) -> bool:
    """Whether another process holds the database locked against readers now (an exclusive
    lock, ``locking_mode=EXCLUSIVE``), waiting at most ``wait`` seconds. Such a database is
    busy, not unreadable: callers that would otherwise fall back to other files ask first."""
    try:
        conn = connect(path, wait)
    except sqlite3.Error as exc:
        return is_busy(exc)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        return is_busy(exc)
    finally:
        conn.close()
    return False


def inspect_schema(conn: sqlite3.Connection, path: Path) -> SchemaInfo:
    """Recognise the generation. :raises UnsupportedSchema: not one sessionfs serves."""
    user_version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = frozenset(row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"))
    schema_version = agent_id = app_version = None
    if "schema_meta" in tables:
        try:
            row = conn.execute("SELECT schema_version, agent_id, app_version FROM schema_meta "
                               "WHERE meta_key = 'primary'").fetchone()
        except sqlite3.OperationalError:
            row = None
        if row is not None:
            schema_version = row[0] if isinstance(row[0], int) else None
            agent_id = row[1] if isinstance(row[1], str) else None
            app_version = row[2] if isinstance(row[2], str) else None
    version = schema_version if schema_version is not None else user_version
    supported = (f"sessionfs reads openclaw agent schema {FIRST_SUPPORTED_SCHEMA} and later "
                 "(session_nodes, openclaw 2026.8.1 and newer)")
    if "session_nodes" not in tables:
        if "session_entries" in tables or 4 <= version < FIRST_SUPPORTED_SCHEMA:
            raise UnsupportedSchema(
                f"{path}: agent schema {version} (an openclaw 2026.7.2 beta, session_entries) is "
                f"not supported: {supported}; upgrade openclaw and run 'openclaw doctor --fix'")
        raise UnsupportedSchema(
            f"{path}: agent schema {version} holds no session table sessionfs knows "
            f"(no session_nodes): {supported}")
    missing = _missing_columns(conn, "session_nodes", _NODE_COLUMNS)
    if "transcript_events" in tables:
        missing += _missing_columns(conn, "transcript_events", _EVENT_COLUMNS)
    if missing:
        raise UnsupportedSchema(
            f"{path}: agent schema {version} has tables sessionfs does not recognise (missing "
            f"{', '.join(missing)}): {supported}, up to {NEWEST_KNOWN_SCHEMA} as known")
    has_zstd = ("transcript_events" in tables
                and not _missing_columns(conn, "transcript_events",
                                         ("event_zstd", "event_utf8_bytes")))
    has_snapshots = ("session_entry_snapshots" in tables
                     and not _missing_columns(conn, "session_entry_snapshots",
                                              ("session_key", "field", "value_json")))
    return SchemaInfo(user_version, schema_version, agent_id, app_version, tables, has_zstd,
                      has_snapshots)


def _missing_columns(conn: sqlite3.Connection, table: str, wanted: tuple[str, ...]) -> list[str]:
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    return [f"{table}.{name}" for name in wanted if name not in present]


def ms_to_ns(value: object) -> int:
    """A time in ms as stored (a number, else nothing: 0) in ns."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value * 1_000_000)

"""The SQLite generation (openclaw ≥ 2026.8.1): ``agents/<id>/agent/openclaw-agent.sqlite``.

The gateway is the single owner of this database (openclaw's own contract), so sessionfs never
writes it: connections are opened with ``file:…?mode=ro`` and ``PRAGMA query_only=1``, never run
a write or a checkpoint and never touch the gateway's ``-wal``. Every write method raises
:class:`ReadOnlyStore` with one line that says how to change a session instead.

What is read, as observed on stores openclaw 2026.9.6 wrote (agent schema 23;
``../shared/context/openclaw-sqlite-real.md``):

* ``session_nodes``: one row per key; ``entry_json`` is the entry as ``JSON.stringify(entry)``.
  A row with ``entry_valid = -1`` and ``entry_json = '{}'`` is a deletion, not a session. Keys are
  listed in key order (``ORDER BY session_key``), as openclaw's ``listSessionEntries`` does.
* schema 24+: ``session_entry_snapshots(session_key, field, value_json)`` holds the heavy
  ``sessionDiffBaseline``, ``skillsSnapshot`` and ``systemPromptReport``; openclaw's reader
  assigns them back onto the entry in that order (a field already inline keeps its place,
  a new one goes last), and so do we.
* ``transcript_events(session_id, seq, event_json | event_zstd, event_utf8_bytes)``: the
  transcript of a session is the events of its ``current_session_id`` in ``seq`` order, each
  followed by ``\\n``; ``event_zstd`` is one plain zstd frame (no dictionary).

The generation is recognised from the database (``PRAGMA user_version``, ``schema_meta`` and the
tables present), never from the file name: schema 14 and later is served; the beta schema 4 to 13
(``session_entries``) and databases without the tables read here are refused with one line.

Consistency and concurrency: every read runs inside one read transaction (``BEGIN … ROLLBACK``),
so it sees one committed state of the database and never half a write. ``SQLITE_BUSY`` (a
checkpoint, WAL recovery, an exclusive writer) is waited out (``busy_timeout``) and retried up
to ``busy_deadline`` seconds. Thread safety: each thread gets its own connection (the mount's
libfuse workers live as long as the mount, so there are few); :meth:`fingerprint` uses one
dedicated connection under a lock, because ``PRAGMA data_version`` compares only within one
connection.
"""

from __future__ import annotations

import bisect
import os
import sqlite3
import threading
import time
import urllib.parse
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sessionfs import jsonfmt
from sessionfs.entry import serialize_entry
from sessionfs.errors import (
    GatewayUnavailable,
    InvalidJSON,
    ReadOnlyStore,
    SessionNotFound,
    StoreBusy,
    StoreCorrupt,
    StoreNotFound,
    TranscriptChanged,
    UnsupportedSchema,
)
from sessionfs.gateway import START_HINT, GatewayClient, client_for, state_dir_of
from sessionfs.store.base import (
    Entry,
    EntryRecord,
    Mutator,
    RefusedRow,
    Store,
    TranscriptSource,
    UpdateSummary,
)
from sessionfs.store.gateway_writes import GatewayWriter

__all__ = [
    "FIRST_SUPPORTED_SCHEMA",
    "NEWEST_KNOWN_SCHEMA",
    "READ_ONLY_REASON",
    "SchemaInfo",
    "SqliteStore",
    "SqliteTranscript",
    "inspect_schema",
    "is_sqlite_file",
]

T = TypeVar("T")

#: ``session_nodes`` appeared in agent schema 14 (openclaw#113071).
FIRST_SUPPORTED_SCHEMA = 14
#: The newest schema whose changes are known (25: validation triggers retired). A newer one is
#: still served when the tables and columns read here are all there.
NEWEST_KNOWN_SCHEMA = 25
#: Fields openclaw ≥ schema 24 keeps in ``session_entry_snapshots``, in its reader's order.
SNAPSHOT_FIELDS = ("sessionDiffBaseline", "skillsSnapshot", "systemPromptReport")
SQLITE_MAGIC = b"SQLite format 3\x00"

READ_ONLY_REASON = (
    "the openclaw gateway is the single owner of this SQLite database and sessionfs never writes "
    "it; change a session through openclaw instead (the chat's commands, the gateway's "
    "sessions.patch, 'openclaw sessions cleanup', 'openclaw doctor --fix')")
#: Why writes need the Gateway (said with every refusal for lack of one).
GATEWAY_ONLY = ("the openclaw Gateway is the single owner of this SQLite database: sessionfs "
                "changes sessions only through it, never by writing the database")
REMEDY = "stop the gateway and run 'openclaw doctor --fix'"

_NODE_COLUMNS = ("session_key", "current_session_id", "entry_json", "entry_valid", "updated_at")
_EVENT_COLUMNS = ("session_id", "seq", "event_json")
_INDEX_CACHE_SESSIONS = 256  # per-session event offset tables kept (LRU)


def is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` is a regular file starting with SQLite's 16-byte header."""
    try:
        with open(path, "rb") as stream:
            return stream.read(16) == SQLITE_MAGIC
    except OSError:
        return False


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


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A read-only connection: ``mode=ro``, ``query_only``, autocommit (we BEGIN ourselves)."""
    conn = sqlite3.connect(_uri(path), uri=True, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False, cached_statements=64)
    try:
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA trusted_schema = 0")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


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


_decompressor_local = threading.local()


def _unzstd(blob: bytes, expected: int | None) -> bytes:
    """One plain zstd frame (no dictionary), as openclaw 9.6 writes ``event_zstd``."""
    import zstandard

    decompressor = getattr(_decompressor_local, "d", None)
    if decompressor is None:
        decompressor = _decompressor_local.d = zstandard.ZstdDecompressor()
    if expected is not None and expected > 0:
        return decompressor.decompress(blob, max_output_size=expected)
    return decompressor.decompress(blob)


@dataclass
class _EventIndex:
    """Where each event of one transcript starts: ``seqs[i]`` ends at byte ``ends[i]``."""

    session_id: str
    shape: tuple[object, ...]  # (count, max seq, rewrite generation) it was built for
    seqs: array
    ends: array

    @property
    def size(self) -> int:
        return self.ends[-1] if self.ends else 0


class SqliteTranscript(TranscriptSource):
    """A session's events as JSONL, served by seq ranges; sizes come from the event index."""

    def __init__(self, store: SqliteStore, index: _EventIndex, mtime_ns: int) -> None:
        self._store = store
        self._index = index
        self.session_id = index.session_id
        self.size = index.size
        self.mtime_ns = mtime_ns
        self.token = (index.session_id, *index.shape, self.size)
        self._lock = threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.size or size <= 0 or offset < 0:
            return b""
        end = min(self.size, offset + size)
        index = self._index
        first = bisect.bisect_right(index.ends, offset)
        last = bisect.bisect_left(index.ends, end)
        starts_at = index.ends[first - 1] if first else 0
        count, data = self._store._event_bytes(index.session_id, index.seqs[first],
                                               index.seqs[last])
        # One read transaction gave these rows; the count and the total length must be what
        # the index measured, else the transcript was rewritten since it was opened.
        if count != last - first + 1 or len(data) != index.ends[last] - starts_at:
            self._store._forget_index(self.session_id)
            raise TranscriptChanged(f"{self._store.path}: transcript of session "
                                    f"{self.session_id} was rewritten; reopen it")
        return data[offset - starts_at:end - starts_at]


class SqliteStore(Store):
    """openclaw's per-agent SQLite database, read-only (see the module docstring)."""

    layout = "sqlite"

    def __init__(self, path: Path, *, stale_files: tuple[Path, ...] = (),
                 busy_timeout: float = 5.0, busy_deadline: float = 60.0) -> None:
        self.path = Path(path)
        #: No store lock exists in this generation; kept for the Store interface.
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.stale_files = tuple(stale_files)
        self.busy_timeout = busy_timeout
        self.busy_deadline = busy_deadline
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._epoch = 0  # bumped when the file was replaced: threads reopen their connection
        self._probe: sqlite3.Connection | None = None
        self._probe_lock = threading.Lock()
        self._indexes: OrderedDict[str, _EventIndex] = OrderedDict()
        self._indexes_lock = threading.Lock()
        if not self.path.exists():
            raise StoreNotFound(f"{self.path}: no such database")
        if not is_sqlite_file(self.path):
            raise StoreCorrupt(self.path, "not an SQLite database (no SQLite header)")
        self._ident = self._file_ident()
        self.schema: SchemaInfo = self._run(lambda conn: inspect_schema(conn, self.path))

    # -- connections -----------------------------------------------------------------------------
    def _file_ident(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _conn(self) -> sqlite3.Connection:
        held = getattr(self._local, "conn", None)
        if held is not None and held[0] == self._epoch:
            return held[1]
        if held is not None:
            self._drop(held[1])
        conn = _connect(self.path, self.busy_timeout)
        with self._all_lock:
            self._all.append(conn)
        self._local.conn = (self._epoch, conn)
        return conn

    def _drop(self, conn: sqlite3.Connection) -> None:
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def close(self) -> None:
        """Close every connection (call when no other thread is reading)."""
        with self._all_lock:
            connections, self._all = self._all, []
        for conn in connections:
            conn.close()
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None
        self._local = threading.local()

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` inside one read transaction; SQLITE_BUSY waited out and retried."""
        give_up = time.monotonic() + self.busy_deadline
        pause = 0.01
        while True:
            try:
                conn = self._conn()
                conn.execute("BEGIN")
                try:
                    return work(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")  # a read transaction: nothing to commit
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise StoreCorrupt(self.path, f"cannot read the database: {exc}") from exc
                if time.monotonic() >= give_up:
                    raise StoreBusy(f"{self.path}: the database stayed locked for "
                                    f"{self.busy_deadline:.0f}s; try again") from exc
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    # -- reads -----------------------------------------------------------------------------------
    @property
    def generation(self) -> str:
        return self.schema.describe()

    def keys(self) -> list[str]:
        return self._run(lambda conn: [row[0] for row in conn.execute(
            "SELECT session_key FROM session_nodes "
            "WHERE NOT (entry_valid = -1 AND entry_json = '{}') ORDER BY session_key")])

    def updated_times(self) -> dict[str, int]:
        return self._run(lambda conn: {row[0]: _ms_to_ns(row[1]) for row in conn.execute(
            "SELECT session_key, updated_at FROM session_nodes "
            "WHERE NOT (entry_valid = -1 AND entry_json = '{}')")})

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self._run(lambda conn: conn.execute(
            "SELECT 1 FROM session_nodes WHERE session_key = ? "
            "AND NOT (entry_valid = -1 AND entry_json = '{}')", (key,)).fetchone() is not None)

    def _entry(self, conn: sqlite3.Connection, key: str, entry_json: str) -> Entry:
        try:
            entry = jsonfmt.loads(entry_json)
        except InvalidJSON as exc:
            raise StoreCorrupt(self.path, f"session {key!r}: entry_json: {exc}") from exc
        if not isinstance(entry, dict):
            raise StoreCorrupt(self.path, f"session {key!r}: entry_json is not an object")
        if self.schema.has_snapshots:
            found = dict(conn.execute(
                "SELECT field, value_json FROM session_entry_snapshots WHERE session_key = ?",
                (key,)).fetchall())
            for field in SNAPSHOT_FIELDS:  # openclaw's attachSessionEntrySnapshots order
                value_json = found.get(field)
                if value_json is None:
                    continue
                try:
                    entry[field] = jsonfmt.loads(value_json)
                except InvalidJSON as exc:
                    raise StoreCorrupt(self.path, f"session {key!r}: snapshot {field}: "
                                       f"{exc}") from exc
        return entry

    def read(self, key: str) -> EntryRecord:
        def work(conn: sqlite3.Connection) -> EntryRecord:
            row = conn.execute(
                "SELECT entry_json, updated_at FROM session_nodes WHERE session_key = ? "
                "AND NOT (entry_valid = -1 AND entry_json = '{}')", (key,)).fetchone()
            if row is None:
                raise SessionNotFound(f"no session {key!r} in {self.path}")
            entry = self._entry(conn, key, row[0])
            return EntryRecord(key, serialize_entry(entry), _ms_to_ns(row[1]), entry)

        return self._run(work)

    def records(self) -> Iterator[EntryRecord]:
        """Every session's record from one read transaction (one consistent state)."""
        def work(conn: sqlite3.Connection) -> list[EntryRecord]:
            rows = conn.execute(
                "SELECT session_key, entry_json, updated_at FROM session_nodes "
                "WHERE NOT (entry_valid = -1 AND entry_json = '{}') ORDER BY session_key"
            ).fetchall()
            out = []
            for key, entry_json, updated_at in rows:
                entry = self._entry(conn, key, entry_json)
                out.append(EntryRecord(key, serialize_entry(entry), _ms_to_ns(updated_at), entry))
            return out

        yield from self._run(work)

    def load(self) -> dict[str, Entry]:
        return {record.key: record.entry for record in self.records()}

    def refused_rows(self) -> list[RefusedRow]:
        """Rows openclaw's reader refuses (one makes it refuse the whole agent store):
        ``entry_valid = 0``, a ``-1`` row that still holds an entry, a non-canonical key."""
        def work(conn: sqlite3.Connection) -> list[tuple[str, int, str]]:
            return conn.execute(
                "SELECT session_key, entry_valid, entry_json FROM session_nodes "
                "WHERE NOT (entry_valid = -1 AND entry_json = '{}') ORDER BY session_key"
            ).fetchall()

        agent = self.schema.agent_id
        refused = []
        for key, valid, _entry_json in self._run(work):
            if valid == 0:
                refused.append(RefusedRow(key, "invalid persisted session row (entry_valid = 0): "
                                          "openclaw refuses to read this agent's sessions",
                                          REMEDY))
            elif valid == -1:
                refused.append(RefusedRow(key, "row marked deleted (entry_valid = -1) but still "
                                          "holding an entry", REMEDY))
            if not key.startswith("agent:") or (agent and not key.startswith(f"agent:{agent}:")):
                refused.append(RefusedRow(
                    key, "non-canonical session key (SESSION_CANONICAL_KEY_MIGRATION_REQUIRED): "
                    "openclaw refuses to read this agent's sessions", REMEDY))
        return refused

    def token_is_versioned(self, token: object) -> bool:
        """A fingerprint here starts with ``PRAGMA data_version`` (see :meth:`fingerprint`)."""
        return isinstance(token, tuple) and bool(token) and isinstance(token[0], int)

    def fingerprint(self) -> object:
        """``(data_version, newest mtime of the db and -wal, inode, db size, -wal size)``.

        ``data_version`` (on one kept connection) changes with every commit of another
        connection; the stats catch a replaced file. Cheap: two ``stat`` and one PRAGMA.
        """
        stats: list[os.stat_result | None] = []
        for suffix in ("", "-wal"):
            try:
                stats.append(os.stat(f"{self.path}{suffix}"))
            except FileNotFoundError:
                stats.append(None)
        db, wal = stats
        if db is None:
            return None
        ident = (db.st_dev, db.st_ino)
        if ident != self._ident:  # replaced (restore, a test rebuilding it): reopen everywhere
            self._ident = ident
            self._epoch += 1
            with self._probe_lock:
                if self._probe is not None:
                    self._probe.close()
                    self._probe = None
            with self._indexes_lock:
                self._indexes.clear()
        mtime = max(db.st_mtime_ns, wal.st_mtime_ns if wal else 0)
        version = self._data_version()
        return (version, mtime, db.st_ino, db.st_size, wal.st_size if wal else -1)

    def _data_version(self) -> int | None:
        with self._probe_lock:
            for _attempt in range(3):
                try:
                    if self._probe is None:
                        self._probe = _connect(self.path, self.busy_timeout)
                    return self._probe.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    if self._probe is not None:
                        self._probe.close()
                    self._probe = None
            return None  # the stats still change; the next call retries

    def remove_orphan_temps(self) -> list[Path]:
        return []  # sessionfs writes nothing here, so it leaves nothing behind

    # -- transcripts -----------------------------------------------------------------------------
    def transcript(self, key: str) -> SqliteTranscript | None:
        """The events of the session's current window, or None when it has none."""
        def work(conn: sqlite3.Connection) -> SqliteTranscript | None:
            row = conn.execute(
                "SELECT current_session_id, updated_at FROM session_nodes WHERE session_key = ? "
                "AND NOT (entry_valid = -1 AND entry_json = '{}')", (key,)).fetchone()
            if row is None:
                raise SessionNotFound(f"no session {key!r} in {self.path}")
            session_id, updated_at = row
            if "transcript_events" not in self.schema.tables or not isinstance(session_id, str):
                return None
            index = self._event_index(conn, session_id)
            if index is None:
                return None
            return SqliteTranscript(self, index, self._transcript_mtime(conn, session_id,
                                                                         updated_at))

        return self._run(work)

    def _transcript_mtime(self, conn: sqlite3.Connection, session_id: str,
                          fallback_ms: object) -> int:
        if "session_windows" in self.schema.tables:
            try:
                row = conn.execute("SELECT transcript_updated_at, updated_at FROM session_windows "
                                   "WHERE session_id = ?", (session_id,)).fetchone()
            except sqlite3.OperationalError:
                row = None
            if row is not None:
                for value in row:
                    if isinstance(value, int):
                        return _ms_to_ns(value)
        return _ms_to_ns(fallback_ms)

    def _shape(self, conn: sqlite3.Connection, session_id: str) -> tuple[object, ...]:
        count, max_seq = conn.execute(
            "SELECT count(*), max(seq) FROM transcript_events WHERE session_id = ?",
            (session_id,)).fetchone()
        generation = None
        if "transcript_rewrite_watermarks" in self.schema.tables:
            try:
                found = conn.execute("SELECT generation FROM transcript_rewrite_watermarks "
                                     "WHERE session_id = ?", (session_id,)).fetchone()
                generation = found[0] if found else None
            except sqlite3.OperationalError:
                generation = None
        return (count, max_seq, generation)

    def _length_sql(self) -> str:
        if self.schema.has_zstd:
            return ("CASE WHEN event_json IS NOT NULL THEN length(CAST(event_json AS BLOB)) "
                    "ELSE event_utf8_bytes END")
        return "length(CAST(event_json AS BLOB))"

    def _event_index(self, conn: sqlite3.Connection, session_id: str) -> _EventIndex | None:
        """The offset table of a transcript: reused while its shape is unchanged, extended by
        the new events when it only grew, rebuilt otherwise. One query over lengths, no data."""
        shape = self._shape(conn, session_id)
        if not shape[0]:
            return None
        with self._indexes_lock:
            cached = self._indexes.get(session_id)
            if cached is not None:
                self._indexes.move_to_end(session_id)
        if cached is not None and cached.shape == shape:
            return cached
        seqs, ends, after = array("q"), array("q"), None
        if (cached is not None and cached.shape[2] == shape[2] and cached.seqs
                and isinstance(shape[0], int) and shape[0] > len(cached.seqs)):
            before = conn.execute("SELECT count(*) FROM transcript_events WHERE session_id = ? "
                                  "AND seq <= ?", (session_id, cached.seqs[-1])).fetchone()[0]
            if before == len(cached.seqs):  # only appended: keep what we measured
                seqs, ends, after = array("q", cached.seqs), array("q", cached.ends), \
                    cached.seqs[-1]
        total = ends[-1] if ends else 0
        query = (f"SELECT seq, {self._length_sql()} FROM transcript_events WHERE session_id = ?"
                 + (" AND seq > ?" if after is not None else "") + " ORDER BY seq")
        params: tuple[object, ...] = (session_id,) if after is None else (session_id, after)
        for seq, length in conn.execute(query, params):
            total += (length or 0) + 1  # the line and its "\n"
            seqs.append(seq)
            ends.append(total)
        index = _EventIndex(session_id, shape, seqs, ends)
        with self._indexes_lock:
            self._indexes[session_id] = index
            self._indexes.move_to_end(session_id)
            while len(self._indexes) > _INDEX_CACHE_SESSIONS:
                self._indexes.popitem(last=False)
        return index

    def _forget_index(self, session_id: str) -> None:
        with self._indexes_lock:
            self._indexes.pop(session_id, None)

    def _event_rows(self, session_id: str, first_seq: int, last_seq: int
                    ) -> list[tuple[int, bytes]]:
        """``(seq, line + b"\\n")`` for the events with ``first_seq <= seq <= last_seq``."""
        columns = "seq, CAST(event_json AS BLOB)" + (", event_zstd, event_utf8_bytes"
                                        if self.schema.has_zstd else "")

        def work(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            lines = []
            for row in conn.execute(
                    f"SELECT {columns} FROM transcript_events WHERE session_id = ? "
                    "AND seq BETWEEN ? AND ? ORDER BY seq", (session_id, first_seq, last_seq)):
                lines.append((row[0], _event_line(row, self.path)))
            return lines

        return self._run(work)

    def _event_bytes(self, session_id: str, first_seq: int, last_seq: int
                     ) -> tuple[int, bytes]:
        """``(events, their lines joined)`` for ``first_seq <= seq <= last_seq``: one query, one
        loop, no call per plain event (a 200 MB transcript is ~300k events)."""
        zstd = self.schema.has_zstd
        columns = "CAST(event_json AS BLOB)" + (", event_zstd, event_utf8_bytes" if zstd else "")

        def work(conn: sqlite3.Connection) -> tuple[int, bytes]:
            rows = conn.execute(f"SELECT {columns} FROM transcript_events WHERE session_id = ? "
                                "AND seq BETWEEN ? AND ? ORDER BY seq",
                                (session_id, first_seq, last_seq))
            parts: list[bytes] = []
            append = parts.append
            if not zstd:
                for (text,) in rows:
                    if text is None:
                        raise StoreCorrupt(self.path, "a transcript event has no event_json")
                    append(text)
            else:
                for text, blob, length in rows:
                    if text is not None:
                        append(text)
                    else:
                        append(_event_line((0, None, blob, length), self.path)[:-1])
            return len(parts), b"\n".join(parts) + b"\n" if parts else b""

        return self._run(work)

    def transcript_bytes(self, key: str) -> bytes | None:
        """The whole transcript at once (tests and small tools; the mount streams)."""
        source = self.transcript(key)
        return None if source is None else b"".join(source.chunks())

    # -- writes: through the live openclaw Gateway (sessionfs.store.gateway_writes) -------------
    #: Writability is decided per write (is a Gateway live now?), not when the store is opened:
    #: a mount stays read-write and a Gateway that starts later makes it writable.
    writes_through_gateway = True

    @property
    def read_only_reason(self) -> str | None:
        """None while a live Gateway owns the state dir, else why writes are refused."""
        found = self.gateway.owner()
        if isinstance(found, str):
            return f"{found}; {START_HINT} ({GATEWAY_ONLY})"
        return None

    @read_only_reason.setter
    def read_only_reason(self, value: str | None) -> None:
        pass  # decided by the Gateway's presence (above)

    @property
    def gateway(self) -> GatewayClient:
        """The state dir's Gateway client (one per state dir: the agents share it)."""
        return client_for(state_dir_of(self.path))

    @property
    def agent(self) -> str:
        return self.schema.agent_id or self.path.parents[1].name

    def _writer(self) -> GatewayWriter:
        """The write side; without a live Gateway every write is refused first (EROFS)."""
        client = self.gateway
        found = client.owner()
        if isinstance(found, str):
            raise GatewayUnavailable(f"{self.path}: store is read-only: {found}; {START_HINT} "
                                     f"({GATEWAY_ONLY})")
        return GatewayWriter(client, self.agent, lambda key: self.read(key).entry)

    def put(self, key: str, entry: Entry, *, replacing: str | None = None) -> bool:
        """A save diffed against the stored entry (see :meth:`put_edited`)."""
        if replacing is not None:
            self._writer().rename(replacing, key)
        return self._writer().put(key, entry)

    def put_edited(self, key: str, entry: Entry, base: Entry | None) -> bool:
        """A save diffed against ``base``, the entry the writer was shown: one guarded
        ``sessions.patch`` (nothing sent when nothing patchable changed)."""
        return self._writer().put(key, entry, base)

    def create(self, key: str, entry: Entry | None = None) -> str:
        """``sessions.create``; the key openclaw made. :raises SessionExists:"""
        return self._writer().create(key, entry)

    def delete(self, key: str) -> None:
        self._writer().delete(key)

    def check_delete(self, key: str) -> None:
        """:raises NotPermitted: openclaw never deletes this session (its main one)."""
        GatewayWriter(self.gateway, self.agent, lambda k: self.read(k).entry).check_delete(key)

    def rename(self, old: str, new: str) -> None:
        self._writer().rename(old, new)

    def update(self, mutator: Mutator) -> UpdateSummary:
        raise ReadOnlyStore(f"{self.path}: a bulk update is not possible: the openclaw gateway "
                            "changes one session per sessions.patch; change sessions one at a "
                            "time")


def _event_line(row: tuple[Any, ...], path: Path) -> bytes:
    text = row[1]  # CAST(event_json AS BLOB): the stored UTF-8 bytes, not re-encoded
    if text is not None:
        return bytes(text) + b"\n"
    blob = row[2] if len(row) > 2 else None
    if blob is None:
        raise StoreCorrupt(path, f"transcript event {row[0]} has neither event_json nor "
                           "event_zstd")
    try:
        return _unzstd(bytes(blob), row[3]) + b"\n"
    except Exception as exc:  # zstandard.ZstdError and friends: a damaged frame
        raise StoreCorrupt(path, f"transcript event {row[0]}: bad zstd frame: {exc}") from exc


def _ms_to_ns(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value * 1_000_000)

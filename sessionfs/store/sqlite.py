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

A reader keeps its locks, so that a writer which appears later (the Gateway started after the
mount, or restarted) sees it. A writer that sees no reader checkpoints and restarts the ``-wal``
and, closing, removes ``-wal``/``-shm``; the reader keeps an orphaned wal-index and serves old
data, then "database disk image is malformed" (old WAL pages over newer database pages; seen
with openclaw 2026.9.6's Gateway). Two ways lost the locks, SQLite's howtocorrupt.html 2.2 and
2.6: closing any descriptor of the database drops every POSIX lock the process holds on it, so
:func:`is_sqlite_file` never opens a database a store of this process reads; and a connection
carried across ``fork`` (the mount opens the store, then forks its daemon) holds no lock in the
child while SQLite's in-process bookkeeping, copied along, says it does, so the child's first use
closes every inherited connection and opens its own (:meth:`SqliteStore._after_fork`).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import sqlite3
import stat
import threading
import time
import urllib.parse
import weakref
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
    SessionfsError,
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
    "is_locked",
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

#: openclaw's bounds on a compressed event (``transcript-payload.ts``: its decoder refuses a
#: frame or a declared length outside 1 byte to 4 MiB; the table's CHECK says the same): no
#: stored frame may make a reader allocate more than this per event.
MAX_EVENT_BYTES = 4 * 1024 * 1024
DAMAGED_REMEDY = ("restore the database from a backup, or stop the gateway and run 'openclaw "
                  "doctor --fix'")

_NODE_COLUMNS = ("session_key", "current_session_id", "entry_json", "entry_valid", "updated_at")
_EVENT_COLUMNS = ("session_id", "seq", "event_json")
_INDEX_CACHE_SESSIONS = 256  # per-session event offset tables kept (LRU)
#: Serialises :meth:`SqliteStore._after_fork` among a forked child's first readers.
_fork_lock = threading.Lock()


#: Every store of this process (see :func:`is_sqlite_file`), and the lock that orders reading a
#: header against a store starting to use its file.
_stores: weakref.WeakSet[SqliteStore] = weakref.WeakSet()
_stores_lock = threading.Lock()


def _new_module_locks() -> None:
    """In a forked child: a lock some thread of the parent held would never be released."""
    global _fork_lock, _stores_lock
    _fork_lock = threading.Lock()
    _stores_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_module_locks)


def is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` is a regular file starting with SQLite's 16-byte header.

    A database that a store of this process reads is not opened again but answered from that
    store (it was SQLite when opened; damage since then is each query's error): closing any
    descriptor of a file drops every POSIX lock the process holds on it (``fcntl(2)``), the
    locks of SQLite's connections included, and a writer that sees no reader checkpoints and
    restarts the ``-wal`` or removes ``-wal``/``-shm`` under it, so the reader serves old data
    and then "database disk image is malformed" (SQLite's howtocorrupt.html, 2.2). The state
    mount asks this of every agent's database whenever it looks for agents.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(st.st_mode):
        return False  # a FIFO would block the open
    with _stores_lock:  # no store starts using this file between the check and the close
        if any(store._ident == (st.st_dev, st.st_ino) for store in _stores):
            return True
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
    one damaged value is its row's problem (:func:`_is_utf8`), never the whole query's."""
    return data.decode("utf-8", "surrogateescape")


def _is_utf8(text: object) -> bool:
    """Whether a TEXT value read through :func:`_text` was valid UTF-8 (usable as a key, a
    name or a query parameter)."""
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(text: str) -> str:
    """A damaged TEXT value for messages: its bytes, invalid ones as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def is_locked(path: Path, wait: float = 0.2) -> bool:
    """Whether another process holds the database locked against readers now (an exclusive
    lock, ``locking_mode=EXCLUSIVE``), waiting at most ``wait`` seconds. Such a database is
    busy, not unreadable: callers that would otherwise fall back to other files ask first."""
    try:
        conn = _connect(path, wait)
    except sqlite3.Error as exc:
        return _is_busy(exc)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        return _is_busy(exc)
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


_decompressor_local = threading.local()


class _BadEvent(Exception):
    """A transcript row that cannot be decoded; the caller names the session and the seq."""


def _unzstd(blob: bytes, expected: object) -> bytes:
    """One plain zstd frame (no dictionary), as openclaw 9.6 writes ``event_zstd``, decoded the
    way openclaw's own decoder does: the frame and ``event_utf8_bytes`` within 1 byte to 4 MiB,
    never more output than ``event_utf8_bytes`` (a frame header declaring 1 GiB allocates
    nothing: the declared size is checked first and the output is read through a bounded
    stream), exactly that many bytes, valid UTF-8. :raises _BadEvent: with the reason."""
    import zstandard

    if isinstance(expected, bool) or not isinstance(expected, int) \
            or not 1 <= expected <= MAX_EVENT_BYTES:
        raise _BadEvent(f"event_utf8_bytes {expected!r} is outside openclaw's bounds (1 to "
                        f"{MAX_EVENT_BYTES} bytes)")
    if not 1 <= len(blob) <= MAX_EVENT_BYTES:
        raise _BadEvent(f"event_zstd holds {len(blob)} bytes, outside openclaw's bounds (1 to "
                        f"{MAX_EVENT_BYTES} bytes)")
    try:
        params = zstandard.get_frame_parameters(blob)
    except zstandard.ZstdError as exc:
        raise _BadEvent(f"event_zstd is not a zstd frame: {exc}") from exc
    if params.dict_id:
        raise _BadEvent(f"event_zstd needs zstd dictionary {params.dict_id}, which openclaw "
                        "never uses")
    declared = params.content_size
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared != expected:
        raise _BadEvent(f"its zstd frame declares {declared} bytes but the row's "
                        f"event_utf8_bytes says {expected}")
    decompressor = getattr(_decompressor_local, "d", None)
    if decompressor is None:
        decompressor = _decompressor_local.d = zstandard.ZstdDecompressor()
    parts: list[bytes] = []
    got = 0
    try:
        with decompressor.stream_reader(blob) as reader:
            while got <= expected:  # one byte past the bound tells a lie from the truth
                chunk = reader.read(expected + 1 - got)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
    except zstandard.ZstdError as exc:
        raise _BadEvent(f"bad zstd frame: {exc}") from exc
    if got > expected:
        raise _BadEvent(f"event_zstd decompresses to more than the {expected} bytes the row's "
                        "event_utf8_bytes says (decoding stopped there)")
    if got < expected:
        raise _BadEvent(f"event_zstd decompresses to {got} bytes but the row's "
                        f"event_utf8_bytes says {expected}")
    data = b"".join(parts)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadEvent(f"event_zstd decompresses to bytes that are not UTF-8 (byte "
                        f"{exc.start})") from exc
    return data


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

    def __init__(self, store: SqliteStore, index: _EventIndex, mtime_ns: int,
                 key: str | None = None) -> None:
        self._store = store
        self._index = index
        self.key = key
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
                                               index.seqs[last], self.key)
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
    transcripts_are_files = False
    fingerprint_is_costly = True

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
        #: (fingerprint it is current for, damaged rows): see :meth:`damaged_rows`
        self._damaged: tuple[object, list[RefusedRow]] | None = None
        self._refused: tuple[object, list[RefusedRow]] | None = None  # see refused_rows
        self._damaged_lock = threading.Lock()
        self._pid = os.getpid()  # the process the connections belong to (see _after_fork)
        if not self.path.exists():
            raise StoreNotFound(f"{self.path}: no such database")
        if not is_sqlite_file(self.path):
            raise StoreCorrupt(self.path, "not an SQLite database (no SQLite header)")
        self._ident = self._file_ident()
        with _stores_lock:
            _stores.add(self)  # from now on is_sqlite_file never opens this file
        self.schema: SchemaInfo = self._run(lambda conn: inspect_schema(conn, self.path))

    # -- connections -----------------------------------------------------------------------------
    def _file_ident(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _after_fork(self) -> None:
        """Forget every connection made by the process this one was forked from.

        SQLite forbids carrying a connection into a child: the parent's locks are not the
        child's, yet SQLite's in-process lock table says they are held, and every connection
        the child opens to the same file shares that table, so none of them would take a real
        lock. Closing all inherited connections empties the table (nothing is unlocked or
        written on disk: the child holds no lock, and a ``mode=ro`` connection cannot
        checkpoint or delete the ``-wal``); new connections then lock for real. The locks are
        replaced too: one held by a thread of the parent would never be released here.
        Forking while another thread is inside a query is not supported (as SQLite says).
        """
        self._all_lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._indexes_lock = threading.Lock()
        self._damaged_lock = threading.Lock()
        inherited, self._all = self._all, []
        if self._probe is not None:
            inherited.append(self._probe)
            self._probe = None
        for conn in inherited:
            conn.close()
        self._local = threading.local()
        self._epoch += 1
        self._damaged = self._refused = None  # keyed by the parent's data_version
        self._pid = os.getpid()

    def _check_process(self) -> None:
        """Reset the connections when this is no longer the process that opened them."""
        if self._pid != os.getpid():
            with _fork_lock:  # the child's first readers may arrive together
                if self._pid != os.getpid():
                    self._after_fork()

    def _conn(self) -> sqlite3.Connection:
        self._check_process()
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
        if self._pid != os.getpid():
            self._check_process()  # closes the inherited ones
            return
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

    def limit_waits(self, busy_timeout: float, busy_deadline: float) -> None:
        self.busy_timeout = busy_timeout
        self.busy_deadline = busy_deadline

    def shown_updated_ns(self, record: EntryRecord) -> int:
        """The row's ``updated_at`` column (what openclaw sorts by), not the entry's field."""
        return record.mtime_ns

    def keys(self) -> list[str]:
        """Every session key, by key; a key that is not UTF-8 is a damaged row
        (:meth:`damaged_rows`), not a session."""
        return self._run(lambda conn: [row[0] for row in conn.execute(
            "SELECT session_key FROM session_nodes "
            "WHERE NOT (entry_valid = -1 AND entry_json = '{}') ORDER BY session_key")
            if _is_utf8(row[0])])

    def updated_times(self) -> dict[str, int]:
        return self._run(lambda conn: {row[0]: _ms_to_ns(row[1]) for row in conn.execute(
            "SELECT session_key, updated_at FROM session_nodes "
            "WHERE NOT (entry_valid = -1 AND entry_json = '{}')") if _is_utf8(row[0])})

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self._run(lambda conn: conn.execute(
            "SELECT 1 FROM session_nodes WHERE session_key = ? "
            "AND NOT (entry_valid = -1 AND entry_json = '{}')", (key,)).fetchone() is not None)

    def _entry(self, conn: sqlite3.Connection, key: str, entry_json: bytes | str) -> Entry:
        """The entry of one row. ``entry_json`` comes as the stored bytes (``CAST(entry_json
        AS BLOB)``): a row that is not UTF-8 is then this row's error, not the whole query's.
        :raises StoreCorrupt: not JSON, not an object, not UTF-8, nested too deep."""
        try:
            entry = jsonfmt.loads(entry_json)
        except InvalidJSON as exc:
            raise StoreCorrupt(self.path, f"session {key!r}: entry_json: {exc}") from exc
        except RecursionError as exc:  # a parser fallback without a depth limit
            raise StoreCorrupt(self.path, f"session {key!r}: entry_json: nesting too deep to "
                               "parse") from exc
        if not isinstance(entry, dict):
            raise StoreCorrupt(self.path, f"session {key!r}: entry_json is not a JSON object "
                               f"but {_json_kind(entry)}")
        if self.schema.has_snapshots:
            found = dict(conn.execute(
                "SELECT field, CAST(value_json AS BLOB) FROM session_entry_snapshots "
                "WHERE session_key = ?", (key,)).fetchall())
            for field in SNAPSHOT_FIELDS:  # openclaw's attachSessionEntrySnapshots order
                value_json = found.get(field)
                if value_json is None:
                    continue
                try:
                    entry[field] = jsonfmt.loads(value_json)
                except (InvalidJSON, RecursionError) as exc:
                    raise StoreCorrupt(self.path, f"session {key!r}: snapshot {field}: "
                                       f"{exc or 'nesting too deep to parse'}") from exc
        return entry

    def read(self, key: str) -> EntryRecord:
        """One session. :raises StoreCorrupt: this row is damaged (see :meth:`damaged_rows`);
        every other session stays readable."""
        def work(conn: sqlite3.Connection) -> EntryRecord:
            row = conn.execute(
                "SELECT CAST(entry_json AS BLOB), updated_at FROM session_nodes "
                "WHERE session_key = ? AND NOT (entry_valid = -1 AND entry_json = '{}')",
                (key,)).fetchone()
            if row is None:
                raise SessionNotFound(f"no session {key!r} in {self.path}")
            entry = self._entry(conn, key, row[0])
            return EntryRecord(key, serialize_entry(entry), _ms_to_ns(row[1]), entry)

        return self._run(work)

    def _parse_row(self, conn: sqlite3.Connection, key: str, entry_json: bytes,
                   updated_at: object) -> EntryRecord | RefusedRow:
        """One row read: its record, or why it is damaged (it costs only itself)."""
        if not _is_utf8(key):
            return _damaged(_shown(key), "session_key is not valid UTF-8: no path or command "
                            "can name this session")
        try:
            entry = self._entry(conn, key, entry_json)
            data = serialize_entry(entry)
        except StoreCorrupt as exc:
            return _damaged(key, exc.reason)
        except SessionfsError as exc:  # parsed, yet no entry openclaw could write
            return _damaged(key, f"session {key!r}: entry_json: {exc}")
        return EntryRecord(key, data, _ms_to_ns(updated_at), entry)

    def _rows(self, conn: sqlite3.Connection) -> list[tuple[str, bytes, object]]:
        return conn.execute(
            "SELECT session_key, CAST(entry_json AS BLOB), updated_at FROM session_nodes "
            "WHERE NOT (entry_valid = -1 AND entry_json = '{}') ORDER BY session_key"
        ).fetchall()

    def _scan(self) -> tuple[list[EntryRecord], list[RefusedRow]]:
        """Every row from one read transaction: the readable sessions' records and the
        damaged rows (:meth:`damaged_rows`), which cost only themselves."""
        def work(conn: sqlite3.Connection) -> tuple[list[EntryRecord], list[RefusedRow]]:
            out, damaged = [], []
            for key, entry_json, updated_at in self._rows(conn):
                read = self._parse_row(conn, key, entry_json, updated_at)
                if isinstance(read, RefusedRow):
                    damaged.append(read)
                else:
                    out.append(read)
            return out, damaged

        return self._run(work)

    def _snapshot_digests(self, conn: sqlite3.Connection) -> dict[str, bytes]:
        """Per key, the stored snapshot rows' bytes (what :meth:`_entry` adds to the entry),
        unparsed, in one query."""
        if not self.schema.has_snapshots:
            return {}
        joined: dict[str, list[bytes]] = {}
        for key, field, value_json in conn.execute(
                "SELECT session_key, field, CAST(value_json AS BLOB) "
                "FROM session_entry_snapshots ORDER BY session_key, field"):
            if field in SNAPSHOT_FIELDS and value_json is not None:
                joined.setdefault(key, []).append(field.encode() + b"\0" + value_json)
        return {key: b"\0".join(parts) for key, parts in joined.items()}

    def stamped_records(self, unchanged: Callable[[str, bytes], bool]
                        ) -> Iterator[tuple[str, bytes, EntryRecord | None]]:
        """One read transaction; a row's stamp digests its stored ``entry_json`` and snapshot
        bytes as they are, so an unchanged row costs a digest, not a parse: re-rendering
        100k sessions after one changed parses one. Damaged rows are left out (as by
        :meth:`records`) and remembered for :meth:`damaged_rows`."""
        fingerprint = self.fingerprint()  # taken first: a commit during the scan moves it

        def work(conn: sqlite3.Connection) -> tuple[list[tuple[str, bytes, EntryRecord | None]],
                                                    list[RefusedRow]]:
            snapshots = self._snapshot_digests(conn)
            out: list[tuple[str, bytes, EntryRecord | None]] = []
            damaged: list[RefusedRow] = []
            for key, entry_json, updated_at in self._rows(conn):
                if _is_utf8(key):
                    digest = hashlib.blake2b(entry_json, digest_size=16)
                    digest.update(b"\0" + snapshots.get(key, b""))
                    stamp = digest.digest()
                    if unchanged(key, stamp):
                        out.append((key, stamp, None))
                        continue
                else:
                    stamp = b""
                read = self._parse_row(conn, key, entry_json, updated_at)
                if isinstance(read, RefusedRow):
                    damaged.append(read)
                else:
                    out.append((read.key, stamp, read))
            return out, damaged

        rows, damaged = self._run(work)
        with self._damaged_lock:
            self._damaged = (fingerprint, damaged)
        yield from rows

    def sessions_with_events(self) -> set[str] | None:
        if "transcript_events" not in self.schema.tables:
            return None
        return set(self._run(lambda conn: [row[0] for row in conn.execute(
            "SELECT DISTINCT session_id FROM transcript_events")]))

    def records(self) -> Iterator[EntryRecord]:
        """Every readable session's record from one read transaction (one consistent state).
        A damaged row is left out here and named by :meth:`damaged_rows` (and so by
        :meth:`refused_rows`, which ``status`` and ``check`` show)."""
        fingerprint = self.fingerprint()  # taken first: a commit during the scan moves it
        records, damaged = self._scan()
        with self._damaged_lock:
            self._damaged = (fingerprint, damaged)  # status after a render parses nothing again
        yield from records

    def load(self) -> dict[str, Entry]:
        return {record.key: record.entry for record in self.records()}

    def damaged_rows(self) -> list[RefusedRow]:
        """Rows whose ``entry_json`` cannot be read (not UTF-8, not JSON, not an object, nested
        too deep): each costs only its own session, which answers EIO. Cached per
        fingerprint: ``status`` asks at every read and parsing 100k entries takes a second."""
        fingerprint = self.fingerprint()
        with self._damaged_lock:
            cached = self._damaged
        if cached is not None and cached[0] == fingerprint and fingerprint is not None:
            return list(cached[1])
        _records, damaged = self._scan()
        with self._damaged_lock:
            self._damaged = (fingerprint, damaged)
        return list(damaged)

    def _scan_session_ids(self) -> dict[str, list[str]]:
        """sessionId -> keys from one scan (one transaction), not one read per key."""
        index: dict[str, list[str]] = {}
        for record in self.records():
            session_id = record.entry.get("sessionId")
            if isinstance(session_id, str):
                index.setdefault(session_id, []).append(record.key)
        return index

    def refused_rows(self) -> list[RefusedRow]:
        """Rows openclaw's reader refuses (one makes it refuse the whole agent store):
        ``entry_valid = 0``, a ``-1`` row that still holds an entry, a non-canonical key, an
        entry whose ``sessionId`` or ``updatedAt`` differs from the row's ``current_session_id``
        or ``updated_at`` (openclaw's ``parseSqliteSessionEntryRecord``); these are served.
        Then the damaged rows (:meth:`damaged_rows`), which are not. Cached per fingerprint:
        the state mount's ``status`` asks for every agent at every read."""
        fingerprint = self.fingerprint()
        with self._damaged_lock:
            cached = self._refused
        if cached is not None and fingerprint is not None and cached[0] == fingerprint:
            return list(cached[1])
        refused = self._refused_rows()
        with self._damaged_lock:
            self._refused = (fingerprint, refused)
        return list(refused)

    def _refused_rows(self) -> list[RefusedRow]:
        def work(conn: sqlite3.Connection) -> list[tuple[str, int, str, object, object,
                                                         object]]:
            # CASE, not AND: json_extract of malformed JSON is an error for the whole query
            return conn.execute(
                "SELECT session_key, entry_valid, current_session_id, updated_at, "
                "CAST(sid AS BLOB), upd FROM "
                "(SELECT session_key, entry_valid, current_session_id, updated_at, "
                "CASE WHEN json_valid(entry_json) THEN json_extract(entry_json, '$.sessionId') "
                "END AS sid, CASE WHEN json_valid(entry_json) THEN "
                "json_extract(entry_json, '$.updatedAt') END AS upd FROM session_nodes "
                "WHERE NOT (entry_valid = -1 AND entry_json = '{}')) "
                "WHERE entry_valid != 1 OR sid IS NOT current_session_id "
                "OR upd IS NOT updated_at ORDER BY session_key").fetchall()

        agent = self.schema.agent_id
        damaged = {row.key: row for row in self.damaged_rows()}
        foreign = {key for key in self.keys() if not key.startswith("agent:")
                   or (agent and not key.startswith(f"agent:{agent}:"))}
        flagged = {row[0]: row for row in self._run(work) if _is_utf8(row[0])}
        refused = []
        for key in sorted(set(flagged) | foreign):
            row = flagged.get(key)
            valid = row[1] if row is not None else 1
            if valid == 0:
                refused.append(RefusedRow(key, "invalid persisted session row (entry_valid = 0): "
                                          "openclaw refuses to read this agent's sessions",
                                          REMEDY))
            elif valid == -1:
                refused.append(RefusedRow(key, "row marked deleted (entry_valid = -1) but still "
                                          "holding an entry", REMEDY))
            if key in foreign:
                refused.append(RefusedRow(
                    key, "non-canonical session key (SESSION_CANONICAL_KEY_MIGRATION_REQUIRED): "
                    "openclaw refuses to read this agent's sessions", REMEDY))
            if row is not None and key not in damaged:
                current_id, updated_at, entry_id_bytes, entry_updated = row[2:]
                entry_id = (bytes(entry_id_bytes).decode("utf-8", "replace")
                            if isinstance(entry_id_bytes, bytes) else entry_id_bytes)
                if entry_id != current_id:
                    refused.append(RefusedRow(
                        key, f"entry_json's sessionId {entry_id!r} is not the row's "
                        f"current_session_id {current_id!r}: openclaw refuses this row; the "
                        "transcript shown (and its file name) is that of current_session_id, "
                        "the session's own window", REMEDY))
                if not _same_number(entry_updated, updated_at):
                    refused.append(RefusedRow(
                        key, f"entry_json's updatedAt {entry_updated!r} is not the row's "
                        f"updated_at {updated_at!r}: openclaw refuses this row", REMEDY))
        return refused + list(damaged.values())

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
        self._check_process()
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
        self._check_process()
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
            if isinstance(session_id, str) and not _is_utf8(session_id):
                raise StoreCorrupt(self.path, f"session {key!r}: current_session_id "
                                   f"{_shown(session_id)!r} is not valid UTF-8")
            if "transcript_events" not in self.schema.tables or not isinstance(session_id, str):
                return None
            index = self._event_index(conn, session_id)
            if index is None:
                return None
            return SqliteTranscript(self, index, self._transcript_mtime(conn, session_id,
                                                                         updated_at), key)

        return self._run(work)

    def transcript_ids(self) -> dict[str, str]:
        """``{key: sessionId of its transcript}`` for every session (one query).

        The transcript of a key is the window of its row's ``current_session_id`` (the
        window's ``session_key`` points back at the key; :meth:`transcript` reads it), so its
        file is named after that too. An ``entry_json`` whose ``sessionId`` says otherwise is
        refused by openclaw (``parseSqliteSessionEntryRecord``) and reported here
        (:meth:`refused_rows`); naming the file after it would show one session's events
        under another session's name. Damaged rows are included: their transcript is intact.
        """
        return {key: session_id for key, session_id in self._run(lambda conn: conn.execute(
            "SELECT session_key, current_session_id FROM session_nodes WHERE NOT "
            "(entry_valid = -1 AND entry_json = '{}') ORDER BY session_key").fetchall())
            if _is_utf8(key) and _is_utf8(session_id)}

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

    def _event_bytes(self, session_id: str, first_seq: int, last_seq: int,
                     key: str | None = None) -> tuple[int, bytes]:
        """``(events, their lines joined)`` for ``first_seq <= seq <= last_seq``: one query, one
        loop, no call per plain event (a 200 MB transcript is ~300k events). A row that cannot
        be decoded is an error naming the session and that event's seq (``StoreCorrupt``, EIO),
        never taken for a rewrite."""
        zstd = self.schema.has_zstd
        columns = "seq, CAST(event_json AS BLOB)" + (", event_zstd, event_utf8_bytes"
                                                     if zstd else "")

        def work(conn: sqlite3.Connection) -> tuple[int, bytes]:
            rows = conn.execute(f"SELECT {columns} FROM transcript_events WHERE session_id = ? "
                                "AND seq BETWEEN ? AND ? ORDER BY seq",
                                (session_id, first_seq, last_seq))
            parts: list[bytes] = []
            append = parts.append
            for row in rows:
                if row[1] is not None:
                    append(row[1])
                    continue
                try:
                    append(_event_payload(row))
                except _BadEvent as exc:
                    raise StoreCorrupt(self.path, f"{_session_words(key, session_id)}: "
                                       f"transcript event seq {row[0]}: {exc}") from exc
            return len(parts), b"\n".join(parts) + b"\n" if parts else b""

        return self._run(work)

    def damaged_events(self) -> list[tuple[str, str, int, str]]:
        """Every transcript row that cannot be decoded, or whose text is not JSON (a read
        serves such a line as stored; openclaw's loader cannot parse it): ``(session key or
        '', session id, seq, reason)``, each event decoded as a read would (bounded, one at a
        time). For ``check``: it reads every event."""
        zstd = self.schema.has_zstd
        if "transcript_events" not in self.schema.tables:
            return []
        columns = "seq, CAST(event_json AS BLOB)" + (", event_zstd, event_utf8_bytes"
                                                     if zstd else "")

        def owners(conn: sqlite3.Connection) -> dict[str, str]:
            return {row[1]: row[0] for row in conn.execute(
                "SELECT session_key, current_session_id FROM session_nodes "
                "ORDER BY session_key DESC")}

        def ids(conn: sqlite3.Connection) -> list[str]:
            return [row[0] for row in conn.execute(
                "SELECT DISTINCT session_id FROM transcript_events ORDER BY session_id")]

        owner_of = self._run(owners)
        found = []
        for session_id in self._run(ids):
            if not _is_utf8(session_id):  # no query can name it: one problem for them all
                found.append((owner_of.get(session_id, ""), _shown(session_id), -1,
                              "the session_id of these events is not valid UTF-8"))
                continue
            def scan(conn: sqlite3.Connection, session_id: str = session_id
                     ) -> list[tuple[int, str]]:
                bad = []
                for row in conn.execute(f"SELECT {columns} FROM transcript_events WHERE "
                                        "session_id = ? ORDER BY seq", (session_id,)):
                    try:
                        text = row[1] if row[1] is not None else _event_payload(row)
                    except _BadEvent as exc:
                        bad.append((row[0], str(exc)))
                        continue
                    try:
                        jsonfmt.loads(text)
                    except (InvalidJSON, RecursionError) as exc:
                        bad.append((row[0], f"the event is not JSON: {exc or 'too deep'}"))
                return bad

            for seq, reason in self._run(scan):
                found.append((owner_of.get(session_id, ""), session_id, seq, reason))
        return found

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


def _event_payload(row: tuple[Any, ...]) -> bytes:
    """The text of an event row ``(seq, event_json bytes | None[, event_zstd, utf8 bytes])``
    that has no ``event_json``. :raises _BadEvent:"""
    blob = row[2] if len(row) > 2 else None
    if blob is None:
        raise _BadEvent("the row has neither event_json nor event_zstd")
    return _unzstd(bytes(blob), row[3])


def _session_words(key: str | None, session_id: str) -> str:
    return f"session {key!r} (sessionId {session_id})" if key else f"sessionId {session_id}"


def _damaged(key: str, reason: str) -> RefusedRow:
    prefix = f"session {key!r}: "
    reason = reason[len(prefix):] if reason.startswith(prefix) else reason
    return RefusedRow(key, f"damaged row: {reason}; sessionfs answers EIO for this session and "
                      "leaves it out of sessions.json (openclaw refuses to read this agent's "
                      "sessions)", DAMAGED_REMEDY)


def _json_kind(value: object) -> str:
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


def _ms_to_ns(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value * 1_000_000)

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

import collections
import hashlib
import os
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

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
)
from sessionfs.gateway import START_HINT, GatewayClient, client_for, state_dir_of
from sessionfs.store.base import (
    Entry,
    EntryRecord,
    Mutator,
    RefusedRow,
    Store,
    UpdateSummary,
)
from sessionfs.store.gateway_writes import GatewayWriter
from sessionfs.store.sqlite_events import EventReader, SqliteTranscript
from sessionfs.store.sqlite_rows import FLAGGED_ROWS_SQL, damaged_row, json_kind, openclaw_refusals
from sessionfs.store.sqlite_schema import (
    FIRST_SUPPORTED_SCHEMA,
    NEWEST_KNOWN_SCHEMA,
    SNAPSHOT_FIELDS,
    SQLITE_MAGIC,
    SchemaInfo,
    connect,
    inspect_schema,
    is_busy,
    is_locked,
    is_utf8,
    ms_to_ns,
    shown,
)

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

READ_ONLY_REASON = (
    "the openclaw gateway is the single owner of this SQLite database and sessionfs never writes "
    "it; change a session through openclaw instead (the chat's commands, the gateway's "
    "sessions.patch, 'openclaw sessions cleanup', 'openclaw doctor --fix')")
#: Why writes need the Gateway (said with every refusal for lack of one).
GATEWAY_ONLY = ("the openclaw Gateway is the single owner of this SQLite database: sessionfs "
                "changes sessions only through it, never by writing the database")


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
        self._events = EventReader(self.path, self.schema, self._run)

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
        self._events.after_fork()
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
        conn = connect(self.path, self.busy_timeout)
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
                if not is_busy(exc):
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
            if is_utf8(row[0])])

    def updated_times(self) -> dict[str, int]:
        return self._run(lambda conn: {row[0]: ms_to_ns(row[1]) for row in conn.execute(
            "SELECT session_key, updated_at FROM session_nodes "
            "WHERE NOT (entry_valid = -1 AND entry_json = '{}')") if is_utf8(row[0])})

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
        entry = self._entry_json(key, entry_json)
        if self.schema.has_snapshots:
            found = dict(conn.execute(
                "SELECT field, CAST(value_json AS BLOB) FROM session_entry_snapshots "
                "WHERE session_key = ?", (key,)).fetchall())
            self._attach_snapshots(key, entry, found)
        return entry

    def _entry_json(self, key: str, entry_json: bytes | str) -> Entry:
        """``entry_json`` parsed, without its snapshots. :raises StoreCorrupt:"""
        try:
            entry = jsonfmt.loads(entry_json)
        except InvalidJSON as exc:
            raise StoreCorrupt(self.path, f"session {key!r}: entry_json: {exc}") from exc
        except RecursionError as exc:  # a parser fallback without a depth limit
            raise StoreCorrupt(self.path, f"session {key!r}: entry_json: nesting too deep to "
                               "parse") from exc
        if not isinstance(entry, dict):
            raise StoreCorrupt(self.path, f"session {key!r}: entry_json is not a JSON object "
                               f"but {json_kind(entry)}")
        return entry

    def _attach_snapshots(self, key: str, entry: Entry, found: dict[str, bytes]) -> None:
        """Schema 24's ``session_entry_snapshots`` values into ``entry``, in openclaw's order.
        :raises StoreCorrupt: a snapshot value that is not JSON."""
        if found:
            for field in SNAPSHOT_FIELDS:  # openclaw's attachSessionEntrySnapshots order
                value_json = found.get(field)
                if value_json is None:
                    continue
                try:
                    entry[field] = jsonfmt.loads(value_json)
                except (InvalidJSON, RecursionError) as exc:
                    raise StoreCorrupt(self.path, f"session {key!r}: snapshot {field}: "
                                       f"{exc or 'nesting too deep to parse'}") from exc

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
            return EntryRecord(key, serialize_entry(entry), ms_to_ns(row[1]), entry)

        return self._run(work)

    def _parse_row(self, conn: sqlite3.Connection | None, key: str, entry_json: bytes,
                   updated_at: object, found: dict[str, bytes] | None = None
                   ) -> EntryRecord | RefusedRow:
        """One row read: its record, or why it is damaged (it costs only itself). ``found``:
        its snapshot values, already read (then ``conn`` is not used)."""
        if not is_utf8(key):
            return damaged_row(shown(key), "session_key is not valid UTF-8: no path or command "
                            "can name this session")
        try:
            if found is None:
                assert conn is not None, "a row without its snapshots needs the connection"
                entry = self._entry(conn, key, entry_json)
            else:
                entry = self._entry_json(key, entry_json)
                self._attach_snapshots(key, entry, found)
            data = serialize_entry(entry)
        except StoreCorrupt as exc:
            return damaged_row(key, exc.reason)
        except SessionfsError as exc:  # parsed, yet no entry openclaw could write
            return damaged_row(key, f"session {key!r}: entry_json: {exc}")
        return EntryRecord(key, data, ms_to_ns(updated_at), entry)

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

    def _snapshot_rows(self, conn: sqlite3.Connection) -> dict[str, dict[str, bytes]]:
        """Per key, the stored snapshot values (what :meth:`_entry` adds to the entry),
        unparsed, in one query."""
        if not self.schema.has_snapshots:
            return {}
        found: dict[str, dict[str, bytes]] = {}
        for key, field, value_json in conn.execute(
                "SELECT session_key, field, CAST(value_json AS BLOB) "
                "FROM session_entry_snapshots ORDER BY session_key, field"):
            if field in SNAPSHOT_FIELDS and value_json is not None:
                found.setdefault(key, {})[field] = value_json
        return found

    def stamped_records(self, unchanged: Callable[[str, bytes], bool]
                        ) -> Iterator[tuple[str, bytes, EntryRecord | None]]:
        """One read transaction; a row's stamp digests its stored ``entry_json`` and snapshot
        bytes as they are, so an unchanged row costs a digest, not a parse: re-rendering
        100k sessions after one changed parses one. The rows that need it are parsed one at a
        time as the caller takes them (after the transaction, from the bytes it read), so the
        parsed entries of 100k sessions never live at once: their dicts, freed between the
        caller's long-lived member bytes, would fragment the heap beyond what ``malloc_trim``
        returns (RSS after a first render at 100k: 425 MB that way, 2xx MB this way). Damaged
        rows are left out (as by :meth:`records`) and remembered for :meth:`damaged_rows`."""
        fingerprint = self.fingerprint()  # taken first: a commit during the scan moves it

        def work(conn: sqlite3.Connection) -> list[tuple[str, bytes, bytes | None, object,
                                                          dict[str, bytes]]]:
            snapshots = self._snapshot_rows(conn)
            rows: list[tuple[str, bytes, bytes | None, object, dict[str, bytes]]] = []
            for key, entry_json, updated_at in self._rows(conn):
                found = snapshots.get(key, {})
                if is_utf8(key):
                    digest = hashlib.blake2b(entry_json, digest_size=16)
                    for field in sorted(found):
                        digest.update(b"\0" + field.encode() + b"\0" + found[field])
                    stamp = digest.digest()
                    if unchanged(key, stamp):
                        rows.append((key, stamp, None, None, found))
                        continue
                else:
                    stamp = b""
                rows.append((key, stamp, entry_json, updated_at, found))
            return rows

        rows = collections.deque(self._run(work))
        damaged: list[RefusedRow] = []
        while rows:  # each row's bytes go as it is parsed
            key, stamp, entry_json, updated_at, found = rows.popleft()
            if entry_json is None:
                yield key, stamp, None
                continue
            read = self._parse_row(None, key, entry_json, updated_at, found)
            if isinstance(read, RefusedRow):
                damaged.append(read)
            else:
                yield read.key, stamp, read
        with self._damaged_lock:
            self._damaged = (fingerprint, damaged)

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
        flagged = self._run(lambda conn: conn.execute(FLAGGED_ROWS_SQL).fetchall())
        return openclaw_refusals(flagged, self.keys(), self.schema.agent_id,
                                 {row.key: row for row in self.damaged_rows()})

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
            self._events.forget_all()
        mtime = max(db.st_mtime_ns, wal.st_mtime_ns if wal else 0)
        version = self._data_version()
        return (version, mtime, db.st_ino, db.st_size, wal.st_size if wal else -1)

    def _data_version(self) -> int | None:
        self._check_process()
        with self._probe_lock:
            for _attempt in range(3):
                try:
                    if self._probe is None:
                        self._probe = connect(self.path, self.busy_timeout)
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
            if isinstance(session_id, str) and not is_utf8(session_id):
                raise StoreCorrupt(self.path, f"session {key!r}: current_session_id "
                                   f"{shown(session_id)!r} is not valid UTF-8")
            if "transcript_events" not in self.schema.tables or not isinstance(session_id, str):
                return None
            index = self._events.index(conn, session_id)
            if index is None:
                return None
            return SqliteTranscript(self._events, index,
                                    self._events.mtime(conn, session_id, updated_at), key)

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
            if is_utf8(key) and is_utf8(session_id)}

    def damaged_events(self) -> list[tuple[str, str, int, str]]:
        """Every transcript event that cannot be decoded or is not JSON (see
        :meth:`EventReader.damaged_events`); for ``check``: it reads every event."""
        return self._events.damaged_events()

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

"""The SQLite generation's transcripts: ``transcript_events`` served as JSONL by seq range,
with ``event_zstd`` decoded within openclaw's own bounds (a frame never makes a reader
allocate more than 4 MiB), and the scan ``check`` makes of every event.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessionfs import jsonfmt
from sessionfs.errors import InvalidJSON, StoreCorrupt, TranscriptChanged
from sessionfs.store.sqlite_schema import SchemaInfo, is_utf8, ms_to_ns, shown
from sessionfs.store.transcript_source import TranscriptSource

__all__ = ["MAX_EVENT_BYTES", "BadEvent", "EventIndex", "EventReader", "SqliteTranscript",
           "event_payload", "session_words"]

#: openclaw's bounds on a compressed event (``transcript-payload.ts``: its decoder refuses a
#: frame or a declared length outside 1 byte to 4 MiB; the table's CHECK says the same): no
#: stored frame may make a reader allocate more than this per event.
MAX_EVENT_BYTES = 4 * 1024 * 1024
_INDEX_CACHE_SESSIONS = 256  # per-session event offset tables kept (LRU)

_decompressor_local = threading.local()


class BadEvent(Exception):
    """A transcript row that cannot be decoded; the caller names the session and the seq."""


def _unzstd(blob: bytes, expected: object) -> bytes:
    """One plain zstd frame (no dictionary), as openclaw 9.6 writes ``event_zstd``, decoded the
    way openclaw's own decoder does: the frame and ``event_utf8_bytes`` within 1 byte to 4 MiB,
    never more output than ``event_utf8_bytes`` (a frame header declaring 1 GiB allocates
    nothing: the declared size is checked first and the output is read through a bounded
    stream), exactly that many bytes, valid UTF-8. :raises BadEvent: with the reason."""
    import zstandard

    if isinstance(expected, bool) or not isinstance(expected, int) \
            or not 1 <= expected <= MAX_EVENT_BYTES:
        raise BadEvent(f"event_utf8_bytes {expected!r} is outside openclaw's bounds (1 to "
                        f"{MAX_EVENT_BYTES} bytes)")
    if not 1 <= len(blob) <= MAX_EVENT_BYTES:
        raise BadEvent(f"event_zstd holds {len(blob)} bytes, outside openclaw's bounds (1 to "
                        f"{MAX_EVENT_BYTES} bytes)")
    try:
        params = zstandard.get_frame_parameters(blob)
    except zstandard.ZstdError as exc:
        raise BadEvent(f"event_zstd is not a zstd frame: {exc}") from exc
    if params.dict_id:
        raise BadEvent(f"event_zstd needs zstd dictionary {params.dict_id}, which openclaw "
                        "never uses")
    declared = params.content_size
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared != expected:
        raise BadEvent(f"its zstd frame declares {declared} bytes but the row's "
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
        raise BadEvent(f"bad zstd frame: {exc}") from exc
    if got > expected:
        raise BadEvent(f"event_zstd decompresses to more than the {expected} bytes the row's "
                        "event_utf8_bytes says (decoding stopped there)")
    if got < expected:
        raise BadEvent(f"event_zstd decompresses to {got} bytes but the row's "
                        f"event_utf8_bytes says {expected}")
    data = b"".join(parts)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadEvent(f"event_zstd decompresses to bytes that are not UTF-8 (byte "
                        f"{exc.start})") from exc
    return data


@dataclass
class EventIndex:
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

    def __init__(self, events: EventReader, index: EventIndex, mtime_ns: int,
                 key: str | None = None) -> None:
        self._events = events
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
        count, data = self._events.event_bytes(index.session_id, index.seqs[first],
                                               index.seqs[last], self.key)
        # One read transaction gave these rows; the count and the total length must be what
        # the index measured, else the transcript was rewritten since it was opened.
        if count != last - first + 1 or len(data) != index.ends[last] - starts_at:
            self._events.forget(self.session_id)
            raise TranscriptChanged(f"{self._events.path}: transcript of session "
                                    f"{self.session_id} was rewritten; reopen it")
        return data[offset - starts_at:end - starts_at]


class EventReader:
    """The ``transcript_events`` of one database: offset tables (kept per session, LRU),
    event bytes by seq range, and the scan ``check`` makes. Every query runs through the
    store's ``run`` (one read transaction each)."""

    def __init__(self, path: Path, schema: SchemaInfo,
                 run: Callable[[Callable[[sqlite3.Connection], Any]], Any]) -> None:
        self.path = path
        self.schema = schema
        self._run = run
        self._indexes: OrderedDict[str, EventIndex] = OrderedDict()
        self._indexes_lock = threading.Lock()

    def after_fork(self) -> None:
        """A lock some thread of the parent held would never be released in the child."""
        self._indexes_lock = threading.Lock()

    def forget_all(self) -> None:
        """The database file was replaced: no offset table holds."""
        with self._indexes_lock:
            self._indexes.clear()

    def mtime(self, conn: sqlite3.Connection, session_id: str, fallback_ms: object) -> int:
        """When the transcript last changed (its window's times, else the row's)."""
        if "session_windows" in self.schema.tables:
            try:
                row = conn.execute("SELECT transcript_updated_at, updated_at FROM session_windows "
                                   "WHERE session_id = ?", (session_id,)).fetchone()
            except sqlite3.OperationalError:
                row = None
            if row is not None:
                for value in row:
                    if isinstance(value, int):
                        return ms_to_ns(value)
        return ms_to_ns(fallback_ms)

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

    def index(self, conn: sqlite3.Connection, session_id: str) -> EventIndex | None:
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
        index = EventIndex(session_id, shape, seqs, ends)
        with self._indexes_lock:
            self._indexes[session_id] = index
            self._indexes.move_to_end(session_id)
            while len(self._indexes) > _INDEX_CACHE_SESSIONS:
                self._indexes.popitem(last=False)
        return index

    def forget(self, session_id: str) -> None:
        """Drop the offset table of a transcript that was rewritten."""
        with self._indexes_lock:
            self._indexes.pop(session_id, None)

    def event_bytes(self, session_id: str, first_seq: int, last_seq: int,
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
                    append(event_payload(row))
                except BadEvent as exc:
                    raise StoreCorrupt(self.path, f"{session_words(key, session_id)}: "
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
            if not is_utf8(session_id):  # no query can name it: one problem for them all
                found.append((owner_of.get(session_id, ""), shown(session_id), -1,
                              "the session_id of these events is not valid UTF-8"))
                continue
            def scan(conn: sqlite3.Connection, session_id: str = session_id
                     ) -> list[tuple[int, str]]:
                bad = []
                for row in conn.execute(f"SELECT {columns} FROM transcript_events WHERE "
                                        "session_id = ? ORDER BY seq", (session_id,)):
                    try:
                        text = row[1] if row[1] is not None else event_payload(row)
                    except BadEvent as exc:
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


def event_payload(row: tuple[Any, ...]) -> bytes:
    """The text of an event row ``(seq, event_json bytes | None[, event_zstd, utf8 bytes])``
    that has no ``event_json``. :raises BadEvent:"""
    blob = row[2] if len(row) > 2 else None
    if blob is None:
        raise BadEvent("the row has neither event_json nor event_zstd")
    return _unzstd(bytes(blob), row[3])


def session_words(key: str | None, session_id: str) -> str:
    return f"session {key!r} (sessionId {session_id})" if key else f"sessionId {session_id}"

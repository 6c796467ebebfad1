"""Realistic SQLite-era stores (openclaw ≥ 2026.8.1), generated without openclaw.

The demo and the benchmarks (:func:`generate_sqlite_store`, ``openclaw_schema=True``) get the
database openclaw 2026.9.6 creates, from its own empty schema (``openclaw_agent_schema.sql``,
dumped from a store its import made: all 55 tables, triggers, FTS5; WAL, incremental
auto-vacuum) and rows as its import writes them: the promoted ``session_nodes`` columns,
``entry_valid = 1``, one ``session_windows`` row per key, events with their ``created_at``,
identities, active branch and index state, and for a few percent of the events ``event_zstd``
(openclaw's rule: 1 KiB to 4 MiB, no ``\\u`` escape, not the header, saving at least max(64 B,
10 %)) with its ``navigation_json`` projection. openclaw's own SDK reads them (tests/
test_demo_store.py). Left empty: the transcript search index (FTS5) and ``conversations``.

The tests' small stores (the default) keep a reduced DDL with only the columns sessionfs reads,
so a test can write rows openclaw would refuse. ``schema=24`` moves the heavy fields to
``session_entry_snapshots`` as openclaw 9.7 does. It writes a NEW database only.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from sessionfs import jsonfmt
from sessionfs.demo import generate_entries

__all__ = ["AGENT_DDL", "OPENCLAW_SCHEMA_VERSION", "append_events", "append_openclaw_events",
           "compact", "compress_event", "connect_writable", "demo_transcript",
           "generate_sqlite_store", "openclaw_schema", "put_openclaw_session", "put_session",
           "sqlite_entry", "write_sqlite_store"]

#: The agent schema version of ``openclaw_agent_schema.sql`` (openclaw 2026.9.6).
OPENCLAW_SCHEMA_VERSION = 23

AGENT_DDL = """
CREATE TABLE schema_meta (
  meta_key TEXT NOT NULL PRIMARY KEY, role TEXT NOT NULL, schema_version INTEGER NOT NULL,
  agent_id TEXT, app_version TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE session_nodes (
  session_key TEXT NOT NULL PRIMARY KEY,
  current_session_id TEXT NOT NULL,
  entry_json TEXT NOT NULL,
  entry_valid INTEGER NOT NULL DEFAULT 0 CHECK (entry_valid IN (-1, 0, 1)),
  updated_at INTEGER NOT NULL,
  status TEXT, label TEXT, display_name TEXT, archived_at INTEGER, last_interaction_at INTEGER
) STRICT;
CREATE INDEX idx_agent_session_nodes_updated_at ON session_nodes(updated_at DESC, session_key);
CREATE TABLE session_windows (
  session_id TEXT NOT NULL PRIMARY KEY,
  session_key TEXT NOT NULL REFERENCES session_nodes(session_key) ON DELETE CASCADE,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  transcript_updated_at INTEGER DEFAULT NULL, transcript_observed_at INTEGER DEFAULT NULL
) STRICT;
CREATE TABLE transcript_events (
  session_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  event_json TEXT,
  created_at INTEGER NOT NULL,
  event_zstd BLOB,
  event_utf8_bytes INTEGER,
  navigation_json TEXT,
  PRIMARY KEY (session_id, seq),
  CHECK ((event_json IS NOT NULL AND event_zstd IS NULL)
      OR (event_json IS NULL AND event_zstd IS NOT NULL AND event_utf8_bytes IS NOT NULL))
) STRICT;
CREATE TABLE transcript_rewrite_watermarks (
  session_id TEXT NOT NULL PRIMARY KEY, generation TEXT NOT NULL, updated_at INTEGER NOT NULL
) STRICT;
"""

SNAPSHOTS_DDL = """
ALTER TABLE session_nodes ADD COLUMN snapshot_revision INTEGER NOT NULL DEFAULT 0;
CREATE TABLE session_entry_snapshots (
  session_key TEXT NOT NULL REFERENCES session_nodes(session_key) ON DELETE CASCADE,
  field TEXT NOT NULL, value_json TEXT NOT NULL, PRIMARY KEY (session_key, field)
) STRICT;
"""

SNAPSHOT_FIELDS = ("sessionDiffBaseline", "skillsSnapshot", "systemPromptReport")
_DROPPED = ("sessionFile", "deliveryContext", "origin", "lastChannel", "lastTo", "lastAccountId",
            "lastThreadId", "channel")


def compact(value: Any) -> str:
    """``JSON.stringify(value)``, JavaScript number text included (as ``entry_json`` holds)."""
    return jsonfmt.dumps(value, indent=None).decode("utf-8")


def compress_event(line: str, *, header: bool = False) -> bytes | None:
    """The zstd frame openclaw 9.6 would store for ``line``, or None when it stores text."""
    import zstandard

    raw = line.encode("utf-8")
    if header or not 1024 <= len(raw) <= 4 * 1024 * 1024 or "\\u" in line or "\x00" in line:
        return None
    frame = zstandard.ZstdCompressor(level=1, write_checksum=True,
                                     write_content_size=True).compress(raw)
    return frame if len(raw) - len(frame) >= max(64, len(raw) // 10) else None


def sqlite_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A file-era entry as openclaw's import rewrites it: channel facts dropped, ``delivery``
    appended last."""
    out = {k: v for k, v in entry.items() if k not in _DROPPED}
    channel = entry.get("lastChannel")
    if isinstance(channel, str) and channel and channel != "webchat":
        route: dict[str, Any] = {"channel": channel}
        if entry.get("lastTo"):
            route["target"] = {"to": entry["lastTo"]}
        out["delivery"] = {"kind": "external", "route": route,
                           "context": {"channel": channel, "to": entry.get("lastTo")},
                           "origin": {"provider": channel}}
    elif channel == "webchat":
        out["delivery"] = {"kind": "internal"}
    else:
        out["delivery"] = {"kind": "none"}
    return out


def demo_transcript(rng: random.Random, session_id: str, started_ms: int, *,
                    events: int = 12, big_every: int = 15) -> list[str]:
    """JSONL lines in openclaw's shapes: the session header, a model change, then user and
    assistant messages and tool results, some of them large (and so compressible)."""
    iso = _iso(started_ms)
    lines = [compact({"type": "session", "version": 3, "id": session_id, "timestamp": iso,
                      "cwd": "/srv/openclaw/workspace"})]
    parent = None
    for number in range(1, events):
        ident = f"{rng.getrandbits(32):08x}"
        at = _iso(started_ms + number * 1500)
        if number == 1:
            event: dict[str, Any] = {"type": "model_change", "id": ident, "parentId": parent,
                                     "timestamp": at, "provider": "anthropic",
                                     "modelId": "claude-sonnet-4-5"}
        elif number % big_every == 0:
            body = " ".join(f"line {n}: build step {rng.randrange(999)} ok" for n in
                            range(rng.randrange(60, 400)))
            event = {"type": "message", "id": ident, "parentId": parent, "timestamp": at,
                     "message": {"role": "toolResult", "toolCallId": f"call_{ident}",
                                 "toolName": "exec", "content": [{"type": "text",
                                                                  "text": body}]}}
        elif number % 2:
            event = {"type": "message", "id": ident, "parentId": parent, "timestamp": at,
                     "message": {"role": "user", "content": [
                         {"type": "text", "text": rng.choice(
                             ["what's on my calendar today?", "Schreib die Einkaufsliste 🛒",
                              "summarise the thread", "deploy 2026.3 to staging"])}]}}
        else:
            event = {"type": "message", "id": ident, "parentId": parent, "timestamp": at,
                     "message": {"role": "assistant", "content": [
                         {"type": "text", "text": "Done: " + "ok. " * rng.randrange(1, 40)}],
                         "usage": {"input": rng.randrange(9000), "output": rng.randrange(900)},
                         "stopReason": "stop"}}
        lines.append(compact(event))
        parent = ident
    return lines


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{ms % 1000:03d}Z"


def openclaw_schema() -> str:
    """openclaw 2026.9.6's empty agent database as SQL (see the module docstring)."""
    return resources.files("sessionfs").joinpath("openclaw_agent_schema.sql").read_text("utf-8")


def _octet_length(value: object) -> int | None:
    """SQLite 3.43's ``octet_length``, which openclaw's CHECK on ``navigation_json`` calls and
    Debian 12's SQLite (3.40) lacks: the byte length of a text or blob."""
    if value is None:
        return None
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    return len(value) if isinstance(value, bytes) else len(str(value).encode("utf-8"))


def connect_writable(db: Path | str) -> sqlite3.Connection:
    """A connection that can write a database of openclaw's schema (autocommit; BEGIN
    yourself), whatever SQLite version Python has."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.create_function("octet_length", 1, _octet_length, deterministic=True)
    return conn


def write_sqlite_store(agent_dir: Path, entries: Mapping[str, Mapping[str, Any]], *,
                       transcripts: Mapping[str, Sequence[str]] | None = None,
                       schema: int = 23, agent_id: str = "main", valid: int = 1,
                       app_version: str = "2026.9.6", openclaw_schema: bool = False) -> Path:
    """Create ``agent_dir/agent/openclaw-agent.sqlite`` holding ``entries`` (already in the
    SQLite era's shape) and their transcripts (key → JSONL lines without ``\\n``).

    ``openclaw_schema``: the database openclaw creates, rows as its import writes them (schema
    23 only); otherwise the tests' reduced DDL."""
    db = agent_dir / "agent" / "openclaw-agent.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if db.exists():
        raise FileExistsError(db)
    if openclaw_schema:
        if schema != OPENCLAW_SCHEMA_VERSION:
            raise ValueError(f"openclaw's schema is {OPENCLAW_SCHEMA_VERSION}, not {schema}")
        return _write_openclaw_store(db, entries, transcripts or {}, agent_id=agent_id,
                                     valid=valid, app_version=app_version)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(AGENT_DDL)
        if schema >= 24:
            conn.executescript(SNAPSHOTS_DDL)
        conn.execute(f"PRAGMA user_version = {int(schema)}")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO schema_meta VALUES ('primary', 'agent', ?, ?, ?, 0, 0)",
                     (schema, agent_id, app_version))
        for key, entry in entries.items():
            put_session(conn, key, entry, (transcripts or {}).get(key), schema=schema,
                        valid=valid)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return db


def put_session(conn: sqlite3.Connection, key: str, entry: Mapping[str, Any],
                lines: Iterable[str] | None = None, *, schema: int = 23, valid: int = 1) -> None:
    """Insert or replace one session row (and its window and events) the way openclaw stores it."""
    hot = dict(entry)
    snapshots: list[tuple[str, str]] = []
    if schema >= 24:
        for field in SNAPSHOT_FIELDS:
            if field in hot:
                snapshots.append((field, compact(hot.pop(field))))
    session_id = str(entry["sessionId"])
    updated = int(entry.get("updatedAt", 0))
    conn.execute("INSERT OR REPLACE INTO session_nodes (session_key, current_session_id, "
                 "entry_json, entry_valid, updated_at, label) VALUES (?, ?, ?, ?, ?, ?)",
                 (key, session_id, compact(hot), valid, updated, entry.get("label")))
    if schema >= 24:
        conn.execute("DELETE FROM session_entry_snapshots WHERE session_key = ?", (key,))
        conn.executemany("INSERT INTO session_entry_snapshots VALUES (?, ?, ?)",
                         [(key, field, value) for field, value in snapshots])
    if lines is None:
        return
    conn.execute("INSERT OR REPLACE INTO session_windows VALUES (?, ?, ?, ?, ?, ?)",
                 (session_id, key, updated, updated, updated, updated))
    conn.execute("INSERT OR REPLACE INTO transcript_rewrite_watermarks VALUES (?, ?, ?)",
                 (session_id, uuid.uuid4().hex, updated))
    append_events(conn, session_id, lines, first_seq=0)


def append_events(conn: sqlite3.Connection, session_id: str, lines: Iterable[str], *,
                  first_seq: int | None = None) -> int:
    """Append JSONL lines (no ``\\n``) as events, compressing as openclaw does; returns the next
    seq."""
    if first_seq is None:
        row = conn.execute("SELECT max(seq) FROM transcript_events WHERE session_id = ?",
                           (session_id,)).fetchone()
        first_seq = 0 if row[0] is None else row[0] + 1
    seq = first_seq
    for line in lines:
        frame = compress_event(line, header=seq == 0)
        if frame is None:
            conn.execute("INSERT INTO transcript_events (session_id, seq, event_json, created_at, "
                         "event_utf8_bytes) VALUES (?, ?, ?, 0, ?)",
                         (session_id, seq, line, len(line.encode("utf-8"))))
        else:
            conn.execute("INSERT INTO transcript_events (session_id, seq, created_at, event_zstd, "
                         "event_utf8_bytes, navigation_json) VALUES (?, ?, 0, ?, ?, ?)",
                         (session_id, seq, frame, len(line.encode("utf-8")),
                          '{"version":1}'))
        seq += 1
    return seq


def generate_sqlite_store(agent_dir: Path, count: int, *, seed: int = 2026, events: int = 12,
                          entry_bytes: int = 0, agent: str | None = None) -> Path:
    """``count`` realistic sessions with transcripts (a few percent of events compressed) in
    the database openclaw creates, as openclaw's import writes them: what openclaw opens.

    ``agent``: the agent id (default: the folder's name, ``agents/<id>``); every key belongs
    to it, as in a store openclaw wrote."""
    agent_id = agent or agent_dir.name
    rng = random.Random(seed)
    entries = {_own_key(key, agent_id): sqlite_entry(entry) for key, entry in
               generate_entries(count, seed=seed, entry_bytes=entry_bytes).items()}
    transcripts = {key: demo_transcript(rng, entry["sessionId"], entry["sessionStartedAt"],
                                        events=events)
                   for key, entry in entries.items()}
    return write_sqlite_store(agent_dir, entries, transcripts=transcripts, agent_id=agent_id,
                              openclaw_schema=True)


# -- openclaw's own layout ----------------------------------------------------------------------
_STATUSES = {"running", "done", "failed", "killed", "timeout"}
_CHAT_TYPES = {"direct", "group", "channel"}


def _write_openclaw_store(db: Path, entries: Mapping[str, Mapping[str, Any]],
                          transcripts: Mapping[str, Sequence[str]], *, agent_id: str,
                          valid: int, app_version: str) -> Path:
    now = int(time.time() * 1000)
    os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # openclaw's mode; SQLite
    conn = connect_writable(db)  # gives its -wal and -shm the database's
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table, as openclaw
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(openclaw_schema())
        conn.execute(f"PRAGMA user_version = {OPENCLAW_SCHEMA_VERSION}")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO schema_meta VALUES ('primary', 'agent', ?, ?, ?, ?, ?)",
                     (OPENCLAW_SCHEMA_VERSION, agent_id, app_version, now, now))
        for key, entry in entries.items():
            put_openclaw_session(conn, key, entry, transcripts.get(key), agent_id=agent_id)
        # the insert triggers left entry_valid 0 ("needs repair"); the import settles it
        conn.execute("UPDATE session_nodes SET entry_valid = ?", (valid,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return db


def _ms(value: object) -> int | None:
    """An event's ISO ``timestamp`` (or epoch ms) in epoch ms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
                       * 1000)
        except ValueError:
            return None
    return None


def put_openclaw_session(conn: sqlite3.Connection, key: str, entry: Mapping[str, Any],
                         lines: Sequence[str] | None = None, *, agent_id: str = "main") -> None:
    """Insert one session as openclaw 9.6's import does: the node with its promoted columns,
    its window, and its events (``entry_valid`` is left to the caller: triggers reset it)."""
    def text(name: str) -> str | None:
        value = entry.get(name)
        return value if isinstance(value, str) else None

    def number(name: str) -> int | None:
        value = entry.get(name)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else None

    session_id = str(entry["sessionId"])
    updated = int(entry.get("updatedAt", 0))
    status = text("status") if text("status") in _STATUSES else None
    conn.execute(
        "INSERT INTO session_nodes (session_key, current_session_id, entry_json, entry_valid, "
        "updated_at, status, label, display_name, pinned_at, archived_at, parent_session_key, "
        "spawned_by, last_interaction_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (key, session_id, compact(entry), updated, status, text("label"), text("displayName"),
         number("pinnedAt"), number("archivedAt"), text("parentSessionKey"), text("spawnedBy"),
         number("lastInteractionAt")))
    delivery = entry.get("delivery")
    route = delivery.get("route") if isinstance(delivery, dict) else None
    external = isinstance(delivery, dict) and delivery.get("kind") == "external"
    channel = route.get("channel") if external and isinstance(route, dict) else None
    chat_type = text("chatType") if text("chatType") in _CHAT_TYPES else None
    scope = ("shared-main" if key == f"agent:{agent_id}:main" else
             "group" if chat_type in ("group", "channel") else "conversation")
    started = number("sessionStartedAt") or updated
    conn.execute(
        "INSERT INTO session_windows (session_id, session_key, session_scope, created_at, "
        "updated_at, transcript_updated_at, transcript_observed_at, session_entry_provenance, "
        "started_at, ended_at, status, chat_type, channel, account_id, model_provider, model, "
        "parent_session_key, spawned_by, display_name) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (session_id, key, scope, started, number("lastInteractionAt") or updated,
         updated if lines is not None else None, updated, number("startedAt"),
         number("endedAt"), status, chat_type, channel if isinstance(channel, str) else None,
         "default" if isinstance(channel, str) else None, text("modelProvider"),
         text("model"), text("parentSessionKey"), text("spawnedBy"),
         text("displayName") or text("label") or text("subject")))
    if lines is None:
        return
    conn.execute("INSERT INTO transcript_rewrite_watermarks VALUES (?, ?, ?)",
                 (session_id, uuid.uuid4().hex, updated))
    append_openclaw_events(conn, session_id, lines, first_seq=0, default_ms=started)


def _navigation(event: Mapping[str, Any], size: int) -> str:
    """The ``navigation_json`` projection openclaw stores beside a compressed event."""
    head = {name: event.get(name) for name in ("type", "id", "parentId", "timestamp")}
    message = event.get("message")
    role = message.get("role") if isinstance(message, dict) else None
    shown = dict(head, message={"role": role}) if role is not None else head
    return compact({"version": 1,
                    "report": {"kind": "canonical", "hasParentId": head["parentId"] is not None,
                               "entry": {"id": head["id"], "parentId": head["parentId"],
                                         "timestamp": head["timestamp"],
                                         "type": head["type"]}},
                    "navigation": shown, "reset": shown, "model": shown, "modelBytes": size,
                    "modelWithoutCheckpointBytes": size, "withoutCustomDataBytes": size})


def append_openclaw_events(conn: sqlite3.Connection, session_id: str, lines: Iterable[str], *,
                           first_seq: int | None = None, default_ms: int = 0) -> int:
    """Append JSONL lines (no ``\\n``) as openclaw 9.6 stores them: the event (compressed by
    its rule, with the navigation projection), its identity, its place on the active branch,
    and the session's index state; returns the next seq. ``conn`` from
    :func:`connect_writable`."""
    if first_seq is None:
        row = conn.execute("SELECT max(seq) FROM transcript_events WHERE session_id = ?",
                           (session_id,)).fetchone()
        first_seq = 0 if row[0] is None else row[0] + 1
    state = conn.execute("SELECT active_event_count, active_message_count FROM "
                         "session_transcript_index_state WHERE session_id = ?",
                         (session_id,)).fetchone()
    active, messages = state if state is not None else (0, 0)
    seq, leaf, at = first_seq, None, default_ms
    for line in lines:
        event = jsonfmt.loads(line.encode("utf-8"))
        event = event if isinstance(event, dict) else {}
        at = _ms(event.get("timestamp")) or at
        size = len(line.encode("utf-8"))
        frame = compress_event(line, header=seq == 0)
        if frame is None:
            conn.execute("INSERT INTO transcript_events (session_id, seq, event_json, "
                         "created_at, event_utf8_bytes) VALUES (?, ?, ?, ?, ?)",
                         (session_id, seq, line, at, size))
        else:
            conn.execute("INSERT INTO transcript_events (session_id, seq, created_at, "
                         "event_zstd, event_utf8_bytes, navigation_json) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (session_id, seq, at, frame, size, _navigation(event, size)))
        kind = event.get("type")
        ident = session_id if kind == "session" else event.get("id")
        if isinstance(ident, str):
            parent = event.get("parentId")
            conn.execute("INSERT OR IGNORE INTO transcript_event_identities VALUES "
                         "(?, ?, ?, ?, ?, NULL, ?)",
                         (session_id, ident, seq, kind if isinstance(kind, str) else None,
                          parent if isinstance(parent, str) else None, at))
        if kind != "session":
            is_message = kind == "message"
            conn.execute("INSERT INTO session_transcript_active_events VALUES (?, ?, ?, ?, 1)",
                         (session_id, active, seq, messages if is_message else None))
            active += 1
            messages += is_message
            leaf = ident if isinstance(ident, str) else leaf
        seq += 1
    conn.execute("INSERT INTO session_transcript_index_state (session_id, indexed_seq, "
                 "leaf_event_id, active_event_count, active_message_count, updated_at) "
                 "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
                 "indexed_seq = excluded.indexed_seq, leaf_event_id = coalesce("
                 "excluded.leaf_event_id, leaf_event_id), active_event_count = "
                 "excluded.active_event_count, active_message_count = "
                 "excluded.active_message_count, updated_at = excluded.updated_at",
                 (session_id, seq - 1, leaf, active, messages, at))
    return seq


def _own_key(key: str, agent: str | None) -> str:
    """``key`` moved to ``agent`` (``agent:<id>:rest``), or unchanged when ``agent`` is None."""
    if agent is None:
        return key
    parts = key.split(":", 2)
    return f"agent:{agent}:{parts[2]}" if len(parts) == 3 and parts[0] == "agent" else key

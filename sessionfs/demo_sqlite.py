"""Realistic SQLite-era stores (openclaw ≥ 2026.8.1), generated without openclaw.

The layout is the one openclaw 2026.9.6 writes (agent schema 23, observed on stores its own
import produced; ``../shared/context/openclaw-sqlite-real.md``), reduced to the columns sessionfs
reads plus the ones that give them meaning: WAL mode, ``session_nodes`` with compact
``entry_json``, one ``session_windows`` row per transcript, ``transcript_events`` with
``event_json`` or, for a few percent of the events, ``event_zstd`` (openclaw's rule: 1 KiB to
4 MiB, no ``\\u`` escape, not the header, saving at least max(64 B, 10 %)). ``schema=24`` moves
the heavy fields to ``session_entry_snapshots`` as openclaw 9.7 does.

Used by ``sessionfs demo --sqlite``, the tests and the benchmark. It writes a NEW database only.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sessionfs import jsonfmt
from sessionfs.demo import generate_entries

__all__ = ["AGENT_DDL", "append_events", "compact", "compress_event", "demo_transcript",
           "generate_sqlite_store", "put_session", "sqlite_entry", "write_sqlite_store"]

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


def write_sqlite_store(agent_dir: Path, entries: Mapping[str, Mapping[str, Any]], *,
                       transcripts: Mapping[str, Sequence[str]] | None = None,
                       schema: int = 23, agent_id: str = "main", valid: int = 1,
                       app_version: str = "2026.9.6") -> Path:
    """Create ``agent_dir/agent/openclaw-agent.sqlite`` holding ``entries`` (already in the
    SQLite era's shape) and their transcripts (key → JSONL lines without ``\\n``)."""
    db = agent_dir / "agent" / "openclaw-agent.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if db.exists():
        raise FileExistsError(db)
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
                          entry_bytes: int = 0, schema: int = 23, agent: str | None = None
                          ) -> Path:
    """``count`` realistic sessions with transcripts (a few percent of events compressed).

    ``agent``: every key belongs to this agent, as in a store openclaw wrote (by default a
    seventh belong to another agent: rows openclaw would refuse, which ``status`` lists)."""
    rng = random.Random(seed)
    entries = {_own_key(key, agent): sqlite_entry(entry) for key, entry in
               generate_entries(count, seed=seed, entry_bytes=entry_bytes).items()}
    transcripts = {key: demo_transcript(rng, entry["sessionId"], entry["sessionStartedAt"],
                                        events=events)
                   for key, entry in entries.items()}
    return write_sqlite_store(agent_dir, entries, transcripts=transcripts, schema=schema)


def _own_key(key: str, agent: str | None) -> str:
    """``key`` moved to ``agent`` (``agent:<id>:rest``), or unchanged when ``agent`` is None."""
    if agent is None:
        return key
    parts = key.split(":", 2)
    return f"agent:{agent}:{parts[2]}" if len(parts) == 3 and parts[0] == "agent" else key

"""Building SQLite-era stores for tests (our own DDL with the columns sessionfs reads; the
layout as openclaw 2026.9.6 writes it) and a gateway-like writer that commits while we read."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sessionfs.demo_sqlite import (
    append_events,
    compact,
    demo_transcript,
    put_session,
    write_sqlite_store,
)
from tests.conftest import JAMES, MAIN

__all__ = ["BIG_LINE", "ENTRIES", "JAMES", "MAIN", "TRANSCRIPTS", "build", "db_digest", "gateway",
           "jsonl", "write_sqlite_store"]

# A line openclaw compresses (1.5 KiB, compressible, no \u escape) and one it may not (\u0001).
BIG_LINE = compact({"type": "message", "id": "0badcafe", "parentId": "a1", "timestamp":
                    "2026-06-15T09:00:04.500Z", "message": {"role": "user", "content": [
                        {"type": "text", "text": "Zürich ☀️ " + "bitte zusammenfassen. " * 70}]}})
ESCAPED_LINE = ('{"type":"message","id":"0e5c0001","parentId":"0badcafe","message":{"role":'
                '"toolResult","content":[{"type":"text","text":"' + "x\\u0001" * 300 + '"}]}}')

ENTRIES: dict[str, dict[str, Any]] = {
    MAIN: {"sessionId": "d4c403f1-b534-4137-85ba-fddc3a7164a1", "updatedAt": 1781514027000,
           "estimatedCostUsd": 1e-7, "label": "Zürich\u2028", "skillsSnapshot": {"v": [1, 2.5]},
           "systemPromptReport": {"chars": 3}, "delivery": {"kind": "none"}},
    "agent:main:telegram:direct:james": {"sessionId": "a22a45b4-4cd2-44b8-9326-d339acc500a6",
                                         "updatedAt": 1781517610500, "chatType": "direct",
                                         "delivery": {"kind": "external"}},
    "agent:main:googlechat:group:spaces/aaaa": {"sessionId": "c828d1d4-fc76-462a-bbff-9b32777e",
                                                "updatedAt": 1781578810500},
}
TRANSCRIPTS: dict[str, list[str]] = {
    MAIN: ['{"type":"session","version":3,"id":"d4c403f1","timestamp":"2026-06-15T09:00:00.000Z"}',
           '{"type":"model_change","id":"a1","parentId":null}', BIG_LINE, ESCAPED_LINE,
           '{"type":"message","id":"b2","message":{"role":"assistant","content":"東京 ☀️"}}'],
    "agent:main:telegram:direct:james": ['{"type":"session","version":3,"id":"a22a45b4"}'],
}


def jsonl(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


def build(agent_dir: Path, *, schema: int = 23, entries: dict[str, dict[str, Any]] | None = None,
          transcripts: dict[str, list[str]] | None = None) -> Path:
    return write_sqlite_store(agent_dir, ENTRIES if entries is None else entries,
                              transcripts=TRANSCRIPTS if transcripts is None else transcripts,
                              schema=schema)


def db_digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


@contextlib.contextmanager
def gateway(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-write connection like the gateway's (WAL, autocommit; BEGIN yourself)."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()


__all__ += ["JAMES", "MAIN", "append_events", "demo_transcript", "put_session"]

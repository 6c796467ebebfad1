"""Re-rendering a SQLite store's ``sessions.json`` parses only the rows whose stored bytes
changed: the memo compares each row's raw ``entry_json`` and snapshot bytes (a digest), not the
entry parsed and serialised again. No mount: the projection and the store alone."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionfs.demo import generate_entries
from sessionfs.demo_sqlite import write_sqlite_store
from sessionfs.projection import Memo, render
from sessionfs.store import SqliteStore, open_store

TRANSCRIPTS = "/mnt/state/agents/main/sessions"


@pytest.fixture(params=[23, 24], ids=["schema23", "schema24-snapshots"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SqliteStore]:
    """openclaw's schema with the heavy fields in ``entry_json`` (23) and in snapshot rows (24)."""
    yield from _opened(tmp_path, request.param)


@pytest.fixture
def store24(tmp_path: Path) -> Iterator[SqliteStore]:
    yield from _opened(tmp_path, 24)


def _opened(tmp_path: Path, schema: int) -> Iterator[SqliteStore]:
    agent = tmp_path / "state" / "agents" / "main"
    agent.mkdir(parents=True)
    entries = {f"agent:main:direct:user{number}": {**entry, "skillsSnapshot": {"n": number}}
               for number, entry in enumerate(generate_entries(12, seed=16).values())}
    opened = open_store(write_sqlite_store(agent, entries, schema=schema))
    assert isinstance(opened, SqliteStore)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys whose row the store parsed, in order."""
    seen: list[str] = []
    original = SqliteStore._entry_json  # every row's entry_json is parsed here

    def counting(self: SqliteStore, key: str, entry_json: bytes | str) -> dict[str, Any]:
        seen.append(key)
        return original(self, key, entry_json)

    monkeypatch.setattr(SqliteStore, "_entry_json", counting)
    return seen


def _sql(store: SqliteStore, statement: str, *args: object) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute(statement, args).rowcount == 1
        conn.execute("UPDATE session_nodes SET entry_valid = 1")  # the trigger resets it
    conn.close()


def _key(store: SqliteStore, number: int) -> str:
    return store.keys()[number]


def test_an_unchanged_rerender_parses_no_row(store: SqliteStore, parsed: list[str]) -> None:
    memo: Memo = {}
    first = render(store, TRANSCRIPTS, memo=memo).data
    assert len(parsed) == 12
    parsed.clear()
    again = render(store, TRANSCRIPTS, memo=memo).data
    assert parsed == []
    assert again == first


def test_one_changed_row_is_the_one_parsed(store: SqliteStore, parsed: list[str]) -> None:
    memo: Memo = {}
    before = render(store, TRANSCRIPTS, memo=memo).data
    key = _key(store, 5)
    _sql(store, "UPDATE session_nodes SET entry_json = json_set(entry_json, '$.label', "
         "'renamed by hand') WHERE session_key = ?", key)
    parsed.clear()
    after = render(store, TRANSCRIPTS, memo=memo).data
    assert parsed == [key]
    assert b'"label": "renamed by hand"' in after and after != before
    assert after == render(store, TRANSCRIPTS).data  # the same bytes as parsing every row


def test_a_changed_snapshot_alone_is_seen(store24: SqliteStore, parsed: list[str]) -> None:
    """The snapshot rows are part of the entry: a change there, with ``entry_json`` as it
    was, is a changed row."""
    memo: Memo = {}
    render(store24, TRANSCRIPTS, memo=memo)
    with sqlite3.connect(store24.path) as conn:
        row = conn.execute("SELECT session_key, field FROM session_entry_snapshots "
                           "ORDER BY session_key LIMIT 1").fetchone()
        assert row is not None, "schema 24 keeps skillsSnapshot in its own row"
        conn.execute("UPDATE session_entry_snapshots SET value_json = '{\"edited\":true}' "
                     "WHERE session_key = ? AND field = ?", row)
    conn.close()
    parsed.clear()
    after = render(store24, TRANSCRIPTS, memo=memo).data
    assert parsed == [row[0]]
    assert b'"edited": true' in after
    assert after == render(store24, TRANSCRIPTS).data


def test_a_row_damaged_after_the_memo_is_left_out_and_reported(store: SqliteStore,
                                                                parsed: list[str]) -> None:
    memo: Memo = {}
    render(store, TRANSCRIPTS, memo=memo)
    key = _key(store, 3)
    _sql(store, "UPDATE session_nodes SET entry_json = '{not json' WHERE session_key = ?", key)
    after = render(store, TRANSCRIPTS, memo=memo).data
    assert key not in json.loads(after) and len(json.loads(after)) == 11
    assert [row.key for row in store.damaged_rows()] == [key]
    assert after == render(store, TRANSCRIPTS).data


def test_file_stores_stamp_their_entries_too(tmp_path: Path) -> None:
    """The default for stores without rows: every entry read, stamped by its bytes; a stamp
    the caller knows gives no record, a changed entry a new stamp."""
    from sessionfs.demo import write_legacy_store

    entries = generate_entries(4, seed=5)
    store = open_store(write_legacy_store(tmp_path / "sessions", entries))
    first = list(store.stamped_records(lambda key, stamp: False))
    assert [key for key, _stamp, _record in first] == list(entries)
    assert all(record is not None and record.entry == entries[key]
               for key, _stamp, record in first)
    known = {key: stamp for key, stamp, _record in first}
    assert [record for _key, _stamp, record in
            store.stamped_records(lambda key, stamp: known[key] == stamp)] == [None] * 4
    changed = next(iter(entries))
    store.put(changed, {**entries[changed], "label": "new"})
    again = {key: (stamp, record) for key, stamp, record in
             store.stamped_records(lambda key, stamp: known[key] == stamp)}
    assert again[changed][0] != known[changed] and again[changed][1] is not None
    assert [key for key, (_stamp, record) in again.items() if record is not None] == [changed]

"""The SQLite generation, read-only: entries and transcripts byte-exact, deletions, refused rows,
schema recognition, no byte of the database changed, a concurrent writer, a busy database."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from sessionfs import jsonfmt
from sessionfs.cli import main
from sessionfs.demo import write_legacy_store
from sessionfs.errors import ReadOnlyStore, SessionNotFound, UnsupportedSchema
from sessionfs.store import SqliteStore, locate_store, open_store
from tests.conftest import node_stringify
from tests.openclaw_fixtures import NAMES, extract_real_store
from tests.sqlite_util import (
    BIG_LINE,
    ENTRIES,
    ESCAPED_LINE,
    JAMES,
    MAIN,
    TRANSCRIPTS,
    append_events,
    build,
    db_digest,
    gateway,
    jsonl,
    put_session,
)


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    agent_dir = tmp_path / "state" / "agents" / "main"
    build(agent_dir)
    return agent_dir


def db_of(agent_dir: Path) -> Path:
    return agent_dir / "agent" / "openclaw-agent.sqlite"


def test_entries_are_json_stringify_of_entry_json_byte_for_byte(agent: Path) -> None:
    store = open_store(agent)
    assert isinstance(store, SqliteStore) and store.layout == "sqlite"
    assert store.keys() == sorted(ENTRIES)  # openclaw's reader lists by key
    conn = sqlite3.connect(db_of(agent))
    for key in ENTRIES:
        (entry_json,) = conn.execute("SELECT entry_json FROM session_nodes WHERE session_key=?",
                                     (key,)).fetchone()
        record = store.read(key)
        assert record.data == node_stringify(entry_json.encode())
        assert record.mtime_ns == ENTRIES[key]["updatedAt"] * 1_000_000
    assert b'"estimatedCostUsd": 1e-7' in store.read(MAIN).data
    assert "\u2028".encode() in store.read(MAIN).data


def test_schema_24_puts_snapshot_fields_back_where_openclaw_does(tmp_path: Path) -> None:
    store = open_store(build(tmp_path / "a" / "agents" / "main", schema=24))
    conn = sqlite3.connect(store.path)
    (hot,) = conn.execute("SELECT entry_json FROM session_nodes WHERE session_key=?",
                          (MAIN,)).fetchone()
    assert "skillsSnapshot" not in hot  # really split
    entry = store.get(MAIN)
    # attachSessionEntrySnapshots: Object.assign in field order, after the hot fields
    assert list(entry)[-3:] == ["delivery", "skillsSnapshot", "systemPromptReport"]
    assert entry == ENTRIES[MAIN]
    assert store.read(MAIN).data == jsonfmt.dumps(entry)


def test_deletions_are_not_sessions(agent: Path) -> None:
    with gateway(db_of(agent)) as conn:
        conn.execute("UPDATE session_nodes SET entry_valid=-1, entry_json='{}' "
                     "WHERE session_key=?", (JAMES,))
    store = open_store(agent)
    assert JAMES not in store.keys() and JAMES not in store
    with pytest.raises(SessionNotFound):
        store.read(JAMES)
    with pytest.raises(SessionNotFound):
        store.transcript(JAMES)


def test_rows_openclaw_refuses_are_served_and_reported(agent: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with gateway(db_of(agent)) as conn:
        conn.execute("UPDATE session_nodes SET entry_valid=0 WHERE session_key=?", (JAMES,))
        put_session(conn, "hook:5f1c", {"sessionId": "5f1c", "updatedAt": 5})
    store = open_store(agent)
    assert JAMES in store.keys() and "hook:5f1c" in store.keys()
    assert store.get("hook:5f1c") == {"sessionId": "5f1c", "updatedAt": 5}
    refused = {row.key: row for row in store.refused_rows()}
    assert set(refused) == {JAMES, "hook:5f1c"}
    assert "entry_valid = 0" in refused[JAMES].reason
    assert "non-canonical" in refused["hook:5f1c"].reason
    assert all("openclaw doctor --fix" in row.remedy for row in refused.values())
    assert main(["check", str(agent)]) == 1
    out = capsys.readouterr().out
    assert "refused by openclaw" in out and "doctor --fix" in out and JAMES in out
    assert main(["status", str(agent)]) == 0
    assert "refused rows: 2" in capsys.readouterr().out


def test_transcripts_byte_exact_including_compressed_events(agent: Path) -> None:
    conn = sqlite3.connect(db_of(agent))
    compressed = conn.execute("SELECT count(*) FROM transcript_events WHERE event_zstd IS NOT NULL"
                              ).fetchone()[0]
    assert compressed == 1  # BIG_LINE; ESCAPED_LINE holds \u0001 and stays text
    store = open_store(agent)
    expected = jsonl(TRANSCRIPTS[MAIN])
    source = store.transcript(MAIN)
    assert source is not None and source.size == len(expected)
    assert b"".join(source.chunks(7)) == expected
    for offset in range(0, len(expected) + 5, 97):
        for size in (1, 50, 1600, 10_000):
            assert source.read(offset, size) == expected[offset:offset + size]
    assert BIG_LINE.encode() + b"\n" in expected and ESCAPED_LINE.encode() in expected
    assert store.transcript("agent:main:googlechat:group:spaces/aaaa") is None  # no events


def test_schema_too_old_or_unknown_is_one_clear_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old" / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    old.parent.mkdir(parents=True)
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE session_entries (session_key TEXT PRIMARY KEY, entry_json TEXT)")
        conn.execute("PRAGMA user_version = 10")
    with pytest.raises(UnsupportedSchema) as caught:
        open_store(old.parent.parent)
    assert "agent schema 10" in str(caught.value) and "schema 14 and later" in str(caught.value)
    assert caught.value.errno == errno.ENOTSUP
    new = tmp_path / "new.sqlite"
    with sqlite3.connect(new) as conn:
        conn.execute("CREATE TABLE session_nodes (session_key TEXT PRIMARY KEY, blob TEXT)")
        conn.execute("PRAGMA user_version = 31")
    assert main(["ls", str(new)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "agent schema 31" in err and "Traceback" not in err
    assert "session_nodes.entry_json" in err


def test_reading_everything_changes_no_byte_of_the_database(agent: Path) -> None:
    db = db_of(agent)
    before = db_digest(db)
    wal = Path(f"{db}-wal")
    wal_before = wal.read_bytes() if wal.exists() else None
    store = open_store(agent)
    for key in store.keys():
        store.read(key)
        source = store.transcript(key)
        if source is not None:
            b"".join(source.chunks())
    store.fingerprint()
    store.refused_rows()
    assert main(["status", str(agent)]) == 0
    store.close()
    assert db_digest(db) == before
    assert (wal.read_bytes() if wal.exists() else None) in (wal_before, b"")


def test_every_write_is_refused_with_erofs(agent: Path) -> None:
    store = open_store(agent)
    before = db_digest(db_of(agent))
    attempts = [lambda: store.put(MAIN, {"sessionId": "x", "updatedAt": 1}),
                lambda: store.delete(MAIN), lambda: store.rename(MAIN, "agent:main:x"),
                lambda: store.update(lambda entries: None)]
    for attempt in attempts:
        with pytest.raises(ReadOnlyStore) as caught:
            attempt()
        assert caught.value.errno == errno.EROFS
        assert "\n" not in str(caught.value) and "gateway" in str(caught.value)
    assert db_digest(db_of(agent)) == before


@pytest.mark.parametrize("argv", [["put", "{s}", MAIN, "-"], ["rm", "{s}", MAIN],
                                  ["mv", "{s}", MAIN, "agent:main:y"], ["prune", "{s}",
                                                                        "--max-entries", "1"],
                                  ["migrate", "{s}"], ["rollback", "{s}"], ["merge", "{s}"]])
def test_cli_writes_exit_1_with_one_line(agent: Path, argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    before = db_digest(db_of(agent))
    assert main([a.replace("{s}", str(agent)) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("gateway" in err or "openclaw owns" in err)
    assert db_digest(db_of(agent)) == before


def test_cli_status_transcript_get_ls_and_agent_option(agent: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsysbinary: pytest.CaptureFixture[bytes]
                                                       ) -> None:
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(agent.parent.parent))
    legacy = agent / "sessions"
    write_legacy_store(legacy, {"agent:main:old": {"sessionId": "o", "updatedAt": 1}})
    assert main(["transcript", MAIN]) == 0  # default store: the database wins
    assert capsysbinary.readouterr().out == jsonl(TRANSCRIPTS[MAIN])
    assert main(["get", "--agent", "main", MAIN]) == 0
    assert capsysbinary.readouterr().out == open_store(agent).read(MAIN).data + b"\n"
    assert main(["ls"]) == 0
    assert capsysbinary.readouterr().out.decode().split() == sorted(ENTRIES)
    assert main(["status", "--json"]) == 0
    status = json.loads(capsysbinary.readouterr().out)
    assert status["sessions"] == 3 and "agent schema 23" in status["generation"]
    assert status["staleFiles"] == [str(legacy / "sessions.json")]
    assert main(["check"]) == 0
    assert b"stale file-era store" in capsysbinary.readouterr().err
    assert main(["transcript", "agent:main:googlechat:group:spaces/aaaa"]) == 1
    assert b"no transcript" in capsysbinary.readouterr().err
    # naming the file-era files explicitly still opens them, read-only
    explicit = open_store(legacy / "sessions.json")
    assert explicit.layout == "legacy" and explicit.read_only


def test_locating_by_database_file_agent_folder_and_emptied_sessions_folder(agent: Path) -> None:
    (agent / "sessions").mkdir()
    for where in (agent, db_of(agent), agent / "agent", agent / "sessions"):
        location = locate_store(where)
        assert location.layout == "sqlite" and location.path == db_of(agent), where


def test_an_agent_database_without_sessions_leaves_the_files_in_charge(tmp_path: Path) -> None:
    agent_dir = tmp_path / "agents" / "main"
    write_legacy_store(agent_dir / "sessions", {"k": {"sessionId": "a", "updatedAt": 1}})
    db = db_of(agent_dir)
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:  # openclaw <= 2026.7: auth and cache only, schema 1
        conn.execute("CREATE TABLE auth_profiles (id TEXT)")
        conn.execute("PRAGMA user_version = 1")
    assert locate_store(agent_dir).layout == "legacy"


def test_a_concurrent_writer_is_seen_by_fresh_reads(agent: Path) -> None:
    store = open_store(agent)
    old_source = store.transcript(MAIN)
    assert old_source is not None
    old_bytes = b"".join(old_source.chunks())
    token = store.fingerprint()
    added = ['{"type":"message","id":"c3","message":{"role":"user","content":"again"}}', BIG_LINE]
    with gateway(db_of(agent)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        put_session(conn, "agent:main:new", {"sessionId": "n1", "updatedAt": 9})
        put_session(conn, MAIN, dict(ENTRIES[MAIN], label="renamed", updatedAt=1781514099000))
        conn.execute("DELETE FROM session_nodes WHERE session_key=?", (JAMES,))
        append_events(conn, ENTRIES[MAIN]["sessionId"], added)
        conn.execute("COMMIT")
        assert store.fingerprint() != token
        assert store.keys() == sorted({*ENTRIES, "agent:main:new"} - {JAMES})
        assert store.get(MAIN)["label"] == "renamed"
        assert store.read(MAIN).mtime_ns == 1781514099000 * 1_000_000
        grown = store.transcript(MAIN)
        assert grown is not None
        assert b"".join(grown.chunks()) == jsonl(TRANSCRIPTS[MAIN] + added)
        assert grown.size == len(old_bytes) + len(jsonl(added)) and grown.token != old_source.token
        assert b"".join(old_source.chunks()) == old_bytes  # an open source keeps its size


def test_a_reader_never_sees_half_a_transaction(agent: Path) -> None:
    store = open_store(agent)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def write() -> None:
        with gateway(db_of(agent)) as conn:
            number = 0
            while not stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                put_session(conn, f"agent:main:pair:{number}:a", {"sessionId": "a", "updatedAt": 1})
                put_session(conn, f"agent:main:pair:{number}:b", {"sessionId": "b", "updatedAt": 1})
                conn.execute("COMMIT")
                number += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            keys = [k for k in store.keys() if ":pair:" in k]
            seen.append((sum(k.endswith(":a") for k in keys), sum(k.endswith(":b") for k in keys)))
    finally:
        stop.set()
        writer.join()
    assert seen and all(a == b for a, b in seen)
    assert seen[-1][0] > 0


def test_a_busy_database_is_waited_out_not_reported(agent: Path) -> None:
    store = SqliteStore(db_of(agent), busy_timeout=0.05)
    held = threading.Event()

    def hold_exclusive() -> None:
        with gateway(db_of(agent)) as conn:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE session_nodes SET label='held' WHERE session_key=?", (MAIN,))
            conn.execute("COMMIT")  # EXCLUSIVE locking mode keeps the lock after the commit
            held.set()
            time.sleep(0.8)
            conn.execute("PRAGMA locking_mode = NORMAL")
            conn.execute("SELECT count(*) FROM session_nodes").fetchone()  # releases the lock

    store.close()  # an exclusive WAL writer needs every other connection closed to start
    thread = threading.Thread(target=hold_exclusive)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    try:
        keys = store.keys()
    finally:
        thread.join()
    assert time.monotonic() - started >= 0.3  # it really waited for the lock
    assert keys == sorted(ENTRIES)


def test_threads_read_in_parallel(agent: Path) -> None:
    store = open_store(agent)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert store.read(MAIN).entry["sessionId"] == ENTRIES[MAIN]["sessionId"]
                source = store.transcript(MAIN)
                assert source is not None and source.read(0, 10**6) == jsonl(TRANSCRIPTS[MAIN])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


@pytest.mark.parametrize("name", NAMES)
def test_against_stores_openclaw_itself_wrote(tmp_path: Path, name: str) -> None:
    """Entries deep-equal and byte-equal to what openclaw 2026.9.6's reader returns; transcripts
    byte-equal to the file-era JSONL they were imported from (committed fixtures)."""
    real = extract_real_store(name, tmp_path / "real")
    oracle = real / f"{name}.oracle"
    state = real / name
    legacy_root = real / f"{name}.legacy-input" / "agents"
    for agent_dir in sorted((state / "agents").iterdir()):
        dump_path = oracle / f"dump.{agent_dir.name}.json"
        if not dump_path.exists():
            continue
        dump = json.loads(dump_path.read_bytes())
        store = open_store(agent_dir)
        before = db_digest(store.path)
        assert store.keys() == list(dump["entries"])
        for key, entry in dump["entries"].items():
            record = store.read(key)
            assert record.entry == entry
            assert record.data == jsonfmt.dumps(entry)
            source = store.transcript(key)
            events = dump["transcripts"].get(entry["sessionId"])
            if source is None:
                assert not events
                continue
            data = b"".join(source.chunks())
            assert [json.loads(line) for line in data.splitlines()] == events
            folder = legacy_root / agent_dir.name / "sessions"
            files = [p for p in folder.glob(f"{entry['sessionId']}*.jsonl")] if folder.exists() \
                else []
            if files:
                assert data == files[0].read_bytes()
        store.close()
        assert db_digest(store.path) == before
    assert os.listdir(state / "agents")

"""A damaged SQLite store (issue 14, points 10 to 12), built from stores openclaw 2026.9.6 wrote
(``tests/openclaw_fixtures.py``) and damaged with sqlite3 here:

* one bad ``entry_json`` row (not JSON, not an object, not UTF-8, nested too deep) costs only
  that session, in the store, ``sessions.json``, both mounts, ``ls``/``get``, ``status`` and
  ``check``;
* a zstd bomb or a lying ``event_utf8_bytes`` is an error naming the session and the event's
  seq, decoded within openclaw's own bounds (memory measured);
* a transcript's name and content come from one session (the row's ``current_session_id``);
  ``check`` reports shared sessionIds and damaged transcript rows.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from sessionfs import keys
from sessionfs.cli import main
from sessionfs.errors import StoreCorrupt
from sessionfs.maintenance import check
from sessionfs.projection import render
from sessionfs.store import SqliteStore, locate_store, open_store
from tests.conftest import JAMES, MAIN
from tests.mountutil import ROOT, Mount, force_unmount, scratch_root, wait_for
from tests.openclaw_fixtures import NAMES, extract_real_store

DASHBOARD = "agent:main:dashboard:6ba7b810-9dad-41d1-80b4-00c04fd430c8"

#: entry_json damage: (SQL value expression, a word the reason must hold)
DAMAGE: dict[str, tuple[str, str]] = {
    "not-json": ("""'{"sessionId":"a22a45b4",'""", "entry_json"),
    "not-an-object": ("'[1,2,3]'", "not a JSON object but an array"),
    "not-utf8": ("CAST(x'7b2273657373696f6e4964223a22ff227d' AS TEXT)", "not valid UTF-8"),
    "too-deep": ("'{\"sessionId\":\"a22a45b4\",\"a\":' || replace(hex(zeroblob(100000)), "
                 "'00', '[') || replace(hex(zeroblob(100000)), '00', ']') || '}'",
                 "nesting too deep"),
}


@pytest.fixture
def real(tmp_path: Path) -> Path:
    """The ``plain`` fixture's state dir (agents main and work), freshly extracted."""
    return extract_real_store("plain", tmp_path) / "plain"


def db_of(state: Path, agent: str = "main") -> Path:
    return state / "agents" / agent / "agent" / "openclaw-agent.sqlite"


def damage_entry(db: Path, key: str, value_sql: str) -> None:
    """Set ``entry_json`` of ``key`` to ``value_sql`` and ``entry_valid`` back to 1 (the
    trigger resets it), so the damage itself is all that is wrong with the row."""
    with sqlite3.connect(db) as conn:
        assert conn.execute(f"UPDATE session_nodes SET entry_json = {value_sql} "
                            "WHERE session_key = ?", (key,)).rowcount == 1
        conn.execute("UPDATE session_nodes SET entry_valid = 1 WHERE session_key = ?", (key,))
    conn.close()


def rendered(store: SqliteStore, state: Path) -> dict[str, Any]:
    data = render(store, str(state / "agents/main/sessions")).data
    document: dict[str, Any] = json.loads(data)
    return document


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- point 10: one bad row ---------------------------------------------------------------
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_one_damaged_row_costs_only_that_row(real: Path, kind: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    agent = real / "agents" / "main"
    with _opened(agent) as store:
        before = rendered(store, real)
        records_before = {record.key: record.data for record in store.records()}
    value_sql, word = DAMAGE[kind]
    damage_entry(db_of(real), JAMES, value_sql)

    with _opened(agent) as store:
        # the store: every other session byte-equal, the bad one an EIO naming key and reason
        records = {record.key: record.data for record in store.records()}
        assert records == {k: v for k, v in records_before.items() if k != JAMES}
        assert JAMES in store.keys() and len(store.keys()) == 20
        with pytest.raises(StoreCorrupt) as raised:
            store.read(JAMES)
        assert raised.value.errno == errno.EIO
        assert JAMES in str(raised.value) and word in str(raised.value)
        assert store.read(MAIN).data == records_before[MAIN]
        assert [row.key for row in store.damaged_rows()] == [JAMES]
        assert [row.key for row in store.refused_rows()] == [JAMES]
        assert word in store.refused_rows()[0].reason
        # sessions.json: the rest, in order and unchanged; the bad row is not in it
        after = rendered(store, real)
        assert after == {k: v for k, v in before.items() if k != JAMES}
        assert list(after) == [k for k in before if k != JAMES]

    # CLI: ls lists all 20, ls -l all 20 with the damaged one marked and exit 1, get EIO-alike
    code, out, err = run_cli(["ls", str(agent)], capsys)
    assert code == 0 and out.splitlines() == sorted(records_before)
    code, out, err = run_cli(["ls", "-l", str(agent)], capsys)
    lines = out.splitlines()
    assert code == 1 and len(lines) == 20
    assert [line.split()[-1] for line in lines if "damaged" in line] == [keys.encode(JAMES)]
    assert JAMES in err and word in err
    code, out, err = run_cli(["get", str(agent), JAMES], capsys)
    assert code == 1 and out == "" and JAMES in err and word in err
    code, out, err = run_cli(["get", str(agent), MAIN], capsys)
    assert code == 0 and out.encode() == records_before[MAIN] + b"\n"
    code, out, err = run_cli(["status", str(agent)], capsys)
    assert "refused rows: 1" in out and JAMES in out and word in out
    # check: the damaged row by key and reason, nothing else
    problems = check(locate_store(agent))
    assert [problem.kind for problem in problems] == ["damaged row"]
    assert JAMES in problems[0].detail and word in problems[0].detail


class _opened:
    """``open_store`` closed on exit (SqliteStore keeps connections)."""

    def __init__(self, agent: Path) -> None:
        self.store = open_store(agent)
        assert isinstance(self.store, SqliteStore)

    def __enter__(self) -> SqliteStore:
        assert isinstance(self.store, SqliteStore)
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


@pytest.fixture
def scratch_state() -> Iterator[Path]:
    """The ``plain`` fixture extracted where the kernel tests mount (``scratch_root``)."""
    folder = scratch_root()
    yield extract_real_store("plain", folder) / "plain"
    force_unmount(folder / "mnt")
    shutil.rmtree(folder, ignore_errors=True)


def test_a_damaged_row_through_the_state_mount(scratch_state: Path) -> None:
    """Through the kernel: the agent's sessions/ folder, sessions.json, the other sessions'
    meta.json and every transcript are served; the bad session answers EIO; status names it."""
    state = scratch_state
    with _opened(state / "agents/main") as store:
        expected = {record.key: record for record in store.records() if record.key != JAMES}
        james_transcript = store.transcript_bytes(JAMES)
    damage_entry(db_of(state), JAMES, DAMAGE["not-utf8"][0])
    mp = state.parent / "mnt"
    with Mount(state, mp, "--timeout", "0.3") as mount:
        sessions = mp / "agents/main/sessions"
        listed = os.listdir(sessions)
        document = json.loads((sessions / "sessions.json").read_bytes())
        assert list(document) == list(expected)
        assert JAMES not in document
        for key, record in expected.items():
            meta = sessions / "sessions.d" / keys.encode(key) / "meta.json"
            assert meta.read_bytes() == record.data
        with pytest.raises(OSError) as raised:
            (sessions / "sessions.d" / keys.encode(JAMES) / "meta.json").read_bytes()
        assert raised.value.errno == errno.EIO
        assert keys.encode(JAMES) in os.listdir(sessions / "sessions.d")
        # every transcript is listed and readable, the damaged row's too (its events are intact)
        james_id = "a22a45b4-4cd2-44b8-9326-d339acc500a6"
        assert f"{james_id}.jsonl" in listed
        assert (sessions / f"{james_id}.jsonl").read_bytes() == james_transcript
        main_id = expected[MAIN].entry["sessionId"]
        assert document[MAIN]["sessionFile"] == f"{sessions}/{main_id}.jsonl"
        assert len((sessions / f"{main_id}.jsonl").read_bytes()) > 10_000
        status = (mp / ".sessionfs/status").read_text()
        assert "refused rows: 1" in status
        damaged_line = next(line for line in status.splitlines() if JAMES in line)
        assert "damaged row" in damaged_line and "not valid UTF-8" in damaged_line
        # the other agent is untouched
        assert len(json.loads((mp / "agents/work/sessions/sessions.json").read_bytes())) == 2
    mount.assert_no_internal_errors()


def test_a_damaged_row_through_the_store_mount(scratch_state: Path) -> None:
    state = scratch_state
    agent = state / "agents/main"
    with _opened(agent) as store:
        expected = {record.key: record.data for record in store.records()}
    damage_entry(db_of(state), JAMES, DAMAGE["too-deep"][0])
    mp = state.parent / "mnt"
    with Mount(agent, mp) as mount:
        assert sorted(name for name in os.listdir(mp) if not name.startswith(".")) == \
            sorted(keys.encode(key) for key in expected)
        for key, data in expected.items():
            if key != JAMES:
                assert (mp / keys.encode(key) / "meta.json").read_bytes() == data
        with pytest.raises(OSError) as raised:
            (mp / keys.encode(JAMES) / "meta.json").read_bytes()
        assert raised.value.errno == errno.EIO
        status = (mp / ".sessionfs/status").read_text()
        assert "refused rows: 1" in status and "nesting too deep" in status
    mount.assert_no_internal_errors()


# -- point 11: zstd bombs and lying lengths ----------------------------------------------
def compressed_events(db: Path, session_id: str) -> list[tuple[int, bytes, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seq, event_zstd, event_utf8_bytes FROM transcript_events "
                            "WHERE session_id = ? AND event_zstd IS NOT NULL ORDER BY seq",
                            (session_id,)).fetchall()
    conn.close()
    return rows


def zero_frame(size: int, *, content_size: bool) -> bytes:
    """A zstd frame of ``size`` zero bytes, made without holding them (a bomb: ~32 KB/GiB)."""
    out = _Sink()
    compressor = zstandard.ZstdCompressor(level=1, write_checksum=True,
                                          write_content_size=content_size)
    with compressor.stream_writer(out, size=size if content_size else -1,
                                  closefd=False) as writer:
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            writer.write(chunk)
    return bytes(out.data)


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


def set_event(db: Path, session_id: str, seq: int, blob: bytes, utf8_bytes: int) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("UPDATE transcript_events SET event_zstd = ?, event_utf8_bytes = ? "
                            "WHERE session_id = ? AND seq = ?",
                            (blob, utf8_bytes, session_id, seq)).rowcount == 1
    conn.close()


def rusage_of(argv: list[str]) -> tuple[int, bytes, bytes, int]:
    """Run ``argv`` (a sessionfs command) in a child; (exit code, stdout, stderr, max RSS KiB)."""
    proc = subprocess.Popen([sys.executable, "-m", "sessionfs", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(ROOT),
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out, err, usage.ru_maxrss


@pytest.mark.parametrize("bomb", ["declared", "undeclared"])
def test_a_zstd_bomb_is_refused_within_bounded_memory(real: Path, bomb: str) -> None:
    """A frame declaring 512 MiB (CHECK constraints pass: the blob is ~16 KB), or declaring
    nothing and expanding to 64 MiB: the CLI reads within a few MB of its baseline and names
    the session and the event's real seq."""
    agent = real / "agents/main"
    main_id = "d4c403f1-b534-4137-85ba-fddc3a7164a1"
    baseline = rusage_of(["transcript", str(agent), JAMES])
    assert baseline[0] == 0 and baseline[1]
    seq, _blob, utf8_bytes = compressed_events(db_of(real), main_id)[-1]
    assert seq > 0
    blob = zero_frame(512 << 20 if bomb == "declared" else 64 << 20,
                      content_size=bomb == "declared")
    assert len(blob) < 4 << 20  # passes openclaw's CHECK (1 byte to 4 MiB)
    set_event(db_of(real), main_id, seq, blob, utf8_bytes)
    code, _out, err, maxrss = rusage_of(["transcript", str(agent), MAIN])
    assert code == 1
    message = err.decode()
    assert f"session {MAIN!r}" in message and f"transcript event seq {seq}:" in message
    assert ("declares 536870912 bytes" if bomb == "declared" else "more than") in message
    assert "rewritten" not in message
    assert maxrss < baseline[3] + 24 * 1024, (maxrss, baseline[3])
    # check names it too, and every other event is fine
    problems = check(locate_store(agent))
    assert [problem.kind for problem in problems] == ["damaged transcript event"]
    assert f"transcript event seq {seq}:" in problems[0].detail and MAIN in problems[0].detail


def test_a_lying_event_length_names_the_seq_not_a_rewrite(real: Path) -> None:
    """A frame without a content size whose text is shorter than ``event_utf8_bytes``: the
    offsets are measured from the lie, the read finds it; an error with the real seq, every
    time (not ESTALE's "was rewritten; reopen it")."""
    agent = real / "agents/main"
    main_id = "d4c403f1-b534-4137-85ba-fddc3a7164a1"
    events = compressed_events(db_of(real), main_id)
    seq, blob, utf8_bytes = events[0]
    text = zstandard.ZstdDecompressor().decompress(blob)
    assert len(text) == utf8_bytes and seq > 0
    shorter = zstandard.ZstdCompressor(write_content_size=False).compress(text)
    set_event(db_of(real), main_id, seq, shorter, utf8_bytes + 100)
    with _opened(agent) as store:
        source = store.transcript(MAIN)
        assert source is not None
        for _attempt in range(2):
            with pytest.raises(StoreCorrupt) as raised:
                b"".join(source.chunks())
            assert raised.value.errno == errno.EIO
            assert f"session {MAIN!r} (sessionId {main_id}): transcript event seq {seq}: " \
                f"event_zstd decompresses to {utf8_bytes} bytes but the row's " \
                f"event_utf8_bytes says {utf8_bytes + 100}" in str(raised.value)
        # the events before it are served
        assert source.read(0, 100)


def test_a_bomb_through_the_store_mount_is_eio_and_bounded(scratch_state: Path) -> None:
    state = scratch_state
    agent = state / "agents/main"
    main_id = "d4c403f1-b534-4137-85ba-fddc3a7164a1"
    seq, _blob, utf8_bytes = compressed_events(db_of(state), main_id)[-1]
    set_event(db_of(state), main_id, seq, zero_frame(512 << 20, content_size=True), utf8_bytes)
    mp = state.parent / "mnt"
    with Mount(agent, mp) as mount:
        transcript = mp / keys.encode(MAIN) / "transcript.jsonl"
        assert mount.proc is not None
        before = _vm_hwm(mount.proc.pid)
        for _attempt in range(3):
            with pytest.raises(OSError) as raised:
                transcript.read_bytes()
            assert raised.value.errno == errno.EIO
        assert _vm_hwm(mount.proc.pid) < before + 24 * 1024
        assert (mp / keys.encode(JAMES) / "transcript.jsonl").read_bytes()
    assert f"transcript event seq {seq}:" in mount.log()


def _vm_hwm(pid: int) -> int:
    """Peak resident set of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# -- point 12: one session's name, one session's content ----------------------------------------
def test_a_transcript_is_named_after_the_session_whose_events_it_shows(
        real: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """entry_json's sessionId says MAIN's id, the row's current_session_id is JAMES's own window:
    the file shown for JAMES is named after the window it shows, MAIN's file stays MAIN's,
    the row is reported as refused by openclaw, and check names the shared sessionId."""
    agent = real / "agents/main"
    with _opened(agent) as store:
        main_id = store.read(MAIN).entry["sessionId"]
        james_id = store.read(JAMES).entry["sessionId"]
        main_events = store.transcript_bytes(MAIN)
        james_events = store.transcript_bytes(JAMES)
    with sqlite3.connect(db_of(real)) as conn:
        conn.execute("UPDATE session_nodes SET entry_json = json_set(entry_json, '$.sessionId', "
                     "?) WHERE session_key = ?", (main_id, JAMES))
        conn.execute("UPDATE session_nodes SET entry_valid = 1 WHERE session_key = ?", (JAMES,))
    conn.close()
    transcripts = real / "agents/main/sessions"
    with _opened(agent) as store:
        projection = render(store, str(transcripts))
        document = json.loads(projection.data)
        assert document[JAMES]["sessionId"] == main_id  # the entry is shown as stored
        assert document[JAMES]["sessionFile"] == f"{transcripts}/{james_id}.jsonl"
        assert document[MAIN]["sessionFile"] == f"{transcripts}/{main_id}.jsonl"
        assert projection.names[f"{james_id}.jsonl"] == JAMES
        assert projection.names[f"{main_id}.jsonl"] == MAIN
        assert store.transcript_bytes(JAMES) == james_events
        assert store.transcript_bytes(MAIN) == main_events
        refused = [row for row in store.refused_rows() if row.key == JAMES]
        assert len(refused) == 1 and "current_session_id" in refused[0].reason
    problems = check(locate_store(agent))
    kinds = sorted(problem.kind for problem in problems)
    assert kinds == ["duplicate-session-id", "refused by openclaw"]
    duplicate = next(problem for problem in problems if problem.kind == "duplicate-session-id")
    assert main_id in duplicate.detail and MAIN in duplicate.detail and JAMES in duplicate.detail
    code, _out, _err = run_cli(["check", str(agent)], capsys)
    assert code == 1


@pytest.mark.parametrize("name", NAMES)
def test_check_finds_nothing_in_stores_openclaw_wrote(tmp_path: Path, name: str) -> None:
    """The checks above (every row parsed, sessionId and updatedAt against their columns, every
    event decoded and parsed) report nothing on what openclaw itself wrote."""
    state = extract_real_store(name, tmp_path) / name
    for agent in sorted((state / "agents").iterdir()):
        if db_of(state, agent.name).exists():
            assert check(locate_store(agent)) == []


def test_check_names_a_transcript_line_that_is_not_json(real: Path) -> None:
    agent = real / "agents/main"
    james_id = "a22a45b4-4cd2-44b8-9326-d339acc500a6"
    with sqlite3.connect(db_of(real)) as conn:
        assert conn.execute("UPDATE transcript_events SET event_json = '{\"type\":' "
                            "WHERE session_id = ? AND seq = 3", (james_id,)).rowcount == 1
    conn.close()
    problems = check(locate_store(agent))
    assert [problem.kind for problem in problems] == ["damaged transcript event"]
    assert f"session {JAMES!r} (sessionId {james_id}): transcript event seq 3: the event is " \
        "not JSON" in problems[0].detail


def test_name_and_content_agree_through_the_state_mount(scratch_state: Path) -> None:
    state = scratch_state
    with _opened(state / "agents/main") as store:
        main_id = store.read(MAIN).entry["sessionId"]
        james_id = store.read(JAMES).entry["sessionId"]
        main_events = store.transcript_bytes(MAIN)
        james_events = store.transcript_bytes(JAMES)
    assert main_events != james_events
    with sqlite3.connect(db_of(state)) as conn:
        conn.execute("UPDATE session_nodes SET entry_json = json_set(entry_json, '$.sessionId', "
                     "?) WHERE session_key = ?", (main_id, JAMES))
        conn.execute("UPDATE session_nodes SET entry_valid = 1 WHERE session_key = ?", (JAMES,))
    conn.close()
    mp = state.parent / "mnt"
    with Mount(state, mp, "--timeout", "0.3") as mount:
        sessions = mp / "agents/main/sessions"
        document = json.loads((sessions / "sessions.json").read_bytes())
        assert document[JAMES]["sessionFile"] == f"{sessions}/{james_id}.jsonl"
        assert Path(document[JAMES]["sessionFile"]).read_bytes() == james_events
        assert Path(document[MAIN]["sessionFile"]).read_bytes() == main_events
        status = (mp / ".sessionfs/status").read_text()
        assert any(JAMES in line and "current_session_id" in line
                   for line in status.splitlines())
    mount.assert_no_internal_errors()


def test_a_row_damaged_and_repaired_while_mounted(scratch_state: Path) -> None:
    """The gateway's database changes under the mount: within --timeout the damaged row leaves
    sessions.json (status names it) and comes back once repaired; the rest never fails."""
    state = scratch_state
    db = db_of(state)
    with sqlite3.connect(db) as conn:
        good = conn.execute("SELECT entry_json FROM session_nodes WHERE session_key = ?",
                            (JAMES,)).fetchone()[0]
    conn.close()
    mp = state.parent / "mnt"
    with Mount(state, mp, "--timeout", "0.3") as mount:
        sessions_json = mp / "agents/main/sessions/sessions.json"
        status = mp / ".sessionfs/status"

        def keys_now() -> list[str]:
            return list(json.loads(sessions_json.read_bytes()))

        assert JAMES in keys_now() and len(keys_now()) == 20
        damage_entry(db, JAMES, DAMAGE["not-an-object"][0])
        assert wait_for(lambda: JAMES not in keys_now(), 10)
        assert len(keys_now()) == 19
        assert "not a JSON object" in status.read_text()
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE session_nodes SET entry_json = ? WHERE session_key = ?",
                         (good, JAMES))
            conn.execute("UPDATE session_nodes SET entry_valid = 1 WHERE session_key = ?",
                         (JAMES,))
        conn.close()
        assert wait_for(lambda: JAMES in keys_now(), 10)
        assert keys_now() == sorted(keys_now()) and len(keys_now()) == 20
        assert "refused rows: 0" in status.read_text().split("[agent main]")[1]
    mount.assert_no_internal_errors()


def test_a_session_key_that_is_not_utf8_costs_only_its_row(
        scratch_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A row whose session_key (or current_session_id) is not UTF-8 made every query of the
    agent fail: now it is a damaged row, named (bad bytes as U+FFFD) by status and check."""
    state = scratch_state
    agent = state / "agents/main"
    with _opened(agent) as store:
        expected = {record.key: record.data for record in store.records()}
    with sqlite3.connect(db_of(state)) as conn:
        conn.execute("INSERT INTO session_nodes (session_key, current_session_id, entry_json, "
                     "entry_valid, updated_at) SELECT CAST(x'6167656e743a6d61696e3aff' AS TEXT), "
                     "CAST(x'ff' AS TEXT), entry_json, 1, updated_at FROM session_nodes "
                     "WHERE session_key = ?", (JAMES,))
    conn.close()
    with _opened(agent) as store:
        assert store.keys() == list(expected)
        assert {record.key: record.data for record in store.records()} == expected
        assert [row.key for row in store.damaged_rows()] == ["agent:main:\ufffd"]
        assert "session_key is not valid UTF-8" in store.damaged_rows()[0].reason
    code, out, _err = run_cli(["ls", "-l", str(agent)], capsys)
    assert code == 0 and len(out.splitlines()) == 20
    code, out, _err = run_cli(["status", str(agent)], capsys)
    assert code == 0 and "agent:main:\ufffd" in out
    assert [problem.kind for problem in check(locate_store(agent))] == ["damaged row"]
    mp = state.parent / "mnt"
    with Mount(state, mp, "--timeout", "0.3") as mount:
        sessions = mp / "agents/main/sessions"
        assert list(json.loads((sessions / "sessions.json").read_bytes())) == list(expected)
        assert len(os.listdir(sessions / "sessions.d")) == 20
        assert "session_key is not valid UTF-8" in (mp / ".sessionfs/status").read_text()
    mount.assert_no_internal_errors()

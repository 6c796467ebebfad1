"""The SQLite generation and transcript.jsonl through the kernel: byte-exact entries and
transcripts (compressed events included), EROFS for every write with the database's bytes
unchanged, a gateway committing while readers read, ``tail -f``, the page cache, and the
file-era transcripts beside sessions.json / sessions.d."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.demo import write_legacy_store
from sessionfs.fs.view import SessionView
from sessionfs.migrate import migrate
from sessionfs.store import open_store
from tests.mountutil import Mount
from tests.sqlite_util import (
    BIG_LINE,
    ENTRIES,
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

GROUP = "agent:main:googlechat:group:spaces/aaaa"  # has no transcript
TIMEOUT = 1.0


def db_of(agent_dir: Path) -> Path:
    return agent_dir / "agent" / "openclaw-agent.sqlite"


@pytest.fixture
def agent(base: Path) -> Path:
    agent_dir = base / "state" / "agents" / "main"
    build(agent_dir)
    return agent_dir


@pytest.fixture
def mnt(agent: Path) -> Iterator[Mount]:
    with Mount(agent, agent.parent.parent.parent / "mnt") as mount:
        yield mount
    mount.assert_no_internal_errors()


def run(command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False)


def wait_until(predicate: object, timeout: float) -> float | None:
    """Seconds until ``predicate()`` held, or None if it never did within ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.01)
    return None


# -- reading ---------------------------------------------------------------------------------------
def test_entries_and_transcripts_byte_exact(mnt: Mount, agent: Path) -> None:
    store = open_store(agent)
    assert sorted(os.listdir(mnt.mp)) == sorted([".sessionfs", *map(keys.encode, ENTRIES)])
    for key in ENTRIES:
        record = store.read(key)
        assert mnt.meta(key).read_bytes() == record.data
        folder = os.stat(mnt.dir(key))
        assert folder.st_mtime_ns == ENTRIES[key]["updatedAt"] * 1_000_000  # updated_at
    for key, lines in TRANSCRIPTS.items():
        path = mnt.dir(key) / "transcript.jsonl"
        expected = jsonl(lines)
        st = os.stat(path)
        assert st.st_size == len(expected)
        assert stat.S_IMODE(st.st_mode) == 0o400 and stat.S_ISREG(st.st_mode)
        assert path.read_bytes() == expected  # BIG_LINE is stored as an event_zstd frame
        assert sorted(os.listdir(mnt.dir(key))) == ["meta.json", "transcript.jsonl"]
    assert BIG_LINE.encode() + b"\n" in (mnt.dir(MAIN) / "transcript.jsonl").read_bytes()
    with db_of(agent).open("rb"):
        pass
    # a session without a transcript has no transcript.jsonl, not an empty one
    assert os.listdir(mnt.dir(GROUP)) == ["meta.json"]
    assert not (mnt.dir(GROUP) / "transcript.jsonl").exists()


def test_tools_work_on_the_transcript(mnt: Mount) -> None:
    path = mnt.dir(MAIN) / "transcript.jsonl"
    lines = TRANSCRIPTS[MAIN]
    assert run(f"wc -l < '{path}'").stdout.strip() == str(len(lines))
    assert run(f"head -n 2 '{path}'").stdout.encode() == jsonl(lines[:2])
    jq = run(f"jq -c .type '{path}'")
    assert jq.returncode == 0 and jq.stdout.split() == [json.dumps(json.loads(line)["type"])
                                                          for line in lines]
    grep = run(f"grep -rl Zürich '{mnt.mp}'")
    assert grep.returncode == 0 and str(path) in grep.stdout.split("\n")
    less = run(f"less -F '{path}' | md5sum; md5sum < '{path}'")
    first, second = less.stdout.split("\n")[:2]
    assert first == second


# -- read-only -------------------------------------------------------------------------------------
WRITES = [
    "echo '{{}}' > {meta}",
    "touch {meta}",
    "touch {dir}",
    "touch {mp}/new-file",
    "rm {meta}",
    "rm -r {dir}",
    "mv {dir} {mp}/agent--main--other",
    "mv {meta} {dir}/meta.json.bak",
    "mkdir {mp}/agent--main--new",
    "truncate -s 0 {meta}",
    "echo x >> {transcript}",
    "truncate -s 0 {transcript}",
    "rm -f {transcript}",
    "mv {transcript} {dir}/t.jsonl",
    "touch {transcript}",
    "chmod 600 {transcript}",
    "cp /etc/hostname {transcript}",
]


def test_every_write_fails_with_erofs_and_the_database_is_unchanged(mnt: Mount, agent: Path
                                                                     ) -> None:
    before = db_digest(db_of(agent))
    folder = mnt.dir(MAIN)
    for template in WRITES:
        command = template.format(meta=folder / "meta.json", dir=folder, mp=mnt.mp,
                                  transcript=folder / "transcript.jsonl")
        done = run(command)
        assert done.returncode != 0, command
        assert "Read-only file system" in done.stderr, (command, done.stderr)
    for name, mode in ((folder / "meta.json", os.O_WRONLY), (folder / "transcript.jsonl",
                                                            os.O_RDWR)):
        with pytest.raises(OSError) as caught:
            os.open(name, mode)
        assert caught.value.errno == errno.EROFS
    # a full read of every session and transcript changes no byte either
    for key in ENTRIES:
        mnt.meta(key).read_bytes()
        if key in TRANSCRIPTS:
            (mnt.dir(key) / "transcript.jsonl").read_bytes()
    assert (folder / "transcript.jsonl").read_bytes() == jsonl(TRANSCRIPTS[MAIN])
    errors = mnt.errors()
    assert "EROFS read-only: no openclaw Gateway is running for" in errors
    assert "start the openclaw Gateway ('openclaw gateway run') to edit sessions" in errors
    status = (mnt.mp / ".sessionfs" / "status").read_text()
    assert "generation: sqlite (agent schema 23" in status and "refused rows: 0" in status
    mnt.stop()
    assert db_digest(db_of(agent)) == before
    leftovers = {p.name for p in db_of(agent).parent.iterdir()}
    assert leftovers <= {"openclaw-agent.sqlite", "openclaw-agent.sqlite-wal",
                         "openclaw-agent.sqlite-shm"}


def test_status_lists_refused_rows_and_stale_files(base: Path) -> None:
    agent_dir = base / "state" / "agents" / "main"
    build(agent_dir, entries={"main:legacy-key": {"sessionId": "x1", "updatedAt": 5},
                              MAIN: ENTRIES[MAIN]}, transcripts={})
    write_legacy_store(agent_dir / "sessions", {MAIN: {"sessionId": "old", "updatedAt": 1}})
    with gateway(db_of(agent_dir)) as conn:
        conn.execute("UPDATE session_nodes SET entry_valid = 0 WHERE session_key = ?", (MAIN,))
    with Mount(agent_dir, base / "mnt") as mount:
        status = (mount.mp / ".sessionfs" / "status").read_text()
        assert "refused rows: 2" in status
        assert "refused: session 'main:legacy-key': non-canonical session key" in status
        assert "refused: session 'agent:main:main': invalid persisted session row" in status
        assert f"stale: {agent_dir / 'sessions' / 'sessions.json'}" in status
        # refused rows are still served: this is where people look when something is broken
        assert mount.meta(MAIN).read_bytes() == open_store(agent_dir).read(MAIN).data
        assert (mount.mp / keys.encode("main:legacy-key") / "meta.json").exists()
    mount.assert_no_internal_errors()


# -- the gateway keeps writing ---------------------------------------------------------------------
def test_gateway_commits_are_visible_within_the_timeout_and_never_torn(mnt: Mount, agent: Path
                                                                        ) -> None:
    main_transcript = mnt.dir(MAIN) / "transcript.jsonl"
    old_transcript = main_transcript.read_bytes()
    os.listdir(mnt.mp)
    os.stat(mnt.dir(JAMES))  # the kernel caches these: the deletion must still show
    stop = threading.Event()
    problems: list[str] = []
    rounds = [0]

    def reader() -> None:
        while not stop.is_set():
            rounds[0] += 1
            try:
                data = mnt.meta(MAIN).read_bytes()
                entry = jsonfmt.loads(data)
                if entry.get("label") not in (ENTRIES[MAIN]["label"], "renamed"):
                    problems.append(f"unexpected label {entry.get('label')!r}")
                text = main_transcript.read_bytes()
                if not text.endswith(b"\n") or not text.startswith(old_transcript):
                    problems.append("torn transcript")
                for line in text.splitlines():
                    json.loads(line)
            except FileNotFoundError:
                problems.append("main vanished")
            except Exception as exc:  # any failure is a finding
                problems.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    added = ['{"type":"message","id":"c3","message":{"role":"user","content":"again"}}',
             BIG_LINE]
    try:
        assert wait_until(lambda: rounds[0] >= 6, 10) is not None  # both readers are reading
        with gateway(db_of(agent)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            put_session(conn, "agent:main:new", {"sessionId": "n1", "updatedAt": 9},
                        ['{"type":"session","id":"n1"}'])
            put_session(conn, MAIN, dict(ENTRIES[MAIN], label="renamed", updatedAt=1781514099000))
            conn.execute("UPDATE session_nodes SET entry_valid = -1, entry_json = '{}' "
                         "WHERE session_key = ?", (JAMES,))
            append_events(conn, ENTRIES[MAIN]["sessionId"], added)
            conn.execute("COMMIT")
        committed = time.monotonic()
        new_dir = mnt.dir("agent:main:new")
        expected = old_transcript + jsonl(added)
        checks = {
            "new session": lambda: (new_dir / "transcript.jsonl").exists()
            and new_dir.name in os.listdir(mnt.mp),
            "changed entry": lambda: jsonfmt.loads(mnt.meta(MAIN).read_bytes())["label"]
            == "renamed",
            "deleted session": lambda: not mnt.dir(JAMES).exists()
            and mnt.dir(JAMES).name not in os.listdir(mnt.mp),
            "appended events": lambda: main_transcript.read_bytes() == expected,
            "folder mtime": lambda: os.stat(mnt.dir(MAIN)).st_mtime_ns
            == 1781514099000 * 1_000_000,
        }
        for name, check in checks.items():
            left = TIMEOUT + 0.4 - (time.monotonic() - committed)
            assert wait_until(check, max(left, 0.05)) is not None, name
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert problems == []
    assert os.stat(main_transcript).st_size == len(expected)


def test_tail_f_follows_appended_events(mnt: Mount, agent: Path) -> None:
    path = mnt.dir(MAIN) / "transcript.jsonl"
    out = mnt.mp.parent / "tail.out"
    with out.open("wb") as sink:
        tail = subprocess.Popen(["tail", "-c", "+1", "-f", "-s", "0.1", str(path)], stdout=sink)
    try:
        assert wait_until(lambda: out.stat().st_size == len(jsonl(TRANSCRIPTS[MAIN])), 5)
        added = [f'{{"type":"message","id":"t{n}"}}' for n in range(3)] + [BIG_LINE]
        for line in added:
            with gateway(db_of(agent)) as conn:
                conn.execute("BEGIN IMMEDIATE")
                append_events(conn, ENTRIES[MAIN]["sessionId"], [line])
                conn.execute("COMMIT")
            time.sleep(0.2)
        expected = jsonl(TRANSCRIPTS[MAIN] + added)
        assert wait_until(lambda: out.read_bytes() == expected, TIMEOUT + 2), \
            out.read_bytes()[-200:]
    finally:
        tail.terminate()
        tail.wait(timeout=10)


def _resident_pages(path: Path) -> int:
    done = run(f"fincore -n -b -o RES '{path}'")
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[0])


def test_page_cache_kept_while_unchanged_dropped_when_changed(mnt: Mount, agent: Path) -> None:
    path = mnt.dir(MAIN) / "transcript.jsonl"
    first = path.read_bytes()
    with path.open("rb") as held:  # fincore needs an open file; it must not drop the cache
        assert _resident_pages(path) >= len(first) - 4096
        held.read()
    assert _resident_pages(path) >= len(first) - 4096  # a new open kept the pages
    with gateway(db_of(agent)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        append_events(conn, ENTRIES[MAIN]["sessionId"], ['{"type":"message","id":"pc"}'])
        conn.execute("COMMIT")
    expected = first + b'{"type":"message","id":"pc"}\n'
    assert wait_until(lambda: path.read_bytes() == expected, TIMEOUT + 0.5)


# -- file-era transcripts --------------------------------------------------------------------------
LINES = b'{"type":"session","version":3,"id":"s1"}\n{"type":"message","id":"a"}\n'
FILE_ERA = {
    "agent:main:main": {"sessionId": "s1", "updatedAt": 1,
                        "sessionFile": "/old/place/agents/main/sessions/s1.jsonl"},
    "agent:main:telegram:group:-100:topic:42": {"sessionId": "s2", "updatedAt": 2},
    "agent:main:plain": {"sessionId": "s3", "updatedAt": 3},
    "agent:main:escape": {"sessionId": "s4", "updatedAt": 4, "sessionFile": "../../outside.jsonl"},
    "agent:main:link": {"sessionId": "s5", "updatedAt": 5},
    "agent:main:none": {"sessionId": "s6", "updatedAt": 6},
}


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_file_era_transcripts_through_the_mount(base: Path, layout: str) -> None:
    folder = base / "sessions"
    write_legacy_store(folder, FILE_ERA)
    (folder / "s1.jsonl").write_bytes(LINES)
    (folder / "s2-topic-42.jsonl").write_bytes(b"topic\n")
    (folder / "s3.jsonl").write_bytes(b"plain\n")
    (base / "outside.jsonl").write_bytes(b"secret\n")
    (folder / "s4.jsonl").unlink(missing_ok=True)
    os.symlink(base / "outside.jsonl", folder / "s5.jsonl")
    if layout == "directory":
        migrate(folder)
    store_before = {key: open_store(folder).read(key).data for key in FILE_ERA}
    with Mount(folder, base / "mnt") as mount:
        def transcript(key: str) -> Path:
            return mount.dir(key) / "transcript.jsonl"

        assert transcript("agent:main:main").read_bytes() == LINES  # sessionFile's base name
        assert transcript("agent:main:telegram:group:-100:topic:42").read_bytes() == b"topic\n"
        assert transcript("agent:main:plain").read_bytes() == b"plain\n"
        for key in ("agent:main:escape", "agent:main:link", "agent:main:none"):
            assert not transcript(key).exists(), key  # never out of the folder, never empty
            assert os.listdir(mount.dir(key)) == ["meta.json"]
        assert stat.S_IMODE(os.stat(transcript("agent:main:plain")).st_mode) == 0o400
        # a writable store: the transcript still refuses every change, the session stays
        path = transcript("agent:main:main")
        for command, code in ((f"echo x >> '{path}'", "Read-only file system"),
                              (f"truncate -s 1 '{path}'", "Read-only file system"),
                              (f"touch '{path}'", "Read-only file system"),
                              (f"rm -f '{path}'", "Operation not permitted"),
                              (f"mv '{path}' '{path}.x'", "Operation not permitted"),
                              (f"cp '{transcript('agent:main:plain')}' '{path}'",
                               "Read-only file system"),
                              (f"mv '{mount.meta('agent:main:main')}' '{path}'",
                               "Operation not permitted")):
            done = run(command)
            assert done.returncode != 0 and code in done.stderr, (command, done.stderr)
        assert path.read_bytes() == LINES and (folder / "s1.jsonl").read_bytes() == LINES
        assert "transcript.jsonl is read-only" in mount.errors()
        # growth shows within the timeout (tail -f on a live file-era conversation)
        with (folder / "s3.jsonl").open("ab") as stream:
            stream.write(b"more\n")
        assert wait_until(lambda: transcript("agent:main:plain").read_bytes()
                          == b"plain\nmore\n", TIMEOUT + 0.5)
        # meta.json still works as before next to it
        entry = dict(FILE_ERA["agent:main:plain"], label="edited")
        mount.meta("agent:main:plain").write_bytes(json.dumps(entry, indent=2).encode())
        # the file names come from the entry: a new sessionId points at another file at once,
        # even after the old names were looked up (and kept) long enough to be trusted
        time.sleep(TIMEOUT + 0.2)
        assert os.listdir(mount.dir("agent:main:none")) == ["meta.json"]
        (folder / "s9.jsonl").write_bytes(b"nine\n")
        assert os.listdir(mount.dir("agent:main:none")) == ["meta.json"]  # s6 has no file
        mount.meta("agent:main:none").write_bytes(
            json.dumps({"sessionId": "s9", "updatedAt": 6}).encode())
        assert sorted(os.listdir(mount.dir("agent:main:none"))) == ["meta.json",
                                                                    "transcript.jsonl"]
        assert transcript("agent:main:none").read_bytes() == b"nine\n"
    mount.assert_no_internal_errors()
    after = open_store(folder)
    assert after.get("agent:main:plain")["label"] == "edited"
    edited = ("agent:main:plain", "agent:main:none")
    assert after.get("agent:main:none")["sessionId"] == "s9"
    assert {key: after.read(key).data for key in FILE_ERA if key not in edited} == {
        key: data for key, data in store_before.items() if key not in edited}
    assert (folder / "s1.jsonl").read_bytes() == LINES and (base / "outside.jsonl").exists()


def test_a_view_without_transcripts_shows_none(tmp_path: Path) -> None:
    agent_dir = tmp_path / "agents" / "main"
    build(agent_dir)
    store = open_store(agent_dir)
    folder = "/" + keys.encode(MAIN)
    shown = SessionView(store)
    assert "transcript.jsonl" in [name for name, _ in shown.listdir(folder)]
    hidden = SessionView(store, transcripts=False)
    assert [name for name, _ in hidden.listdir(folder)] == [".", "..", "meta.json"]
    with pytest.raises(FileNotFoundError):
        hidden.getattr(folder + "/transcript.jsonl")
    store.close()


def test_reading_a_big_transcript_streams(base: Path) -> None:
    """About 40 MB of events: the daemon's RSS grows far less than the transcript."""
    agent_dir = base / "state" / "agents" / "main"
    build(agent_dir, entries={MAIN: ENTRIES[MAIN]}, transcripts={MAIN: TRANSCRIPTS[MAIN]})
    filler = json.dumps({"type": "message", "id": "f", "message": {
        "role": "toolResult", "content": [{"type": "text", "text": "0123456789abcdef" * 250}]}})
    with gateway(db_of(agent_dir)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        append_events(conn, ENTRIES[MAIN]["sessionId"], [filler] * 10_000)
        conn.execute("COMMIT")
    expected_size = len(jsonl(TRANSCRIPTS[MAIN])) + (len(filler) + 1) * 10_000
    with Mount(agent_dir, base / "mnt") as mount:
        assert mount.proc is not None
        path = mount.dir(MAIN) / "transcript.jsonl"
        idle = _rss(mount.proc.pid)
        peak, total = idle, 0
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                peak = max(peak, _rss(mount.proc.pid))
        assert total == expected_size == os.stat(path).st_size
        assert peak - idle < 30 << 20, (idle, peak)
    mount.assert_no_internal_errors()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_shutil_copy_of_a_session_folder(mnt: Mount, tmp_path: Path) -> None:
    target = tmp_path / "copy"
    shutil.copytree(mnt.dir(MAIN), target)
    assert (target / "transcript.jsonl").read_bytes() == jsonl(TRANSCRIPTS[MAIN])

"""A writer that appears after the SQLite store was opened: mounted while the Gateway is stopped,
then the Gateway starts, commits, stops and starts again. The mount daemon opens the store and
then forks; a connection carried into the child read without locks, so the writer's close
removed the ``-wal``/``-shm`` under it and the daemon kept serving older data (and then
"database disk image is malformed"). These tests use openclaw 2026.9.6's own store, start with
no ``-wal``/``-shm`` beside it (no Gateway has it open), and let a separate process write it in
WAL mode as the Gateway does (several commits, staying open, closing, coming back)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionfs import keys
from sessionfs.fs.mount import is_mounted
from sessionfs.statedir import find_agents
from sessionfs.store.sqlite import SqliteStore, is_sqlite_file
from tests.mountharness import ROOT, force_unmount, scratch_root, wait_for
from tests.openclaw_fixtures import extract_real_store

KEY = "agent:main:main"

#: The Gateway's stand-in: WAL mode, autocommit, one transaction per commit. It rewrites the
#: label of every session (entries of several sizes, so pages move between the WAL and the
#: database), reports each commit and, unless told to stay, closes, which checkpoints and
#: removes the -wal and -shm when no other connection holds the database.
WRITER = r"""
import sqlite3, sys
db, tag, commits, stay = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "stay"
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
for i in range(commits):
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE session_nodes SET entry_json = json_set(entry_json, '$.label', ?) "
                 "WHERE entry_valid != -1", (f"{tag}-{i}" + "x" * (i * 997 % 6000),))
    conn.execute("COMMIT")
print("committed", flush=True)
if stay:
    sys.stdin.readline()
conn.close()
"""


def sidecars(db: Path) -> set[str]:
    return {p.name for p in db.parent.iterdir() if p.name.startswith(db.name + "-")}


def write(db: Path, tag: str, commits: int = 40, *, stay: bool = False,
          user: list[str] | None = None) -> subprocess.Popen[str]:
    """Run the writer (as ``user``: a setpriv prefix); with ``stay`` it returns once committed
    and holds the database open until :func:`leave`."""
    proc = subprocess.Popen([*(user or []), sys.executable, "-c", WRITER, str(db), tag,
                             str(commits),
                             "stay" if stay else "close"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "committed\n"
    if not stay:
        assert proc.wait(timeout=60) == 0
    return proc


def leave(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def label(tag: str, commits: int = 40) -> str:
    i = commits - 1
    return f"{tag}-{i}" + "x" * (i * 997 % 6000)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """openclaw's own store, as left by a stopped Gateway with no -wal/-shm beside it."""
    root = extract_real_store("plain", tmp_path) / "plain"
    for stale in root.glob("agents/*/agent/openclaw-agent.sqlite-*"):
        stale.unlink()
    return root


def holds_a_lock(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds a POSIX lock on ``path`` (what a writer sees)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as locks:
        for line in locks:
            fields = [f for f in line.split() if f != "->"]
            if fields[4] == str(pid) and fields[5].rsplit(":", 1)[-1] == str(inode):
                return True
    return False


def test_a_forked_store_follows_a_writer_that_comes_and_goes(state: Path) -> None:
    """The library across ``fork`` (what the mount's daemon does): the child reads every
    commit, never an error, and holds its own lock, so the writer sees a reader."""
    db = state / "agents/main/agent/openclaw-agent.sqlite"
    assert sidecars(db) == set()
    store = SqliteStore(db)
    assert KEY in store.keys() and store.fingerprint() is not None  # connection and probe
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the daemon: answers each request with what it reads
        code = 1
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            with os.fdopen(to_child_r) as requests, os.fdopen(to_parent_w, "w") as answers:
                for _request in requests:
                    try:
                        answer = {"label": store.read(KEY).entry.get("label"),
                                  "labels": sorted({r.entry.get("label", "")[:12]
                                                    for r in store.records()}),
                                  "fingerprint": repr(store.fingerprint())}
                    except Exception as exc:  # reported to the test, which fails on it
                        answer = {"error": f"{type(exc).__name__}: {exc}"}
                    answers.write(json.dumps(answer) + "\n")
                    answers.flush()
            code = 0
        finally:
            os._exit(code)
    store.close()  # the CLI returns once the daemon is up: the parent holds nothing
    os.close(to_child_r)
    os.close(to_parent_w)
    requests = os.fdopen(to_child_w, "w")
    answers = os.fdopen(to_parent_r)

    def ask() -> dict[str, str]:
        requests.write("read\n")
        requests.flush()
        answer: dict[str, str] = json.loads(answers.readline())
        assert "error" not in answer, answer
        return answer

    try:
        fingerprints = {ask()["fingerprint"]}
        for round_ in range(6):
            tag = f"r{round_}"
            if round_ % 2:  # the Gateway stays up while read, then stops
                writer = write(db, tag, stay=True)
                got = ask()
                leave(writer)
            else:  # a commit and a stop before the read
                write(db, tag)
                got = ask()
            assert got["label"] == label(tag), (round_, got)
            assert got["labels"] == [label(tag)[:12]], (round_, got)
            assert got["fingerprint"] not in fingerprints  # data_version saw the commits
            fingerprints.add(got["fingerprint"])
            after = ask()  # after the writer left
            assert after["label"] == label(tag), (round_, after)
        assert holds_a_lock(pid, db), "the forked reader holds no lock: a writer cannot see it"
    finally:
        requests.close()
        answers.close()
        os.waitpid(pid, 0)


def test_looking_for_agents_keeps_the_readers_locks(state: Path) -> None:
    """What the state mount does whenever it looks for agents (read each database's header)
    left the process without its SQLite locks: closing any descriptor of a file drops all of
    them. The writer then removed -wal/-shm under the readers, which kept serving old data."""
    db = state / "agents/main/agent/openclaw-agent.sqlite"
    store = SqliteStore(db)
    try:
        assert KEY in store.keys() and store.fingerprint() is not None
        for round_ in range(6):
            assert find_agents(state)["main"].layout == "sqlite"
            assert is_sqlite_file(db)
            tag = f"r{round_}"
            writer = write(db, tag, stay=bool(round_ % 2))
            assert store.read(KEY).entry["label"] == label(tag), round_
            if round_ % 2:
                leave(writer)
            assert store.read(KEY).entry["label"] == label(tag), round_
            assert {r.entry.get("label") for r in store.records()} == {label(tag)}
        assert holds_a_lock(os.getpid(), db), "no lock left: a writer cannot see the reader"
    finally:
        store.close()


def test_a_fifo_is_no_sqlite_file_and_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "openclaw-agent.sqlite"
    os.mkfifo(fifo)
    answer: list[bool] = []
    thread = threading.Thread(target=lambda: answer.append(is_sqlite_file(fifo)), daemon=True)
    thread.start()
    thread.join(10)
    assert answer == [False]


@pytest.fixture
def scratch() -> Iterator[Path]:
    folder = scratch_root()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def sessionfs(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sessionfs", *argv], capture_output=True,
                          text=True, timeout=60, check=False, cwd=str(ROOT),
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.mark.parametrize("kind,owner", [("store", "root"), ("state", "root"),
                                        ("store", "65534"), ("state", "65534")])
def test_a_background_mount_follows_a_writer_that_comes_and_goes(scratch: Path, kind: str,
                                                                  owner: str) -> None:
    """``sessionfs mount`` as users run it (the daemon forks after opening the store): the
    kernel shows every commit within --timeout, through the store mount's meta.json and the
    state mount's sessions.json, and no read fails, while the writer comes, commits, stays,
    closes (removing -wal/-shm when it can) and comes back. With the store owned by an
    ordinary user who runs the writer (root mounts it, as for --allow-other), the -wal/-shm
    the mount's reader created belong to that user, so the Gateway can still open them."""
    root = extract_real_store("plain", scratch / "real") / "plain"
    for stale in root.glob("agents/*/agent/openclaw-agent.sqlite-*"):
        stale.unlink()
    db = root / "agents/main/agent/openclaw-agent.sqlite"
    mountpoint = scratch / "mnt"
    mountpoint.mkdir()
    as_owner = NOBODY if owner == "65534" else []
    if as_owner:
        subprocess.run(["chown", "-R", "65534:65534", str(scratch / "real")], check=True)
        scratch.chmod(0o711)  # the owner walks down to the store (scratch_root makes it 0700)
    if kind == "store":
        source, shown = root / "agents/main", mountpoint / keys.encode(KEY) / "meta.json"
    else:
        source, shown = root, mountpoint / "agents/main/sessions/sessions.json"

    def seen() -> object:
        data = json.loads(shown.read_bytes())  # an error here fails the test
        return (data if kind == "store" else data[KEY]).get("label")

    result = sessionfs("mount", str(source), str(mountpoint), "--timeout", "0.2")
    try:
        assert result.returncode == 0, result.stderr
        assert is_mounted(mountpoint)
        assert seen() == "Main"  # as openclaw left it
        for round_ in range(6):
            tag = f"r{round_}"
            writer = write(db, tag, stay=bool(round_ % 2), user=as_owner)
            assert wait_for(lambda tag=tag: seen() == label(tag), 10), (round_, seen())
            if round_ % 2:
                leave(writer)
            assert seen() == label(tag)
            for sidecar in sidecars(db):
                assert (db.parent / sidecar).stat().st_uid == int(owner == "65534") * 65534
        result = sessionfs("umount", str(mountpoint))
        assert result.returncode == 0, result.stderr
    finally:
        force_unmount(mountpoint)

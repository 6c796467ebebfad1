"""The state mount, through the kernel: how its files are served (issue 14, points 7, 8, 9, 13).

* ``sessions.json`` never shows a mix of two versions, with any number of overlapping readers
  while the store changes (point 7);
* ``tail -f`` of ``agents/<id>/sessions/<sessionId>.jsonl`` follows appends in both eras
  (point 8);
* chmod, chown and utimens behave as in the store mount, so ``touch``, ``cp -a``, ``tar -x``,
  ``install`` and an ``rsync -a`` restore into ``sessions.d`` work (point 9);
* ``tar -c`` of the whole mount exits 0: nothing's attributes move while its content holds
  (point 13).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.demo import generate_entries
from sessionfs.demo_sqlite import append_events, sqlite_entry, write_sqlite_store
from sessionfs.migrate import migrate
from sessionfs.projection import transcript_name
from sessionfs.store import open_store
from tests.mountutil import Mount, force_unmount, scratch_root, wait_for
from tests.sqlite_util import gateway
from tests.test_state_mount import _content, _write_file_era

AGENTS = {"leg": 11, "dir": 13, "sql": 17}
TIMEOUT = 0.3


def run(command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd)


@pytest.fixture
def base() -> Iterator[Path]:
    folder = scratch_root()
    yield folder
    force_unmount(folder / "mnt")
    shutil.rmtree(folder, ignore_errors=True)


def make_state(base: Path, agents: dict[str, int] | None = None, *, count: int = 12
               ) -> tuple[Path, dict[str, dict[str, dict[str, Any]]]]:
    """A state dir with one agent per generation; returns it and each agent's entries."""
    state_dir, mp = base / "state", base / "mnt"
    made: dict[str, dict[str, dict[str, Any]]] = {}
    for agent_id, seed in (agents or AGENTS).items():
        entries, transcripts = _content(seed)
        if count != 12:
            entries = generate_entries(count, seed=seed)
            transcripts = {key: transcripts[next(iter(transcripts))] for key in entries}
        folder = state_dir / "agents" / agent_id / "sessions"
        if agent_id.startswith("sql"):
            write_sqlite_store(state_dir / "agents" / agent_id,
                               {key: sqlite_entry(entry) for key, entry in entries.items()},
                               transcripts=transcripts)
            folder.mkdir(parents=True)
        else:
            _write_file_era(folder, entries, transcripts, f"{mp}/agents/{agent_id}/sessions")
            if agent_id.startswith("dir"):
                migrate(folder)
        made[agent_id] = entries
    return state_dir, made


def _difference(seen: bytes, expected: bytes) -> str:
    at = next((n for n, (a, b) in enumerate(zip(seen, expected, strict=False)) if a != b),
              min(len(seen), len(expected)))
    return (f"{len(seen)} bytes seen, {len(expected)} expected, first difference at {at}: "
            f"{seen[at - 40:at + 80]!r} vs {expected[at - 40:at + 80]!r}")


def sessions_dir(mount: Mount, agent: str) -> Path:
    return mount.mp / "agents" / agent / "sessions"


# ------------------------------------------------------------------------------------------------
# 13: tar -c of the whole mount
# ------------------------------------------------------------------------------------------------
def test_tar_of_the_whole_state_mount_exits_0(base: Path) -> None:
    state_dir, _entries = make_state(base)
    with Mount(state_dir, base / "mnt", "--timeout", str(TIMEOUT)) as mount:
        control = mount.mp / ".sessionfs"
        first = {name: os.stat(control / name) for name in ("status", "errors")}
        time.sleep(TIMEOUT + 0.1)  # past the attribute timeout: the kernel asks again
        for name, was in first.items():
            now = os.stat(control / name)
            assert (now.st_mtime_ns, now.st_size) == (was.st_mtime_ns, was.st_size), name
        for _ in range(2):
            result = run(f"tar -cf {base}/backup.tar -C {mount.mp} .")
            assert result.returncode == 0, result.stderr
            assert result.stderr == ""
        listed = run(f"tar -tf {base}/backup.tar").stdout.split()
        assert "./.sessionfs/status" in listed
        assert "./agents/sql/sessions/sessions.json" in listed
        # a change of what status shows moves its mtime (and only then)
        status = (control / "status").read_bytes()
        (state_dir / "agents" / "later" / "sessions").mkdir(parents=True)
        (state_dir / "agents" / "later" / "sessions" / "sessions.json").write_text("{}")
        assert wait_for(lambda: (control / "status").read_bytes() != status, 5)
        assert os.stat(control / "status").st_mtime_ns > first["status"].st_mtime_ns
        mount.assert_no_internal_errors()


# ------------------------------------------------------------------------------------------------
# 9: chmod, chown, utimens in sessions.d (touch, cp -a, tar -x, install, rsync -a)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", ["leg", "dir"])
def test_tools_that_set_attributes_work_in_sessions_d(base: Path, agent: str) -> None:
    state_dir, made = make_state(base, {agent: AGENTS[agent]})
    entries = made[agent]
    key, other = sorted(entries)[:2]
    name, other_name = keys.encode(key), keys.encode(other)
    store_folder = state_dir / "agents" / agent / "sessions"
    changed = dict(entries[key], label="restored by a tool")
    (base / "new.json").write_bytes(jsonfmt.dumps(changed))
    with Mount(state_dir, base / "mnt", "--timeout", str(TIMEOUT)) as mount:
        inner = sessions_dir(mount, agent) / "sessions.d"
        meta = inner / name / "meta.json"
        for command in (f"touch {meta}", f"touch -d @1700000000 {meta}", f"chmod 600 {meta}",
                        f"chown {os.getuid()}:{os.getgid()} {meta}", f"touch {inner / name}"):
            result = run(command)
            assert result.returncode == 0, (command, result.stderr)
        # install replaces meta.json (unlink + create + chmod/chown)
        result = run(f"install -m 600 {base}/new.json {meta}")
        assert result.returncode == 0, result.stderr
        assert open_store(store_folder).read(key).entry == changed
        # cp -a of a session folder out, changed, and back over it
        result = run(f"cp -a {inner / other_name} {base}/copy")
        assert result.returncode == 0, result.stderr
        copied = json.loads((base / "copy" / "meta.json").read_bytes())
        copied["label"] = "via cp -a"
        (base / "copy" / "meta.json").write_bytes(jsonfmt.dumps(copied))
        result = run(f"cp -a {base}/copy/meta.json {inner / other_name}/meta.json")
        assert result.returncode == 0, result.stderr
        assert open_store(store_folder).read(other).entry == copied
        # tar -x of a session folder back over itself
        result = run(f"tar -cf {base}/one.tar -C {inner} {name}")
        assert result.returncode == 0, result.stderr
        (inner / name / "meta.json").write_bytes(jsonfmt.dumps(entries[key]))
        assert open_store(store_folder).read(key).entry == entries[key]
        result = run(f"tar -xf {base}/one.tar -C {inner}")
        assert result.returncode == 0, result.stderr
        assert open_store(store_folder).read(key).entry == changed
        # rsync -a restores a deleted session
        result = run(f"rsync -a {inner / name} {base}/saved/")
        assert result.returncode == 0, result.stderr
        result = run(f"rm -r {inner / name}")
        assert result.returncode == 0, result.stderr
        assert wait_for(lambda: key not in open_store(store_folder).keys(), 5)
        result = run(f"rsync -a {base}/saved/{name} {inner}/")
        assert result.returncode == 0, result.stderr
        assert open_store(store_folder).read(key).entry == changed
        assert (inner / name / "meta.json").read_bytes() == jsonfmt.dumps(changed)
        mount.assert_no_internal_errors()


def test_read_only_files_refuse_attribute_changes_and_folders_accept_them(base: Path) -> None:
    """sessions.json and the transcripts refuse chmod/touch with EROFS (as transcript.jsonl
    does in the store mount); folders accept them without effect."""
    state_dir, made = make_state(base, {"leg": 11, "sql": 17})
    with Mount(state_dir, base / "mnt", "--timeout", str(TIMEOUT)) as mount:
        for agent in ("leg", "sql"):
            folder = sessions_dir(mount, agent)
            key = sorted(made[agent])[0]
            transcript = folder / str(transcript_name(key, made[agent][key]))
            for path in (folder / "sessions.json", transcript):
                before = path.read_bytes()
                for command in (f"touch {path}", f"chmod 644 {path}"):
                    result = run(command)
                    assert result.returncode != 0, command
                    assert "Read-only file system" in result.stderr, result.stderr
                assert path.read_bytes() == before
            if agent == "sql":  # a read-only store refuses them, as its store mount (ro) does
                meta = folder / "sessions.d" / keys.encode(key) / "meta.json"
                result = run(f"touch {meta}")
                assert "Read-only file system" in result.stderr, result.stderr
            for path in (mount.mp, mount.mp / "agents", folder.parent, folder):
                result = run(f"touch {path}")
                assert result.returncode == 0, (path, result.stderr)
        mount.assert_no_internal_errors()


# ------------------------------------------------------------------------------------------------
# 8: tail -f of <sessionId>.jsonl
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", ["leg", "dir", "sql"])
@pytest.mark.parametrize("follow", ["-f", "-F"])
def test_tail_follows_appends_to_a_transcript(base: Path, agent: str, follow: str) -> None:
    state_dir, made = make_state(base, {agent: AGENTS[agent]})
    key = sorted(made[agent])[0]
    entry = made[agent][key]
    name = str(transcript_name(key, entry))
    db = state_dir / "agents" / agent / "agent" / "openclaw-agent.sqlite"
    with contextlib.ExitStack() as stack:
        # SQLite: a live gateway, which keeps its database open (and its -wal/-shm with it)
        conn = stack.enter_context(gateway(db)) if agent == "sql" else None
        mount = stack.enter_context(Mount(state_dir, base / "mnt", "--timeout", str(TIMEOUT)))
        path = sessions_dir(mount, agent) / name
        before = path.read_bytes()
        out = base / "tail.out"
        with out.open("wb") as sink:
            tail = subprocess.Popen(["tail", "-c", "+1", follow, "-s", "0.1", str(path)],
                                    stdout=sink, stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda: out.read_bytes() == before, 5), out.read_bytes()[-200:]
            added = [json.dumps({"type": "message", "id": f"t{n}", "text": "x" * (n * 900)},
                                separators=(",", ":"))
                     for n in range(4)]
            for done, line in enumerate(added, 1):
                if conn is not None:
                    conn.execute("BEGIN IMMEDIATE")
                    append_events(conn, entry["sessionId"], [line])
                    conn.execute("COMMIT")
                else:
                    disk = state_dir / "agents" / agent / "sessions" / name
                    with disk.open("ab") as stream:
                        stream.write(line.encode() + b"\n")
                expected = before + "".join(f"{shown}\n" for shown in added[:done]).encode()
                assert wait_for(lambda want=expected: out.read_bytes() == want,
                                TIMEOUT + 5), _difference(out.read_bytes(), expected)
        finally:
            tail.terminate()
            tail.wait(timeout=10)
        assert path.read_bytes() == expected
        mount.assert_no_internal_errors()


# ------------------------------------------------------------------------------------------------
# 7: overlapping readers of sessions.json while the store changes
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", ["leg", "dir"])
def test_overlapping_readers_never_see_two_versions_of_sessions_json(base: Path,
                                                                      agent: str) -> None:
    state_dir, made = make_state(base, {agent: AGENTS[agent]}, count=300)
    store_folder = state_dir / "agents" / agent / "sessions"
    keys_now = sorted(made[agent])
    with Mount(state_dir, base / "mnt", "--timeout", "0.05") as mount:
        path = sessions_dir(mount, agent) / "sessions.json"
        stop = threading.Event()
        reads: list[int] = []
        torn: list[str] = []

        def reader() -> None:
            while not stop.is_set():
                with open(path, "rb", buffering=0) as stream:
                    parts = []
                    while True:
                        chunk = stream.read(32 << 10)
                        if not chunk:
                            break
                        parts.append(chunk)
                data = b"".join(parts)
                try:
                    json.loads(data)
                except ValueError as exc:
                    torn.append(f"{len(data)} bytes: {exc}")
                reads.append(len(data))

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for thread in threads:
            thread.start()
        store = open_store(store_folder)
        try:
            deadline = time.monotonic() + 8
            n = 0
            while time.monotonic() < deadline and not torn:
                key = keys_now[n % len(keys_now)]
                store.put(key, dict(made[agent][key], label="v" * (n % 97), n=n))
                n += 1
                time.sleep(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert reads and n > 20
        assert torn == [], f"{len(torn)} of {len(reads)} reads torn: {torn[:3]}"
        mount.assert_no_internal_errors()

"""``--allow-other`` shows others what they could read on disk, path included (issue 14, 4 and 6).

As an ordinary user (uid 65534 through ``setpriv``), through the kernel:

* a store whose own modes share it (0644 ``sessions.json``, 0755 ``sessions.d``, 0644
  database) under a 0700 folder (what ``cp -r`` under umask 022 leaves) is unreadable on disk
  and stays unreadable through the store mount; with the folder opened, both read it;
* a state mount with ``--allow-other`` gives every agent the store mount's meaning: an agent
  others may read on disk is readable (sessions.json, transcripts, sessions.d), one in a
  0700 folder is not, and nothing is writable that the disk does not let them write.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.demo import write_legacy_store
from sessionfs.fs.access import disk_mask, reach_mask, shared_access
from sessionfs.store import open_store
from tests import sqlite_util
from tests.mountutil import CRON, ENTRIES, JAMES, MAIN, Mount, force_unmount, scratch_root, wait_for
from tests.test_users import NOBODY, as_nobody

DENIED = "Permission denied"


@pytest.fixture
def base() -> Iterator[Path]:
    folder = scratch_root()
    os.chmod(folder, 0o711)  # uid 65534 walks down to the mountpoints: EACCES comes from them
    yield folder
    force_unmount(folder / "mnt")
    shutil.rmtree(folder, ignore_errors=True)


def _store_under(private: Path, layout: str) -> tuple[Path, Path, str]:
    """A store under ``private`` whose own modes let everyone read it; returns (STORE to mount,
    a file of it on disk, a key it holds)."""
    if layout == "sqlite":
        agent = private / "agents" / "main"
        db = sqlite_util.build(agent)
        for folder in (private / "agents", agent, db.parent):
            os.chmod(folder, 0o755)
        os.chmod(db, 0o644)
        return agent, db, sqlite_util.MAIN
    folder = private / "sessions"
    write_legacy_store(folder, ENTRIES)
    os.chmod(folder, 0o755)
    os.chmod(folder / "sessions.json", 0o644)
    if layout == "directory":
        from sessionfs.migrate import migrate

        migrate(folder)
        os.chmod(folder / "sessions.d", 0o755)
        for meta in (folder / "sessions.d").glob("*/meta.json"):  # sessionfs made 0700/0600
            os.chmod(meta.parent, 0o755)
            os.chmod(meta, 0o644)
        return folder, folder / "sessions.d" / keys.encode(MAIN) / "meta.json", MAIN
    return folder, folder / "sessions.json", MAIN


@pytest.mark.parametrize("layout", ["legacy", "directory", "sqlite"])
def test_a_store_under_a_private_folder_stays_private(base: Path, layout: str) -> None:
    private = base / "private"
    private.mkdir(mode=0o700)
    store, on_disk, key = _store_under(private, layout)
    meta_name = keys.encode(key)
    assert DENIED in as_nobody("head", "-c0", str(on_disk)).stderr  # on disk: the folder
    with Mount(store, base / "mnt", "--allow-other") as mount:
        meta = mount.mp / meta_name / "meta.json"
        assert meta.read_bytes()  # the mounting user reads it
        for argv in (["ls", str(mount.mp)], ["cat", str(meta)], ["stat", str(meta)],
                     ["cat", str(mount.mp / ".sessionfs" / "status")]):
            result = as_nobody(*argv)
            assert result.returncode != 0, argv
            assert DENIED in result.stderr, (argv, result.stderr)
        # the modes shown say so: no bits for the group or others (root's group cannot pass)
        assert os.stat(mount.mp).st_mode & 0o077 == 0
        assert os.stat(meta).st_mode & 0o077 == 0
        mount.assert_no_internal_errors()
    # the same store with its folder opened: readable on disk, and through the mount
    os.chmod(private, 0o755)
    assert as_nobody("head", "-c0", str(on_disk)).returncode == 0
    with Mount(store, base / "mnt", "--allow-other") as mount:
        meta = mount.mp / meta_name / "meta.json"
        result = as_nobody("cat", str(meta))
        assert result.returncode == 0, result.stderr
        assert result.stdout.encode() == meta.read_bytes()
        mount.assert_no_internal_errors()


def test_reach_mask_follows_each_class_through_every_folder(base: Path) -> None:
    """The classes cut off by a folder on the way: owner, group (its group bits when the
    folder is the store's group's, else its other bits) and others."""
    outer = base / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    target = inner / "sessions.json"
    target.write_text("{}")
    uid, gid = 4242, 4343  # no such user: only its own group
    os.chown(target, uid, gid)
    for outer_mode, inner_mode, owner, expected in (
            (0o755, 0o755, (0, 0), 0o777),
            (0o755, 0o700, (0, 0), 0o000),        # root's 0700 folder: not even the store's owner
            (0o755, 0o700, (uid, 0), 0o700),      # the owner's 0700 folder: only the owner
            (0o755, 0o750, (uid, gid), 0o770),    # group-searchable, the store's group
            (0o755, 0o750, (uid, 0), 0o700),      # group-searchable, another group
            (0o755, 0o705, (uid, 0), 0o700),      # others may, root's group not: its members
            (0o755, 0o751, (uid, 0), 0o777),      # all may search
            (0o711, 0o755, (0, 0), 0o777),
            (0o700, 0o755, (0, 0), 0o000)):
        os.chmod(outer, outer_mode)
        os.chmod(inner, inner_mode)
        os.chown(inner, *owner)
        assert reach_mask(target, uid, gid) == expected, (oct(outer_mode), oct(inner_mode), owner)
    os.chmod(outer, 0o755)
    os.chown(inner, uid, gid)
    os.chmod(inner, 0o750)
    os.chmod(target, 0o644)
    found = shared_access(target)
    assert found is not None
    assert (found.uid, found.gid, oct(found.dir_bits), oct(found.file_bits)) == (
        uid, gid, "0o750", "0o640")


def test_disk_mask_is_conservative_for_a_file_of_another_owner(base: Path) -> None:
    """A session file owned as the store is judged class by class; one of another owner or
    group gives each class only the bits of every class its users may fall in on disk."""
    path = base / "meta.json"
    path.write_text("{}")
    uid, gid = 4242, 4343
    for file_owner, mode, expected in (
            ((uid, gid), 0o640, 0o640),
            ((uid, gid), 0o604, 0o604),
            ((uid, 0), 0o644, 0o644),     # another group: the store's group may be in it or not
            ((uid, 0), 0o604, 0o600),     # ... so its members get group & others
            ((0, gid), 0o644, 0o444),     # another owner: it may be anyone (owner's bits too)
            ((0, gid), 0o604, 0o004),     # the store's owner: group & others; others: theirs
            ((0, 0), 0o666, 0o666),
            ((0, 0), 0o660, 0o000)):
        os.chown(path, *file_owner)
        os.chmod(path, mode)
        assert disk_mask(os.lstat(path), uid, gid) == expected, (file_owner, oct(mode))


# ------------------------------------------------------------------------------------------------
# 6: the state mount
# ------------------------------------------------------------------------------------------------
def _state(base: Path) -> tuple[Path, dict[str, Path]]:
    """agents ``open`` (legacy, readable by all), ``closed`` (the same in a 0700 agent folder)
    and ``sql`` (a SQLite database readable by all)."""
    state = base / "state"
    folders: dict[str, Path] = {}
    for agent in ("open", "closed"):
        folder = state / "agents" / agent / "sessions"
        write_legacy_store(folder, ENTRIES)
        session_id = ENTRIES[MAIN]["sessionId"]
        (folder / f"{session_id}.jsonl").write_text('{"type":"session"}\n')
        for path in (state, state / "agents", state / "agents" / agent, folder):
            os.chmod(path, 0o755)
        for path in folder.iterdir():
            os.chmod(path, 0o644)
        folders[agent] = folder
    os.chmod(state / "agents" / "closed", 0o700)
    db = sqlite_util.build(state / "agents" / "sql")
    (state / "agents" / "sql" / "sessions").mkdir()
    for path in (state / "agents" / "sql", db.parent, state / "agents" / "sql" / "sessions"):
        os.chmod(path, 0o755)
    os.chmod(db, 0o644)
    folders["sql"] = db.parent
    return state, folders


def test_allow_other_on_a_state_mount_shares_what_the_disk_shares(base: Path) -> None:
    state, folders = _state(base)
    assert as_nobody("cat", str(folders["open"] / "sessions.json")).returncode == 0
    assert DENIED in as_nobody("cat", str(folders["closed"] / "sessions.json")).stderr
    session_id = ENTRIES[MAIN]["sessionId"]
    with Mount(state, base / "mnt", "--allow-other") as mount:
        agents = mount.mp / "agents"
        result = as_nobody("ls", str(agents))
        assert result.returncode == 0, result.stderr
        assert sorted(result.stdout.split()) == ["closed", "open", "sql"]
        for agent in ("open", "sql"):
            sessions = agents / agent / "sessions"
            meta = sessions / "sessions.d" / keys.encode(MAIN) / "meta.json"
            for path in (sessions / "sessions.json", meta):
                result = as_nobody("cat", str(path))
                assert result.returncode == 0, (path, result.stderr)
                assert result.stdout.encode() == path.read_bytes()
            transcript = next(sessions.glob("*.jsonl"))
            result = as_nobody("cat", str(transcript))
            assert result.returncode == 0, (transcript, result.stderr)
            assert result.stdout.encode() == transcript.read_bytes()
            # readable, not writable: the disk lets others read only
            result = as_nobody("sh", "-c", f"echo '{{}}' > {meta}")
            assert DENIED in result.stderr, result.stderr
            result = as_nobody("mkdir", str(sessions / "sessions.d" / "agent--main--x"))
            assert DENIED in result.stderr, result.stderr
        open_sessions = agents / "open" / "sessions"
        result = as_nobody("stat", "-c", "%a %u", str(open_sessions / "sessions.json"),
                           str(open_sessions / f"{session_id}.jsonl"), str(open_sessions))
        assert result.stdout.split() == ["444", "0", "444", "0", "755", "0"], result.stderr
        assert (open_sessions / "sessions.d" / keys.encode(MAIN) / "meta.json").read_bytes() \
            == jsonfmt.dumps(ENTRIES[MAIN])
        # the agent in a 0700 folder: nothing of it, as on disk
        closed = agents / "closed" / "sessions"
        for argv in (["ls", str(closed)], ["cat", str(closed / "sessions.json")],
                     ["cat", str(closed / f"{session_id}.jsonl")],
                     ["cat", str(closed / "sessions.d" / keys.encode(MAIN) / "meta.json")]):
            result = as_nobody(*argv)
            assert result.returncode != 0, argv
            assert DENIED in result.stderr, (argv, result.stderr)
        # the control files name every agent's sessions: as private as the most private one
        assert DENIED in as_nobody("cat", str(mount.mp / ".sessionfs" / "status")).stderr
        mount.assert_no_internal_errors()
    with Mount(state, base / "mnt") as mount:  # without --allow-other: nothing
        result = as_nobody("cat", str(mount.mp / "agents/open/sessions/sessions.json"))
        assert DENIED in result.stderr, result.stderr


def test_a_root_state_mount_lets_an_agents_owner_in(base: Path) -> None:
    """Root mounts a state where one agent belongs to uid 65534 (0700 folders): its owner reads
    and writes its sessions through the mount (the change reaches its store), others' agents
    stay closed to it."""
    state, _folders = _state(base)
    mine = state / "agents" / "mine"
    write_legacy_store(mine / "sessions", ENTRIES)
    for path in (mine, mine / "sessions"):
        os.chmod(path, 0o700)
    subprocess.run(["chown", "-R", "65534:65534", str(mine)], check=True)
    changed = dict(ENTRIES[MAIN], label="by the owner")
    with Mount(state, base / "mnt", "--allow-other") as mount:
        sessions = mount.mp / "agents" / "mine" / "sessions"
        meta = sessions / "sessions.d" / keys.encode(MAIN) / "meta.json"
        result = as_nobody("stat", "-c", "%a %u %g", str(sessions), str(meta))
        assert result.stdout.split() == ["700", "65534", "65534", "600", "65534", "65534"], \
            result.stderr
        result = subprocess.run([*NOBODY, "sh", "-c", f"cat > {meta}"],
                                input=jsonfmt.dumps(changed), capture_output=True, timeout=30,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert open_store(mine / "sessions").read(MAIN).entry == changed
        assert (mine / "sessions" / "sessions.json").stat().st_uid == 65534
        closed = mount.mp / "agents" / "closed" / "sessions" / "sessions.json"
        assert DENIED in as_nobody("cat", str(closed)).stderr
        mount.assert_no_internal_errors()


# ------------------------------------------------------------------------------------------------
# each object capped by its own files; a chmod while mounted followed within --timeout
# ------------------------------------------------------------------------------------------------
def _shared_directory_store(base: Path) -> Path:
    """A directory store shared on disk down to ``sessions.d`` (0755), whose sessions keep
    what sessionfs made them (0700 folders, 0600 meta.json) unless a test opens them; each
    session has a file-era transcript, 0600 as openclaw writes them."""
    folder = base / "sessions"
    write_legacy_store(folder, ENTRIES)
    from sessionfs.migrate import migrate

    migrate(folder)
    for key, entry in ENTRIES.items():
        transcript = folder / f"{entry['sessionId']}.jsonl"
        transcript.write_text(f'{{"type":"session","key":"{key}"}}\n')
        os.chmod(transcript, 0o600)
    for path in (folder, folder / "sessions.d"):
        os.chmod(path, 0o755)
    return folder


def test_each_session_shows_no_more_than_its_own_files_grant(base: Path) -> None:
    """Under a 0755 sessions.d: a 0700 session folder, a 0600 meta.json in a 0755 folder and a
    0600 transcript stay closed to others through the mount as on disk; a 0755/0644 session
    and a 0644 transcript are readable, as on disk."""
    folder = _shared_directory_store(base)
    sessions_d = folder / "sessions.d"
    for key in (MAIN, CRON):
        os.chmod(sessions_d / keys.encode(key), 0o755)
    os.chmod(sessions_d / keys.encode(MAIN) / "meta.json", 0o644)  # CRON's stays 0600
    os.chmod(folder / f"{ENTRIES[MAIN]['sessionId']}.jsonl", 0o644)  # the others' stay 0600
    # on disk, as the mount must show it
    assert as_nobody("cat", str(sessions_d / keys.encode(MAIN) / "meta.json")).returncode == 0
    for path in (sessions_d / keys.encode(JAMES) / "meta.json",
                 sessions_d / keys.encode(CRON) / "meta.json",
                 folder / f"{ENTRIES[CRON]['sessionId']}.jsonl"):
        assert DENIED in as_nobody("cat", str(path)).stderr, path
    with Mount(folder, base / "mnt", "--allow-other") as mount:
        main, james, cron = (mount.mp / keys.encode(key) for key in (MAIN, JAMES, CRON))
        for path in (main / "meta.json", main / "transcript.jsonl"):
            result = as_nobody("cat", str(path))
            assert result.returncode == 0, (path, result.stderr)
            assert result.stdout.encode() == path.read_bytes()
        result = as_nobody("ls", str(mount.mp))
        assert sorted(result.stdout.split()) == sorted(keys.encode(k) for k in ENTRIES)
        for argv in (["ls", str(james)], ["cat", str(james / "meta.json")],
                     ["cat", str(james / "transcript.jsonl")],
                     ["cat", str(cron / "meta.json")], ["cat", str(cron / "transcript.jsonl")]):
            result = as_nobody(*argv)
            assert result.returncode != 0, argv
            assert DENIED in result.stderr, (argv, result.stderr)
        # what ls -l shows says so (the owner still reads everything)
        result = as_nobody("stat", "-c", "%a", str(main), str(main / "meta.json"),
                           str(main / "transcript.jsonl"), str(cron), str(cron / "meta.json"),
                           str(cron / "transcript.jsonl"))
        assert result.stdout.split() == ["755", "644", "444", "755", "600", "400"], result
        assert (james / "meta.json").read_bytes() == jsonfmt.dumps(ENTRIES[JAMES])
        assert (cron / "transcript.jsonl").read_bytes()
        mount.assert_no_internal_errors()


def test_a_state_mount_caps_each_transcript_by_its_file(base: Path) -> None:
    """The state mount's ``<sessionId>.jsonl``: a 0600 transcript stays closed to others
    (0644 ones are read in test_allow_other_on_a_state_mount_shares_what_the_disk_shares)."""
    state, folders = _state(base)
    folder = folders["open"]
    closed_transcript = folder / f"{ENTRIES[MAIN]['sessionId']}.jsonl"
    os.chmod(closed_transcript, 0o600)
    assert DENIED in as_nobody("cat", str(closed_transcript)).stderr
    with Mount(state, base / "mnt", "--allow-other") as mount:
        sessions = mount.mp / "agents" / "open" / "sessions"
        shown = sessions / closed_transcript.name
        result = as_nobody("cat", str(shown))
        assert result.returncode != 0 and DENIED in result.stderr, result.stderr
        assert as_nobody("stat", "-c", "%a", str(shown)).stdout.split() == ["400"]
        assert shown.read_bytes() == closed_transcript.read_bytes()  # the owner reads it
        assert as_nobody("cat", str(sessions / "sessions.json")).returncode == 0
        mount.assert_no_internal_errors()


def _readable(path: Path) -> bool:
    return as_nobody("head", "-c1", str(path)).returncode == 0


@pytest.mark.parametrize("what", ["store", "state"])
def test_a_chmod_while_mounted_is_followed_within_timeout(base: Path, what: str) -> None:
    """``chmod 700`` of the store's folder while mounted closes the mount to others within
    --timeout (the daemon looks again, the kernel's cached attributes expire); chmod back
    opens it again."""
    timeout = 0.5
    if what == "store":
        folder = base / "sessions"
        write_legacy_store(folder, ENTRIES)
        os.chmod(folder, 0o755)
        os.chmod(folder / "sessions.json", 0o644)
        target, closing = folder, folder
    else:
        state, folders = _state(base)
        target, closing = state, folders["open"].parent
    with Mount(target, base / "mnt", "--allow-other", "--timeout", str(timeout)) as mount:
        meta = mount.mp / keys.encode(MAIN) / "meta.json"
        if what == "state":
            meta = mount.mp / "agents" / "open" / "sessions" / "sessions.json"
        assert _readable(meta)
        os.chmod(closing, 0o700)
        started = time.monotonic()
        assert wait_for(lambda: not _readable(meta), timeout=10)
        closed_after = time.monotonic() - started
        assert DENIED in as_nobody("cat", str(meta)).stderr
        os.chmod(closing, 0o755)
        started = time.monotonic()
        assert wait_for(lambda: _readable(meta), timeout=10)
        opened_after = time.monotonic() - started
        # the daemon looks again after `timeout`, the kernel asks again after `timeout`
        assert closed_after < 2 * timeout + 1.0, closed_after
        assert opened_after < 2 * timeout + 1.0, opened_after
        print(f"closed after {closed_after:.2f} s, opened after {opened_after:.2f} s")
        mount.assert_no_internal_errors()

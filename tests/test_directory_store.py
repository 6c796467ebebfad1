"""The sessions.d store: per-session files, O(1) operations, nothing outside the store touched."""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.demo import write_legacy_store
from sessionfs.errors import SessionExists, SessionNotFound, StoreCorrupt
from sessionfs.maintenance import check
from sessionfs.migrate import migrate
from sessionfs.store import DirectoryStore, locate_store, open_store
from tests.mountutil import ROOT

from .conftest import MakeStore


def tree_state(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """(inode, mtime, bytes) of every file below root: what a write may and may not touch."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(make_store: MakeStore) -> DirectoryStore:
    opened = make_store("directory")
    assert isinstance(opened, DirectoryStore)
    return opened


def test_layout_on_disk(store: DirectoryStore) -> None:
    key = "agent:main:telegram:direct:james"
    store.put(key, {"sessionId": "s1", "updatedAt": 5, "nested": {"a": [1, 2.5]}})
    meta = store.path / "agent--main--telegram--direct--james" / "meta.json"
    assert meta.read_bytes() == jsonfmt.dumps(
        {"sessionId": "s1", "updatedAt": 5, "nested": {"a": [1, 2.5]}})
    assert meta.read_bytes().startswith(b'{\n  "sessionId": "s1",')
    assert meta.stat().st_mode & 0o777 == 0o600
    assert meta.parent.stat().st_mode & 0o777 == 0o700
    assert store.get(key)["nested"] == {"a": [1, 2.5]}


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o277])
def test_modes_whatever_the_umask(store: DirectoryStore, umask: int) -> None:
    old = os.umask(umask)
    try:
        store.put("agent:main:umask", {"sessionId": "s1", "updatedAt": 5})
    finally:
        os.umask(old)
    directory = store.path / "agent--main--umask"
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / "meta.json").stat().st_mode & 0o777 == 0o600


def test_single_entry_operations_touch_only_that_session(store: DirectoryStore) -> None:
    key_a, key_b = store.keys()[:2]
    before = tree_state(store.path)
    store.put(key_a, dict(store.get(key_a), label="changed"))
    after = tree_state(store.path)
    changed = {path for path in set(before) | set(after) if before.get(path) != after.get(path)}
    assert changed == {f"{keys.encode(key_a)}/meta.json"}
    store.rename(key_b, "agent:main:moved")
    store.delete(key_a)
    final = tree_state(store.path)
    untouched = {p: v for p, v in before.items()
                 if not p.startswith((keys.encode(key_a) + "/", keys.encode(key_b) + "/"))}
    assert {p: final[p] for p in untouched} == untouched
    assert key_a not in store.keys() and key_b not in store.keys()
    assert store.get("agent:main:moved") == {**jsonfmt.loads(before[
        f"{keys.encode(key_b)}/meta.json"][2])}


def test_unchanged_put_writes_nothing(store: DirectoryStore) -> None:
    key = store.keys()[0]
    before = tree_state(store.path)
    assert store.put(key, store.get(key)) is False
    assert tree_state(store.path) == before


def test_rename_and_delete_errors(store: DirectoryStore) -> None:
    first, second = store.keys()[:2]
    with pytest.raises(SessionExists) as caught:
        store.rename(first, second)
    assert caught.value.errno == 17
    with pytest.raises(SessionNotFound):
        store.rename("agent:main:nope", "agent:main:x")
    with pytest.raises(SessionNotFound):
        store.delete("agent:main:nope")
    with pytest.raises(SessionNotFound):
        store.get("agent:main:nope")


def test_long_keys_use_a_hashed_name_and_keep_the_exact_key(store: DirectoryStore) -> None:
    long_key = "agent:main:matrix:channel:" + "!R" * 150
    store.put(long_key, {"sessionId": "long", "updatedAt": 1})
    name = keys.encode(long_key)
    assert keys.is_hashed(name) and len(name.encode()) <= 200
    assert (store.path / name / keys.KEY_FILE).read_bytes() == long_key.encode()
    assert long_key in store.keys()
    store.rename(long_key, long_key + ":2")
    assert store.get(long_key + ":2")["sessionId"] == "long"
    store.rename(long_key + ":2", "agent:main:short")
    assert not (store.path / "agent--main--short" / keys.KEY_FILE).exists()
    assert store.get("agent:main:short")["sessionId"] == "long"


def test_case_distinct_keys_stay_separate(store: DirectoryStore) -> None:
    store.put("agent:main:matrix:channel:!AbC", {"sessionId": "upper", "updatedAt": 1})
    store.put("agent:main:matrix:channel:!abc", {"sessionId": "lower", "updatedAt": 2})
    assert store.get("agent:main:matrix:channel:!AbC")["sessionId"] == "upper"
    assert store.get("agent:main:matrix:channel:!abc")["sessionId"] == "lower"


def test_bulk_update_writes_only_what_changed(store: DirectoryStore) -> None:
    keys_now = store.keys()
    before = tree_state(store.path)

    def mutate(entries: dict) -> None:
        entries[keys_now[0]]["label"] = "bulk"
        del entries[keys_now[1]]
        entries["agent:main:fresh"] = {"sessionId": "fresh", "updatedAt": 3}

    summary = store.update(mutate)
    assert sorted(summary.written) == sorted([keys_now[0], "agent:main:fresh"])
    assert summary.deleted == [keys_now[1]]
    after = tree_state(store.path)
    for path, state in before.items():
        if not path.startswith((keys.encode(keys_now[0]) + "/", keys.encode(keys_now[1]) + "/")):
            assert after[path] == state


def test_damage_is_skipped_by_listing_and_reported_by_check(store: DirectoryStore) -> None:
    good = len(store.keys())
    (store.path / "agent--main--stray.12.abc.tmp").write_bytes(b"x")
    (store.path / "bad%2xname").mkdir()
    (store.path / "agent--main--empty").mkdir()
    (store.path / "agent--main--garbage").mkdir()
    (store.path / "agent--main--garbage" / "meta.json").write_bytes(b"{not json")
    (store.path / keys.encode(store.keys()[0]) / "meta.json.1.x.tmp").write_bytes(b"{")
    loaded = store.load()
    assert len(loaded) == good
    kinds = sorted(p.kind for p in check(locate_store(store.path)))
    assert kinds == sorted(["stray file", "bad name", "no meta.json", "invalid meta.json",
                            "stray temp file"])


def test_symlinks_never_redirect_reads_or_writes(store: DirectoryStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "meta.json").write_bytes(b'{"sessionId": "evil", "updatedAt": 1}')
    os.symlink(outside, store.path / "agent--main--linked")
    with pytest.raises((StoreCorrupt, SessionNotFound)):
        store.get("agent:main:linked")
    assert "agent:main:linked" not in store.keys()
    with pytest.raises(StoreCorrupt):
        store.put("agent:main:linked", {"sessionId": "x", "updatedAt": 2})
    victim = tmp_path / "victim.json"
    victim.write_bytes(b"precious")
    target_dir = store.path / keys.encode(store.keys()[0])
    os.unlink(target_dir / "meta.json")
    os.symlink(victim, target_dir / "meta.json")
    with pytest.raises(StoreCorrupt):
        store.get(store.keys()[0])
    store.put(store.keys()[0], {"sessionId": "replaced", "updatedAt": 3})
    assert victim.read_bytes() == b"precious"
    assert (outside / "meta.json").read_bytes() == b'{"sessionId": "evil", "updatedAt": 1}'
    assert not (target_dir / "meta.json").is_symlink()


def test_orphan_temps_of_dead_writers_are_removed(make_store: MakeStore, layout: str) -> None:
    import subprocess
    import sys
    import uuid

    store = make_store(layout)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    folder = store.path if layout == "directory" else store.path.parent
    session = folder / keys.encode(store.keys()[0]) if layout == "directory" else folder
    base = "meta.json" if layout == "directory" else "sessions.json"
    orphan = session / f"{base}.{dead}.{uuid.uuid4()}.tmp"
    live = session / f"{base}.{os.getpid()}.{uuid.uuid4()}.tmp"
    unrelated = session / "notes.tmp"
    for path in (orphan, live, unrelated):
        path.write_bytes(b"{")
    assert store.remove_orphan_temps() == [orphan]
    assert not orphan.exists() and live.exists() and unrelated.exists()


def test_named_keys_are_the_listing_with_the_names_on_disk(make_store: MakeStore, layout: str,
                                                            tmp_path: Path) -> None:
    """``named_keys`` is ``keys`` paired with ``encode``; the directory store reads the names
    from disk instead of encoding, and skips what ``keys`` skips."""
    entries = {"agent:main:main": {"sessionId": "m", "updatedAt": 1},
               "agent:main:telegram:direct:-james": {"sessionId": "j", "updatedAt": 2},
               "Agent:Main:%20": {"sessionId": "p", "updatedAt": 3}}
    store = make_store(layout, entries)
    long_key = "agent:main:" + "x" * 400
    store.put(long_key, {"sessionId": "long", "updatedAt": 5})
    expected = {keys.encode(key): key for key in [*entries, long_key]}
    if isinstance(store, DirectoryStore):
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "meta.json").write_bytes(b'{"sessionId": "evil", "updatedAt": 1}')
        os.symlink(outside, store.path / "agent--main--linked")
        (store.path / "bad%2xname").mkdir()
        (store.path / ".sessionfs-order.json").write_bytes(b"[]")
    named = store.named_keys()
    assert dict(named) == expected and len(named) == len(expected)
    assert [key for _, key in named] == store.keys()
    assert keys.is_hashed(keys.encode(long_key))


# -- renames between long (hashed) keys: a failure or a crash leaves exactly one state ----------
LONG_A = "agent:main:" + "a" * 200
LONG_B = "agent:main:" + "b" * 200
SHORT = "agent:main:short"


@pytest.mark.parametrize("old, new", [(LONG_A, LONG_B), (LONG_A, SHORT), (SHORT, LONG_B)],
                         ids=["hashed-to-hashed", "hashed-to-plain", "plain-to-hashed"])
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_failed_rename_leaves_both_sessions_as_they_were(
        store: DirectoryStore, monkeypatch: pytest.MonkeyPatch, old: str, new: str,
        error: int) -> None:
    store.put(old, {"sessionId": "long-a", "updatedAt": 1})
    assert keys.is_hashed(keys.encode(LONG_A)) and keys.is_hashed(keys.encode(LONG_B))
    before = tree_state(store.path)
    keys_before = sorted(store.keys())
    source = store.entry_dir(old)
    real_rename = os.rename

    def failing_rename(src: object, dst: object, **kwargs: object) -> None:
        if Path(os.fspath(src)) == source:  # only the session folder's own rename fails
            raise OSError(error, os.strerror(error))
        real_rename(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError) as excinfo:
        store.rename(old, new)
    assert excinfo.value.errno == error
    monkeypatch.undo()
    assert tree_state(store.path) == before  # byte-identical, no file added or removed
    fresh = DirectoryStore(store.path, lock_path=store.lock_path)
    assert sorted(fresh.keys()) == keys_before
    assert fresh.get(old) == {"sessionId": "long-a", "updatedAt": 1}
    with pytest.raises(SessionNotFound):
        fresh.read(new)
    assert not [p for p in check(locate_store(store.path)) if "key" in p.kind]


def test_a_rename_halfway_shows_the_old_session_before_the_switch_and_the_new_after(
        store: DirectoryStore) -> None:
    """The states a crash can leave: key.next written (old visible), folder renamed (new)."""
    store.put(LONG_A, {"sessionId": "long-a", "updatedAt": 1})
    folder = store.entry_dir(LONG_A)
    (folder / "key.next").write_bytes(LONG_B.encode())  # crash before the folder rename
    fresh = DirectoryStore(store.path, lock_path=store.lock_path)
    assert LONG_A in fresh.keys() and LONG_B not in fresh.keys()
    assert fresh.get(LONG_A)["sessionId"] == "long-a"
    os.rename(folder, store.entry_dir(LONG_B))  # crash before the key file is rewritten
    fresh = DirectoryStore(store.path, lock_path=store.lock_path)
    assert LONG_B in fresh.keys() and LONG_A not in fresh.keys()
    assert fresh.get(LONG_B)["sessionId"] == "long-a"
    with pytest.raises(SessionNotFound):
        fresh.read(LONG_A)
    assert not [p for p in check(locate_store(store.path)) if "key" in p.kind]
    fresh.put(LONG_B, {"sessionId": "long-a", "updatedAt": 2})  # later writes settle it
    assert (store.entry_dir(LONG_B) / keys.KEY_FILE).read_bytes() == LONG_B.encode()


FLIPPER = """
import sys
from sessionfs.store import open_store
store = open_store(sys.argv[1])
a, b = sys.argv[2], sys.argv[3]
print("ready", flush=True)
while True:
    store.rename(a, b)
    store.rename(b, a)
"""


@pytest.mark.slow
def test_kill_minus_nine_during_renames_leaves_exactly_one_of_the_two(tmp_path: Path) -> None:
    template = tmp_path / "template" / "sessions"
    template.mkdir(parents=True)
    write_legacy_store(template, {LONG_A: {"sessionId": "long-a", "updatedAt": 1},
                                  SHORT: {"sessionId": "other", "updatedAt": 2}})
    migrate(template)
    data = open_store(template).read(LONG_A).data
    rng = random.Random(5)
    seen = {LONG_A: 0, LONG_B: 0}
    for trial in range(30):
        folder = tmp_path / f"trial{trial}"
        shutil.copytree(template.parent, folder, symlinks=True)
        child = subprocess.Popen([sys.executable, "-c", FLIPPER, str(folder / "sessions"),
                                  LONG_A, LONG_B], stdout=subprocess.PIPE, text=True,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        store = open_store(folder / "sessions")
        present = sorted(set(store.keys()) & {LONG_A, LONG_B})
        assert len(present) == 1, (trial, store.keys())
        assert sorted(store.keys()) == sorted([present[0], SHORT])
        assert store.read(present[0]).data == data
        missing = LONG_B if present[0] == LONG_A else LONG_A
        with pytest.raises(SessionNotFound):
            store.read(missing)
        seen[present[0]] += 1
    assert seen[LONG_A] and seen[LONG_B], seen  # kills landed on both sides of the switch

"""The sessions.d store: per-session files, O(1) operations, nothing outside the store touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.errors import SessionExists, SessionNotFound, StoreCorrupt
from sessionfs.maintenance import check
from sessionfs.store import DirectoryStore, locate_store

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

"""The legacy sessions.json store: openclaw's bytes, exactly, and nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sessionfs import jsonfmt
from sessionfs.errors import (
    InvalidEntry,
    LockTimeout,
    ReadOnlyStore,
    SessionExists,
    SessionNotFound,
    StoreCorrupt,
)
from sessionfs.lock import StoreLock
from sessionfs.store import LegacyStore, open_store

from .conftest import MakeStore

NODE_APPLY = r"""
const fs = require('fs');
const [file, opsJson] = process.argv.slice(1);
const store = JSON.parse(fs.readFileSync(file, 'utf8'));
for (const op of JSON.parse(opsJson)) {
  if (op[0] === 'set') store[op[1]] = op[2];
  else if (op[0] === 'del') delete store[op[1]];
  else if (op[0] === 'mv') { store[op[2]] = store[op[1]]; delete store[op[1]]; }
}
process.stdout.write(JSON.stringify(store, null, 2));
"""


def node_apply(path: Path, ops: list[list[object]]) -> bytes:
    """What openclaw's own code would write after these operations on this file."""
    return subprocess.run(["node", "-e", NODE_APPLY, str(path), json.dumps(ops)],
                          capture_output=True, check=True).stdout


TRICKY_ENTRY_TEXT = (
    '{"sessionId":"abc","updatedAt":1767225600000,"cost":0.1,"tiny":1e-7,"big":1e21,'
    '"ints":[5,10000000000000000,-0],"esc":"tab\\tnl\\nq\\"\\u0001\\u2028\\ud83d",'
    '"2":"index-like","1":"first","nested":{"a":[],"b":{}}}'
)


def write_openclaw_file(path: Path, text: str) -> bytes:
    """A sessions.json as openclaw writes it (node does the formatting)."""
    data = subprocess.run(["node", "-e", "let d='';process.stdin.on('data',c=>d+=c).on('end',"
                           "()=>process.stdout.write(JSON.stringify(JSON.parse(d),null,2)))"],
                          input=text.encode(), capture_output=True, check=True).stdout
    path.write_bytes(data)
    return data


@pytest.fixture
def tricky_store(tmp_path: Path) -> LegacyStore:
    folder = tmp_path / "sessions"
    folder.mkdir()
    write_openclaw_file(folder / "sessions.json", (
        '{"agent:main:main":' + TRICKY_ENTRY_TEXT + ','
        '"agent:main:telegram:direct:james":{"sessionId":"s-2","updatedAt":5,"label":"Ünï 🛒"},'
        '"agent:main:cron:14bbd904":{"sessionId":"s-3","updatedAt":7.5,"x":12345678901234567890}}'))
    store = open_store(folder)
    assert isinstance(store, LegacyStore)
    return store


def test_untouched_store_round_trips_byte_for_byte(tricky_store: LegacyStore) -> None:
    original = tricky_store.path.read_bytes()
    assert tricky_store.raw_bytes() == original
    for key in tricky_store.keys():
        assert tricky_store.put(key, tricky_store.get(key)) is False
    assert tricky_store.path.read_bytes() == original


@pytest.mark.parametrize("key", ["agent:main:main", "agent:main:telegram:direct:james",
                                 "agent:main:cron:14bbd904"])
def test_writing_one_entry_changes_only_its_bytes(tricky_store: LegacyStore, key: str) -> None:
    path = tricky_store.path
    before = path.read_bytes()
    entry = dict(tricky_store.get(key), label="changed ✓", updatedAt=1767225699999)
    expected = node_apply(path, [["set", key, entry]])
    assert tricky_store.put(key, entry) is True
    after = path.read_bytes()
    assert after == expected
    # every byte outside this member is identical
    marker = b'\n  ' + jsonfmt.dumps(key, indent=None) + b": "
    start = before.index(marker) + len(marker)
    next_member = before.find(b'\n  "', start)
    end = next_member - 1 if next_member >= 0 else len(before) - 2
    new_end = len(after) - (len(before) - end)
    assert after[:start] == before[:start]
    assert after[new_end:] == before[end:]
    assert jsonfmt.loads(after[start:new_end]) == entry


def test_new_key_is_appended_like_javascript(tricky_store: LegacyStore) -> None:
    entry = {"sessionId": "new-one", "updatedAt": 1}
    expected = node_apply(tricky_store.path, [["set", "agent:main:new", entry]])
    tricky_store.put("agent:main:new", entry)
    assert tricky_store.path.read_bytes() == expected
    assert tricky_store.keys()[-1] == "agent:main:new"


def test_delete_and_rename_match_javascript(tricky_store: LegacyStore) -> None:
    path = tricky_store.path
    expected = node_apply(path, [["del", "agent:main:telegram:direct:james"]])
    tricky_store.delete("agent:main:telegram:direct:james")
    assert path.read_bytes() == expected
    expected = node_apply(path, [["mv", "agent:main:main", "agent:main:renamed"]])
    tricky_store.rename("agent:main:main", "agent:main:renamed")
    assert path.read_bytes() == expected
    with pytest.raises(SessionExists):
        tricky_store.rename("agent:main:renamed", "agent:main:cron:14bbd904")
    with pytest.raises(SessionNotFound):
        tricky_store.delete("agent:main:main")
    assert path.read_bytes() == expected


def test_deleting_the_last_entry_leaves_an_empty_object(tmp_path: Path) -> None:
    (tmp_path / "sessions.json").write_bytes(b'{\n  "k": {\n    "sessionId": "a",\n'
                                             b'    "updatedAt": 1\n  }\n}')
    store = open_store(tmp_path)
    store.delete("k")
    assert (tmp_path / "sessions.json").read_bytes() == b"{}"
    store.put("k2", {"sessionId": "b", "updatedAt": 2})
    assert (tmp_path / "sessions.json").read_bytes() == node_apply(
        tmp_path / "sessions.json", [])


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b'{"a": {"sessionId": "x", "updatedAt": 1}', "not valid JSON"),
    (b'{\n  "a": {\n    "sessionId": "x",\n    "updatedAt": 1\n  }\n', "not valid JSON"),
    (b"[1, 2]", "array"),
    (b'"text"', "expected an object"),
    (b'{"a": NaN}', "not valid JSON"),
])
def test_damaged_file_is_an_error_never_an_empty_store(tmp_path: Path, content: bytes,
                                                       reason: str) -> None:
    path = tmp_path / "sessions.json"
    path.write_bytes(content)
    store = open_store(tmp_path)
    with pytest.raises(StoreCorrupt) as caught:
        store.keys()
    assert str(path) in str(caught.value) and reason in str(caught.value)
    assert caught.value.errno == 5
    with pytest.raises(StoreCorrupt):
        store.put("new", {"sessionId": "x", "updatedAt": 1})
    assert path.read_bytes() == content


def test_change_behind_our_back_is_noticed(tricky_store: LegacyStore) -> None:
    assert tricky_store.get("agent:main:telegram:direct:james")["updatedAt"] == 5
    other = LegacyStore(tricky_store.path, lock_path=tricky_store.lock_path)
    other.put("agent:main:telegram:direct:james", {"sessionId": "s-2", "updatedAt": 6})
    other.put("agent:main:added", {"sessionId": "s-9", "updatedAt": 9})
    assert tricky_store.get("agent:main:telegram:direct:james")["updatedAt"] == 6
    # a write from the stale instance re-reads first and keeps the other writer's entry
    tricky_store.put("agent:main:main", {"sessionId": "abc", "updatedAt": 10})
    assert "agent:main:added" in open_store(tricky_store.path).keys()


def test_written_file_keeps_its_mode_and_leaves_no_temp(tricky_store: LegacyStore) -> None:
    """A replaced file keeps the mode its owner gave it (0600 stays 0600, 0644 stays 0644);
    a new store file is 0600 (see test_ownership.py for owner and group)."""
    os.chmod(tricky_store.path, 0o600)
    tricky_store.put("agent:main:main", {"sessionId": "abc", "updatedAt": 11})
    assert tricky_store.path.stat().st_mode & 0o777 == 0o600
    os.chmod(tricky_store.path, 0o644)
    tricky_store.put("agent:main:main", {"sessionId": "abc", "updatedAt": 12})
    assert tricky_store.path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tricky_store.path.parent.iterdir()] == ["sessions.json"]


@pytest.mark.parametrize("entry, field", [
    ({"updatedAt": 1}, "sessionId"),
    ({"sessionId": 5, "updatedAt": 1}, "sessionId"),
    ({"sessionId": "../../etc", "updatedAt": 1}, "sessionId"),
    ({"sessionId": "-leading", "updatedAt": 1}, "sessionId"),
    ({"sessionId": "a" * 129, "updatedAt": 1}, "sessionId"),
    ({"sessionId": "ok\n", "updatedAt": 1}, "sessionId"),
    ({"sessionId": "\u212aelvin", "updatedAt": 1}, "sessionId"),
    ({"sessionId": "ok"}, "updatedAt"),
    ({"sessionId": "ok", "updatedAt": "1"}, "updatedAt"),
    ({"sessionId": "ok", "updatedAt": True}, "updatedAt"),
    ({"sessionId": "ok", "updatedAt": -1}, "updatedAt"),
    ({"sessionId": "ok", "updatedAt": float("inf")}, "updatedAt"),
    ({"sessionId": "ok", "updatedAt": float("nan")}, "updatedAt"),
    ({"sessionId": "ok", "updatedAt": 10**400}, "updatedAt"),
    ([1], None),
])
def test_invalid_entries_are_refused_naming_the_field(any_store, entry, field) -> None:
    from .conftest import store_bytes

    before = store_bytes(any_store)
    with pytest.raises(InvalidEntry) as caught:
        any_store.put("agent:main:main", entry)
    assert caught.value.field == field and caught.value.errno == 22
    if field:
        assert field in str(caught.value)
    assert store_bytes(any_store) == before


def test_sqlite_generation_store_is_read_only(tmp_path: Path, make_store: MakeStore) -> None:
    root = tmp_path / "state" / "agents" / "main"
    (root / "sessions").mkdir(parents=True)
    (root / "agent").mkdir()
    (root / "agent" / "openclaw-agent.sqlite").write_bytes(b"SQLite format 3\0")
    path = root / "sessions" / "sessions.json"
    path.write_bytes(b'{\n  "k": {\n    "sessionId": "a",\n    "updatedAt": 1\n  }\n}')
    store = open_store(path)
    assert store.read_only and "SQLite" in (store.read_only_reason or "")
    assert store.get("k")["sessionId"] == "a"
    with pytest.raises(ReadOnlyStore) as caught:
        store.put("k", {"sessionId": "b", "updatedAt": 2})
    assert caught.value.errno == 30 and "SQLite" in str(caught.value)
    assert path.read_bytes() == b'{\n  "k": {\n    "sessionId": "a",\n    "updatedAt": 1\n  }\n}'


def test_hand_formatted_file_is_read_and_rewritten_as_openclaw_would(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.write_bytes(b'{"b": {"sessionId": "x", "updatedAt": 1.0},\n'
                     b'    "a": {"sessionId": "y", "updatedAt": 2, "n": 1E2}}\n')
    store = open_store(tmp_path)
    assert store.keys() == ["b", "a"]
    expected = node_apply(path, [["set", "a", {"sessionId": "y", "updatedAt": 3, "n": 100}]])
    store.put("a", {"sessionId": "y", "updatedAt": 3, "n": 100})
    assert path.read_bytes() == expected


def test_write_waits_for_and_reports_a_held_lock(tricky_store: LegacyStore) -> None:
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from sessionfs.lock import StoreLock\n"
        f"l=StoreLock({str(tricky_store.lock_path)!r}); l.acquire(); print('held', flush=True);"
        " sys.stdin.read()")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        store = LegacyStore(tricky_store.path, lock_path=tricky_store.lock_path, lock_timeout=0.5)
        before = store.path.read_bytes()
        with pytest.raises(LockTimeout) as caught:
            store.put("agent:main:main", {"sessionId": "abc", "updatedAt": 99})
        assert str(holder.pid) in str(caught.value)
        assert store.path.read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    with StoreLock(tricky_store.lock_path, timeout=2):
        pass  # the dead holder's lock is reclaimed

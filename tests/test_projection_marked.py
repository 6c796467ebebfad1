"""The canonical mark (sessionfs.store.canonical): sessionfs marks every meta.json it writes,
the rendered sessions.json reuses marked bytes without parsing them, and anything that changed
a file after sessionfs wrote it (by hand, in place, same size, mtime set back, a copy that
carries the attribute along) is checked the full way. Node's JSON.stringify is the oracle."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from sessionfs import jsonfmt
from sessionfs.demo import generate_entries, write_legacy_store
from sessionfs.migrate import migrate
from sessionfs.projection import render, transcript_name, with_session_file
from sessionfs.store import DirectoryStore, open_store
from sessionfs.store.canonical import CANONICAL_XATTR
from sessionfs.store.legacy import assemble, indent_member
from tests.conftest import node_stringify


def _expected(store: DirectoryStore, transcripts_dir: str) -> bytes:
    """sessions.json the slow way: every entry parsed and serialised again."""
    members = []
    for key in store.order():
        entry = store.read(key).entry
        name = transcript_name(key, entry)
        if name is not None:
            entry = with_session_file(entry, f"{transcripts_dir}/{name}")
        members.append((key, indent_member(jsonfmt.dumps(entry))))
    return assemble(members)


def _tricky_entries() -> dict[str, dict[str, Any]]:
    entries = generate_entries(10, seed=21)
    keys_ = list(entries)
    entries[keys_[0]]["sessionFile"] = "/elsewhere/x.jsonl"  # replaced in place
    entries[keys_[1]].pop("skillsSnapshot", None)
    entries[keys_[1]]["delivery"] = {"kind": "none"}  # sessionFile goes before it
    entries[keys_[2]] = {"sessionId": "bare-one", "updatedAt": 5}  # appended last
    entries[keys_[3]]["sessionFile"] = {"nested": "object"}  # multi-line: parsed instead
    entries[keys_[4]]["sessionId"] = 12345  # no transcript name: served as stored
    # look-alikes deeper down and inside strings must not be taken for top-level fields
    entries[keys_[5]]["meta"] = {"sessionFile": "/deep.jsonl", "delivery": {"a": 1},
                                 "sessionId": "deep"}
    entries[keys_[5]]["label"] = '\n  "sessionFile": "/in/a/string.jsonl",'
    entries[keys_[6]]["n"] = 100
    entries[keys_[6]]["cost"] = 0.1
    entries[keys_[7]]["sessionId"] = "id-with-\u00e9-and-\\-and-\"-quote"
    return entries


@pytest.fixture
def marked_store(tmp_path: Path) -> DirectoryStore:
    folder = tmp_path / "agents/a/sessions"
    write_legacy_store(folder, _tricky_entries())
    migrate(folder)
    store = open_store(tmp_path / "agents/a")
    assert isinstance(store, DirectoryStore)
    return store


def _meta(store: DirectoryStore, key: str) -> Path:
    return store.entry_dir(key) / "meta.json"


def test_sessionfs_marks_what_it_writes(marked_store: DirectoryStore) -> None:
    """migrate and put leave every meta.json marked; the mark names that very file."""
    store = marked_store
    for key in store.keys():
        unparsed = store.read_unparsed(key)
        assert unparsed is not None and unparsed[2], key
        assert unparsed[0] == _meta(store, key).read_bytes()
    key = store.keys()[0]
    store.put(key, dict(store.get(key), label="put by sessionfs"))
    unparsed = store.read_unparsed(key)
    assert unparsed is not None and unparsed[2]
    assert os.getxattr(_meta(store, key), CANONICAL_XATTR).startswith(
        b"%d:" % os.stat(_meta(store, key)).st_ino)


def test_marked_entries_render_without_parsing(marked_store: DirectoryStore,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Marked bytes are reused as they are (only the multi-line sessionFile is parsed), and the
    result is byte for byte what serialising every entry gives and what node writes."""
    store = marked_store
    expected = _expected(store, "/m/agents/a/sessions")
    parsed: list[str] = []
    read = DirectoryStore.read

    def counting_read(self: DirectoryStore, key: str) -> Any:
        parsed.append(key)
        return read(self, key)

    monkeypatch.setattr(DirectoryStore, "read", counting_read)
    rendered = render(store, "/m/agents/a/sessions").data
    assert rendered == expected
    assert node_stringify(rendered) == rendered
    assert len(parsed) == 1  # the entry whose sessionFile is an object
    assert json.loads(rendered)[parsed[0]]["sessionFile"].startswith("/m/agents/a/sessions/")


def _edit_in_place(path: Path, old: bytes, new: bytes, *, keep_mtime: bool) -> None:
    """Rewrite ``path`` in place (same inode), optionally setting its mtime back."""
    before = os.stat(path)
    data = path.read_bytes()
    assert data.count(old) == 1
    with open(path, "r+b") as stream:
        stream.write(data.replace(old, new))
        stream.truncate()
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert after.st_ino == before.st_ino


@pytest.mark.parametrize("how", ["same-size-mtime-back", "reindented", "copied-with-xattr",
                                 "float-written-long"])
def test_files_changed_after_sessionfs_wrote_them_are_checked(
        marked_store: DirectoryStore, how: str, tmp_path: Path) -> None:
    """A hand edit that leaves non-canonical bytes is never trusted: the rendering is what node
    writes for the edited content, whatever the edit kept (inode, size, mtime, the attribute)."""
    store = marked_store
    keys_ = list(_tricky_entries())
    key = keys_[6]
    meta = _meta(store, key)
    if how == "same-size-mtime-back":  # 100 -> 1e2: same length, JS writes 100
        _edit_in_place(meta, b'"n": 100', b'"n": 1e2', keep_mtime=True)
    elif how == "reindented":
        text = json.dumps(json.loads(meta.read_bytes()), indent=4).encode()
        with open(meta, "r+b") as stream:
            stream.write(text)
            stream.truncate()
    elif how == "copied-with-xattr":  # another file's bytes, edited, copied over with xattrs
        other = tmp_path / "other.json"
        shutil.copy2(meta, other)  # copy2 copies extended attributes too
        _edit_in_place(other, b'"n": 100', b'"n": 1e2', keep_mtime=True)
        shutil.copy2(other, meta)
        assert os.getxattr(meta, CANONICAL_XATTR)  # the stale mark came along
    else:  # 0.1 -> 0.10: orjson reads and writes it back as 0.1, so the bytes differ
        _edit_in_place(meta, b'"cost": 0.1', b'"cost": 0.10', keep_mtime=False)
    unparsed = store.read_unparsed(key)
    assert unparsed is not None and not unparsed[2]
    rendered = render(store, "/m").data
    assert rendered == _expected(store, "/m")
    assert node_stringify(rendered) == rendered
    if how != "reindented":
        member = json.loads(rendered)[key]
        assert member["n"] == 100 and b'"n": 100' in rendered and b"1e2" not in rendered


def test_memoised_rendering_sees_an_edit_of_a_marked_file(marked_store: DirectoryStore) -> None:
    """A marked entry kept in the memo is read again after a same-size edit in place that
    sets the mtime back (the ctime still moves), and the stale mark is not trusted."""
    store = marked_store
    memo: dict[str, Any] = {}
    first = render(store, "/m", memo=memo)
    key = list(_tricky_entries())[6]
    _edit_in_place(_meta(store, key), b'"n": 100', b'"n": 2e2', keep_mtime=True)
    second = render(store, "/m", memo=memo)
    assert second.data == _expected(store, "/m") != first.data
    assert b'"n": 200' in second.data and b"2e2" not in second.data
    assert node_stringify(second.data) == second.data


def test_projection_is_read_in_pieces_like_the_joined_file(marked_store: DirectoryStore) -> None:
    """sessions.json is kept as parts (no 80 MB join): every read at any offset and size gives
    the joined file's bytes, and the parts join to what assemble() writes."""
    from sessionfs.projection import _assemble_parts

    projection = render(marked_store, "/m")
    data = projection.data
    assert projection.size == len(data) and len(projection.parts) > 2
    assert data == _expected(marked_store, "/m")
    boundaries = [end + delta for end in projection.ends for delta in (-1, 0, 1)]
    for offset in [0, 1, len(data) - 1, len(data), len(data) + 5, *boundaries]:
        for size in (0, 1, 7, 4096, 131072, len(data) + 10):
            assert projection.read(size, offset) == data[offset:offset + size], (offset, size)
    members = [("b", b"{}"), ("10", b"1"), ("a", b'"x"'), ("2", b"[]")]
    assert b"".join(_assemble_parts(members)) == assemble(members)
    assert b"".join(_assemble_parts([])) == assemble([]) == b"{}"


def test_number_check_agrees_with_the_number_fixer() -> None:
    """numbers_like_javascript (the forward line-end scan) says True exactly when
    fix_numbers_indented changes nothing, on orjson output full of numbers of every kind."""
    import random

    import orjson

    from sessionfs.jsonfmt.numbers import fix_numbers_indented, numbers_like_javascript

    rng = random.Random(4)
    specials = [0.1, 100.0, 1e16, 1e21, 1.5e-7, 1e-6, -0.0, 123456789012345678, 2**53,
                2**53 + 1, -(2**60), 5, -5, 1.25, 3e300, 12345678901234.5]
    for _ in range(400):
        drawn = [rng.uniform(-1e6, 1e6), rng.randint(-10**18, 10**18),
                 rng.random() * 10**rng.randint(-9, 25)]
        value = rng.choice(specials) if rng.random() < 0.5 else rng.choice(drawn)
        doc = {"s": "1.5e9, 100.0\n", "n": value, "a": [value, "x", {"k": value}], "z": 7}
        out = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        assert numbers_like_javascript(out) == (fix_numbers_indented(out) == out), out


def test_state_mount_serves_an_editors_save_of_a_marked_file_exactly(
        tmp_path: Path) -> None:
    """Through a real state mount: sessions.json of a marked sessions.d is node's bytes; an
    editor's save that copies the extended attributes to its new file (as vim does) and leaves
    a non-canonical number shows, as node would write it, once --timeout has passed."""
    from tests.mountutil import Mount, force_unmount, scratch_root, wait_for

    base = scratch_root()
    try:
        folder = base / "state/agents/a/sessions"
        write_legacy_store(folder, _tricky_entries())
        migrate(folder)
        store = open_store(base / "state/agents/a")
        assert isinstance(store, DirectoryStore)
        mp = base / "mnt"
        with Mount(base / "state", mp, "--timeout", "0.3") as mount:
            target = mp / "agents/a/sessions/sessions.json"
            transcripts_dir = f"{mp}/agents/a/sessions"
            first = target.read_bytes()
            assert first == _expected(store, transcripts_dir)
            assert node_stringify(first) == first
            key = list(_tricky_entries())[6]
            meta = _meta(store, key)
            saved = meta.with_name("meta.json.swp")
            shutil.copy2(meta, saved)  # bytes, mtime and the mark come along
            _edit_in_place(saved, b'"n": 100', b'"n": 3e2', keep_mtime=True)
            os.replace(saved, meta)
            assert os.getxattr(meta, CANONICAL_XATTR)

            def shows_edit() -> bool:
                return b'"n": 300' in target.read_bytes()

            assert wait_for(shows_edit, timeout=10)
            after = target.read_bytes()
            assert after == _expected(store, transcripts_dir) != first
            assert b"3e2" not in after and node_stringify(after) == after
            assert os.stat(target).st_size == len(after)
        mount.assert_no_internal_errors()
    finally:
        force_unmount(base / "mnt")
        shutil.rmtree(base, ignore_errors=True)

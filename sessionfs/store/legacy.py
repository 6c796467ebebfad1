"""The classic store: one ``sessions.json`` object, rewritten whole on every change.

Byte compatibility is the point. openclaw writes ``JSON.stringify(store, null, 2)``; in that
layout every top-level member sits at ``\\n  "<key>": <value>`` and nothing nested does (nested
lines are indented by four or more spaces and JSON strings hold no raw newline). We cut the file
into one slice per member at those markers, so a write splices one re-serialised member between
the untouched bytes of all the others and a store we did not change is written back identical.
Slices are parsed lazily, so reading one entry of an 80 MB file does not parse the other 79 MB.
A file that is valid JSON but not in that layout (hand-formatted, minified) is parsed whole and,
on the first write, rewritten in openclaw's layout, which is what the gateway would do too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sessionfs import jsonfmt
from sessionfs.atomic import atomic_write, remove_orphan_temps
from sessionfs.entry import serialize_entry, validate_entry
from sessionfs.errors import (
    InvalidJSON,
    SessionExists,
    SessionNotFound,
    StoreCorrupt,
    StoreNotFound,
)
from sessionfs.lock import StoreLock
from sessionfs.store.base import Entry, EntryRecord, Mutator, Store, UpdateSummary

__all__ = ["LegacyStore", "assemble", "indent_member"]

_MEMBER_MARK = b'\n  "'
# A top-level key literal followed by ': ' (the key's own escapes included).
_KEY_LITERAL = re.compile(rb'"((?:[^"\\\n]|\\.)*)": ')


def indent_member(entry_data: bytes) -> bytes:
    """An entry's own ``JSON.stringify(entry, null, 2)`` as it sits one level deep in the store."""
    return entry_data.replace(b"\n", b"\n  ")


def assemble(members: Iterable[tuple[str, bytes]]) -> bytes:
    """The store file from (key, indented member value) pairs, exactly as JSON.stringify lays it.

    JavaScript puts integer-like property names first in numeric order; we follow.
    """
    members = jsonfmt.in_js_key_order(members)
    if not members:
        return b"{}"
    parts = [b"{"]
    for position, (key, piece) in enumerate(members):
        parts.append(b'\n  ' if position == 0 else b',\n  ')
        parts.append(jsonfmt.dumps(key, indent=None))
        parts.append(b": ")
        parts.append(piece)
    parts.append(b"\n}")
    return b"".join(parts)


@dataclass
class _Snapshot:
    """One read of the file: its identity, member slices in file order, and parsed entries."""

    ident: tuple[int, int, int]
    mtime_ns: int
    pieces: dict[str, bytes]
    entries: dict[str, Entry] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict)

    def entry_data(self, key: str, path: Path) -> bytes:
        """The entry's canonical bytes (``meta.json`` form), serialised once per snapshot."""
        cached = self.data.get(key)
        if cached is None:
            cached = self.data[key] = serialize_entry(self.entry(key, path))
        return cached

    def entry(self, key: str, path: Path) -> Entry:
        cached = self.entries.get(key)
        if cached is None:
            try:
                cached = jsonfmt.loads(self.pieces[key])
            except InvalidJSON as exc:
                raise StoreCorrupt(path, f"session {key!r}: {exc}") from exc
            self.entries[key] = cached
        return cached


def _split_members(raw: bytes) -> dict[str, bytes] | None:
    """Member slices of a file in openclaw's layout, or None when it is laid out otherwise."""
    if raw == b"{}":
        return {}
    if not (raw.startswith(b'{\n  "') and raw.endswith(b"\n}")):
        return None
    starts: list[int] = []
    position = 1
    while True:
        position = raw.find(_MEMBER_MARK, position)
        if position < 0:
            break
        starts.append(position)
        position += len(_MEMBER_MARK)
    pieces: dict[str, bytes] = {}
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(raw) - 2
        match = _KEY_LITERAL.match(raw, start + 3)
        if match is None:
            return None
        if number + 1 < len(starts):
            if raw[end - 1:end] != b",":
                return None
            end -= 1
        try:
            key = jsonfmt.loads(b'"' + match.group(1) + b'"')
        except InvalidJSON:
            return None
        if key in pieces or jsonfmt.is_array_index(key):
            return None  # duplicates and JS-reordered keys: let the full parse decide
        pieces[key] = raw[match.end():end]
    return pieces


class LegacyStore(Store):
    """``sessions.json``: cached parse, per-member splicing writes under the gateway's lock."""

    layout = "legacy"
    entries_share_one_file = True

    def __init__(self, path: Path, *, lock_path: Path, read_only_reason: str | None = None,
                 lock_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.lock_path = lock_path
        self.read_only_reason = read_only_reason
        self.lock_timeout = lock_timeout
        self._store_lock: StoreLock | None = None
        self._snapshot_cache: _Snapshot | None = None

    # -- reading ---------------------------------------------------------------------------------
    def _read_snapshot(self) -> _Snapshot:
        """The current file, re-read only when its (inode, mtime, size) changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreNotFound(f"{self.path}: no such store file") from None
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._snapshot_cache
        if cached is not None and cached.ident == ident:
            return cached
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StoreNotFound(f"{self.path}: no such store file") from None
        except PermissionError as exc:
            raise StoreCorrupt(self.path, f"cannot read: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as stream:
            st = os.fstat(stream.fileno())
            raw = stream.read()
        snapshot = self._parse(raw, (st.st_ino, st.st_mtime_ns, st.st_size), st.st_mtime_ns)
        self._snapshot_cache = snapshot
        return snapshot

    def _parse(self, raw: bytes, ident: tuple[int, int, int], mtime_ns: int) -> _Snapshot:
        if not raw.strip():
            raise StoreCorrupt(self.path, f"file is empty ({len(raw)} bytes), not a session store"
                               "; refusing to treat it as an empty store")
        pieces = _split_members(raw)
        if pieces is not None:
            return _Snapshot(ident, mtime_ns, pieces)
        try:
            document = jsonfmt.loads(raw)
        except InvalidJSON as exc:
            raise StoreCorrupt(self.path, f"not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            kind = "an array" if isinstance(document, list) else type(document).__name__
            raise StoreCorrupt(self.path, f"top level is {kind}, expected an object")
        # Not in openclaw's layout: keep the parse, derive canonical members for later writes.
        pieces = {key: indent_member(jsonfmt.dumps(value)) for key, value in document.items()}
        return _Snapshot(ident, mtime_ns, pieces, dict(document))

    def keys(self) -> list[str]:
        return list(self._read_snapshot().pieces)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._read_snapshot().pieces

    def read(self, key: str) -> EntryRecord:
        snapshot = self._read_snapshot()
        if key not in snapshot.pieces:
            raise SessionNotFound(f"no session {key!r} in {self.path}")
        entry = snapshot.entry(key, self.path)
        return EntryRecord(key, snapshot.entry_data(key, self.path), snapshot.mtime_ns, entry)

    def load(self) -> dict[str, Entry]:
        snapshot = self._read_snapshot()
        return {key: snapshot.entry(key, self.path) for key in snapshot.pieces}

    def fingerprint(self) -> object:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _session_id_candidates(self, session_id: str) -> list[str]:
        """Members whose bytes hold ``"sessionId": "<id>"`` as a top-level field: a byte search,
        no parse (every member is kept in openclaw's layout, one level deep)."""
        needle = b'\n    "sessionId": ' + jsonfmt.dumps(session_id, indent=None)
        return [key for key, piece in self._read_snapshot().pieces.items() if needle in piece]

    def whole_document(self) -> tuple[bytes, int]:
        """The file's bytes and mtime, through one open file: one version of it."""
        with open(self.path, "rb") as stream:
            data = stream.read()
            return data, os.fstat(stream.fileno()).st_mtime_ns

    def raw_bytes(self) -> bytes:
        """The file as it would be written now (identical to disk for openclaw-laid files)."""
        return assemble(self._read_snapshot().pieces.items())

    def remove_orphan_temps(self) -> list[Path]:
        """Delete ``sessions.json.<pid>.<uuid>.tmp`` files whose writer died (ours or theirs)."""
        return remove_orphan_temps(self.path.parent, prefix=self.path.name + ".")

    # -- writing ---------------------------------------------------------------------------------
    def _lock(self) -> StoreLock:
        if self._store_lock is None:  # one instance: resolving the lock path costs a realpath
            self._store_lock = StoreLock(self.lock_path, timeout=self.lock_timeout)
        return self._store_lock

    def _commit(self, pieces: dict[str, bytes], entries: dict[str, Entry]) -> None:
        """Write the members out atomically and keep what we wrote as the new cached parse."""
        raw = assemble(pieces.items())
        atomic_write(self.path, raw)
        st = os.stat(self.path)
        self._snapshot_cache = _Snapshot((st.st_ino, st.st_mtime_ns, st.st_size), st.st_mtime_ns,
                                         pieces, entries)

    def put(self, key: str, entry: Entry, *, replacing: str | None = None) -> bool:
        self._require_writable()
        validate_entry(entry, key=key)
        piece = indent_member(serialize_entry(entry))
        with self._lock():
            snapshot = self._read_snapshot()  # re-checked under the lock: a change is re-read
            if snapshot.pieces.get(key) == piece:
                return False
            if key not in snapshot.pieces:
                self._refuse_duplicate_session_id(key, entry, replacing)
            pieces = dict(snapshot.pieces)
            pieces[key] = piece
            entries = dict(snapshot.entries)
            entries[key] = entry
            self._commit(pieces, entries)
            return True

    def delete(self, key: str) -> None:
        self._require_writable()
        with self._lock():
            snapshot = self._read_snapshot()
            if key not in snapshot.pieces:
                raise SessionNotFound(f"no session {key!r} in {self.path}")
            pieces = {k: v for k, v in snapshot.pieces.items() if k != key}
            entries = {k: v for k, v in snapshot.entries.items() if k != key}
            self._commit(pieces, entries)

    def rename(self, old: str, new: str) -> None:
        """Like openclaw's ``store[new] = store[old]; delete store[old]``: the key moves last."""
        self._require_writable()
        with self._lock():
            snapshot = self._read_snapshot()
            if old not in snapshot.pieces:
                raise SessionNotFound(f"no session {old!r} in {self.path}")
            if old == new:
                return
            if new in snapshot.pieces:
                raise SessionExists(f"session {new!r} already exists in {self.path}")
            pieces = {k: v for k, v in snapshot.pieces.items() if k != old}
            pieces[new] = snapshot.pieces[old]
            entries = {k: v for k, v in snapshot.entries.items() if k != old}
            if old in snapshot.entries:
                entries[new] = snapshot.entries[old]
            self._commit(pieces, entries)

    def update(self, mutator: Mutator) -> UpdateSummary:
        self._require_writable()
        with self._lock():
            snapshot = self._read_snapshot()
            current = {key: snapshot.entry(key, self.path) for key in snapshot.pieces}
            working = {key: jsonfmt.loads(piece) for key, piece in snapshot.pieces.items()}
            result = mutator(working)
            if result is not None:
                working = result
            summary = UpdateSummary()
            pieces: dict[str, bytes] = {}
            for key, entry in working.items():
                data = serialize_entry(entry)
                # Compare serialisations, not dicts: in Python 1 == 1.0 == True.
                if key in current and data == serialize_entry(current[key]):
                    pieces[key] = snapshot.pieces[key]
                    continue
                validate_entry(entry, key=key)  # only what we write; old entries stay as they are
                pieces[key] = indent_member(data)
                summary.written.append(key)
            summary.deleted = [key for key in snapshot.pieces if key not in working]
            if summary.changed or list(pieces) != list(snapshot.pieces):
                self._commit(pieces, dict(working))
            return summary


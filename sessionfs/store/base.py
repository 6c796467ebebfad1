"""What every store layout offers: the per-entry API the CLI and the filesystem are written against.

Entries travel in two forms: the parsed ``dict`` (for code) and ``data``, the entry serialised
exactly as openclaw does (``JSON.stringify(entry, null, 2)``, UTF-8, no trailing newline), which
is what ``meta.json`` holds and what the mount shows.
"""

from __future__ import annotations

import abc
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sessionfs import keys
from sessionfs.entry import updated_at_ms
from sessionfs.errors import (
    InvalidKey,
    InvalidName,
    ReadOnlyStore,
    SessionExists,
    SessionNotFound,
    StoreCorrupt,
)
from sessionfs.store.transcript_source import TranscriptSource
from sessionfs.store.transcripts import (
    candidate_names,
    measure_transcript_named,
    open_transcript_named,
)

__all__ = ["MISSING", "Entry", "EntryRecord", "Layout", "Mutator", "RefusedRow", "Store",
           "TranscriptSource", "UpdateSummary"]

Entry = dict[str, Any]
Layout = Literal["legacy", "directory", "sqlite"]
Mutator = Callable[[dict[str, Entry]], "dict[str, Entry] | None"]

#: What :meth:`Store.entry_token` and :meth:`Store.peek` answer when a session is surely absent.
MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """One session as read from disk: its canonical bytes and when they last changed."""

    key: str
    data: bytes
    mtime_ns: int
    entry: Entry = field(compare=False, repr=False)

    @property
    def updated_at(self) -> float | None:
        return updated_at_ms(self.entry)


@dataclass(slots=True)
class UpdateSummary:
    """What a bulk ``update`` wrote: keys written (new or changed) and keys deleted."""

    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.written or self.deleted)


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A session openclaw's own reader would refuse; sessionfs still serves it (this is where
    people look when something is broken) and ``status``/``check`` report it with the remedy.
    A damaged row (SQLite: ``entry_json`` that cannot be read) is reported the same way, but
    that session answers EIO: there is nothing to serve."""

    key: str
    reason: str
    remedy: str

    def __str__(self) -> str:
        return f"session {self.key!r}: {self.reason}; {self.remedy}"


class Store(abc.ABC):
    """A session store. Every write validates, takes the gateway's store lock and is atomic."""

    layout: Layout
    #: The store's main path: ``sessions.json`` (legacy) or ``sessions.d`` (directory).
    path: Path
    #: ``sessions.json.lock`` beside the store, shared with the gateway in both layouts.
    lock_path: Path
    #: Why writes are refused, or None when the store is writable.
    read_only_reason: str | None = None
    #: Files of an older generation that still lie beside this store and are no longer read
    #: (a file-era ``sessions.json`` beside the SQLite database): ``status``/``check`` say so.
    stale_files: tuple[Path, ...] = ()
    # What callers need to know of the layout, each said once here (never ``layout == ...``):
    #: Writes go to a live Gateway over its RPC (SQLite), which chooses a new session's
    #: sessionId; ``status`` names the Gateway and the rows openclaw refuses.
    writes_through_gateway: bool = False
    #: Every entry lives in one file (legacy ``sessions.json``): they share one mtime.
    entries_share_one_file: bool = False
    #: Transcripts are files beside the store, found by name (file era); else database rows,
    #: measured through :meth:`transcript` and unchanged while :meth:`fingerprint` holds.
    transcripts_are_files: bool = True
    #: :meth:`fingerprint` costs a query (SQLite): a caller may reuse one for a moment.
    fingerprint_is_costly: bool = False

    @property
    def generation(self) -> str:
        """What this store is, for ``status``: the layout, plus the schema where there is one."""
        return self.layout

    def updated_times(self) -> dict[str, int] | None:
        """Every session's ``updated_at`` (ns) from one query, where the layout has it as a
        column (SQLite); None elsewhere. Lets ``ls -l`` date 10k folders without 10k reads."""
        return None

    def refused_rows(self) -> list[RefusedRow]:
        """Sessions openclaw itself would refuse to read (served anyway). File era: none."""
        return []

    def close(self) -> None:
        """Release connections or descriptors the store keeps (a no-op for file stores)."""
        return None

    def limit_waits(self, busy_timeout: float, busy_deadline: float) -> None:
        """How long one read may wait for a lock held elsewhere (SQLite: a writer's), for a
        mount that must answer in seconds. File stores never wait to read: a no-op."""
        return None

    def write_folders(self) -> tuple[Path, ...]:
        """The folders a write creates files in (its temporary files, new sessions): the
        process writing needs ``w`` and ``x`` on each."""
        return (self.path.parent,)

    def listed_keys(self) -> list[str]:
        """Every key in the order a listing (``sessionfs ls``) shows: the store's own where it
        has one (the file's; SQLite: by key), else sorted."""
        return self.keys()

    def shown_updated_ns(self, record: EntryRecord) -> int:
        """When ``record``'s session last changed, for ``ls -l``: its ``updatedAt`` (ns),
        else the time its bytes were written."""
        updated = record.updated_at
        return record.mtime_ns if updated is None else int(updated * 1_000_000)

    def check_writable(self) -> None:
        """:raises ReadOnlyStore: writes are refused, with the reason (before any input is
        read: a SQLite store without a live Gateway says so first)."""
        self._require_writable()

    # -- transcripts -----------------------------------------------------------------------------
    def transcript(self, key: str) -> TranscriptSource | None:
        """The session's transcript, or None when it has none.

        File era (this default): ``<sessionId>.jsonl`` or the file the entry's ``sessionFile``
        names, looked up by base name in the store's folder, never through a symlink or out of
        that folder. :raises SessionNotFound: no such key.
        """
        return self.open_transcript_named(self.transcript_names(key))

    def entry_paths(self, key: str) -> tuple[Path, ...]:
        """The files and folders on disk that ``key``'s entry alone is read through, outermost
        first (a directory store: the session's folder, then its ``meta.json``): who may read
        the entry on disk is decided by their modes too. Empty when the entry lives in a file
        shared with every other session (``sessions.json``, the database), whose mode the
        mount already applies to everything."""
        return ()

    def transcript_names(self, key: str) -> tuple[str, ...]:
        """File era: the file names ``key``'s transcript may have, most specific first. They
        depend on the entry alone, so a caller may keep them while the entry's token holds and
        then measure or open the file without reading the entry. :raises SessionNotFound:"""
        return tuple(candidate_names(key, self.get(key)))

    def measure_transcript_named(self, names: tuple[str, ...]) -> tuple[int, int, object] | None:
        """File era: ``(size, mtime_ns, token)`` of the transcript under the first of ``names``
        that is a regular file in the store's folder (no open, no entry read), or None."""
        return measure_transcript_named(self.path.parent, names)

    def open_transcript_named(self, names: tuple[str, ...]) -> TranscriptSource | None:
        """File era: the transcript under the first of ``names`` that is a regular file in the
        store's folder, opened, or None."""
        return open_transcript_named(self.path.parent, names)

    # -- what a file-era sessions.json is rendered from (sessionfs.projection) -----------------
    def order(self) -> list[str]:
        """The keys in the order the file era's ``sessions.json`` lists them (the store's order;
        ``sessions.d``: the order ``migrate`` recorded, which ``rollback`` restores)."""
        return self.keys()

    def content_version(self) -> object:
        """A token that changes whenever any entry's bytes may have (the fingerprint; stores
        whose fingerprint misses a change inside an entry add what catches it)."""
        return self.fingerprint()

    def whole_document(self) -> tuple[bytes, int] | None:
        """``(bytes, mtime_ns)`` of the store's one ``sessions.json`` read through one open
        file, where the store is that file (legacy); None elsewhere."""
        return None

    def entry_identity(self, key: str) -> object:
        """What identifies ``key``'s stored bytes without reading them (a file's inode, size,
        mtime, ctime), or None: unknown, read the entry."""
        return None

    def read_unparsed(self, key: str) -> tuple[bytes, os.stat_result, bool] | None:
        """``key``'s stored bytes unparsed, their stat, and whether sessionfs wrote them in
        canonical form and nobody changed them since; None where :meth:`read` is needed."""
        return None

    def transcript_ids(self) -> dict[str, str] | None:
        """``{key: sessionId}`` naming every session's transcript, where the store keeps that
        apart from the entry (SQLite); None: the entry's own ``sessionId`` names it."""
        return None

    def sessions_with_events(self) -> set[str] | None:
        """Session ids that have transcript events (one query), or None when unknown."""
        return None

    def stamped_records(self, unchanged: Callable[[str, bytes], bool]
                        ) -> Iterator[tuple[str, bytes, EntryRecord | None]]:
        """Every readable session as ``(key, stamp, record)``, in :meth:`order`. ``stamp``
        digests the stored row as it is (no parse); the record is read and parsed only where
        ``unchanged(key, stamp)`` is false, else it is None: the caller kept what it made of
        it. This default reads every entry; SQLite parses only the rows that changed."""
        for key in self.order():
            try:
                record = self.read(key)
            except SessionNotFound:
                continue
            stamp = hashlib.blake2b(record.data, digest_size=16).digest()
            yield key, stamp, None if unchanged(key, stamp) else record

    #: (fingerprint, sessionId -> keys, key -> sessionId) as of that fingerprint: see
    #: :meth:`key_with_session_id`.
    _session_id_index: tuple[object, dict[str, list[str]], dict[str, str]] | None = None

    @property
    def read_only(self) -> bool:
        return self.read_only_reason is not None

    def _require_writable(self) -> None:
        if self.read_only_reason is not None:
            raise ReadOnlyStore(f"{self.path}: store is read-only: {self.read_only_reason}")

    # -- reads ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def keys(self) -> list[str]:
        """Every session key, in store order (legacy) or directory order (directory)."""

    @abc.abstractmethod
    def read(self, key: str) -> EntryRecord:
        """One entry. :raises SessionNotFound: no such key. :raises StoreCorrupt: unreadable."""

    def named_keys(self) -> list[tuple[str, str]]:
        """``(directory name, key)`` of every session with a name, in :meth:`keys` order: what
        a listing shows, without encoding keys a layout already knows the names of."""
        named = []
        for key in self.keys():
            try:
                named.append((keys.encode(key), key))
            except InvalidKey:  # no name: a key openclaw could not have written either
                continue
        return named

    def key_of(self, name: str) -> str | None:
        """The key a directory name stands for, or None when it names no session.

        A hashed long name (``prefix~hash``) cannot be decoded: see :meth:`_key_of_hashed`.
        """
        if name.startswith("."):
            return None  # no encoded name starts with '.' (the directory store's own files)
        try:
            key = keys.decode(name)
        except InvalidName:
            return None
        return key if key is not None else self._key_of_hashed(name)

    def _key_of_hashed(self, name: str) -> str | None:
        """The key of a well-formed hashed name: found among the keys here; a layout that
        stores such names keeps the key beside them."""
        return next((candidate for candidate in self.keys()
                     if keys.matches(name, candidate)), None)

    def get(self, key: str) -> Entry:
        """The parsed entry of ``key``."""
        return self.read(key).entry

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in set(self.keys())

    @abc.abstractmethod
    def load(self) -> dict[str, Entry]:
        """The whole mapping, in store order. Skips (directory) or refuses (legacy) bad data."""

    def items(self) -> Iterator[tuple[str, Entry]]:
        yield from self.load().items()

    @abc.abstractmethod
    def fingerprint(self) -> object:
        """A cheap token that changes whenever the store changes (for caches and polling)."""

    # -- change tokens for caches (the filesystem's index); each layout knows its files ----------
    #: Whether each entry is a file of its own, so that :meth:`entry_token` and :meth:`peek`
    #: measure the entry itself (directory layout). Otherwise ``entry_token`` is the
    #: fingerprint and ``peek`` answers None.
    entry_files: bool = False

    def entry_token(self, name: str) -> object:
        """A cheap token for the session stored under folder name ``name`` that changes
        whenever its entry changes; :data:`MISSING` when it is surely not stored; None when
        only :meth:`read` can tell. Default: the store's fingerprint."""
        return self.fingerprint()

    def peek(self, name: str) -> tuple[bytes, int, object] | object | None:
        """``(bytes, mtime_ns, entry token)`` of the entry under folder name ``name``, read the
        cheapest way; :data:`MISSING`; or None: use :meth:`read`. Only for attributes: it
        skips the checks :meth:`read` makes."""
        return None

    def change_time(self, token: object) -> int | None:
        """The time (ns) of the last change recorded in a token of this store (a
        fingerprint or an entry token), or None when it records none."""
        if isinstance(token, int):
            return token
        if isinstance(token, tuple) and len(token) > 1 and isinstance(token[1], int):
            return token[1]
        return None

    def token_is_versioned(self, token: object) -> bool:
        """Whether a fingerprint carries a counter that moves with every change whatever the
        clock (SQLite's ``data_version``), so it can be trusted at once."""
        return False

    @abc.abstractmethod
    def remove_orphan_temps(self) -> list[Path]:
        """Delete temp files left by writers that died; returns what was removed."""

    # -- sessionIds --------------------------------------------------------------------------------
    def key_with_session_id(self, session_id: str, *,
                            other_than: str | tuple[str, ...] | None = None) -> str | None:
        """The key of a session whose entry has this ``sessionId`` (not ``other_than``: a key or
        keys to ignore), or None.

        Two keys with one sessionId point at one transcript, so a new session must not take an
        existing one's. Cheap: candidates come from :meth:`_session_id_candidates` and each is
        confirmed by reading its entry, so a stale candidate never refuses anything.
        """
        ignored = (other_than,) if isinstance(other_than, str) else other_than or ()
        for key in self._session_id_candidates(session_id):
            if key in ignored:
                continue
            try:
                entry = self.read(key).entry
            except (SessionNotFound, StoreCorrupt):
                continue
            if entry.get("sessionId") == session_id:
                return key
        return None

    def duplicate_session_ids(self) -> dict[str, list[str]]:
        """Every sessionId that more than one session has, with their keys (a full scan)."""
        index = self._scan_session_ids()
        return {session_id: found for session_id, found in index.items() if len(found) > 1}

    def _scan_session_ids(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for key in self.keys():
            try:
                session_id = self.read(key).entry.get("sessionId")
            except (SessionNotFound, StoreCorrupt):
                continue
            if isinstance(session_id, str):
                index.setdefault(session_id, []).append(key)
        return index

    def _session_id_candidates(self, session_id: str) -> Iterable[str]:
        """Keys that may have ``session_id``: from an index scanned once per store fingerprint
        (and kept up to date by this instance's own writes, see :meth:`_index_session`)."""
        fingerprint = self.fingerprint()
        cached = self._session_id_index
        if cached is None or cached[0] != fingerprint:
            by_key = {key: session_id for session_id, found in self._scan_session_ids().items()
                      for key in found}
            by_id: dict[str, list[str]] = {}
            for key, found_id in by_key.items():
                by_id.setdefault(found_id, []).append(key)
            cached = self._session_id_index = (fingerprint, by_id, by_key)
        return list(cached[1].get(session_id, ()))

    def _index_session(self, fingerprint_before: object, *, removed: str | None = None,
                       added: tuple[str, object] | None = None) -> None:
        """Carry the sessionId index over one of our own writes (``added``: key and its
        sessionId), if it was current before it: creating many sessions never rescans."""
        cached = self._session_id_index
        if cached is None or cached[0] != fingerprint_before:
            return
        _, by_id, by_key = cached
        for key in (removed, added[0] if added else None):
            old_id = by_key.pop(key, None) if key is not None else None
            if old_id is not None:
                by_id[old_id].remove(key)  # type: ignore[arg-type]
                if not by_id[old_id]:
                    del by_id[old_id]
        if added is not None and isinstance(added[1], str):
            by_key[added[0]] = added[1]
            by_id.setdefault(added[1], []).append(added[0])
        self._session_id_index = (self.fingerprint(), by_id, by_key)

    def _indexed_session_id(self, key: str) -> object:
        """What the index says ``key``'s sessionId is (None when unknown or not indexed)."""
        return self._session_id_index[2].get(key) if self._session_id_index else None

    def _refuse_duplicate_session_id(self, key: str, entry: Entry,
                                     replacing: str | None = None) -> None:
        """Called by ``put`` of a new key, under the lock: its sessionId must be its own
        (or that of ``replacing``, the session the caller deletes next: a move).

        :raises SessionExists: another session already has that sessionId (EEXIST).
        """
        session_id = entry.get("sessionId")
        if not isinstance(session_id, str):
            return
        ignored = (key,) if replacing is None else (key, replacing)
        other = self.key_with_session_id(session_id, other_than=ignored)
        if other is not None:
            raise SessionExists(
                f"session {key!r} not created: its sessionId {session_id!r} already belongs to "
                f"session {other!r} (two sessions would share one transcript); give it a new "
                "sessionId")

    # -- writes (each takes the store lock) -------------------------------------------------------
    @abc.abstractmethod
    def put(self, key: str, entry: Entry, *, replacing: str | None = None) -> bool:
        """Validate and write one entry. Returns False when it was already stored as is.

        A new key must not take another session's sessionId (:class:`SessionExists`), except
        that of ``replacing``: the session a move deletes right after this put.
        """

    def create(self, key: str, entry: Entry | None = None) -> str:
        """A new session whose sessionId and times the store chooses (SQLite: the Gateway's
        ``sessions.create``); the key made. File stores take a whole entry through
        :meth:`put` instead. :raises ReadOnlyStore: this store does not create sessions."""
        raise ReadOnlyStore(f"{self.path}: a {self.layout} store takes a whole entry (put), "
                            "not a create")

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove one session. :raises SessionNotFound: no such key."""

    @abc.abstractmethod
    def rename(self, old: str, new: str) -> None:
        """Move a session to another key in one step. :raises SessionExists: ``new`` exists."""

    @abc.abstractmethod
    def update(self, mutator: Mutator) -> UpdateSummary:
        """Apply ``mutator`` to the whole mapping under the lock; write only what changed.

        The mutator edits the dict in place or returns a new one.
        """


"""Which sessions the mount shows, under which names, with which attributes.

The view's memory of the store: key ⇄ directory name, the root listing, and per-session
attributes (size, mtime, ``updatedAt``, which is a session folder's mtime). Everything cached
here carries the store's change token it was derived under (see :mod:`sessionfs.fs.probe`) and
is revalidated against it on use, so a repeated ``ls -l`` of 100k sessions costs one ``lstat``
per session and a change behind the mount shows at the next call. Caches are bounded and
forget sessions a full listing no longer shows (a mount that sees sessions come and go must
not keep every key it ever saw).

No FUSE import; thread-safe for the view's use (dict operations are atomic, and every cached
answer is checked against its token before it is trusted).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from sessionfs import keys
from sessionfs.entry import updated_at_from_bytes
from sessionfs.errors import InvalidKey, SessionNotFound
from sessionfs.fs.paths import DIR_MODE
from sessionfs.fs.probe import MISSING, StoreProbe
from sessionfs.store.base import EntryRecord, Store

__all__ = ["SessionIndex", "SessionMeta"]

#: Beyond this many cached sessions the caches start over (far above any store seen).
_CACHE_LIMIT = 400_000


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """Attributes of one stored session, valid while the store's token for it is ``token``."""

    size: int  # of meta.json as shown (the bytes last written through the mount, if any)
    mtime_ns: int  # of the entry's file (legacy: see SessionIndex.entry_mtime)
    updated_ns: int  # updatedAt, the session folder's mtime
    token: object


class SessionIndex:
    """Names, listing and attributes of the sessions in ``store``.

    ``shown`` gives the bytes ``meta.json`` shows for a key (the store's, or the raw bytes a
    write through the mount stored); ``shown_size`` the size shown for a key whose stored
    canonical bytes are ``data``. Both come from the view, which owns what was written.
    """

    def __init__(self, store: Store, *, shown: Callable[[str], tuple[bytes, EntryRecord]],
                 shown_size: Callable[[str, bytes], int], probe_interval: float = 0.0,
                 peeked: Callable[[str, bytes, int, object], None] | None = None) -> None:
        self.store = store
        self._shown = shown
        self._shown_size = shown_size
        #: told ``(key, bytes, mtime_ns, token)`` of every settled entry read for attributes
        #: (a LOOKUP is followed by an open: the open need not read the file again)
        self._peeked = peeked
        self._probe = StoreProbe(store, interval=probe_interval)
        self._names: dict[str, str] = {}  # key -> name
        self._keys: dict[str, str] = {}  # name -> key (every name seen in a listing)
        self._hashed: dict[str, str] = {}  # hashed name -> key
        self._meta: dict[str, SessionMeta] = {}
        self._listing: tuple[object, list[tuple[str, int]]] | None = None
        # Legacy stores: one file, one mtime for all sessions. key -> (hash of the entry's
        # bytes, the mtime meta.json shows), see entry_mtime.
        self._shared_mtime = store.entries_share_one_file
        self._entry_mtimes: dict[str, tuple[int, int]] = {}
        self._updated: tuple[object, dict[str, int]] | None = None  # listing token, key -> ns

    def store_token(self) -> object:
        """The store's fingerprint (SQLite: at most one probe interval old)."""
        return self._probe.fingerprint()

    def settled(self, token: object) -> bool:
        """Whether an entry token is old enough to stand for its file's bytes (see
        :meth:`StoreProbe.settled`)."""
        return self._probe.settled(token)

    # -- names -----------------------------------------------------------------------------------
    def name_of(self, key: str) -> str:
        """The directory name of ``key`` (cached). :raises InvalidKey: key has no name."""
        name = self._names.get(key)
        if name is None:
            name = keys.encode(key)
            self._remember(key, name)
        return name

    def key_of(self, name: str) -> str | None:
        """The session key a directory name stands for, or None when no key has that name."""
        known = self._keys.get(name)
        if known is not None:
            return known
        key = self._hashed.get(name)
        if key is None:
            key = self.store.key_of(name)
            if key is not None and keys.is_hashed(name):
                self._hashed[name] = key
        return key

    def listed_key(self, name: str) -> str | None:
        """The key of a name the last listing showed (no store access)."""
        return self._keys.get(name)

    def _remember(self, key: str, name: str) -> None:
        if len(self._names) > _CACHE_LIMIT:
            self._names.clear()
            self._keys.clear()
        self._names[key] = name
        self._keys[name] = key
        if "~" in name:
            self._hashed[name] = key

    def forget(self, key: str) -> None:
        """Drop everything known about a session that is gone."""
        self._meta.pop(key, None)
        self._entry_mtimes.pop(key, None)
        name = self._names.pop(key, None)
        if name is not None:
            self._keys.pop(name, None)
            self._hashed.pop(name, None)

    def changed(self, key: str) -> None:
        """This mount changed ``key``'s entry: its cached attributes are stale."""
        self._meta.pop(key, None)

    # -- the root listing ------------------------------------------------------------------------
    def session_entries(self) -> tuple[list[tuple[str, int]], bool]:
        """``(name, mode)`` of every stored session, and whether that list was just read from
        the store (True) or is the same list object as last time, reused while the store's
        listing token is unchanged."""
        token = self._probe.listing_token()
        cached = self._listing
        if cached is not None and token is not None and cached[0] == token:
            return cached[1], False
        listed = []
        names = self._names
        for name, key in self.store.named_keys():
            if names.get(key) != name:
                self._remember(key, name)
            listed.append((name, DIR_MODE))
        self._listing = (token, listed) if token is not None else None
        times = self.store.updated_times() if token is not None else None
        self._updated = (token, times) if times is not None else None
        return listed, True

    def listed_updated(self, key: str) -> int | None:
        """A session folder's mtime from the last listing, while the store is unchanged since
        (layouts with an ``updated_at`` column); None: ask :meth:`meta_of`."""
        updated = self._updated
        if updated is None or updated[0] != self._probe.listing_token():
            return None
        return updated[1].get(key)

    def prune(self, listed: Collection[str], keep_keys: Collection[str],
              keep_names: Collection[str]) -> None:
        """Forget sessions a full listing no longer shows (deleted or renamed behind the mount),
        except those the view still has a use for."""
        for key, name in list(self._names.items()):
            if name not in listed and key not in keep_keys and name not in keep_names:
                self.forget(key)
        for key in list(self._meta):
            if key not in self._names:
                self._meta.pop(key, None)
        for key in list(self._entry_mtimes):
            if key not in self._names:
                self._entry_mtimes.pop(key, None)

    # -- attributes ------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        """Whether ``key`` is a stored session, reading no entry where the store keeps one
        file per entry (one ``lstat`` of it: an existence check costs no read, no parse);
        otherwise, and for folder names whose key file must be read first, :meth:`meta_of`."""
        name = self._names.get(key)
        if name is None:
            try:
                name = self.name_of(key)
            except InvalidKey:
                return False
        if self._probe.quick and not keys.is_hashed(name) and "~" not in name:
            token = self._probe.entry_token(name)
            if token is MISSING:
                self.forget(key)
                return False
            if token is not None:
                return True
        return self.meta_of(key) is not None

    def meta_of(self, key: str) -> SessionMeta | None:
        """Size, mtime and updatedAt of a stored session (None: not in the store)."""
        name = self._names.get(key)
        if name is None:
            try:
                name = self.name_of(key)
            except InvalidKey:
                return None
        cached = self._meta.get(key)
        token = None
        if cached is not None or not self._probe.quick:
            token = self._probe.entry_token(name)
            if token is MISSING:
                self.forget(key)
                return None
            if cached is not None and token is not None and cached.token == token:
                return cached
        meta = self._quick_meta(key, name)
        if meta is MISSING:
            self.forget(key)
            return None
        if meta is None:
            try:
                data, record = self._shown(key)
            except SessionNotFound:
                self.forget(key)
                return None
            updated_ns = self.store.shown_updated_ns(record)
            meta = SessionMeta(len(data), self.entry_mtime(record), updated_ns, token)
        assert isinstance(meta, SessionMeta)
        if meta.token is not None and self._probe.settled(meta.token):
            if len(self._meta) > _CACHE_LIMIT:
                self._meta.clear()
            self._meta[key] = meta
        else:
            self._meta.pop(key, None)
        return meta

    def entry_mtime(self, record: EntryRecord) -> int:
        """The mtime ``record``'s meta.json shows: its file's, except in a legacy store.

        There every entry lives in ``sessions.json``, whose mtime changes whenever the gateway
        touches any session; shown as every meta.json's mtime, vim would warn "changed since
        reading" and rsync resend everything. So a legacy session's mtime is sessions.json's
        mtime when this mount first saw the entry, and moves on (to sessions.json's mtime then)
        only when the entry's own bytes are seen to change. Remembered for the life of the mount.
        """
        if not self._shared_mtime:
            return record.mtime_ns
        digest = hash(record.data)
        known = self._entry_mtimes.get(record.key)
        if known is not None and known[0] == digest:
            return known[1]
        mtime_ns = record.mtime_ns
        if len(self._entry_mtimes) > _CACHE_LIMIT:
            self._entry_mtimes.clear()
        self._entry_mtimes[record.key] = (digest, mtime_ns)
        return mtime_ns

    def _quick_meta(self, key: str, name: str) -> SessionMeta | object | None:
        """Attributes from one direct read of a directory store's file (``ls -l`` of 100k
        sessions reads every entry once); MISSING, or None when only ``store.read`` can tell."""
        found = self._probe.quick_read(name)
        if found is None or found is MISSING:
            return found
        assert isinstance(found, tuple)
        data, mtime_ns, token = found
        updated = updated_at_from_bytes(data)
        if updated is None:
            return None
        if self._peeked is not None and token is not None and self._probe.settled(token):
            self._peeked(key, data, mtime_ns, token)
        return SessionMeta(self._shown_size(key, data), mtime_ns, int(updated * 1_000_000),
                           token)

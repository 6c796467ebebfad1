"""The mount's state, in one object: what the tree shows beyond the store, the open
``meta.json`` files, and every transition between them.

:class:`MountState` owns

* ``overlay``: key → (raw bytes written through the mount, the canonical bytes they produced);
  served while the store still holds those canonical bytes;
* ``hidden``: key → monotonic deadline: ``meta.json`` renamed away (vim, Emacs) or unlinked;
* ``pending``: folder name → mtime: a folder that is not (or no longer) a session;
* ``doomed``: key → :class:`Doom`: an unlinked ``meta.json`` whose session leaves the store
  after :data:`UNLINK_GRACE`;
* ``open_meta``: key → the open ``meta.json`` handles of that session (the latest writer last);
* the scratch tree, the error log and the session index.

It has the one ``commit`` (a buffer at close, bytes renamed onto ``meta.json``, a truncate by
path) and the one place deciding what happens to open files when their session is deleted,
replaced or moved (:meth:`MountState.retarget_open_files`).

Lock discipline:

* ``lock`` (re-entrant) guards every dict above, the scratch tree and the buffers of open
  handles. It is never held across store I/O.
* ``commit_lock`` (re-entrant) serialises this mount's store mutations (put, delete, rename)
  together with the checks that decide them; the store's own lock serialises us with others.
* Order: ``commit_lock`` before ``lock``, never the other way round. The index keeps its own
  consistency (atomic dict operations, every cached answer checked against its store token).

No FUSE import; :mod:`sessionfs.fs.view` and :mod:`sessionfs.fs.namespace` use this object,
it uses neither.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from sessionfs import jsonfmt
from sessionfs.entry import parse_entry, serialize_entry
from sessionfs.errors import (
    GatewayUnavailable,
    InvalidJSON,
    ReadOnlyStore,
    SessionfsError,
    SessionNotFound,
)
from sessionfs.fs.control import ErrorLog
from sessionfs.fs.handles import Handle, MetaHandle
from sessionfs.fs.index import SessionIndex
from sessionfs.fs.paths import META_NAME, fail
from sessionfs.fs.scratch import ScratchBudget, ScratchFile, ScratchTree
from sessionfs.store.base import EntryRecord, Store

if TYPE_CHECKING:
    from sessionfs.store.sqlite import SqliteStore

__all__ = ["DOOM_GRACE", "UNLINK_GRACE", "Doom", "MountState"]

log = logging.getLogger("sessionfs.fs")

#: How long a deleted ``meta.json`` keeps its session in the store, invisible through the mount,
#: in case a new ``meta.json`` is created in the same folder: ``install``, ``tar -x`` and
#: ``cp --remove-destination`` unlink the old file and then create the new one, which must
#: behave like a save (the old entry stays until the new one commits, and for good if the new
#: one is refused). A plain ``rm`` reaches the store this much later, or at once when the folder
#: is removed or renamed, or at unmount.
UNLINK_GRACE = 0.5
#: Entries up to this size are kept after a read-only open, so that the next open of the
#: unchanged file costs one ``lstat`` instead of a read and a parse; at most
#: SNAPSHOT_CACHE_BYTES of them (10k sessions of ~600 bytes: 6 MB).
SNAPSHOT_ENTRY_MAX = 8 << 10
SNAPSHOT_CACHE_BYTES = 16 << 20
#: Entries read for attributes (a LOOKUP, a listing's READDIRPLUS), kept for the open that
#: follows (see :meth:`MountState.snapshot`), at most this many bytes: ``ls -l`` or a walk of
#: 10k sessions of ~600 bytes keeps them all, 100k start over.
PEEKED_BYTES = 16 << 20
#: Gateway stores: (key, pid) -> bytes shown, for this many recent readers (see
#: MountState.shown_by_pid).
SHOWN_PER_PID = 1024
#: Kept for callers of the earlier name: libfuse's hidden renames now wait :data:`UNLINK_GRACE`.
DOOM_GRACE = UNLINK_GRACE


class EntryBytes:
    """key -> ``(entry token, bytes, mtime_ns)`` of small entries, at most ``budget`` bytes in
    all: beyond it the cache starts over (each entry is one file read away). Writers hold the
    state's lock; a ``get`` is one dict lookup."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._items: dict[str, tuple[object, bytes, int]] = {}
        self._bytes = 0

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> tuple[object, bytes, int] | None:
        return self._items.get(key)

    def put(self, key: str, token: object, data: bytes, mtime_ns: int = 0) -> None:
        self.pop(key)
        if self._bytes + len(data) > self._budget:
            self._items.clear()
            self._bytes = 0
        self._items[key] = (token, data, mtime_ns)
        self._bytes += len(data)

    def pop(self, key: str) -> tuple[object, bytes, int] | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        return old


@dataclass(frozen=True, slots=True)
class Doom:
    """A session whose ``meta.json`` was unlinked: deleted from the store after the grace.

    Two ways in: ``unlink()`` of a closed meta.json, and libfuse's rename of an open one to
    ``.fuse_hidden…``, which stands for an ``unlink()`` and, right before the real rename on the
    same thread, for the first half of a rename over the open file. Whatever stores the key
    again in the meantime (a create, a rename onto it) cancels the delete.
    """

    top: str
    thread: int
    since: float


class MountState:
    """The state of one mounted store (see the module docstring for what and which lock)."""

    def __init__(self, store: Store, *, max_entry_size: int, read_only_reason: str | None,
                 hide_grace: float, unlink_grace: float, scratch_max_bytes: int,
                 scratch_max_files: int, probe_interval: float) -> None:
        self.store = store
        #: The clock of every grace and age kept here (hidden names, deferred deletes, what
        #: the kernel was told): monotonic seconds. A test sets its own to step past a grace
        #: instead of sleeping through it (the timer that settles deletes still fires on real
        #: time, and :meth:`settle` then asks this clock).
        self.clock: Callable[[], float] = time.monotonic
        self.max_entry_size = max_entry_size
        self.read_only_reason = read_only_reason
        self.hide_grace = hide_grace
        self.unlink_grace = unlink_grace
        self.lock = threading.RLock()
        self.commit_lock = threading.RLock()
        self.errors = ErrorLog()
        self.scratch = ScratchTree(ScratchBudget(scratch_max_bytes, scratch_max_files,
                                                 on_refuse=self.reject))
        self.pending: dict[str, int] = {}  # mkdir'd names, not yet sessions -> mtime_ns
        self.hidden: dict[str, float] = {}  # key -> monotonic deadline (meta.json renamed away)
        self.overlay: dict[str, tuple[bytes, bytes]] = {}  # key -> (raw written, canonical)
        self.doomed: dict[str, Doom] = {}
        self.open_meta: dict[str, list[MetaHandle]] = {}
        #: key -> (size of meta.json last answered to the kernel, monotonic time that answer
        #: last changed; 0 for the first answer); see :meth:`page_cache_safe`. Size -1 from
        #: when this mount changes the file (a writer, a commit, a rename, a delete), since
        #: the kernel then sets the size itself.
        self.told: dict[str, tuple[int, float]] = {}
        #: small entries read and parsed at an open (:meth:`snapshot`)
        self.snapshots = EntryBytes(SNAPSHOT_CACHE_BYTES)
        #: small entries the index just read for attributes, not yet parsed: the next open's
        #: read (:meth:`_peeked`)
        self.peeked = EntryBytes(PEEKED_BYTES)
        #: How long the kernel may keep an attribute answer (``--timeout``), set by the view.
        self.attr_timeout = 1.0
        # SQLite: the store's fingerprint is probed at most every probe_interval.
        self.index = SessionIndex(store, shown=self.served, shown_size=self.shown_size,
                                  probe_interval=probe_interval, peeked=self._peeked)
        #: Set by the adapter: drop the kernel's cached attributes of a path (a session folder
        #: whose mtime, i.e. updatedAt, this mount just changed).
        self.invalidate: Callable[[str], None] | None = None
        #: A store written through the openclaw Gateway (SQLite era): writable while a Gateway
        #: is live, decided per write; a save is diffed against what the writer was shown.
        #: The same store typed as the one kind that says so (SqliteStore), for the writes
        #: only such a store has.
        self.gateway_store: SqliteStore | None = (
            cast("SqliteStore", store) if store.writes_through_gateway
            else None)
        self.through_gateway = self.gateway_store is not None
        #: Gateway stores: key -> the meta.json bytes last shown to a reader (or last saved
        #: here), the base a save is diffed against (see :meth:`commit`); and the same per
        #: (key, pid): an editor's save is diffed against what THAT process read, even when
        #: another process (a cat, an indexer) read a newer version in between.
        self.shown = EntryBytes(SNAPSHOT_CACHE_BYTES)
        self.shown_by_pid: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        #: Set by the adapter: ``(uid, pid)`` of the process making the current call (writes
        #: through the Gateway's credentials are the mounting user's or root's only).
        self.caller: Callable[[], tuple[int, int]] | None = None
        self.owner_uid = os.geteuid()

    # -- what the tree shows ----------------------------------------------------------------------
    def served(self, key: str) -> tuple[bytes, EntryRecord]:
        """The bytes ``meta.json`` shows now. :raises SessionNotFound:"""
        record = self.store.read(key)
        with self.lock:
            overlay = self.overlay.get(key)
            if overlay is not None:
                if overlay[1] == record.data:
                    return overlay[0], record
                del self.overlay[key]  # changed behind the mount: show the store's bytes
        return record.data, record

    def snapshot(self, key: str, name: str) -> tuple[bytes, int] | None:
        """``(bytes meta.json shows, mtime_ns)`` for a read-only open, or None when only
        :meth:`served` can tell.

        Small entries already read and parsed come from :attr:`snapshots` after one ``lstat``
        shows the file unchanged (its entry token, trusted once settled as the attribute cache
        trusts it); others from one read of the file (:meth:`Store.peek`), parsed (as
        ``store.read`` does, so a damaged file still fails the open) and kept."""
        if not self.store.entry_files:
            return None
        cached = self.snapshots.get(key)
        if cached is not None:
            token = self.store.entry_token(name)
            mtime_ns = self.store.change_time(token)
            if token == cached[0] and mtime_ns is not None:
                return self._shown_bytes(key, cached[1]), mtime_ns
        found: tuple[bytes, int, object] | object | None = self._peeked_now(key, name)
        if found is None:
            found = self.store.peek(name)
        if not isinstance(found, tuple):
            return None
        data, mtime_ns, token = found
        try:
            entry = jsonfmt.loads(data)
        except InvalidJSON:
            return None  # store.read says what is wrong
        if not isinstance(entry, dict):
            return None
        if token is not None and len(data) <= SNAPSHOT_ENTRY_MAX and self.index.settled(token):
            with self.lock:
                self.snapshots.put(key, token, data)
        return self._shown_bytes(key, data), mtime_ns

    def _peeked(self, key: str, data: bytes, mtime_ns: int, token: object) -> None:
        """The index read ``key``'s entry for a LOOKUP (settled ``token``): keep small ones
        for the open that usually follows (the first ``cat`` of a session reads it once)."""
        if len(data) > SNAPSHOT_ENTRY_MAX or key in self.snapshots:
            return
        with self.lock:
            self.peeked.put(key, token, data, mtime_ns)

    def _peeked_now(self, key: str, name: str) -> tuple[bytes, int, object] | None:
        """What :meth:`_peeked` kept for ``key``, while one ``lstat`` shows the same token."""
        with self.lock:
            kept = self.peeked.pop(key)
        if kept is None:
            return None
        token, data, mtime_ns = kept
        return (data, mtime_ns, token) if self.store.entry_token(name) == token else None

    def _shown_bytes(self, key: str, data: bytes) -> bytes:
        """``data`` (the store's bytes for ``key``) as meta.json shows them (the overlay)."""
        with self.lock:
            overlay = self.overlay.get(key)
            if overlay is not None:
                if overlay[1] == data:
                    return overlay[0]
                del self.overlay[key]  # changed behind the mount: show the store's bytes
        return data

    # -- what the kernel was told -----------------------------------------------------------------
    def tell_size(self, key: str, size: int) -> None:
        """The kernel was just answered ``size`` for ``key``'s meta.json (getattr)."""
        told = self.told.get(key)
        if told is None:  # the first answer about this file: the kernel holds no other
            if len(self.told) > 400_000:
                self.told.clear()
            self.told[key] = (size, 0.0)
        elif told[0] != size:
            self.told[key] = (size, self.clock())

    def untold(self, key: str) -> None:
        """This mount changed ``key``'s meta.json: the kernel may hold a size of its own."""
        self.told[key] = (-1, self.clock())

    def page_cache_safe(self, handle: MetaHandle) -> bool:
        """Whether a read-only ``handle`` may be served through the kernel's page cache
        instead of with direct I/O (which costs a READ more per file: the one at EOF).

        The page cache and the size are per inode, the snapshot per open (see
        :attr:`Handle.direct_io`). Through the cache a reader is served right exactly when
        the size the kernel holds is its snapshot's size, and no other open file of the inode
        can put other bytes into the cache. So: the last size the kernel was told is this
        snapshot's, and has not changed for longer than the kernel may keep an answer (an
        older answer could still be the one it holds); no writer is open (writes and
        ``O_TRUNC`` set the size in the kernel); every other open file holds the same bytes.
        A size the kernel drops meanwhile is asked again with this handle, which answers its
        own snapshot's. The open itself drops the cached pages (no ``keep_cache``). Under the
        lock.

        Only where nothing can write through this mount (a read-only store or mount): a
        writer opened *later* with ``O_TRUNC`` makes the kernel set the inode's size to 0 on
        its own, and a page-cache reader then meets that size between its check and its copy
        (or has the size it asked for discarded as older than the truncation) and reads 0
        bytes: the soak's reader met it, a reader racing ``open(..., "wb")`` saves does within
        seconds. Direct I/O reads the snapshot whatever size the kernel holds."""
        if self.read_only_reason is None:
            return False
        told = self.told.get(handle.key)
        if told is None or told[0] != handle.size():  # never told, or told another size
            return False
        if self.clock() - told[1] <= self.attr_timeout + 0.1:
            return False
        data = handle.data()
        return all(not other.writable and other.data() == data
                   for other in self.open_meta.get(handle.key, ()) if other is not handle)

    def cached_reader(self, key: str) -> MetaHandle | None:
        """An open reader of ``key``'s meta.json served through the page cache, if any (under
        the lock). While it is open, every size the kernel is told for that file is its
        snapshot's: the kernel holds one size per inode and cuts a page-cache read at it, so
        a smaller one (a save, a change behind the mount) would cut the reader's entry short.
        New opens meanwhile get the new bytes whole (with direct I/O, which ignores the
        kernel's size); ``stat`` shows the new size once the reader closes."""
        for handle in self.open_meta.get(key, ()):
            if not handle.direct_io:
                return handle
        return None

    def shown_size(self, key: str, data: bytes) -> int:
        """The size ``meta.json`` shows when the store holds ``data`` for ``key``."""
        with self.lock:
            overlay = self.overlay.get(key)
        return len(overlay[0]) if overlay is not None and overlay[1] == data else len(data)

    def hidden_now(self, key: str) -> bool:
        deadline = self.hidden.get(key)
        if deadline is None:
            return False
        if self.clock() < deadline:
            return True
        self.hidden.pop(key, None)
        return False

    def dir_exists(self, top: str, key: str | None) -> str | None:
        """``"session"``, ``"pending"`` (a directory that is not a session yet) or None."""
        if key is not None and self.index.exists(key):
            return "session"
        with self.lock:
            if top in self.pending or self.scratch.has_any(top):
                return "pending"
        return None

    def require_dir(self, top: str) -> tuple[str | None, str]:
        key = self.index.key_of(top)
        state = self.dir_exists(top, key)
        if state is None:
            fail(errno.ENOENT)
        return key, state

    def require_writable(self) -> None:
        if self.read_only_reason is not None:
            raise ReadOnlyStore(f"read-only: {self.read_only_reason}")
        if self.through_gateway:
            self._require_gateway()

    def _require_gateway(self) -> None:
        """A write through the Gateway: only by the user who mounted (or root), who holds its
        credentials (EACCES for others, whatever the modes); and only while a Gateway is live
        (EROFS with the reason: it may start or stop at any time, no remount needed)."""
        uid = self.caller()[0] if self.caller is not None else self.owner_uid
        if uid not in (self.owner_uid, 0):
            reason = (f"only the user who mounted (uid {self.owner_uid}) or root may change "
                      "sessions: writes go through the openclaw Gateway with that user's "
                      "credentials")
            self.errors.add("/", errno.EACCES, f"uid {uid}: {reason}")
            raise PermissionError(errno.EACCES, reason)
        missing = self.store.read_only_reason  # is a Gateway live now?
        if missing is not None:
            self.errors.add("/", errno.EROFS, f"read-only: {missing}", quiet=True)
            raise GatewayUnavailable(f"read-only: {missing}")

    def remember_shown(self, key: str, data: bytes) -> None:
        """A reader was shown ``data`` as ``key``'s meta.json: the base of its save (under the
        lock; Gateway stores only)."""
        if self.through_gateway:
            self.shown.put(key, None, data)
            pid = self._caller_pid()
            if pid:
                self.shown_by_pid[(key, pid)] = data
                self.shown_by_pid.move_to_end((key, pid))
                while len(self.shown_by_pid) > SHOWN_PER_PID:
                    self.shown_by_pid.popitem(last=False)

    def _caller_pid(self) -> int:
        try:
            return self.caller()[1] if self.caller is not None else 0
        except Exception:  # outside a FUSE call (a timer): no process to name
            return 0

    def _base_of(self, key: str) -> dict[str, object] | None:
        """The entry the writer was shown: what this process read, else what a reader was
        last shown (None: unknown, the stored entry is the base)."""
        pid = self._caller_pid()
        with self.lock:
            data = self.shown_by_pid.get((key, pid)) if pid else None
            if data is None:
                found = self.shown.get(key)
                data = found[1] if found is not None else None
        if data is None:
            return None
        try:
            base = jsonfmt.loads(data)
        except InvalidJSON:
            return None
        return base if isinstance(base, dict) else None

    def kept_keys(self) -> set[str]:
        """Keys the index must remember even when a listing no longer shows them (under the
        lock)."""
        return {*self.open_meta, *self.overlay, *self.hidden, *self.doomed}

    # -- errors and the kernel -------------------------------------------------------------------
    def reject(self, path: str, exc: SessionfsError | OSError) -> None:
        """A write was refused: record it for ``/.sessionfs/errors`` and the log."""
        self.errors.add(path, exc.errno, str(exc))

    def notify(self, *tops: str) -> None:
        """Tell the kernel that these session folders' attributes changed (best effort)."""
        if self.invalidate is None:
            return
        for top in tops:
            try:
                self.invalidate(f"/{top}")
            except Exception:  # the kernel never saw the path, or the mount is going away
                log.debug("invalidating /%s failed", top, exc_info=True)

    # -- open meta.json files --------------------------------------------------------------------
    def opened(self, handle: MetaHandle) -> None:
        """Register an open ``meta.json`` (under the lock)."""
        if handle.writable:
            self.untold(handle.key)
        self.open_meta.setdefault(handle.key, []).append(handle)

    def closed(self, handle: MetaHandle) -> None:
        """The last descriptor of ``handle`` is gone."""
        with self.lock:
            opened = self.open_meta.get(handle.key)
            if opened is not None and handle in opened:
                opened.remove(handle)
                if not opened:
                    del self.open_meta[handle.key]

    def writers(self, key: str) -> list[MetaHandle]:
        """The open writable handles of ``key``'s meta.json, the latest writer last."""
        with self.lock:
            return [h for h in self.open_meta.get(key, ()) if h.writable]

    def buffer_changed(self, handle: MetaHandle) -> None:
        """Called by a handle (under the lock) after its buffer changed."""
        self.untold(handle.key)
        opened = self.open_meta.get(handle.key)
        if opened and opened[-1] is not handle and handle in opened:
            opened.remove(handle)
            opened.append(handle)  # the latest writer is last

    def retarget_open_files(self, key: str, *, moved_to: tuple[str, str] | None = None) -> None:
        """What happens to the files open on ``key``'s meta.json when that file goes away
        (under the lock): deleted or replaced (``moved_to`` None), they commit nothing more, as
        writes to an unlinked file reach nothing; moved to ``(key, folder)``, they follow it as
        an open file follows its inode, and commit there. Never do they bring ``key`` back."""
        handles = self.open_meta.pop(key, [])
        self.untold(key)
        if moved_to is not None:
            self.untold(moved_to[0])
        if moved_to is None:
            for handle in handles:
                handle.detach()
            return
        dst_key, dst_top = moved_to
        for handle in handles:
            handle.key, handle.top = dst_key, dst_top
            self.open_meta.setdefault(dst_key, []).append(handle)

    # -- committing ------------------------------------------------------------------------------
    def commit(self, key: str, top: str, raw: bytes, *, source: MetaHandle | None = None,
               moving_from: str | None = None, replaces_file: bool = False) -> bool:
        """Validate ``raw`` as the entry of ``key`` and store it (one ``put``): the one way
        bytes reach the store from this mount.

        :param source: the open file whose buffer ``raw`` is: checked again under the commit
            lock, so that a file deleted (detached) or moved meanwhile commits nothing, or
            commits where it went.
        :param moving_from: the session the bytes leave (a ``meta.json`` moved between
            sessions), which may share their sessionId.
        :param replaces_file: the bytes arrive by rename onto ``meta.json``: a pending delete
            of ``key`` is off whatever happens (a rename onto an unlinked meta.json is a save),
            and the files open on the ``meta.json`` renamed over are detached.
        :return: whether the store changed (False: the entry was already stored as is).
        :raises InvalidJSON, InvalidEntry, EntryTooLarge: refused; recorded in ``errors``.
        """
        self.require_writable()
        path = f"/{top}/{META_NAME}"
        with self.commit_lock:
            if source is not None:
                with self.lock:
                    if source.detached:  # its meta.json was deleted or replaced meanwhile
                        return False
                    key, top = source.key, source.top
                path = f"/{top}/{META_NAME}"
            cancelled = False
            if replaces_file:
                with self.lock:
                    cancelled = self.cancel_doom(key)
            try:
                entry = parse_entry(raw, key=key, max_size=self.max_entry_size)
                if self.gateway_store is not None and moving_from is None:
                    # one guarded sessions.patch of what changed since the writer's read
                    changed = self.gateway_store.put_edited(key, entry, self._base_of(key))
                else:
                    # a new key may not take another session's sessionId, except the one it
                    # moves away from (EEXIST from the store, recorded below like any refusal)
                    changed = self.store.put(key, entry, replacing=moving_from)
            except ReadOnlyStore as exc:
                if self.through_gateway:  # the Gateway stopped: say so in errors
                    self.reject(path, exc)
                raise
            except (SessionfsError, OSError) as exc:  # invalid, lock timeout, ENOSPC, EIO, ...
                if cancelled:  # refused: the old entry stays, and shows again
                    with self.lock:
                        self.hidden.pop(key, None)
                self.reject(path, exc)
                raise
            canonical = serialize_entry(entry)
            with self.lock:
                self._stored(key, top)
                if raw != canonical:
                    self.overlay[key] = (raw, canonical)
                self.remember_shown(key, raw)  # the writer has seen its own bytes
                if replaces_file:  # the file renamed over is gone, as on any filesystem
                    self.retarget_open_files(key)
        if changed or replaces_file:
            self.notify(top)
        return changed

    def _stored(self, key: str, top: str) -> None:
        """Bookkeeping after ``key`` was written by this mount (under the lock)."""
        self.overlay.pop(key, None)
        self.index.changed(key)
        self.untold(key)
        self.hidden.pop(key, None)
        self.doomed.pop(key, None)  # a rename over an open meta.json: nothing to delete
        self.pending.pop(top, None)

    def forget_session(self, key: str) -> None:
        """``key`` left the store (under the lock)."""
        self.doomed.pop(key, None)
        self.overlay.pop(key, None)
        self.hidden.pop(key, None)
        self.untold(key)
        self.snapshots.pop(key)
        self.peeked.pop(key)
        self.index.forget(key)

    # -- open files' buffers (a scratch file's is shared by every handle open on it) -------------
    def read_open_file(self, handle: Handle, size: int, offset: int) -> bytes:
        with self.lock:
            return handle.read(size, offset)

    def write_open_file(self, handle: Handle, data: bytes, offset: int) -> int:
        with self.lock:
            return handle.write(data, offset)

    def truncate_open_file(self, handle: Handle, length: int) -> None:
        with self.lock:
            handle.truncate(length)

    def being_created(self, key: str) -> bool:
        """Whether a ``meta.json`` of ``key`` is open for creation (listed while it is)."""
        with self.lock:
            return any(h.creating for h in self.open_meta.get(key, ()))

    def prune_index(self, listed: set[str]) -> None:
        """Forget what the index knows of sessions no longer listed, except those this mount
        still shows (open, hidden, overlaid) and folders not yet sessions."""
        with self.lock:
            self.index.prune(listed, self.kept_keys(), set(self.pending))

    # -- names: the namespace's transitions, each under the lock it needs -----------------------
    def scratch_file(self, directory: str, name: str) -> ScratchFile | None:
        """The editor file (or lock link) kept in memory at ``directory/name``, if any."""
        with self.lock:
            return self.scratch.get(directory, name)

    def new_dir(self, top: str) -> None:
        """``mkdir`` of a folder that is not a session yet (EEXIST over a scratch file)."""
        with self.lock:
            if self.scratch.get("", top) is not None:
                fail(errno.EEXIST)
            self.pending[top] = time.time_ns()

    def created_through_gateway(self, key: str) -> None:
        """The Gateway created ``key`` (``sessions.create``): listed from the store now."""
        with self.lock:
            self.index.changed(key)

    def remove_dir(self, top: str) -> None:
        """``rmdir`` of a folder that holds no session: ENOTEMPTY while files are in it;
        files open in it keep their bytes."""
        with self.lock:
            if self.scratch.has_any(top):
                fail(errno.ENOTEMPTY)
            self.pending.pop(top, None)
            self.scratch.drop_dir(top)

    def put_scratch(self, directory: str, name: str, file: ScratchFile, *,
                    exclusive: bool = False) -> None:
        """Keep ``file`` at ``directory/name`` (``exclusive``: EEXIST when one is there)."""
        with self.lock:
            if exclusive and self.scratch.get(directory, name) is not None:
                fail(errno.EEXIST)
            self.scratch.put(directory, name, file)

    def remove_scratch(self, directory: str, name: str) -> None:
        """``unlink`` of an editor file (ENOENT when there is none)."""
        with self.lock:
            if self.scratch.pop(directory, name) is None:
                fail(errno.ENOENT)

    def move_scratch(self, src: tuple[str, str], dst: tuple[str, str] | None) -> None:
        """An editor file moves to ``dst`` (None: it became a ``meta.json`` and is gone)."""
        with self.lock:
            file = self.scratch.pop(*src)
            if file is not None and dst is not None:
                self.scratch.put(*dst, file)

    def hide_renamed_away(self, key: str, directory: str, name: str, file: ScratchFile) -> None:
        """``meta.json`` renamed to an editor's backup name (``meta.json~``): the bytes live on
        at the new name, the session stays and its meta.json is hidden for the grace."""
        with self.lock:
            self.scratch.put(directory, name, file)
            self.hidden[key] = self.clock() + self.hide_grace
            self.index.changed(key)

    def require_dir_target(self, top: str, state: str | None) -> None:
        """A folder may be renamed onto ``top`` (in ``state``) only if it is no session, no
        file and empty."""
        with self.lock:
            if self.scratch.get("", top) is not None:
                fail(errno.ENOTDIR)
            if state == "session":
                fail(errno.ENOTEMPTY, f"{top} is a session")
            if state == "pending" and self.scratch.has_any(top):
                fail(errno.ENOTEMPTY)

    def dir_renamed(self, src: tuple[str | None, str], dst: tuple[str, str],
                    session: bool) -> None:
        """Folder ``src`` (key, top) is now ``dst`` (a session moved by the store when
        ``session``): what the mount remembers and the files open in it follow."""
        (src_key, src_top), (dst_key, dst_top) = src, dst
        with self.lock:
            if session:
                assert src_key is not None
                self.forget_session(src_key)
                self.forget_session(dst_key)
                self.retarget_open_files(src_key, moved_to=(dst_key, dst_top))
            self.pending.pop(dst_top, None)
            pending = self.pending.pop(src_top, None)
            if not session and pending is not None:
                self.pending[dst_top] = pending
            self.scratch.drop_dir(dst_top)
            self.scratch.move_dir(src_top, dst_top)
        self.notify(src_top, dst_top)

    def move_session(self, src: tuple[str, str], dst: tuple[str, str], data: bytes) -> None:
        """``meta.json`` renamed onto another session's: copy, then delete (the entry is never
        in neither place). The source folder stays until rmdir; files open on the source
        follow it to the target, never do they bring the source back."""
        (src_key, src_top), (dst_key, dst_top) = src, dst
        self.commit(dst_key, dst_top, data, moving_from=src_key, replaces_file=True)
        with self.lock:
            self.pending[src_top] = time.time_ns()
        try:
            self.store.delete(src_key)
        finally:
            with self.lock:
                self.forget_session(src_key)
                self.retarget_open_files(src_key, moved_to=(dst_key, dst_top))
        self.notify(src_top)

    # -- deferred deletes ------------------------------------------------------------------------
    @property
    def has_dooms(self) -> bool:
        return bool(self.doomed)

    def doom(self, key: str, top: str) -> None:
        """Hide ``key``'s meta.json now and delete the session after the grace (see Doom)."""
        with self.lock:
            self.hidden[key] = float("inf")
            self.doomed[key] = Doom(top, threading.get_ident(), self.clock())
            self.index.changed(key)
            self.untold(key)
        timer = threading.Timer(self.unlink_grace + 0.02, self.settle)
        timer.daemon = True
        timer.start()
        self.notify(top)

    def cancel_doom(self, key: str) -> bool:
        """Something stores ``key`` again: its pending delete is off (under the lock)."""
        return self.doomed.pop(key, None) is not None

    def settle(self, *, exempt: str | None = None, everything: bool = False) -> None:
        """Carry out the deletes whose grace (:data:`UNLINK_GRACE`) is over.

        Called at the start of every callback (by the adapter), by a timer, and with
        ``everything`` at unmount. ``exempt``: the key a rename is about to store again.
        """
        if not self.doomed:
            return
        now = self.clock()
        with self.lock:
            due = [key for key, doom in self.doomed.items() if key != exempt and (
                everything or now - doom.since >= self.unlink_grace)]
        for key in due:
            self.execute_doom(key)

    def execute_doom_of(self, top: str) -> None:
        """The folder itself is being removed or moved: a pending delete in it happens now."""
        key = self.index.key_of(top)
        if key is not None and key in self.doomed:
            self.execute_doom(key)

    def execute_doom(self, key: str) -> None:
        with self.commit_lock:
            with self.lock:
                doom = self.doomed.pop(key, None)
                if doom is None:
                    return
                # the folder stays until rmdir: never missing while the store drops the entry
                had_pending = doom.top in self.pending
                self.pending.setdefault(doom.top, time.time_ns())
            try:
                self.store.delete(key)
            except SessionNotFound:
                pass
            except (SessionfsError, OSError) as exc:
                log.warning("could not delete %r (its meta.json was unlinked): %s", key, exc)
                if self.through_gateway:  # the Gateway stopped or refused: errors says so
                    self.errors.add(f"/{doom.top}", getattr(exc, "errno", None),
                                    f"delete refused, the session stays: {exc}", quiet=True)
                with self.lock:
                    self.hidden.pop(key, None)
                    if not had_pending:
                        self.pending.pop(doom.top, None)
                return
            with self.lock:
                self.forget_session(key)
                self.pending[doom.top] = time.time_ns()
                self.retarget_open_files(key)  # writing to an unlinked file does not recreate it
        self.notify(doom.top)

"""What a session store looks like as a directory tree, and what each file operation does to it.

::

    /                           one directory per session, named by the key encoding
    /<name>/meta.json           the entry (EntryRecord.data, or the exact bytes last written here)
    /<name>/<anything else>     scratch files (swap, backup, temp): memory only
    /.sessionfs/errors|status   control files (what a restore writes there is discarded)

The view answers path-level questions (attributes, listings, namespace changes) and owns the
open-file table; :mod:`sessionfs.fs.operations` only translates kernel callbacks into these
calls. Nothing here imports mfusepy, so all of it is tested without a kernel.

Rules worth knowing:

* Every store call is O(1) in the number of sessions except listing the root (``keys()``) and
  ``status``; ``load()`` is never called.
* Writes to ``meta.json`` are buffered per open file and committed (validated, one
  ``store.put``) at flush/fsync/release; see :mod:`sessionfs.fs.handles`.
* What you write is what you read back: after a commit the raw bytes are served for as long
  as the store still holds the canonical bytes they produced (the *overlay*).
* Renaming ``meta.json`` away (vim, Emacs backups) never deletes the session; the name is only
  hidden until a new ``meta.json`` appears or a grace period ends. ``unlink`` does delete:
  the file is gone through the mount at once, the session leaves the store after
  ``UNLINK_GRACE`` unless a new ``meta.json`` is created in the folder first (install, tar -x:
  then it is a save). libfuse turns ``unlink`` of an *open* file, and the first half of a
  rename over one, into a rename to ``.fuse_hidden…``: the same deferred delete, which the
  rename-over cancels (:meth:`SessionView.settle`), so a rename-over never leaves a gap.
* The view's own state is guarded by one lock that is never held across store I/O; store
  mutations from this mount are serialised by a second lock (the store lock does the rest).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

from sessionfs.entry import DEFAULT_MAX_ENTRY_BYTES
from sessionfs.errors import SessionfsError, SessionNotFound
from sessionfs.fs.access import Access, DiskCaps, LiveAccess, Shown
from sessionfs.fs.control import (
    CONTROL_DIR,
    CONTROL_FILES,
    ControlFiles,
    RestoreSinks,
    SinkFile,
    render_status,
)
from sessionfs.fs.handles import (
    ConstHandle,
    Handle,
    HandleTable,
    MetaHandle,
    ScratchHandle,
    SinkHandle,
)
from sessionfs.fs.index import SessionIndex
from sessionfs.fs.mountstate import UNLINK_GRACE, MountState
from sessionfs.fs.namespace import Namespace
from sessionfs.fs.paths import (
    CONTROL,
    CONTROL_DIR_MODE,
    CONTROL_FILE,
    CONTROL_FILE_MODE,
    DIR_MODE,
    FILE_MODE,
    INNER,
    META,
    META_NAME,
    RENAME_NOREPLACE,
    ROOT,
    TOP,
    Where,
    fail,
    parse_path,
)
from sessionfs.fs.scratch import (
    DEFAULT_SCRATCH_MAX_BYTES,
    DEFAULT_SCRATCH_MAX_FILES,
    ScratchFile,
    ScratchTree,
    is_root_scratch_name,
)
from sessionfs.fs.transcript import (
    TRANSCRIPT_MODE,
    TRANSCRIPT_NAME,
    TranscriptHandle,
    TranscriptLeaf,
    store_status_lines,
)
from sessionfs.fs.viewapi import DirectoryHandles, DirHandle
from sessionfs.store import StoreLocation, legacy_beside_token, locate_store, reappeared_legacy
from sessionfs.store.base import EntryRecord, Store

__all__ = ["META_NAME", "DirHandle", "DirectoryHandles", "SessionView", "Where", "parse_path"]

log = logging.getLogger("sessionfs.fs")


class SessionView(DirectoryHandles):
    """The mounted tree over one store. Thread-safe; every method may raise OSError or
    SessionfsError (whose ``errno`` the adapter answers).

    Its parts: :attr:`mount_state` (the one owner of what the mount remembers and of the
    commit, see :mod:`sessionfs.fs.mountstate` for the locks), :attr:`namespace` (mkdir,
    rename, ...),
    :attr:`transcript` (``transcript.jsonl``); the view itself answers attributes, listings,
    opens and the control files, and routes each call to the part it concerns.
    """

    def __init__(self, store: Store, *, timeout: float = 1.0,
                 max_entry_size: int = DEFAULT_MAX_ENTRY_BYTES, read_only: bool = False,
                 uid: int | None = None, gid: int | None = None,
                 hide_grace: float = 10.0, unlink_grace: float = UNLINK_GRACE,
                 scratch_max_bytes: int = DEFAULT_SCRATCH_MAX_BYTES,
                 scratch_max_files: int = DEFAULT_SCRATCH_MAX_FILES,
                 permissions: tuple[int, int] | None = None,
                 transcripts: bool = True, access: Shown | None = None) -> None:
        self.store = store
        self.timeout = timeout
        self.max_entry_size = max_entry_size
        read_only_reason: str | None = None
        #: SQLite era: writable while an openclaw Gateway is live, decided per write
        through_gateway = store.writes_through_gateway
        if not through_gateway and store.read_only_reason is not None:
            read_only_reason = store.read_only_reason
        elif read_only:
            read_only_reason = "mounted with --read-only"
        #: Owner, group and permission bits of (directories, files): the mounting user's
        #: 0700/0600 unless the mount shares the store's own modes (``--allow-other``, see
        #: ``mount.shared_access``), followed on disk (a LiveAccess) and capped per session
        #: by its own files' modes (``self._caps``).
        self.access: Shown = access or Access(
            os.getuid() if uid is None else uid, os.getgid() if gid is None else gid,
            *(permissions or (DIR_MODE & 0o777, FILE_MODE & 0o777)))
        self.handles = HandleTable()
        # SQLite: the store's fingerprint is probed at most every 0.1 s (within --timeout).
        self.mount_state = MountState(store, max_entry_size=max_entry_size,
                                read_only_reason=read_only_reason, hide_grace=hide_grace,
                                unlink_grace=unlink_grace, scratch_max_bytes=scratch_max_bytes,
                                scratch_max_files=scratch_max_files,
                                probe_interval=min(timeout, 0.1))
        self.mount_state.attr_timeout = timeout
        self.errors = self.mount_state.errors
        self.index: SessionIndex = self.mount_state.index
        self.namespace = Namespace(self.mount_state, getattr=self.getattr)
        #: /<name>/transcript.jsonl (see fs.transcript)
        self.transcript = TranscriptLeaf(store, self.index, self.errors, enabled=transcripts)
        if not through_gateway and store.read_only_reason is not None:
            # the kernel refuses writes (ro): say why here
            self.errors.add("/", errno.EROFS, f"read-only: {store.read_only_reason}",
                            quiet=True)
        self._started_ns = time.time_ns()
        self._control = ControlFiles(self._started_ns)
        self._sinks = RestoreSinks()
        self._location: StoreLocation | None = None  # found at the first status
        self._caps = (DiskCaps(store, self.access, timeout, self.transcript._file_names)
                      if isinstance(self.access, LiveAccess) else None)

    @property
    def uid(self) -> int:
        return self.access.uid

    @property
    def gid(self) -> int:
        return self.access.gid

    @property
    def _dir_bits(self) -> int:
        return self.access.dir_bits

    @property
    def _file_bits(self) -> int:
        return self.access.file_bits

    def _folder_cap(self, key: str) -> int:
        """The bits a stored session's folder may show (see ``fs.access.DiskCaps``)."""
        return 0o777 if self._caps is None else self._caps.folder(key)

    def _meta_cap(self, key: str | None) -> int:
        return 0o777 if self._caps is None or key is None else self._caps.meta(key)

    def transcript_cap(self, key: str) -> int:
        """The bits a session's transcript may show (also the state mount's ``.jsonl``)."""
        return 0o777 if self._caps is None else self._caps.transcript(key)

    # -- the state's settings, as the adapter and the tests see them -----------------------------
    @property
    def read_only_reason(self) -> str | None:
        return self.mount_state.read_only_reason

    @property
    def unlink_grace(self) -> float:
        return self.mount_state.unlink_grace

    @property
    def hide_grace(self) -> float:
        return self.mount_state.hide_grace

    @property
    def invalidate(self) -> Callable[[str], None] | None:
        """Set by the adapter: drop the kernel's cached attributes of a path."""
        return self.mount_state.invalidate

    @invalidate.setter
    def invalidate(self, function: Callable[[str], None] | None) -> None:
        self.mount_state.invalidate = function

    @property
    def caller(self) -> Callable[[], tuple[int, int]] | None:
        """Set by the adapter: ``(uid, pid)`` of the process making the current call."""
        return self.mount_state.caller

    @caller.setter
    def caller(self, function: Callable[[], tuple[int, int]] | None) -> None:
        self.mount_state.caller = function

    @property
    def transcripts(self) -> bool:
        return self.transcript.transcripts

    @property
    def _lock(self) -> threading.RLock:
        return self.mount_state.lock

    @property
    def _scratch(self) -> ScratchTree:
        return self.mount_state.scratch

    def served(self, key: str) -> tuple[bytes, EntryRecord]:
        """The bytes ``meta.json`` shows now. :raises SessionNotFound:"""
        return self.mount_state.served(key)

    # -- attributes ------------------------------------------------------------------------------
    def _shown_mode(self, mode: int, cap: int = 0o777) -> int:
        """``mode`` with this mount's permission bits, no more than ``cap`` (links keep their
        0777)."""
        if stat.S_ISDIR(mode):
            return stat.S_IFDIR | (self._dir_bits & cap)
        if stat.S_ISREG(mode):
            # a read-only file (transcript.jsonl) stays read-only, and so does every file of a
            # read-only mount (--read-only, SQLite): ls -l shows what a write will meet
            if not mode & 0o200 or self.read_only_reason is not None:
                return stat.S_IFREG | (self._file_bits & 0o444 & cap)
            return stat.S_IFREG | (self._file_bits & cap)
        return mode

    def _attrs(self, mode: int, size: int, mtime_ns: int, nlink: int = 1,
               cap: int = 0o777) -> dict[str, Any]:
        mode = self._shown_mode(mode, cap)
        access = self.access.current() if isinstance(self.access, LiveAccess) else self.access
        return {"st_mode": mode, "st_nlink": nlink, "st_size": size, "st_uid": access.uid,
                "st_gid": access.gid, "st_mtime": mtime_ns, "st_ctime": mtime_ns,
                "st_atime": mtime_ns, "st_blocks": (size + 511) // 512}

    def _root_mtime(self) -> int:
        changed = self.store.change_time(self.store.fingerprint())
        return self._started_ns if changed is None else changed

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        """``stat``: by open handle when the kernel passes one, else by path."""
        handle = self.handles.find(fh)
        if handle is not None and not isinstance(handle, DirHandle):
            return self._handle_attrs(handle)
        if path is None:
            fail(errno.EBADF)
        where = parse_path(path)
        kind = where.kind
        if kind == ROOT:
            return self._attrs(DIR_MODE, 0, self._root_mtime(), 2)
        if kind == CONTROL:
            return self._attrs(CONTROL_DIR_MODE, 0, self._started_ns, 2)
        if kind == CONTROL_FILE:
            sink = self._sinks.get(where.name)
            if sink is not None:
                return self._attrs(CONTROL_FILE_MODE, sink.size, sink.mtime_ns)
            if where.name not in CONTROL_FILES or self._sinks.hidden(where.name):
                fail(errno.ENOENT)
            data, mtime_ns = self._control_snapshot(where.name)
            return self._attrs(CONTROL_FILE_MODE, len(data), mtime_ns)
        if kind == TOP:
            return self._top_attrs(where.top)
        if kind == META:
            return self._meta_attrs(where.top)
        if kind == INNER:
            if self.transcript.is_transcript(where):
                found = self._transcript_getattr(where)
                if found is not None:
                    return found
            self.mount_state.require_dir(where.top)
            file = self.mount_state.scratch_file(where.top, where.name)
            if file is None:
                fail(errno.ENOENT)
            return self._attrs(file.mode, file.size, file.mtime_ns)
        fail(errno.ENOENT)

    def entry_stat(self, directory: str, name: str) -> tuple[int, int, int, int] | None:
        """``(mode, nlink, size, mtime_ns)`` of ``name`` in ``directory`` for READDIRPLUS, or
        None when it vanished. Same answers as :meth:`getattr`, minus the dict, because
        ``ls -l`` of the root asks this once per session."""
        key = self.index.listed_key(name) if not directory else None
        if key is not None:
            updated = self.index.listed_updated(key)
            if updated is not None:  # SQLite: dated by the listing's one query
                return DIR_MODE, 2, 0, updated
            try:
                meta = self.index.meta_of(key)
            except (OSError, SessionfsError):  # a damaged session: its LOOKUP will say EIO
                return None
            if meta is not None:
                return stat.S_IFDIR | (self._dir_bits & self._folder_cap(key)), 2, 0, \
                    meta.updated_ns
        try:
            attrs = self.getattr(f"{directory}/{name}")
        except (OSError, SessionfsError):
            return None
        return attrs["st_mode"], attrs["st_nlink"], attrs["st_size"], attrs["st_mtime"]

    def _transcript_getattr(self, where: Where) -> dict[str, Any] | None:
        """Attributes of a session's transcript.jsonl, or None when it has none."""
        try:
            mode, size, mtime_ns = self.transcript.transcript_attrs(where)
        except FileNotFoundError:
            return None
        key = self.index.key_of(where.top)
        cap = 0o777 if key is None else self.transcript_cap(key)
        return self._attrs(mode, size, mtime_ns, cap=cap)

    def _handle_attrs(self, handle: Handle) -> dict[str, Any]:
        if isinstance(handle, TranscriptHandle):
            size, mtime_ns = handle.current()
            return self._attrs(TRANSCRIPT_MODE, size, mtime_ns,
                               cap=self.transcript_cap(handle.key))
        if isinstance(handle, ConstHandle):
            return self._attrs(CONTROL_FILE_MODE, handle.size(), handle.mtime_ns())
        with self.mount_state.lock:
            size = handle.size()
            if isinstance(handle, MetaHandle):
                cached = self.mount_state.cached_reader(handle.key) if handle.direct_io else None
                if cached is not None:  # see MountState.cached_reader
                    size = cached.size()
                self.mount_state.tell_size(handle.key, size)
        cap = self._meta_cap(handle.key) if isinstance(handle, MetaHandle) else 0o777
        return self._attrs(FILE_MODE, size, handle.mtime_ns(), cap=cap)

    def stat(self, path: str | None, fh: int | None = None) -> tuple[int, int, int, int]:
        """``(st_mode, st_nlink, st_size, st_mtime ns)``: :meth:`getattr` without the dict,
        for the adapter's hot path (every LOOKUP of a session folder and of its meta.json)."""
        if fh is None and path is not None:
            where = parse_path(path)
            if where.kind == META:
                size, mtime_ns = self._meta_stat(where.top)
                cap = self._meta_cap(self.index.key_of(where.top))
                return stat.S_IFREG | (self._file_bits & cap), 1, size, mtime_ns
            if where.kind == TOP:
                key = self.index.key_of(where.top)
                meta = self.index.meta_of(key) if key is not None else None
                if meta is not None:
                    assert key is not None
                    return stat.S_IFDIR | (self._dir_bits & self._folder_cap(key)), 2, 0, \
                        meta.updated_ns
        attrs = self.getattr(path, fh)
        return attrs["st_mode"], attrs["st_nlink"], attrs["st_size"], attrs["st_mtime"]

    def _top_attrs(self, top: str) -> dict[str, Any]:
        key = self.index.key_of(top)
        if key is not None:
            meta = self.index.meta_of(key)
            if meta is not None:
                return self._attrs(DIR_MODE, 0, meta.updated_ns, 2, self._folder_cap(key))
        with self.mount_state.lock:
            pending = self.mount_state.pending.get(top)
            if pending is not None or (key is not None and self.mount_state.scratch.has_any(top)):
                return self._attrs(DIR_MODE, 0, pending or self._started_ns, 2)
            file = self.mount_state.scratch.get("", top)
        if file is None:
            fail(errno.ENOENT)
        return self._attrs(file.mode, file.size, file.mtime_ns)

    def _meta_attrs(self, top: str) -> dict[str, Any]:
        size, mtime_ns = self._meta_stat(top)
        return self._attrs(FILE_MODE, size, mtime_ns, cap=self._meta_cap(self.index.key_of(top)))

    def _meta_stat(self, top: str) -> tuple[int, int]:
        """``(size, mtime_ns)`` of ``/<top>/meta.json``. :raises OSError: ENOENT"""
        key = self.index.key_of(top)
        if key is None:
            fail(errno.ENOENT)
        stored = self.index.meta_of(key)
        if stored is None:
            self.mount_state.require_dir(top)
        meta = None if self.mount_state.hidden_now(key) else stored
        with self.mount_state.lock:
            writers = [h for h in self.mount_state.open_meta.get(key, ()) if h.writable]
            latest = next((h for h in reversed(writers) if h.dirty), None)
            if meta is None:
                creators = [h for h in writers if h.creating]
                if not creators:  # a meta.json only exists while it is being created
                    fail(errno.ENOENT)
                latest = latest or creators[-1]
            if latest is not None:
                size, mtime_ns = latest.size(), latest.mtime_ns()
            else:
                assert meta is not None
                size, mtime_ns = meta.size, meta.mtime_ns
            cached = self.mount_state.cached_reader(key)
            if cached is not None:  # see MountState.cached_reader
                size = cached.size()
            self.mount_state.tell_size(key, size)
        return size, mtime_ns

    # -- listings --------------------------------------------------------------------------------
    def listdir(self, path: str) -> list[tuple[str, int]]:
        """``(name, mode)`` of every entry, ``.`` and ``..`` first."""
        where = parse_path(path)
        entries = [(".", DIR_MODE), ("..", DIR_MODE)]
        if where.kind == ROOT:
            entries.append((CONTROL_DIR, CONTROL_DIR_MODE))
            sessions = self._session_entries()
            entries.extend(sessions)
            with self.mount_state.lock:
                if self.mount_state.pending:
                    listed = {name for name, _ in sessions}
                    entries.extend((name, DIR_MODE) for name in self.mount_state.pending
                                   if name not in listed)
                entries.extend((name, file.mode)
                               for name, file in self.mount_state.scratch.items(""))
            return entries
        if where.kind == CONTROL:
            return entries + [(name, CONTROL_FILE_MODE)
                              for name in (*CONTROL_FILES, *self._sinks.names())]
        if where.kind == TOP:
            key, state = self.mount_state.require_dir(where.top)
            if key is not None and ((state == "session" and not self.mount_state.hidden_now(key))
                                    or self.mount_state.being_created(key)):
                entries.append((META_NAME, FILE_MODE))
            if (self.transcripts and key is not None and state == "session"
                    and self.transcript.has_transcript(key)):
                entries.append((TRANSCRIPT_NAME, TRANSCRIPT_MODE))
            with self.mount_state.lock:
                entries.extend((name, file.mode)
                               for name, file in self.mount_state.scratch.items(where.top)
                               if not (self.transcripts and name == TRANSCRIPT_NAME
                                       and (TRANSCRIPT_NAME, TRANSCRIPT_MODE) in entries))
            return entries
        if where.kind in (META, INNER, CONTROL_FILE):
            fail(errno.ENOTDIR)
        fail(errno.ENOENT)

    def _session_entries(self) -> list[tuple[str, int]]:
        """One ``(name, DIR_MODE)`` per stored session."""
        sessions, fresh = self.index.session_entries()
        if fresh:
            self.mount_state.prune_index({name for name, _ in sessions})
        return sessions

    # -- control files ---------------------------------------------------------------------------
    #: While a ``sessions.json`` lies beside ``sessions.d``, how often ``status`` compares the
    #: two again (the comparison reads both stores whole).
    STRAY_RECHECK_SECONDS = 10.0

    def _control_snapshot(self, name: str) -> tuple[bytes, int]:
        """``(content, mtime_ns)`` of a control file, rendered once per change of what it
        shows: a ``stat`` costs a fingerprint and a ``stat`` of ``sessions.json``, no store
        read."""
        if name == "errors":
            return self._control.get(name, self.errors.version, self.errors.render)
        if self._location is None:
            self._location = locate_store(self.store.path)
        stray: object = legacy_beside_token(self._location)
        if stray is not None:
            stray = (stray, int(time.monotonic() // self.STRAY_RECHECK_SECONDS))
        budget = self.mount_state.scratch.budget
        token = (self.store.fingerprint(), stray, budget.files, budget.bytes,
                 self.read_only_reason, self._gateway_now())
        return self._control.get(name, token, self._render_status)

    def _render_status(self) -> bytes:
        try:
            count: int | str = len(self.store.keys())
        except SessionfsError as exc:
            count = f"unknown ({exc})"
        if self.store.writes_through_gateway:
            return self._sqlite_status(count)
        assert self._location is not None
        stray = reappeared_legacy(self._location)  # a legacy gateway still writing
        budget = self.mount_state.scratch.budget
        return render_status(store_path=self.store.path, layout=self.store.layout,
                             sessions=count, read_only_reason=self.read_only_reason,
                             timeout=self.timeout, max_entry_size=self.max_entry_size,
                             warnings=(f"{stray.path}: {stray.detail}",) if stray else (),
                             scratch=(budget.files, budget.max_files, budget.bytes,
                                      budget.max_bytes))

    def _gateway_now(self) -> object:
        """Gateway stores: the live Gateway (pid, start time, port) or why none; else None."""
        store = self.mount_state.gateway_store
        if store is None:
            return None
        found = store.gateway.owner()
        return found if isinstance(found, str) else (found.pid, found.start_time, found.port)

    def _sqlite_status(self, count: int | str) -> bytes:
        """``status`` of a SQLite store: the usual lines plus generation, stale files and the
        rows openclaw itself would refuse; and whether a Gateway is live (writes possible)."""
        reason = self.read_only_reason
        gateway = self._gateway_now()
        if reason is None and isinstance(gateway, str):
            reason = self.store.read_only_reason  # no Gateway now: writes fail, say why
        head = render_status(store_path=self.store.path, layout=self.store.layout,
                             sessions=count, read_only_reason=reason,
                             timeout=self.timeout, max_entry_size=self.max_entry_size)
        lines = store_status_lines(self.store)
        if isinstance(gateway, tuple):
            lines.append(f"gateway: live (pid {gateway[0]}, 127.0.0.1:{gateway[2]}): writes "
                         "go through it")
        elif isinstance(gateway, str):
            lines.append(f"gateway: not running ({gateway}): start it to edit")
        extra = "".join(f"{' '.join(line.split())}\n" for line in lines)
        return head + extra.encode("utf-8", "replace")

    # -- opening files ---------------------------------------------------------------------------
    def open(self, path: str, flags: int) -> int:
        where = parse_path(path)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        if where.kind == CONTROL_FILE:
            sink = self._sinks.get(where.name)
            if sink is None and (where.name not in CONTROL_FILES
                                 or self._sinks.hidden(where.name)):
                fail(errno.ENOENT)
            if writing or sink is not None:
                return self._open_sink(where.name, sink, flags)
            return self.handles.add(ConstHandle(*self._control_snapshot(where.name)))
        if self.transcript.is_transcript(where) and self._transcript_getattr(where) is not None:
            if writing:
                self.transcript.refuse_transcript_change(path)
            return self.handles.add(self.transcript.open_transcript(where, flags))
        if writing:
            self.mount_state.require_writable()
        if where.kind == META:
            return self._open_meta_file(where.top, flags, create=False)
        if where.kind in (INNER, TOP):
            if where.kind == INNER:
                self.mount_state.require_dir(where.top)
            with self.mount_state.lock:
                file = self.mount_state.scratch.get(where.directory, where.leaf)
                if file is None:
                    key = self.index.key_of(where.top)
                    if where.kind == TOP and self.mount_state.dir_exists(where.top, key):
                        fail(errno.EISDIR)
                    fail(errno.ENOENT)
                return self._open_scratch(file, flags, path)
        if where.kind in (ROOT, CONTROL):
            fail(errno.EISDIR)
        fail(errno.ENOENT)

    def _open_sink(self, name: str, sink: SinkFile | None, flags: int) -> int:
        """A restore writing into ``/.sessionfs`` (see :class:`RestoreSinks`): accepted, and
        nothing of it kept. ``sink`` None: a control file itself, opened for writing."""
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable or flags & os.O_TRUNC:
            self.mount_state.require_writable()
            log.info("discarding what is written to /%s/%s (the control files show this "
                     "mount's state)", CONTROL_DIR, name)
        if sink is None:
            handle = SinkHandle(name, SinkFile(), None, writable=writable)
        else:
            handle = SinkHandle(name, sink, self._sinks, writable=writable)
            if flags & os.O_TRUNC:
                handle.truncate(0)
        return self.handles.add(handle)

    def control_unlink(self, name: str) -> None:
        """``unlink`` in ``/.sessionfs``: a sink goes; a control file is hidden until a restore
        creates it again (``tar -x``), then shows its own content again."""
        self.mount_state.require_writable()
        if self._sinks.get(name) is not None and self._sinks.unlink(name):
            return
        if name not in CONTROL_FILES or self._sinks.hidden(name):
            fail(errno.ENOENT)
        self._sinks.hide(name)

    def control_rename(self, old: str, new: str, flags: int) -> None:
        """``rename`` within ``/.sessionfs``: only a sink moves (``rsync``'s temp file onto
        ``status``); the control files themselves stay where they are."""
        self.mount_state.require_writable()
        if self._sinks.get(old) is None:
            if old in CONTROL_FILES:
                fail(errno.EACCES, "the control files cannot be moved")
            fail(errno.ENOENT)
        if flags & RENAME_NOREPLACE and (new in CONTROL_FILES or self._sinks.get(new)):
            fail(errno.EEXIST)
        self._sinks.rename(old, new)

    def _open_scratch(self, file: ScratchFile, flags: int, path: str = "") -> int:
        if file.is_link:
            fail(errno.ELOOP)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        handle = ScratchHandle(file, writable=writable, append=bool(flags & os.O_APPEND),
                               limit=2 * self.max_entry_size + (1 << 20),
                               budget=self.mount_state.scratch.budget, path=path)
        if flags & os.O_TRUNC:
            handle.truncate(0)
        return self.handles.add(handle)

    def _open_meta_file(self, top: str, flags: int, *, create: bool) -> int:
        key = self.index.key_of(top)
        if key is None:
            fail(errno.ENOENT)
        if create or (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC:
            self.mount_state.require_dir(top)  # a plain read finds out below, from the store
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        truncate = bool(flags & os.O_TRUNC)
        hidden = self.mount_state.hidden_now(key)
        plain_read = not (create or writable or truncate)
        # A plain read needs the bytes only: one read of the entry's file, parsed only the
        # first time it is seen (state.snapshot); everything else goes through the store.
        quick = self.mount_state.snapshot(key, top) if plain_read and not hidden else None
        if quick is not None:
            data, mtime_ns = quick
            found = True
        else:
            try:
                data, record = self.mount_state.served(key)
                mtime_ns = self.index.entry_mtime(record)
                found = True
            except SessionNotFound:
                data, mtime_ns, found = b"", time.time_ns(), False
        with self.mount_state.lock:
            opened = self.mount_state.open_meta.get(key, [])
            being_created = any(h.creating for h in opened)
            exists = found and not hidden
            writing = writable or truncate
            # A write-open of a meta.json that is not (or no longer) there creates it, as
            # O_CREAT would: the kernel strips O_CREAT when its cached name still looks
            # positive, e.g. right after a refused first save in a new folder.
            if not exists and not being_created and not (create or writing):
                fail(errno.ENOENT)
            if create and exists and flags & os.O_EXCL:
                fail(errno.EEXIST)
            new_file = (create or writing) and not exists
            if new_file:
                self.mount_state.hidden.pop(key, None)
                # unlink + create (install, tar -x): a save, see Doom
                self.mount_state.cancel_doom(key)
                data = b""
            if writing:
                handle = MetaHandle(self.mount_state, key, top, data, mtime_ns=mtime_ns,
                                    writable=True,
                                    append=bool(flags & os.O_APPEND), dirty=new_file)
                if truncate:
                    handle.truncate_on_open()
            else:
                handle = MetaHandle(self.mount_state, key, top, data, mtime_ns=mtime_ns,
                                    writable=False)
                handle.direct_io = not self.mount_state.page_cache_safe(handle)
                self.mount_state.remember_shown(key, data)  # the base of this reader's save
            self.mount_state.opened(handle)
            return self.handles.add(handle)

    def create(self, path: str, flags: int) -> int:
        """``open(O_CREAT)`` of a name the kernel did not find."""
        where = parse_path(path)
        if where.kind == CONTROL_FILE:
            self.mount_state.require_writable()
            if where.name in CONTROL_FILES and self._sinks.get(where.name) is None \
                    and not self._sinks.hidden(where.name):
                if flags & os.O_EXCL:
                    fail(errno.EEXIST)
                return self._open_sink(where.name, None, flags)
            return self._open_sink(where.name, self._sinks.create(where.name), flags)
        if where.kind == CONTROL:
            fail(errno.EACCES, "the control folder is read-only")
        if self.transcript.is_transcript(where) and self._transcript_getattr(where) is not None:
            if flags & os.O_EXCL:
                fail(errno.EEXIST)
            self.transcript.refuse_transcript_change(path)
        self.mount_state.require_writable()
        if where.kind == META:
            return self._open_meta_file(where.top, flags, create=True)
        if where.kind == INNER:
            self.mount_state.require_dir(where.top)
        elif where.kind == TOP:
            if self.mount_state.dir_exists(where.top, self.index.key_of(where.top)):
                fail(errno.EISDIR)
            if not is_root_scratch_name(where.top):
                fail(errno.EPERM, "only session folders (and editor scratch files) live here")
        elif where.kind == ROOT:
            fail(errno.EEXIST)
        else:
            fail(errno.ENOENT)
        with self.mount_state.lock:
            file = self.mount_state.scratch.get(where.directory, where.leaf)
            if file is not None and flags & os.O_EXCL:
                fail(errno.EEXIST)
            if file is None:
                file = ScratchFile()
                self.mount_state.scratch.put(where.directory, where.leaf, file)
            return self._open_scratch(file, flags, path)

    # -- handle operations -----------------------------------------------------------------------
    def read(self, fh: int, size: int, offset: int) -> bytes:
        handle = self.handles.get(fh)
        if isinstance(handle, TranscriptHandle):  # store I/O: never under the view's lock
            return handle.read(size, offset)
        return self.mount_state.read_open_file(handle, size, offset)

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self.handles.get(fh)
        return self.mount_state.write_open_file(handle, data, offset)

    def flush(self, fh: int) -> None:
        self.handles.get(fh).flush()

    def fsync(self, fh: int) -> None:
        self.handles.get(fh).fsync()

    def release(self, fh: int) -> None:
        handle = self.handles.get(fh)
        try:
            handle.release()
        finally:
            self.handles.pop(fh)
            if isinstance(handle, MetaHandle):
                self.mount_state.closed(handle)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        """``truncate``/``ftruncate``: an open handle's buffer when there is one."""
        handle = self.handles.find(fh)
        if handle is None and path is not None:
            handle = self._writer_for(path)
        if isinstance(handle, TranscriptHandle):
            self.transcript.refuse_transcript_change(path or f"/{handle.key}")
        if handle is None and self.transcript.transcript_path(path) is not None and \
                self._transcript_getattr(parse_path(path or "")) is not None:
            self.transcript.refuse_transcript_change(path or "")
        if handle is not None:
            if isinstance(handle, ConstHandle):
                fail(errno.EACCES)
            self.mount_state.truncate_open_file(handle, length)
            return
        if path is None:
            fail(errno.EBADF)
        where = parse_path(path)
        if where.kind == CONTROL_FILE and self._sinks.get(where.name) is not None:
            fh = self.open(path, os.O_WRONLY)
            try:
                self.handles.get(fh).truncate(length)
            finally:
                self.release(fh)
            return
        if where.kind in (CONTROL, CONTROL_FILE):
            fail(errno.EACCES, "the control folder is read-only")
        self.mount_state.require_writable()
        if where.kind == META:  # no open file: the truncated entry is committed right away
            key, _ = self.mount_state.require_dir(where.top)
            if key is None or self.mount_state.hidden_now(key):
                fail(errno.ENOENT)
            data, _record = self.mount_state.served(key)
            data = data[:length] + bytes(max(0, length - len(data)))
            self.mount_state.commit(key, where.top, data)
            return
        if where.kind in (INNER, TOP):
            fh = self.open(path, os.O_WRONLY)
            try:
                handle = self.handles.get(fh)
                self.mount_state.truncate_open_file(handle, length)
            finally:
                self.release(fh)
            return
        fail(errno.EISDIR if where.kind == ROOT else errno.ENOENT)

    def _writer_for(self, path: str) -> MetaHandle | None:
        where = parse_path(path)
        if where.kind != META:
            return None
        writers = self.mount_state.writers(self.index.key_of(where.top) or "")
        return writers[-1] if writers else None

    # -- committing ------------------------------------------------------------------------------
    def commit(self, key: str, top: str, raw: bytes) -> bool:
        """Validate and store ``raw`` as ``key``'s entry (:meth:`MountState.commit`)."""
        return self.mount_state.commit(key, top, raw)

    def reject(self, path: str, exc: SessionfsError | OSError) -> None:
        """A write was refused: record it for ``/.sessionfs/errors`` and the log."""
        self.mount_state.reject(path, exc)

    # -- namespace operations (sessionfs.fs.namespace), after the transcript and control rules --
    @property
    def has_dooms(self) -> bool:
        return self.mount_state.has_dooms

    def settle(self, *, exempt: str | None = None, everything: bool = False) -> None:
        """Carry out the deletes whose grace is over (:meth:`MountState.settle`)."""
        self.mount_state.settle(exempt=exempt, everything=everything)

    def _gateway_gate(self) -> None:
        """A Gateway store: every namespace change needs a live Gateway first (EROFS with the
        reason, as a read-only mount would answer), before any other rule speaks."""
        if self.mount_state.through_gateway:
            self.mount_state.require_writable()

    def unlink(self, path: str) -> None:
        self._gateway_gate()
        where = parse_path(path)
        if self.mount_state.through_gateway and self.transcript.transcript_path(path) is not None:
            key = self.index.key_of(where.top)
            if key is not None and key in self.mount_state.doomed:  # rm -r: goes with its session
                self.mount_state.require_writable()
                return
        self.transcript.guard_transcript_name(path)
        if where.kind == CONTROL_FILE:  # a restore replacing a control file (tar -x)
            self.control_unlink(where.name)
            return
        self.namespace.unlink(path)

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        self._gateway_gate()
        self.transcript.guard_transcript_name(old, new)
        if not flags & ~RENAME_NOREPLACE:
            src, dst = parse_path(old), parse_path(new)
            if src.kind == CONTROL_FILE and dst.kind == CONTROL_FILE:  # rsync's temp file
                self.control_rename(src.name, dst.name, flags)
                return
        self.namespace.rename(old, new, flags)

    def mkdir(self, path: str) -> None:
        self._gateway_gate()
        self.transcript.guard_transcript_name(path)
        self.namespace.mkdir(path)

    def rmdir(self, path: str) -> None:
        self._gateway_gate()
        if self.transcript.transcript_path(path) is not None:
            self.transcript.guard_transcript_name(path)
        self.namespace.rmdir(path)

    def symlink(self, path: str, target: str) -> None:
        self._gateway_gate()
        self.transcript.guard_transcript_name(path)
        self.namespace.symlink(path, target)

    def readlink(self, path: str) -> str:
        return self.namespace.readlink(path)

    # -- attributes that do not exist here -------------------------------------------------------
    def accept_metadata_change(self, path: str | None) -> None:
        """chmod, chown, utimens: accepted without effect on anything that exists."""
        if path is not None:
            self.getattr(path)

    def accept_attribute_change(self, path: str | None) -> None:
        """chmod, chown, utimens: like :meth:`accept_metadata_change`, but a transcript
        refuses them (EROFS), as it refuses every change."""
        where = self.transcript.transcript_path(path)
        if where is not None and self._transcript_getattr(where) is not None:
            self.transcript.refuse_transcript_change(path or "")
        self.accept_metadata_change(path)
        if path is not None:
            self._gateway_gate()  # a Gateway store without a Gateway: EROFS, as when ro

    def statfs(self) -> dict[str, int]:
        try:
            st = os.statvfs(self.store.path if self.store.path.exists() else
                            self.store.path.parent)
        except OSError:
            return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}
        return {"f_bsize": st.f_bsize, "f_frsize": st.f_frsize, "f_blocks": st.f_blocks,
                "f_bfree": st.f_bfree, "f_bavail": st.f_bavail, "f_files": st.f_files,
                "f_ffree": st.f_ffree, "f_favail": st.f_favail, "f_namemax": 255}

"""Namespace changes of the mounted tree: mkdir, rmdir, unlink, symlink, rename.

A mixin of :class:`sessionfs.fs.view.SessionView` (it uses the view's state and locks); kept
apart because renames are where the editor rules live:

* ``meta.json`` renamed away (vim, Emacs) keeps the session; renamed onto (sed, jq + mv,
  ``os.replace``) commits, validated, in one ``put``; moved between sessions is copy + delete;
* a session folder renamed is one ``store.rename``;
* libfuse's ``.fuse_hidden…`` renames (an open file unlinked, or renamed over) are told apart
  by what follows, so a rename-over never leaves the store without the session
  (:meth:`NamespaceOps.settle`).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sessionfs import keys
from sessionfs.entry import parse_entry, serialize_entry
from sessionfs.errors import ReadOnlyStore, SessionExists, SessionfsError, SessionNotFound
from sessionfs.fs.handles import MetaHandle
from sessionfs.fs.paths import (
    CONTROL,
    CONTROL_FILE,
    DEEP,
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
from sessionfs.fs.scratch import ScratchFile, is_libfuse_hidden, is_root_scratch_name

if TYPE_CHECKING:
    from sessionfs.fs.view import SessionView

    _Base = SessionView
else:
    _Base = object

__all__ = ["DOOM_GRACE", "Doom", "NamespaceOps"]

log = logging.getLogger("sessionfs.fs")

#: How long an unlink of an open meta.json may wait to be told apart from a rename over it.
DOOM_GRACE = 0.05


@dataclass(frozen=True, slots=True)
class Doom:
    """A session libfuse renamed to ``.fuse_hidden…`` because its meta.json was open.

    libfuse does that for ``unlink()`` (the session must go) and, right before the real
    rename on the same thread, for a rename over the open file (the session must stay, or a
    reader of the store would find it missing). The delete waits for the next sign.
    """

    top: str
    thread: int
    since: float



class NamespaceOps(_Base):
    """mkdir, rmdir, unlink, symlink, readlink, rename (mixed into SessionView)."""

    # -- unlink of an open meta.json ---------------------------------------------------------------
    @property
    def has_dooms(self) -> bool:
        return bool(self._doomed)

    def settle(self, path: str | None = None, fh: int | None = None, *,
               exempt: str | None = None) -> None:
        """Carry out the deletes libfuse's hidden renames stand for, once they are sure.

        Called at the start of every callback (by the adapter) and by a timer. A doomed
        session is deleted when: the thread that hid it handles its next request (unless that
        is the rename completing a rename-over, which passes ``exempt``), any request touches
        the session's folder or one of its open files, or it has waited :data:`DOOM_GRACE`.
        """
        if not self._doomed:
            return
        touched: set[str] = set()
        if path is not None:
            where = parse_path(path)
            if where.kind in (TOP, META, INNER):
                touched.add(where.top)
        handle = self.handles.find(fh)
        if isinstance(handle, MetaHandle):
            touched.add(handle.top)
        me, now = threading.get_ident(), time.monotonic()
        with self._lock:
            due = [key for key, doom in self._doomed.items() if key != exempt and (
                doom.thread == me or doom.top in touched or now - doom.since >= DOOM_GRACE)]
        for key in due:
            self._execute_doom(key)

    def _execute_doom(self, key: str) -> None:
        with self._commit_lock:
            with self._lock:
                doom = self._doomed.pop(key, None)
            if doom is None:
                return
            try:
                self.store.delete(key)
            except SessionNotFound:
                pass
            except (SessionfsError, OSError) as exc:
                log.warning("could not delete %r (unlinked while open): %s", key, exc)
                with self._lock:
                    self._hidden.pop(key, None)
                return
            with self._lock:
                self._forget_session(key)
                self._pending[doom.top] = time.time_ns()  # the folder stays until rmdir
                for handle in self._open_meta.get(key, ()):
                    handle.dirty = False  # writing to an unlinked file does not recreate it
        self._notify(doom.top)

    # -- namespace operations --------------------------------------------------------------------
    def mkdir(self, path: str) -> None:
        where = parse_path(path)
        if where.kind == ROOT or where.kind == CONTROL:
            fail(errno.EEXIST)
        if where.kind != TOP:
            fail(errno.EPERM, "sessions hold files only")
        self._require_writable()
        key = keys.decode(where.top)  # raises InvalidName (EINVAL) with the reason
        if key is None:  # a hashed name: only an existing session can have one
            key = self.index.key_of(where.top)
            if key is None:
                fail(errno.EINVAL, "a hashed name is made by writing the session, not by mkdir")
        with self._commit_lock:
            if self._dir_exists(where.top, key) is not None:
                fail(errno.EEXIST)
            with self._lock:
                if self._scratch.get("", where.top) is not None:
                    fail(errno.EEXIST)
                self._pending[where.top] = time.time_ns()

    def rmdir(self, path: str) -> None:
        where = parse_path(path)
        if where.kind == ROOT:
            fail(errno.EBUSY)
        if where.kind == CONTROL:
            fail(errno.EACCES, "the control folder is read-only")
        if where.kind in (META, INNER, CONTROL_FILE):
            fail(errno.ENOTDIR)
        if where.kind != TOP:
            fail(errno.ENOENT)
        self._require_writable()
        with self._commit_lock:
            key = self.index.key_of(where.top)
            state = self._dir_exists(where.top, key)
            if state is None:
                with self._lock:
                    if self._scratch.get("", where.top) is not None:
                        fail(errno.ENOTDIR)
                fail(errno.ENOENT)
            if state == "session":
                fail(errno.ENOTEMPTY, "the session still has its meta.json")
            with self._lock:
                if self._scratch.has_any(where.top):
                    fail(errno.ENOTEMPTY)
                self._pending.pop(where.top, None)
                self._scratch.drop_dir(where.top)  # open-but-unlinked files keep their bytes

    def unlink(self, path: str) -> None:
        where = parse_path(path)
        if where.kind in (CONTROL, CONTROL_FILE):
            fail(errno.EACCES, "the control folder is read-only")
        if where.kind == ROOT:
            fail(errno.EISDIR)
        self._require_writable()
        if where.kind == META:
            self._delete_session(where.top)
            return
        if where.kind == INNER:
            if not is_libfuse_hidden(where.name):  # libfuse's last-close cleanup: always fine
                self._require_dir(where.top)
        elif where.kind == TOP:
            if self._dir_exists(where.top, self.index.key_of(where.top)):
                fail(errno.EISDIR)
        else:
            fail(errno.ENOENT)
        with self._lock:
            if self._scratch.pop(where.directory, where.leaf) is None:
                fail(errno.ENOENT)

    def _delete_session(self, top: str) -> None:
        key, _ = self._require_dir(top)
        if key is None or self._hidden_now(key):
            fail(errno.ENOENT)
        with self._commit_lock:
            self.store.delete(key)  # SessionNotFound -> ENOENT
            with self._lock:
                self._forget_session(key)
                self._pending[top] = time.time_ns()  # the (now empty) folder stays until rmdir
                for handle in self._open_meta.get(key, ()):
                    handle.dirty = False  # writing to an unlinked file does not recreate it
        self._notify(top)

    def _require_root_scratch_target(self, top: str) -> None:
        """A file may land at the root only as an editor scratch name, never over a session."""
        if self._dir_exists(top, self.index.key_of(top)):
            fail(errno.EISDIR)
        if not is_root_scratch_name(top):
            fail(errno.EPERM, "only session folders (and editor scratch files) live here")

    def _forget_session(self, key: str) -> None:
        self._doomed.pop(key, None)
        self._overlay.pop(key, None)
        self._hidden.pop(key, None)
        self.index.forget(key)

    def symlink(self, path: str, target: str) -> None:
        """Only Emacs-style lock links (``.#name``), kept as scratch; everything else EPERM."""
        where = parse_path(path)
        if where.kind not in (INNER, TOP) or not where.leaf.startswith(".#"):
            fail(errno.EPERM, "symbolic links are not supported (except editor lock links)")
        self._require_writable()
        if where.kind == INNER:
            self._require_dir(where.top)
        with self._lock:
            if self._scratch.get(where.directory, where.leaf) is not None:
                fail(errno.EEXIST)
            self._scratch.put(where.directory, where.leaf, ScratchFile(link_target=target))

    def readlink(self, path: str) -> str:
        where = parse_path(path)
        if where.kind in (INNER, TOP):
            with self._lock:
                file = self._scratch.get(where.directory, where.leaf)
            if file is not None and file.link_target is not None:
                return file.link_target
            if file is not None:
                fail(errno.EINVAL)
        self.getattr(path)  # ENOENT for what does not exist
        fail(errno.EINVAL)

    # -- rename ----------------------------------------------------------------------------------
    def rename(self, old: str, new: str, flags: int = 0) -> None:
        """``rename``/``renameat2``. Only ``RENAME_NOREPLACE`` is honoured; other flags (e.g.
        ``RENAME_EXCHANGE``, which mfusepy would silently drop) fail with EINVAL."""
        if flags & ~RENAME_NOREPLACE:
            fail(errno.EINVAL, "only RENAME_NOREPLACE is supported")
        src, dst = parse_path(old), parse_path(new)
        for where in (src, dst):
            if where.kind in (ROOT, CONTROL, CONTROL_FILE):
                fail(errno.EACCES if where.kind != ROOT else errno.EBUSY)
            if where.kind == DEEP:
                fail(errno.ENOENT)
        self._require_writable()
        if old == new:
            self.getattr(old)
            return
        exempt = None
        if dst.kind == META:  # the second half of a rename over an open meta.json?
            key = self.index.key_of(dst.top)
            doom = self._doomed.get(key) if key is not None else None
            if doom is not None and doom.thread == threading.get_ident():
                exempt = key
        self.settle(exempt=exempt)
        with self._commit_lock:
            if flags & RENAME_NOREPLACE and self._exists(new):
                fail(errno.EEXIST)
            if src.kind == TOP:
                self._rename_top(src, dst)
            elif src.kind == META:
                self._rename_meta(src, dst)
            else:
                self._rename_scratch(src, dst)

    def _exists(self, path: str) -> bool:
        try:
            self.getattr(path)
        except FileNotFoundError:
            return False
        return True

    def _rename_top(self, src: Where, dst: Where) -> None:
        src_key = self.index.key_of(src.top)
        state = self._dir_exists(src.top, src_key)
        if state is None:  # a root scratch file
            with self._lock:
                file = self._scratch.get("", src.top)
            if file is None:
                fail(errno.ENOENT)
            self._move_scratch(src, dst)
            return
        if dst.kind != TOP:
            fail(errno.EPERM, "sessions hold files only")
        dst_key = keys.decode(dst.top)  # InvalidName (EINVAL) when no key has that name
        if dst_key is None:
            dst_key = self.index.key_of(dst.top)
            if dst_key is None:
                fail(errno.EINVAL, f"{dst.top!r} is not a session name")
        dst_state = self._dir_exists(dst.top, dst_key)
        with self._lock:
            if self._scratch.get("", dst.top) is not None:
                fail(errno.ENOTDIR)
            if dst_state == "session":
                fail(errno.ENOTEMPTY, f"{dst.top} is a session")
            if dst_state == "pending" and self._scratch.has_any(dst.top):
                fail(errno.ENOTEMPTY)
        if state == "session":
            assert src_key is not None
            try:
                self.store.rename(src_key, dst_key)
            except SessionExists:
                fail(errno.ENOTEMPTY, f"{dst.top} is a session")
        with self._lock:
            if state == "session":
                assert src_key is not None
                self._forget_session(src_key)
                self._forget_session(dst_key)
                for handle in self._open_meta.pop(src_key, []):
                    handle.key, handle.top = dst_key, dst.top
                    self._open_meta.setdefault(dst_key, []).append(handle)
            self._pending.pop(dst.top, None)
            pending = self._pending.pop(src.top, None)
            if state == "pending" and pending is not None:
                self._pending[dst.top] = pending
            self._scratch.drop_dir(dst.top)
            self._scratch.move_dir(src.top, dst.top)
        self._notify(src.top, dst.top)

    def _rename_meta(self, src: Where, dst: Where) -> None:
        src_key, _ = self._require_dir(src.top)
        if src_key is None or self._hidden_now(src_key):
            fail(errno.ENOENT)
        data, record = self.served(src_key)  # SessionNotFound -> ENOENT
        if dst.kind == INNER and dst.top == src.top and is_libfuse_hidden(dst.name):
            # libfuse's stand-in for unlink() of an open file, and for the first half of a
            # rename over one: which of the two only shows in what comes next (see Doom).
            with self._lock:
                self._scratch.put(dst.directory, dst.leaf,
                                  ScratchFile(bytearray(data), mtime_ns=record.mtime_ns))
                self._hidden[src_key] = float("inf")
                self._doomed[src_key] = Doom(src.top, threading.get_ident(), time.monotonic())
            timer = threading.Timer(DOOM_GRACE * 1.5, self.settle)
            timer.daemon = True
            timer.start()
            return
        if dst.kind == META:
            dst_key, _ = self._require_dir(dst.top)
            if dst_key is None:
                fail(errno.ENOENT)
            if dst_key == src_key:
                return
            # Between sessions: copy, then delete (the entry is never in neither place).
            self._put_raw(dst_key, dst.top, data, replacing=src_key)
            self.store.delete(src_key)
            with self._lock:
                self._forget_session(src_key)
                self._pending[src.top] = time.time_ns()
            return
        if dst.kind == TOP:
            self._require_root_scratch_target(dst.top)
        else:
            self._require_dir(dst.top)
        # Renamed away (vim, Emacs: meta.json -> meta.json~): keep the session, hide the name.
        with self._lock:
            self._scratch.put(dst.directory, dst.leaf,
                              ScratchFile(bytearray(data), mtime_ns=record.mtime_ns))
            self._hidden[src_key] = time.monotonic() + self.hide_grace
            self.index.changed(src_key)

    def _put_raw(self, key: str, top: str, raw: bytes, *, replacing: str | None = None) -> None:
        """Commit bytes that arrive by rename (already under the commit lock); ``replacing``:
        the session a move deletes next (its sessionId moves with the entry)."""
        path = f"/{top}/{META_NAME}"
        try:
            entry = parse_entry(raw, key=key, max_size=self.max_entry_size)
            self.store.put(key, entry, replacing=replacing)
        except ReadOnlyStore:
            raise
        except (SessionfsError, OSError) as exc:
            self.reject(path, exc)
            raise
        canonical = serialize_entry(entry)
        with self._lock:
            self._stored(key, top)
            if raw != canonical:
                self._overlay[key] = (raw, canonical)
        self._notify(top)

    def _rename_scratch(self, src: Where, dst: Where) -> None:
        if src.kind == INNER:
            self._require_dir(src.top)
        with self._lock:
            file = self._scratch.get(src.directory, src.leaf)
        if file is None:
            fail(errno.ENOENT)
        self._move_scratch(src, dst)

    def _move_scratch(self, src: Where, dst: Where) -> None:
        with self._lock:
            file = self._scratch.get(src.directory, src.leaf)
        assert file is not None
        if dst.kind == META:
            dst_key, _ = self._require_dir(dst.top)
            if dst_key is None:
                fail(errno.ENOENT)
            if file.is_link:
                fail(errno.EINVAL, "a link cannot become meta.json")
            self._put_raw(dst_key, dst.top, bytes(file.data))
            with self._lock:
                self._scratch.pop(src.directory, src.leaf)
            return
        if dst.kind == TOP:
            self._require_root_scratch_target(dst.top)
        elif dst.kind == INNER:
            self._require_dir(dst.top)
        with self._lock:
            self._scratch.pop(src.directory, src.leaf)
            self._scratch.put(dst.directory, dst.leaf, file)


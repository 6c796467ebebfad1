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

__all__ = ["DOOM_GRACE", "UNLINK_GRACE", "Doom", "NamespaceOps"]

log = logging.getLogger("sessionfs.fs")

#: How long a deleted ``meta.json`` keeps its session in the store, invisible through the mount,
#: in case a new ``meta.json`` is created in the same folder: ``install``, ``tar -x`` and
#: ``cp --remove-destination`` unlink the old file and then create the new one, which must
#: behave like a save (the old entry stays until the new one commits, and for good if the new
#: one is refused). A plain ``rm`` reaches the store this much later, or at once when the folder
#: is removed or renamed, or at unmount.
UNLINK_GRACE = 0.5
#: Kept for callers of the earlier name: libfuse's hidden renames now wait :data:`UNLINK_GRACE`.
DOOM_GRACE = UNLINK_GRACE


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


class NamespaceOps(_Base):
    """mkdir, rmdir, unlink, symlink, readlink, rename (mixed into SessionView)."""

    # -- deferred deletes --------------------------------------------------------------------------
    @property
    def has_dooms(self) -> bool:
        return bool(self._doomed)

    def settle(self, *, exempt: str | None = None, everything: bool = False) -> None:
        """Carry out the deletes whose grace (:data:`UNLINK_GRACE`) is over.

        Called at the start of every callback (by the adapter), by a timer, and with
        ``everything`` at unmount. ``exempt``: the key a rename is about to store again.
        """
        if not self._doomed:
            return
        now = time.monotonic()
        with self._lock:
            due = [key for key, doom in self._doomed.items() if key != exempt and (
                everything or now - doom.since >= self.unlink_grace)]
        for key in due:
            self._execute_doom(key)

    def _doom(self, key: str, top: str) -> None:
        """Hide ``key``'s meta.json now and delete the session after the grace (see Doom)."""
        with self._lock:
            self._hidden[key] = float("inf")
            self._doomed[key] = Doom(top, threading.get_ident(), time.monotonic())
            self.index.changed(key)
        timer = threading.Timer(self.unlink_grace + 0.02, self.settle)
        timer.daemon = True
        timer.start()
        self._notify(top)

    def _cancel_doom(self, key: str) -> bool:
        """Something stores ``key`` again: its pending delete is off (under the lock)."""
        return self._doomed.pop(key, None) is not None

    def _execute_doom_of(self, top: str) -> None:
        """The folder itself is being removed or moved: a pending delete in it happens now."""
        key = self.index.key_of(top)
        if key is not None and key in self._doomed:
            self._execute_doom(key)

    def _execute_doom(self, key: str) -> None:
        with self._commit_lock:
            with self._lock:
                doom = self._doomed.pop(key, None)
                if doom is None:
                    return
                # the folder stays until rmdir: never missing while the store drops the entry
                had_pending = doom.top in self._pending
                self._pending.setdefault(doom.top, time.time_ns())
            try:
                self.store.delete(key)
            except SessionNotFound:
                pass
            except (SessionfsError, OSError) as exc:
                log.warning("could not delete %r (its meta.json was unlinked): %s", key, exc)
                with self._lock:
                    self._hidden.pop(key, None)
                    if not had_pending:
                        self._pending.pop(doom.top, None)
                return
            with self._lock:
                self._forget_session(key)
                self._pending[doom.top] = time.time_ns()
                self._detach_handles(key)  # writing to an unlinked file does not recreate it
        self._notify(doom.top)

    def _detach_handles(self, key: str) -> None:
        """``key``'s meta.json was deleted or replaced: its open files commit nothing more
        (under the lock)."""
        for handle in self._open_meta.pop(key, ()):
            handle.detach()

    def _move_handles(self, src_key: str, dst_key: str, dst_top: str) -> None:
        """``src_key``'s meta.json became ``dst_key``'s: its open files follow it, as an open
        file follows its inode, and commit there (under the lock)."""
        for handle in self._open_meta.pop(src_key, ()):
            handle.key, handle.top = dst_key, dst_top
            self._open_meta.setdefault(dst_key, []).append(handle)

    # -- namespace operations --------------------------------------------------------------------
    def mkdir(self, path: str) -> None:
        where = parse_path(path)
        if where.kind == ROOT or where.kind == CONTROL:
            fail(errno.EEXIST)
        self._require_writable()
        try:  # mkdir has no other way to say why a name is impossible: errors does
            if where.kind != TOP:
                fail(errno.EPERM, "sessions hold files only")
            key = keys.decode(where.top)  # raises InvalidName (EINVAL) with the reason
            if key is None:  # a hashed name: only an existing session can have one
                key = self.index.key_of(where.top)
                if key is None:
                    fail(errno.EINVAL,
                         "a hashed name is made by writing the session, not by mkdir")
        except OSError as exc:
            self.errors.add(path, exc.errno, f"mkdir: {exc.strerror}")
            raise
        except SessionfsError as exc:
            self.errors.add(path, exc.errno, f"mkdir: {exc}")
            raise
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
        self._execute_doom_of(where.top)  # rm -r: the unlinked meta.json's delete happens now
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
        if where.kind == CONTROL_FILE:  # a restore replacing a control file (tar -x)
            self.control_unlink(where.name)
            return
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
        """``rm meta.json``: gone through the mount at once, from the store after the grace
        (see :class:`Doom`), so that an unlink + create pair (install, tar -x) is a save."""
        key, state = self._require_dir(top)
        if key is None or state != "session" or self._hidden_now(key):
            fail(errno.ENOENT)
        self._doom(key, top)

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
        if src.kind == CONTROL_FILE and dst.kind == CONTROL_FILE:  # rsync's temp file
            self.control_rename(src.name, dst.name, flags)
            return
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
        if src.kind == TOP:  # moving a folder whose meta.json was unlinked moves no session
            self._execute_doom_of(src.top)
        if dst.kind == TOP:
            self._execute_doom_of(dst.top)
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
                self._scratch.put(dst.directory, dst.leaf, ScratchFile(
                    bytearray(data), mtime_ns=self.index.entry_mtime(record)))
            self._doom(src_key, src.top)
            return
        if dst.kind == META:
            dst_key, _ = self._require_dir(dst.top)
            if dst_key is None:
                fail(errno.ENOENT)
            if dst_key == src_key:
                return
            # Between sessions: copy, then delete (the entry is never in neither place). Files
            # open on the source follow it to the target; never do they bring the source back.
            self._put_raw(dst_key, dst.top, data, replacing=src_key)
            with self._lock:
                self._pending[src.top] = time.time_ns()  # the source folder stays until rmdir
            try:
                self.store.delete(src_key)
            finally:
                with self._lock:
                    self._forget_session(src_key)
                    self._move_handles(src_key, dst_key, dst.top)
            self._notify(src.top)
            return
        if dst.kind == TOP:
            self._require_root_scratch_target(dst.top)
        else:
            self._require_dir(dst.top)
        # Renamed away (vim, Emacs: meta.json -> meta.json~): keep the session, hide the name.
        with self._lock:
            self._scratch.put(dst.directory, dst.leaf,
                              ScratchFile(bytearray(data), mtime_ns=self.index.entry_mtime(record)))
            self._hidden[src_key] = time.monotonic() + self.hide_grace
            self.index.changed(src_key)

    def _put_raw(self, key: str, top: str, raw: bytes, *, replacing: str | None = None) -> None:
        """Commit bytes that arrive by rename (already under the commit lock); ``replacing``:
        the session a move deletes next (its sessionId moves with the entry)."""
        path = f"/{top}/{META_NAME}"
        with self._lock:  # a rename onto an unlinked meta.json is a save: no delete either way
            cancelled = self._cancel_doom(key)
        try:
            entry = parse_entry(raw, key=key, max_size=self.max_entry_size)
            self.store.put(key, entry, replacing=replacing)
        except ReadOnlyStore:
            raise
        except (SessionfsError, OSError) as exc:
            if cancelled:  # refused: the old entry stays, and shows again
                with self._lock:
                    self._hidden.pop(key, None)
            self.reject(path, exc)
            raise
        canonical = serialize_entry(entry)
        with self._lock:
            self._stored(key, top)
            if raw != canonical:
                self._overlay[key] = (raw, canonical)
            self._detach_handles(key)  # the file renamed over is gone, as on any filesystem
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


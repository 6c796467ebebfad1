"""Namespace changes of the mounted tree: mkdir, rmdir, unlink, symlink, rename.

:class:`Namespace` is composed into :class:`sessionfs.fs.view.SessionView`, holding the mount's
:class:`~sessionfs.fs.mountstate.MountState`; kept apart because renames are where the editor rules
live:

* ``meta.json`` renamed away (vim, Emacs) keeps the session; renamed onto (sed, jq + mv,
  ``os.replace``) commits, validated, in one ``put``; moved between sessions is copy + delete;
* a session folder renamed is one ``store.rename``;
* libfuse's ``.fuse_hidden…`` renames (an open file unlinked, or renamed over) are told apart
  by what follows, so a rename-over never leaves the store without the session
  (:meth:`MountState.settle`).

The control folder's own entries (``/.sessionfs``) and transcripts are the view's business: it
handles them before it delegates here.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from typing import Any

from sessionfs import keys
from sessionfs.errors import SessionExists, SessionfsError
from sessionfs.fs.mountstate import DOOM_GRACE, UNLINK_GRACE, Doom, MountState
from sessionfs.fs.paths import (
    CONTROL,
    CONTROL_FILE,
    DEEP,
    INNER,
    META,
    RENAME_NOREPLACE,
    ROOT,
    TOP,
    Where,
    fail,
    parse_path,
)
from sessionfs.fs.scratch import ScratchFile, is_libfuse_hidden, is_root_scratch_name

__all__ = ["DOOM_GRACE", "UNLINK_GRACE", "Doom", "Namespace"]

log = logging.getLogger("sessionfs.fs")


class Namespace:
    """mkdir, rmdir, unlink, symlink, readlink, rename over one mount's state.

    ``getattr`` is the view's: it answers whether a path exists (``ENOENT`` otherwise).
    """

    def __init__(self, state: MountState, *, getattr: Callable[[str], dict[str, Any]]) -> None:
        self.mount_state = state
        self.index = state.index
        self.getattr = getattr

    # -- namespace operations --------------------------------------------------------------------
    def mkdir(self, path: str) -> None:
        where = parse_path(path)
        if where.kind == ROOT or where.kind == CONTROL:
            fail(errno.EEXIST)
        self.mount_state.require_writable()
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
            self.mount_state.errors.add(path, exc.errno, f"mkdir: {exc.strerror}")
            raise
        except SessionfsError as exc:
            self.mount_state.errors.add(path, exc.errno, f"mkdir: {exc}")
            raise
        with self.mount_state.commit_lock:
            if self.mount_state.dir_exists(where.top, key) is not None:
                fail(errno.EEXIST)
            if self.mount_state.through_gateway:  # sessions.create now; the folder is the session
                if self.mount_state.scratch_file("", where.top) is not None:
                    fail(errno.EEXIST)
                self._create_through_gateway(path, key)
                return
            self.mount_state.new_dir(where.top)

    def _create_through_gateway(self, path: str, key: str) -> None:
        store = self.mount_state.gateway_store
        assert store is not None  # called only when the state writes through the Gateway
        agent = store.agent
        if agent is not None and not key.startswith(f"agent:{agent}:"):
            reason = (f"mkdir: {key!r} is not a key of agent {agent!r} (openclaw would store "
                      f"it under another name): name the folder agent--{agent}--…")
            self.mount_state.errors.add(path, errno.EINVAL, reason)
            fail(errno.EINVAL, reason)
        try:
            store.create(key)
        except (SessionfsError, OSError) as exc:
            self.mount_state.reject(path, exc)
            raise
        self.mount_state.created_through_gateway(key)

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
        self.mount_state.require_writable()
        # rm -r: the unlinked meta.json's delete happens now
        self.mount_state.execute_doom_of(where.top)
        with self.mount_state.commit_lock:
            key = self.index.key_of(where.top)
            state = self.mount_state.dir_exists(where.top, key)
            if state is None:
                if self.mount_state.scratch_file("", where.top) is not None:
                    fail(errno.ENOTDIR)
                fail(errno.ENOENT)
            if state == "session":
                fail(errno.ENOTEMPTY, "the session still has its meta.json")
            self.mount_state.remove_dir(where.top)

    def unlink(self, path: str) -> None:
        where = parse_path(path)
        if where.kind in (CONTROL, CONTROL_FILE):
            fail(errno.EACCES, "the control folder is read-only")
        if where.kind == ROOT:
            fail(errno.EISDIR)
        self.mount_state.require_writable()
        if where.kind == META:
            self._delete_session(where.top)
            return
        if where.kind == INNER:
            if not is_libfuse_hidden(where.name):  # libfuse's last-close cleanup: always fine
                self.mount_state.require_dir(where.top)
        elif where.kind == TOP:
            if self.mount_state.dir_exists(where.top, self.index.key_of(where.top)):
                fail(errno.EISDIR)
        else:
            fail(errno.ENOENT)
        self.mount_state.remove_scratch(where.directory, where.leaf)

    def _delete_session(self, top: str) -> None:
        """``rm meta.json``: gone through the mount at once, from the store after the grace
        (see :class:`Doom`), so that an unlink + create pair (install, tar -x) is a save."""
        key, state = self.mount_state.require_dir(top)
        if key is None or state != "session" or self.mount_state.hidden_now(key):
            fail(errno.ENOENT)
        gateway_store = self.mount_state.gateway_store
        if gateway_store is not None:  # what openclaw never deletes is refused now
            try:
                gateway_store.check_delete(key)
            except SessionfsError as exc:
                self.mount_state.reject(f"/{top}/meta.json", exc)
                raise
        self.mount_state.doom(key, top)

    def _require_root_scratch_target(self, top: str) -> None:
        """A file may land at the root only as an editor scratch name, never over a session."""
        if self.mount_state.dir_exists(top, self.index.key_of(top)):
            fail(errno.EISDIR)
        if not is_root_scratch_name(top):
            fail(errno.EPERM, "only session folders (and editor scratch files) live here")

    def symlink(self, path: str, target: str) -> None:
        """Only Emacs-style lock links (``.#name``), kept as scratch; everything else EPERM."""
        where = parse_path(path)
        if where.kind not in (INNER, TOP) or not where.leaf.startswith(".#"):
            fail(errno.EPERM, "symbolic links are not supported (except editor lock links)")
        self.mount_state.require_writable()
        if where.kind == INNER:
            self.mount_state.require_dir(where.top)
        self.mount_state.put_scratch(where.directory, where.leaf,
                                     ScratchFile(link_target=target), exclusive=True)

    def readlink(self, path: str) -> str:
        where = parse_path(path)
        if where.kind in (INNER, TOP):
            file = self.mount_state.scratch_file(where.directory, where.leaf)
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
        self.mount_state.require_writable()
        if old == new:
            self.getattr(old)
            return
        exempt = None
        if dst.kind == META:  # the second half of a rename over an open meta.json?
            key = self.index.key_of(dst.top)
            doom = self.mount_state.doomed.get(key) if key is not None else None
            if doom is not None and doom.thread == threading.get_ident():
                exempt = key
        self.mount_state.settle(exempt=exempt)
        if src.kind == TOP:  # moving a folder whose meta.json was unlinked moves no session
            self.mount_state.execute_doom_of(src.top)
        if dst.kind == TOP:
            self.mount_state.execute_doom_of(dst.top)
        with self.mount_state.commit_lock:
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
        state = self.mount_state.dir_exists(src.top, src_key)
        if state is None:  # a root scratch file
            if self.mount_state.scratch_file("", src.top) is None:
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
        self.mount_state.require_dir_target(dst.top,
                                            self.mount_state.dir_exists(dst.top, dst_key))
        if state == "session":
            assert src_key is not None
            try:
                self.mount_state.store.rename(src_key, dst_key)
            except SessionExists:
                fail(errno.ENOTEMPTY, f"{dst.top} is a session")
            except SessionfsError as exc:  # openclaw has no key rename (EPERM): say why
                self.mount_state.reject(f"/{src.top}", exc)
                raise
        self.mount_state.dir_renamed((src_key, src.top), (dst_key, dst.top), state == "session")

    def _rename_meta(self, src: Where, dst: Where) -> None:
        src_key, _ = self.mount_state.require_dir(src.top)
        if src_key is None or self.mount_state.hidden_now(src_key):
            fail(errno.ENOENT)
        data, record = self.mount_state.served(src_key)  # SessionNotFound -> ENOENT
        if dst.kind == INNER and dst.top == src.top and is_libfuse_hidden(dst.name):
            # libfuse's stand-in for unlink() of an open file, and for the first half of a
            # rename over one: which of the two only shows in what comes next (see Doom).
            self.mount_state.put_scratch(dst.directory, dst.leaf, ScratchFile(
                bytearray(data), mtime_ns=self.index.entry_mtime(record)))
            self.mount_state.doom(src_key, src.top)
            return
        if dst.kind == META:
            dst_key, _ = self.mount_state.require_dir(dst.top)
            if dst_key is None:
                fail(errno.ENOENT)
            if dst_key == src_key:
                return
            self.mount_state.move_session((src_key, src.top), (dst_key, dst.top), data)
            return
        if dst.kind == TOP:
            self._require_root_scratch_target(dst.top)
        else:
            self.mount_state.require_dir(dst.top)
        # Renamed away (vim, Emacs: meta.json -> meta.json~): keep the session, hide the name.
        self.mount_state.hide_renamed_away(src_key, dst.directory, dst.leaf, ScratchFile(
            bytearray(data), mtime_ns=self.index.entry_mtime(record)))

    def _rename_scratch(self, src: Where, dst: Where) -> None:
        if src.kind == INNER:
            self.mount_state.require_dir(src.top)
        if self.mount_state.scratch_file(src.directory, src.leaf) is None:
            fail(errno.ENOENT)
        self._move_scratch(src, dst)

    def _move_scratch(self, src: Where, dst: Where) -> None:
        file = self.mount_state.scratch_file(src.directory, src.leaf)
        assert file is not None
        if dst.kind == META:
            dst_key, _ = self.mount_state.require_dir(dst.top)
            if dst_key is None:
                fail(errno.ENOENT)
            if file.is_link:
                fail(errno.EINVAL, "a link cannot become meta.json")
            self.mount_state.commit(dst_key, dst.top, bytes(file.data), replaces_file=True)
            self.mount_state.move_scratch((src.directory, src.leaf), None)
            return
        if dst.kind == TOP:
            self._require_root_scratch_target(dst.top)
        elif dst.kind == INNER:
            self.mount_state.require_dir(dst.top)
        self.mount_state.move_scratch((src.directory, src.leaf), (dst.directory, dst.leaf))


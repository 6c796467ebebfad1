"""Who may see what through an ``--allow-other`` mount: what they could reach on disk.

A mount shows the store's own owner, group and permission bits (``sessions.d``, or the
``sessions.json`` / database file, see :func:`shared_access`), but on disk those bits are only
half the answer: a 0644 ``sessions.json`` under a 0700 folder (what ``cp -r`` under umask 022
leaves) is unreadable to everyone but the folder's owner. So each class of the mode (owner,
group, others) keeps its bits only if that class can search every folder on the way to the
store (:func:`reach_mask`); a class that cannot is shown no bits at all. The test is done on
the resolved path and done again at most once per ``--timeout`` (:class:`LiveAccess`): a
``chmod`` of the store or of a folder above it shows within ``--timeout`` plus the kernel's
attribute cache (``--timeout`` again).

Each object shown is further capped by the disk objects it comes from (:class:`DiskCaps`): a
session folder of a directory store by its folder's mode, its ``meta.json`` by the file's mode
and by who can search the folder, a file-era transcript by its ``.jsonl``'s mode. sessionfs
itself creates session folders 0700 and ``meta.json`` 0600, and openclaw writes transcripts
0600: a ``chmod 755 sessions.d`` alone shares no session. The owner and group shown stay the
store's; a file owned by another user or group is judged conservatively (each class gets only
the bits every class it might fall into on disk has).

Each class is judged by the bits that would apply to it on disk, conservatively where the
mode bits cannot tell (a member of the store's group who also owns a folder on the way is
judged as a group member): the mount never shows more than the disk grants.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Access", "DiskCaps", "LiveAccess", "Shown", "disk_mask", "reach_mask",
           "shared_access"]

_OWNER, _GROUP, _OTHERS = 0o700, 0o070, 0o007


@dataclass(frozen=True, slots=True)
class Access:
    """Owner, group and the permission bits of folders and of files a mount shows."""

    uid: int
    gid: int
    dir_bits: int
    file_bits: int

    def as_view_kwargs(self) -> dict[str, Any]:
        """The keyword arguments :class:`~sessionfs.fs.view.SessionView` takes for these."""
        return {"uid": self.uid, "gid": self.gid,
                "permissions": (self.dir_bits, self.file_bits)}

    def narrowed(self, mask: int) -> Access:
        """The same owner with only the bits ``mask`` keeps."""
        return Access(self.uid, self.gid, self.dir_bits & mask, self.file_bits & mask)


def _groups_of(uid: int, gid: int) -> frozenset[int]:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry: only its own group
        return frozenset({gid})
    try:
        return frozenset(os.getgrouplist(name, gid))
    except OSError:
        return frozenset({gid} | {group.gr_gid for group in grp.getgrall()
                                  if name in group.gr_mem})


def reach_mask(path: os.PathLike[str] | str, uid: int, gid: int) -> int:
    """The mode classes (of a file owned by ``uid``:``gid`` at ``path``) whose users can search
    every folder from ``/`` down to ``path``'s parent: a mask of 0o700, 0o070 and 0o007.

    :raises OSError: a folder on the way cannot be examined.
    """
    resolved = Path(os.path.realpath(path))
    owner_groups = _groups_of(uid, gid) if uid != 0 else frozenset()
    mask = _OWNER | _GROUP | _OTHERS
    for folder in resolved.parents:
        st = os.stat(folder)
        mode = st.st_mode
        # the store's owner: root passes every folder; others by the class that applies to them
        if uid != 0:
            if st.st_uid == uid:
                owner_ok = bool(mode & stat.S_IXUSR)
            elif st.st_gid in owner_groups:
                owner_ok = bool(mode & stat.S_IXGRP)
            else:
                owner_ok = bool(mode & stat.S_IXOTH)
            if not owner_ok:
                mask &= ~_OWNER
        # a folder owned by someone else than the store's owner or root: its owner is judged
        # by its owner bits, and may be in any class
        owner_bits_ok = st.st_uid in (uid, 0) or bool(mode & stat.S_IXUSR)
        # members of the store's group: the folder's group bits if it is their group; else its
        # other bits, and its group bits too (some of them may be in the folder's group)
        if st.st_gid == gid:
            group_ok = bool(mode & stat.S_IXGRP)
        else:
            group_ok = bool(mode & stat.S_IXOTH) and bool(mode & stat.S_IXGRP)
        if not (group_ok and owner_bits_ok):
            mask &= ~_GROUP
        # anyone else: the folder's other bits, and its group bits unless its group is the
        # store's (a member of the folder's group is judged by those)
        others_ok = bool(mode & stat.S_IXOTH) and (st.st_gid == gid or bool(mode & stat.S_IXGRP))
        if not (others_ok and owner_bits_ok):
            mask &= ~_OTHERS
    return mask


def shared_access(path: os.PathLike[str] | str) -> Access | None:
    """What ``--allow-other`` shows for the store at ``path`` (``sessions.d``, ``sessions.json``
    or the database): its owner, group and permission bits for every folder and file (a folder
    gets x wherever the file is readable; files never x), each class capped by what it can
    reach on disk (:func:`reach_mask`). None when ``path`` cannot be examined (the mount then
    shows the mounting user's 0700/0600)."""
    try:
        st = os.stat(path)
        mask = reach_mask(path, st.st_uid, st.st_gid)
    except OSError:
        return None
    bits = stat.S_IMODE(st.st_mode) & 0o777 & mask
    folder_bits = bits if stat.S_ISDIR(st.st_mode) else bits | ((bits & 0o444) >> 2)
    return Access(st.st_uid, st.st_gid, folder_bits, bits & 0o666)


class LiveAccess:
    """:func:`shared_access` of ``path``, done again at most once per ``interval`` seconds, so
    that a ``chmod`` of the store (or of a folder above it) while mounted is followed: the
    mount never stays wider than the disk for longer than that. ``fallback`` (the mounting
    user's 0700/0600) is shown while ``path`` cannot be examined."""

    def __init__(self, path: os.PathLike[str] | str, fallback: Access, interval: float) -> None:
        self.path = path
        self.fallback = fallback
        self.interval = max(interval, 0.1)  # --timeout 0: not a walk up the tree per stat
        self._lock = threading.Lock()
        self._now = shared_access(path) or fallback
        self._next = time.monotonic() + self.interval

    def current(self) -> Access:
        """What the store grants now (as of at most ``interval`` ago)."""
        if time.monotonic() >= self._next:
            with self._lock:
                if time.monotonic() >= self._next:
                    self._now = shared_access(self.path) or self.fallback
                    self._next = time.monotonic() + self.interval
        return self._now

    @property
    def uid(self) -> int:
        return self.current().uid

    @property
    def gid(self) -> int:
        return self.current().gid

    @property
    def dir_bits(self) -> int:
        return self.current().dir_bits

    @property
    def file_bits(self) -> int:
        return self.current().file_bits

    def narrowed(self, mask: int) -> Access:
        """What :meth:`Access.narrowed` gives for the access now."""
        return self.current().narrowed(mask)

    def as_view_kwargs(self) -> dict[str, Any]:
        """The keyword arguments :class:`~sessionfs.fs.view.SessionView` takes for this."""
        return {"access": self}


#: What a mount shows for an object: fixed (the mounting user's) or followed on disk.
Shown = Access | LiveAccess


def disk_mask(st: os.stat_result, uid: int, gid: int) -> int:
    """The permission bits a disk object (``st``) grants each class of a mode whose owner is
    ``uid`` and group ``gid``, as a mask (rwx per class). When the object's owner or group
    differ, a class gets only the bits of every class of the object its users may fall in."""
    mode = st.st_mode
    owner, group, others = (mode >> 6) & 0o7, (mode >> 3) & 0o7, mode & 0o7
    same_uid, same_gid = st.st_uid == uid, st.st_gid == gid
    shown_owner = owner if same_uid else group & others
    shown_group = group if same_gid else group & others
    shown_others = others if same_gid else others & group
    if not same_uid:  # the object's owner may be a member of the group or anyone else
        shown_group &= owner
        shown_others &= owner
    return (shown_owner << 6) | (shown_group << 3) | shown_others


def _searchable(mask: int) -> int:
    """The classes of ``mask`` (a folder's) that may search it, each as a whole 0o7."""
    return sum(0o7 << shift for shift in (6, 3, 0) if mask & (0o1 << shift))


_KEEP = 0o777
#: Masks cached per session (the cache is emptied when it grows beyond this).
_CAPS_LIMIT = 200_000


class DiskCaps:
    """Per-session caps of what an ``--allow-other`` mount shows (see the module): masks of
    the bits each object's own disk files grant, kept at most ``interval`` seconds (one or two
    ``lstat`` per session and interval, only on mounts that share).

    ``names(key)`` gives the file names a file-era transcript may have (the store's own
    ``transcript_names``, or a cached version of them)."""

    def __init__(self, store: Any, access: Shown, interval: float,
                 names: Callable[[str], tuple[str, ...]] | None = None) -> None:
        self.store = store
        self.access = access
        self.interval = max(interval, 0.1)
        self._names = names or store.transcript_names
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}

    def _cached(self, what: str, key: str, measure: Callable[[], int]) -> int:
        now = time.monotonic()
        found = self._cache.get((what, key))
        if found is not None and found[0] > now:
            return found[1]
        mask = measure()
        if len(self._cache) > _CAPS_LIMIT:
            self._cache.clear()
        self._cache[(what, key)] = (now + self.interval, mask)
        return mask

    def _mask_of(self, path: str | os.PathLike[str]) -> int:
        """:func:`disk_mask` of ``path`` (not followed); gone: no cap (the session is going,
        its own answer says so); not examinable: nothing for anyone."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return _KEEP
        except OSError:
            return 0
        access = self.access
        return disk_mask(st, access.uid, access.gid)

    def folder(self, key: str) -> int:
        """Cap of the session folder of ``key``: its own folder's mode, where the store keeps a
        folder per session (:meth:`~sessionfs.store.base.Store.entry_paths`)."""
        files = self.store.entry_paths(key)
        if len(files) < 2:
            return _KEEP
        return self._cached("d", key, lambda: self._mask_of(files[0]))

    def meta(self, key: str) -> int:
        """Cap of ``meta.json``: the file's mode, for the classes that can search every folder
        the store reads it through."""
        files = self.store.entry_paths(key)
        if not files:
            return _KEEP

        def measure() -> int:
            mask = _KEEP
            for folder in files[:-1]:
                mask &= _searchable(self._mask_of(folder))
            return mask & self._mask_of(files[-1])
        return self._cached("m", key, measure)

    def transcript(self, key: str) -> int:
        """Cap of a file-era transcript: the first of its names that is a file, by its mode."""
        if not self.store.transcripts_are_files:
            return _KEEP

        def measure() -> int:
            try:
                names = self._names(key)
            except Exception:  # the entry cannot be read: its own answer says why
                return 0
            folder = self.store.path.parent
            for name in names:
                try:
                    st = os.lstat(f"{folder}/{name}")
                except FileNotFoundError:
                    continue
                except OSError:
                    return 0
                if stat.S_ISREG(st.st_mode):
                    access = self.access
                    return disk_mask(st, access.uid, access.gid)
            return _KEEP
        return self._cached("t", key, measure)

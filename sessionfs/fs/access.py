"""Who may see what through an ``--allow-other`` mount: what they could reach on disk.

A mount shows the store's own owner, group and permission bits (``sessions.d``, or the
``sessions.json`` / database file, see :func:`shared_access`), but on disk those bits are only
half the answer: a 0644 ``sessions.json`` under a 0700 folder (what ``cp -r`` under umask 022
leaves) is unreadable to everyone but the folder's owner. So each class of the mode (owner,
group, others) keeps its bits only if that class can search every folder on the way to the
store (:func:`reach_mask`); a class that cannot is shown no bits at all. The test is done on
the resolved path, once per store opened: ``chmod`` of a parent folder later shows at the
next mount (or, in a state mount, when the agent is opened again).

Each class is judged by the bits that would apply to it on disk, conservatively where the
mode bits cannot tell (a member of the store's group who also owns a folder on the way is
judged as a group member): the mount never shows more than the disk grants.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Access", "reach_mask", "shared_access"]

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

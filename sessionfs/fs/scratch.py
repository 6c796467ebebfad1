"""Scratch files: everything an editor or tool writes next to ``meta.json`` that is not the entry.

Swap files (``.meta.json.swp``), vim's ``4913`` probe, backups (``meta.json~``), Emacs lock links
(``.#meta.json``) and auto-saves (``#meta.json#``), ``sed -i``'s ``sedXXXXXX``, ``*.tmp`` files
for ``jq … > tmp && mv tmp meta.json``: they live in memory for the life of the mount, are listed
like files, and never reach the store. Renaming one onto ``meta.json`` commits its bytes (that
is done by the view, which validates them first).

Inside a session directory any name other than ``meta.json`` is a scratch file. At the root only
names editors actually produce are accepted (see :func:`is_root_scratch_name`); everything else
at the root is a session directory or nothing.

They cost the daemon's memory, and with ``--allow-other`` other users can create them, so a
:class:`ScratchBudget` bounds their total bytes and number per mount (``--scratch-max-bytes``,
``--scratch-max-files``): a create, write or truncate beyond it fails with ENOSPC. A file stays
charged while it is listed or still open (an unlinked open file keeps its bytes).

No FUSE import here; the view and the handles use these objects under the view's lock.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_SCRATCH_MAX_BYTES", "DEFAULT_SCRATCH_MAX_FILES", "ScratchBudget", "ScratchFile",
    "ScratchTree", "is_libfuse_hidden", "is_root_scratch_name",
]

#: Editors keep a swap file, a backup and a probe or two per file they edit, each about the
#: size of the entry (≤ 16 MiB): 64 MiB and 1000 names leave room for several editors at once
#: and bound what any user of the mount can make the daemon hold.
DEFAULT_SCRATCH_MAX_BYTES = 64 << 20
DEFAULT_SCRATCH_MAX_FILES = 1000

# Names editors and tools create beside the file they save (fuse-notes §3, §7): hidden files
# (swap, lock, .fuse_hidden, .nfs), backups, auto-saves, numeric probes, temp files.
_ROOT_SCRATCH = re.compile(
    r"""\..+            # .meta.json.swp, .#meta.json, .~lock.x#, .fuse_hidden0001
      | .+~             # backups
      | \#.*\#          # Emacs auto-save
      | [0-9]+          # vim's 4913 probe (and its successors)
      | sed[A-Za-z0-9]{6}
      | .+\.(?:tmp|temp|swp|swx|bak|orig|vsctmp|new|old)
      | tmp[A-Za-z0-9_]+  # Python tempfile
    """,
    re.VERBOSE | re.DOTALL,
)


def is_libfuse_hidden(name: str) -> bool:
    """A name libfuse gives a file unlinked (or renamed over) while open: ``.fuse_hidden…``.

    Such a file only lives until its last close; it is not listed and does not keep its folder
    from being removed.
    """
    return name.startswith(".fuse_hidden")


def is_root_scratch_name(name: str) -> bool:
    """Whether a regular file (or Emacs lock link) called ``name`` may be created at the root."""
    return name != ".sessionfs" and bool(_ROOT_SCRATCH.fullmatch(name))


@dataclass(slots=True)
class ScratchFile:
    """One in-memory file (or symlink, for Emacs lock links). Shared by all its open handles."""

    data: bytearray = field(default_factory=bytearray)
    mtime_ns: int = field(default_factory=time.time_ns)
    link_target: str | None = None
    #: Budget bookkeeping (see :class:`ScratchBudget`): listed in a folder, open handles,
    #: bytes charged (None: not charged).
    listed: bool = False
    opens: int = 0
    charged: int | None = None

    @property
    def is_link(self) -> bool:
        return self.link_target is not None

    @property
    def mode(self) -> int:
        if self.link_target is not None:
            return stat.S_IFLNK | 0o777
        return stat.S_IFREG | 0o600

    @property
    def size(self) -> int:
        if self.link_target is not None:
            return len(self.link_target.encode("utf-8", "surrogateescape"))
        return len(self.data)

    def touch(self) -> None:
        self.mtime_ns = time.time_ns()


def _no_space(detail: str) -> OSError:
    return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: {detail}")


class ScratchBudget:
    """How many scratch files and bytes this mount holds, against its limits.

    A file is charged from the moment it is listed until it is neither listed nor open.
    ``on_refuse(path, error)`` is told about every refusal (for ``.sessionfs/errors``).
    """

    def __init__(self, max_bytes: int = DEFAULT_SCRATCH_MAX_BYTES,
                 max_files: int = DEFAULT_SCRATCH_MAX_FILES,
                 on_refuse: Callable[[str, OSError], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.on_refuse = on_refuse
        self.bytes = 0
        self.files = 0
        self._lock = threading.Lock()

    def _refuse(self, path: str, detail: str) -> OSError:
        error = _no_space(f"{detail}; files other than meta.json are kept in memory only")
        if self.on_refuse is not None:
            self.on_refuse(path, error)
        return error

    def admit(self, file: ScratchFile, path: str, *, freed: ScratchFile | None = None,
              force: bool = False) -> None:
        """Charge ``file`` as it is listed at ``path`` (``freed``: the file it replaces there).

        :raises OSError: ENOSPC over either limit (nothing changed); never with ``force``.
        """
        with self._lock:
            if file.charged is not None:  # moved, or listed again while open: charged already
                return
            size = len(file.data)
            files, used = self.files + 1, self.bytes + size
            if freed is not None and freed is not file and freed.charged is not None \
                    and freed.opens == 0:
                files, used = files - 1, used - freed.charged
            if not force and files > self.max_files:
                raise self._refuse(path, f"the mount holds {self.files} extra files, the limit "
                                         f"(--scratch-max-files) is {self.max_files}")
            if not force and used > self.max_bytes:
                raise self._refuse(path, f"{size} more bytes would exceed the limit of "
                                         f"{self.max_bytes} bytes for extra files "
                                         f"(--scratch-max-bytes; {self.bytes} in use)")
            file.charged = size
            self.files += 1
            self.bytes += size

    def resize(self, file: ScratchFile, size: int, path: str) -> None:
        """``file``'s data is about to become ``size`` bytes. :raises OSError: ENOSPC"""
        with self._lock:
            if file.charged is None:
                return
            grow = size - file.charged
            if grow > 0 and self.bytes + grow > self.max_bytes:
                raise self._refuse(path, f"{grow} more bytes would exceed the limit of "
                                         f"{self.max_bytes} bytes for extra files "
                                         f"(--scratch-max-bytes; {self.bytes} in use)")
            self.bytes += grow
            file.charged = size

    def settle(self, file: ScratchFile) -> None:
        """Give back ``file``'s charge once it is neither listed nor open."""
        with self._lock:
            if file.charged is None or file.listed or file.opens > 0:
                return
            self.bytes -= file.charged
            self.files -= 1
            file.charged = None

    def opened(self, file: ScratchFile) -> None:
        with self._lock:
            file.opens += 1

    def closed(self, file: ScratchFile) -> None:
        with self._lock:
            file.opens -= 1
        self.settle(file)


class ScratchTree:
    """Scratch files per directory: ``""`` is the root, otherwise a session directory's name."""

    def __init__(self, budget: ScratchBudget | None = None) -> None:
        self._dirs: dict[str, dict[str, ScratchFile]] = {}
        self.budget = budget or ScratchBudget()

    def get(self, directory: str, name: str) -> ScratchFile | None:
        files = self._dirs.get(directory)
        return None if files is None else files.get(name)

    def names(self, directory: str) -> list[str]:
        return [name for name in self._dirs.get(directory, ()) if not is_libfuse_hidden(name)]

    def items(self, directory: str) -> list[tuple[str, ScratchFile]]:
        """The listed files of ``directory`` (libfuse's hidden names are left out)."""
        return [(name, file) for name, file in self._dirs.get(directory, {}).items()
                if not is_libfuse_hidden(name)]

    def has_any(self, directory: str) -> bool:
        """Whether ``directory`` holds a file that counts (not a :func:`is_libfuse_hidden`)."""
        return any(not is_libfuse_hidden(name) for name in self._dirs.get(directory, ()))

    def put(self, directory: str, name: str, file: ScratchFile) -> None:
        """List ``file`` as ``name`` (replacing what was there), charged to the budget.

        :raises OSError: ENOSPC when the budget has no room (nothing changed). libfuse's
            ``.fuse_hidden…`` names are always admitted: refusing them would break an unlink.
        """
        old = self.get(directory, name)
        path = f"/{directory}/{name}" if directory else f"/{name}"
        self.budget.admit(file, path, freed=old, force=is_libfuse_hidden(name))
        self._dirs.setdefault(directory, {})[name] = file
        file.listed = True
        if old is not None and old is not file:
            self._unlisted(old)

    def _unlisted(self, file: ScratchFile) -> None:
        file.listed = False
        self.budget.settle(file)

    def pop(self, directory: str, name: str) -> ScratchFile | None:
        files = self._dirs.get(directory)
        if files is None:
            return None
        file = files.pop(name, None)
        if not files:
            del self._dirs[directory]
        if file is not None:
            self._unlisted(file)
        return file

    def move_dir(self, old: str, new: str) -> None:
        """A session directory was renamed: its scratch files go with it."""
        files = self._dirs.pop(old, None)
        if files:
            self._dirs[new] = files

    def drop_dir(self, directory: str) -> None:
        for file in self._dirs.pop(directory, {}).values():
            self._unlisted(file)

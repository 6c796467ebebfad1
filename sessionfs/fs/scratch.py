"""Scratch files: everything an editor or tool writes next to ``meta.json`` that is not the entry.

Swap files (``.meta.json.swp``), vim's ``4913`` probe, backups (``meta.json~``), Emacs lock links
(``.#meta.json``) and auto-saves (``#meta.json#``), ``sed -i``'s ``sedXXXXXX``, ``*.tmp`` files
for ``jq … > tmp && mv tmp meta.json``: they live in memory for the life of the mount, are listed
like files, and never reach the store. Renaming one onto ``meta.json`` commits its bytes (that
is done by the view, which validates them first).

Inside a session directory any name other than ``meta.json`` is a scratch file. At the root only
names editors actually produce are accepted (see :func:`is_root_scratch_name`); everything else
at the root is a session directory or nothing.

No FUSE import here; the view and the handles use these objects under the view's lock.
"""

from __future__ import annotations

import re
import stat
import time
from dataclasses import dataclass, field

__all__ = ["ScratchFile", "ScratchTree", "is_libfuse_hidden", "is_root_scratch_name"]

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


class ScratchTree:
    """Scratch files per directory: ``""`` is the root, otherwise a session directory's name."""

    def __init__(self) -> None:
        self._dirs: dict[str, dict[str, ScratchFile]] = {}

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
        self._dirs.setdefault(directory, {})[name] = file

    def pop(self, directory: str, name: str) -> ScratchFile | None:
        files = self._dirs.get(directory)
        if files is None:
            return None
        file = files.pop(name, None)
        if not files:
            del self._dirs[directory]
        return file

    def move_dir(self, old: str, new: str) -> None:
        """A session directory was renamed: its scratch files go with it."""
        files = self._dirs.pop(old, None)
        if files:
            self._dirs[new] = files

    def drop_dir(self, directory: str) -> None:
        self._dirs.pop(directory, None)

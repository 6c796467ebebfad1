"""Paths of the mounted tree, classified by shape alone (no store access), and shared constants.

::

    /                           ROOT
    /.sessionfs, /.sessionfs/x  CONTROL, CONTROL_FILE
    /<name>                     TOP: a session folder, or an editor scratch file at the root
    /<name>/meta.json           META
    /<name>/<other>             INNER: a scratch file
    deeper                      DEEP: never exists
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from typing import NoReturn

from sessionfs.fs.control import CONTROL_DIR

__all__ = [
    "CONTROL", "CONTROL_DIR_MODE", "CONTROL_FILE", "CONTROL_FILE_MODE", "DEEP", "DIR_MODE",
    "FILE_MODE", "INNER", "META", "META_NAME", "RENAME_NOREPLACE", "ROOT", "TOP", "Where",
    "fail", "parse_path",
]

META_NAME = "meta.json"
RENAME_NOREPLACE = 1

DIR_MODE = stat.S_IFDIR | 0o700
FILE_MODE = stat.S_IFREG | 0o600
# The control folder shows the same modes as everything else (files 0600, folders 0700, or the
# store's own bits with --allow-other); its files keep their content by discarding what is
# written to them (a restore of a backup), not by their mode bits.
CONTROL_DIR_MODE = DIR_MODE
CONTROL_FILE_MODE = FILE_MODE

# Path kinds
ROOT, CONTROL, CONTROL_FILE, TOP, META, INNER, DEEP = (
    "root", "control", "control-file", "top", "meta", "inner", "deep")


def fail(code: int, detail: str = "") -> NoReturn:
    """Raise the OSError the kernel should see."""
    message = os.strerror(code) + (f": {detail}" if detail else "")
    raise OSError(code, message)


@dataclass(frozen=True, slots=True)
class Where:
    """A path, classified by shape only (no store access)."""

    kind: str
    top: str = ""   # first component
    name: str = ""  # second component

    @property
    def directory(self) -> str:
        """The scratch directory a file at this path belongs to (``""``: the root)."""
        return self.top if self.kind in (META, INNER) else ""

    @property
    def leaf(self) -> str:
        return self.name if self.kind in (META, INNER, CONTROL_FILE) else self.top


@functools.lru_cache(maxsize=1 << 16)
def parse_path(path: str) -> Where:
    """Classify ``path`` by shape. Cached: a read of a file asks this for the same path at
    LOOKUP, OPEN and after, and a ``Where`` is immutable."""
    if path in ("/", ""):
        return Where(ROOT)
    parts = path.strip("/").split("/")
    if len(parts) == 1:
        return Where(CONTROL if parts[0] == CONTROL_DIR else TOP, parts[0])
    if len(parts) == 2:
        top, name = parts
        if top == CONTROL_DIR:
            return Where(CONTROL_FILE, top, name)
        return Where(META if name == META_NAME else INNER, top, name)
    return Where(DEEP, parts[0], parts[1])



"""The FUSE mount: a session store as a directory tree (one folder per session).

Layers: kernel → :mod:`~sessionfs.fs.fuse_glue` (ctypes fixes to mfusepy's libfuse3 glue) →
:mod:`~sessionfs.fs.operations` (mfusepy callbacks, errno mapping) →
:mod:`~sessionfs.fs.view` and :mod:`~sessionfs.fs.handles` (tree, buffers, commits; no FUSE
import) → :mod:`sessionfs.store`. Only ``operations`` and ``fuse_glue`` import mfusepy, and
this package's ``__init__`` imports neither, so ``import sessionfs.fs`` works without libfuse.
"""

from __future__ import annotations

from sessionfs.fs.mount import MountError, MountOptions, is_mounted, mount, unmount

__all__ = ["MountError", "MountOptions", "is_mounted", "mount", "unmount"]

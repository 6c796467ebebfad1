"""Real mounts for the kernel tests: the harness (:mod:`tests.mountharness`, shared with
``scripts/bench.py``), the pytest fixtures over it, and the entries they mount."""

from __future__ import annotations

# the shared fixtures and data live in conftest.py; re-exported for modules that import them
from tests.conftest import CRON, ENTRIES, JAMES, MAIN, base, mnt, store_folder
from tests.mountharness import (
    ROOT,
    SCRATCH_BASE,
    Mount,
    _mountinfo,
    force_unmount,
    make_store_folder,
    mounted,
    scratch_root,
    wait_for,
)

__all__ = ["CRON", "ENTRIES", "JAMES", "MAIN", "ROOT", "SCRATCH_BASE", "Mount", "_mountinfo",
           "base", "force_unmount", "make_store_folder", "mnt", "mounted", "scratch_root",
           "store_folder", "wait_for"]

"""Real mounts for the kernel tests: the harness (:mod:`tests.mountharness`, shared with
``scripts/bench.py``), the pytest fixtures over it, and the entries they mount."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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

__all__ = ["ENTRIES", "ROOT", "SCRATCH_BASE", "Mount", "_mountinfo", "base", "force_unmount",
           "make_store_folder", "mnt", "mounted", "scratch_root", "store_folder", "wait_for"]

# -- pytest fixtures (import them into a test module to use them) ---------------------------------
MAIN = "agent:main:main"
JAMES = "agent:main:telegram:direct:james"
CRON = "agent:main:cron:14bbd904"
ENTRIES: dict[str, dict[str, Any]] = {
    MAIN: {"sessionId": "m-1", "updatedAt": 1_767_225_600_000, "thinkingLevel": "low",
           "label": "Einkaufsliste 🛒", "deliveryContext": {"channel": "telegram", "to": "1"}},
    JAMES: {"sessionId": "j-1", "updatedAt": 1_767_225_900_000, "thinkingLevel": "off",
            "inputTokens": 12, "estimatedCostUsd": 0.25},
    CRON: {"sessionId": "c-1", "updatedAt": 1_767_225_000_000, "thinkingLevel": "high"},
}


@pytest.fixture
def base() -> Iterator[Path]:
    folder = scratch_root()
    yield folder
    force_unmount(folder / "mnt")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["legacy", "directory"])
def store_folder(request: pytest.FixtureRequest, base: Path) -> Path:
    return make_store_folder(base, request.param, ENTRIES)


@pytest.fixture
def mnt(store_folder: Path) -> Iterator[Mount]:
    with Mount(store_folder, store_folder.parent / "mnt") as mount:
        yield mount
    mount.assert_no_internal_errors()

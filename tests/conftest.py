"""Shared fixtures and test data: real stores on disk in both layouts, real mounts over them;
the ``mount`` marker (``pytest -m "not mount"`` runs what needs no /dev/fuse) and the per-test
check that no mount's daemon logged a traceback."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sessionfs import jsonfmt
from sessionfs.demo import generate_entries, write_legacy_store
from sessionfs.migrate import migrate
from sessionfs.store import Store, open_store
from tests import mountharness, mountmarks
from tests.mountharness import Mount, force_unmount, has_internal_errors, make_store_folder

MakeStore = Callable[..., Store]

# -- test data ------------------------------------------------------------------------------------
MAIN = "agent:main:main"
JAMES = "agent:main:telegram:direct:james"
CRON = "agent:main:cron:14bbd904"
#: The three sessions the kernel tests mount (``store_folder``, ``mnt``).
ENTRIES: dict[str, dict[str, Any]] = {
    MAIN: {"sessionId": "m-1", "updatedAt": 1_767_225_600_000, "thinkingLevel": "low",
           "label": "Einkaufsliste 🛒", "deliveryContext": {"channel": "telegram", "to": "1"}},
    JAMES: {"sessionId": "j-1", "updatedAt": 1_767_225_900_000, "thinkingLevel": "off",
            "inputTokens": 12, "estimatedCostUsd": 0.25},
    CRON: {"sessionId": "c-1", "updatedAt": 1_767_225_000_000, "thinkingLevel": "high"},
}


# -- the mount marker -----------------------------------------------------------------------------
def _mounts(item: pytest.Item) -> bool:
    """Whether ITEM's function, or a fixture it uses, mounts (see tests/mountmarks.py)."""
    function = getattr(item, "function", None)
    if function is None:
        return False
    cls = getattr(item, "cls", None)
    name = getattr(item, "originalname", item.name)
    module = item.module.__name__  # type: ignore[attr-defined]
    mountmarks.register(module, item.path)
    if mountmarks.mounts(module, f"{cls.__name__}.{name}" if cls else name):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for fixture in item.fixturenames:  # type: ignore[attr-defined]
        if fixture == "_mount_guard":  # every test's: guards mounts, makes none
            continue
        for definition in (info.name2fixturedefs.get(fixture, ()) if info else ()):
            func = inspect.unwrap(definition.func)
            where = getattr(func, "__module__", "") or ""
            if mountmarks.mounts(where, getattr(func, "__qualname__", "")):
                return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that mounts, wherever it was written."""
    for item in items:
        if item.get_closest_marker("mount") is None and _mounts(item):
            item.add_marker(pytest.mark.mount)


@pytest.fixture(autouse=True)
def _mount_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test: a test without the ``mount`` marker may not start the harness's Mount (the
    marker's detection missed it: mark it ``@pytest.mark.mount``); after the test, fail it if
    any mount's daemon logged a traceback or an internal error during it."""
    if request.node.get_closest_marker("mount") is None:
        def refuse(self: Mount, timeout: float | None = None) -> Mount:
            pytest.fail(f"{request.node.nodeid} mounts but is not marked 'mount': "
                              "add @pytest.mark.mount (tests/mountmarks.py did not see it)")
        request.getfixturevalue("monkeypatch").setattr(Mount, "start", refuse)
    yield
    problems = []
    for mount in list(mountharness.STARTED):
        exited = mount.proc is None or mount.proc.poll() is not None  # before the last read
        text = mount.unchecked_log()
        if has_internal_errors(text):
            problems.append(f"--- daemon log of {mount.mp} ---\n{text}")
        if exited:
            mountharness.STARTED.remove(mount)  # read to its end
    if problems:
        pytest.fail("a mount's daemon logged an internal error during this test:\n"
                    + "\n".join(problems), pytrace=False)


def node_stringify(text: bytes) -> bytes:
    """What openclaw would write for this JSON text: node's JSON.stringify(JSON.parse(t),null,2)."""
    script = ("let d='';process.stdin.on('data',c=>d+=c).on('end',()=>"
              "process.stdout.write(JSON.stringify(JSON.parse(d),null,2)))")
    return subprocess.run(["node", "-e", script], input=text, capture_output=True,
                          check=True).stdout


@pytest.fixture
def sample_entries() -> dict[str, dict[str, Any]]:
    return generate_entries(25, seed=7)


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Store]:
    """make_store(layout, entries) -> an opened store of that layout holding ``entries``."""
    counter = iter(range(10**6))

    def build(layout: str, entries: dict[str, dict[str, Any]] | None = None) -> Store:
        folder = tmp_path / f"store{next(counter)}" / "sessions"
        folder.mkdir(parents=True)
        write_legacy_store(folder, generate_entries(25, seed=7) if entries is None else entries)
        if layout == "directory":
            migrate(folder)
        return open_store(folder)

    return build


@pytest.fixture(params=["legacy", "directory"])
def layout(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def any_store(make_store: MakeStore, layout: str) -> Store:
    return make_store(layout)


# -- time ----------------------------------------------------------------------------------------
class SteppedClock:
    """A monotonic clock that moves only when the test says: set as ``view.mount_state.clock`` to
    step past a grace or an attribute timeout instead of sleeping through it."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


# -- real mounts (tests/mountharness.py) ----------------------------------------------------------
@pytest.fixture
def base() -> Iterator[Path]:
    """A fresh folder outside /tmp (vim's backupskip) for a store and its mountpoint ``mnt``."""
    folder = mountharness.scratch_root()
    yield folder
    force_unmount(folder / "mnt")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["legacy", "directory"])
def store_folder(request: pytest.FixtureRequest, base: Path) -> Path:
    """``ENTRIES`` in each file-era layout."""
    return make_store_folder(base, request.param, ENTRIES)


@pytest.fixture
def mnt(store_folder: Path) -> Iterator[Mount]:
    """``store_folder`` mounted."""
    with Mount(store_folder, store_folder.parent / "mnt") as mount:
        yield mount
    mount.assert_no_internal_errors()


def store_bytes(store: Store) -> dict[str, bytes]:
    """Every file of a store folder by relative path: to assert 'nothing else changed'."""
    folder = store.path.parent  # sessions.json and sessions.d both sit in the sessions folder
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def entry_text(entry: dict[str, Any]) -> bytes:
    return jsonfmt.dumps(entry)

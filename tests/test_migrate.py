"""Migration and rollback: byte-exact, idempotent, and safe against kill -9 at any point."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.demo import generate_entries, write_legacy_store
from sessionfs.migrate import BACKUP_INFIX, STAGING_PREFIX, migrate, rollback
from sessionfs.store import DirectoryStore, LegacyStore, open_store

from .test_legacy_store import TRICKY_ENTRY_TEXT, write_openclaw_file


@pytest.fixture
def legacy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "sessions"
    folder.mkdir()
    write_openclaw_file(folder / "sessions.json", (
        '{"agent:main:main":' + TRICKY_ENTRY_TEXT + ','
        '"agent:main:matrix:channel:!AbC:m.org":{"sessionId":"u","updatedAt":1},'
        '"agent:main:matrix:channel:!abc:m.org":{"sessionId":"l","updatedAt":2},'
        '"a--b":{"sessionId":"dash","updatedAt":3},"a:b":{"sessionId":"colon","updatedAt":4},'
        '"' + "agent:main:long:" + "x" * 300 + '":{"sessionId":"long","updatedAt":5}}'))
    return folder


def test_migrate_writes_every_entry_and_keeps_a_backup(legacy_folder: Path) -> None:
    original = (legacy_folder / "sessions.json").read_bytes()
    legacy = open_store(legacy_folder)
    expected = {key: legacy.read(key).data for key in legacy.keys()}
    report = migrate(legacy_folder)
    assert report.changed and report.entries == 6 and report.bytes > 0
    assert not (legacy_folder / "sessions.json").exists()
    backups = list(legacy_folder.glob(f"sessions.json{BACKUP_INFIX}*"))
    assert len(backups) == 1 and backups[0].read_bytes() == original
    assert backups[0].name.rsplit(".", 1)[1].isdigit()
    store = open_store(legacy_folder)
    assert isinstance(store, DirectoryStore)
    assert sorted(store.keys()) == sorted(expected)
    for key, data in expected.items():
        assert (store.path / keys.encode(key) / "meta.json").read_bytes() == data
    assert not list(legacy_folder.glob(STAGING_PREFIX + "*"))


def test_migrate_is_idempotent_and_dry_run_changes_nothing(legacy_folder: Path) -> None:
    before = sorted(p.name for p in legacy_folder.iterdir())
    report = migrate(legacy_folder, dry_run=True)
    assert report.action == "dry-run" and not report.changed and report.entries == 6
    assert sorted(p.name for p in legacy_folder.iterdir()) == before
    migrate(legacy_folder)
    state = {p: p.stat().st_mtime_ns for p in legacy_folder.rglob("*")}
    again = migrate(legacy_folder)
    assert again.action == "already-migrated" and not again.changed
    assert {p: p.stat().st_mtime_ns for p in legacy_folder.rglob("*")} == state


def test_migrate_then_rollback_gives_back_the_original_bytes(legacy_folder: Path) -> None:
    original = (legacy_folder / "sessions.json").read_bytes()
    migrate(legacy_folder)
    report = rollback(legacy_folder)
    assert report.changed
    assert (legacy_folder / "sessions.json").read_bytes() == original
    assert isinstance(open_store(legacy_folder), LegacyStore)
    assert rollback(legacy_folder).action == "already-legacy"


def test_rollback_after_edits_matches_javascript(legacy_folder: Path) -> None:
    migrate(legacy_folder)
    store = open_store(legacy_folder)
    store.put("agent:main:main", {"sessionId": "edited", "updatedAt": 9})
    store.put("agent:main:zz-new", {"sessionId": "new", "updatedAt": 10})
    store.delete("a:b")
    rollback(legacy_folder)
    legacy = open_store(legacy_folder)
    keys_after = legacy.keys()
    assert keys_after[0] == "agent:main:main" and "a:b" not in keys_after
    assert keys_after[-1] == "agent:main:zz-new"
    from .conftest import node_stringify

    raw = (legacy_folder / "sessions.json").read_bytes()
    assert node_stringify(raw) == raw


# -- kill -9 at many points ---------------------------------------------------------------------
RUNNER = ("import sys; from sessionfs.migrate import {fn}; "
          "{fn}(sys.argv[1], progress=lambda n, t: print(n, t, flush=True))")


def _run_and_kill(folder: Path, fn: str, after_entries: int | None, delay: float) -> None:
    """Run ``fn`` in a child and SIGKILL it: after it reported ``after_entries`` entries
    (None: after its last one), plus ``delay`` seconds. Keyed to the child's own progress,
    so the kill points cover the same phases however loaded the machine is."""
    child = subprocess.Popen([sys.executable, "-c", RUNNER.format(fn=fn), str(folder)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    for line in child.stdout:
        done, total = map(int, line.split())
        if done == (total if after_entries is None else after_entries):
            break
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()


def _tail_seconds(template: Path, fn: str, scratch: Path) -> float:
    """How long ``fn`` runs after reporting its last entry (verification, sync, the switch, the
    backup rename, exit), measured on a copy now: the late kill points are spread over it, so
    they reach the switch however loaded the machine is."""
    folder = scratch / "tail-probe"
    shutil.copytree(template, folder, symlinks=True)
    child = subprocess.Popen([sys.executable, "-c", RUNNER.format(fn=fn), str(folder)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    last = time.monotonic()
    for line in child.stdout:
        done, total = map(int, line.split())
        if done == total:
            last = time.monotonic()
    child.wait()
    child.stdout.close()
    tail = time.monotonic() - last
    shutil.rmtree(folder)
    return max(tail, 0.01)


def _entries_of(folder: Path) -> dict[str, bytes]:
    store = open_store(folder)
    return {key: jsonfmt.dumps(store.get(key)) for key in store.keys()}


@pytest.mark.slow
@pytest.mark.parametrize("fn", ["migrate", "rollback"])
def test_kill_minus_nine_at_many_points_loses_nothing(tmp_path: Path, fn: str) -> None:
    template = tmp_path / "template"
    count = 400
    write_legacy_store(template, generate_entries(count, seed=3))
    original = (template / "sessions.json").read_bytes()
    if fn == "rollback":
        migrate(template)
    expected = _entries_of(template)
    rng = random.Random(11)
    trials = 25  # per direction: 50 kill points in all
    tail = _tail_seconds(template, fn, tmp_path)
    outcomes = {"before": 0, "after": 0}
    for trial in range(trials):
        folder = tmp_path / f"trial{trial}"
        shutil.copytree(template, folder, symlinks=True)
        if trial < trials // 2:  # while entries are staged / assembled, spread over all of them
            _run_and_kill(folder, fn, 1 + (count - 1) * trial // (trials // 2), 0.0)
        else:  # read-back verification, sync, the switch, the backup rename, exit: the tail
            # after the last entry: spread over it as measured on this machine now (tens of
            # milliseconds when idle, far more when loaded), crowding early, the last past it
            late = (trial - trials // 2) / (trials - 1 - trials // 2)
            _run_and_kill(folder, fn, None, 1.3 * tail * late ** 1.5 * rng.uniform(0.8, 1.2))
        store = open_store(folder)  # whatever state: a complete store of one layout
        assert _entries_of(folder) == expected
        outcomes["after" if store.layout == ("directory" if fn == "migrate" else "legacy")
                 else "before"] += 1
        getattr(__import__("sessionfs.migrate", fromlist=[fn]), fn)(folder)  # next run completes
        assert _entries_of(folder) == expected
        assert not list(folder.glob(STAGING_PREFIX + "*"))
        if fn == "migrate":
            backups = list(folder.glob(f"sessions.json{BACKUP_INFIX}*"))
            assert [b.read_bytes() for b in backups] == [original]
        else:
            assert (folder / "sessions.json").read_bytes() == original
        shutil.rmtree(folder)
    assert outcomes["before"] > 0 and outcomes["after"] > 0, outcomes


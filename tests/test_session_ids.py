"""Duplicate sessionIds: two keys with one sessionId point at one transcript.

The library refuses a new session whose sessionId another session has (EEXIST, store bytes
unchanged), in both layouts and through the CLI; ``check`` reports duplicates already there.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessionfs import jsonfmt
from sessionfs.demo import write_legacy_store
from sessionfs.errors import SessionExists
from sessionfs.maintenance import check
from sessionfs.migrate import migrate
from sessionfs.store import DirectoryStore, Store, locate_store, open_store
from tests.conftest import store_bytes
from tests.mountutil import ROOT

ENTRIES = {
    "agent:main:main": {"sessionId": "s-main", "updatedAt": 1},
    "agent:main:other": {"sessionId": "s-other", "updatedAt": 2,
                         "nested": {"sessionId": "s-nested"}},
}
LONG = "agent:main:" + "l" * 200


def make(tmp_path: Path, layout: str, entries: dict[str, dict[str, object]] = ENTRIES) -> Path:
    folder = tmp_path / "sessions"
    write_legacy_store(folder, entries)
    if layout == "directory":
        migrate(folder)
    return folder


@pytest.mark.parametrize("layout", ["legacy", "directory"])
@pytest.mark.parametrize("key", ["agent:main:copy", LONG])
def test_put_of_a_new_key_with_a_taken_session_id_is_refused(
        tmp_path: Path, layout: str, key: str) -> None:
    store = open_store(make(tmp_path, layout))
    before = store_bytes(store)
    with pytest.raises(SessionExists) as excinfo:
        store.put(key, {"sessionId": "s-main", "updatedAt": 9})
    assert excinfo.value.errno == errno.EEXIST
    assert "'s-main'" in str(excinfo.value) and "'agent:main:main'" in str(excinfo.value)
    assert store_bytes(store) == before
    assert sorted(open_store(store.path).keys()) == sorted(ENTRIES)


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_what_stays_allowed(tmp_path: Path, layout: str) -> None:
    store = open_store(make(tmp_path, layout))
    store.put("agent:main:main", {"sessionId": "s-main", "updatedAt": 5})  # rewriting itself
    store.put("agent:main:fresh", {"sessionId": "s-nested", "updatedAt": 6})  # nested only
    store.rename("agent:main:fresh", "agent:main:renamed")  # the sessionId moves with it
    store.put("agent:main:other", {"sessionId": "s-new", "updatedAt": 7})  # frees s-other
    store.put("agent:main:takes-freed", {"sessionId": "s-other", "updatedAt": 8})
    store.delete("agent:main:takes-freed")
    store.put("agent:main:again", {"sessionId": "s-other", "updatedAt": 9})
    assert store.key_with_session_id("s-other") == "agent:main:again"
    assert store.key_with_session_id("s-nested") == "agent:main:renamed"
    assert store.key_with_session_id("s-unknown") is None
    with pytest.raises(SessionExists):
        store.put("agent:main:late", {"sessionId": "s-nested", "updatedAt": 10})
    # a move done as put-then-delete (the mount's meta.json between sessions) names its source
    store.put("agent:main:moved", store.get("agent:main:main"), replacing="agent:main:main")
    store.delete("agent:main:main")
    assert store.key_with_session_id("s-main") == "agent:main:moved"


def test_the_index_sees_a_change_made_by_another_process(tmp_path: Path) -> None:
    store = open_store(make(tmp_path, "directory"))
    assert store.key_with_session_id("s-main") == "agent:main:main"  # index built
    other = open_store(store.path)  # another writer adds a session
    other.put("agent:main:elsewhere", {"sessionId": "s-elsewhere", "updatedAt": 3})
    with pytest.raises(SessionExists):
        store.put("agent:main:copy", {"sessionId": "s-elsewhere", "updatedAt": 4})


def test_many_new_sessions_do_not_rescan_the_store(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(make(tmp_path, "directory"))
    assert isinstance(store, DirectoryStore)
    scans = []
    real_scan = Store._scan_session_ids

    def counting_scan(self: Store) -> dict[str, list[str]]:
        scans.append(1)
        return real_scan(self)

    monkeypatch.setattr(Store, "_scan_session_ids", counting_scan)
    for number in range(20):
        store.put(f"agent:main:n{number}", {"sessionId": f"s-{number}", "updatedAt": number})
    store.delete("agent:main:n3")
    store.rename("agent:main:n4", "agent:main:n4-moved")
    with pytest.raises(SessionExists):
        store.put("agent:main:copy", {"sessionId": "s-4", "updatedAt": 1})
    assert len(scans) == 1


def cli(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "sessionfs", *argv], input=stdin,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          cwd=str(ROOT), timeout=60, check=False)


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_cli_put_refuses_with_exit_1_and_one_line(tmp_path: Path, layout: str) -> None:
    folder = make(tmp_path, layout)
    before = store_bytes(open_store(folder))
    result = cli("put", str(folder), "agent:main:copy", "-",
                 stdin=jsonfmt.dumps({"sessionId": "s-other", "updatedAt": 3}))
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "'s-other'" in lines[0] and "agent:main:other" in lines[0], lines
    assert store_bytes(open_store(folder)) == before


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_check_reports_existing_duplicates(tmp_path: Path, layout: str) -> None:
    folder = make(tmp_path, layout, {**ENTRIES, "agent:main:copy": {"sessionId": "s-main",
                                                                    "updatedAt": 3}})
    problems = [p for p in check(locate_store(folder)) if p.kind == "duplicate-session-id"]
    assert len(problems) == 1
    assert "'agent:main:main'" in problems[0].detail and "'agent:main:copy'" in problems[0].detail
    result = cli("check", str(folder))
    assert result.returncode == 1
    assert b"duplicate-session-id" in result.stdout
    clean = make(tmp_path / "clean", layout)
    assert cli("check", str(clean)).returncode == 0

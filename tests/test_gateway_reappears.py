"""A legacy-era gateway that keeps writing sessions.json after a migration: detect, merge."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sessionfs import jsonfmt
from sessionfs.cli import main
from sessionfs.demo import write_legacy_store
from sessionfs.lock import StoreLock
from sessionfs.maintenance import check
from sessionfs.migrate import BACKUP_INFIX, gateway_warnings, merge, migrate
from sessionfs.store import locate_store, open_store
from sessionfs.store.legacy import assemble, indent_member


class LegacyGateway:
    """Behaves like openclaw before sessions.d existed: the store lives in its memory and every
    save rewrites sessions.json whole, under the store lock, whatever else is on disk."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "sessions.json"
        self.lock_path = Path(os.path.realpath(folder)) / "sessions.json.lock"
        self.memory: dict[str, dict[str, Any]] = dict(jsonfmt.loads(self.path.read_bytes()))

    def save(self) -> None:
        with StoreLock(self.lock_path):
            self.path.write_bytes(assemble((k, indent_member(jsonfmt.dumps(v)))
                                           for k, v in self.memory.items()))


ENTRIES = {f"agent:main:direct:u{n}": {"sessionId": f"s{n}", "updatedAt": 1_000 + n}
           for n in range(6)}


def test_reappeared_sessions_json_is_detected_and_merged(tmp_path: Path,
                                                         capsys: Any) -> None:
    folder = tmp_path / "sessions"
    write_legacy_store(folder, ENTRIES)
    gateway = LegacyGateway(folder)

    report = migrate(folder)  # the file was written a moment ago: a gateway may be running
    assert any("written" in w and "merge" in w for w in report.warnings)
    assert open_store(folder).layout == "directory"

    # the user fixes u2 through sessions.d; the gateway, unaware, moves u1 on and adds u9
    directory = open_store(folder)
    directory.put("agent:main:direct:u2", {"sessionId": "s2", "updatedAt": 5_000, "label": "mine"})
    gateway.memory["agent:main:direct:u1"] = {"sessionId": "s1", "updatedAt": 4_000, "x": 1}
    gateway.memory["agent:main:direct:u2"] = {"sessionId": "s2", "updatedAt": 4_500}
    gateway.memory["agent:main:direct:u3"] = {"sessionId": "s3-tie", "updatedAt": 1_003}
    gateway.memory["agent:main:direct:u9"] = {"sessionId": "s9", "updatedAt": 3_000}
    gateway.save()

    problems = [p for p in check(locate_store(folder))
                if p.kind == "sessions.json beside sessions.d"]
    assert len(problems) == 1
    detail = problems[0].detail
    assert "4 sessions differ" in detail
    assert all(f"u{n}" in detail for n in (1, 2, 3, 9)) and "u4" not in detail
    assert main(["check", str(folder)]) == 1
    capsys.readouterr()

    dry = merge(folder, dry_run=True)
    assert sorted(dry.added) == ["agent:main:direct:u9"] and (folder / "sessions.json").exists()

    result = merge(folder)
    assert result.added == ["agent:main:direct:u9"]
    assert result.updated == ["agent:main:direct:u1"]           # gateway's is newer
    assert "agent:main:direct:u2" in result.kept                # ours is newer
    assert "agent:main:direct:u3" in result.kept                # tie keeps the directory's
    store = open_store(folder)
    assert store.get("agent:main:direct:u1") == {"sessionId": "s1", "updatedAt": 4_000, "x": 1}
    assert store.get("agent:main:direct:u2")["label"] == "mine"
    assert store.get("agent:main:direct:u3")["sessionId"] == "s3"
    assert store.get("agent:main:direct:u9")["sessionId"] == "s9"
    assert not (folder / "sessions.json").exists()
    assert len(list(folder.glob(f"sessions.json{BACKUP_INFIX}*"))) == 2  # migration + merge
    assert check(locate_store(folder)) == []
    assert merge(folder).message.startswith("nothing to merge")


def test_migrate_warns_when_a_process_holds_the_store_lock(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    write_legacy_store(folder, ENTRIES)
    old = time.time() - 3600
    os.utime(folder / "sessions.json", (old, old))
    location = locate_store(folder)
    assert gateway_warnings(location) == []
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from sessionfs.lock import StoreLock\n"
        f"l=StoreLock({str(location.lock_path)!r}); l.acquire(); print('held', flush=True);"
        " sys.stdin.read()")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        warnings = gateway_warnings(location)
        assert len(warnings) == 1 and str(holder.pid) in warnings[0]
    finally:
        holder.kill()
        holder.wait()


def test_mount_status_reports_a_reappeared_sessions_json(tmp_path: Path) -> None:
    from .mountutil import mounted

    folder = tmp_path / "sessions"
    write_legacy_store(folder, ENTRIES)
    gateway = LegacyGateway(folder)
    migrate(folder)
    with mounted(folder) as mount:
        status = (mount.mp / ".sessionfs" / "status").read_text()
        assert "warning" not in status
        gateway.memory["agent:main:direct:u1"] = {"sessionId": "s1", "updatedAt": 9_000}
        gateway.save()
        status = (mount.mp / ".sessionfs" / "status").read_text()
        warning = [line for line in status.splitlines() if line.startswith("warning:")]
        assert len(warning) == 1
        assert "1 sessions differ" in warning[0] and "agent:main:direct:u1" in warning[0]
        assert "sessionfs merge" in warning[0]

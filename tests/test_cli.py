"""The sessionfs command: each subcommand, its output, its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sessionfs import jsonfmt
from sessionfs.cli import main
from sessionfs.demo import write_legacy_store
from sessionfs.store import open_store

ENTRIES = {
    "agent:main:main": {"sessionId": "m", "updatedAt": 3_000},
    "agent:main:telegram:direct:james": {"sessionId": "j", "updatedAt": 1_000},
    "agent:main:cron:14bbd904": {"sessionId": "c", "updatedAt": 2_000},
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "sessions"
    write_legacy_store(target, ENTRIES)
    return target


def run(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, "-m", "sessionfs", *argv], input=stdin,
                            capture_output=True)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_ls_get_put_rm_mv(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines() == list(ENTRIES)
    assert main(["ls", "-l", str(folder)]) == 0
    assert "agent--main--telegram--direct--james" in capsys.readouterr().out
    assert main(["ls", "--json", str(folder)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"key": "agent:main:main", "updatedAt": 3000,
                       "size": len(jsonfmt.dumps(ENTRIES["agent:main:main"])),
                       "name": "agent--main--main"}
    assert main(["get", str(folder), "agent:main:main"]) == 0
    assert capsys.readouterr().out == jsonfmt.stringify(ENTRIES["agent:main:main"]) + "\n"
    new_entry = folder.parent / "new.json"
    new_entry.write_text('{"sessionId": "n", "updatedAt": 4000}\n')
    assert main(["put", str(folder), "agent:main:new", str(new_entry)]) == 0
    assert open_store(folder).get("agent:main:new") == {"sessionId": "n", "updatedAt": 4000}
    assert main(["mv", str(folder), "agent:main:new", "agent:main:newer"]) == 0
    assert main(["rm", str(folder), "agent:main:newer"]) == 0
    assert open_store(folder).keys() == list(ENTRIES)


def test_put_from_stdin_and_rejections_keep_the_store(folder: Path) -> None:
    before = (folder / "sessions.json").read_bytes()
    code, _, err = run("put", str(folder), "agent:main:main", "-",
                       stdin=b'{"sessionId": "bad id!", "updatedAt": 1}')
    assert code == 1 and "sessionId" in err and err.count("\n") == 1
    code, _, err = run("put", str(folder), "agent:main:main", stdin=b'{"sessionId": ')
    assert code == 1 and "JSON" in err
    assert (folder / "sessions.json").read_bytes() == before
    code, _, _ = run("put", str(folder), "agent:main:main",
                     stdin=b'{"sessionId": "m2", "updatedAt": 5}')
    assert code == 0 and open_store(folder).get("agent:main:main")["sessionId"] == "m2"


def test_usage_and_store_errors_have_distinct_exit_codes(tmp_path: Path, folder: Path) -> None:
    assert run()[0] == 2
    assert run("frobnicate")[0] == 2
    code, _, err = run("mv", str(folder), "only-one")
    assert code == 2 and "expected" in err
    code, _, err = run("ls", str(tmp_path / "nowhere"))
    assert code == 1 and "no session store" in err and err.count("\n") == 1
    code, _, err = run("get", str(folder), "agent:main:absent")
    assert code == 1 and "agent:main:absent" in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "sessions.json").write_bytes(b"")
    code, _, err = run("ls", str(tmp_path / "broken"))
    assert code == 1 and "empty" in err and "sessions.json" in err


def test_default_store_honours_openclaw_state_dir(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write_legacy_store(tmp_path / "state" / "agents" / "main" / "sessions", ENTRIES)
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(tmp_path / "state"))
    code, out, _ = run("get", "agent:main:main")
    assert code == 0 and '"sessionId": "m"' in out


def test_migrate_rollback_check_and_prune(folder: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(folder)]) == 0
    assert main(["migrate", "--dry-run", str(folder)]) == 0
    assert "would migrate 3 sessions" in capsys.readouterr().out
    assert main(["migrate", "--json", str(folder)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["entries"] == 3 and report["changed"] is True
    assert main(["migrate", str(folder)]) == 0
    assert "already" in capsys.readouterr().out
    (folder / "sessions.d" / "agent--main--broken").mkdir()
    assert main(["check", str(folder)]) == 1
    assert "no meta.json" in capsys.readouterr().out
    (folder / "sessions.d" / "agent--main--broken").rmdir()
    assert main(["prune", "--max-entries", "2", "--dry-run", str(folder)]) == 0
    assert "would remove agent:main:telegram:direct:james" in capsys.readouterr().out
    assert len(open_store(folder).keys()) == 3
    assert main(["prune", "--max-entries", "2", str(folder)]) == 0
    assert sorted(open_store(folder).keys()) == ["agent:main:cron:14bbd904", "agent:main:main"]
    assert main(["rollback", str(folder)]) == 0
    assert open_store(folder).layout == "legacy"


def test_prune_follows_openclaw_rules(tmp_path: Path) -> None:
    from sessionfs.maintenance import plan_prune

    entries = {"old": {"updatedAt": 1_000}, "new": {"updatedAt": 9_000},
               "undated": {"sessionId": "u"}, "mid": {"updatedAt": 5_000}}
    assert plan_prune(entries, older_than_ms=4_000, now_ms=10_000) == ["old", "mid"]
    assert plan_prune(entries, max_entries=2) == ["old", "undated"]
    assert plan_prune(entries, max_entries=3) == ["undated"]
    assert plan_prune(entries, older_than_ms=4_000, max_entries=1, now_ms=10_000) == [
        "old", "undated", "mid"]


"""The sessionfs command: each subcommand, its output, its exit codes."""

from __future__ import annotations

import errno
import json
import os
import shutil
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



# -- errors that tell the fix ------------------------------------------------------------------
def run_in(cwd: Path, *argv: str, env: dict[str, str] | None = None, stdin: bytes = b"",
           user: list[str] | None = None) -> tuple[int, str, str]:
    """The CLI from ``cwd`` with extra environment, optionally as another user."""
    environment = {k: v for k, v in os.environ.items() if k != "OPENCLAW_STATE_DIR"}
    environment.update(env or {})
    result = subprocess.run([*(user or []), sys.executable, "-m", "sessionfs", *argv],
                            input=stdin, capture_output=True, cwd=str(cwd), env=environment,
                            timeout=60, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_a_missing_store_is_named_as_given(tmp_path: Path) -> None:
    code, _, err = run_in(tmp_path, "ls", "nothere")
    assert code == 1
    assert err.splitlines() == [
        "sessionfs: error: nothere: no session store here: no such file or directory (a store "
        "is a sessions.json, the folder holding it, or a sessions.d)"]
    (tmp_path / "empty").mkdir()
    code, _, err = run_in(tmp_path, "ls", "empty")
    assert code == 1
    assert err.splitlines() == [
        f"sessionfs: error: empty: no session store here (looked for "
        f"{tmp_path}/empty/sessions.json and {tmp_path}/empty/sessions.d)"]


def test_no_openclaw_state_folder_says_how_to_point_at_a_store(tmp_path: Path) -> None:
    code, _, err = run_in(tmp_path, "ls", env={"HOME": str(tmp_path)})
    assert code == 1
    assert err.splitlines() == [
        f"sessionfs: error: no openclaw state folder at {tmp_path}/.openclaw, so there is no "
        "default store: give the store's path (a sessions.json, its folder or a sessions.d), "
        "or set OPENCLAW_STATE_DIR to openclaw's state folder"]
    code, _, err = run_in(tmp_path, "get", "agent:main:main",
                          env={"OPENCLAW_STATE_DIR": str(tmp_path / "state")})
    assert code == 1
    assert err.splitlines() == [
        f"sessionfs: error: OPENCLAW_STATE_DIR is {tmp_path}/state, which is not a folder, so "
        "there is no default store: correct it, or give the store's path"]


@pytest.mark.parametrize("layout", ["legacy", "directory"])
def test_a_store_folder_you_cannot_write_is_named(layout: str) -> None:
    """Not the lock's or a write's internal temp file: the store, and exit 1, store unchanged."""
    from sessionfs.migrate import migrate
    from tests.mountutil import scratch_root

    base = scratch_root()
    try:
        folder = base / "sessions"
        write_legacy_store(folder, ENTRIES)
        if layout == "directory":
            migrate(folder)
        subprocess.run(["chown", "-R", "65534:65534", str(base)], check=True)
        base.chmod(0o755)
        folder.chmod(0o500)
        if layout == "directory":
            (folder / "sessions.d").chmod(0o500)
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        for argv in (["put", str(folder), "agent:main:new", "-"],
                     ["rm", str(folder), "agent:main:main"]):
            code, _, err = run_in(base, *argv, user=nobody,
                                  stdin=b'{"sessionId": "n", "updatedAt": 1}')
            assert code == 1
            assert err.splitlines() == [
                f"sessionfs: error: cannot write the store at {folder}: Permission denied"], argv
        assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_check_calls_a_sqlite_era_store_a_stale_copy(folder: Path) -> None:
    sqlite = folder.parent / "agent" / "openclaw-agent.sqlite"
    sqlite.parent.mkdir()
    sqlite.write_bytes(b"SQLite format 3\0")
    code, out, err = run("check", "--store", str(folder))
    assert code == 0 and err == ""  # the verdict is check's output: stdout
    assert out.splitlines() == [
        f"{folder}/sessions.json: not in use: the gateway uses the SQLite database {sqlite}; "
        "this is a stale retained copy (0 problem(s))"]


# -- a key is never taken for a store -----------------------------------------------------------
JSONISH = "agent:main:notes.json"


@pytest.fixture
def default_store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A default store (OPENCLAW_STATE_DIR) holding a .json-ish key, and a working folder that
    holds a file named like that key."""
    folder = tmp_path / "state" / "agents" / "main" / "sessions"
    write_legacy_store(folder, {**ENTRIES, JSONISH: {"sessionId": "n", "updatedAt": 7}})
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / JSONISH).write_text('{"sessionId": "from-file", "updatedAt": 8}\n')
    (cwd / "other.json").write_text("{}\n")
    return cwd, {"OPENCLAW_STATE_DIR": str(tmp_path / "state")}


def test_json_like_keys_with_the_default_store(default_store: tuple[Path, dict[str, str]],
                                               tmp_path: Path) -> None:
    cwd, env = default_store
    folder = tmp_path / "state" / "agents" / "main" / "sessions"
    code, out, err = run_in(cwd, "get", JSONISH, env=env)
    assert (code, err) == (0, "") and json.loads(out) == {"sessionId": "n", "updatedAt": 7}
    code, out, err = run_in(cwd, "get", "other.json", env=env)  # a key naming a file in cwd
    assert code == 1 and err.splitlines() == [
        f"sessionfs: error: no session 'other.json' in {folder}/sessions.json"]
    # put KEY FILE (the key names a file here, so does FILE), and put KEY (stdin)
    code, _, err = run_in(cwd, "put", JSONISH, JSONISH, env=env)
    assert code == 0, err
    assert open_store(folder).get(JSONISH) == {"sessionId": "from-file", "updatedAt": 8}
    code, _, err = run_in(cwd, "put", JSONISH, env=env,
                          stdin=b'{"sessionId": "stdin", "updatedAt": 9}')
    assert code == 0, err
    assert open_store(folder).get(JSONISH) == {"sessionId": "stdin", "updatedAt": 9}
    code, _, err = run_in(cwd, "mv", JSONISH, "agent:main:moved.json", env=env)
    assert code == 0, err
    assert JSONISH not in open_store(folder).keys()
    code, _, err = run_in(cwd, "rm", "agent:main:moved.json", env=env)
    assert code == 0, err
    assert open_store(folder).keys() == list(ENTRIES)
    assert (cwd / JSONISH).read_text() == '{"sessionId": "from-file", "updatedAt": 8}\n'


def test_store_is_told_by_count_and_existence(default_store: tuple[Path, dict[str, str]],
                                              tmp_path: Path) -> None:
    cwd, env = default_store
    folder = tmp_path / "state" / "agents" / "main" / "sessions"
    # one more positional than the command takes: the first is the STORE, whatever its name
    code, out, err = run_in(cwd, "get", str(folder / "sessions.json"), JSONISH, env=env)
    assert code == 0 and json.loads(out)["sessionId"] == "n", err
    # put STORE KEY reads stdin when STORE names an existing store
    code, _, err = run_in(cwd, "put", str(folder), "agent:main:piped", env=env,
                          stdin=b'{"sessionId": "p", "updatedAt": 1}')
    assert code == 0, err
    assert open_store(folder).get("agent:main:piped") == {"sessionId": "p", "updatedAt": 1}
    # a store with its key missing is a usage error, not a lookup of the path as a key
    code, _, err = run_in(cwd, "get", str(folder), env=env)
    assert code == 2 and err.splitlines() == ["sessionfs: error: get: expected [STORE] KEY"]
    # --store everywhere, mount and check included
    for argv in (["ls", "--store", str(folder)], ["check", "--store", str(folder)],
                 ["get", "--store", str(folder), JSONISH]):
        code, _, err = run_in(cwd, *argv, env=env)
        assert code == 0, (argv, err)
    code, _, err = run_in(cwd, "mount", "--store", str(folder), str(cwd / "nowhere"), env=env)
    assert code == 1 and err.splitlines() == [
        f"sessionfs: error: mountpoint {cwd}/nowhere does not exist"]


@pytest.mark.parametrize("era", ["sqlite", "legacy"])
def test_demo_shows_the_sqlite_era_by_default_and_the_editable_file_era_with_legacy(
        tmp_path: Path, era: str) -> None:
    """``sessionfs demo`` (README's first command) mounts a SQLite-era store, read-only, and
    says how to try the editable one; ``--legacy`` mounts the file era, writable."""
    folder = tmp_path / "demo"
    mountpoint = folder / "mnt"
    try:
        code, out, err = run("demo", *(["--legacy"] if era == "legacy" else []), str(folder))
        assert code == 0, err
        first = sorted(p.name for p in mountpoint.iterdir() if not p.name.startswith("."))[0]
        meta = mountpoint / first / "meta.json"
        if era == "sqlite":
            assert (folder / "state/agents/main/agent/openclaw-agent.sqlite").is_file()
            assert "refused rows: 0" in out  # every key belongs to the agent, as openclaw's
            assert '{"type":"session","version":3' in out  # head -c 300 of a transcript
            assert f"touch: cannot touch '{meta}': Read-only file system" in err + out
            assert f"try the file-era demo: sessionfs demo --legacy {folder}" in out
            with pytest.raises(OSError) as refused:
                meta.write_bytes(b"{}")
            assert refused.value.errno == errno.EROFS
            assert (mountpoint / first / "transcript.jsonl").read_bytes().endswith(b"\n")
        else:
            assert (folder / "sessions" / "sessions.json").is_file()
            assert "edit any meta.json" in out
            entry = json.loads(meta.read_bytes())
            entry["label"] = "edited in the demo"
            meta.write_text(json.dumps(entry, indent=2))
            labels = [e.get("label") for e in open_store(folder / "sessions").load().values()]
            assert labels.count("edited in the demo") == 1
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False,
                       capture_output=True)


# -- a state folder, a key's agent, check's verdict (issue 14, point 16) -------------------------
WORK = "agent:work:main"
WORK_LINES = ['{"type":"session","version":3,"id":"w-1","timestamp":"2026-01-01T00:00:00.000Z"}',
              '{"type":"message","id":"a1","parentId":null,"message":{"role":"user"}}']


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state folder with two agents: ``main`` (file era) and ``work`` (SQLite, with a
    transcript)."""
    from sessionfs.demo_sqlite import write_sqlite_store

    root = tmp_path / "state"
    write_legacy_store(root / "agents" / "main" / "sessions", ENTRIES)
    write_sqlite_store(root / "agents" / "work", {WORK: {"sessionId": "w-1", "updatedAt": 5}},
                       transcripts={WORK: WORK_LINES}, agent_id="work")
    return root


def test_a_state_folder_names_one_agents_store(state: Path, tmp_path: Path) -> None:
    # what mount accepts, ls accepts too: agent main, saying which of the agents it listed
    code, out, err = run_in(tmp_path, "ls", str(state))
    assert (code, out.splitlines()) == (0, list(ENTRIES)), err
    assert err.splitlines() == [
        f"sessionfs: note: {state} holds agents main, work; using {state}/agents/main "
        f"(name another as {state}/agents/<id>)"]
    # a key names its agent within the state folder
    code, out, err = run_in(tmp_path, "get", str(state), WORK)
    assert (code, json.loads(out), err) == (0, {"sessionId": "w-1", "updatedAt": 5}, "")
    code, out, err = run_in(tmp_path, "transcript", "--store", str(state), WORK)
    assert (code, out, err) == (0, "".join(line + "\n" for line in WORK_LINES), "")
    # --store STATE: the same; put STATE KEY reads stdin (STATE names a store)
    code, _, err = run_in(tmp_path, "put", str(state), "agent:main:piped",
                          stdin=b'{"sessionId": "p", "updatedAt": 1}')
    assert code == 0, err
    assert open_store(state / "agents" / "main").get("agent:main:piped") == {
        "sessionId": "p", "updatedAt": 1}
    # no agent main: say how to name one, not "no session store here"
    shutil.rmtree(state / "agents" / "main")
    code, out, err = run_in(tmp_path, "status", str(state))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"sessionfs: error: {state} is an openclaw state folder, not one store, and agent "
        f"'main' has no store there (agents: work): name one as {state}/agents/<id> (mount "
        "takes the whole folder)"]


def test_a_keys_agent_picks_the_store_when_none_is_given(state: Path, tmp_path: Path) -> None:
    env = {"OPENCLAW_STATE_DIR": str(state)}
    code, out, err = run_in(tmp_path, "transcript", WORK, env=env)
    assert (code, out, err) == (0, "".join(line + "\n" for line in WORK_LINES), "")
    code, out, err = run_in(tmp_path, "get", WORK, env=env)
    assert (code, json.loads(out)["sessionId"]) == (0, "w-1"), err
    # main's keys still come from the default store; a store or --agent given wins
    code, out, err = run_in(tmp_path, "get", "agent:main:main", env=env)
    assert (code, json.loads(out)["sessionId"]) == (0, "m"), err
    code, _, err = run_in(tmp_path, "get", "--agent", "main", WORK, env=env)
    assert code == 1 and f"no session '{WORK}' in {state}/agents/main" in err
    # an agent without a folder says where it looked
    code, _, err = run_in(tmp_path, "get", "agent:ghost:main", env=env)
    assert code == 1 and f"{state}/agents/ghost" in err


def test_check_prints_its_verdict_on_stdout(folder: Path) -> None:
    code, out, err = run("check", str(folder))
    assert (code, out, err) == (0, f"{folder}/sessions.json: ok (legacy store)\n", "")
    (folder / "sessions.d.staging-1").mkdir()  # an interrupted migration: a problem
    code, out, err = run("check", str(folder))
    assert code == 1 and err == ""
    assert out.splitlines()[-1] == f"{folder}/sessions.json: 1 problem(s)"

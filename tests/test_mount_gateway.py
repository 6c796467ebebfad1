"""Through the kernel: a SQLite-era store mounted while the REAL openclaw 2026.9.6 Gateway runs.
Saves with editors, refusals (ours and openclaw's), a concurrent patch by openclaw's own CLI, a
reset in between, mkdir / rm -r / mv, another user on an --allow-other mount, and the Gateway
hung, killed during a save and restarted (last: it costs a Gateway start).

What the database holds afterwards is read with SQLite directly (``mode=ro``)."""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionfs import jsonfmt, keys
from sessionfs.entry import serialize_entry
from sessionfs.gateway import GatewayClient
from tests.gatewayutil import Gateway, db_entry, db_row, gateway_fixture, oc_call  # noqa: F401
from tests.mountharness import Mount, wait_for

MAIN = "agent:main:main"
JAMES = "agent:main:telegram:direct:james"
TG2 = "agent:main:telegram:direct:5550002"
WHATSAPP = "agent:main:whatsapp:direct:+15551234567"
DISCORD = "agent:main:discord:channel:1187654321098765432"
SLACK = "agent:main:slack:channel:c0123abcd:thread:1712345678.123456"
MATRIX = "agent:main:matrix:channel:!AbCdEfGh:example.org"
GUEST = "agent:main:webchat:direct:guest-42"
SIGNAL = "agent:main:signal:group:QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
UNICODE = "agent:main:telegram:direct:ünïcödé"
TOPIC = "agent:main:telegram:group:-1001234567890:topic:42"


@pytest.fixture(scope="module")
def mnt(gateway: Gateway) -> Iterator[Mount]:
    mount = Mount(gateway.state / "agents" / "main", gateway.base / "mnt", "--timeout", "0.2")
    with mount:
        yield mount
    mount.assert_no_internal_errors()


def run(command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TERM="xterm", HOME=os.environ.get("HOME", "/root"))
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                          env=env, check=False, **kwargs)  # type: ignore[call-overload]


def shows_db(mnt: Mount, gw: Gateway, key: str) -> None:
    """meta.json shows the entry exactly as openclaw stored it (its updatedAt, its order)."""
    stored = db_entry(gw.db(), key)
    assert stored is not None
    assert wait_for(lambda: mnt.meta(key).read_bytes() == serialize_entry(stored), 3), \
        (mnt.meta(key).read_bytes(), serialize_entry(stored))


def with_label(mnt: Mount, key: str, label: str) -> bytes:
    entry = json.loads(mnt.meta(key).read_bytes())
    entry["label"] = label
    return jsonfmt.dumps(entry)


# -- saves -----------------------------------------------------------------------------------
EXPLICIT = "agent:main:explicit:model-run-3f2504e0-4f89-41d3-9a0c-0305e82c3301"
GOOGLECHAT = "agent:main:googlechat:group:spaces/aaaa1234567"
GMAIL = "agent:main:hook:gmail:18c2a7f0"
SUBAGENT = "agent:main:subagent:7c9e6679-7425-40de-944b-e07fc1f90ae7"
DASHBOARD = "agent:main:dashboard:6ba7b810-9dad-41d1-80b4-00c04fd430c8"
CRON = "agent:main:cron:daily-digest"
NANO_KEYS = ["\x05", '\r  "label": "via nano",', "\x0f", "\r", "\x18"]  # ^E, type, ^O, ^X
NANO = "; ".join(f"sleep 0.3; printf '%s' {shlex.quote(k)}" for k in NANO_KEYS)
EDITORS = {
    "sed -i": (TG2, "sed -i 's/^{$/{\\n  \"label\": \"via sed\",/' {meta}"),
    "vim": (WHATSAPP, "vim -u DEFAULTS -i NONE -es -c 'set backup writebackup' "
                      "-c '1s/{/{\\r  \"label\": \"via vim\",/' -c wq {meta}"),
    "nano": (EXPLICIT, f"({NANO}; sleep 0.5) | script -qfc \"nano {{meta}}\" /dev/null"),
    "emacs": (GOOGLECHAT, "emacs --batch {meta} --eval '(progn (goto-char (point-min)) "
                          "(end-of-line) (insert \"\\n  \\\"label\\\": \\\"via emacs\\\",\") "
                          "(save-buffer))'"),
    "perl -i": (GMAIL, "perl -pi -e 's/\"label\": \"Gmail hook\"/\"label\": \"via perl\"/' "
                       "{meta}"),
    "install": (SUBAGENT, "install -m 600 {tmp} {meta}"),
    "cp": (SIGNAL, "cp {tmp} {meta}"),
    "cat >": (UNICODE, "cat {tmp} > {meta}"),
    "jq | sponge": (CRON, "jq '.label = \"via jq\"' {meta} | sponge {meta}"),
    "python os.replace": (TOPIC, "python3 -c 'import os,shutil,sys; "
                                 "shutil.copy(sys.argv[1], sys.argv[2] + \".tmp\"); "
                                 "os.replace(sys.argv[2] + \".tmp\", sys.argv[2])' {tmp} {meta}"),
}


@pytest.mark.parametrize("editor", list(EDITORS))
def test_editor_save_is_one_patch(mnt: Mount, gateway: Gateway, editor: str,
                                  tmp_path: Path) -> None:
    key, command = EDITORS[editor]
    label = f"via {editor.split()[0]}"
    before = db_entry(gateway.db(), key)
    assert before is not None and before.get("label") != label
    tmp = tmp_path / "new.json"
    tmp.write_bytes(with_label(mnt, key, label))
    done = run(command.replace("{meta}", f"'{mnt.meta(key)}'").replace("{tmp}", f"'{tmp}'"))
    assert done.returncode == 0, done
    stored = db_entry(gateway.db(), key)
    assert stored is not None and stored["label"] == label
    assert stored["sessionId"] == before["sessionId"]
    assert {k: v for k, v in stored.items() if k not in ("label", "updatedAt")} == \
        {k: v for k, v in before.items() if k not in ("label", "updatedAt")}
    shows_db(mnt, gateway, key)
    assert db_row(gateway.db(), key)[1] == 1


def test_save_without_a_patchable_change_sends_nothing(mnt: Mount, gateway: Gateway) -> None:
    """Every patch moves updatedAt, so a save that changes nothing (vim :wq, a reformat)
    sends nothing; what was written is what reads show."""
    before = db_row(gateway.db(), GMAIL)
    data = mnt.meta(GMAIL).read_bytes()
    mnt.meta(GMAIL).write_bytes(data)
    reformatted = json.dumps(json.loads(data), indent=4, ensure_ascii=False).encode()
    mnt.meta(GMAIL).write_bytes(reformatted)
    assert db_row(gateway.db(), GMAIL) == before
    assert mnt.meta(GMAIL).read_bytes() == reformatted


def test_refused_field_refuses_the_save(mnt: Mount, gateway: Gateway, tmp_path: Path) -> None:
    before = db_row(gateway.db(), JAMES)
    entry = json.loads(mnt.meta(JAMES).read_bytes())
    entry.update(label="lost with it", displayName="New name")
    with pytest.raises(OSError) as caught, open(mnt.meta(JAMES), "wb") as out:
        out.write(jsonfmt.dumps(entry))
    assert caught.value.errno == errno.EPERM
    assert db_row(gateway.db(), JAMES) == before
    errors = mnt.errors()
    assert "EPERM" in errors and '"displayName" cannot be' in errors and 'set "label"' in errors
    shows_db(mnt, gateway, JAMES)  # the old entry shows again


def test_openclaw_refusal_is_the_error(mnt: Mount, gateway: Gateway) -> None:
    taken = "Taken label"
    oc = GatewayClient(gateway.state)
    oc.call("sessions.patch", {"key": GUEST, "label": taken})
    oc.close()
    before = db_row(gateway.db(), DISCORD)
    with pytest.raises(OSError) as caught, open(mnt.meta(DISCORD), "wb") as out:
        out.write(with_label(mnt, DISCORD, taken))
    assert caught.value.errno == errno.EINVAL
    assert "label already in use" in mnt.errors()
    assert db_row(gateway.db(), DISCORD) == before


def test_concurrent_cli_patch_of_another_field_is_kept(mnt: Mount, gateway: Gateway) -> None:
    shown = mnt.meta(SLACK).read_bytes()  # what the editor read
    oc_call(gateway, "sessions.patch", {"key": SLACK, "icon": "kanban"})  # openclaw's own CLI
    entry = json.loads(shown)
    entry["label"] = "Slack, edited"
    mnt.meta(SLACK).write_bytes(jsonfmt.dumps(entry))  # saved from what it read
    stored = db_entry(gateway.db(), SLACK)
    assert stored["label"] == "Slack, edited" and stored["icon"] == "kanban"
    shows_db(mnt, gateway, SLACK)


SUBAGENT2 = "agent:main:subagent:16fd2706-8baf-433b-82eb-8c7fada847da"
EDITOR = """import json, sys
path = sys.argv[1]
data = open(path, "rb").read()
print("read", flush=True)
sys.stdin.readline()
entry = json.loads(data)
entry["label"] = sys.argv[2]
with open(path, "wb") as out:
    out.write(json.dumps(entry, indent=2, ensure_ascii=False).encode())
"""


def test_save_is_diffed_against_what_that_process_read(mnt: Mount, gateway: Gateway) -> None:
    """An editor reads, openclaw changes another field, ANOTHER process reads the new version
    (a cat, an indexer), then the editor saves what it read plus its change: the change made
    in between is kept (the base is what the saving process read, not the last read)."""
    editor = subprocess.Popen([sys.executable, "-c", EDITOR, str(mnt.meta(SUBAGENT2)),
                               "edited in the editor"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert editor.stdout is not None and editor.stdin is not None
    assert editor.stdout.readline() == "read\n"
    client = GatewayClient(gateway.state)
    client.call("sessions.patch", {"key": SUBAGENT2, "icon": "book"})
    client.close()
    assert json.loads(mnt.meta(SUBAGENT2).read_bytes())["icon"] == "book"  # another reader
    editor.stdin.write("go\n")
    editor.stdin.close()
    assert editor.wait(timeout=30) == 0
    stored = db_entry(gateway.db(), SUBAGENT2)
    assert stored["label"] == "edited in the editor" and stored["icon"] == "book"


def test_reset_between_read_and_save_is_estale(mnt: Mount, gateway: Gateway) -> None:
    shown = json.loads(mnt.meta(MATRIX).read_bytes())
    client = GatewayClient(gateway.state)
    client.call("sessions.reset", {"key": MATRIX, "expectedSessionId": shown["sessionId"]})
    client.close()
    after_reset = db_row(gateway.db(), MATRIX)
    shown["label"] = "stale edit"
    with pytest.raises(OSError) as caught, open(mnt.meta(MATRIX), "wb") as out:
        out.write(jsonfmt.dumps(shown))
    assert caught.value.errno == errno.ESTALE
    assert "reset" in mnt.errors()
    assert db_row(gateway.db(), MATRIX) == after_reset


# -- mkdir, rm -r, mv -----------------------------------------------------------------------
def test_mkdir_rm_r_and_mv(mnt: Mount, gateway: Gateway) -> None:
    name = "agent--main--sessionfs--from-mkdir"
    key = "agent:main:sessionfs:from-mkdir"
    folder = mnt.mp / name
    os.mkdir(folder)
    created = db_entry(gateway.db(), key)
    assert created is not None and created["createdVia"] == "operator"
    assert sorted(os.listdir(folder)) == ["meta.json", "transcript.jsonl"]
    with pytest.raises(FileExistsError):
        os.mkdir(folder)
    done = run(f"mv '{folder}' '{mnt.mp}/agent--main--sessionfs--moved'")
    assert done.returncode != 0 and "Operation not permitted" in done.stderr
    assert "no way to change a session's key" in mnt.errors()
    assert db_entry(gateway.db(), key) is not None
    done = run(f"rm -r '{folder}'")
    assert done.returncode == 0, done
    assert db_entry(gateway.db(), key) is None and not folder.exists()
    archived = list((gateway.state / "agents" / "main" / "sessions").glob(
        f"{created['sessionId']}.jsonl.deleted.*.zst"))
    assert len(archived) == 1
    done = run(f"rm -r '{mnt.dir(MAIN)}'")
    assert done.returncode != 0 and "Operation not permitted" in done.stderr
    assert db_entry(gateway.db(), MAIN) is not None and "main session" in mnt.errors()
    assert mnt.meta(MAIN).exists()


def test_other_user_on_allow_other_mount_gets_eacces(gateway: Gateway) -> None:
    db = gateway.db()
    mode = os.stat(db).st_mode
    os.chmod(db, 0o666)  # the modes would let anyone write: the mount still refuses
    # every folder on the way to the database open to others, as the disk requires for
    # --allow-other to show them anything (a 0700 folder keeps a store private)
    for folder in (gateway.base, gateway.state, *reversed(db.parents[:3])):
        os.chmod(folder, 0o755)
    mount = Mount(gateway.state / "agents" / "main", gateway.base / "mnt-shared",
                  "--allow-other", "--timeout", "0")
    try:
        with mount:
            os.chmod(mount.mp, 0o755)
            nobody = "setpriv --reuid 65534 --regid 65534 --clear-groups "
            meta = mount.meta(GUEST)
            before = db_row(db, GUEST)
            done = run(nobody + f"cat '{meta}' > /dev/null")
            assert done.returncode == 0, done  # reading is what the modes allow
            done = run(nobody + f"sh -c 'echo {{}} > \"{meta}\"'")
            assert "Permission denied" in done.stderr, done
            done = run(nobody + f"mkdir '{mount.mp}/agent--main--sessionfs--nobody'")
            assert "Permission denied" in done.stderr, done
            assert db_row(db, GUEST) == before
            assert db_entry(db, "agent:main:sessionfs:nobody") is None
            assert "only the user who mounted" in mount.errors()
            # the mounting user (root here) still writes
            meta.write_bytes(with_label(mount, GUEST, "shared mount"))
            assert db_entry(db, GUEST)["label"] == "shared mount"
    finally:
        os.chmod(db, mode)


def test_state_mount_sessions_d_meta_json_and_rendered_sessions_json(gateway: Gateway
                                                                    ) -> None:
    with Mount(gateway.state, gateway.base / "mnt-state", "--timeout", "0.2") as mount:
        sessions = mount.mp / "agents" / "main" / "sessions"
        meta = sessions / "sessions.d" / keys.encode(DASHBOARD) / "meta.json"
        entry = json.loads(meta.read_bytes())
        entry["label"] = "from the state mount"
        meta.write_bytes(jsonfmt.dumps(entry))
        stored = db_entry(gateway.db(), DASHBOARD)
        assert stored is not None and stored["label"] == "from the state mount"
        assert wait_for(lambda: json.loads((sessions / "sessions.json").read_bytes())
                        [DASHBOARD]["label"] == "from the state mount", 5)
        assert meta.read_bytes() == serialize_entry(stored)
        with pytest.raises(OSError) as caught:  # a refused field, as in the store mount
            meta.write_bytes(jsonfmt.dumps(dict(stored, updatedAt=1)))
        assert caught.value.errno == errno.EPERM
        assert db_entry(gateway.db(), DASHBOARD) == stored


# -- the Gateway hung, killed, restarted (last: restarting costs a Gateway start) ---------------
def test_hung_then_killed_during_a_save_then_restarted(mnt: Mount, gateway: Gateway,
                                                       tmp_path: Path) -> None:
    key = JAMES
    before = db_row(gateway.db(), key)
    os.kill(gateway.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(OSError) as caught, open(mnt.meta(key), "wb") as out:
            out.write(with_label(mnt, key, "while hung"))
        took = time.monotonic() - started
        assert caught.value.errno == errno.ETIMEDOUT and took < 10, (caught.value, took)
        # killed while a save waits for its answer: a clear EROFS, nothing half done
        tmp = tmp_path / "new.json"
        tmp.write_bytes(with_label(mnt, key, "while killed"))
        saver = subprocess.Popen(["cp", str(tmp), str(mnt.meta(key))], stderr=subprocess.PIPE,
                                 text=True)
        assert wait_for(lambda: _waits_in_fuse(saver.pid), 5)  # its save waits in the mount
    finally:
        os.kill(gateway.pid, signal.SIGKILL)
        os.kill(gateway.pid, signal.SIGCONT)
    _, err = saver.communicate(timeout=20)
    assert saver.returncode != 0 and "Read-only file system" in err, err
    assert "went away" in mnt.errors() or "no openclaw Gateway is running" in mnt.errors()
    assert db_row(gateway.db(), key)[0] == before[0]  # the patch never happened
    # no Gateway: read-only with the reason, reads still work
    with pytest.raises(OSError) as caught:
        os.open(mnt.meta(key), os.O_WRONLY)
    assert caught.value.errno == errno.EROFS
    assert "no openclaw Gateway is running" in mnt.errors()
    assert json.loads(mnt.meta(key).read_bytes())["sessionId"]
    status = (mnt.mp / ".sessionfs" / "status").read_text()
    assert "gateway: not running" in status and "read-only: yes (no openclaw Gateway" in status
    # a Gateway started again makes the same mount writable, no remount
    gateway.start()
    mnt.meta(key).write_bytes(with_label(mnt, key, "after restart"))
    assert db_entry(gateway.db(), key)["label"] == "after restart"
    status = (mnt.mp / ".sessionfs" / "status").read_text()
    assert f"gateway: live (pid {gateway.pid}" in status and "read-only: no" in status
    assert gateway.token not in status and gateway.token not in mnt.errors()
    assert gateway.token not in mnt.log()


def _waits_in_fuse(pid: int) -> bool:
    """The process sleeps in a FUSE request (its close() waits for the save's answer)."""
    try:
        return "request_wait_answer" in Path(f"/proc/{pid}/wchan").read_text() or \
            "fuse" in Path(f"/proc/{pid}/stack").read_text()
    except OSError:
        return False

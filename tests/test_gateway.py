"""SQLite-era writes through the REAL openclaw 2026.9.6 Gateway, library and CLI (no kernel):
finding the live Gateway, the handshake, every kind of save and refusal, create and delete.
What the database holds afterwards is read with SQLite directly (``mode=ro``)."""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sessionfs.cli import main
from sessionfs.errors import (
    FieldNotEditable,
    GatewayRefused,
    GatewayUnavailable,
    NotPermitted,
    SessionChanged,
    SessionExists,
)
from sessionfs.gateway import GatewayClient, find_gateway
from sessionfs.store.gateway_writes import plan_patch
from sessionfs.store.sqlite import SqliteStore
from tests.gatewayutil import Gateway, db_entry, db_row, gateway_fixture, oc_call  # noqa: F401
from tests.mountharness import ROOT

JAMES = "agent:main:telegram:direct:james"
DASH = "agent:main:dashboard:6ba7b810-9dad-41d1-80b4-00c04fd430c8"
WHATSAPP = "agent:main:whatsapp:direct:+15551234567"
DISCORD = "agent:main:discord:channel:1187654321098765432"
SLACK = "agent:main:slack:channel:c0123abcd:thread:1712345678.123456"
MATRIX = "agent:main:matrix:channel:!AbCdEfGh:example.org"
GUEST = "agent:main:webchat:direct:guest-42"
MAIN = "agent:main:main"


def store_of(gw: Gateway) -> SqliteStore:
    return SqliteStore(gw.db())


# -- finding the Gateway ----------------------------------------------------------------------
def test_live_gateway_found_by_openclaws_lock_rule(gateway: Gateway, tmp_path: Path) -> None:
    found = find_gateway(gateway.state)
    assert not isinstance(found, str) and found.pid == gateway.pid
    assert found.port == gateway.port
    # a lock left by a dead Gateway (same file, another start time) is not a live one
    lock = next((gateway.state / "tmp").glob("openclaw-*/gateway.state.lock"))
    fake = tmp_path / "state"
    (fake / "tmp" / lock.parent.name).mkdir(parents=True)
    payload = json.loads(lock.read_text())
    payload["startTime"] = payload["startTime"] + 1
    (fake / "tmp" / lock.parent.name / lock.name).write_text(json.dumps(payload) + " " * 64)
    assert "no openclaw Gateway is running" in str(find_gateway(fake))
    assert "no openclaw Gateway is running" in str(find_gateway(tmp_path / "nothing"))


def test_hello_must_name_this_state_dir(gateway: Gateway, tmp_path: Path) -> None:
    """A live Gateway reached through another state dir's lock (a port another profile holds)
    is refused after the handshake: EROFS, and the token is in no message."""
    lock = next((gateway.state / "tmp").glob("openclaw-*/gateway.state.lock"))
    other = tmp_path / "other"
    (other / "tmp" / lock.parent.name).mkdir(parents=True)
    shutil.copy(lock, other / "tmp" / lock.parent.name / lock.name)
    config = json.loads((gateway.state / "openclaw.json").read_text())
    (other / "openclaw.json").write_text(json.dumps({"gateway": config["gateway"]}))
    payload = json.loads(lock.read_text())
    payload["configPath"] = str(other / "openclaw.json")
    (other / "tmp" / lock.parent.name / lock.name).write_text(json.dumps(payload))
    client = GatewayClient(other)
    with pytest.raises(GatewayUnavailable) as caught:
        client.call("sessions.list", {"limit": 1})
    assert caught.value.errno == errno.EROFS
    assert "another openclaw profile" in str(caught.value)
    assert gateway.token not in str(caught.value) and gateway.token not in repr(caught.value)


def test_wrong_token_is_refused_without_showing_it(gateway: Gateway, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    lock = next((gateway.state / "tmp").glob("openclaw-*/gateway.state.lock"))
    (state / "tmp" / lock.parent.name).mkdir(parents=True)
    payload = json.loads(lock.read_text())
    payload["configPath"] = str(state / "openclaw.json")
    (state / "tmp" / lock.parent.name / lock.name).write_text(json.dumps(payload))
    (state / "openclaw.json").write_text(json.dumps({"gateway": {"port": gateway.port}}))
    wrong = "wrong-" + gateway.token[::-1]
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", wrong)
    with pytest.raises(GatewayRefused) as caught:
        GatewayClient(state).call("sessions.list", {"limit": 1})
    assert "token mismatch" in str(caught.value)
    assert wrong not in str(caught.value) and gateway.token not in str(caught.value)


def test_one_connection_kept_and_rebuilt_after_a_drop(gateway: Gateway) -> None:
    client = GatewayClient(gateway.state)
    client.call("sessions.list", {"limit": 1})
    first = client._conn
    client.call("sessions.list", {"limit": 1})
    assert client._conn is first  # kept
    first.close()  # the connection drops
    client.call("sessions.list", {"limit": 1})
    assert client._conn is not first and client._conn is not None
    client.close()


# -- the diff ---------------------------------------------------------------------------------
def test_plan_patch_mapping() -> None:
    base = {"sessionId": "s", "updatedAt": 1, "label": "a", "icon": "book", "pinnedAt": 5,
            "modelOverride": "m", "providerOverride": "p", "agentStatus": {"note": "x"}}
    new = copy.deepcopy(base)
    new.update(label="b", color="red", markedUnreadAt=9, modelOverride="m2")
    del new["icon"], new["pinnedAt"], new["agentStatus"]
    assert plan_patch("k", base, new) == {"label": "b", "icon": None, "color": "red",
                                          "pinned": False, "unread": True, "model": "p/m2",
                                          "statusNote": None}
    assert plan_patch("k", base, copy.deepcopy(base)) == {}
    new = dict(base, archivedAt=7, archiveReason="manual")
    del new["pinnedAt"]
    assert plan_patch("k", base, new) == {"archived": True}
    for field, value in (("displayName", "x"), ("updatedAt", 2), ("inputTokens", 3),
                         ("delivery", {}), ("model", "x")):
        with pytest.raises(FieldNotEditable) as caught:
            plan_patch("k", base, dict(base, **{field: value}))
        assert caught.value.field == field and caught.value.errno == errno.EPERM
        assert f'"{field}"' in str(caught.value) and "nothing was saved" in str(caught.value)
    with pytest.raises(FieldNotEditable):  # true is not 1
        plan_patch("k", {"fastMode": 1}, {"fastMode": True, "x": 1})


# -- saves ------------------------------------------------------------------------------------
def test_save_is_one_patch_and_reads_show_openclaws_entry(gateway: Gateway) -> None:
    store = store_of(gateway)
    base = store.get(JAMES)
    new = dict(base, label="James (edited)", color="blue")
    assert store.put_edited(JAMES, new, base) is True
    stored = db_entry(gateway.db(), JAMES)
    assert stored is not None
    assert stored["label"] == "James (edited)" and stored["color"] == "blue"
    assert stored["updatedAt"] >= base["updatedAt"]
    assert list(stored)[:len(base)] == list(base)  # openclaw keeps the order, appends new keys
    assert store.get(JAMES) == stored  # reads show what openclaw stored
    assert db_row(gateway.db(), JAMES)[1] == 1  # entry_valid


def test_save_changing_nothing_patchable_sends_nothing(gateway: Gateway) -> None:
    store = store_of(gateway)
    before = db_row(gateway.db(), WHATSAPP)
    entry = store.get(WHATSAPP)
    assert store.put_edited(WHATSAPP, copy.deepcopy(entry), entry) is False
    assert db_row(gateway.db(), WHATSAPP) == before  # not even updatedAt moved


def test_forbidden_field_refuses_whole_save(gateway: Gateway) -> None:
    store = store_of(gateway)
    before = db_row(gateway.db(), WHATSAPP)
    entry = store.get(WHATSAPP)
    new = dict(entry, label="would be lost", displayName="Renamed")
    with pytest.raises(FieldNotEditable) as caught:
        store.put_edited(WHATSAPP, new, entry)
    assert caught.value.errno == errno.EPERM and '"displayName"' in str(caught.value)
    assert '"label"' in str(caught.value)  # says what to do instead
    assert db_row(gateway.db(), WHATSAPP) == before


def test_openclaws_refusal_is_the_error(gateway: Gateway) -> None:
    store = store_of(gateway)
    taken = store.get(JAMES)["label"]
    before = db_row(gateway.db(), DISCORD)
    entry = store.get(DISCORD)
    with pytest.raises(GatewayRefused) as caught:
        store.put_edited(DISCORD, dict(entry, label=taken), entry)
    assert caught.value.errno == errno.EINVAL and "label already in use" in str(caught.value)
    with pytest.raises(GatewayRefused) as caught:
        store.put_edited(DISCORD, dict(entry, thinkingLevel="extreme"), entry)
    assert caught.value.errno == errno.EINVAL and "thinkingLevel" in str(caught.value)
    assert db_row(gateway.db(), DISCORD) == before


def test_concurrent_patch_of_another_field_is_merged(gateway: Gateway) -> None:
    """The writer was shown the entry before openclaw's own CLI set an icon: its save of the
    label keeps that icon (the diff is against what it was shown, not the current entry)."""
    store = store_of(gateway)
    shown = store.get(SLACK)
    oc_call(gateway, "sessions.patch", {"key": SLACK, "icon": "kanban"})
    assert db_entry(gateway.db(), SLACK)["icon"] == "kanban"
    assert store.put_edited(SLACK, dict(shown, label="Slack thread"), shown) is True
    stored = db_entry(gateway.db(), SLACK)
    assert stored["label"] == "Slack thread" and stored["icon"] == "kanban"


def test_reset_between_read_and_save_is_estale(gateway: Gateway) -> None:
    store = store_of(gateway)
    shown = store.get(MATRIX)
    store.gateway.call("sessions.reset", {"key": MATRIX, "expectedSessionId":
                                          shown["sessionId"]})
    after_reset = db_row(gateway.db(), MATRIX)
    with pytest.raises(SessionChanged) as caught:
        store.put_edited(MATRIX, dict(shown, label="stale"), shown)
    assert caught.value.errno == errno.ESTALE and "reset" in str(caught.value)
    assert db_row(gateway.db(), MATRIX) == after_reset


# -- create, delete, rename -------------------------------------------------------------------
def test_create_then_exists_then_delete(gateway: Gateway) -> None:
    store = store_of(gateway)
    key = "agent:main:sessionfs:made-here"
    made = store.create(key, {"label": "Made here", "color": "green"})
    assert made == key
    stored = db_entry(gateway.db(), key)
    assert stored["label"] == "Made here" and stored["color"] == "green"
    with pytest.raises(SessionExists) as caught:
        store.create(key)
    assert caught.value.errno == errno.EEXIST
    session_id = stored["sessionId"]
    store.delete(key)
    assert db_entry(gateway.db(), key) is None
    archived = list((gateway.state / "agents" / "main" / "sessions").glob(
        f"{session_id}.jsonl.deleted.*.zst"))
    assert len(archived) == 1  # where the transcript goes


def test_create_with_a_refused_value_creates_nothing(gateway: Gateway) -> None:
    store = store_of(gateway)
    key = "agent:main:sessionfs:bad-color"
    with pytest.raises(GatewayRefused) as caught:
        store.create(key, {"label": "Bad color", "color": "mauve"})
    assert caught.value.errno == errno.EINVAL and "color" in str(caught.value)
    assert "was not created" in str(caught.value)
    assert db_entry(gateway.db(), key) is None
    with pytest.raises(FieldNotEditable):  # refused before anything is sent
        store.create(key, {"label": "x", "updatedAt": 5})
    assert db_row(gateway.db(), key) is None or db_entry(gateway.db(), key) is None


def test_main_session_delete_and_rename_refused(gateway: Gateway) -> None:
    store = store_of(gateway)
    before = db_row(gateway.db(), MAIN)
    with pytest.raises(NotPermitted) as caught:
        store.delete(MAIN)
    assert caught.value.errno == errno.EPERM and "main session" in str(caught.value)
    with pytest.raises(NotPermitted) as caught:
        store.rename(GUEST, "agent:main:webchat:direct:guest-43")
    assert caught.value.errno == errno.EPERM and "label" in str(caught.value)
    assert db_row(gateway.db(), MAIN) == before
    assert db_entry(gateway.db(), GUEST) is not None


# -- CLI --------------------------------------------------------------------------------------
def test_cli_put_rm_status(gateway: Gateway, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    agent = str(gateway.state / "agents" / "main")
    assert main(["status", agent]) == 0
    out = capsys.readouterr().out
    assert "read-only: no" in out and f"gateway: live (pid {gateway.pid}" in out
    assert gateway.token not in out
    assert main(["status", "--json", agent]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gateway"] == {"live": True, "pid": gateway.pid, "port": gateway.port}
    entry = store_of(gateway).get(GUEST)
    import io
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(
        json.dumps(dict(entry, label="Guest 42")).encode())))
    assert main(["put", agent, GUEST]) == 0
    assert db_entry(gateway.db(), GUEST)["label"] == "Guest 42"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"label": "via put"}')))
    assert main(["put", agent, "agent:main:sessionfs:cli-new"]) == 0
    assert db_entry(gateway.db(), "agent:main:sessionfs:cli-new")["label"] == "via put"
    capsys.readouterr()
    assert main(["rm", agent, "agent:main:sessionfs:cli-new"]) == 0
    assert db_entry(gateway.db(), "agent:main:sessionfs:cli-new") is None
    assert main(["rm", agent, MAIN]) == 1
    assert "main session" in capsys.readouterr().err


def test_token_never_in_argv_of_the_handshake_check(gateway: Gateway) -> None:
    """openclaw_gateway.sh's readiness check runs our client, which reads the token from the
    config: nothing it starts has the token on its command line."""
    done = subprocess.run([sys.executable, "-m", "sessionfs.gateway", "hello",
                           str(gateway.state)], capture_output=True, text=True,
                          cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["live"] is True and gateway.token not in done.stdout
    script = (ROOT / "scripts" / "openclaw" / "openclaw_gateway.sh").read_text()
    assert "openclaw_rpc.py" not in script and '--token "$token"' not in script


def test_token_never_in_debug_logs(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    """Even with every logger at DEBUG (the WebSocket library logs its frames there), the
    handshake's token is in no log record."""
    import logging

    caplog.set_level(logging.DEBUG)
    client = GatewayClient(gateway.state)
    client.call("sessions.list", {"limit": 1})
    client.close()
    logging.getLogger("sessionfs").debug("probe")
    assert any(record.getMessage() == "probe" for record in caplog.records)  # DEBUG is captured
    assert all(gateway.token not in record.getMessage() for record in caplog.records)

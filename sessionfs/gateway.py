"""Speaking to the running openclaw Gateway: the single owner of a SQLite-era state directory.

openclaw's contract is that only its Gateway writes the database; everyone else changes sessions
through its RPC. This module finds the Gateway that owns a state directory and calls it:

* **Is one live?** openclaw's own rule (``resolveGatewayOwnerStatus``): the lock file
  ``STATE/tmp/openclaw-<uid>/gateway.state.lock`` names a pid that exists, is not a zombie, and
  whose start time (field 22 of ``/proc/<pid>/stat``) equals the lock's ``startTime``. The file
  survives a SIGKILL, so its presence alone means nothing.
* **Where and with what?** The port from the lock (else ``gateway.port`` of ``openclaw.json``,
  ``OPENCLAW_GATEWAY_PORT``, 18789); the credential as openclaw's CLI finds it:
  ``gateway.auth.token``/``password`` of the config, else ``OPENCLAW_GATEWAY_TOKEN`` /
  ``OPENCLAW_GATEWAY_PASSWORD``.
* **Connect** over loopback only (``ws://127.0.0.1:PORT``, no proxy), as the ``cli`` client
  without a device (what ``openclaw gateway call`` does), and check that the hello names this
  state directory, so a port reused by another profile is never mistaken for ours.
* **One connection, kept** (the ``websockets`` client answers the Gateway's pings on its own
  thread), reconnected when it dropped or the Gateway was restarted; every call is bounded by
  ``timeout`` seconds, so a hung or dying Gateway never hangs a filesystem call.

The credential is a secret: it is never put in argv, a log line, a status file or the text of
an exception (a message from the Gateway is scrubbed of it too).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessionfs.errors import GatewayError, GatewayRefused, GatewayTimeout, GatewayUnavailable

__all__ = ["DEFAULT_PORT", "DEFAULT_TIMEOUT", "START_HINT", "GatewayClient", "GatewayOwner",
           "client_for", "find_gateway", "state_dir_of"]

log = logging.getLogger("sessionfs.gateway")
#: The WebSocket library's own logger: it logs frames at DEBUG, and the handshake frame holds
#: the credential, so nothing below WARNING is ever recorded from it.
_ws_log = logging.getLogger("sessionfs.gateway.websocket")
_ws_log.setLevel(logging.WARNING)

DEFAULT_PORT = 18789
#: Seconds any one call (connect included) may take: a filesystem call waits at most this long.
DEFAULT_TIMEOUT = 5.0
PROTOCOL = 4
START_HINT = "start the openclaw Gateway ('openclaw gateway run') to edit sessions"


@dataclass(frozen=True)
class GatewayOwner:
    """A live Gateway that owns a state directory, as its lock file describes it."""

    pid: int
    start_time: int | None
    port: int
    state_dir: str
    config_path: str

    @property
    def identity(self) -> tuple[int, int | None]:
        """Changes when the Gateway was restarted (a new process)."""
        return (self.pid, self.start_time)


def state_dir_of(database: Path) -> Path:
    """``STATE`` of ``STATE/agents/<id>/agent/openclaw-agent.sqlite``."""
    return Path(os.path.abspath(database)).parents[3]


def _proc_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time, clock ticks); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            fields = stream.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    try:
        return int(fields[19])
    except (ValueError, IndexError):
        return None


def _lock_files(state: Path) -> list[Path]:
    """The Gateway lock files of ``state``, ours (this uid) first."""
    tmp = state / "tmp"
    own = tmp / f"openclaw-{os.getuid()}" / "gateway.state.lock"
    found = [own]
    with contextlib.suppress(OSError):
        found += sorted(path / "gateway.state.lock" for path in tmp.glob("openclaw-*")
                        if path.name != own.parent.name)
    return found


def find_gateway(state: Path) -> GatewayOwner | str:
    """The live Gateway owning ``state``, or why there is none (one line, for errors)."""
    for lock in _lock_files(state):
        try:
            payload = json.loads(lock.read_bytes())  # JSON padded with whitespace
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            return f"its lock file {lock} cannot be read ({exc.__class__.__name__})"
        if not isinstance(payload, dict) or not isinstance(payload.get("pid"), int):
            return f"its lock file {lock} names no pid"
        pid = payload["pid"]
        started = _proc_start_time(pid)
        recorded = payload.get("startTime")
        if started is None or (isinstance(recorded, int) and recorded != started):
            continue  # left behind by a Gateway that died (SIGKILL): not live
        config_path = payload.get("configPath")
        if not isinstance(config_path, str):
            config_path = str(_config_path(state))
        port = payload.get("port")
        if not isinstance(port, int):
            port = _configured_port(Path(config_path))
        state_dir = payload.get("stateDir")
        return GatewayOwner(pid, started, port,
                            state_dir if isinstance(state_dir, str) else str(state), config_path)
    return f"no openclaw Gateway is running for {state}"


def _config_path(state: Path) -> Path:
    configured = os.environ.get("OPENCLAW_CONFIG_PATH")
    return Path(configured) if configured else state / "openclaw.json"


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise GatewayUnavailable(f"{path}: cannot read openclaw's config to find the Gateway's "
                                 f"credentials ({exc.__class__.__name__})") from None
    return data if isinstance(data, dict) else {}


def _gateway_block(config: dict[str, Any]) -> dict[str, Any]:
    block = config.get("gateway")
    return block if isinstance(block, dict) else {}


def _configured_port(config_path: Path) -> int:
    try:
        port = _gateway_block(_read_config(config_path)).get("port")
    except GatewayUnavailable:
        port = None
    if isinstance(port, int):
        return port
    env = os.environ.get("OPENCLAW_GATEWAY_PORT", "")
    return int(env) if env.isdigit() else DEFAULT_PORT


def _credential(config_path: Path) -> dict[str, str]:
    """``{"token": …}`` or ``{"password": …}`` as openclaw's CLI finds it."""
    auth = _gateway_block(_read_config(config_path)).get("auth")
    auth = auth if isinstance(auth, dict) else {}
    for field, env in (("token", "OPENCLAW_GATEWAY_TOKEN"),
                       ("password", "OPENCLAW_GATEWAY_PASSWORD")):
        value = auth.get(field)
        if isinstance(value, str) and value:
            return {field: value}
        if value is not None and not isinstance(value, str):
            raise GatewayUnavailable(
                f"{config_path}: gateway.auth.{field} is a secret reference only openclaw can "
                f"resolve; export {env} for sessionfs to reach the Gateway")
        from_env = os.environ.get(env)
        if from_env:
            return {field: from_env}
    return {}


class GatewayClient:
    """One kept connection to the Gateway of one state directory (thread-safe, one call at a
    time). :meth:`owner` is cheap (a lock file and ``/proc``) and says whether writes can go."""

    def __init__(self, state: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.state = Path(os.path.abspath(state))
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        self._conn_owner: tuple[int, int | None] | None = None
        self._secret: str | None = None
        self.hello: dict[str, Any] = {}

    # -- liveness ----------------------------------------------------------------------------------
    def owner(self) -> GatewayOwner | str:
        """The live Gateway, or why none (see :func:`find_gateway`)."""
        return find_gateway(self.state)

    def require_owner(self) -> GatewayOwner:
        """:raises GatewayUnavailable: no live Gateway (EROFS), the reason and what to do."""
        found = self.owner()
        if isinstance(found, str):
            raise GatewayUnavailable(f"{found}; {START_HINT}")
        return found

    # -- calls -------------------------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any], *, timeout: float | None = None
             ) -> dict[str, Any]:
        """One request, answered within ``timeout`` (default: the client's).

        :raises GatewayUnavailable: no live Gateway, or it went away during the call (EROFS).
        :raises GatewayTimeout: no answer in time (ETIMEDOUT).
        :raises GatewayRefused: openclaw answered ``ok:false``; its code, reason and message.
        """
        limit = self.timeout if timeout is None else timeout
        with self._lock:
            owner = self.require_owner()
            deadline = time.monotonic() + limit
            try:
                conn = self._connected(owner, deadline)
                return self._request(conn, method, params, deadline)
            except GatewayRefused:
                raise
            except (GatewayTimeout, GatewayUnavailable):
                self._close()
                raise
            except Exception as exc:  # the socket dropped: find out whether the Gateway is gone
                self._close()
                if self._went_away(owner):
                    raise GatewayUnavailable(
                        f"the openclaw Gateway went away during {method} (what it holds now is "
                        f"what sessionfs shows); {START_HINT}") from None
                if isinstance(exc, GatewayError):
                    raise
                raise GatewayError(f"the connection to the openclaw Gateway dropped during "
                                   f"{method} ({exc.__class__.__name__}); try again") from None

    def _went_away(self, owner: GatewayOwner, within: float = 1.0) -> bool:
        """Whether the Gateway is gone after a dropped connection. A dying process closes its
        sockets before /proc shows it dead, so this watches for up to ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            found = self.owner()
            if isinstance(found, str) or found.identity != owner.identity:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        conn, self._conn, self._conn_owner = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: nothing more to release
                log.debug("closing the Gateway connection failed", exc_info=True)

    def _connected(self, owner: GatewayOwner, deadline: float) -> Any:
        """The kept connection if it still talks to this Gateway process, else a new one."""
        if self._conn is not None and self._conn_owner == owner.identity:
            from websockets.protocol import State

            if self._conn.protocol.state is State.OPEN:
                return self._conn
        self._close()
        credential = _credential(Path(owner.config_path))
        if not credential:
            raise GatewayUnavailable(
                f"{owner.config_path}: no gateway.auth token or password, and neither "
                "OPENCLAW_GATEWAY_TOKEN nor OPENCLAW_GATEWAY_PASSWORD is set: sessionfs cannot "
                "authenticate to the Gateway")
        self._secret = next(iter(credential.values()))
        while True:
            try:
                conn = self._open(owner, credential, deadline)
                break
            except GatewayRefused as exc:  # starting up: UNAVAILABLE with retryAfterMs
                if exc.code != "UNAVAILABLE" or time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        self._conn, self._conn_owner = conn, owner.identity
        return conn

    def _open(self, owner: GatewayOwner, credential: dict[str, str], deadline: float) -> Any:
        from websockets.sync.client import connect

        remaining = max(0.05, deadline - time.monotonic())
        options: dict[str, Any] = {}
        if "legacy" in inspect.signature(connect).parameters:
            options["legacy"] = True  # websockets >= 16: a plain connection, not a context
        try:
            conn = connect(f"ws://127.0.0.1:{owner.port}", proxy=None, compression=None,
                           open_timeout=remaining, close_timeout=1.0, max_size=64 << 20,
                           max_queue=None, user_agent_header="sessionfs", logger=_ws_log,
                           **options)
        except TimeoutError:
            raise GatewayTimeout(f"the openclaw Gateway on 127.0.0.1:{owner.port} did not "
                                 f"accept a connection within {self.timeout:g}s") from None
        except OSError as exc:
            raise GatewayUnavailable(f"cannot connect to the openclaw Gateway on 127.0.0.1:"
                                     f"{owner.port} ({exc.strerror or exc}); {START_HINT}"
                                     ) from None
        except Exception as exc:
            raise GatewayError(f"the openclaw Gateway on 127.0.0.1:{owner.port} refused the "
                               f"WebSocket handshake ({exc.__class__.__name__})") from None
        try:
            self._recv_until(conn, lambda frame: frame.get("event") == "connect.challenge",
                             deadline)
            hello = self._request(conn, "connect", {
                "minProtocol": PROTOCOL, "maxProtocol": PROTOCOL,
                "client": {"id": "cli", "mode": "cli", "version": "0.1.0",
                           "platform": "linux", "displayName": "sessionfs"},
                "role": "operator",
                "scopes": ["operator.read", "operator.write", "operator.admin"],
                "caps": [], "auth": credential, "userAgent": "sessionfs"}, deadline)
            snapshot = hello.get("snapshot") if isinstance(hello.get("snapshot"), dict) else {}
            served = snapshot.get("stateDir") if isinstance(snapshot, dict) else None
            if not isinstance(served, str) or os.path.realpath(served) != \
                    os.path.realpath(self.state):
                raise GatewayUnavailable(
                    f"the Gateway on 127.0.0.1:{owner.port} serves {served!r}, not "
                    f"{self.state}: another openclaw profile holds the port; {START_HINT}")
        except BaseException:
            try:
                conn.close()
            except Exception:
                log.debug("closing a refused connection failed", exc_info=True)
            raise
        self.hello = hello
        return conn

    def _recv_until(self, conn: Any, wanted: Any, deadline: float) -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayTimeout(f"the openclaw Gateway did not answer within "
                                     f"{self.timeout:g}s")
            try:
                raw = conn.recv(timeout=remaining)
            except TimeoutError:
                raise GatewayTimeout(f"the openclaw Gateway did not answer within "
                                     f"{self.timeout:g}s") from None
            try:
                frame = json.loads(raw)
            except ValueError:
                continue
            if isinstance(frame, dict) and wanted(frame):
                return frame

    def _request(self, conn: Any, method: str, params: dict[str, Any], deadline: float
                 ) -> dict[str, Any]:
        self._drain(conn)
        ident = str(uuid.uuid4())
        conn.send(json.dumps({"type": "req", "id": ident, "method": method, "params": params}))
        frame = self._recv_until(conn, lambda f: f.get("type") == "res" and f.get("id") == ident,
                                 deadline)
        if frame.get("ok") is True:
            payload = frame.get("payload")
            return payload if isinstance(payload, dict) else {}
        error = frame.get("error") if isinstance(frame.get("error"), dict) else {}
        assert isinstance(error, dict)
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
        assert isinstance(details, dict)
        message = self._scrub(str(error.get("message") or "refused"))
        raise GatewayRefused(method, str(error.get("code") or ""),
                             str(details.get("reason") or details.get("code") or ""), message)

    def _drain(self, conn: Any) -> None:
        """Drop the events queued since the last call (ticks, presence): nothing waits on them."""
        while True:
            try:
                conn.recv(timeout=0)
            except TimeoutError:
                return

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


_clients: dict[Path, GatewayClient] = {}
_clients_lock = threading.Lock()


def client_for(state: Path) -> GatewayClient:
    """The one client of a state dir in this process (one connection per mount, shared by the
    agents of a state mount)."""
    state = Path(os.path.abspath(state))
    with _clients_lock:
        client = _clients.get(state)
        if client is None:
            client = _clients[state] = GatewayClient(state)
        return client


def main(argv: list[str] | None = None) -> int:
    """``python -m sessionfs.gateway hello STATE``: exit 0 when a live Gateway owns STATE and
    answers the handshake (for scripts/openclaw/openclaw_gateway.sh); prints one JSON line."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("hello", "status"):
        print("usage: python -m sessionfs.gateway hello|status STATE", file=sys.stderr)
        return 2
    client = GatewayClient(Path(args[1]))
    found = client.owner()
    if args[0] == "status" or isinstance(found, str):
        print(json.dumps({"live": not isinstance(found, str),
                          "reason": found if isinstance(found, str) else None}))
        return 0 if not isinstance(found, str) else 1
    try:
        client.call("sessions.list", {"limit": 1})
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    server = client.hello.get("server") if isinstance(client.hello.get("server"), dict) else {}
    print(json.dumps({"live": True, "pid": found.pid, "port": found.port,
                      "version": (server or {}).get("version")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

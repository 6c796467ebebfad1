"""An openclaw state directory: ``STATE/agents/<agentId>/`` each holding a store of any
generation (``sessions/sessions.json``, ``sessions/sessions.d``, ``agent/openclaw-agent.sqlite``).

openclaw resolves STATE as ``$OPENCLAW_STATE_DIR``, else ``~/.openclaw``; so do we.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from sessionfs.store import DIRECTORY_NAME, LEGACY_NAME, SQLITE_NAME, StoreLocation, locate_store

__all__ = ["AGENT_ID", "AgentScan", "default_state_dir", "find_agents", "is_state_dir",
           "scan_agent", "state_refusal"]

#: What openclaw accepts as an agent id (a folder name under ``agents/``).
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def default_state_dir() -> Path:
    """``$OPENCLAW_STATE_DIR``, else ``~/.openclaw``, as openclaw resolves it."""
    return Path(os.environ.get("OPENCLAW_STATE_DIR")
                or os.path.join(os.path.expanduser("~"), ".openclaw"))


def is_state_dir(path: os.PathLike[str] | str) -> bool:
    """A folder holding ``agents/`` that is not itself an agent folder or a sessions folder."""
    folder = Path(path)
    if not (folder / "agents").is_dir():
        return False
    return not ((folder / "sessions").is_dir() or (folder / "agent").is_dir()
                or (folder / LEGACY_NAME).exists() or (folder / DIRECTORY_NAME).is_dir())


def agent_location(state: Path, agent_id: str) -> StoreLocation | None:
    """Where agent ``agent_id``'s live store is, or None when that folder holds no store."""
    folder = state / "agents" / agent_id
    if not AGENT_ID.fullmatch(agent_id) or folder.is_symlink() or not folder.is_dir():
        return None
    try:
        location = locate_store(folder)
    except OSError:
        return None
    return location if location.layout is not None else None


def find_agents(state: os.PathLike[str] | str) -> dict[str, StoreLocation]:
    """Every agent under ``state/agents`` with a store, by id, sorted by id."""
    root = Path(state) / "agents"
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return {}
    found = {}
    for name in names:
        location = agent_location(Path(state), name)
        if location is not None:
            found[name] = location
    return found


# -- what a mount of a state directory may open (sessionfs.fs.state_view) ----------------------
#: The names below ``agents/<id>`` a store is made of, by folder: looked at with ``lstat`` only.
_STORE_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sessions", (LEGACY_NAME, DIRECTORY_NAME, LEGACY_NAME + ".lock")),
    ("agent", (SQLITE_NAME, SQLITE_NAME + "-wal", SQLITE_NAME + "-shm")),
)
#: Checked for links but not part of the signature: they come and go (connections, the lock).
_TRANSIENT = frozenset({SQLITE_NAME + "-wal", SQLITE_NAME + "-shm", LEGACY_NAME + ".lock"})


@dataclass(frozen=True)
class AgentScan:
    """One look at ``agents/<id>`` (``lstat`` only: nothing is opened, no link is followed).

    ``signature`` changes whenever the agent's store could have moved or been replaced (a
    folder's inode, a store file's appearance, inode, mtime or size), so a mount locates and
    opens the agent again only then. ``refusal`` says why the agent must not be served (a
    symbolic link).
    """

    signature: tuple[object, ...]
    refusal: str | None = None


def _is_under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _link_refusal(path: Path, shown: str, mountpoint: str | None) -> str:
    """The line ``errors`` and ``status`` show for a link that was not followed (its target is
    read with ``readlink`` and judged on its text alone: nothing is entered)."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    into = ""
    absolute = os.path.normpath(os.path.join(os.path.dirname(path), target))
    if mountpoint is not None and _is_under(absolute, mountpoint):
        into = ", inside this mount"
    return (f"{shown} is a symbolic link (to {target}{into}); the state mount never follows a "
            "link out of the state directory: skipped")


def scan_agent(state: Path, agent_id: str, mountpoint: str | None = None) -> AgentScan | None:
    """``agents/<agent_id>`` looked at without following anything; None when it is no agent
    folder at all (an invalid id, a plain file, a folder with neither ``sessions`` nor
    ``agent``). Every part of a store (the folders, ``sessions.json``, ``sessions.d``, the
    database and its ``-wal``/``-shm``) must be what it claims, never a symbolic link: a link
    could lead out of the state directory, or into the mount itself (the daemon would then
    wait on its own requests)."""
    if not AGENT_ID.fullmatch(agent_id):
        return None
    folder = state / "agents" / agent_id
    shown = f"agents/{agent_id}"
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return AgentScan((), _link_refusal(folder, shown, mountpoint))
    if not stat.S_ISDIR(st.st_mode):
        return None
    signature: list[object] = [st.st_ino]
    present = False
    for sub, names in _STORE_PARTS:
        path = folder / sub
        try:
            sub_st = os.lstat(path)
        except FileNotFoundError:
            signature.append(None)
            continue
        except OSError as exc:
            return AgentScan((), f"{shown}/{sub}: cannot look at it ({exc.strerror})")
        present = True
        if stat.S_ISLNK(sub_st.st_mode):
            return AgentScan((), _link_refusal(path, f"{shown}/{sub}", mountpoint))
        if not stat.S_ISDIR(sub_st.st_mode):
            signature.append(("not a folder", sub_st.st_ino))
            continue
        signature.append(sub_st.st_ino)
        for name in names:
            try:
                file_st = os.lstat(path / name)
            except FileNotFoundError:
                if name not in _TRANSIENT:
                    signature.append(None)
                continue
            except OSError as exc:
                return AgentScan((), f"{shown}/{sub}/{name}: cannot look at it ({exc.strerror})")
            if stat.S_ISLNK(file_st.st_mode):
                return AgentScan((), _link_refusal(path / name, f"{shown}/{sub}/{name}",
                                                   mountpoint))
            if name not in _TRANSIENT:
                signature.append((file_st.st_ino, file_st.st_mtime_ns, file_st.st_size,
                                  stat.S_IFMT(file_st.st_mode)))
    if not present:
        return None
    return AgentScan(tuple(signature))


def state_refusal(state: Path, resolved: str, mountpoint: str | None) -> str | None:
    """Why the state directory's ``agents/`` must not be walked now, or None: STATE no longer
    resolves where it did at mount time or resolves into the mount, or ``agents`` is a
    symbolic link."""
    now = os.path.realpath(state)
    if mountpoint is not None and _is_under(now, mountpoint):
        return f"{state} now resolves to {now}, inside this mount: not walked into"
    if now != resolved:
        return f"{state} now resolves to {now}, not {resolved} as at mount time: not followed"
    agents = state / "agents"
    try:
        st = os.lstat(agents)
    except OSError as exc:
        return f"{agents}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return _link_refusal(agents, "agents", mountpoint)
    if not stat.S_ISDIR(st.st_mode):
        return f"{agents} is not a folder"
    return None

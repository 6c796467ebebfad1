"""An openclaw state directory: ``STATE/agents/<agentId>/`` each holding a store of any
generation (``sessions/sessions.json``, ``sessions/sessions.d``, ``agent/openclaw-agent.sqlite``).

openclaw resolves STATE as ``$OPENCLAW_STATE_DIR``, else ``~/.openclaw``; so do we.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sessionfs.store import DIRECTORY_NAME, LEGACY_NAME, StoreLocation, locate_store

__all__ = ["AGENT_ID", "default_state_dir", "find_agents", "is_state_dir"]

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

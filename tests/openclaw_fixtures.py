"""Stores openclaw 2026.9.6's own import wrote, committed as fixtures.

See fixtures/openclaw-2026.9.6/README.md. Each archive holds ``NAME/`` (the migrated state dir,
``-shm`` files left out), ``NAME.legacy-input/`` (the file-era input just before the import),
``NAME.oracle/`` (what openclaw's own readers return)
and doctor's report. They were built under ``/work/real``; file-era ``sessionFile`` values still
point there, so :func:`legacy_sessions` moves them to where the archive was extracted.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "openclaw-2026.9.6"
NAMES = ("plain", "extras", "fix")
BUILT_UNDER = "/work/real"


def extract_real_store(name: str, dest: Path) -> Path:
    """Extract fixture NAME into DEST and return DEST (holding NAME/, NAME.legacy-input/, ...)."""
    archive = FIXTURES / f"{name}.tar.xz"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:xz") as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)  # our own archive, read from the repository
    return dest


def legacy_sessions(root: Path, name: str, agent: str) -> dict[str, dict[str, Any]]:
    """AGENT's file-era sessions.json before the import, sessionFile paths moved under ROOT."""
    raw = (root / f"{name}.legacy-input/agents" / agent / "sessions/sessions.json").read_text()
    store: dict[str, dict[str, Any]] = json.loads(raw)
    old_prefix, new_prefix = f"{BUILT_UNDER}/{name}/", f"{root / name}/"
    for entry in store.values():
        path = entry.get("sessionFile")
        if isinstance(path, str) and path.startswith(old_prefix):
            entry["sessionFile"] = new_prefix + path[len(old_prefix):]
    return store

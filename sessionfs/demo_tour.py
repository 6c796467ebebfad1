"""``sessionfs demo``: a generated store of either generation, mounted and shown with ordinary
tools (``ls``, ``cat``, ``grep``, ``jq``), so a newcomer sees what the mount is in a minute.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from sessionfs.store import DIRECTORY_NAME, LEGACY_NAME

__all__ = ["DEMO_EVENTS", "DEMO_SESSIONS", "run_demo"]

DEMO_SESSIONS = 300
DEMO_EVENTS = 30  # events per transcript in the SQLite-era demo


def run_demo(folder: Path, *, legacy: bool = False, named: bool = False) -> int:
    """Generate the demo store in ``folder`` (once), mount it, and show it with ordinary tools;
    the exit code. ``named``: the user named ``folder`` (the hint to try again repeats it).

    By default the store is of the generation most openclaw users have (SQLite, read-only);
    ``legacy`` shows the file era, where meta.json can be edited."""
    from sessionfs.fs.mount import MountOptions, is_mounted, mount, unmount

    mountpoint = folder / "mnt"
    if legacy:
        from sessionfs.demo import generate_entries, write_legacy_store

        store_folder = folder / "sessions"
        if (not (store_folder / LEGACY_NAME).exists()
                and not (store_folder / DIRECTORY_NAME).exists()):
            write_legacy_store(store_folder, generate_entries(DEMO_SESSIONS, seed=2026))
            print(f"generated a legacy store with {DEMO_SESSIONS} sessions: "
                  f"{store_folder / 'sessions.json'}")
    else:  # the SQLite generation (openclaw >= 2026.8.1)
        from sessionfs.demo_sqlite import generate_sqlite_store

        store_folder = folder / "state" / "agents" / "main"
        if not (store_folder / "agent" / "openclaw-agent.sqlite").exists():
            db = generate_sqlite_store(store_folder, DEMO_SESSIONS, seed=2026,
                                       events=DEMO_EVENTS, agent="main")
            print(f"generated a SQLite-era store with {DEMO_SESSIONS} sessions: {db}")
    mountpoint.mkdir(parents=True, exist_ok=True)
    if is_mounted(mountpoint):
        unmount(mountpoint)
    code = mount(store_folder, mountpoint, MountOptions())
    if code:
        return code
    first = sorted(p.name for p in mountpoint.iterdir() if not p.name.startswith("."))[0]
    meta = shlex.quote(str(mountpoint / first / "meta.json"))
    root = shlex.quote(str(mountpoint))
    if legacy:
        tour = [f"ls -lt {root} | head -6",
                f"cat {meta}",
                f"grep -rl '\"lastChannel\": \"telegram\"' {root} | wc -l",
                f"jq -r .model {root}/*/meta.json | sort | uniq -c",
                f"cat {root}/.sessionfs/status"]
    else:
        transcript = shlex.quote(str(mountpoint / first / "transcript.jsonl"))
        tour = [f"ls -lt {root} | head -6",
                f"cat {meta}",
                f"head -c 300 {transcript}; echo",
                f"grep -rl --include=transcript.jsonl 'Einkaufsliste' {root} | wc -l",
                f"jq -r .model {root}/*/meta.json | sort | uniq -c",
                f"cat {root}/.sessionfs/status",
                f"touch {meta}"]
    for command in tour:
        print(f"\n$ {command}", flush=True)
        subprocess.run(["bash", "-c", command], check=False)
    quoted = shlex.quote(str(mountpoint))
    if legacy:
        print(f"\nThe demo store is mounted at {mountpoint}: edit any meta.json with vim, nano, "
              f"sed -i or jq; invalid JSON is refused.\nUnmount with: sessionfs umount "
              f"{quoted}")
    else:
        again = "sessionfs demo --legacy" + (f" {shlex.quote(str(folder))}" if named else "")
        print(f"\nThe demo store (SQLite era, as openclaw >= 2026.8.1 keeps sessions) is "
              f"mounted at {mountpoint}, read-only: the openclaw Gateway owns that database "
              f"and none runs for it (on your own install, with its Gateway running, the same "
              f"mount edits sessions through it; see the README)."
              f"\nTo edit sessions through the mount here, try the file-era demo: {again}"
              f"\nUnmount with: sessionfs umount {quoted}")
    return 0

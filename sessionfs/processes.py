"""Whether a process is alive, and when it started: the one home of process liveness.

The store lock judges its holder with it, and temp files and migration staging folders are
removed only when the pid in their name no longer names a live process. A zombie counts as
gone (it can hold nothing and write nothing); a pid we may not signal (EPERM) is alive.
"""

from __future__ import annotations

import os

__all__ = ["process_alive", "process_starttime"]


def _proc_stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from field 3 (state) on, or None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # Field 2, the command name, is in parentheses and may itself hold ") " and spaces.
    _, sep, rest = data.rpartition(b")")
    if not sep:
        return None
    return rest.decode("ascii", "replace").split()


def process_starttime(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot); None without process or /proc."""
    fields = _proc_stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3
    except ValueError:
        return None


# -- the one home of process liveness --------------------------------------------------------
def process_alive(pid: int) -> bool:
    """Whether ``pid`` names a process that can still act (hold a lock, write a temp file).

    A zombie cannot; a process owned by someone else (EPERM) can; any other doubt counts as
    alive: fail closed, never reclaim or delete on a guess.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return True  # unknown: fail closed, never reclaim on a guess
    fields = _proc_stat_fields(pid)
    return not (fields and fields[0] in ("Z", "X"))

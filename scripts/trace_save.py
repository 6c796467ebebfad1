"""Trace one editor save through the store mount's view, without a kernel: the calls vim
(``backupcopy=auto``: rename the original away, write a new file) makes the kernel send, driven
straight into :class:`sessionfs.fs.view.SessionView`. Counts what issue 16 asked to report:
disk reads of ``meta.json``, entry validations, entry serialisations, and module visits that
re-enter a module already on the call stack.

    .venv/bin/python scripts/trace_save.py [directory|legacy]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from sessionfs import keys
from sessionfs.demo import generate_entries, write_legacy_store
from sessionfs.fs.view import SessionView
from sessionfs.migrate import migrate
from sessionfs.store import open_store

COUNTED = {"validate_entry": "validations", "serialize_entry": "serialisations",
           "stringify": "serialisations", "dumps": "serialisations"}


def _module(frame: FrameType) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if isinstance(name, str) and name.startswith("sessionfs") else None


def trace_save(layout: str) -> dict[str, int]:
    """The counts for one vim-style save of an existing session's ``meta.json``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sessions"
        folder.mkdir()
        entries = generate_entries(20, seed=3)
        write_legacy_store(folder, entries)
        if layout == "directory":
            migrate(folder / "sessions.json")
        store = open_store(folder / ("sessions.d" if layout == "directory" else "sessions.json"))
        key = sorted(entries)[0]
        view = SessionView(store, timeout=0)
        top = "/" + keys.encode(key)
        path, backup = f"{top}/meta.json", f"{top}/meta.json~"
        fh = view.open(path, os.O_RDONLY)  # vim reads the file first (not counted)
        original = view.read(fh, 1 << 20, 0)
        view.release(fh)
        edited = dict(json.loads(original), label="traced")
        data = (json.dumps(edited, indent=2, ensure_ascii=False) + "\n").encode()

        counts: Counter[str] = Counter()
        stack: list[str | None] = []
        real_open = os.open

        def counting_open(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if str(name).endswith("meta.json") and not flags & (os.O_WRONLY | os.O_RDWR):
                counts["meta.json reads"] += 1
            elif str(name).endswith("sessions.json") and not flags & (os.O_WRONLY | os.O_RDWR):
                counts["sessions.json reads"] += 1
            return real_open(name, flags, *args, **kwargs)

        def profile(frame: FrameType, event: str, _arg: object) -> None:
            if event == "call":
                module = _module(frame)
                caller = stack[-1] if stack else None
                if module is not None and module != caller:
                    counts["module visits"] += 1
                    if module in stack:
                        counts["module re-entries"] += 1
                stack.append(module)
                kind = COUNTED.get(frame.f_code.co_name)
                if kind is not None and module is not None:
                    counts[kind] += 1
            elif event == "return" and stack:
                stack.pop()

        os.open = counting_open  # type: ignore[assignment]
        sys.setprofile(profile)
        try:
            view.stat(path)
            view.stat(top)
            view.rename(path, backup)  # backupcopy=auto: the original moves away
            fh = view.create(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            view.write(fh, data, 0)
            view.fsync(fh)
            view.flush(fh)
            view.release(fh)
            view.stat(path)
            view.accept_attribute_change(path)  # chmod to the original's mode
            view.unlink(backup)
            view.settle(everything=True)
        finally:
            sys.setprofile(None)
            os.open = real_open  # type: ignore[assignment]
        assert store.get(key) == edited, "the save did not reach the store"
        return dict(sorted(counts.items()))


if __name__ == "__main__":
    for layout in sys.argv[1:] or ["directory", "legacy"]:
        print(layout, trace_save(layout))

#!/usr/bin/env python3
"""Write the empty agent database openclaw creates, as SQL: ``sessionfs/openclaw_agent_schema.sql``.

The demo and bench SQLite stores (``sessionfs/demo_sqlite.py``) are built from it, so openclaw
can open them: every table, index, trigger and FTS5 table of its agent schema, in the order
openclaw created them, and the rows it writes before any session (``session_key_contract``,
``memory_index_state``). Taken from a store openclaw's own import made::

    bash scripts/openclaw/make_sqlite_store.sh /tmp/oc-schema
    python3 scripts/openclaw/dump_agent_schema.py \\
        /tmp/oc-schema/state/agents/main/agent/openclaw-agent.sqlite \\
        > sessionfs/openclaw_agent_schema.sql

Left out: what SQLite makes by itself (FTS5 shadow tables, ``sqlite_sequence``, automatic
indexes) and every row tied to a session.
"""

from __future__ import annotations

import sqlite3
import sys

#: Tables whose rows exist before any session: openclaw's per-agent settings.
SEED_TABLES = ("session_key_contract", "memory_index_state")
FTS5_SHADOWS = ("_data", "_idx", "_content", "_docsize", "_config")


def quote(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"unexpected seed value {value!r}")


def main(path: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (version,) = db.execute("PRAGMA user_version").fetchone()
    (app,) = db.execute("SELECT app_version FROM schema_meta WHERE meta_key = 'primary'"
                        ).fetchone()
    rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                      "ORDER BY rowid").fetchall()
    virtual = {name for kind, name, sql in rows
               if kind == "table" and sql.upper().startswith("CREATE VIRTUAL TABLE")}
    out = [f"-- openclaw {app}'s agent database (schema {version}), empty: written by",
           "-- scripts/openclaw/dump_agent_schema.py from a store openclaw's own import made.",
           "-- Created in this order; SQLite adds the FTS5 shadow tables and sqlite_sequence."]
    for _kind, name, sql in rows:
        if name == "sqlite_sequence" or any(name == v + suffix for v in virtual
                                            for suffix in FTS5_SHADOWS):
            continue
        out.append(sql.strip() + ";")
    for table in SEED_TABLES:
        for row in db.execute(f"SELECT * FROM {table}"):
            out.append(f"INSERT INTO {table} VALUES ({', '.join(map(quote, row))});")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""Skaha sessions and their events in the emulator's SQLite database (``store.db``).

Every method is one short synchronous statement or two, called from the trio thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from canfarfs.emulator.skaha_model import ACTIVE, FAILED, Event, SessionRow, instant_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS skaha_sessions (
    key TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    appid TEXT,
    userid TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    image TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    deadline INTEGER NOT NULL,
    pod TEXT NOT NULL,
    cores REAL,
    ram INTEGER,
    gpus INTEGER NOT NULL DEFAULT 0,
    cmd TEXT,
    args TEXT,
    env TEXT NOT NULL DEFAULT '[]',
    registry_user TEXT,
    start_time INTEGER,
    finished REAL,
    pid INTEGER,
    pid_start TEXT,
    exit_code INTEGER
);
CREATE INDEX IF NOT EXISTS skaha_sessions_id ON skaha_sessions (id);
CREATE TABLE IF NOT EXISTS skaha_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    first TEXT NOT NULL,
    last TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS skaha_events_key ON skaha_events (key);
"""

_COLUMNS = (
    "key",
    "id",
    "appid",
    "userid",
    "kind",
    "name",
    "image",
    "status",
    "created",
    "deadline",
    "pod",
    "cores",
    "ram",
    "gpus",
    "cmd",
    "args",
    "env",
    "registry_user",
    "start_time",
    "finished",
    "pid",
    "pid_start",
    "exit_code",
)
#: Columns :meth:`SessionDB.update` may change.
_MUTABLE = frozenset(
    {"status", "deadline", "start_time", "finished", "pid", "pid_start", "exit_code"}
)
#: Job-name order, the order ``kubectl get jobs`` lists them in.
_ORDER = " ORDER BY kind, userid, id, appid"


def _to_row(r: sqlite3.Row) -> SessionRow:
    values = {c: r[c] for c in _COLUMNS}
    values["args"] = None if r["args"] is None else json.loads(r["args"])
    values["env"] = [tuple(p) for p in json.loads(r["env"])]
    return SessionRow(**values)


class SessionDB:
    """The two tables: sessions (one row per session or desktop-app) and events."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)

    def insert(self, row: SessionRow) -> None:
        values = [getattr(row, c) for c in _COLUMNS]
        values[_COLUMNS.index("args")] = None if row.args is None else json.dumps(row.args)
        values[_COLUMNS.index("env")] = json.dumps(row.env)
        marks = ",".join("?" * len(_COLUMNS))
        self.db.execute(
            f"INSERT INTO skaha_sessions ({','.join(_COLUMNS)}) "  # noqa: S608
            f"VALUES ({marks})",
            values,
        )

    def get(self, key: str) -> SessionRow | None:
        r = self.db.execute("SELECT * FROM skaha_sessions WHERE key=?", (key,)).fetchone()
        return None if r is None else _to_row(r)

    def id_taken(self, sid: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM skaha_sessions WHERE id=? LIMIT 1", (sid,)).fetchone()
            is not None
        )

    def rows(self, userid: str | None = None, sid: str | None = None) -> list[SessionRow]:
        """All rows, or one user's, or one session id's (with its desktop-apps)."""
        sql, args = "SELECT * FROM skaha_sessions WHERE 1=1", list[str]()
        if userid is not None:
            sql, args = sql + " AND userid=?", [*args, userid]
        if sid is not None:
            sql, args = sql + " AND id=?", [*args, sid]
        return [_to_row(r) for r in self.db.execute(sql + _ORDER, args)]

    def with_status(self, statuses: Iterable[str]) -> list[SessionRow]:
        wanted = list(statuses)
        marks = ",".join("?" * len(wanted))
        sql = f"SELECT * FROM skaha_sessions WHERE status IN ({marks})"  # noqa: S608
        return [_to_row(r) for r in self.db.execute(sql + _ORDER, wanted)]

    def finished_before(self, headless_cut: float, interactive_cut: float) -> list[SessionRow]:
        """Finished rows whose Job would have been garbage-collected by now."""
        sql = (
            "SELECT * FROM skaha_sessions WHERE finished IS NOT NULL AND "
            "((kind='headless' AND finished<=?) OR (kind!='headless' AND finished<=?))"
        )
        return [_to_row(r) for r in self.db.execute(sql, (headless_cut, interactive_cut))]

    def update(self, key: str, **changes: object) -> None:
        """Set some mutable columns of one row (a no-op if the row is gone)."""
        bad = set(changes) - _MUTABLE
        if bad:
            raise ValueError(f"not updatable: {sorted(bad)}")
        sets = ", ".join(f"{c}=?" for c in changes)
        self.db.execute(
            f"UPDATE skaha_sessions SET {sets} WHERE key=?",  # noqa: S608
            [*changes.values(), key],
        )

    def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM skaha_events WHERE key=?", (key,))
        self.db.execute("DELETE FROM skaha_sessions WHERE key=?", (key,))

    def add_event(self, key: str, when: float, kind: str, reason: str, message: str) -> None:
        """Record one event, only while its session still exists."""
        t = instant_text(when)
        self.db.execute(
            "INSERT INTO skaha_events (key,type,reason,message,first,last) "
            "SELECT ?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM skaha_sessions WHERE key=?)",
            (key, kind, reason, message, t, t, key),
        )

    def events(self, key: str) -> list[Event]:
        cur = self.db.execute(
            "SELECT type,reason,message,first,last FROM skaha_events WHERE key=? ORDER BY seq",
            (key,),
        )
        return [Event(*r) for r in cur]

    def fail_interrupted(self, when: float) -> list[SessionRow]:
        """After a restart: every Pending/Running row is Failed, with an event saying why."""
        rows = self.with_status(ACTIVE)
        for row in rows:
            self.update(row.key, status=FAILED, finished=when, pid=None)
            self.add_event(
                row.key,
                when,
                "Warning",
                "EmulatorRestarted",
                "The canfarfs emulator restarted; the session's process was lost",
            )
        return rows

"""The emulator's durable state: node metadata and jobs in SQLite, bytes as files.

arc keeps its bytes as a real directory tree under ``<root>/arc`` (cavern is POSIX
backed, and headless sessions see that tree at ``/arc``); vault keeps one blob file per
data node under ``<root>/vault-blobs`` (storage-inventory artifacts). Every method is a
short synchronous call; the app calls them between checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from canfarfs.vospace.model import NodeType

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    service TEXT NOT NULL,
    path TEXT NOT NULL,
    parent TEXT,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    owner TEXT NOT NULL,
    props TEXT NOT NULL DEFAULT '{}',
    target TEXT,
    length INTEGER NOT NULL DEFAULT 0,
    md5 TEXT,
    date TEXT NOT NULL,
    content_date TEXT,
    blob TEXT,
    PRIMARY KEY (service, path)
);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes (service, parent, name);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    phase TEXT NOT NULL,
    error TEXT,
    request BLOB,
    results TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
"""


def now_text() -> str:
    """A VOSpace timestamp: UTC, milliseconds, no zone suffix (vospace-api.md §4.2)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


@dataclass
class NodeRecord:
    """One stored node. ``path`` is relative to the service root ('' is the root)."""

    service: str
    path: str
    type: NodeType
    owner: str
    props: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    length: int = 0
    md5: str | None = None
    date: str = field(default_factory=now_text)
    content_date: str | None = None
    blob: str | None = None

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def parent(self) -> str | None:
        if not self.path:
            return None
        return self.path.rpartition("/")[0]


@dataclass
class JobRecord:
    id: str
    service: str
    kind: str
    owner: str
    phase: str
    error: str | None
    request: bytes | None
    results: dict[str, str]
    created: str


def _row_to_node(row: sqlite3.Row) -> NodeRecord:
    return NodeRecord(
        service=row["service"],
        path=row["path"],
        type=NodeType(row["type"]),
        owner=row["owner"],
        props=json.loads(row["props"]),
        target=row["target"],
        length=row["length"],
        md5=row["md5"],
        date=row["date"],
        content_date=row["content_date"],
        blob=row["blob"],
    )


def _prefix_bounds(path: str) -> tuple[str, str]:
    """Key range holding every descendant of ``path`` ('/' sorts just below '0')."""
    base = path + "/" if path else ""
    return base, (path + "0") if path else "\U0010ffff"


class Store:
    """SQLite metadata plus a byte tree, rooted at one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("arc", "vault-blobs", "tmp"):
            (root / sub).mkdir(exist_ok=True, mode=0o700)
        db_path = root / "emulator.sqlite3"
        db_path.touch(mode=0o600, exist_ok=True)
        os.chmod(db_path, 0o600)
        self.db = sqlite3.connect(db_path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- bytes ---------------------------------------------------------------------

    def data_path(self, rec: NodeRecord) -> Path:
        """Where a data node's bytes live (may not exist for an empty node)."""
        if rec.service == "arc":
            return self.root / "arc" / rec.path
        if rec.blob is None:
            rec.blob = uuid.uuid4().hex
            self.db.execute(
                "UPDATE nodes SET blob=? WHERE service=? AND path=?",
                (rec.blob, rec.service, rec.path),
            )
        return self.root / "vault-blobs" / rec.blob

    def temp_path(self) -> Path:
        return self.root / "tmp" / uuid.uuid4().hex

    # -- nodes ---------------------------------------------------------------------

    def get(self, service: str, path: str) -> NodeRecord | None:
        row = self.db.execute(
            "SELECT * FROM nodes WHERE service=? AND path=?", (service, path)
        ).fetchone()
        return _row_to_node(row) if row else None

    def children(
        self, service: str, path: str, start: str | None = None, limit: int | None = None
    ) -> list[NodeRecord]:
        """Direct children ordered by name, from ``start`` (inclusive), at most ``limit``."""
        sql = "SELECT * FROM nodes WHERE service=? AND parent=?"
        args: list[object] = [service, path]
        if start is not None:
            sql += " AND name>=?"
            args.append(start)
        sql += " ORDER BY name"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_row_to_node(r) for r in self.db.execute(sql, args)]

    def has_children(self, service: str, path: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM nodes WHERE service=? AND parent=? LIMIT 1", (service, path)
        ).fetchone()
        return row is not None

    def subtree_bytes(self, service: str, path: str) -> int:
        """Bytes held by all data nodes below ``path`` (its recursive core#length)."""
        lo, hi = _prefix_bounds(path)
        row = self.db.execute(
            "SELECT COALESCE(SUM(length),0) FROM nodes "
            "WHERE service=? AND path>=? AND path<? AND type=?",
            (service, lo, hi, NodeType.DATA.value),
        ).fetchone()
        return int(row[0])

    def insert(self, rec: NodeRecord) -> None:
        if rec.service == "arc":
            disk = self.root / "arc" / rec.path
            if rec.type is NodeType.CONTAINER:
                disk.mkdir(parents=True, exist_ok=True)
            elif rec.type is NodeType.DATA:
                # cavern is POSIX-backed: a new node is an (empty) file sessions can see.
                disk.touch(exist_ok=True)
        self.db.execute(
            "INSERT INTO nodes (service,path,parent,name,type,owner,props,target,length,md5,"
            "date,content_date,blob) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                rec.service,
                rec.path,
                rec.parent,
                rec.name,
                rec.type.value,
                rec.owner,
                json.dumps(rec.props),
                rec.target,
                rec.length,
                rec.md5,
                rec.date,
                rec.content_date,
                rec.blob,
            ),
        )

    def save_props(self, rec: NodeRecord) -> None:
        rec.date = now_text()
        self.db.execute(
            "UPDATE nodes SET props=?, date=? WHERE service=? AND path=?",
            (json.dumps(rec.props), rec.date, rec.service, rec.path),
        )

    def save_bytes(self, rec: NodeRecord, length: int, md5: str | None) -> None:
        rec.length, rec.md5 = length, md5
        rec.date = rec.content_date = now_text()
        self.db.execute(
            "UPDATE nodes SET length=?, md5=?, date=?, content_date=?, blob=? "
            "WHERE service=? AND path=?",
            (length, md5, rec.date, rec.content_date, rec.blob, rec.service, rec.path),
        )

    def delete(self, rec: NodeRecord) -> None:
        """Remove one node (a container must already be empty) and its bytes."""
        self.db.execute("DELETE FROM nodes WHERE service=? AND path=?", (rec.service, rec.path))
        if rec.type is NodeType.DATA:
            disk = self.data_path(rec) if (rec.service == "arc" or rec.blob) else None
            if disk is not None:
                disk.unlink(missing_ok=True)
        elif rec.type is NodeType.CONTAINER and rec.service == "arc":
            shutil.rmtree(self.root / "arc" / rec.path, ignore_errors=True)

    def move(self, rec: NodeRecord, new_path: str) -> None:
        """Re-parent a node and its whole subtree to ``new_path``."""
        old = rec.path
        if rec.service == "arc":
            src, dst = self.root / "arc" / old, self.root / "arc" / new_path
            if src.exists() or src.is_symlink():
                os.replace(src, dst)
        lo, hi = _prefix_bounds(old)
        self.db.execute("BEGIN")
        try:
            parent, _, name = new_path.rpartition("/")
            self.db.execute(
                "UPDATE nodes SET path=?, parent=?, name=?, date=? WHERE service=? AND path=?",
                (new_path, parent, name, now_text(), rec.service, old),
            )
            rows = self.db.execute(
                "SELECT path, parent FROM nodes WHERE service=? AND path>=? AND path<?",
                (rec.service, lo, hi),
            ).fetchall()
            for row in rows:
                p, par = row["path"], row["parent"]
                self.db.execute(
                    "UPDATE nodes SET path=?, parent=? WHERE service=? AND path=?",
                    (new_path + p[len(old) :], new_path + par[len(old) :], rec.service, p),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        rec.path = new_path

    # -- jobs ----------------------------------------------------------------------

    def new_job(self, service: str, kind: str, owner: str, request: bytes | None) -> JobRecord:
        job = JobRecord(
            id=uuid.uuid4().hex[:16],
            service=service,
            kind=kind,
            owner=owner,
            phase="PENDING",
            error=None,
            request=request,
            results={},
            created=now_text(),
        )
        self.db.execute(
            "INSERT INTO jobs (id,service,kind,owner,phase,error,request,results,created) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (job.id, service, kind, owner, job.phase, None, request, "{}", job.created),
        )
        return job

    def get_job(self, service: str, job_id: str) -> JobRecord | None:
        row = self.db.execute(
            "SELECT * FROM jobs WHERE service=? AND id=?", (service, job_id)
        ).fetchone()
        if row is None:
            return None
        return JobRecord(
            id=row["id"],
            service=row["service"],
            kind=row["kind"],
            owner=row["owner"],
            phase=row["phase"],
            error=row["error"],
            request=row["request"],
            results=json.loads(row["results"]),
            created=row["created"],
        )

    def save_job(self, job: JobRecord) -> None:
        self.db.execute(
            "UPDATE jobs SET phase=?, error=?, results=? WHERE id=?",
            (job.phase, job.error, json.dumps(job.results), job.id),
        )

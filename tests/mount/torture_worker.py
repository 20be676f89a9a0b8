"""One process of the concurrency torture test (tests/mount/test_mount_torture.py).

Run as ``python torture_worker.py DIR WORKER SEED OPS TIMEOUT``. It does ``OPS`` random
operations on a handful of shared files in ``DIR`` with the system calls tools use, and
prints one JSON document: the errors it met that the rules do not allow, the operations
slower than ``TIMEOUT``, and what it needs checked against the server afterwards.

The files, and what may happen to them:

* ``c0``..``c3`` (chaos): written with pwrite and O_APPEND, truncated, renamed over each
  other while open elsewhere, unlinked while open, read whole and read across a rename.
  Every write is of whole 64-byte records at multiples of 64, each record naming its
  writer and carrying a checksum, so a torn, shifted or foreign byte is seen by any
  reader. ENOENT is allowed (another worker renamed or removed the file).
* ``log``: only ever appended to, one line per open-write-close; every line whose close
  returned 0 must be on the server exactly once.
* ``regions``: each worker rewrites only its own 4 KiB region with pwrite; the server
  must hold, in each region, the content of its worker's last acknowledged close.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import sys
import time

RECORD = 64
MAX_RECORDS = 48
REGION = 4096
CHAOS = [f"c{i}" for i in range(4)]


def record(worker: int, seq: int) -> bytes:
    head = f"{worker:02d}{seq:07d}"
    return (head + hashlib.sha256(head.encode()).hexdigest()[: RECORD - len(head)]).encode()


def bad_records(data: bytes, *, torn_tail: bool = False) -> list[int]:
    """Offsets of records that are neither zeros nor a well-formed record.

    With ``torn_tail``, a last record cut short is accepted if it is the start of a good
    one: a read is not atomic with a truncate, so a reader may see a record cut where a
    truncate made the file end while the read was under way.
    """
    bad = []
    whole = len(data) - len(data) % RECORD
    if whole < len(data) and not (torn_tail and _starts_a_record(data[whole:])):
        bad.append(whole)
    for off in range(0, whole, RECORD):
        if not _good(data[off : off + RECORD]):
            bad.append(off)
    return bad


def _good(r: bytes) -> bool:
    if r == bytes(RECORD):
        return True
    head = r[:9]
    return head.isdigit() and r[9:] == hashlib.sha256(head).hexdigest()[: RECORD - 9].encode()


def _starts_a_record(tail: bytes) -> bool:
    """Whether ``tail`` (shorter than a record) is how zeros or a good record begin."""
    if not tail.strip(b"\0"):
        return True
    if len(tail) < 9:
        return tail.isdigit()  # the header, cut: any digits could begin one
    head = tail[:9]
    full = head + hashlib.sha256(head).hexdigest()[: RECORD - 9].encode()
    return head.isdigit() and full.startswith(tail)


class Worker:
    def __init__(self, directory: str, worker: int, seed: int, timeout: float) -> None:
        self.dir = directory
        self.worker = worker
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.timeout = timeout
        self.seq = 0
        self.errors: list[str] = []
        self.slow: list[str] = []
        self.log_acked: list[str] = []
        self.region_last: str | None = None
        self.counts: dict[str, int] = {}

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def next_record(self) -> bytes:
        self.seq += 1
        return record(self.worker, self.seq)

    def run(self, ops: int) -> None:
        choices = [
            (self.pwrite_chaos, 5),
            (self.append_chaos, 3),
            (self.truncate_chaos, 2),
            (self.rename_chaos, 2),
            (self.unlink_chaos, 1),
            (self.read_chaos, 4),
            (self.read_across_rename, 1),
            (self.append_log, 3),
            (self.write_region, 2),
        ]
        funcs = [f for f, w in choices for _ in range(w)]
        for _ in range(ops):
            op = self.rng.choice(funcs)
            name = op.__name__
            self.counts[name] = self.counts.get(name, 0) + 1
            start = time.monotonic()
            try:
                op()
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    self.errors.append(f"{name}: {exc}")
            took = time.monotonic() - start
            if took > self.timeout:
                self.slow.append(f"{name}: {took:.1f} s")

    # -- chaos files ----------------------------------------------------------------------

    def chaos(self) -> str:
        return self.path(self.rng.choice(CHAOS))

    def check(self, what: str, data: bytes) -> None:
        bad = bad_records(data, torn_tail=True)
        if bad:
            self.errors.append(
                f"{what}: {len(bad)} bad records, first at {bad[0]} "
                f"of {len(data)} bytes: {data[bad[0] : bad[0] + 16]!r}"
            )

    def pwrite_chaos(self) -> None:
        fd = os.open(self.chaos(), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for _ in range(self.rng.randint(1, 4)):
                os.pwrite(fd, self.next_record(), RECORD * self.rng.randrange(MAX_RECORDS))
        finally:
            os.close(fd)

    def append_chaos(self) -> None:
        fd = os.open(self.chaos(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < RECORD * MAX_RECORDS * 2:
                os.write(fd, self.next_record())
        finally:
            os.close(fd)

    def truncate_chaos(self) -> None:
        size = RECORD * self.rng.randrange(MAX_RECORDS)
        if self.rng.random() < 0.5:
            os.truncate(self.chaos(), size)
            return
        fd = os.open(self.chaos(), os.O_RDWR)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def rename_chaos(self) -> None:
        a, b = self.rng.sample(CHAOS, 2)
        os.rename(self.path(a), self.path(b))

    def unlink_chaos(self) -> None:
        os.unlink(self.chaos())

    def read_chaos(self) -> None:
        """One pread of the whole file: the kernel splits it at page boundaries, which
        are record boundaries. (A sequence of reads, as Python's ``read()`` makes, may
        tear a record when the file changes between two of them, as anywhere.)"""
        name = self.chaos()
        fd = os.open(name, os.O_RDONLY)
        try:
            data = os.pread(fd, RECORD * MAX_RECORDS * 4, 0)
        finally:
            os.close(fd)
        self.check(f"read {os.path.basename(name)}", data)

    def read_across_rename(self) -> None:
        """Hold a file open while another is renamed over it, then read it all."""
        a, b = self.rng.sample(CHAOS, 2)
        fd = os.open(self.path(b), os.O_RDONLY)
        try:
            first = os.pread(fd, RECORD * 4, 0)
            try:
                os.rename(self.path(a), self.path(b))
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            rest = os.pread(fd, RECORD * MAX_RECORDS * 4, len(first))
            self.check(f"read {b} across a rename", first + rest)
        finally:
            os.close(fd)

    # -- the checked files -------------------------------------------------------------------

    def append_log(self) -> None:
        line = f"{self.worker:02d}-{self.seq:07d}"
        self.seq += 1
        fd = os.open(self.path("log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)  # raises if the close (the upload) failed: then not acknowledged
        self.log_acked.append(line)

    def write_region(self) -> None:
        content = self.next_record() * (REGION // RECORD)
        fd = os.open(self.path("regions"), os.O_RDWR)
        try:
            os.pwrite(fd, content, self.worker * REGION)
        finally:
            os.close(fd)
        self.region_last = content.decode()


def main() -> None:
    directory, worker, seed, ops, timeout = sys.argv[1:6]
    w = Worker(directory, int(worker), int(seed), float(timeout))
    w.run(int(ops))
    print(
        json.dumps(
            {
                "errors": w.errors,
                "slow": w.slow,
                "log_acked": w.log_acked,
                "region_last": w.region_last,
                "counts": w.counts,
            }
        )
    )


if __name__ == "__main__":
    main()

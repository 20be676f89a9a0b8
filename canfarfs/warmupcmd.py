"""``canfarfs warmup [--pin] [--evict] PATH…``: fill (or empty) the mount's cache.

The command only talks to the mount: it writes ``job ID`` and one ``warmup``/``pin``/
``evict`` line per path to the control file, then follows the job in the status
document (``warmups``) with a progress bar, and prints a summary. The daemon's storage
core does the fetching (canfarfs/fs/warmup.py).
"""

from __future__ import annotations

import argparse
import errno
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from canfarfs.fs.control import CONTROL_NAME
from canfarfs.statuscmd import _size, read_status
from canfarfs.usage import UsageError

SERVICES = ("arc", "vault")
POLL = 0.2


def mount_root(path: Path) -> Path | None:
    """The canfarfs mount ``path`` lies in (the nearest directory with a control file)."""
    for candidate in (path, *path.parents):
        if os.path.exists(candidate / CONTROL_NAME):
            return candidate
    return None


def resolve(paths: list[str]) -> tuple[Path, list[str]]:
    """The mount and the paths relative to its root; UsageError for bad input."""
    root: Path | None = None
    rels: list[str] = []
    for text in paths:
        path = Path(os.path.abspath(os.path.expanduser(text)))
        try:
            os.lstat(path)
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, "EIO")
            raise UsageError(f"{text}: {exc.strerror} ({name})") from None
        here = mount_root(path if path.is_dir() else path.parent)
        if here is None:
            raise UsageError(f"{text}: not inside a canfarfs mount (EINVAL)")
        if root is not None and here != root:
            raise UsageError(f"{text}: in another mount than {root}; one mount at a time (EINVAL)")
        root = here
        rel = path.relative_to(here)
        if not rel.parts or rel.parts[0] not in SERVICES:
            raise UsageError(
                f"{text}: only files under {here}/arc and {here}/vault are cached (EINVAL)"
            )
        rels.append(rel.as_posix())
    assert root is not None
    return root, rels


def send(root: Path, lines: list[str]) -> None:
    """Write commands to the daemon; OSError (with the daemon's errno) if refused."""
    with open(root / CONTROL_NAME, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def find_job(root: Path, job_id: str) -> dict[str, Any] | None:
    for job in read_status(root).get("warmups", []):
        if job["id"] == job_id:
            found: dict[str, Any] = job
            return found
    return None


def cmd_warmup(args: argparse.Namespace) -> int:
    if args.pin and args.evict:
        raise UsageError("--pin and --evict exclude each other")
    root, rels = resolve(args.paths)
    verb = "evict" if args.evict else "pin" if args.pin else "warmup"
    job_id = f"cli-{os.getpid()}-{time.time_ns()}"
    try:
        send(root, [f"job {job_id}", *(f"{verb} {rel}" for rel in rels)])
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        print(f"canfarfs: {verb} refused: {exc.strerror or exc} ({name})")
        return 1
    console = Console()
    if verb == "evict":
        job = find_job(root, job_id) or {}
        console.print(
            f"evicted {job.get('files', 0)} cached file(s), {_size(job.get('bytes', 0))}; "
            f"unpinned {', '.join(rels)}"
        )
        return 0
    try:
        job = follow(root, job_id, console)
    except KeyboardInterrupt:
        send(root, [f"cancel {job_id}"])
        console.print("canfarfs: warm-up cancelled")
        return 130
    return summary(root, job, console, pin=args.pin)


def follow(root: Path, job_id: str, console: Console) -> dict[str, Any]:
    """The job, followed to its end with a progress bar (files and bytes)."""
    with Progress(
        TextColumn("warming up"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("listing…", total=None)
        while True:
            job = find_job(root, job_id)
            if job is None:
                raise UsageError(f"the daemon at {root} lost warm-up job {job_id}")
            if job["state"] != "listing":
                progress.update(
                    task,
                    total=job["bytes"],
                    completed=job["done_bytes"],
                    description=f"{job['done_files']}/{job['files']} files",
                )
            else:
                progress.update(task, description=f"listing… {job['files']} files so far")
            if job["state"] not in ("listing", "fetching"):
                return job
            time.sleep(POLL)


def summary(root: Path, job: dict[str, Any], console: Console, *, pin: bool) -> int:
    if job["error"]:
        console.print(f"canfarfs: warm-up refused: {job['error']}", markup=False)
        return 1
    failed = job["failed"]
    fetched = job["done_files"] - job["cached_files"] - len(failed)
    console.print(
        f"{'pinned' if pin else 'warmed up'} {job['files']} file(s), {_size(job['bytes'])}: "
        f"fetched {fetched} ({_size(job['fetched_bytes'])}), "
        f"already cached {job['cached_files']} ({_size(job['cached_bytes'])}), "
        f"failed {len(failed)}, in {job['seconds']:.1f} s",
        markup=False,
        highlight=False,
    )
    if job["skipped"]:
        console.print(f"skipped {job['skipped']} (links, or files being written here)")
    for f in failed:
        console.print(
            f"canfarfs: not cached: {root / f['path']}: {f['error']} ({f['errno']})",
            markup=False,
            highlight=False,
        )
    if job.get("evicted_files"):
        console.print(
            f"canfarfs: {job['evicted_files']} file(s) ({_size(job['evicted_bytes'])}) did not "
            "stay in the cache: the warm-up is bigger than the cache size; pin what must "
            "stay (--pin) or mount with a larger --cache-size",
            markup=False,
            highlight=False,
        )
    if job["state"] == "cancelled":
        console.print("canfarfs: the warm-up was cancelled")
        return 1
    return 1 if failed or job.get("evicted_files") else 0

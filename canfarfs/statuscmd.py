"""``canfarfs status`` and ``canfarfs sync``: talk to the daemon through its control file."""

from __future__ import annotations

import argparse
import errno
import json
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from canfarfs.fs.control import CONTROL_NAME
from canfarfs.usage import UsageError


def read_status(mountpoint: Path) -> dict[str, Any]:
    """The daemon's status document; UsageError when there is no live daemon."""
    path = mountpoint / CONTROL_NAME
    try:
        doc: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{mountpoint} is not a canfarfs mount") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise UsageError(
                f"the daemon behind {mountpoint} is gone; run canfarfs umount {mountpoint}"
            ) from None
        raise UsageError(f"cannot reach the daemon at {mountpoint}: {exc.strerror}") from None
    return doc


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def cmd_status(args: argparse.Namespace) -> int:
    doc = read_status(args.mountpoint)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    console = Console()
    console.print(
        f"[bold]{doc['mountpoint']}[/bold]  daemon pid {doc['pid']}, "
        f"up {doc['uptime']:.0f} s, {doc['requests']} requests"
    )
    services = Table(title="Services", title_justify="left")
    for col in ("service", "URL", "state", "last error"):
        services.add_column(col)
    for name, svc in sorted(doc["services"].items()):
        state = "[green]reachable[/green]" if svc["reachable"] else "[red]unreachable[/red]"
        if svc.get("offline_since"):
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(svc["offline_since"]))
            state = f"[red]offline since {since}[/red]"
        services.add_row(name, svc["url"], state, svc.get("last_error") or "")
    console.print(services)
    if "auth" in doc:
        from rich.markup import escape

        from canfarfs.authinfo import describe_line

        colour = "green" if doc["auth"]["state"] == "ok" else "red"
        console.print(f"Auth: [{colour}]{escape(describe_line(doc['auth']))}[/{colour}]")
    if doc["uploads"]:
        uploads = Table(title="Pending uploads", title_justify="left")
        for col in ("file", "done", "tries", "last error", "kept at"):
            uploads.add_column(col)
        for u in doc["uploads"]:
            uploads.add_row(
                u["name"],
                f"{_size(u['uploaded'])} / {_size(u['size'])}",
                str(u["tries"]),
                u.get("last_error") or "",
                u["kept_at"],
            )
        console.print(uploads)
    else:
        console.print("No pending uploads: everything written is on the server.")
    if doc.get("writeback"):
        dates, dirs = doc.get("dates_queued", 0), doc.get("dirs_queued", 0)
        console.print(
            "Write-back: close() returns once staged; "
            f"{len(doc['uploads'])} file(s) queued"
            + (f", {dirs} new directory(ies)" if dirs else "")
            + (f", the dates or modes of {dates} node(s)" if dates else "")
            + " (canfarfs sync waits for them)"
        )
    for c in doc.get("conflicts", []):
        console.print(
            f"[yellow]Conflict[/yellow]: {c['path']} changed on the server; "
            f"the bytes written here are kept as {c['kept_as']}"
        )
    cache = doc["cache"]
    console.print(f"Cache: {_size(cache['used'])} used of {_size(cache['budget'])}")
    pinned = doc.get("pinned")
    if pinned is not None:
        console.print(
            f"Pinned: {pinned['files']} file(s), {_size(pinned['bytes'])}"
            + (" over the cache size" if pinned["bytes"] > cache["budget"] else ""),
        )
        for path in pinned["paths"]:
            console.print(f"  pinned: {path}", soft_wrap=True, markup=False, highlight=False)
    for job in doc.get("warmups", []):
        if job["state"] in ("listing", "fetching"):
            console.print(
                f"Warm-up {job['id']}: {job['state']}, {job['done_files']}/{job['files']} "
                f"files, {_size(job['done_bytes'])} of {_size(job['bytes'])}",
                markup=False,
                highlight=False,
            )
    # The path on a line of its own, never broken by rich (an 80-column terminal split
    # "... in" from it): a long one wraps as the terminal wraps it, and copies whole.
    console.print(f"Cache directory: {cache['dir']}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"Open files: {doc['open_files']}")
    return 0


def request_sync(mountpoint: Path) -> OSError | None:
    """Ask the daemon to upload everything pending; the error if some upload failed."""
    try:
        with open(mountpoint / CONTROL_NAME, "w") as f:
            f.write("sync\n")
    except OSError as exc:
        return exc
    return None


def cmd_sync(args: argparse.Namespace) -> int:
    mountpoint: Path = args.mountpoint
    doc = read_status(mountpoint)
    result: list[OSError | None] = []
    worker = threading.Thread(target=lambda: result.append(request_sync(mountpoint)))
    worker.start()
    total = sum(u["size"] for u in doc["uploads"]) or 1
    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.description}"),
        transient=True,
    ) as progress:
        task = progress.add_task("", total=total)
        while worker.is_alive():
            try:
                now = read_status(mountpoint)
            except UsageError:
                break
            done = sum(u["uploaded"] for u in now["uploads"])
            progress.update(
                task,
                completed=total - sum(u["size"] for u in now["uploads"]) + done,
                description=f"{len(now['uploads'])} file(s) left",
            )
            time.sleep(0.2)
        worker.join()
    error = result[0] if result else None
    if error is not None:
        left = read_status(mountpoint)["uploads"]
        for u in left:
            print(
                f"canfarfs: not uploaded: {u['name']} ({u.get('last_error')}); "
                f"kept at {u['kept_at']}"
            )
        now = read_status(mountpoint)
        if now.get("dirs_queued", 0):
            print(f"canfarfs: not created: {now['dirs_queued']} new directory(ies)")
        if now.get("dates_queued", 0):
            print(f"canfarfs: not sent: the dates or modes of {now['dates_queued']} node(s)")
        print(f"canfarfs: sync incomplete: {error.strerror or error}")
        return 1
    print("all uploads are on the server")
    return 0

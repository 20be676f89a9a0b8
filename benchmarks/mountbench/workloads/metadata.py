"""Listing a big directory, cold and within the metadata TTL."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from urllib.parse import quote

from ..rig import TOOLS, Bench, Mount
from ..seed import vos_uri
from ..tools import USER, Failed, curl, look_up, run

PAGE = 1000  # vault listing page size (limit=1000, inclusive uri cursor)


def curl_listing(b: Bench, service: str) -> tuple[float, int, int]:
    """The listing as a client fetches it: (seconds, pages, entries)."""
    assert b.emu is not None
    if service == "arc":
        out = b.work / "listing.xml"
        r = curl(f"{b.emu.url}/arc/nodes/home/{USER}/listing", output=out, timeout=120)
        if r.status != 200:
            raise Failed(f"arc listing: HTTP {r.status}")
        n = len(re.findall(r"<vos:node ", out.read_text())) - 1
        return r.total, 1, n
    base = f"{b.emu.url}/vault/nodes/{USER}/listing?limit={PAGE}"
    seen: set[str] = set()
    seconds, pages, cursor = 0.0, 0, ""
    out = b.work / "page.xml"
    while True:
        url = base + (f"&uri={quote(cursor, safe='')}" if cursor else "")
        r = curl(url, output=out, timeout=120)
        if r.status != 200:
            raise Failed(f"vault listing page: HTTP {r.status}")
        seconds += r.total
        pages += 1
        uris = re.findall(r'<vos:node [^>]*uri="([^"]+)"', out.read_text())[1:]
        new = [u for u in uris if u not in seen]
        seen.update(uris)
        if len(uris) < PAGE or not new:
            return seconds, pages, len(seen)
        cursor = uris[-1]


def w_listing(b: Bench, rtt: int, service: str) -> None:
    """``ls -l`` of the big directory on a fresh mount, then again within the TTL."""
    cold, warm = f"ls_cold_{service}", f"ls_warm_{service}"
    entries = b.args.entries

    def fuse_counts(m: Mount, tool: str) -> dict[str, int]:
        return dict(m.status().get("fuse", {})) if tool == "canfarfs" else {}

    def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
        """FUSE requests by kind (less the few that reading the status itself costs)."""
        return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}

    def fs(tool: str) -> None:
        with b.mounted(tool, service) as (m, home):
            timeout = min(b.args.timeout, 300 if tool == "canfarfs" else b.args.peer_timeout)
            f0 = fuse_counts(m, tool)
            with b.counting() as c:
                sec = run(["ls", "-l", str(home / "listing")], timeout=timeout)
            f1 = fuse_counts(m, tool)
            b.record(cold, rtt, tool, sec, **c, **({"fuse": delta(f1, f0)} if f0 else {}))
            with b.counting() as c:
                sec = run(["ls", "-l", str(home / "listing")], timeout=timeout)
            f2 = fuse_counts(m, tool)
            b.record(warm, rtt, tool, sec, **c, **({"fuse": delta(f2, f1)} if f1 else {}))

    def by_curl() -> None:
        with b.counting() as c:
            sec, pages, n = curl_listing(b, service)
        if n != entries:
            raise Failed(f"curl listing saw {n} of {entries} entries")
        b.record(cold, rtt, "curl", sec, pages=pages, **c)

    def by_vls() -> None:
        with b.counting() as c:
            sec = b.vos("vls", "-l", vos_uri(service, "listing"))
        b.record(cold, rtt, "vcp", sec, **c)

    def floor() -> None:
        """``ls -l`` of a local tmpfs directory of as many entries (what ls itself costs),
        and of the same directory through the passthrough, cold and warm (the floor)."""
        local = b.shm / "listing-src" / "listing"
        if not local.exists():
            local.mkdir(parents=True)
            for i in range(entries):
                (local / f"entry-{i:05d}.fits").touch()
        run(["ls", "-l", str(local)], timeout=60)
        b.record(warm, rtt, "local dir", run(["ls", "-l", str(local)], timeout=60))
        with b.floored(local.parent) as mnt:
            look_up(mnt / "listing")
            b.record(cold, rtt, "floor", run(["ls", "-l", str(mnt / "listing")], timeout=300))
            b.record(warm, rtt, "floor", run(["ls", "-l", str(mnt / "listing")], timeout=300))

    by_tool: dict[str, Callable[[], None]] = {
        "canfarfs": partial(fs, "canfarfs"),
        "mountvofs": partial(fs, "mountvofs"),
        "curl": by_curl,
        "vcp": by_vls,
    }
    for i in range(b.runs_for(rtt, slow=False)):
        for tool in b.tools(*TOOLS, run=i):
            b.measure(cold, rtt, i, tool, by_tool[tool], label=f"ls -l {service}")
        b.attempt(warm, rtt, "local dir", floor)

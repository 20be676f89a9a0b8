"""Offline mounts (docs/semantics.md, *Offline*): what the mount knew survives it, and a
service that stops answering is watched until it answers again.

* :func:`save_metadata` writes the listings the mount knows to
  ``<cache-dir>/metadata.json`` at unmount; :func:`load_metadata` puts them back at the
  next start as *expired* listings: never served while the service answers (a fresh
  listing is fetched as always), served while it does not.
* :func:`watch` probes every unreachable service (one small request, bounded) every
  ``PROBE_EVERY`` seconds: while it fails the service stays offline (cached answers at
  once, ENETDOWN for what is not cached); when it answers, the mount is online again and
  the write-back queue is kicked.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from pydantic import ValidationError

from canfarfs import errors
from canfarfs.fs.meta import MetaCache
from canfarfs.vospace.model import Node

if TYPE_CHECKING:
    from canfarfs.fs.storage import Storage

log = logging.getLogger(__name__)

FILE_NAME = "metadata.json"
#: Entries (children of listings) saved at most: the newest listings first.
MAX_ENTRIES = 200_000
#: How often an unreachable service is asked again, and how long one probe may take.
PROBE_EVERY = 1.0
PROBE_TIMEOUT = 5.0
#: An operation that would fail offline first asks again itself, at most this often per
#: service and for at most RECHECK_TIMEOUT, so a link that just came back serves it.
RECHECK_EVERY = 1.0
RECHECK_TIMEOUT = 2.0
VERSION = 1


def save_metadata(meta: MetaCache, cache_dir: Path) -> int:
    """Write the known listings (newest first, up to MAX_ENTRIES children) and nodes; the
    count of listing entries."""
    listings: list[dict[str, Any]] = []
    entries = 0
    for (service, path), listing in sorted(
        meta.listings.items(), key=lambda kv: kv[1].fetched, reverse=True
    ):
        if entries + len(listing.children) > MAX_ENTRIES:
            break
        entries += len(listing.children) + 1
        listings.append(
            {
                "service": service,
                "path": path,
                "children": [
                    n.model_dump(mode="json", exclude={"children"})
                    for n in listing.children.values()
                ],
            }
        )
    nodes = [
        {
            "service": key[0],
            "path": key[1],
            "node": node.model_dump(mode="json", exclude={"children"}),
        }
        for key, node in list(_known_nodes(meta).items())[-MAX_ENTRIES:]
    ]
    target = cache_dir / FILE_NAME
    tmp = target.with_suffix(".tmp")
    with tmp.open("w") as f:
        json.dump({"version": VERSION, "listings": listings, "nodes": nodes}, f)
    os.replace(tmp, target)
    return entries


def _known_nodes(meta: MetaCache) -> dict[tuple[str, str], Node]:
    """Nodes known now, over those an earlier mount knew (kept for the next start)."""
    known = dict(meta.remembered)
    known.update((k, n) for k, (n, _) in meta.nodes.items() if n is not None)
    return known


def load_metadata(meta: MetaCache, cache_dir: Path) -> int:
    """Put the saved listings back, expired; the count of entries (0 if none or
    unreadable: an unreadable file is logged and ignored)."""
    source = cache_dir / FILE_NAME
    try:
        doc = json.loads(source.read_text())
        if doc.get("version") != VERSION:
            return 0
        expired = trio.current_time() - meta.ttl - 1.0
        entries = 0
        for item in doc["listings"]:
            key = (str(item["service"]), str(item["path"]))
            if key in meta.listings:
                continue
            children = {}
            for raw in item["children"]:
                node = Node.model_validate(raw)
                children[node.name] = node
            meta.put_listing(key, children, started=expired)
            entries += len(children)
        for item in doc.get("nodes", []):
            key = (str(item["service"]), str(item["path"]))
            if key not in meta.nodes and key not in meta.remembered:
                meta.remembered[key] = Node.model_validate(item["node"])
                entries += 1
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        log.warning("the metadata saved by the last mount is unreadable (%s): ignored", exc)
        return 0
    return entries


async def watch(storage: Storage, *, probe_first: bool = True) -> None:
    """Probe every service once at start (so an unreachable one is known offline before
    a user waits on it; not with ``--offline``), then, forever, each offline one every
    PROBE_EVERY seconds."""
    first = probe_first
    if not first:
        await trio.sleep(PROBE_EVERY)
    while True:
        async with trio.open_nursery() as nursery:
            for service in storage.clients:
                if first or service in storage.offline_since:
                    nursery.start_soon(probe, storage, service)
        first = False
        await trio.sleep(PROBE_EVERY)


async def probe(storage: Storage, service: str, within: float = PROBE_TIMEOUT) -> None:
    """One small request (the root node, no children, no retries), bounded; marks the
    service up or down."""
    try:
        with trio.fail_after(within + 1.0):  # the request is bounded; this is a backstop
            await storage.clients[service].ping(within)
    except trio.TooSlowError:
        storage.mark_down(service, errors.Timeout(f"{service}: no answer to a probe"))
    except errors.Transient as exc:
        storage.mark_down(service, exc)
    except errors.CanfarfsError:
        storage.mark_up(service)  # it answered: a refusal is an answer
    else:
        storage.mark_up(service)

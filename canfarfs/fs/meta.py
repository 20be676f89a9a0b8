"""The daemon's view of remote metadata: nodes and listings with TTLs, and a negative cache.

Attributes come from listings (one request per directory, not per entry); the mount's
own changes update the cache at once, so they show immediately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from canfarfs.vospace.model import Node

Key = tuple[str, str]  # (service, path)
_V = TypeVar("_V")


def move_keys(table: dict[Key, _V], moved: Callable[[Key], Key | None]) -> list[tuple[Key, _V]]:
    """Re-key the entries of ``table`` that a rename moved; returns them (new key, value)."""
    out = []
    for key in [k for k in table if moved(k)]:
        new = moved(key)
        assert new is not None
        table[new] = value = table.pop(key)
        out.append((new, value))
    return out


SWEEP_EVERY = 1024


def parent_key(key: Key) -> Key:
    return key[0], key[1].rpartition("/")[0]


def child_key(key: Key, name: str) -> Key:
    return key[0], f"{key[1]}/{name}" if key[1] else name


@dataclass
class Listing:
    """A directory's children by name, as of ``fetched``."""

    children: dict[str, Node]
    fetched: float


@dataclass
class MetaCache:
    """Nodes and listings keyed by (service, path), fresh for ``ttl`` seconds."""

    ttl: float = 5.0
    negative_ttl: float = 5.0
    nodes: dict[Key, tuple[Node | None, float]] = field(default_factory=dict)
    listings: dict[Key, Listing] = field(default_factory=dict)
    #: Stale node entries are kept to answer while a server is down, but not forever:
    #: every SWEEP_EVERY writes, negative entries past their TTL and nodes older than
    #: KEEP_STALE are dropped (deleted and renamed paths otherwise piled up).
    keep_stale: float = 600.0
    #: Nodes an earlier mount knew (offline.py, pins.py): never fresh, never swept, the
    #: last resort of stale_node while a service cannot be reached.
    remembered: dict[Key, Node] = field(default_factory=dict)
    _puts: int = 0
    #: When each name was last put, by parent: a listing fetched while the mount
    #: changed a name must not bring the old entry back (see put_listing).
    _put_at: dict[Key, dict[str, float]] = field(default_factory=dict)

    def _fresh(self, stamp: float, ttl: float) -> bool:
        return trio.current_time() - stamp < ttl

    def node(self, key: Key) -> tuple[bool, Node | None]:
        """(known, node): known with None means "known not to exist"."""
        hit = self.nodes.get(key)
        if hit is not None:
            node, stamp = hit
            if self._fresh(stamp, self.ttl if node is not None else self.negative_ttl):
                return True, node
        listing = self.listings.get(parent_key(key)) if key[1] else None
        if listing is not None and self._fresh(listing.fetched, self.ttl):
            name = key[1].rpartition("/")[2]
            child = listing.children.get(name)
            return True, child
        return False, None

    def put(self, key: Key, node: Node | None, started: float | None = None) -> None:
        """What is known of ``key`` now; with ``started`` (when the request that told it
        was sent), nothing if a newer answer or change was put meanwhile."""
        now = trio.current_time()
        if started is not None and key[1]:
            stamp = self._put_at.get(parent_key(key), {}).get(key[1].rpartition("/")[2])
            if stamp is not None and stamp >= started:
                return
        self.nodes[key] = (node, now)
        if node is None:
            self.remembered.pop(key, None)
        self._puts += 1
        if self._puts % SWEEP_EVERY == 0:
            self.sweep(now)
        if key[1]:
            name = key[1].rpartition("/")[2]
            self._put_at.setdefault(parent_key(key), {})[name] = now
            listing = self.listings.get(parent_key(key))
            if listing is not None:
                if node is None:
                    listing.children.pop(name, None)
                else:
                    listing.children[name] = node

    def sweep(self, now: float) -> None:
        """Drop negative entries past their TTL and nodes older than ``keep_stale``."""

        def useless(entry: tuple[Node | None, float]) -> bool:
            node, stamp = entry
            age = now - stamp
            return age >= self.negative_ttl if node is None else age >= self.keep_stale

        for k in [k for k, entry in self.nodes.items() if useless(entry)]:
            del self.nodes[k]
        for parent in list(self._put_at):
            names = self._put_at[parent]
            for name in [n for n, stamp in names.items() if now - stamp >= self.ttl]:
                del names[name]
            if not names:
                del self._put_at[parent]

    def listing(self, key: Key) -> Listing | None:
        hit = self.listings.get(key)
        if hit is not None and self._fresh(hit.fetched, self.ttl):
            return hit
        return None

    def stale_listing(self, key: Key) -> Listing | None:
        """A listing past its TTL, to answer with while the server cannot be reached."""
        return self.listings.get(key)

    def stale_node(self, key: Key) -> Node | None:
        hit = self.nodes.get(key)
        if hit is not None and hit[0] is not None:
            return hit[0]
        listing = self.listings.get(parent_key(key)) if key[1] else None
        if listing is not None:
            return listing.children.get(key[1].rpartition("/")[2])
        return self.remembered.get(key)

    def put_listing(
        self, key: Key, children: dict[str, Node], started: float | None = None
    ) -> None:
        """A listing whose request was sent at ``started`` (default: now). Names put
        since then (the mount's own changes, or fresher answers) override it, and it is
        as old as its request: an answer racing a change never brings back the past."""
        now = trio.current_time()
        since = now if started is None else started
        for name, stamp in self._put_at.get(key, {}).items():
            if stamp >= since:
                hit = self.nodes.get(child_key(key, name))
                if hit is None or hit[0] is None:
                    children.pop(name, None)
                else:
                    children[name] = hit[0]
        self.listings[key] = Listing(children, since)

    def forget(self, key: Key) -> None:
        """Drop what is known about ``key`` and everything below it."""

        def below(k: Key) -> bool:
            return k[0] == key[0] and (
                not key[1] or k[1] == key[1] or k[1].startswith(key[1] + "/")
            )

        for k in [k for k in self.nodes if below(k)]:
            del self.nodes[k]
        for k in [k for k in self.listings if below(k)]:
            del self.listings[k]
        for k in [k for k in self.remembered if below(k)]:
            del self.remembered[k]

    def invalidate_listing(self, key: Key) -> None:
        self.listings.pop(key, None)

"""Locks by name, for the operations that must not interleave on one file.

An open that makes a file's staged copy, an unlink and a rename each hold the locks of
the names they touch (a rename both, always in the same order, so two renames never
wait on each other in a circle). Without them a rename could land between an open's
lookup and its staged copy, and two states would claim one name. A lock exists only
while someone holds or awaits it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Hashable

import trio


class KeyLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[trio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, *keys: tuple[str, str]) -> AsyncIterator[None]:
        """Hold the locks of ``keys`` (in a fixed order) for the block."""
        ordered = sorted(set(keys))
        locks = []
        for key in ordered:
            lock, users = self._locks.get(key, (None, 0))
            lock = lock or trio.Lock()
            self._locks[key] = (lock, users + 1)
            locks.append(lock)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for lock in locks:
                    await stack.enter_async_context(lock)
                yield
        finally:
            for key in ordered:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

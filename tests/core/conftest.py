"""tests/core: the FUSE-free core (storage, cache files, bulk downloads, open files, the
sessions tree, the clients) in process, against the emulator app over ASGI — no socket,
no /dev/fuse. ``emulator`` comes from tests/conftest.py."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from canfarfs.emulator.app import Emulator
from canfarfs.fs.storage import Storage
from canfarfs.skaha import SkahaClient
from tests.emulator_util import BASE
from tests.skaha_util import make_http, running
from tests.storage_util import MakeStorage, open_storage


@pytest.fixture
def make_storage(emulator: Emulator, tmp_path: Path) -> MakeStorage:
    """``async with make_storage(**config) as storage``: a mount's storage core (arc and
    vault, as alice) on the in-process emulator, without FUSE; each with its own cache
    directory unless ``cache_dir`` is given (tests/storage_util.py)."""
    counter = itertools.count()

    def make(cache_dir: Path | None = None, **config: Any) -> Any:
        return open_storage(emulator, cache_dir or tmp_path / f"cache-{next(counter)}", **config)

    return make


@pytest.fixture
async def storage(make_storage: MakeStorage) -> AsyncIterator[Storage]:
    """The storage core with the default configuration (see ``make_storage``)."""
    async with make_storage() as s:
        yield s


@pytest.fixture
async def skaha(emulator: Emulator) -> AsyncIterator[SkahaClient]:
    """A client on the emulator, with its sessions running (headless = local processes)."""
    async with running(emulator):
        http = make_http(emulator)
        try:
            yield SkahaClient(http, f"{BASE}/skaha/v1")
        finally:
            await http.aclose()

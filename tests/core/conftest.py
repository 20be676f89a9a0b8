"""tests/core: the FUSE-free core (storage, cache files, bulk downloads, open files, the
sessions tree, the clients) in process, against the emulator app over ASGI — no socket,
no /dev/fuse. ``emulator`` comes from tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from canfarfs.emulator.app import Emulator
from canfarfs.skaha import SkahaClient
from tests.emulator_util import BASE
from tests.skaha_util import make_http, running


@pytest.fixture
async def skaha(emulator: Emulator) -> AsyncIterator[SkahaClient]:
    """A client on the emulator, with its sessions running (headless = local processes)."""
    async with running(emulator):
        http = make_http(emulator)
        try:
            yield SkahaClient(http, f"{BASE}/skaha/v1")
        finally:
            await http.aclose()

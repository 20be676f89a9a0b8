"""tests/emulator: the emulator itself (in process and as ``canfarfs emulator`` on a
socket) and CADC's clients (``vos``, ``canfar``) against it. No /dev/fuse.
``emulator``, ``live_emulator``, ``live`` and ``tls_live`` come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from canfarfs.emulator.app import Emulator
from tests.emulator_util import make_client


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client on the in-process emulator, as alice."""
    async with make_client(emulator) as c:
        yield c

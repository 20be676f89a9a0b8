"""VOSpace clients on the in-process emulator, for tests."""

from __future__ import annotations

import httpx2

from canfarfs.emulator.app import Emulator
from canfarfs.net import HTTP, Credentials, RetryPolicy
from canfarfs.vospace.client import VOSpaceClient
from tests.emulator_util import BASE, TOKEN


def client_for(emulator: Emulator, service: str, page_size: int = 1000) -> VOSpaceClient:
    http = HTTP(
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=emulator.app)),
        Credentials(token=TOKEN),
        retry=RetryPolicy(base_delay=0.001),
    )
    return VOSpaceClient(http, f"{BASE}/{service}", service, page_size=page_size)

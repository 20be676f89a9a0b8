"""Fuzz the Skaha emulator from its OpenAPI document (schemathesis): no 5xx, ever.

Requests go over a real socket to a live emulator (the ASGI app uses trio, which
schemathesis' in-process ASGI transport cannot drive). Headless processes are switched
off (``CANFARFS_SKAHA_RUN=0``) so generated ``cmd``/``args`` never execute.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

import canfarfs
from tests.emulator_util import LiveEmulator

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")
import httpx2  # noqa: E402
import yaml  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SPEC = Path(canfarfs.__file__).parent / "data" / "skaha-openapi.yaml"
TERMINAL = "images.canfar.net/skaha/terminal:1.1.1"
ASTROML = "images.canfar.net/skaha/astroml:latest"
#: Examples per generation mode, spread over all operations of the document.
EXAMPLES = 200


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set before ``live_emulator`` starts: the subprocess inherits the environment."""
    monkeypatch.setenv("CANFARFS_SKAHA_RUN", "0")
    monkeypatch.setenv("CANFARFS_SKAHA_PENDING_SECONDS", "0.1")


#: Requests the client library itself refuses to send (not the server's doing).
_UNSENDABLE = (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors(live: LiveEmulator, mode: str) -> None:
    schema = schemathesis.openapi.from_path(str(SPEC))
    strategy = schema.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
    base = f"{live.url}/skaha"
    failures: list[str] = []
    seen: set[int] = set()
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {live.token}"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def probe(case: Any) -> None:
            try:
                response = case.call(base_url=base, session=session, timeout=10)
            except _UNSENDABLE:
                return
            seen.add(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} "
                    f"{case.headers} -> {response.status_code} {response.text}"
                )

        probe()
    assert not failures, "\n".join(failures[:10])
    assert live.proc.poll() is None  # still serving
    assert {200, 400} <= seen


# -- create, deeper: parameters drawn from the document's names, near-valid values ----------


@functools.cache
def _create_parameters() -> tuple[str, ...]:
    """The query parameters ``POST /v1/session`` takes, from the OpenAPI document."""
    spec = yaml.safe_load(SPEC.read_text())
    return tuple(
        p["name"] for p in spec["paths"]["/v1/session"]["post"]["parameters"] if p["in"] == "query"
    )


#: Values the server accepts, per parameter (None: leave the parameter out).
_VALID: dict[str, st.SearchStrategy[object]] = {
    "name": st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True),
    "image": st.sampled_from([TERMINAL, ASTROML]),
    "type": st.sampled_from(
        [None, "headless", "NoteBook", "desktop", "carta", "firefly", "contributed"]
    ),
    "cores": st.sampled_from([None, "1", "2", "1.5", "16", " 2 ", "2d", "1e0"]),
    "ram": st.sampled_from([None, "1", "8", "192", "+8", "08"]),
    "gpus": st.sampled_from([None, "1", "28"]),
    "cmd": st.one_of(st.none(), st.text()),
    "args": st.one_of(st.none(), st.text()),
    "env": st.lists(st.text(), max_size=4),
}
#: What replaces a parameter picked for breaking.
_BROKEN: dict[str, st.SearchStrategy[object]] = {
    "name": st.sampled_from(["-x", "x-", "a_b", "", "x" * 64]),
    "image": st.sampled_from(
        ["images.canfar.net/me/x:1", "images.canfar.net", "docker.io/x/y:1", ""]
    ),
    "type": st.sampled_from(["desktop-app", "jupyter", ""]),
    "cores": st.sampled_from(["0", "-1", "17", "NaN", "Infinity", "0x1p1", "1_0", ""]),
    "ram": st.sampled_from(["3", "8.5", "99999999999", "", " 8"]),
    "gpus": st.sampled_from(["0", "29", "-1", "x"]),
}


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_create_parameters_never_5xx(client: httpx2.AsyncClient, data: st.DataObject) -> None:
    """Near-valid creates: every parameter the document names, a few broken or garbage."""
    names = _create_parameters()
    broken = data.draw(st.sets(st.sampled_from(names), max_size=2), label="broken")
    params: list[tuple[str, str]] = []
    for name in names:
        if name in broken:
            strategy = st.one_of(_BROKEN.get(name, st.nothing()), st.text(), st.none())
        else:
            strategy = _VALID.get(name, st.text())
        value = data.draw(strategy, label=name)
        values = value if isinstance(value, list) else [] if value is None else [value]
        params += [(name, str(v)) for v in values]
    header = data.draw(st.one_of(st.none(), st.sampled_from(["Ym9iOnMzY3JldA==", "x", ""])))
    headers = {} if header is None else {"X-Skaha-Registry-Auth": header}
    r = await client.post("/skaha/v1/session", params=tuple(params), headers=headers)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        sid = r.text.strip()
        listed = await client.get(f"/skaha/v1/session/{sid}")
        assert listed.status_code == 200
        assert listed.json()["id"] == sid
        assert (await client.delete(f"/skaha/v1/session/{sid}")).status_code == 200

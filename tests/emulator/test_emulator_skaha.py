"""Skaha v1 emulator, in-process: every endpoint, error text and quirk (skaha-api.md)."""

from __future__ import annotations

import base64
import re

import httpx2
import pytest
from defusedxml import ElementTree

from canfarfs.emulator.app import Emulator
from canfarfs.emulator.skaha_model import (
    events_table,
    instant_text,
    java_split,
    offset_datetime_text,
    parse_env,
    posix_id,
)
from tests.emulator_util import BOB_TOKEN, USER, make_client
from tests.skaha_util import (
    ASTROML,
    TERMINAL,
    V1,
    create,
    events,
    gone,
    info,
    logs,
    running,
    service,
    until,
    wait_status,
)

JAVA_IAE = "java.lang.IllegalArgumentException: "


def iae(message: str) -> str:
    """The body of a 400 from an IllegalArgumentException."""
    return f"{message}{JAVA_IAE}{message}\n"


# -- pure rules ---------------------------------------------------------------------------


def test_java_time_formats() -> None:
    assert offset_datetime_text(1744299900) == "2025-04-10T15:45Z"
    assert offset_datetime_text(1744299909) == "2025-04-10T15:45:09Z"
    assert instant_text(1744299900) == "2025-04-10T15:45:00Z"


def test_java_split_and_env_rules() -> None:
    assert java_split("a  b ", " ") == ["a", "", "b"]
    assert java_split("", " ") == [""]
    assert java_split(" ", " ") == []
    env = parse_env(["FOO=bar", "EQ=a=b", "EMPTY=", "=x", "NOEQ", "Z=1"])
    assert env == [("FOO", "bar"), ("Z", "1")]


def test_events_table_columns() -> None:
    assert events_table([]) == "<none>\n"


# -- service basics ------------------------------------------------------------------------


async def test_head_root_capabilities_availability(
    client: httpx2.AsyncClient, emulator: Emulator
) -> None:
    assert (await client.head("/skaha")).status_code == 200
    r = await client.get("/skaha/capabilities")
    assert r.status_code == 200
    root = ElementTree.fromstring(r.content)
    caps = {
        c.get("standardID"): [i.findtext("accessURL") for i in c.findall("interface")]
        for c in root.iter("capability")
    }
    session = caps["http://www.opencadc.org/std/platform#session-1"]
    assert session == ["http://emu.invalid/skaha/v1/session"] * 3
    assert caps["vos://cadc.nrc.ca~vospace/CADC/std/Proc#sessions-1.0"][0].endswith("/skaha/v0")
    async with make_client(emulator, token=None) as anon:
        for path in ("/skaha/availability", "/skaha/capabilities", "/skaha/"):
            assert (await anon.get(path)).status_code == 200
    r = await client.get("/skaha/availability")
    ns = "{http://www.ivoa.net/xml/VOSIAvailability/v1.0}"
    assert ElementTree.fromstring(r.content).findtext(f"{ns}available") == "true"


async def test_authentication(client: httpx2.AsyncClient, emulator: Emulator) -> None:
    async with make_client(emulator, token=None) as anon:
        r = await anon.get(V1)
        assert (r.status_code, r.text) == (401, "Unauthorized\n")
        assert (await anon.post(V1, params={"name": "x", "image": TERMINAL})).status_code == 401
        assert (await anon.get("/skaha/v1/context")).status_code == 401
    async with make_client(emulator, token="wrong") as bad:
        r = await bad.get(V1)
        assert r.status_code == 401
        assert r.text.startswith("NotAuthenticated")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", V1),
        ("PATCH", f"{V1}/abc"),
        ("POST", "/skaha/v1/image"),
        ("DELETE", "/skaha/v1/context"),
        ("HEAD", "/skaha/v1/repository"),
        ("PUT", "/skaha/v1/image"),
    ],
)
async def test_unsupported_methods(client: httpx2.AsyncClient, method: str, path: str) -> None:
    r = await client.request(method, path)
    assert r.status_code == 400
    if method != "HEAD":
        assert r.text == f"unsupported: HTTP {method}\n"


async def test_unknown_paths(client: httpx2.AsyncClient) -> None:
    for path in ("/skaha/v0/session", "/skaha/v2/session", "/skaha/v1/sessions", "/skaha/x"):
        assert (await client.get(path)).status_code == 404
    r = await client.get(f"{V1}/a/app/b/c")
    assert (r.status_code, r.text) == (400, iae("Invalid request: a/app/b/c"))


# -- create --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"name": "x"}, "Missing parameter 'image'"),
        (
            {"image": "docker.io/library/ubuntu:22.04", "name": "x"},
            "session image 'docker.io/library/ubuntu:22.04' must come from one of [images.canfar.net]",  # noqa: E501 - the service's message, verbatim
        ),
        ({"image": TERMINAL, "name": "x", "type": "jupyter"}, "Invalid session type: jupyter"),
        (
            {"image": TERMINAL, "name": "x", "type": "desktop-app"},
            "Invalid session type: desktop-app",
        ),
        ({"image": TERMINAL, "name": "x", "cores": "abc"}, "Invalid value for 'cores': abc"),
        ({"image": TERMINAL, "name": "x", "cores": "17"}, "Invalid value for 'cores': 17"),
        ({"image": TERMINAL, "name": "x", "cores": "0"}, "Invalid value for 'cores': 0"),
        ({"image": TERMINAL, "name": "x", "ram": "3"}, "Invalid value for 'ram': 3"),
        ({"image": TERMINAL, "name": "x", "ram": "8.5"}, "Invalid value for 'ram': 8.5"),
        ({"image": TERMINAL}, "Missing parameter 'name'"),
        ({"image": TERMINAL, "name": "a_b"}, "name can only contain alpha-numeric chars and '-'"),
        ({"image": TERMINAL, "name": ""}, "name can only contain alpha-numeric chars and '-'"),
        ({"image": TERMINAL, "name": "x", "gpus": "0"}, "Invalid value for 'gpus': 0"),
        ({"image": TERMINAL, "name": "x", "gpus": "two"}, "Invalid value for 'gpus': two"),
        (
            {"image": "images.canfar.net/me/private:1", "name": "x"},
            "No authentication provided for unknown or private image.  Use x-skaha-registry-auth "
            "request header with base64Encode(username:secret).",
        ),
        # validation order: image before type before cores before ram before name before gpus
        ({"type": "bad", "name": "a_b"}, "Missing parameter 'image'"),
        ({"image": TERMINAL, "type": "bad", "cores": "x"}, "Invalid session type: bad"),
        ({"image": TERMINAL, "cores": "x", "ram": "x"}, "Invalid value for 'cores': x"),
        ({"image": TERMINAL, "ram": "x", "name": "a_b"}, "Invalid value for 'ram': x"),
        (
            {"image": TERMINAL, "name": "a_b", "gpus": "x"},
            "name can only contain alpha-numeric chars and '-'",
        ),
        (
            {"image": "images.canfar.net/me/private:1", "name": "x", "gpus": "x"},
            "Invalid value for 'gpus': x",
        ),
    ],
)
async def test_create_validation(
    client: httpx2.AsyncClient, params: dict[str, str], text: str
) -> None:
    r = await client.post(V1, params=params)
    assert (r.status_code, r.text) == (400, iae(text))


async def test_create_from_form_body_and_case_insensitive_type(client: httpx2.AsyncClient) -> None:
    body = "name=Form-Test&image=images.canfar.net%2Fskaha%2Fastroml%3Alatest&type=NoteBook"
    r = await client.post(
        V1, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200, r.text
    data = await info(client, r.text.strip())
    assert (data["type"], data["name"], data["status"]) == ("notebook", "form-test", "Pending")


async def test_name_rules(client: httpx2.AsyncClient) -> None:
    sid = await create(client, name="My-Session-01")
    assert (await info(client, sid))["name"] == "my-session-01"
    assert await create(client, name="dup") != await create(client, name="dup")
    for bad in ("-lead", "trail-", "x" * 64):
        r = await client.post(V1, params={"name": bad, "image": TERMINAL})
        assert r.status_code == 400
        assert "not a valid host name" in r.text


async def test_registry_auth(client: httpx2.AsyncClient) -> None:
    private = "images.canfar.net/your/private-image:latest"
    good = base64.b64encode(b"bob:s3cret").decode()
    r = await client.post(
        V1, params={"name": "p", "image": private}, headers={"X-Skaha-Registry-Auth": good}
    )
    assert r.status_code == 200, r.text
    for bad in (
        base64.b64encode(b"bob:s3:cret").decode(),
        base64.b64encode(b"bob").decode(),
        "!!not-base64!!",
    ):
        r = await client.post(
            V1, params={"name": "p", "image": private}, headers={"x-skaha-registry-auth": bad}
        )
        assert (r.status_code, r.text) == (
            400,
            iae("Invalid input.  Must be in form of username:secret"),
        )
    # A public image never looks at the header.
    r = await client.post(
        V1, params={"name": "p", "image": TERMINAL}, headers={"X-Skaha-Registry-Auth": "garbage"}
    )
    assert r.status_code == 200


async def test_interactive_limit(client: httpx2.AsyncClient) -> None:
    for i in range(5):
        await create(client, name=f"nb{i}", image=ASTROML, type="notebook")
    r = await client.post(V1, params={"name": "six", "image": ASTROML, "type": "carta"})
    assert (r.status_code, r.text) == (
        400,
        iae(f"User {USER} has reached the maximum of 5 active sessions."),
    )
    await create(client, name="headless-ok")  # headless sessions are unlimited


async def test_session_fields_fixed_and_flexible(client: httpx2.AsyncClient) -> None:
    flex = await info(client, await create(client, name="flex"))
    assert flex["isFixedResources"] is False
    for key in (
        "requestedRAM",
        "requestedCPUCores",
        "startTime",
        "expiryTime",
        "ramInUse",
        "cpuCoresInUse",
        "appid",
        "gpuRAMInUse",
        "gpuUtilization",
    ):
        assert key not in flex
    assert flex["requestedGPUCores"] == "0"
    assert flex["connectURL"] == ""
    assert flex["runAsUID"] == str(posix_id(USER))
    assert flex["supplementalGroups"] == [posix_id("survey-team")]
    cores_only = await info(client, await create(client, name="c", cores="4", gpus="2"))
    assert cores_only["isFixedResources"] is False
    assert cores_only["requestedGPUCores"] == "2"
    fixed = await info(client, await create(client, name="f", cores="2", ram="8"))
    assert (fixed["requestedRAM"], fixed["requestedCPUCores"], fixed["isFixedResources"]) == (
        "8.59",
        "2",
        True,
    )
    frac = await info(client, await create(client, name="f", cores="1.5", ram="16"))
    assert (frac["requestedRAM"], frac["requestedCPUCores"]) == ("17.18", "1.500")
    firefly = await info(client, await create(client, name="ff", image=ASTROML, type="firefly"))
    assert (firefly["requestedRAM"], firefly["requestedCPUCores"]) == ("4.29", "0.100")
    desktop = await info(
        client, await create(client, name="d", image=ASTROML, type="desktop", ram="8")
    )
    assert desktop["isFixedResources"] is False
    assert list(fixed) == [
        "id",
        "userid",
        "runAsUID",
        "runAsGID",
        "supplementalGroups",
        "image",
        "type",
        "status",
        "name",
        "connectURL",
        "requestedRAM",
        "requestedCPUCores",
        "requestedGPUCores",
        "isFixedResources",
    ]


async def test_start_time_drops_zero_seconds(
    client: httpx2.AsyncClient, emulator: Emulator
) -> None:
    sid = await create(client)
    service(emulator).db.update(sid, status="Running", start_time=1744299900)
    data = await info(client, sid)
    assert (data["startTime"], data["expiryTime"]) == ("2025-04-10T15:45Z", "2025-04-24T15:45:00Z")
    assert (data["ramInUse"], data["cpuCoresInUse"]) == ("0.05", "0.001")


async def test_connect_urls(client: httpx2.AsyncClient) -> None:
    base = "http://emu.invalid/skaha/session-ui"
    urls = {}
    for kind in ("desktop", "notebook", "carta", "contributed", "firefly"):
        sid = await create(client, name=kind, image=ASTROML, type=kind)
        urls[kind] = (sid, (await info(client, sid))["connectURL"])
    sid, url = urls["desktop"]
    assert url == f"{base}/desktop/{sid}/?password={sid}&path=session/desktop/{sid}/"
    sid, url = urls["notebook"]
    assert url == f"{base}/notebook/{sid}/lab/tree/arc/home/{USER}?token={sid}"
    sid, url = urls["carta"]
    assert url == f"{base}/carta/{sid}/"
    sid, url = urls["contributed"]
    assert url == f"{base}/contrib/{sid}/"
    sid, url = urls["firefly"]
    assert url == f"{base}/firefly/{sid}/firefly/"


# -- listing ---------------------------------------------------------------------------------


async def test_list_filters_and_views(client: httpx2.AsyncClient, emulator: Emulator) -> None:
    h = await create(client, name="h")
    nb = await create(client, name="nb", image=ASTROML, type="notebook")
    async with make_client(emulator, BOB_TOKEN) as bob:
        await create(bob, name="bobs")
    assert {s["id"] for s in (await client.get(V1)).json()} == {h, nb}
    r = await client.get(V1, params={"type": "HEADLESS", "status": "pending"})
    assert [s["id"] for s in r.json()] == [h]
    assert (await client.get(V1, params={"status": "Succeeded"})).json() == []
    assert (await client.get(V1, params={"type": "nonsense"})).json() == []
    r = await client.get(V1, params={"view": "interactive"})
    assert [s["id"] for s in r.json()] == [nb]
    everyone = (await client.get(V1, params={"view": "all"})).json()
    assert sorted(s["userid"] for s in everyone) == ["alice", "alice", "bob"]
    assert all(set(s) == {"userid", "type", "status"} for s in everyone)
    r = await client.get(V1, params={"view": "all", "type": "notebook"})
    assert r.json() == [{"userid": "alice", "type": "notebook", "status": "Pending"}]
    assert r.headers["content-type"] == "application/json"


async def test_stats(client: httpx2.AsyncClient) -> None:
    data = (await client.get(V1, params={"view": "stats"})).json()
    assert set(data) == {"cores", "ram"}
    assert isinstance(data["cores"]["requestedCPUCores"], float)
    assert data["cores"]["cpuCoresAvailable"] >= 1
    assert data["ram"]["ramAvailable"].endswith("G")
    assert set(data["ram"]["maxRAM"]) == {"ram", "withCPUCores"}


# -- one session ---------------------------------------------------------------------------


async def test_unknown_session_ids(client: httpx2.AsyncClient, emulator: Emulator) -> None:
    async with make_client(emulator, BOB_TOKEN) as bob:
        bobs = await create(bob, name="bobs")
    for sid in ("nosuchid", bobs):
        r = await client.get(f"{V1}/{sid}")
        assert (r.status_code, r.text) == (404, f"session {sid} not found\n")
        r = await client.get(f"{V1}/{sid}", params={"view": "events"})
        assert (r.status_code, r.text) == (404, f"session {sid} not found\n")
        r = await client.get(f"{V1}/{sid}", params={"view": "logs"})
        assert (r.status_code, r.text) == (200, "")
        r = await client.post(f"{V1}/{sid}", params={"action": "renew"})
        principal = f"PosixPrincipal [uidNumber={posix_id(USER)}]"
        assert (r.status_code, r.text) == (
            400,
            iae(f"No active job for user {principal} with session {sid}"),
        )
        r = await client.delete(f"{V1}/{sid}")
        assert (r.status_code, r.text) == (200, "")
    async with make_client(emulator, BOB_TOKEN) as bob:
        assert (await bob.get(f"{V1}/{bobs}")).status_code == 200


async def test_session_actions(client: httpx2.AsyncClient) -> None:
    sid = await create(client)
    r = await client.post(f"{V1}/{sid}")
    assert (r.status_code, r.text) == (400, "Cannot modify an existing session\n")
    r = await client.post(f"{V1}/{sid}", params={"action": "reboot"})
    assert (r.status_code, r.text) == (400, "unrecognized action\n")
    r = await client.post(f"{V1}/{sid}", params={"action": "RENEW"})
    assert (r.status_code, r.text) == (200, "")
    r = await client.delete(V1)
    assert (r.status_code, r.text) == (400, "Cannot kill all sessions.\n")
    assert (await client.delete(f"{V1}/{sid}")).status_code == 200
    assert (await client.get(f"{V1}/{sid}")).status_code == 404


async def test_events_none_until_scheduled(client: httpx2.AsyncClient) -> None:
    sid = await create(client)  # the background work is not running: stays Pending
    r = await client.get(f"{V1}/{sid}", params={"view": "events"})
    assert (r.status_code, r.text) == (200, "<none>\n")
    assert await logs(client, sid) == ""


async def test_images_context_repository(client: httpx2.AsyncClient) -> None:
    images = (await client.get("/skaha/v1/image")).json()
    ids = {i["id"] for i in images}
    assert {TERMINAL, ASTROML} <= ids
    assert all(i["digest"].startswith("sha256:") and i["types"] for i in images)
    headless = (await client.get("/skaha/v1/image", params={"type": "headless"})).json()
    assert all("headless" in i["types"] for i in headless)
    assert TERMINAL in {i["id"] for i in headless}
    kinds = {t for i in images for t in i["types"]}
    assert {"notebook", "headless", "desktop", "carta", "firefly", "contributed"} <= kinds
    r = await client.get("/skaha/v1/image", params={"type": "bogus"})
    assert (r.status_code, r.text) == (400, iae("unknown type: bogus"))
    context = (await client.get("/skaha/v1/context")).json()
    assert context["cores"] == {
        "default": 2,
        "defaultRequest": 1,
        "defaultLimit": 8,
        "options": list(range(1, 17)),
    }
    assert context["memoryGB"]["options"][-1] == 192
    assert context["gpus"]["options"] == list(range(1, 29))
    assert context["maxInteractiveSessions"] == "5"
    assert (await client.get("/skaha/v1/repository")).json() == ["images.canfar.net"]


async def test_desktop_apps(client: httpx2.AsyncClient) -> None:
    desk = await create(client, name="desk", image=ASTROML, type="desktop")
    r = await client.post(f"{V1}/{desk}/app", params={"image": ASTROML, "cores": "2"})
    assert r.status_code == 200, r.text
    appid = r.text.strip()
    assert re.fullmatch(r"[a-z0-9]{3}", appid)
    assert [s["id"] for s in (await client.get(V1)).json()] == [desk]
    apps = (await client.get(V1, params={"type": "desktop-app"})).json()
    assert [(a["id"], a["appid"], a["connectURL"]) for a in apps] == [(desk, appid, "")]
    assert (await client.get(f"{V1}/{desk}/app")).json() == apps
    assert (await client.get(f"{V1}/{desk}/app/{appid}")).json() == apps[0]
    assert (await info(client, desk))["type"] == "desktop"
    r = await client.post(f"{V1}/{desk}/app", params={"cores": "2"})
    assert (r.status_code, r.text) == (400, iae("Missing parameter 'image'"))
    r = await client.post(f"{V1}/nosuchid/app", params={"image": ASTROML})
    assert r.status_code == 404
    r = await client.post(f"{V1}/{desk}/app/{appid}")
    assert (r.status_code, r.text) == (400, "Cannot modify an existing app.\n")
    assert (await client.delete(f"{V1}/{desk}/app/{appid}")).status_code == 200
    assert (await client.get(f"{V1}/{desk}/app/{appid}")).status_code == 404


# -- lifecycle with the background work running ------------------------------------------------


async def test_interactive_lifecycle(client: httpx2.AsyncClient, emulator: Emulator) -> None:
    async with running(emulator):
        sid = await create(client, name="nb", image=ASTROML, type="notebook")
        pending = await info(client, sid)
        assert pending["status"] == "Pending"
        assert "startTime" not in pending
        data = await wait_status(client, sid, "Running")
        assert {"startTime", "expiryTime", "ramInUse", "cpuCoresInUse"} <= set(data)
        reasons = [row[1] for row in await events(client, sid)]
        assert reasons == ["Scheduled", "Pulled", "Created", "Started"]
        url = str(data["connectURL"])
        async with make_client(emulator, token=None) as anon:
            page = await anon.get(url)
        assert page.status_code == 200
        assert sid in page.text
        assert page.headers["content-type"].startswith("text/html")
        running_sessions = await client.get(V1, params={"status": "running"})
        assert sid in {s["id"] for s in running_sessions.json()}


async def test_renew_and_expiry(client: httpx2.AsyncClient, emulator: Emulator) -> None:
    async with running(emulator) as svc:
        sid = await create(client, name="nb", image=ASTROML, type="notebook")
        hl = await create(client, name="long", cmd="sleep", args="30")
        first = await wait_status(client, sid, "Running")
        await wait_status(client, hl, "Running")
        svc.clock.offset = 3 * 86400  # three days later: one day left
        assert (await client.post(f"{V1}/{sid}", params={"action": "renew"})).status_code == 200
        renewed = await info(client, sid)
        assert str(renewed["expiryTime"]) > str(first["expiryTime"])
        expiry = svc.db.get(sid).expiry  # type: ignore[union-attr]
        assert expiry is not None
        assert abs(expiry - (svc.clock() + 4 * 86400)) < 3
        before = (await info(client, hl))["expiryTime"]
        assert (await client.post(f"{V1}/{hl}", params={"action": "renew"})).status_code == 200
        assert (await info(client, hl))["expiryTime"] == before  # 14 days > 4: no change
        svc.clock.offset += 5 * 86400
        data = await wait_status(client, sid, "Failed")
        assert data["status"] == "Failed"
        assert (await events(client, sid))[-1][:2] == ["Warning", "DeadlineExceeded"]
        r = await client.post(f"{V1}/{sid}", params={"action": "renew"})
        assert r.status_code == 400
        svc.clock.offset += 2 * 86400  # past the 24 h a finished interactive Job is kept
        await until(lambda: gone(client, sid))
        await client.delete(f"{V1}/{hl}")

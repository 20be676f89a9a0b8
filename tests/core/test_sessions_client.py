"""The Skaha client and its models, against the emulator in-process (docs/sessions.md,
"As a library"; skaha-api.md §3–§8)."""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
from pydantic import ValidationError

from canfarfs import errors
from canfarfs.emulator.app import Emulator
from canfarfs.emulator.faults import FaultPlan
from canfarfs.net import HTTP, Credentials, make_client
from canfarfs.skaha import RegistryAuth, Session, SessionSpec, SkahaClient, api_base
from tests.emulator_util import BASE, TOKEN
from tests.skaha_util import ASTROML, PRIVATE, SECRET, TERMINAL, make_http, until


def spec(**fields: Any) -> SessionSpec:
    return SessionSpec.model_validate({"name": "job", "image": TERMINAL, **fields})


async def wait_done(client: SkahaClient, sid: str) -> Session:
    async def done() -> bool:
        return (await client.info(sid)).status in ("Completed", "Failed")

    await until(done)
    return await client.info(sid)


# -- SessionSpec: what users write -------------------------------------------------------------


def test_spec_defaults_and_image_normalisation() -> None:
    s = SessionSpec(name="a", image="skaha/astroml")
    assert (s.kind, s.replicas, s.cores, s.ram, s.gpus) == ("headless", 1, None, None, None)
    assert s.image == "images.canfar.net/skaha/astroml:latest"
    assert spec(image="skaha/terminal:1.1.1").image == TERMINAL
    assert spec(image="images.canfar.net/skaha/astroml").image == ASTROML
    # canfar's quirk: two parts always get the default registry.
    assert spec(image="myreg.org/img").image == "images.canfar.net/myreg.org/img:latest"
    for bad in ("astroml", "a/b/c/d", "a//b", "skaha/astro ml"):
        with pytest.raises(ValidationError):
            spec(image=bad)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"cores": 0}, "cores"),
        ({"cores": 257}, "cores"),
        ({"ram": 0}, "ram"),
        ({"ram": 513}, "ram"),
        ({"gpus": 0}, "gpus"),
        ({"gpus": 29}, "gpus"),
        ({"replicas": 0}, "replicas"),
        ({"replicas": 257}, "replicas"),
        ({"cores": "4"}, "cores"),
        ({"cores": True}, "cores"),
        ({"cores": 2.5}, "cores"),
        ({"kind": "laptop"}, "kind"),
        ({"colour": "red"}, "colour"),
        ({"name": "bad_name"}, "name"),
        ({"name": "-x"}, "name"),
        ({"name": "x-"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"name": 12}, "name"),
        ({"name": "a" * 62, "replicas": 10}, "name"),
        ({"env": {"A": "x=y"}}, "'='"),
        ({"env": {"A=B": "x"}}, "'='"),
        ({"env": {"A": ""}}, "empty"),
        ({"env": {"A": True}}, "text or a number"),
        ({"env": ["A=1"]}, "mapping"),
        ({"args": ["Hello, World!"]}, "split"),
        ({"args": ["a", ""]}, "split"),
        ({"args": "a  b"}, "double"),
        ({"args": " a"}, "leading"),
        ({"args": ""}, "leading"),
        ({"args": [1, 2]}, "list of strings"),
        ({"cmd": "python -u"}, "one program"),
        ({"kind": "notebook", "cmd": "echo"}, "only for headless"),
        ({"kind": "notebook", "env": {"A": "1"}}, "only for headless"),
        ({"kind": "desktop", "replicas": 2}, "one replica"),
        ({"kind": "firefly", "replicas": 3}, "one replica"),
        ({"registry": {"username": "bob"}}, "secret"),
        ({"registry": {"username": "bob", "secret": "a:b"}}, "':'"),
        ({"registry": {"username": "b:ob", "secret": "x"}}, "':'"),
        ({"registry": {"username": "bob", "secret": "x", "url": "y"}}, "url"),
    ],
)
def test_spec_refusals(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        spec(**fields)
    assert words in str(info.value)


def test_spec_accepts_what_the_server_keeps() -> None:
    s = spec(
        name="My-Job-1",
        cmd="python3",
        args="/arc/home/x.py --flag 1",
        env={"FOO": "bar", "N": 5, "F": 1.5},
        cores=2,
        ram=8,
        gpus=1,
    )
    assert s.args_text == "/arc/home/x.py --flag 1"
    assert s.env == {"FOO": "bar", "N": "5", "F": "1.5"}
    assert spec(args=["a", "b"]).args_text == "a b"
    assert spec(name="a" * 61, replicas=9).names()[-1] == "a" * 61 + "-9"
    assert spec(kind="notebook", env={}).kind == "notebook"  # empty env is no env (canfar)


def test_create_params_match_canfar_on_the_wire() -> None:
    """skaha-api.md §5 'Verified request' (without the env value the server would drop)."""
    s = SessionSpec(
        name="test",
        image="skaha/terminal:1.1.1",
        cores=2,
        ram=8,
        kind="headless",
        cmd="python3",
        args="/arc/home/x.py --flag 1",
        env={"FOO": "bar"},
        replicas=2,
    )
    first, second = s.create_params()
    assert urlencode(first) == (
        "name=test-1&image=images.canfar.net%2Fskaha%2Fterminal%3A1.1.1&cores=2&ram=8"
        "&type=headless&cmd=python3&args=%2Farc%2Fhome%2Fx.py+--flag+1&env=FOO%3Dbar"
        "&env=REPLICA_ID%3D1&env=REPLICA_COUNT%3D2"
    )
    assert ("name", "test-2") in second
    assert ("env", "REPLICA_ID=2") in second
    one = SessionSpec(name="nb", image="skaha/notebook:1", kind="notebook").create_params()
    assert urlencode(one[0]) == (
        "name=nb&image=images.canfar.net%2Fskaha%2Fnotebook%3A1"
        "&type=notebook&env=REPLICA_ID%3D1&env=REPLICA_COUNT%3D1"
    )
    # REPLICA_* come last and override a user's variable of the same name.
    over = spec(env={"REPLICA_ID": "9", "X": "1"}).create_params()[0]
    assert [v for k, v in over if k == "env"] == ["REPLICA_ID=1", "X=1", "REPLICA_COUNT=1"]


def test_registry_header_and_no_secret_in_reprs() -> None:
    s = spec(registry={"username": "bob", "secret": "s3cret"})
    assert s.registry is not None
    assert s.registry.header() == "Ym9iOnMzY3JldA=="  # verified value, skaha-api.md §9
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "s3cret" not in text
    with pytest.raises(ValidationError) as info:
        spec(registry={"username": "bob", "secret": "a:" + SECRET})
    assert SECRET not in str(info.value.errors(include_input=False))


# -- Session: what the server returns -------------------------------------------------------


def test_session_model_is_tolerant() -> None:
    legacy = {
        "id": "abc12345",
        "userid": "alice",
        "runAsUID": "<none>",
        "appid": "<none>",
        "type": "notebook",
        "status": "Running",
        "name": "nb",
        "startTime": "2025-04-10T15:45Z",
        "expiryTime": None,
        "connectURL": "",
        "requestedRAM": "16G",
        "supplementalGroups": ["34241", 7, "x"],
        "isFixedResources": "true",
        "gpuUtilization": "<none>",
        "coresInUse": "0m",
        "somethingNew": {"a": 1},
    }
    s = Session.from_json(legacy)
    assert s.run_as_uid is None
    assert s.appid is None
    assert s.connect_url is None
    assert s.start_time is not None
    assert (s.start_time.minute, s.start_time.second) == (45, 0)
    assert s.expiry_time is None
    assert s.gpu_utilization is None
    assert s.supplemental_groups == [34241, 7]
    assert s.is_fixed_resources is True
    assert s.requested_ram == "16G"
    assert s.model_extra == {"coresInUse": "0m", "somethingNew": {"a": 1}}
    assert s.raw == legacy
    bare = Session.from_json({})
    assert (bare.id, bare.kind, bare.status, bare.name) == ("Unknown", None, None, None)
    assert Session.from_json({"id": "a", "startTime": "yesterday"}).start_time is None


def test_api_base() -> None:
    assert api_base("https://ws-uv.canfar.net/skaha") == "https://ws-uv.canfar.net/skaha/v1"
    assert api_base("https://ws-uv.canfar.net/skaha/v1/") == "https://ws-uv.canfar.net/skaha/v1"
    assert api_base("http://h/skaha/v2") == "http://h/skaha/v2"


# -- against the emulator ------------------------------------------------------------------------


async def test_create_list_info_logs_events_destroy(skaha: SkahaClient) -> None:
    launch = await skaha.create(spec(name="hello", cmd="echo", args="Hello, World!"))
    assert launch.ok
    assert launch.names == ["hello"]
    [sid] = launch.ids
    assert sid in {s.id for s in await skaha.list()}
    done = await wait_done(skaha, sid)
    assert (done.status, done.kind, done.name, done.image) == (
        "Completed",
        "headless",
        "hello",
        TERMINAL,
    )
    assert done.start_time is not None
    assert done.raw["id"] == sid
    assert await skaha.logs(sid) == b"Hello, World!\n"
    assert "Started" in await skaha.events(sid)
    assert [s.id for s in await skaha.list(kind="headless", status="Completed")] == [sid]
    assert await skaha.list(kind="notebook") == []
    await skaha.destroy(sid)
    with pytest.raises(errors.NotFound):
        await skaha.info(sid)
    assert await skaha.logs(sid) == b""  # the server's quirk: unknown id → empty logs
    await skaha.destroy(sid)  # unknown id: still 200


async def test_replicas_launch_concurrently_with_their_replica_id(skaha: SkahaClient) -> None:
    launch = await skaha.create(
        spec(name="rep", cmd="printenv", args=["REPLICA_ID", "REPLICA_COUNT"], replicas=3)
    )
    assert launch.ok
    assert launch.names == ["rep-1", "rep-2", "rep-3"]
    assert len(set(launch.ids)) == 3
    for i, sid in enumerate(launch.ids, start=1):
        assert (await wait_done(skaha, sid)).name == f"rep-{i}"
        assert await skaha.logs(sid) == f"{i}\n3\n".encode()


async def test_flexible_and_fixed_notebooks_and_renew(skaha: SkahaClient) -> None:
    flex = (await skaha.create(spec(name="my-notebook", image=ASTROML, kind="notebook"))).ids
    fixed = (
        await skaha.create(spec(name="my-notebook", image=ASTROML, kind="notebook", cores=2, ram=4))
    ).ids
    a, b = await skaha.info(flex[0]), await skaha.info(fixed[0])
    assert (a.is_fixed_resources, b.is_fixed_resources) == (False, True)
    assert a.requested_ram is None
    assert b.requested_cpu_cores == "2"

    async def started() -> bool:
        return (await skaha.info(flex[0])).status == "Running"

    await until(started)
    assert (await skaha.info(flex[0])).connect_url
    await skaha.renew(flex[0])
    with pytest.raises(errors.InvalidArgument, match="No active job"):
        await skaha.renew("zzzzzzzz")


async def test_platform_documents(skaha: SkahaClient) -> None:
    images = await skaha.images()
    assert {"id", "types", "digest"} <= set(images[0])
    assert all("notebook" in i["types"] for i in await skaha.images("notebook"))
    context = await skaha.context()
    assert {"cores", "memoryGB", "gpus"} <= set(context)
    assert {"cores", "ram"} <= set(await skaha.stats())


async def test_server_refusals_map_to_errors(skaha: SkahaClient, emulator: Emulator) -> None:
    bad = await skaha.create(spec(cores=200))
    [exc] = bad.failures.values()
    assert isinstance(exc, errors.InvalidArgument)
    assert "Invalid value for 'cores': 200" in exc.message
    assert "java.lang" not in exc.message
    with pytest.raises(errors.NotFound):
        await skaha.events("zzzzzzzz")
    emulator.faults.plan = FaultPlan(fail_next=1, fail_status=403, path_prefix="/skaha")
    with pytest.raises(errors.PermissionDenied):
        await skaha.list()
    emulator.faults.plan = FaultPlan(fail_next=5, fail_status=503, path_prefix="/skaha")
    with pytest.raises(errors.Unavailable):
        await skaha.list()
    emulator.faults.reset()
    http = make_http(emulator, token="wrong")
    try:
        with pytest.raises(errors.AuthExpired):
            await SkahaClient(http, f"{BASE}/skaha").list()
    finally:
        await http.aclose()


async def test_interactive_limit_is_a_quota_and_a_partial_launch(skaha: SkahaClient) -> None:
    launch = await skaha.create(spec(name="nb", image=ASTROML, kind="notebook", replicas=7))
    assert len(launch.ids) == 5
    assert sorted(launch.failures) == sorted(set(range(1, 8)) - set(launch.by_replica))
    assert all(isinstance(e, errors.QuotaExceeded) for e in launch.failures.values())


async def test_private_registry_credentials(
    skaha: SkahaClient, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    refused = await skaha.create(spec(name="private-job", image=PRIVATE, cmd="true"))
    [exc] = refused.failures.values()
    assert isinstance(exc, errors.PermissionDenied)
    private = spec(
        name="private-job",
        image=PRIVATE,
        cmd="true",
        registry={"username": "bob", "secret": SECRET},
    )
    [sid] = (await skaha.create(private)).ids
    row = emulator.services[0].db.get(sid)
    assert row is not None
    assert row.registry_user == "bob"
    configured = SessionSpec(name="cfg", image=PRIVATE, cmd="true")
    auth = RegistryAuth.model_validate({"username": "carol", "secret": SECRET})
    [sid2] = (await skaha.create(configured, auth)).ids
    row2 = emulator.services[0].db.get(sid2)
    assert row2 is not None
    assert row2.registry_user == "carol"
    header = base64.b64encode(f"bob:{SECRET}".encode()).decode()
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert header not in record.getMessage()


async def test_secrets_are_masked_in_server_messages(emulator: Emulator) -> None:
    """A server that echoes the credential back: the error never carries it."""
    header = base64.b64encode(f"bob:{SECRET}".encode()).decode()

    def echo(request: httpx2.Request) -> httpx2.Response:
        got = request.headers.get("x-skaha-registry-auth", "")
        return httpx2.Response(400, text=f"bad auth {got} for {SECRET}")

    http = HTTP(make_client(transport=httpx2.MockTransport(echo)), Credentials(token=TOKEN))
    try:
        client = SkahaClient(http, f"{BASE}/skaha/v1")
        launch = await client.create(spec(registry={"username": "bob", "secret": SECRET}))
    finally:
        await http.aclose()
    [exc] = launch.failures.values()
    assert SECRET not in str(exc)
    assert header not in str(exc)
    assert "***" in str(exc)


async def test_destroy_with_prefix_kind_status(skaha: SkahaClient) -> None:
    ids = (await skaha.create(spec(name="test", cmd="true", replicas=2))).ids
    keep = (await skaha.create(spec(name="other", cmd="true"))).ids
    slow = (await skaha.create(spec(name="test-slow", cmd="sleep", args="30"))).ids
    for sid in ids + keep:
        await wait_done(skaha, sid)
    result = await skaha.destroy_with("test-", kind="headless", status="Completed")
    assert result == dict.fromkeys(ids, True)
    left = {s.id for s in await skaha.list()}
    assert set(keep + slow) <= left
    assert not set(ids) & left
    assert await skaha.destroy_with("^other$") == dict.fromkeys(keep, True)  # a regex
    with pytest.raises(errors.InvalidArgument):
        await skaha.destroy_with("(")
    await skaha.destroy(slow[0])

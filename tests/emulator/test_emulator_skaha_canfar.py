"""CADC's own ``canfar`` client (library, sync and async, and CLI) against a live emulator.

Every call of the client examples (seed 000_12cc9604609c39b6) runs here. canfar is only
imported in subprocesses with a throw-away HOME (skaha-api.md §13), and the async client
(asyncio) runs in a subprocess since these tests run under trio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.emulator_util import LiveEmulator, clean_env

pytest.importorskip("canfar")

COMMON = textwrap.dedent("""
    import json, sys, time
    import httpx2, pydantic
    import canfar.sessions as cs
    from canfar.sessions import Session, AsyncSession
    from canfar.images import Images
    from canfar.context import Context
    from canfar.models.config import Configuration
    from canfar.models.registry import ContainerRegistry

    URL, TOKEN = sys.argv[1] + "/skaha/v1", sys.argv[2]
    ASTROML = "images.canfar.net/skaha/astroml:latest"
    PRIVATE = "images.canfar.net/your/private-image:latest"
    opened = []
    cs.open_new_tab = opened.append  # Session.connect opens a browser: record instead
    out = {}

    def kw(**extra):
        return dict(url=URL, token=TOKEN, **extra)
""")

SYNC = COMMON + textwrap.dedent("""
    session = Session(**kw())
    out["flex"] = session.create(name="my-notebook", image=ASTROML, kind="notebook")
    out["fixed"] = session.create(name="my-notebook", image=ASTROML, kind="notebook",
                                  cores=2, ram=4)
    try:  # the seed passes args as a list; canfar 1.5.2 itself refuses that
        session.create(name="my-headless", image=ASTROML, kind="headless", cmd="echo",
                       args=["Hello, World!"])
        out["list_args"] = "sent"
    except pydantic.ValidationError:
        out["list_args"] = "refused by the client"
    out["hello"] = session.create(name="my-headless", image=ASTROML, kind="headless",
                                  cmd="echo", args="Hello, World!")
    out["replicas"] = session.create(name="rep", image="skaha/terminal:1.1.1",
                                     kind="headless", cmd="printenv", args="REPLICA_ID",
                                     replicas=3)
    cfg = Configuration(registry=ContainerRegistry(username="username", secret="CLI_SECRET"))
    out["private"] = Session(**kw(config=cfg)).create(
        name="private-job", image=PRIVATE, kind="headless", cmd="python3", args="-V")
    out["private_no_auth"] = session.create(name="private-job", image=PRIVATE,
                                            kind="headless", cmd="true")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = session.fetch(kind="headless", status="Completed")
        running = session.fetch(kind="notebook", status="Running")
        if len(done) >= 5 and len(running) >= 2:
            break
        time.sleep(0.2)
    out["completed"] = sorted(s["name"] for s in done)
    out["running_notebooks"] = sorted(s["id"] for s in running)
    out["succeeded"] = session.fetch(kind="headless", status="Succeeded")
    out["all"] = len(session.fetch())
    session.connect([s["id"] for s in running])
    out["opened"] = opened
    out["pages"] = [httpx2.get(u).status_code for u in opened]
    out["replica_logs"] = session.logs(out["replicas"])
    out["hello_logs"] = session.logs(out["hello"])
    out["private_logs"] = session.logs(out["private"])
    out["logs_verbose"] = session.logs(out["hello"], verbose=True)
    out["info"] = session.info(out["flex"] + out["fixed"])
    out["events"] = session.events(out["hello"])
    out["events_verbose"] = session.events(out["hello"], verbose=True)
    out["stats"] = session.stats()
    out["renew"] = session.renew(out["flex"] + out["hello"])
    out["destroy_with_seed"] = session.destroy_with(prefix="test-", kind="headless",
                                                    status="Succeeded")
    out["destroy_with"] = session.destroy_with(prefix="rep")
    out["destroy"] = session.destroy(out["flex"] + out["fixed"])
    out["left"] = sorted(s["name"] for s in session.fetch())
    images = Images(**kw())
    out["images"] = images.fetch()
    out["headless_images"] = images.fetch(kind="headless")
    out["details"] = [i.id for i in images.details()]
    out["context"] = Context(**kw()).resources()
    print(json.dumps(out))
""")

ASYNC = COMMON + textwrap.dedent("""
    import asyncio

    async def main():
        session = AsyncSession(**kw())
        out["flex"] = await session.create(name="my-notebook", image=ASTROML, kind="notebook")
        out["headless"] = await session.create(name="my-headless", image=ASTROML,
                                               kind="headless", cmd="echo",
                                               args="Hello, World!")
        out["replicas"] = await session.create(name="arep", image=ASTROML, kind="headless",
                                               cmd="printenv", args="REPLICA_ID", replicas=3)
        cfg = Configuration(registry=ContainerRegistry(username="username",
                                                       secret="CLI_SECRET"))
        out["private"] = await AsyncSession(**kw(config=cfg)).create(
            name="private-job", image=PRIVATE, kind="headless", cmd="python3",
            args="/app/run.py")
        with AsyncSession(**kw()) as s2:  # the seed's (sync) form of the context manager
            out["all"] = len(await s2.fetch())
        deadline = time.monotonic() + 20
        async with AsyncSession(**kw()) as s3:
            while time.monotonic() < deadline:
                running = await s3.fetch(kind="notebook", status="Running")
                done = await s3.fetch(kind="headless", status="Completed")
                if running and len(done) >= 4:
                    break
                await asyncio.sleep(0.2)
            try:  # the seed passes the session dicts; canfar 1.5.2 wants ids
                await s3.connect(running)
                out["connect_seed"] = "ok"
            except TypeError:  # its error path keys a dict by the (unhashable) session
                out["connect_seed"] = "client TypeError"
            out["opened_seed"] = list(opened)
            opened.clear()
            await s3.connect([s["id"] for s in running])
            out["succeeded"] = await s3.fetch(kind="headless", status="Succeeded")
        out["opened"] = opened
        out["private_status"] = (await session.info(out["private"]))[0]["status"]
        async with AsyncSession(**kw()) as s4:
            out["info"] = await s4.info(out["flex"])
            out["events"] = await s4.events(out["headless"], verbose=True)
            out["logs"] = await s4.logs(out["replicas"])
            out["logs_verbose"] = await s4.logs(out["headless"], verbose=True)
            out["renew"] = await s4.renew(out["flex"])
            out["destroy_with_seed"] = await s4.destroy_with(prefix="test-", kind="headless",
                                                             status="Succeeded")
            out["destroy_with"] = await s4.destroy_with(prefix="arep")
            out["destroy"] = await s4.destroy(out["flex"] + out["headless"])
            out["left"] = sorted(s["name"] for s in await s4.fetch())
        print(json.dumps(out))

    asyncio.run(main())
""")


def run_script(live: LiveEmulator, tmp_path: Path, text: str) -> dict[str, Any]:
    script = tmp_path / "client.py"
    script.write_text(text)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, str(script), live.url, live.token],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_sync_session_client(live: LiveEmulator, tmp_path: Path) -> None:
    out = run_script(live, tmp_path, SYNC)
    assert len(out["flex"]) == len(out["fixed"]) == 1
    assert out["list_args"] == "refused by the client"
    assert len(out["replicas"]) == 3
    assert out["replica_logs"] == {sid: f"{i}\n" for i, sid in enumerate(out["replicas"], 1)}
    assert list(out["hello_logs"].values()) == ["Hello, World!\n"]
    assert next(iter(out["private_logs"].values())).startswith("Python 3")
    assert out["private_no_auth"] == []  # 400 without X-Skaha-Registry-Auth
    assert out["completed"] == ["my-headless", "private-job", "rep-1", "rep-2", "rep-3"]
    assert out["running_notebooks"] == sorted(out["flex"] + out["fixed"])
    assert out["succeeded"] == []  # current servers say Completed
    assert out["all"] == 7
    assert len(out["opened"]) == 2
    assert all("/skaha/session-ui/notebook/" in u for u in out["opened"])
    assert out["pages"] == [200, 200]
    assert out["logs_verbose"] is None
    assert out["events_verbose"] is None
    fixed = next(i for i in out["info"] if i["id"] == out["fixed"][0])
    assert (fixed["requestedRAM"], fixed["requestedCPUCores"]) == ("4.29", "2")
    assert "Job completed" in next(iter(out["events"][0].values()))
    assert set(out["stats"]) == {"cores", "ram"}
    assert out["renew"] == {out["flex"][0]: True, out["hello"][0]: False}  # finished: 400
    assert out["destroy_with_seed"] == {}
    assert out["destroy_with"] == {sid: True for sid in out["replicas"]}
    assert out["destroy"] == {sid: True for sid in out["flex"] + out["fixed"]}
    assert out["left"] == ["my-headless", "private-job"]
    assert "images.canfar.net/skaha/terminal:1.1.1" in out["headless_images"]
    assert "images.canfar.net/skaha/desktop:latest" not in out["headless_images"]
    assert out["details"] == out["images"]
    assert out["context"]["maxInteractiveSessions"] == "5"


def test_async_session_client(live: LiveEmulator, tmp_path: Path) -> None:
    out = run_script(live, tmp_path, ASYNC)
    assert out["all"] == 6
    assert out["logs"] == {sid: f"{i}\n" for i, sid in enumerate(out["replicas"], 1)}
    assert out["private_status"] in ("Pending", "Running", "Completed", "Failed")
    assert out["connect_seed"] == "client TypeError"
    assert out["opened_seed"] == []
    assert len(out["opened"]) == 1
    assert out["opened"][0].endswith(f"?token={out['flex'][0]}")
    assert out["succeeded"] == []
    assert out["info"][0]["type"] == "notebook"
    assert out["events"] is None
    assert out["logs_verbose"] is None
    assert out["renew"] == {out["flex"][0]: True}
    assert out["destroy_with_seed"] == {}
    assert out["destroy_with"] == {sid: True for sid in out["replicas"]}
    assert out["destroy"] == {sid: True for sid in out["flex"] + out["headless"]}
    assert out["left"] == ["private-job"]


def _cli(live: LiveEmulator, home: Path, *commands: list[str]) -> list[str]:
    """Run canfar CLI commands concurrently (each one is a ~1 s Python start-up)."""
    env = clean_env(home) | {
        "CANFAR_URL": f"{live.url}/skaha/v1",
        "CANFAR_TOKEN": live.token,
        "COLUMNS": "200",
    }
    canfar = str(Path(sys.executable).with_name("canfar"))
    procs = [
        subprocess.Popen(
            [canfar, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for args in commands
    ]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        outputs.append(out)
    return outputs


def wait_completed(live: LiveEmulator, ids: list[str]) -> None:
    headers = {"Authorization": f"Bearer {live.token}"}
    deadline = time.monotonic() + 20
    with httpx2.Client(base_url=f"{live.url}/skaha/v1", headers=headers) as client:
        while time.monotonic() < deadline:
            if all(client.get(f"session/{i}").json()["status"] == "Completed" for i in ids):
                return
            time.sleep(0.1)
    raise AssertionError(f"sessions {ids} did not complete")


def test_canfar_cli(live: LiveEmulator, tmp_path: Path) -> None:
    """``canfar create``, ``ps``, ``logs``, ``delete`` (``create`` needs typer < 0.29, §15).

    Each CLI run costs a second of CPU, so the other commands (info, events, …) are
    left to the library tests above, which make the same requests.
    """
    [created] = _cli(
        live,
        tmp_path,
        [
            "create",
            "headless",
            "skaha/terminal:1.1.1",
            "-n",
            "clitest",
            "-r",
            "2",
            "-e",
            "A=1",
            "--",
            "printenv",
            "REPLICA_ID",
            "A",
        ],
    )
    ids = [line.split("- ", 1)[1].strip() for line in created.splitlines() if "  - " in line]
    assert len(ids) == 2, created
    wait_completed(live, ids)
    shown, logs = _cli(live, tmp_path, ["ps", "-a", "-o", "json"], ["logs", *ids])
    listed = json.loads(shown[shown.index("[") :])  # after the "@<server>" banner, if any
    assert sorted(s["name"] for s in listed) == ["clitest-1", "clitest-2"]
    assert {s["status"] for s in listed} == {"Completed"}
    assert "1\n1\n" in logs
    assert "2\n1\n" in logs
    [deleted] = _cli(live, tmp_path, ["delete", "-f", *ids])
    assert "True" in deleted
    with httpx2.Client(headers={"Authorization": f"Bearer {live.token}"}) as client:
        assert client.get(f"{live.url}/skaha/v1/session").json() == []

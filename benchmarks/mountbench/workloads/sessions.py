"""Sessions: launching replicas through ``sessions/`` against the ``canfar`` client, and
reading the tree within the TTL."""

from __future__ import annotations

import json
import os
from functools import partial
from typing import Any

from ..rig import Bench
from ..tools import TOKEN, USER, Failed, log, on_mount, py_timed, run, run_python

# Timed inside the child, from the call (no process start-up, no import).
CANFAR_CREATE = r"""
import json, sys, time
from canfar.sessions import AsyncSession, Session
url, token, mode, name, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
spec = dict(name=name, image=sys.argv[6], kind="headless", cmd="true", replicas=n)
if mode == "sync":
    session = Session(url=url, token=token)
    t0 = time.perf_counter()
    ids = session.create(**spec)
else:
    import asyncio
    async def main():
        async with AsyncSession(url=url, token=token) as session:
            t0 = time.perf_counter()
            ids = await session.create(**spec)
            return ids, t0
    ids, t0 = asyncio.run(main())
print(json.dumps({"seconds": time.perf_counter() - t0, "ids": len(ids)}))
"""
SESSION_IMAGE = "images.canfar.net/skaha/terminal:1.1.1"
REPLICAS = 10


def canfar_create(
    b: Bench, row: str, rtt: int, mode: str, name: str, replicas: int, timeout: float = 120
) -> None:
    """The ``canfar`` client's ``create(replicas=N)`` (sync or async), timed inside its
    process, recorded in ``row`` as ``canfar <mode>``."""
    assert b.emu is not None
    home = b.new_dir("canfar-home")
    out = run_python(
        CANFAR_CREATE,
        f"{b.emu.url}/skaha/v1",
        TOKEN,
        mode,
        name,
        str(replicas),
        SESSION_IMAGE,
        name=f"canfar {mode}",
        timeout=timeout,
        env=dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config")),
    )
    got = json.loads(out.strip().splitlines()[-1])
    if got["ids"] != replicas:
        raise Failed(f"canfar {mode}: {got['ids']} of {replicas} replicas")
    b.record(row, rtt, f"canfar {mode}", got["seconds"])


def w_sessions(b: Bench, rtt: int) -> None:
    """Launch 10 headless replicas from one spec (``cp spec sessions/``) against the
    ``canfar`` client's ``create(replicas=10)`` (sync and async, timed inside the
    process); then ``ls sessions/`` and ``cat sessions/<id>/info`` again within the TTL."""

    def fs(run_no: int) -> None:
        spec = b.work / f"bench-{rtt}-{run_no}.yaml"
        spec.write_text(
            f"name: bench-{rtt}-{run_no}\nimage: {SESSION_IMAGE}\n"
            f'kind: headless\ncmd: "true"\nreplicas: {REPLICAS}\n'
        )
        with b.mounted("canfarfs", "arc") as (m, _):
            sessions = m.path / "sessions"
            on_mount(["ls", str(sessions)])
            with b.counting() as c:
                sec = run(["cp", str(spec), str(sessions / spec.name)], timeout=120)
            ids = (sessions / f"{spec.name}.ids").read_text().split()
            if len(ids) != REPLICAS:
                raise Failed(f"{len(ids)} of {REPLICAS} replicas launched")
            b.record("sessions_launch", rtt, "canfarfs", sec, **c)
            # timed inside a child (no process start-up): the file system's part
            on_mount(["ls", str(sessions)])
            with b.counting() as c:
                got = py_timed(["listdir", str(sessions)], timeout=60)
            b.record("sessions_ls", rtt, "canfarfs", got["seconds"], entries=got["entries"], **c)
            info = sessions / ids[0] / "info"
            on_mount(["cat", str(info)])
            with b.counting() as c:
                got = py_timed(["cat", str(info)], timeout=60)
            b.record("sessions_info", rtt, "canfarfs", got["seconds"], bytes=got["bytes"], **c)

    def by_canfar(mode: str, run_no: int) -> None:
        canfar_create(b, "sessions_launch", rtt, mode, f"cf-{mode}-{rtt}-{run_no}", REPLICAS)

    for i in range(b.args.runs):
        log(f"  sessions @{rtt} ms run {i + 1}")
        b.attempt("sessions_launch", rtt, "canfarfs", partial(fs, i))
        b.attempt("sessions_launch", rtt, "canfar sync", partial(by_canfar, "sync", i))
        b.attempt("sessions_launch", rtt, "canfar async", partial(by_canfar, "async", i))


ARRAY_REPLICAS = 50


def w_arrays(b: Bench, rtt: int) -> None:
    """A job array of 50 replicas over ``10 × --files`` inputs (10,000 by default): the
    time from ``cp spec sessions/`` (the close launches) to all ids known, which covers
    the glob's listing, the 50 manifests written durably, and the 50 creates; beside the
    ``canfar`` client's ``create(replicas=50)`` (50 creates, no inputs shared out)."""
    assert b.emu is not None
    emu = b.emu
    count = 10 * b.args.files
    # Seeded straight into the emulator's arc tree (arc is a directory tree there, as
    # cavern is POSIX): 10,000 uploads would take longer than the measurement.
    inputs = emu.root / "arc" / "home" / USER / "array-inputs"
    if not inputs.is_dir():
        inputs.mkdir(parents=True)
        for i in range(count):
            (inputs / f"in{i:05}.fits").write_bytes(b"x")

    def fs(run_no: int) -> None:
        name = f"array-{rtt}-{run_no}"
        spec = b.work / f"{name}.yaml"
        spec.write_text(
            f"name: {name}\nimage: {SESSION_IMAGE}\nkind: headless\ncmd: /bin/true\n"
            f"replicas: {ARRAY_REPLICAS}\ninputs: /arc/home/{USER}/array-inputs/*.fits\n"
        )
        with b.mounted("canfarfs", "arc") as (m, _):
            sessions = m.path / "sessions"
            on_mount(["ls", str(sessions)])
            with b.counting() as c:
                sec = run(["cp", str(spec), str(sessions / spec.name)], timeout=300)
            ids = (sessions / f"{spec.name}.ids").read_text().split()
            if len(ids) != ARRAY_REPLICAS:
                raise Failed(f"{len(ids)} of {ARRAY_REPLICAS} replicas launched")
            status = (sessions / "arrays" / name / "status").read_text().splitlines()[0]
            if not status.startswith(f"{ARRAY_REPLICAS} total"):
                raise Failed(f"arrays/{name}/status reads {status!r}")
            b.record("sessions_array_launch", rtt, "canfarfs", sec, inputs=count, **c)

    def by_canfar(mode: str, run_no: int) -> None:
        name = f"cfa-{mode}-{rtt}-{run_no}"
        canfar_create(b, "sessions_array_launch", rtt, mode, name, ARRAY_REPLICAS, timeout=300)

    for i in range(b.args.runs):
        log(f"  job array @{rtt} ms run {i + 1}: {count} inputs over {ARRAY_REPLICAS}")
        b.attempt("sessions_array_launch", rtt, "canfarfs", partial(fs, i))
        b.attempt("sessions_array_launch", rtt, "canfar sync", partial(by_canfar, "sync", i))
        b.attempt("sessions_array_launch", rtt, "canfar async", partial(by_canfar, "async", i))


def judge_array(
    rtt: int, med: dict[str, float | None], ratios: dict[str, float], cells: dict[str, Any]
) -> tuple[str, str]:
    """Information, not a goal: the array's launch beside 50 bare creates."""
    extra = cells.get("canfarfs", {}).get("extra") or [{}]
    count = extra[0].get("inputs")
    why = ", ".join(f"{ratios[t]:.2f}×{t}" for t in ("canfar sync", "canfar async") if t in ratios)
    return "info", f"{why}; {count} inputs" if count else why

"""Child processes the benchmark times: commands, curl, timed reads and HTTP in Python.

Every child is bounded by a time-out (a hung mount or server cannot hang the benchmark)
and every failure is a :class:`Failed`, which the run records against the tool and goes
on.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN = "bench-token"  # the throw-away emulator's only credential
USER = "alice"
AUTH = f"Authorization: Bearer {TOKEN}"
BENCHMARKS = Path(__file__).resolve().parents[1]  # benchmarks/
REPO = BENCHMARKS.parent
CURL_W = "%{http_code} %{size_download} %{size_upload} %{time_starttransfer} %{time_total}"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Failed(Exception):
    """One tool's measurement failed; recorded, and the benchmark goes on."""


def mb_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


# -- children -------------------------------------------------------------------------


def _child(
    cmd: list[str],
    *,
    name: str,
    timeout: float,
    stdout: bool = True,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> bytes:
    """Run ``cmd`` to its end; its standard output (``stdout=False``: discarded)."""
    try:
        r = subprocess.run(
            cmd,
            input=stdin,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"timeout after {timeout:.0f} s: {name}") from exc
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise Failed(f"{name} exit {r.returncode}: {err[-1] if err else ''}")
    return r.stdout or b""


def run(
    cmd: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
) -> float:
    """Run a command with its output discarded; its wall time in seconds."""
    t0 = time.perf_counter()
    _child(
        cmd, name=Path(cmd[0]).name, timeout=timeout, stdout=False, stdin=stdin, env=env, cwd=cwd
    )
    return time.perf_counter() - t0


def run_python(
    snippet: str, *args: str, name: str, timeout: float, env: dict[str, str] | None = None
) -> str:
    """Run a Python snippet in a child (``sys.argv[1:]`` = ``args``); its output."""
    out = _child([sys.executable, "-c", snippet, *args], name=name, timeout=timeout, env=env)
    return out.decode()


def on_mount(cmd: list[str], timeout: float = 60) -> str:
    """A coreutils command on a mounted path, bounded (a hung daemon cannot hang us)."""
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"{' '.join(cmd[:2])}: no answer from the mount in {timeout:.0f} s") from exc
    if r.returncode != 0:
        raise Failed(f"{cmd[0]} exit {r.returncode}: {r.stderr.decode(errors='replace')[:200]}")
    return r.stdout.decode(errors="replace")


def look_up(path: Path, timeout: float = 60) -> None:
    """``stat`` a path on a mount, so that its lookup is done before the clock starts."""
    on_mount(["stat", "-t", str(path)], timeout)


# -- timed in a child: file operations and http.client ----------------------------------

PY_TIMED = r"""
import hashlib, json, os, sys, time
mode, path = sys.argv[1], sys.argv[2]
if mode == "listdir":  # what `ls` does: open the directory, read every entry
    t0 = time.perf_counter()
    names = os.listdir(path)
    print(json.dumps({"seconds": time.perf_counter() - t0, "entries": len(names)}))
elif mode == "cat":
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        data = f.read()
    print(json.dumps({"seconds": time.perf_counter() - t0, "bytes": len(data)}))
elif mode == "ttfb":
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    b = os.read(fd, 1)
    t1 = time.perf_counter()
    os.close(fd)
    print(json.dumps({"seconds": t1 - t0, "bytes": len(b)}))
else:
    size = int(sys.argv[3])
    offsets = [int(x) for x in open(sys.argv[4]).read().split()]
    chunks = []
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    for off in offsets:
        chunks.append(os.pread(fd, size, off))
    os.close(fd)
    t1 = time.perf_counter()
    md5 = hashlib.md5()
    for c in chunks:
        md5.update(c)
    print(json.dumps({"seconds": t1 - t0, "bytes": sum(map(len, chunks)),
                      "md5": md5.hexdigest()}))
"""


def py_timed(args: list[str], timeout: float) -> dict[str, Any]:
    """A timed file operation (``PY_TIMED``'s modes) in a child: its JSON report."""
    got: dict[str, Any] = json.loads(run_python(PY_TIMED, *args, name="reader", timeout=timeout))
    return got


# A GET with http.client, timed from the request: the whole body ("body") or its first
# byte ("first"), after at most two redirects (vault answers with one to its storage).
PY_HTTP_GET = r"""
import http.client, sys, time
from urllib.parse import urlsplit
url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
for _ in range(3):
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", u.path + (f"?{u.query}" if u.query else ""),
                 headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse()
    if r.status in (302, 303, 307):
        url = r.getheader("Location")
        conn.close()
        continue
    break
n = 0
if mode == "first":
    n = len(r.read(1))
else:
    while True:
        piece = r.read1(1 << 20)
        if not piece:
            break
        n += len(piece)
print(time.perf_counter() - t0, n)
"""


def http_get(url: str, *, first_byte: bool, timeout: float) -> tuple[float, int]:
    """(seconds, bytes) of a GET by ``http.client`` in a child: the body, or its first
    byte (curl's ``time_starttransfer`` is the first byte of the headers)."""
    out = run_python(
        PY_HTTP_GET,
        url,
        TOKEN,
        "first" if first_byte else "body",
        name="http.client",
        timeout=timeout,
    )
    sec, n = out.split()
    return float(sec), int(n)


# -- curl -------------------------------------------------------------------------------


def curl_args(
    url: str,
    *,
    output: Path | str | None = None,
    write_out: str | None = None,
    follow: bool = False,
    token: bool = True,
    upload: Path | None = None,
    method: str | None = None,
) -> list[str]:
    """A curl command line (``output=None``: the body to standard output)."""
    cmd = ["curl", "-sS"]
    if output is not None:
        cmd += ["-o", str(output)]
    if write_out is not None:
        cmd += ["-w", write_out]
    if token:
        cmd += ["-H", AUTH]
    if follow:
        cmd.append("-L")
    if upload is not None:
        cmd += ["-T", str(upload)]
    if method:
        cmd += ["-X", method]
    cmd.append(url)
    return cmd


def curl_shell(url: str) -> str:
    """The GET as a shell command writing the body to its standard output."""
    return shlex.join(curl_args(url))


@dataclass
class CurlResult:
    status: int
    down: int
    up: int
    starttransfer: float
    total: float


def curl(
    url: str,
    *,
    output: Path | str = os.devnull,
    upload: Path | None = None,
    follow: bool = False,
    token: bool = True,
    timeout: float = 3600,
    method: str | None = None,
) -> CurlResult:
    """One transfer, timed by curl itself (``-w``: no process start-up)."""
    cmd = curl_args(
        url,
        output=output,
        write_out=CURL_W,
        follow=follow,
        token=token,
        upload=upload,
        method=method,
    )
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise Failed(f"curl: {exc}") from exc
    code, down, up, start, total = out.stdout.split()
    return CurlResult(int(code), int(float(down)), int(float(up)), float(start), float(total))


def curl_ttfb(url: str, follow: bool, timeout: float) -> float:
    """curl's time_starttransfer, stopping the download after the first byte."""
    cmd = curl_args(url, write_out="%{stderr}%{http_code} %{time_starttransfer}\n", follow=follow)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.read(1)
        proc.stdout.close()  # curl then stops with "failure writing output" (23)
        err = proc.stderr.read().decode()
        proc.wait(timeout)
    m = re.search(r"^(\d{3}) ([0-9.]+)$", err, re.MULTILINE)
    if not first or not m or m.group(1) != "200":
        raise Failed(f"curl first byte: {err.strip()!r}")
    return float(m.group(2))


def curl_batch(
    entries: list[dict[str, str]], workdir: Path, *, parallel: int = 0, timeout: float = 3600
) -> float:
    """Many transfers in one curl process (kept-alive connections); wall seconds."""
    cfg = workdir / f"curl-{time.monotonic_ns()}.cfg"
    lines: list[str] = []
    for i, entry in enumerate(entries):
        if i:
            lines.append("next")
        lines.append(f'header = "{AUTH}"')
        lines.append("fail")
        for key, value in entry.items():
            lines.append(f'{key} = "{value}"')
    cfg.write_text("\n".join(lines) + "\n")
    cmd = ["curl", "-sS", "-K", str(cfg)]
    if parallel:
        cmd[1:1] = ["-Z", "--parallel-max", str(parallel)]
    try:
        return run(cmd, timeout=timeout)
    finally:
        cfg.unlink()

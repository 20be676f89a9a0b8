#!/usr/bin/env python3
"""Is the emulator fast enough not to be what limits the mount's benchmarks?

Measures, with curl on loopback, against one ``canfarfs emulator`` subprocess:

* download of one file from ``python3 -m http.server`` (the baseline),
* the same bytes from arc's ``/arc/files/...`` and from vault (``curl -L`` follows the
  303 from ``/vault/files/...`` to the pre-authorised ``/minoc/...`` URL),
* a ``curl -T`` upload of the same file to arc's ``/arc/files/...``,
* the MD5 of the file on one core: the server hashes every uploaded byte, so this is
  the upload's floor (the "arc PUT / MD5" ratio shows how close the upload gets to it).

Targets: each emulator download ≥ 0.8× the baseline; the arc upload ≥ 0.8× the arc
download. Each measurement is run ``--runs`` times (interleaved, so drift hits all of
them alike); medians in MB/s (10^6 bytes per second) are printed as a table and written
as JSON (default ``benchmarks/results/emulator.json``). The script exits 0 once it has
measured, whether or not the targets are met (``--strict`` makes a miss exit 1).

    python benchmarks/bench_emulator.py [--size 1G] [--runs 3] [--json PATH] [--strict]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlsplit

from _common import human, parse_size

TOKEN = "bench-token"  # the throw-away emulator's only credential
USER = "alice"
TARGET_RATIO = 0.8
HTTPS_PUT = "ivo://ivoa.net/vospace/core#httpsput"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "emulator.json"
CURL_FORMAT = "%{http_code} %{size_download} %{size_upload} %{time_total}"


# -- processes ------------------------------------------------------------------------


@dataclass
class Server:
    """A subprocess serving HTTP on loopback; ``url`` is its base URL."""

    name: str
    proc: subprocess.Popen[str]
    url: str
    log: IO[str]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


def start_emulator(root: Path, log_path: Path) -> Server:
    log = log_path.open("w")
    cmd = [
        sys.executable,
        "-m",
        "canfarfs",
        "emulator",
        "--root",
        str(root),
        "--port",
        "0",
        "--user",
        USER,
        "--token",
        TOKEN,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        proc.wait()
        log.close()
        raise SystemExit(f"emulator did not start (first line {url!r}); see {log_path}")
    return Server("emulator", proc, url, log)


def start_http_server(directory: Path, log_path: Path) -> Server:
    """``python3 -m http.server`` on a free port (it prints the port it bound)."""
    log = log_path.open("w")
    python = shutil.which("python3") or sys.executable
    cmd = [
        python,
        "-u",
        "-m",
        "http.server",
        "0",
        "--bind",
        "127.0.0.1",
        "--directory",
        str(directory),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"port (\d+)", line)
    if not m:
        proc.kill()
        proc.wait()
        log.close()
        raise SystemExit(f"http.server did not start: {line!r}")
    return Server("http.server", proc, f"http://127.0.0.1:{m.group(1)}", log)


# -- transfers ------------------------------------------------------------------------


@dataclass
class Transfer:
    status: int
    nbytes: int
    seconds: float

    @property
    def mb_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def md5_floor(path: Path) -> Transfer:
    """How fast one core computes the MD5 of ``path`` (read from the page cache).

    The server must hash every uploaded byte (it stores and checks the MD5), and one
    stream's MD5 cannot be split across cores, so this bounds any upload's speed.
    """
    md5 = hashlib.md5()  # noqa: S324 - the protocol's checksum, measured, not security
    started = time.perf_counter()
    with path.open("rb", buffering=0) as f:
        while block := f.read(4 << 20):
            md5.update(block)
    return Transfer(200, path.stat().st_size, time.perf_counter() - started)


def curl(
    url: str, *, upload: Path | None = None, follow: bool = False, token: str | None = None
) -> Transfer:
    """One curl transfer; the time is curl's own ``time_total`` (no process start-up)."""
    cmd = ["curl", "-sS", "-o", os.devnull, "-w", CURL_FORMAT]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if follow:
        cmd.append("-L")
    if upload is not None:
        cmd += ["-T", str(upload)]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    code, down, up, total = out.stdout.split()
    nbytes = int(float(up)) if upload is not None else int(float(down))
    return Transfer(int(code), nbytes, float(total))


def vault_push_url(base: str, path: str) -> str:
    """Negotiate a push (parameter form of /synctrans) and return the minoc URL."""
    target = f"vos://cadc.nrc.ca~vault/{path}"
    query = (
        f"TARGET={quote(target, safe='')}&DIRECTION=pushToVoSpace"
        f"&PROTOCOL={quote(HTTPS_PUT, safe='')}"
    )
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(
            "POST",
            f"/vault/synctrans?{query}",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Length": "0"},
        )
        reply = conn.getresponse()
        reply.read()
        location = reply.getheader("Location")
        if reply.status != 303 or not location:
            raise SystemExit(f"vault negotiation failed: {reply.status}")
        return location
    finally:
        conn.close()


def stored_md5(base: str, service_path: str) -> str | None:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(
            "GET", f"/{service_path}?limit=0", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        reply = conn.getresponse()
        body = reply.read().decode()
    finally:
        conn.close()
    m = re.search(r'core#MD5"[^>]*>([0-9a-f]{32})<', body)
    return m.group(1) if m else None


def settle() -> None:
    """Write dirty pages back now, so one upload's writeback does not slow the next GET."""
    os.sync()
    time.sleep(0.5)


def make_payload(path: Path, size: int) -> str:
    """``size`` bytes (a random 1 MiB block repeated); returns the MD5 hex."""
    block = os.urandom(1 << 20)
    md5 = hashlib.md5()  # noqa: S324 - the protocol's checksum
    with path.open("wb") as f:
        left = size
        while left > 0:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            md5.update(chunk)
            left -= len(chunk)
    return md5.hexdigest()


# -- the benchmark --------------------------------------------------------------------


@dataclass
class Series:
    label: str
    runs: list[Transfer] = field(default_factory=list)

    def add(self, t: Transfer, want: set[int], size: int) -> None:
        if t.status not in want or t.nbytes != size:
            raise SystemExit(f"{self.label}: HTTP {t.status}, {t.nbytes} of {size} bytes")
        self.runs.append(t)

    @property
    def median(self) -> float:
        return statistics.median(t.mb_s for t in self.runs)


def run(size: int, runs: int, workdir: Path) -> dict[str, object]:
    serve = workdir / "serve"
    serve.mkdir()
    payload = serve / "payload.bin"
    print(f"writing a {human(size)} payload ...", flush=True)
    md5 = make_payload(payload, size)
    baseline_server = start_http_server(serve, workdir / "http.server.log")
    emulator = start_emulator(workdir / "emu", workdir / "emulator.log")
    try:
        base = emulator.url
        arc_files = f"{base}/arc/files/home/{USER}/payload.bin"
        vault_files = f"{base}/vault/files/{USER}/payload.bin"

        # put the bytes in both services (not measured)
        first = curl(arc_files, upload=payload, token=TOKEN)
        if first.status != 201:
            raise SystemExit(f"arc upload failed: HTTP {first.status}")
        pushed = curl(vault_push_url(base, f"{USER}/payload.bin"), upload=payload)
        if pushed.status != 201:
            raise SystemExit(f"vault upload failed: HTTP {pushed.status}")
        for service_path in (
            f"arc/nodes/home/{USER}/payload.bin",
            f"vault/nodes/{USER}/payload.bin",
        ):
            if stored_md5(base, service_path) != md5:
                raise SystemExit(f"{service_path}: stored MD5 differs from the payload's")

        settle()
        series = {
            "baseline": Series("python3 -m http.server  GET"),
            "arc_get": Series("emulator /arc/files     GET"),
            "vault_get": Series("emulator /vault → minoc GET (curl -L)"),
            "arc_put": Series("emulator /arc/files     PUT (curl -T)"),
            "md5": Series("MD5 of the payload, one core (hashlib)"),
        }
        for i in range(runs):
            print(f"run {i + 1}/{runs} ...", flush=True)
            series["baseline"].add(curl(f"{baseline_server.url}/payload.bin"), {200}, size)
            series["arc_get"].add(curl(arc_files, token=TOKEN), {200}, size)
            series["vault_get"].add(curl(vault_files, token=TOKEN, follow=True), {200}, size)
            series["arc_put"].add(curl(arc_files, upload=payload, token=TOKEN), {201}, size)
            series["md5"].add(md5_floor(payload), {200}, size)
            settle()
        if stored_md5(base, f"arc/nodes/home/{USER}/payload.bin") != md5:
            raise SystemExit("arc: stored MD5 differs after the measured uploads")
    finally:
        emulator.stop()
        baseline_server.stop()

    medians = {k: s.median for k, s in series.items()}
    ratios = {
        "arc_get_vs_baseline": medians["arc_get"] / medians["baseline"],
        "vault_get_vs_baseline": medians["vault_get"] / medians["baseline"],
        "arc_put_vs_arc_get": medians["arc_put"] / medians["arc_get"],
        "arc_put_vs_md5": medians["arc_put"] / medians["md5"],
    }
    return {
        "size_bytes": size,
        "runs": runs,
        "unit": "MB/s (10^6 bytes per second), curl time_total, loopback",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "labels": {k: s.label for k, s in series.items()},
        "runs_mb_s": {k: [round(t.mb_s, 1) for t in s.runs] for k, s in series.items()},
        "median_mb_s": {k: round(v, 1) for k, v in medians.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "target_ratio": TARGET_RATIO,
        "meets_target": {k: v >= TARGET_RATIO for k, v in ratios.items()},
    }


def print_table(result: dict[str, object]) -> None:
    labels: dict[str, str] = result["labels"]  # type: ignore[assignment]
    runs: dict[str, list[float]] = result["runs_mb_s"]  # type: ignore[assignment]
    medians: dict[str, float] = result["median_mb_s"]  # type: ignore[assignment]
    ratios: dict[str, float] = result["ratios"]  # type: ignore[assignment]
    meets: dict[str, bool] = result["meets_target"]  # type: ignore[assignment]
    size = int(result["size_bytes"])  # type: ignore[call-overload]
    print()
    print(f"emulator throughput, {human(size)} file, {result['runs']} run(s), MB/s = 10^6 B/s")
    print(f"| {'measurement':<40} | {'runs (MB/s)':<24} | {'median MB/s':>11} |")
    print(f"|{'-' * 42}|{'-' * 26}|{'-' * 13}|")
    for key, label in labels.items():
        shown = ", ".join(f"{v:.0f}" for v in runs[key])
        print(f"| {label:<40} | {shown:<24} | {medians[key]:>11.1f} |")
    print()
    print(f"| {'ratio (target ≥ ' + str(TARGET_RATIO) + ')':<40} | {'value':>7} | result |")
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 8}|")
    names = {
        "arc_get_vs_baseline": "arc GET / http.server GET",
        "vault_get_vs_baseline": "vault→minoc GET / http.server GET",
        "arc_put_vs_arc_get": "arc PUT / arc GET",
        "arc_put_vs_md5": "arc PUT / MD5 on one core (the floor)",
    }
    for key, value in ratios.items():
        print(f"| {names[key]:<40} | {value:>7.2f} | {'PASS' if meets[key] else 'FAIL':<6} |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        type=parse_size,
        default=parse_size("1G"),
        help="file size, e.g. 1G (default), 64M, 8M",
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the results (default {DEFAULT_JSON})",
    )
    parser.add_argument(
        "--tmp", type=Path, default=None, help="directory for the payload and the emulator root"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a ratio misses its target"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if shutil.which("curl") is None:
        parser.error("curl is required")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-emulator-", dir=args.tmp) as tmp:
        result = run(args.size, args.runs, Path(tmp))
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.json}")
    meets: dict[str, bool] = result["meets_target"]  # type: ignore[assignment]
    return 1 if args.strict and not all(meets.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

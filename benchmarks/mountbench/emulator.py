"""The emulator the benchmark measures against (``canfarfs emulator`` on a loopback
socket), its VOSpace shortcuts for set-up (not measured), and which canfarfs runs it
and the mounts (``--canfarfs-src``)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .tools import REPO, TOKEN, USER, curl

HTTPS_PUT = "ivo://ivoa.net/vospace/core#httpsput"
VOS_NS = (
    'xmlns:vos="http://www.ivoa.net/xml/VOSpace/v2.0" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)


@dataclass
class Emulator:
    proc: subprocess.Popen[str]
    url: str
    log_file: Any
    root: Path

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        try:
            hdrs = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
            if body is None and method in ("POST", "PUT"):
                hdrs.setdefault("Content-Length", "0")
            conn.request(method, path, body=body, headers=hdrs)
            reply = conn.getresponse()
            data = reply.read()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, data
        finally:
            conn.close()

    def set_latency(self, seconds: float) -> None:
        if seconds > 0:
            status, _, _ = self.request(
                "POST", "/_emulator/faults", json.dumps({"latency": seconds}).encode()
            )
        else:
            status, _, _ = self.request("DELETE", "/_emulator/faults")
        if status != 200:
            raise SystemExit(f"emulator refused the latency knob: HTTP {status}")

    def requests_seen(self) -> int:
        _, _, data = self.request("GET", "/_emulator/stats")
        return int(json.loads(data)["requests"])

    def reset_stats(self) -> None:
        self.request("DELETE", "/_emulator/stats")

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
        self.log_file.close()

    # -- VOSpace set-up shortcuts (not measured) ----------------------------------------

    def node_path(self, service: str, path: str) -> str:
        return f"/{service}/nodes/{quote(path)}"

    def uri(self, service: str, path: str) -> str:
        return f"vos://cadc.nrc.ca~{service}/{path}"

    def mkdir(self, service: str, path: str) -> None:
        doc = (
            f'<vos:node {VOS_NS} uri="{self.uri(service, path)}" '
            f'xsi:type="vos:ContainerNode"><vos:nodes/></vos:node>'
        ).encode()
        status, _, data = self.request(
            "PUT", self.node_path(service, path), doc, {"Content-Type": "text/xml"}
        )
        if status != 201:
            raise SystemExit(f"mkdir {service}/{path}: HTTP {status} {data[:200]!r}")

    def delete(self, service: str, path: str) -> None:
        self.request("DELETE", self.node_path(service, path))

    def node_props(self, service: str, path: str) -> tuple[int, str | None] | None:
        """(length, MD5) of a node, or None when it does not exist."""
        status, _, data = self.request("GET", self.node_path(service, path) + "?limit=0")
        if status != 200:
            return None
        text = data.decode()
        length = re.search(r'core#length"[^>]*>(\d+)<', text)
        md5 = re.search(r'core#MD5"[^>]*>([0-9a-f]{32})<', text)
        return (int(length.group(1)) if length else 0, md5.group(1) if md5 else None)

    def vault_push_url(self, path: str) -> str:
        target = self.uri("vault", path)
        query = (
            f"TARGET={quote(target, safe='')}&DIRECTION=pushToVoSpace"
            f"&PROTOCOL={quote(HTTPS_PUT, safe='')}"
        )
        status, headers, _ = self.request("POST", f"/vault/synctrans?{query}")
        if status != 303 or "location" not in headers:
            raise SystemExit(f"vault push negotiation failed: HTTP {status}")
        return headers["location"]

    def minoc_url(self, path: str) -> str:
        status, headers, _ = self.request(
            "GET", f"/vault/files/{quote(path)}", headers={"Range": "bytes=0-0"}
        )
        if status != 303 or "location" not in headers:
            raise SystemExit(f"vault /files did not redirect: HTTP {status}")
        return headers["location"]

    def upload(self, service: str, path: str, source: Path) -> None:
        """Store a file as a client would (arc: PUT /files; vault: push negotiation)."""
        if service == "arc":
            r = curl(f"{self.url}/arc/files/{path}", upload=source)
        else:
            r = curl(self.vault_push_url(path), upload=source, token=False)
        if r.status != 201:
            raise SystemExit(f"{service} upload of {path} failed: HTTP {r.status}")


_canfarfs_src: Path | None = None  # --canfarfs-src


def use_canfarfs_src(src: Path | None) -> None:
    """Run the emulator and the mount from this source tree (None: the installed one)."""
    global _canfarfs_src
    _canfarfs_src = src.resolve() if src else None


def canfarfs_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m canfarfs`` (the emulator and the mount)."""
    env = dict(os.environ, **extra)
    if _canfarfs_src is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_canfarfs_src), os.environ.get("PYTHONPATH", "")) if p
        )
    return env


def canfarfs_version() -> dict[str, Any]:
    """Which canfarfs was measured: the source tree, its commit and whether it differs."""
    src = _canfarfs_src or REPO
    info: dict[str, Any] = {"source": str(src)}
    r = subprocess.run(
        [sys.executable, "-c", "import canfarfs; print(canfarfs.__file__)"],
        capture_output=True,
        text=True,
        env=canfarfs_env(),
        check=False,
        cwd="/",
    )
    info["imported_from"] = r.stdout.strip()
    if (src / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "canfarfs"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        info["commit"] = head + (" + uncommitted changes in canfarfs/" if dirty else "")
    elif (src / "COMMIT").exists():
        info["commit"] = (src / "COMMIT").read_text().strip()
    return info


def start_emulator(root: Path, log_path: Path) -> Emulator:
    log_file = log_path.open("w")
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
        "--quota",
        "1T",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, env=canfarfs_env(), cwd=root.parent
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        proc.wait()
        log_file.close()
        raise SystemExit(f"emulator did not start (first line {url!r}); see {log_path}")
    return Emulator(proc, url, log_file, root)

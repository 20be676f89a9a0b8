"""The vos CLI and the vos library against a served emulator: a rig shared by tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from canfarfs.vospace.model import Node
from canfarfs.vospace.xml import parse_node
from tests.emulator_util import LiveEmulator, clean_env

VOS_BIN = Path(sys.executable).parent


HTTPS_PUT = "ivo://ivoa.net/vospace/core#httpsput"


@dataclass(frozen=True)
class Service:
    """Where alice's allocation is on one service, in each of the spellings used."""

    name: str
    #: vos short form, e.g. ``arc:home/alice``
    prefix: str
    #: node path below the service root, e.g. ``home/alice``
    home: str
    locks: bool

    def uri(self, name: str = "") -> str:
        base = f"vos://cadc.nrc.ca~{self.name}/{self.home}"
        return f"{base}/{name}" if name else base


@dataclass
class VosRig:
    """The vos CLI pointed at the live emulator, plus a direct HTTP view of the service."""

    live: LiveEmulator
    service: Service
    env: dict[str, str]
    work: Path
    http: httpx2.Client

    # -- the client under test -------------------------------------------------------

    def vos(self, tool: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """Run one vos command with ``--token``; assert its exit status."""
        cmd = [str(VOS_BIN / tool), "--token", self.live.token, *args]
        proc = subprocess.run(
            cmd,
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == expect, (
            f"{tool} {' '.join(args)}: exit {proc.returncode}, wanted {expect}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
        return proc

    def remote(self, name: str = "") -> str:
        return f"{self.service.prefix}/{name}" if name else self.service.prefix

    # -- what the service holds (checked over plain HTTP) ------------------------------

    def _nodes_url(self, name: str) -> str:
        path = f"{self.service.home}/{name}" if name else self.service.home
        return f"/{self.service.name}/nodes/{path}"

    def node(self, name: str = "") -> Node:
        r = self.http.get(self._nodes_url(name))
        assert r.status_code == 200, f"GET {name}: {r.status_code} {r.text}"
        return parse_node(r.content)

    def exists(self, name: str) -> bool:
        r = self.http.get(self._nodes_url(name), params={"limit": "0"})
        assert r.status_code in (200, 404), r.text
        return r.status_code == 200

    def children(self, name: str = "") -> list[str]:
        return [c.name for c in self.node(name).children or []]

    def download(self, name: str) -> bytes:
        """The bytes of a data node (vault's /files answers with a 303 to minoc)."""
        path = f"{self.service.home}/{name}"
        r = self.http.get(f"/{self.service.name}/files/{path}", follow_redirects=True)
        assert r.status_code in (200, 204), f"GET bytes {name}: {r.status_code} {r.text}"
        return r.content

    def upload(self, name: str, data: bytes) -> None:
        """Set-up shortcut: negotiate a push (parameter form) and PUT the bytes."""
        r = self.http.post(
            f"/{self.service.name}/synctrans",
            params={
                "TARGET": self.service.uri(name),
                "DIRECTION": "pushToVoSpace",
                "PROTOCOL": HTTPS_PUT,
            },
        )
        assert r.status_code == 303, r.text
        put = self.http.put(r.headers["location"], content=data)
        assert put.status_code == 201, put.text

    def mkdir(self, name: str) -> None:
        doc = (
            f'<vos:node xmlns:vos="http://www.ivoa.net/xml/VOSpace/v2.0" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'uri="{self.service.uri(name)}" xsi:type="vos:ContainerNode">'
            "<vos:nodes/></vos:node>"
        )
        r = self.http.put(self._nodes_url(name), content=doc)
        assert r.status_code == 201, r.text


SERVICES = {
    "arc": Service("arc", "arc:home/alice", "home/alice", locks=False),
    "vault": Service("vault", "vault:alice", "alice", locks=True),
}


def seed_registry(home: Path, url: str) -> str:
    """Recipe A: the registry cache for ``VOSPACE_WEBSERVICE=<host:port>``."""
    hostport = url.removeprefix("http://")
    caps = home / ".config" / "cadc-registry" / "alt-domains" / hostport
    caps.mkdir(parents=True)
    (caps / "resource-caps").write_text(
        f"ivo://cadc.nrc.ca/arc = {url}/arc/capabilities\n"
        f"ivo://cadc.nrc.ca/vault = {url}/vault/capabilities\n"
    )
    return hostport


@contextmanager
def vos_rig(service: Service, live: LiveEmulator, tmp_path: Path) -> Iterator[VosRig]:
    """The vos CLI pointed at ``live`` (a home with its registry cache), for ``service``."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = clean_env(home)
    env["VOSPACE_WEBSERVICE"] = seed_registry(home, live.url)
    headers = {"Authorization": f"Bearer {live.token}"}
    with httpx2.Client(base_url=live.url, headers=headers, timeout=60) as http:
        yield VosRig(live, service, env, work, http)

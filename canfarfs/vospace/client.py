"""An async VOSpace client (arc and vault) on httpx2; usable without FUSE.

Metadata goes through ``/nodes`` (listings paged on vault, whole on arc), renames through
``/transfers`` move jobs, reads through ``/files`` (arc streams whole bodies; vault
redirects to a storage URL that honours ranges), and writes through arc's direct
``/files`` PUT or vault's push negotiation. Every upload sends ``Digest`` and checks the
one the server answers, so success means the server holds exactly these bytes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx2
import trio

from canfarfs import errors
from canfarfs.bulk import Accept
from canfarfs.net import HTTP
from canfarfs.vospace import xml as vxml
from canfarfs.vospace.bodies import read_into
from canfarfs.vospace.faults import error_from_job, error_from_response
from canfarfs.vospace.model import Node, NodeType, Protocol, Transfer, path_to_uri

log = logging.getLogger(__name__)

HTTPS_PUT = "ivo://ivoa.net/vospace/core#httpsput"
UPLOAD_CHUNK = 1024 * 1024
#: Largest listing document accepted from a server (a 100,000-entry arc listing is
#: about 100 MB of XML; anything beyond this is refused rather than buffered).
MAX_LISTING = 512 * 1024 * 1024


@dataclass(frozen=True)
class DataLocation:
    """Where a file's bytes can be read: the URL, its size, and whether ranges work."""

    url: str
    size: int
    ranges: bool
    needs_auth: bool
    md5: str | None = None


def md5_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def digest_md5(header: str | None) -> str | None:
    """The hex MD5 in a ``Digest: md5=<base64>`` header, if any."""
    for part in (header or "").split(","):
        algo, _, value = part.strip().partition("=")
        if algo.lower() == "md5" and value:
            try:
                return base64.b64decode(value).hex()
            except ValueError:
                return None
    return None


class VOSpaceClient:
    """One VOSpace service (arc or vault) at ``base_url``."""

    def __init__(
        self,
        http: HTTP,
        base_url: str,
        service: str,
        *,
        authority: str | None = None,
        page_size: int = 1000,
    ) -> None:
        if service not in ("arc", "vault"):
            raise ValueError(f"unknown VOSpace service {service!r}")
        self.http = http
        self.base = base_url.rstrip("/")
        self.service = service
        self.authority = authority or f"cadc.nrc.ca~{service}"
        self.page_size = page_size

    # -- URLs and URIs -----------------------------------------------------------------

    def uri(self, path: str) -> str:
        return path_to_uri(self.authority, path)

    def _url(self, endpoint: str, path: str) -> str:
        path = path.strip("/")
        return (
            f"{self.base}/{endpoint}/{quote(path, safe='/')}" if path else f"{self.base}/{endpoint}"
        )

    # -- nodes -------------------------------------------------------------------------

    async def get_node(
        self,
        path: str,
        *,
        limit: int | None = 0,
        detail: str | None = None,
        cursor: str | None = None,
    ) -> Node:
        """One node document (``limit=0``: no children; ``None``: the server's default)."""
        params: dict[str, str] = {}
        if limit is not None:
            params["limit"] = str(limit)
        if detail:
            params["detail"] = detail
        if cursor:
            params["uri"] = cursor
        r = await self.http.request("GET", self._url("nodes", path), params=params)
        if r.status_code != 200:
            raise error_from_response(r, f"get {self.service}:{path}")
        return self._parse(r, path)

    async def ping(self, within: float) -> None:
        """Whether the service answers: one GET of the root node (no children), not
        retried, bounded by ``within`` seconds; the error of a failing answer."""
        r = await self.http.request(
            "GET", self._url("nodes", ""), params={"limit": "0"}, idempotent=False, bound=within
        )
        if r.status_code != 200:
            raise error_from_response(r, f"get {self.service}:")

    def _parse(self, r: httpx2.Response, path: str) -> Node:
        if len(r.content) > MAX_LISTING:
            raise errors.ProtocolError(f"{self.service}:{path}: listing too large")
        try:
            return vxml.parse_node(r.content)
        except vxml.XMLError as exc:
            raise errors.ProtocolError(f"{self.service}:{path}: bad node document: {exc}") from exc

    async def list_dir(self, path: str) -> AsyncIterator[tuple[Node, list[Node]]]:
        """The container and its children, page by page (one page on arc).

        vault pages with ``limit`` and the inclusive ``uri`` cursor; a repeated cursor
        entry is dropped so no child is yielded twice.
        """
        if self.service == "arc":
            node = await self.get_node(path, limit=None)
            yield node, list(node.children or [])
            return
        cursor: str | None = None
        while True:
            node = await self.get_node(path, limit=self.page_size, cursor=cursor)
            children = list(node.children or [])
            full = len(children) >= self.page_size
            if cursor is not None and children and children[0].uri == cursor:
                children = children[1:]
            yield node, children
            if not full or not children:
                return
            cursor = children[-1].uri

    async def create_node(
        self,
        path: str,
        kind: NodeType,
        *,
        target: str | None = None,
        properties: dict[str, str | None] | None = None,
    ) -> Node:
        node = Node(
            uri=self.uri(path),
            type=kind,
            properties=properties or {},
            target=target,
            children=[] if kind is NodeType.CONTAINER else None,
        )
        r = await self.http.request(
            "PUT",
            self._url("nodes", path),
            content=vxml.node_to_xml(node),
            headers={"Content-Type": "text/xml"},
            idempotent=False,
        )
        if r.status_code not in (200, 201):
            raise error_from_response(r, f"create {self.service}:{path}")
        return self._parse(r, path)

    async def update_node(
        self, path: str, kind: NodeType, properties: dict[str, str | None]
    ) -> Node:
        """Set (value) or delete (None) properties; others are kept."""
        node = Node(
            uri=self.uri(path),
            type=kind,
            properties=properties,
            target="vos://x" if kind is NodeType.LINK else None,
            children=[] if kind is NodeType.CONTAINER else None,
        )
        r = await self.http.request(
            "POST",
            self._url("nodes", path),
            content=vxml.node_to_xml(node),
            headers={"Content-Type": "text/xml"},
            idempotent=True,
        )
        if r.status_code != 200:
            raise error_from_response(r, f"update {self.service}:{path}")
        return self._parse(r, path)

    async def delete_node(self, path: str) -> None:
        r = await self.http.request("DELETE", self._url("nodes", path))
        if r.status_code != 200:
            raise error_from_response(r, f"delete {self.service}:{path}")

    # -- moves -------------------------------------------------------------------------

    async def move(self, src: str, dst: str, *, poll_limit: float | None = None) -> None:
        """Rename/move with a ``/transfers`` job, awaited to its end (bounded)."""
        t = Transfer(target=self.uri(src), direction=self.uri(dst), keep_bytes=False)
        what = f"move {self.service}:{src} -> {dst}"
        r = await self.http.request(
            "POST",
            f"{self.base}/transfers",
            content=vxml.transfer_to_xml(t),
            headers={"Content-Type": "text/xml"},
            params={"PHASE": "RUN"},
            idempotent=False,
        )
        if r.status_code != 303:
            raise error_from_response(r, what)
        job_url = r.headers["location"]
        await self._await_job(job_url, what, poll_limit)

    async def _await_job(self, job_url: str, what: str, limit: float | None) -> None:
        bound = limit if limit is not None else self.http.timeouts.operation
        delay = 0.05
        try:
            with trio.fail_after(bound):
                while True:
                    r = await self.http.request("GET", job_url, params={"WAIT": "5"})
                    if r.status_code != 200:
                        raise error_from_response(r, what)
                    try:
                        job = vxml.parse_job(r.content)
                    except vxml.XMLError as exc:
                        raise errors.ProtocolError(f"{what}: bad job document: {exc}") from exc
                    if job.phase.value == "PENDING":
                        run = await self.http.request(
                            "POST", f"{job_url}/phase", data={"PHASE": "RUN"}, idempotent=True
                        )
                        if run.status_code not in (200, 303):
                            raise error_from_response(run, what)
                        continue
                    if job.phase.value == "COMPLETED":
                        return
                    if job.phase.value == "ERROR":
                        raise error_from_job(job.error or "ERROR", what)
                    if not job.phase.active:
                        raise errors.CanfarfsError(f"{what}: job ended {job.phase.value}")
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        except trio.TooSlowError:
            raise errors.Timeout(f"{what}: job not finished within {bound:g} s") from None

    # -- reading -----------------------------------------------------------------------

    async def locate(self, path: str, size_hint: int | None = None) -> DataLocation | None:
        """Where to read ``path``'s bytes; None for an empty file (204)."""
        url = self._url("files", path)
        if self.service == "arc":
            return DataLocation(url=url, size=size_hint or 0, ranges=False, needs_auth=True)
        r = await self.http.request("GET", url)
        if r.status_code == 204:
            return None
        if r.status_code in (302, 303, 307):
            return DataLocation(
                url=r.headers["location"], size=size_hint or 0, ranges=True, needs_auth=False
            )
        if r.status_code == 200:  # a server that answers bytes directly
            return DataLocation(url=url, size=len(r.content), ranges=False, needs_auth=True)
        raise error_from_response(r, f"read {self.service}:{path}")

    @asynccontextmanager
    async def open_bytes(
        self, loc: DataLocation, start: int = 0, end: int | None = None
    ) -> AsyncIterator[httpx2.Response]:
        """A streamed GET of ``loc`` from ``start`` (to ``end`` exclusive, if ranged)."""
        headers = {"Accept-Encoding": "identity"}
        if loc.ranges and (start or end is not None):
            last = "" if end is None else str(end - 1)
            headers["Range"] = f"bytes={start}-{last}"
        async with self.http.stream("GET", loc.url, headers=headers, auth=loc.needs_auth) as r:
            if r.status_code == 204:
                yield r
                return
            if r.status_code not in (200, 206):
                await r.aread()
                raise error_from_response(r, f"read {loc.url.split('?')[0]}")
            if "Range" in headers and r.status_code != 206:
                raise errors.ProtocolError("server ignored a byte range")
            yield r

    async def read_into(
        self,
        loc: DataLocation,
        start: int,
        end: int,
        accept: Accept,
        *,
        read_timeout: float | None = None,
    ) -> int:
        """Hand [start, end) of ``loc``'s bytes to ``accept`` (a body without ranges
        from 0); the offset reached (short of ``end`` when ``accept`` said stop)."""
        return await read_into(
            self.http,
            loc.url,
            ranged=loc.ranges,
            needs_auth=loc.needs_auth,
            start=start,
            end=end,
            accept=accept,
            read_timeout=read_timeout if read_timeout is not None else self.http.timeouts.read,
        )

    # -- writing -----------------------------------------------------------------------

    async def upload(
        self,
        path: str,
        source: Path,
        size: int,
        md5_hex: str,
        content_type: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Put ``source``'s bytes at ``path``; return only once the server's MD5 matches."""
        if size == 0:
            await self._ensure_empty(path)
            return
        what = f"upload {self.service}:{path}"
        url = (
            self._url("files", path)
            if self.service == "arc"
            else await self._negotiate_put(path, size)
        )
        headers = {
            "Content-Length": str(size),
            "Digest": f"md5={md5_b64(md5_hex)}",
            "Content-Type": content_type or "application/octet-stream",
        }
        attempts = self.http.retry.attempts
        for attempt in range(attempts):
            try:
                r = await self._put_file(
                    url, source, headers, auth=self.service == "arc", progress=progress
                )
            except errors.Transient:
                if attempt == attempts - 1:
                    raise
                await self.http.retry.sleep(self.http.retry.delay(attempt))
                continue
            if r.status_code in (500, 502, 503, 504) and attempt < attempts - 1:
                await self.http.retry.sleep(
                    self.http.retry.delay(attempt, r.headers.get("retry-after"))
                )
                continue
            break
        if r.status_code not in (200, 201):
            raise error_from_response(r, what)
        stored = digest_md5(r.headers.get("digest"))
        if stored is not None and stored != md5_hex:
            raise errors.IntegrityError(f"{what}: server holds MD5 {stored}, sent {md5_hex}")
        if stored is None:
            node = await self.get_node(path)
            if node.prop("ivo://ivoa.net/vospace/core#MD5") != md5_hex or node.length != size:
                raise errors.IntegrityError(f"{what}: server copy does not match")

    async def upload_stream(self, path: str, body: AsyncIterator[bytes]) -> str | None:
        """PUT a body of unknown length to arc's ``/files`` (chunked); one try, no retry.

        Returns the MD5 the server reports (None if it sends no Digest). The caller
        compares it with its own; an unfinished body is discarded by the server.
        """
        if self.service != "arc":
            raise ValueError("streaming uploads go to arc's /files only")
        what = f"upload {self.service}:{path}"
        async with self.http.stream(
            "PUT",
            self._url("files", path),
            content=body,
            headers={"Content-Type": "application/octet-stream"},
            bound=math.inf,
        ) as r:
            await r.aread()
        if r.status_code not in (200, 201):
            raise error_from_response(r, what)
        return digest_md5(r.headers.get("digest"))

    async def _ensure_empty(self, path: str) -> None:
        try:
            node = await self.get_node(path)
        except errors.NotFound:
            await self.create_node(path, NodeType.DATA)
            return
        if node.type is not NodeType.DATA:
            raise errors.IsADirectory(f"{self.service}:{path} is not a file")
        if not node.length:
            return
        if self.service == "arc":  # arc's /files PUT truncates in place
            r = await self.http.request(
                "PUT", self._url("files", path), content=b"", headers={"Content-Length": "0"}
            )
            if r.status_code not in (200, 201):
                raise error_from_response(r, f"truncate {self.service}:{path}")
            return
        # minoc refuses an empty body: replace the node, keeping its properties (the
        # server ignores the read-only ones). Not atomic; documented in semantics.md.
        await self.delete_node(path)
        await self.create_node(path, NodeType.DATA, properties=dict(node.properties))

    async def _negotiate_put(self, path: str, size: int) -> str:
        t = Transfer(
            target=self.uri(path),
            direction="pushToVoSpace",
            protocols=[Protocol(uri=HTTPS_PUT)],
            length=size,
        )
        what = f"negotiate upload {self.service}:{path}"
        r = await self.http.request(
            "POST",
            f"{self.base}/synctrans",
            content=vxml.transfer_to_xml(t),
            headers={"Content-Type": "text/xml"},
            idempotent=True,
        )
        hops = 0
        while r.status_code in (302, 303) and hops < 5:
            hops += 1
            r = await self.http.request("GET", r.headers["location"])
        if r.status_code != 200:
            raise error_from_response(r, what)
        try:
            details = vxml.parse_transfer(r.content, max_size=1 << 20)
        except vxml.XMLError as exc:
            raise errors.ProtocolError(f"{what}: bad transfer details: {exc}") from exc
        endpoints = [p.endpoint for p in details.protocols if p.endpoint]
        if not endpoints:
            job = str(r.url).replace("/xfer/", "/transfers/")
            err = await self.http.request("GET", f"{job}/error")
            raise error_from_job(err.text if err.status_code == 200 else "TransferFailed", what)
        return endpoints[0]

    async def _put_file(
        self,
        url: str,
        source: Path,
        headers: dict[str, str],
        auth: bool,
        progress: Callable[[int], None] | None = None,
    ) -> httpx2.Response:
        length = int(headers["Content-Length"])

        async def body() -> AsyncIterator[bytes]:
            # Exactly the declared length: the file may grow or shrink under a concurrent
            # writer. Missing bytes are sent as zeros; the MD5 the server then reports
            # differs from ours, and the caller uploads again (IntegrityError).
            f = await trio.to_thread.run_sync(source.open, "rb")
            sent = 0
            try:
                while sent < length:
                    want = min(UPLOAD_CHUNK, length - sent)
                    chunk = await trio.to_thread.run_sync(f.read, want)
                    if not chunk:
                        chunk = bytes(want)
                    yield chunk
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent)
            finally:
                await trio.to_thread.run_sync(f.close)

        # No overall bound: a large upload may take long, but every wait inside it (each
        # chunk written, the answer after the last one) is bounded by httpx's timeouts.
        async with self.http.stream(
            "PUT", url, headers=headers, auth=auth, content=body(), bound=math.inf
        ) as r:
            await r.aread()
            return r


def md5_of_file(path: Path) -> str:
    """Hex MD5 of a local file (call through trio.to_thread)."""
    h = hashlib.md5()  # noqa: S324 - the protocol's checksum
    with path.open("rb") as f:
        while chunk := f.read(UPLOAD_CHUNK):
            h.update(chunk)
    return h.hexdigest()

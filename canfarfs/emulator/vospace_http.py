"""VOSpace over HTTP for the emulator: /nodes, /files, /synctrans, /transfers, /xfer,
/async-delete, VOSI, and vault's storage (minoc). Semantics live in vospace_core."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

import trio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from canfarfs.emulator import errors
from canfarfs.emulator.auth import identify
from canfarfs.emulator.config import EmulatorConfig, User
from canfarfs.emulator.errors import Fault
from canfarfs.emulator.store import JobRecord, NodeRecord, Store
from canfarfs.emulator.vosi import availability_xml, vospace_capabilities_xml
from canfarfs.emulator.vospace_core import FLAVOURS, Space, split_raw_path
from canfarfs.vospace import xml as vxml
from canfarfs.vospace.model import Job, JobPhase, Node, NodeType, Protocol, Transfer

CHUNK = 4 * 1024 * 1024
#: Received pieces are handed to the writer and hasher threads in blocks of this much.
BLOCK = 1 << 20
#: Uploads declared at or below this size are received in memory (see receive_body).
SMALL_BODY = 1024 * 1024
MAX_DOC = vxml.MAX_NODE_DOC
HTTPS_GET = "ivo://ivoa.net/vospace/core#httpsget"
HTTPS_PUT = "ivo://ivoa.net/vospace/core#httpsput"
HTTP_GET = "ivo://ivoa.net/vospace/core#httpget"
HTTP_PUT = "ivo://ivoa.net/vospace/core#httpput"
SM_TOKEN = "ivo://ivoa.net/sso#token"  # noqa: S105 - a security method ID
SM_CERT = "ivo://ivoa.net/sso#tls-with-certificate"
PREAUTH_TTL = 24 * 3600
XML = "text/xml"

Handler = Callable[[Request, User | None, str], Awaitable[Response]]


# -- pre-authorised URLs ---------------------------------------------------------------


class Signer:
    """HMAC-signed pre-authorisation tokens (they survive an emulator restart)."""

    def __init__(self, root: Path) -> None:
        key_file = root / "preauth.key"
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        self.key = key_file.read_bytes()

    def sign(self, claims: dict[str, str | int]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True).encode()).rstrip(b"=")
        sig = hmac.new(self.key, body, hashlib.sha256).digest()[:18]
        return (body + b"." + base64.urlsafe_b64encode(sig)).decode()

    def verify(self, token: str) -> dict[str, str | int] | None:
        body, _, sig = token.encode().partition(b".")
        want = base64.urlsafe_b64encode(hmac.new(self.key, body, hashlib.sha256).digest()[:18])
        if not hmac.compare_digest(want, sig):
            return None
        try:
            claims: dict[str, str | int] = json.loads(
                base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4))
            )
        except ValueError:
            return None
        if int(claims.get("exp", 0)) < trio_wallclock():
            return None
        return claims


def trio_wallclock() -> int:
    """Seconds since the epoch (pre-authorisation expiry is wall-clock time)."""
    return int(time.time())


#: A media type as a header can carry it: type/subtype and optional parameters, printable
#: ASCII only. The ``type`` property is free text a client may set to anything.
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(;[ -~]*)?")


def content_type(declared: str | None) -> str:
    """The node's ``type`` property if it is a usable media type, else octet-stream."""
    if declared and len(declared) <= 255 and _MEDIA_TYPE.fullmatch(declared):
        return declared
    return "application/octet-stream"


def http_date(vospace_date: str) -> str:
    """A VOSpace timestamp as an RFC 7231 date for Last-Modified."""
    dt = datetime.strptime(vospace_date, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    return format_datetime(dt, usegmt=True)


def service_raw_path(request: Request) -> str:
    """The still percent-encoded path below the service's mount point."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    root = request.scope.get("root_path", "")
    return raw[len(root) :] if raw.startswith(root) else raw


# -- byte streaming --------------------------------------------------------------------


class FileChunks:
    """``length`` bytes of ``path`` from ``start`` in CHUNK pieces, read off the loop.

    A class rather than an async generator: a client that hangs up mid-body leaves the
    iterator unfinished, and its file is then closed here instead of by the garbage
    collector's async-generator hook (which warns).
    """

    def __init__(self, path: Path, start: int, length: int) -> None:
        self._path = path
        self._pos = start
        self._left = length
        self._fd = -1

    def __aiter__(self) -> FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._left > 0 and self._fd < 0:
            self._fd = await trio.to_thread.run_sync(os.open, self._path, os.O_RDONLY)
        chunk = b""
        if self._left > 0:
            chunk = await trio.to_thread.run_sync(
                os.pread, self._fd, min(CHUNK, self._left), self._pos
            )
        if not chunk:
            self.close()
            raise StopAsyncIteration
        self._pos += len(chunk)
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


@dataclass
class Received:
    path: Path
    length: int
    md5_hex: str


async def receive_body(request: Request, dest: Path, limit: int | None) -> Received:
    """Stream the request body to ``dest``, hashing as it goes; 413 past ``limit``.

    Receiving, writing and hashing are pipelined: each received piece goes to a writer
    thread and to a hashing thread (both release the GIL), while the next one arrives. An upload
    therefore runs at the speed of the slowest of the three, which on most machines is
    MD5 itself (one stream hashes on one core; see docs/performance.md).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) <= SMALL_BODY:
        return await _receive_small_body(request, dest, limit)
    md5 = hashlib.md5()  # noqa: S324 - MD5 is the protocol's checksum, not security
    total = 0
    f = await trio.to_thread.run_sync(dest.open, "wb")
    to_disk, disk_blocks = trio.open_memory_channel[bytes](16)
    to_hash, hash_blocks = trio.open_memory_channel[bytes](16)

    async def consume(
        blocks: trio.MemoryReceiveChannel[bytes], work: Callable[[bytes], object]
    ) -> None:
        async with blocks:
            async for block in blocks:
                await trio.to_thread.run_sync(work, block)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume, disk_blocks, f.write)
            nursery.start_soon(consume, hash_blocks, md5.update)
            async with to_disk, to_hash, aclosing(request.stream()) as stream:
                pending: list[bytes] = []
                pending_len = 0
                async for chunk in stream:
                    total += len(chunk)
                    if limit is not None and total > limit:
                        raise Fault(413, f"limit: {limit}")
                    # A Content-Length body arrives in pieces of up to 1 MiB (see
                    # server.py), handed on as they are: gathering them cost a copy
                    # into fresh memory, more than the thread hops. A chunked body
                    # arrives cut at every chunk boundary as well, twice the pieces
                    # (and hops) for the same bytes: those pieces are gathered.
                    pending.append(chunk)
                    pending_len += len(chunk)
                    if pending_len >= BLOCK:
                        block = pending[0] if len(pending) == 1 else b"".join(pending)
                        pending, pending_len = [], 0
                        await to_disk.send(block)
                        await to_hash.send(block)
                if pending:
                    block = b"".join(pending)
                    await to_disk.send(block)
                    await to_hash.send(block)
    finally:
        await trio.to_thread.run_sync(f.close)
    return Received(dest, total, md5.hexdigest())


async def _receive_small_body(request: Request, dest: Path, limit: int | None) -> Received:
    """A body of at most :data:`SMALL_BODY` bytes: gathered in memory, stored in one go.

    Small files are where per-request costs show; one worker-thread hop instead of one per
    block (and two more to open and close) roughly halves the emulator's time per file.
    h11 enforces the declared Content-Length, so the body cannot grow past it.
    """
    body = bytearray()
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            body += chunk
            if limit is not None and len(body) > limit:
                raise Fault(413, f"limit: {limit}")

    def store() -> str:
        dest.write_bytes(body)
        return hashlib.md5(body).hexdigest()  # noqa: S324 - the protocol's checksum

    return Received(dest, len(body), await trio.to_thread.run_sync(store))


async def read_limited(request: Request, limit: int = MAX_DOC) -> bytes:
    body = bytearray()
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            body += chunk
            if len(body) > limit:
                raise Fault(413, f"InvalidArgument: document exceeds {limit} bytes")
    return bytes(body)


def digest_header(md5_hex: str) -> str:
    return "md5=" + base64.b64encode(bytes.fromhex(md5_hex)).decode()


def parse_digest(value: str | None) -> str | None:
    """The hex MD5 in a ``Digest: md5=<base64>`` header (None if absent or another algo)."""
    if not value:
        return None
    for part in value.split(","):
        algo, _, b64 = part.strip().partition("=")
        if algo.lower() == "md5":
            try:
                return base64.b64decode(b64.strip()).hex()
            except ValueError:
                raise Fault(400, f"InvalidArgument: bad Digest header: {value}") from None
    return None


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``bytes=a-`` range as (start, end inclusive), minoc-style.

    Several ranges or other units are ignored (whole body); ``bytes=-N`` is mis-read as
    ``0-N`` as minoc does. Start beyond the end is a 416.
    """
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not m:
        return None
    a, b = m.group(1), m.group(2)
    start = int(a) if a else 0
    end = int(b) if b else size - 1
    if start >= size:
        raise Fault(416, "RangeNotSatisfiable", {"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


# -- the service -----------------------------------------------------------------------


class VOSpaceHTTP:
    """The HTTP face of one service (arc or vault); vault also owns the minoc app."""

    def __init__(self, name: str, config: EmulatorConfig, store: Store) -> None:
        self.space = Space(FLAVOURS[name], config, store)
        self.config = config
        self.store = store
        self.name = name
        self.signer = Signer(config.root)
        self.app: ASGIApp = self._asgi(self._dispatch)
        self.minoc_app: ASGIApp = self._asgi(self._minoc)

    # -- plumbing --------------------------------------------------------------------

    def _asgi(self, handler: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            request = Request(scope, receive)
            try:
                response = await handler(request)
            except Fault as fault:
                response = fault.response()
            except vxml.UnknownNodeType as exc:
                response = Fault(400, f"TypeNotSupported: {exc}").response()
            except vxml.XMLError as exc:
                response = Fault(400, f"InvalidArgument: invalid XML: {exc}").response()
            await response(scope, receive, send)

        return app

    def base(self, request: Request) -> str:
        """This service's external base URL (e.g. http://host:port/arc)."""
        return str(request.base_url).rstrip("/")

    def site(self, request: Request) -> str:
        return self.base(request).rsplit("/", 1)[0]

    async def _dispatch(self, request: Request) -> Response:
        path = service_raw_path(request)
        head, _, rest = path.lstrip("/").partition("/")
        method = request.method
        if head == "capabilities" and method in ("GET", "HEAD"):
            return Response(
                vospace_capabilities_xml(self.base(request), self.name), 200, media_type=XML
            )
        if head == "availability" and method in ("GET", "HEAD"):
            return Response(
                availability_xml(f"{self.name} emulator available"), 200, media_type=XML
            )
        user = identify(request, self.config)
        if head == "nodes":
            return await self._nodes(request, user, rest)
        if head == "files":
            return await self._files(request, user, rest)
        if head == "synctrans":
            return await self._synctrans(request, user)
        if head == "transfers":
            return await self._transfers(request, user, rest)
        if head == "xfer":
            return await self._xfer(request, user, rest)
        if head == "async-delete":
            return await self._async_delete(request, user, rest)
        return PlainTextResponse("not found\n", 404)

    # -- /nodes ----------------------------------------------------------------------

    async def _nodes(self, request: Request, user: User | None, raw: str) -> Response:
        path = split_raw_path(raw, self.space.flavour)
        method = request.method
        if method in ("GET", "HEAD"):
            return self._get_node(request, user, path)
        if method == "PUT":
            node = vxml.parse_node(await read_limited(request))
            rec = self.space.create(path, node, user)
            return Response(self._node_xml(rec, user), 201, media_type=XML)
        if method == "POST":
            node = vxml.parse_node(await read_limited(request))
            rec = self.space.update(path, node, user)
            return Response(self._node_xml(rec, user), 200, media_type=XML)
        if method == "DELETE":
            self.space.delete(path, user)
            return Response(b"", 200)
        return PlainTextResponse(f"unsupported: HTTP {method}\n", 400)

    def _node_xml(self, rec: NodeRecord, user: User | None, detail: str = "properties") -> bytes:
        return vxml.node_to_xml(
            self.space.to_node(rec, user, detail=detail), detail=detail != "min"
        )

    def _get_node(self, request: Request, user: User | None, path: str) -> Response:
        q = request.query_params
        if q.get("view") == "data":
            files = self.base(request) + "/files/" + quote(path)
            return RedirectResponse(files, 303)
        for key in ("sort", "order"):
            if key in q:
                raise Fault(400, f"{'sort by' if key == 'sort' else 'sort order'} {q[key]}")
        if q.get("Accept", XML) not in (XML, "application/xml"):
            raise errors.invalid(f"unsupported output format: {q.get('Accept')}")
        detail = q.get("detail", "properties")
        if detail not in ("min", "max", "properties"):
            raise errors.invalid(f"invalid detail: {detail}")
        limit: int | None = None
        if "limit" in q:
            try:
                limit = int(q["limit"])
            except ValueError:
                limit = -1
            if limit < 0:
                raise errors.invalid("value for limit must be a positive integer.")
            limit = min(limit, 2**31 - 1)  # the servers' SQL LIMIT is a 32-bit int
        rec = self.space.resolve(path, user)
        if rec.type is not NodeType.CONTAINER and not self.space.can_read(rec, user):
            parent = self.store.get(self.name, rec.parent or "")
            if parent is None or not self.space.can_read(parent, user):
                raise errors.denied(self.space.uri(path))
        node = self.space.to_node(rec, user, detail=detail)
        if rec.type is NodeType.CONTAINER and node.children is not None:
            node.children = self._children(request, user, rec, limit)
        return Response(vxml.node_to_xml(node, detail=detail != "min"), 200, media_type=XML)

    def _children(
        self, request: Request, user: User | None, rec: NodeRecord, limit: int | None
    ) -> list[Node]:
        q = request.query_params
        detail = q.get("detail", "properties")
        if limit == 0 or not self.space.can_read(rec, user):
            return []
        start = None
        if "uri" in q:
            if not self.space.flavour.paged:
                raise Fault(
                    400,
                    "OptionNotSupported: batch container node listing: "
                    "limit ignored, resume not implemented",
                )
            try:
                child_path = self.space.path_of(q["uri"])
            except Fault:
                child_path = None
            if child_path is None or child_path.rpartition("/")[0] != rec.path or not child_path:
                raise Fault(
                    400,
                    f"InvalidURI: uri parameter ({q['uri']}) not a child of "
                    f"target uri ({self.space.uri(rec.path)})",
                )
            start = child_path.rpartition("/")[2]
        if not self.space.flavour.paged:
            limit = None
        self.space.reconcile(rec)
        rows = self.store.children(self.name, rec.path, start=start, limit=limit)
        return [self.space.to_node(c, user, detail=detail) for c in rows]

    # -- /files ----------------------------------------------------------------------

    async def _files(self, request: Request, user: User | None, raw: str) -> Response:
        if raw.startswith("preauth:"):
            token, _, raw = raw[len("preauth:") :].partition("/")
            claims = self.signer.verify(token)
            want = "w" if request.method == "PUT" else "r"
            if claims is None or claims.get("g") != want or claims.get("s") != self.name:
                raise errors.denied("invalid or expired pre-authorisation")
            user = self.config.user_named(str(claims["u"]))
        path = split_raw_path(raw, self.space.flavour)
        if request.method in ("GET", "HEAD"):
            return await self._files_get(request, user, path)
        if request.method == "PUT" and self.space.flavour.files_put:
            return await self._files_put(request, user, path)
        return PlainTextResponse(f"unsupported: HTTP {request.method}\n", 400)

    def _readable_data(self, user: User | None, path: str) -> NodeRecord:
        rec = self.space.resolve(path, user, follow_last=True)
        if rec.type is NodeType.CONTAINER:
            raise Fault(400, "GET for directories not supported")
        if not self.space.can_read(rec, user):
            raise errors.denied(self.space.uri(path))
        return rec

    def _byte_headers(self, rec: NodeRecord) -> dict[str, str]:
        h = {
            "Content-Disposition": f'inline; filename="{quote(rec.name)}"',
            "Content-Type": content_type(rec.props.get("ivo://ivoa.net/vospace/core#type")),
            "Last-Modified": http_date(rec.date),
        }
        if rec.md5:
            h["Digest"] = digest_header(rec.md5)
        return h

    async def _files_get(self, request: Request, user: User | None, path: str) -> Response:
        rec = self._readable_data(user, path)
        if rec.length == 0:
            return Response(b"", 204, headers=self._byte_headers(rec))
        if self.name == "vault":
            url = self._minoc_url(request, rec, user, "r")
            if request.url.query:
                url += "?" + request.url.query
            if request.method == "HEAD":
                h = self._byte_headers(rec)
                h["Content-Length"] = str(rec.length)
                h["Accept-Ranges"] = "bytes"
                return Response(b"", 200, headers=h)
            return RedirectResponse(url, 303)
        return self._stream(request, rec, ranges=False)

    def _stream(self, request: Request, rec: NodeRecord, *, ranges: bool) -> Response:
        size = rec.length
        headers = self._byte_headers(rec)
        disk = self.store.data_path(rec)
        rng = parse_range(request.headers.get("range"), size) if ranges else None
        if ranges:
            headers["Accept-Ranges"] = "bytes"
        if rng is None:
            start, length, status = 0, size, 200
        else:
            start, length, status = rng[0], rng[1] - rng[0] + 1, 206
            headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(b"", status, headers=headers)
        return StreamingResponse(FileChunks(disk, start, length), status, headers=headers)

    async def _files_put(self, request: Request, user: User | None, path: str) -> Response:
        parent_path = path.rpartition("/")[0]
        try:
            parent = self.space.resolve(parent_path, user, follow_last=True)
        except Fault as fault:
            if fault.status == 404:
                raise Fault(404, f"not found: parent container {parent_path}") from None
            raise
        if parent.type is not NodeType.CONTAINER:
            raise Fault(400, f"parent is not a container node: {parent_path}")
        name = path.rpartition("/")[2]
        real = f"{parent.path}/{name}" if parent.path else name
        rec = self.store.get(self.name, real)
        if rec is not None and rec.type is not NodeType.DATA:
            raise Fault(400, "not a data node")
        allowed = rec is not None and self.space.can_write(rec, user)
        parent_ok = self.space.can_write(parent, user) and not self.space.locked(parent)
        if not (allowed or parent_ok):
            raise errors.denied(self.space.uri(path))
        if user is None:
            raise errors.denied(self.space.uri(path))
        return await self._accept_bytes(request, user, parent, real, rec, files_api=True)

    async def _accept_bytes(
        self,
        request: Request,
        user: User,
        parent: NodeRecord,
        real: str,
        rec: NodeRecord | None,
        *,
        files_api: bool,
    ) -> Response:
        """Receive a body for the data node at ``real``, check quota and Digest, store."""
        declared = request.headers.get("content-length")
        replacing = rec.length if rec is not None else 0
        left = self.space.remaining(real)
        if declared is not None and declared.isdigit():
            self.space.check_quota(real, int(declared), replacing, files_api=True, left=left)
        limit = None if left is None else left + replacing
        want_md5 = parse_digest(request.headers.get("digest"))
        tmp = self.store.temp_path()
        try:
            got = await receive_body(request, tmp, limit)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if rec is not None:  # an interrupted overwrite leaves an empty file, as arc does
                await self._truncate(rec)
            raise
        if not files_api and got.length == 0:
            tmp.unlink(missing_ok=True)
            raise Fault(400, "invalid input: no content")
        if want_md5 is not None and want_md5 != got.md5_hex:
            tmp.unlink(missing_ok=True)
            if rec is not None:
                await self._truncate(rec)
            raise Fault(412, f"checksum mismatch: md5:{want_md5} != md5:{got.md5_hex}")
        if rec is None:  # another PUT may have made it while this body arrived: it wins
            rec = self.store.get(self.name, real)
        if rec is None:
            rec = self.space.create(real, Node(uri=self.space.uri(real), type=NodeType.DATA), user)
        disk = self.store.data_path(rec)
        await trio.to_thread.run_sync(os.replace, tmp, disk)
        ctype = request.headers.get("content-type")
        if ctype and files_api:
            rec.props["ivo://ivoa.net/vospace/core#type"] = ctype.split(";")[0].strip()
            self.store.save_props(rec)
        self.store.save_bytes(rec, got.length, got.md5_hex)
        return Response(
            b"", 201, headers={"Digest": digest_header(got.md5_hex), "Content-Length": "0"}
        )

    async def _truncate(self, rec: NodeRecord) -> None:
        disk = self.store.data_path(rec)
        await trio.to_thread.run_sync(lambda: open(disk, "wb").close())
        self.store.save_bytes(rec, 0, None)

    # -- minoc (vault storage) -------------------------------------------------------

    def _minoc_url(self, request: Request, rec: NodeRecord, user: User | None, grant: str) -> str:
        self.store.data_path(rec)  # assigns the blob id
        token = self.signer.sign(
            {
                "s": self.name,
                "b": rec.blob or "",
                "g": grant,
                "u": user.name if user else "",
                "exp": trio_wallclock() + PREAUTH_TTL,
            }
        )
        return f"{self.site(request)}/minoc/files/preauth:{token}/cadc:vault/{rec.blob}"

    def _arc_preauth_url(self, request: Request, path: str, user: User | None, grant: str) -> str:
        token = self.signer.sign(
            {
                "s": self.name,
                "g": grant,
                "u": user.name if user else "",
                "exp": trio_wallclock() + PREAUTH_TTL,
            }
        )
        return f"{self.base(request)}/files/preauth:{token}/{quote(path)}"

    async def _minoc(self, request: Request) -> Response:
        raw = service_raw_path(request).lstrip("/")
        m = re.fullmatch(r"files/preauth:([^/]+)/cadc:vault/([0-9a-f]+)(?::fo/.*)?", raw)
        if not m:
            return PlainTextResponse("not found\n", 404)
        claims = self.signer.verify(m.group(1))
        want = "w" if request.method == "PUT" else "r"
        if claims is None or claims.get("g") != want or claims.get("b") != m.group(2):
            raise errors.denied("invalid or expired pre-authorisation")
        row = self.store.db.execute(
            "SELECT path FROM nodes WHERE service='vault' AND blob=?", (m.group(2),)
        ).fetchone()
        rec = self.store.get("vault", row["path"]) if row else None
        if rec is None:
            raise Fault(404, f"not found: cadc:vault/{m.group(2)}")
        if request.method in ("GET", "HEAD"):
            if rec.length == 0:
                return Response(b"", 204)
            return self._stream(request, rec, ranges=True)
        if request.method == "PUT":
            user = self.config.user_named(str(claims.get("u")))
            if user is None:
                raise errors.denied("unknown user in pre-authorisation")
            parent = self.store.get("vault", rec.parent or "")
            assert parent is not None
            return await self._accept_bytes(request, user, parent, rec.path, rec, files_api=False)
        return PlainTextResponse(f"unsupported: HTTP {request.method}\n", 400)

    # -- negotiation -----------------------------------------------------------------

    def _negotiate(self, request: Request, user: User | None, t: Transfer) -> list[Protocol]:
        """Endpoints for a pull or push; raises Fault with the job error text."""
        path = self.space.path_of(t.target)
        if t.direction == "pullFromVoSpace":
            rec = self._readable_data(user, path)
            return self._endpoints(request, rec, user, t, "r")
        if t.direction == "pushToVoSpace":
            if user is None:
                raise errors.denied(self.space.uri(path))
            parent = self.space.resolve_parent(path, user)
            name = path.rpartition("/")[2]
            real = f"{parent.path}/{name}" if parent.path else name
            existing = self.store.get(self.name, real)
            if existing is None:
                rec = self.space.create(
                    real, Node(uri=self.space.uri(real), type=NodeType.DATA), user
                )
            else:
                rec = existing
            if rec.type is not NodeType.DATA:
                raise Fault(400, "target is not a data node")
            if not self.space.can_write(rec, user) or self.space.locked(rec):
                raise errors.denied(self.space.uri(path))
            if t.length is not None:
                self.space.check_quota(real, t.length, rec.length)
            return self._endpoints(request, rec, user, t, "w")
        raise errors.invalid(f"unsupported direction: {t.direction}")

    def _endpoints(
        self, request: Request, rec: NodeRecord, user: User | None, t: Transfer, grant: str
    ) -> list[Protocol]:
        wanted = {HTTPS_GET, HTTP_GET} if grant == "r" else {HTTPS_PUT, HTTP_PUT}
        out: list[Protocol] = []
        for p in t.protocols or [Protocol(uri=HTTPS_GET if grant == "r" else HTTPS_PUT)]:
            if p.uri not in wanted:
                continue
            if self.name == "vault":
                out.append(Protocol(uri=p.uri, endpoint=self._minoc_url(request, rec, user, grant)))
            elif p.security_method in (None, ""):
                out.append(
                    Protocol(
                        uri=p.uri, endpoint=self._arc_preauth_url(request, rec.path, user, grant)
                    )
                )
            elif p.security_method in (SM_TOKEN, SM_CERT):
                out.append(
                    Protocol(
                        uri=p.uri,
                        endpoint=self.base(request) + "/files/" + quote(rec.path),
                        security_method=p.security_method,
                    )
                )
        if not out:
            raise Fault(400, "requested transfer specs not supported")
        return out

    async def _synctrans(self, request: Request, user: User | None) -> Response:
        params = dict(request.query_params)
        ctype = request.headers.get("content-type", "")
        body = await read_limited(request)
        if not params and body and "form" in ctype:
            params = {k: v[0] for k, v in _parse_form(body).items()}
        upper = {k.upper(): v for k, v in params.items()}
        if "TARGET" in upper:
            return self._synctrans_params(request, user, upper)
        if request.method != "POST":
            raise errors.invalid("missing TARGET")
        transfer = vxml.parse_transfer(body)
        job = self.store.new_job(self.name, "sync", user.name if user else "", body)
        try:
            protocols = self._negotiate(request, user, transfer)
            job.phase = JobPhase.EXECUTING.value
            details = transfer.model_copy(update={"protocols": protocols, "length": None})
        except Fault as fault:
            job.phase, job.error = JobPhase.ERROR.value, fault.text
            details = transfer.model_copy(update={"protocols": [], "length": None})
        job.results = {"transferDetails": vxml.transfer_to_xml(details).decode()}
        self.store.save_job(job)
        return RedirectResponse(
            f"{self.base(request)}/transfers/{job.id}/results/transferDetails", 303
        )

    def _synctrans_params(
        self, request: Request, user: User | None, upper: dict[str, str]
    ) -> Response:
        direction = upper.get("DIRECTION", "")
        proto = upper.get("PROTOCOL", HTTPS_GET if direction == "pullFromVoSpace" else HTTPS_PUT)
        sm = upper.get("SECURITYMETHOD") or None
        t = Transfer(
            target=upper["TARGET"],
            direction=direction,
            protocols=[Protocol(uri=proto, security_method=sm)],
        )
        protocols = self._negotiate(request, user, t)
        return RedirectResponse(protocols[0].endpoint or "", 303)

    async def _xfer(self, request: Request, user: User | None, rest: str) -> Response:
        job = self._job(rest.strip("/"), user)
        details = job.results.get("transferDetails")
        if details is None:
            raise Fault(404, f"not found: transfer details for {job.id}")
        return Response(details.encode(), 200, media_type=XML)

    # -- UWS jobs --------------------------------------------------------------------

    def _job(self, job_id: str, user: User | None) -> JobRecord:
        job = self.store.get_job(self.name, job_id)
        if job is None or (job.owner and (user is None or user.name != job.owner)):
            raise Fault(404, f"not found: {job_id}")
        return job

    def _job_xml(self, request: Request, job: JobRecord) -> bytes:
        results = {k: v for k, v in job.results.items() if k != "transferDetails"}
        if "transferDetails" in job.results:
            results["transferDetails"] = f"{self.base(request)}/xfer/{job.id}"
        return vxml.job_to_xml(
            Job(job_id=job.id, phase=JobPhase(job.phase), error=job.error, results=results),
            owner=job.owner,
            created=job.created,
            job_info=self._job_info(job),
        )

    @staticmethod
    def _job_info(job: JobRecord) -> bytes | None:
        """The job's request as a clean transfer document (never the raw bytes, which
        may be in another encoding or carry a byte-order mark)."""
        if job.kind == "delete" or not job.request:
            return None
        try:
            return vxml.transfer_to_xml(vxml.parse_transfer(job.request))
        except vxml.XMLError:
            return None

    async def _transfers(self, request: Request, user: User | None, rest: str) -> Response:
        parts = [p for p in rest.split("/") if p]
        if not parts:
            if request.method != "POST":
                return PlainTextResponse(f"unsupported: HTTP {request.method}\n", 400)
            body = await read_limited(request)
            transfer = vxml.parse_transfer(body)
            if user is None:
                raise errors.denied("anonymous transfers")
            job = self.store.new_job(self.name, "move", user.name, body)
            if request.query_params.get("PHASE", "").upper() == "RUN":
                self._run_move(job, transfer, user)
            return RedirectResponse(f"{self.base(request)}/transfers/{job.id}", 303)
        return await self._job_resource(request, user, parts, self._run_move_job)

    def _run_move_job(self, job: JobRecord, user: User | None) -> None:
        self._run_move(job, vxml.parse_transfer(job.request or b""), user)

    def _run_move(self, job: JobRecord, t: Transfer, user: User | None) -> None:
        try:
            if not t.is_move:
                raise errors.invalid(f"not a move: direction {t.direction}")
            if t.keep_bytes:
                raise Fault(405, "copyNode is not implemented")
            dest = self.space.move(t.target, t.direction, user)
            job.phase, job.results = JobPhase.COMPLETED.value, {"destination": dest}
        except Fault as fault:
            job.phase, job.error = JobPhase.ERROR.value, fault.text
        self.store.save_job(job)

    async def _job_resource(
        self,
        request: Request,
        user: User | None,
        parts: list[str],
        run: Callable[[JobRecord, User | None], None],
    ) -> Response:
        job = self._job(parts[0], user)
        sub = parts[1] if len(parts) > 1 else ""
        if sub == "" and request.method == "GET":
            return Response(self._job_xml(request, job), 200, media_type=XML)
        if sub == "phase" and request.method == "GET":
            return PlainTextResponse(job.phase)
        if sub == "phase" and request.method == "POST":
            body = await read_limited(request)
            form = {k.upper(): v[0].upper() for k, v in _parse_form(body).items()}
            phase = form.get("PHASE") or request.query_params.get("PHASE", "").upper()
            if phase == "RUN" and job.phase == JobPhase.PENDING.value:
                run(job, user)
            elif phase == "ABORT" and JobPhase(job.phase).active:
                job.phase = JobPhase.ABORTED.value
                self.store.save_job(job)
            elif phase not in ("RUN", "ABORT"):
                raise errors.invalid(f"invalid phase: {phase}")
            return RedirectResponse(f"{self.base(request)}/{self._kind_path(job)}/{job.id}", 303)
        if sub == "error" and request.method == "GET":
            if not job.error:
                raise Fault(404, "no error")
            return PlainTextResponse(job.error + "\n")
        if sub == "results" and len(parts) > 2 and parts[2] == "transferDetails":
            return RedirectResponse(f"{self.base(request)}/xfer/{job.id}", 303)
        if sub == "results" and request.method == "GET":
            return Response(self._job_xml(request, job), 200, media_type=XML)
        return PlainTextResponse("not found\n", 404)

    def _kind_path(self, job: JobRecord) -> str:
        return "async-delete" if job.kind == "delete" else "transfers"

    async def _async_delete(self, request: Request, user: User | None, rest: str) -> Response:
        parts = [p for p in rest.split("/") if p]
        if parts:
            return await self._job_resource(request, user, parts, self._run_delete)
        if request.method != "POST":
            return PlainTextResponse(f"unsupported: HTTP {request.method}\n", 400)
        form = {k.lower(): v[0] for k, v in _parse_form(await read_limited(request)).items()}
        form.update({k.lower(): v for k, v in request.query_params.items()})
        target = form.get("target")
        if not target:
            raise errors.invalid("missing target")
        if user is None:
            raise errors.denied(target)
        self.space.path_of(target)
        job = self.store.new_job(self.name, "delete", user.name, target.encode())
        if form.get("phase", "").upper() == "RUN":
            self._run_delete(job, user)
        return RedirectResponse(f"{self.base(request)}/async-delete/{job.id}", 303)

    def _run_delete(self, job: JobRecord, user: User | None) -> None:
        try:
            ok, failed = self.space.delete_tree(
                self.space.path_of((job.request or b"").decode()), user
            )
            job.phase = JobPhase.COMPLETED.value
            job.results = {"successcount": f"final:{ok}", "errorcount": f"final:{failed}"}
        except Fault as fault:
            job.phase, job.error = JobPhase.ERROR.value, fault.text
        self.store.save_job(job)


def _parse_form(body: bytes) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    try:
        return parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise errors.invalid("form body is not UTF-8") from None


def build_vospace(name: str, config: EmulatorConfig, store: Store) -> VOSpaceHTTP:
    """The arc or vault service (vault's ``minoc_app`` serves its bytes)."""
    return VOSpaceHTTP(name, config, store)

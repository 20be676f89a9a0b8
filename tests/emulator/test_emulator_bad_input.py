"""Hostile and malformed input: refused with a 4xx, never a 5xx, and nothing is harmed.

After every attack the emulator must still answer, the bytes written before it (the
"canaries", on arc and on vault) must be intact byte for byte, and nothing may have been
created outside the emulator's ``--root``. Requests go through the in-process app; a
client that does not re-raise app exceptions turns a crash into the 500 a real server
would send, so the assertion messages show the status. Literal ``..`` segments, which
HTTP clients normalise away, are sent as raw ASGI requests; one test repeats the worst of
it over a real socket.
"""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes
from xml.sax.saxutils import escape

import httpx2
import pytest
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from canfarfs.emulator.app import Emulator
from canfarfs.vospace import props
from canfarfs.vospace.xml import (
    MAX_NODE_DOC,
    VOS_NS,
    XSI_NS,
    parse_job,
    parse_node,
    parse_transfer,
)
from tests.emulator_util import BASE, TOKEN, LiveEmulator
from tests.fuzz_util import (
    HOMES,
    HTTPS_PUT,
    SERVICES,
    bodies,
    escape_text,
    names,
    node_doc,
    node_documents,
    transfer_documents,
    uri,
)


def in_process_client(emulator: Emulator) -> httpx2.AsyncClient:
    """Like conftest's client, but an app exception comes back as a 500 response."""
    transport = httpx2.ASGITransport(app=emulator.app, raise_app_exceptions=False)
    return httpx2.AsyncClient(
        transport=transport, base_url=BASE, headers={"Authorization": f"Bearer {TOKEN}"}
    )


@pytest.fixture
async def safe_client(emulator: Emulator) -> AsyncIterator[httpx2.AsyncClient]:
    async with in_process_client(emulator) as c:
        yield c


# -- what must survive ------------------------------------------------------------------


@dataclass
class Canaries:
    """Files written before the attacks, and the state of the disk around ``--root``."""

    root: Path
    files: dict[tuple[str, str], bytes]
    outside: set[Path]
    blobs: dict[Path, str]

    async def check(self, client: httpx2.AsyncClient) -> None:
        """The service answers, every canary reads back identical, nothing leaked out."""
        for service in SERVICES:
            r = await client.get(f"/{service}/nodes/{HOMES[service]}")
            assert r.status_code == 200, f"{service} listing after the attack: {r.status_code}"
        for (service, name), data in self.files.items():
            node = await client.get(f"/{service}/nodes/{HOMES[service]}/{name}")
            assert node.status_code == 200, (service, name, node.text)
            assert parse_node(node.content).prop(props.MD5) == md5_hex(data)
            got = await client.get(
                f"/{service}/files/{HOMES[service]}/{name}", follow_redirects=True
            )
            assert got.status_code == 200, (service, name, got.status_code)
            assert got.content == data, f"{service}:{name} changed"
        assert outside_root(self.root) == self.outside, "something was written outside --root"
        for path, digest in self.blobs.items():
            assert path.exists(), f"{path} vanished"
            assert md5_hex(path.read_bytes()) == digest, f"{path} changed on disk"
        assert_confined(self.root)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the protocol's checksum


def outside_root(root: Path) -> set[Path]:
    """Everything in the directory holding ``--root``, except ``--root`` itself."""
    return {p for p in root.parent.rglob("*") if p != root and root not in p.parents}


def assert_confined(root: Path) -> None:
    """No entry under ``--root`` is, or points, outside it."""
    real_root = root.resolve()
    for p in root.rglob("*"):
        assert real_root in p.resolve().parents, f"{p} resolves outside --root"


async def upload(client: httpx2.AsyncClient, service: str, name: str, data: bytes) -> None:
    r = await client.post(
        f"/{service}/synctrans",
        params={"TARGET": uri(service, name), "DIRECTION": "pushToVoSpace", "PROTOCOL": HTTPS_PUT},
    )
    assert r.status_code == 303, r.text
    put = await client.put(r.headers["location"], content=data)
    assert put.status_code == 201, put.text


@pytest.fixture
def canaries(emulator: Emulator) -> Canaries:
    """Known files on both services (written over HTTP) and a snapshot of the disk."""
    root = emulator.config.root
    files = {
        ("arc", "canary.bin"): os.urandom(70_000),
        ("arc", "keep/nested.txt"): b"nested canary\n",
        ("vault", "canary.bin"): os.urandom(70_000),
    }
    (root.parent / "secret.txt").write_text("TOP-SECRET-OUTSIDE-ROOT\n")

    async def write() -> None:
        async with in_process_client(emulator) as c:
            mk = await c.put(
                "/arc/nodes/home/alice/keep",
                content=node_doc(uri("arc", "keep"), "ContainerNode", "<vos:nodes/>"),
            )
            assert mk.status_code == 201, mk.text
            for (service, name), data in files.items():
                await upload(c, service, name, data)

    trio.run(write)
    blobs = {
        p: md5_hex(p.read_bytes())
        for sub in ("arc", "vault-blobs")
        for p in (root / sub).rglob("*")
        if p.is_file()
    }
    assert len(blobs) == len(files)
    return Canaries(root, files, outside_root(root), blobs)


# -- raw ASGI requests (paths that clients would normalise) --------------------------------


async def raw_request(
    emulator: Emulator, method: str, raw_path: bytes, body: bytes = b""
) -> tuple[int, bytes]:
    """Call the app with ``raw_path`` exactly as given; an app exception counts as 500."""
    path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "server": ("emu.invalid", 80),
        "client": ("127.0.0.1", 40000),
        "headers": [
            (b"host", b"emu.invalid"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    sent = False
    status = 0
    out = bytearray()

    async def receive() -> dict[str, object]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, object]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])  # type: ignore[call-overload]
        elif message["type"] == "http.response.body":
            out.extend(message.get("body", b""))  # type: ignore[arg-type]

    try:
        await emulator.app(scope, receive, send)  # type: ignore[arg-type]
    except Exception:  # the server would answer 500
        return 500, bytes(out)
    return status, bytes(out)


# -- malformed and hostile documents ---------------------------------------------------------

MALFORMED = {
    "empty": b"",
    "not-xml": b"this is not XML",
    "truncated": node_doc(uri("arc", "x")).encode()[:60],
    "mismatched-tags": b"<a><b></a></b>",
    "two-roots": b"<a/><b/>",
    "binary": bytes(range(256)),
    "unknown-encoding-decl": b'<?xml version="1.0" encoding="no-such-codec"?><a/>',
    "multibyte-encoding-decl": b'<?xml version="1.0" encoding="utf-32"?><a/>',
    "wrong-root": f'<vos:transfer xmlns:vos="{VOS_NS}"/>'.encode(),
    "no-namespace": b'<node uri="vos://cadc.nrc.ca~arc/home/alice/x" type="DataNode"/>',
    "no-uri": f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}" '
    f'xsi:type="vos:DataNode"/>'.encode(),
    "property-without-uri": node_doc(
        uri("arc", "x"),
        "DataNode",
        "<vos:properties><vos:property>v</vos:property></vos:properties>",
    ).encode(),
    "link-without-target": node_doc(uri("arc", "x"), "LinkNode").encode(),
    "nul-char-ref": node_doc(
        uri("arc", "x"),
        "DataNode",
        f'<vos:properties><vos:property uri="{props.TYPE}">&#0;</vos:property></vos:properties>',
    ).encode(),
    "undefined-entity": node_doc(
        uri("arc", "x"),
        "DataNode",
        f'<vos:properties><vos:property uri="{props.TYPE}">&nope;</vos:property></vos:properties>',
    ).encode(),
}

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<vos:node xmlns:vos="http://www.ivoa.net/xml/VOSpace/v2.0"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  uri="vos://cadc.nrc.ca~SERVICE/HOME/bomb" xsi:type="vos:DataNode">
  <vos:properties>
    <vos:property uri="ivo://ivoa.net/vospace/core#description">&lol9;</vos:property>
  </vos:properties>
</vos:node>
"""


def xxe_documents(service: str, secret: Path) -> dict[str, bytes]:
    head = (
        f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}" '
        f'uri="{uri(service, "xxe")}" xsi:type="vos:DataNode"><vos:properties>'
        f'<vos:property uri="{props.CORE}description">'
    )
    tail = "</vos:property></vos:properties></vos:node>"
    return {
        "general-entity": (
            f'<?xml version="1.0"?><!DOCTYPE n [<!ENTITY x SYSTEM '
            f'"file://{secret}">]>{head}&x;{tail}'
        ).encode(),
        "parameter-entity": (
            f'<?xml version="1.0"?><!DOCTYPE n [<!ENTITY % p SYSTEM '
            f'"file://{secret}"> %p;]>{head}x{tail}'
        ).encode(),
        "external-dtd": (
            f'<?xml version="1.0"?><!DOCTYPE n SYSTEM "file://{secret}">{head}x{tail}'
        ).encode(),
        "xinclude": (
            f'{head}<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            f'href="file://{secret}" parse="text"/>{tail}'
        ).encode(),
    }


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("method", ["PUT", "POST"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_node_documents_are_400(
    safe_client: httpx2.AsyncClient, canaries: Canaries, service: str, method: str, case: str
) -> None:
    target = "x" if method == "PUT" else "canary.bin"
    body = MALFORMED[case].replace(b"~arc/home/alice", f"~{service}/{HOMES[service]}".encode())
    r = await safe_client.request(
        method, f"/{service}/nodes/{HOMES[service]}/{target}", content=body
    )
    assert r.status_code == 400, f"{case}: {r.status_code} {r.text}"
    assert r.text.startswith(("InvalidArgument", "TypeNotSupported")), r.text
    assert (await safe_client.get(f"/{service}/nodes/{HOMES[service]}/x")).status_code == 404
    await canaries.check(safe_client)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_entity_expansion_bomb_is_refused_quickly(
    safe_client: httpx2.AsyncClient, canaries: Canaries, service: str, method: str
) -> None:
    body = BILLION_LAUGHS.replace(b"SERVICE", service.encode()).replace(
        b"HOME", HOMES[service].encode()
    )
    started = time.monotonic()
    r = await safe_client.request(method, f"/{service}/nodes/{HOMES[service]}/bomb", content=body)
    assert time.monotonic() - started < 2.0, "the entities were expanded"
    assert r.status_code == 400, r.text
    assert r.text.startswith("InvalidArgument")
    assert len(r.content) < 4096
    await canaries.check(safe_client)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_external_entities_are_refused_and_read_nothing(
    safe_client: httpx2.AsyncClient, canaries: Canaries, service: str, method: str
) -> None:
    secret = canaries.root.parent / "secret.txt"
    for case, body in xxe_documents(service, secret).items():
        r = await safe_client.request(
            method, f"/{service}/nodes/{HOMES[service]}/xxe", content=body
        )
        if case == "xinclude":  # no DTD at all: XInclude is simply not processed
            assert r.status_code in (201, 404), f"{case}: {r.status_code} {r.text}"
        else:
            assert r.status_code == 400, f"{case}: {r.status_code} {r.text}"
        assert "TOP-SECRET" not in r.text, f"{case} leaked the file"
        got = await safe_client.get(f"/{service}/nodes/{HOMES[service]}/xxe")
        assert "TOP-SECRET" not in got.text, f"{case} stored the file"
        await safe_client.delete(f"/{service}/nodes/{HOMES[service]}/xxe")
    await canaries.check(safe_client)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "xsi_type",
    [
        "vos:FancyNode",
        "vos:Node",
        "vos:containernode",
        "other:ContainerNode",
        "vos:",
        "",
        "xs:string",
    ],
)
async def test_unknown_node_types_are_type_not_supported(
    safe_client: httpx2.AsyncClient, canaries: Canaries, service: str, xsi_type: str
) -> None:
    doc = (
        f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}" xmlns:other="urn:other" '
        f'xmlns:xs="http://www.w3.org/2001/XMLSchema" uri="{uri(service, "typed")}" '
        f'xsi:type="{xsi_type}"/>'
    )
    for method in ("PUT", "POST"):
        name = "typed" if method == "PUT" else "canary.bin"
        doc_for = doc.replace(uri(service, "typed"), uri(service, name))
        r = await safe_client.request(
            method, f"/{service}/nodes/{HOMES[service]}/{name}", content=doc_for
        )
        assert r.status_code == 400, f"{method} {xsi_type!r}: {r.status_code} {r.text}"
        assert r.text.startswith("TypeNotSupported"), r.text
    await canaries.check(safe_client)


# -- paths --------------------------------------------------------------------------------

ESCAPES = [
    "..",
    "../..",
    "../../../../../../escape",
    "%2e%2e",
    "%2E%2E/%2e%2e/%2e%2e/escape",
    "..%2F..%2F..%2Fescape",
    "%2F..%2F..%2Fescape",
    "a%2Fb",
    "%2Fescape",
    ".",
    "./escape",
    "%2e",
    "a//b",
    "%00",
    "a%00b",
    "escape%00.txt",
    "%FF",
    "%C3%28",
    "%ED%A0%80",
    "%C0%AE%C0%AE",
    "%01",
]


def escape_paths(service: str) -> list[bytes]:
    return [f"/{service}/nodes/{HOMES[service]}/{e}".encode() for e in ESCAPES]


@pytest.mark.parametrize("service", SERVICES)
async def test_paths_that_try_to_escape_are_400(
    emulator: Emulator, safe_client: httpx2.AsyncClient, canaries: Canaries, service: str
) -> None:
    seen = []
    for raw in escape_paths(service):
        name = raw.decode().rpartition(f"{HOMES[service]}/")[2]
        doc = node_doc(f"{uri(service)}/{name}", "ContainerNode", "<vos:nodes/>").encode()
        for method, body in (("PUT", doc), ("GET", b""), ("POST", doc), ("DELETE", b"")):
            status, text = await raw_request(emulator, method, raw, body)
            seen.append((method, raw, status))
            assert status == 400, f"{method} {raw!r}: {status} {text!r}"
        files = raw.replace(b"/nodes/", b"/files/")
        for method in ("GET", "PUT") if service == "arc" else ("GET",):
            status, text = await raw_request(emulator, method, files, b"escaped bytes")
            assert status == 400, f"{method} {files!r}: {status} {text!r}"
    assert len(seen) == 4 * len(ESCAPES)
    assert not [p for p in canaries.root.parent.rglob("*escape*")]
    await canaries.check(safe_client)


@pytest.mark.parametrize("service", SERVICES)
async def test_document_uris_that_try_to_escape_are_refused(
    safe_client: httpx2.AsyncClient, canaries: Canaries, service: str
) -> None:
    """The same tricks inside documents: node URIs, link targets, move destinations."""
    home = HOMES[service]
    for bad in ("../../escape", "%2e%2e/%2e%2e/escape", "a%2Fescape", "x%00escape"):
        r = await safe_client.put(
            f"/{service}/nodes/{home}/ok", content=node_doc(f"{uri(service)}/{bad}")
        )
        assert r.status_code == 400, f"doc uri {bad}: {r.status_code} {r.text}"

        link = node_doc(
            uri(service, "lnk"), "LinkNode", f"<vos:target>{uri(service)}/{bad}</vos:target>"
        )
        made = await safe_client.put(f"/{service}/nodes/{home}/lnk", content=link)
        assert made.status_code in (201, 400), made.text
        through = await safe_client.get(f"/{service}/files/{home}/lnk", follow_redirects=True)
        assert through.status_code in (400, 404), f"{bad}: {through.status_code}"
        await safe_client.delete(f"/{service}/nodes/{home}/lnk")

        move = (
            f'<vos:transfer xmlns:vos="{VOS_NS}"><vos:target>{uri(service, "canary.bin")}'
            f"</vos:target><vos:direction>{uri(service)}/{bad}</vos:direction>"
            "<vos:keepBytes>false</vos:keepBytes></vos:transfer>"
        )
        job = await safe_client.post(
            f"/{service}/transfers", params={"PHASE": "RUN"}, content=move, follow_redirects=True
        )
        assert job.status_code == 200, job.text
        assert "<uws:phase>ERROR</uws:phase>" in job.text

    if service == "arc":  # arc accepts file:// links; reading through one must not work
        link = node_doc(
            uri("arc", "passwd"), "LinkNode", "<vos:target>file:///etc/passwd</vos:target>"
        )
        assert (
            await safe_client.put("/arc/nodes/home/alice/passwd", content=link)
        ).status_code == 201
        through = await safe_client.get("/arc/files/home/alice/passwd")
        assert through.status_code == 400
        assert b"root:" not in through.content
    assert not [p for p in canaries.root.parent.rglob("*escape*")]
    await canaries.check(safe_client)


@pytest.mark.parametrize("service", SERVICES)
async def test_overlong_names_are_400(
    emulator: Emulator, safe_client: httpx2.AsyncClient, canaries: Canaries, service: str
) -> None:
    # arc: 255 bytes per component (POSIX); vault: 512 characters (vospace-api.md §8)
    fits, too_long = ("a" * 255, "a" * 256) if service == "arc" else ("a" * 512, "a" * 513)
    wide = "é" * 128 if service == "arc" else "é" * 513  # 256 bytes / 513 characters
    home = HOMES[service]
    r = await safe_client.put(
        f"/{service}/nodes/{home}/{fits}", content=node_doc(uri(service, fits))
    )
    assert r.status_code == 201, r.text
    for name in (too_long, wide, "b" * 100_000):  # (the last is past httpx2's URL limit)
        raw = f"/{service}/nodes/{home}/{quote(name)}".encode()
        doc = node_doc(uri(service, quote(name))).encode()
        status, text = await raw_request(emulator, "PUT", raw, doc)
        assert status in (400, 413, 414), f"PUT {len(name)} chars: {status} {text[:200]!r}"
        status, text = await raw_request(emulator, "GET", raw)
        assert status in (400, 414), f"GET {len(name)} chars: {status} {text[:200]!r}"
    await canaries.check(safe_client)


async def test_deep_paths_beyond_path_max_are_refused_not_crashed(
    safe_client: httpx2.AsyncClient, canaries: Canaries
) -> None:
    """arc keeps a directory per container; nesting past PATH_MAX must be a 4xx."""
    path = "home/alice"
    statuses = []
    for _ in range(24):  # 24 × 251 bytes is well past Linux's 4096-byte PATH_MAX
        path += "/" + "d" * 250
        r = await safe_client.put(
            f"/arc/nodes/{path}",
            content=node_doc(f"vos://cadc.nrc.ca~arc/{path}", "ContainerNode", "<vos:nodes/>"),
        )
        statuses.append(r.status_code)
        if r.status_code != 201:
            break
    assert statuses[-1] != 201, "nesting never hit a limit"
    assert 400 <= statuses[-1] < 500, (
        f"nesting ended with {statuses[-1]} after {len(statuses) - 1} levels"
    )
    await canaries.check(safe_client)


# -- size limits --------------------------------------------------------------------------


def padded_doc(service: str, name: str, size: int) -> bytes:
    """A valid node document of exactly ``size`` bytes (a long description)."""
    head = node_doc(
        uri(service, name),
        "DataNode",
        f'<vos:properties><vos:property uri="{props.CORE}description">',
    )
    tail = "</vos:property></vos:properties></vos:node>"
    head = head.removesuffix("</vos:node>")
    pad = size - len(head.encode()) - len(tail.encode())
    doc = (head + "x" * pad + tail).encode()
    assert len(doc) == size
    return doc


# The emulator leaves ``request.stream()`` unclosed when it refuses a body; that leak has
# its own test below, so it does not hide what this one checks. (httpx2's in-process
# transport likewise leaves the unread part of the request body's generator behind.)
@pytest.mark.filterwarnings(
    "ignore:Async generator 'starlette.requests.Request.stream':ResourceWarning"
)
@pytest.mark.filterwarnings("ignore:Async generator 'httpx2.:ResourceWarning")
@pytest.mark.parametrize("service", SERVICES)
async def test_node_documents_over_32_kib_are_413(
    safe_client: httpx2.AsyncClient, canaries: Canaries, service: str
) -> None:
    home = HOMES[service]
    exact = await safe_client.put(
        f"/{service}/nodes/{home}/exact", content=padded_doc(service, "exact", MAX_NODE_DOC)
    )
    assert exact.status_code == 201, "a 32 KiB document is within the limit"

    over = padded_doc(service, "over", MAX_NODE_DOC + 1)
    for method, name in (("PUT", "over"), ("POST", "canary.bin")):
        doc = over.replace(b'/over"', f'/{name}"'.encode())
        r = await safe_client.request(method, f"/{service}/nodes/{home}/{name}", content=doc)
        assert r.status_code == 413, f"{method}: {r.status_code} {r.text}"

    async def endless() -> AsyncIterator[bytes]:  # chunked, no Content-Length
        yield b"<vos:node "
        for _ in range(10_000):
            yield b" " * 1024

    r = await safe_client.put(f"/{service}/nodes/{home}/stream", content=endless())
    assert r.status_code == 413
    big = b"<x>" + b"a" * (64 * 1024) + b"</x>"
    for path in (f"/{service}/synctrans", f"/{service}/transfers"):
        r = await safe_client.post(path, content=big)
        assert r.status_code == 413, f"{path}: {r.status_code}"
    assert (await safe_client.get(f"/{service}/nodes/{home}/over")).status_code == 404
    await canaries.check(safe_client)


@pytest.mark.filterwarnings("ignore:Async generator 'httpx2.:ResourceWarning")
async def test_a_refused_oversized_body_is_closed_not_leaked(
    safe_client: httpx2.AsyncClient,
) -> None:
    """No "async generator garbage collected before exhausted" ResourceWarning."""
    r = await safe_client.put(
        "/arc/nodes/home/alice/over", content=padded_doc("arc", "over", MAX_NODE_DOC + 1)
    )
    assert r.status_code == 413
    gc.collect()


# -- query parameters and job documents -----------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    ("query", "refused"),
    [
        pytest.param({"limit": "-1"}, True, id="limit-negative"),
        pytest.param({"limit": "abc"}, True, id="limit-word"),
        pytest.param({"limit": "1e3"}, True, id="limit-float"),
        pytest.param({"detail": "everything"}, True, id="detail-unknown"),
        pytest.param({"uri": "vos://cadc.nrc.ca~arc/../../etc"}, True, id="cursor-dotdot"),
        pytest.param({"uri": "%00"}, True, id="cursor-nul"),
        pytest.param({"sort": "x"}, True, id="sort"),
        pytest.param({"Accept": "text/html"}, True, id="accept-html"),
        # arc ignores any limit but 0; vault must answer or refuse, not crash
        pytest.param({"limit": "99999999999999999999"}, False, id="limit-beyond-int64"),
        pytest.param({"limit": "9223372036854775808"}, False, id="limit-int64-max-plus-1"),
        pytest.param({"view": "data", "limit": "-5"}, False, id="view-data"),
    ],
)
async def test_bad_listing_parameters_are_not_5xx(
    safe_client: httpx2.AsyncClient,
    canaries: Canaries,
    service: str,
    query: dict[str, str],
    refused: bool,
) -> None:
    r = await safe_client.get(f"/{service}/nodes/{HOMES[service]}", params=query)
    assert r.status_code < 500, f"{query}: {r.status_code} {r.text}"
    if refused:
        assert r.status_code == 400, f"{query}: {r.status_code} {r.text}"
    await canaries.check(safe_client)


@pytest.mark.parametrize("service", SERVICES)
async def test_non_utf8_transfer_documents_do_not_break_the_job(
    safe_client: httpx2.AsyncClient, canaries: Canaries, service: str
) -> None:
    """An ISO-8859-1 move document parses; its job document must not then be a 500."""
    doc = (
        f'<?xml version="1.0" encoding="ISO-8859-1"?><vos:transfer xmlns:vos="{VOS_NS}">'
        f"<vos:target>{uri(service, 'canary.bin')}</vos:target>"
        f"<vos:direction>{uri(service, 'caf')}\xe9</vos:direction>"
        "<vos:keepBytes>false</vos:keepBytes></vos:transfer>"
    ).encode("latin-1")
    r = await safe_client.post(f"/{service}/transfers", content=doc)
    assert r.status_code in (303, 400), r.text
    if r.status_code == 303:
        job = await safe_client.get(r.headers["location"])
        assert job.status_code == 200, f"job document: {job.status_code} {job.text}"
    await canaries.check(safe_client)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "length",
    [
        pytest.param("²", id="superscript-two"),
        pytest.param("-1", id="negative"),
        pytest.param("1e9", id="float"),
        pytest.param("9" * 30, id="huge"),
        pytest.param(" 12 ", id="spaces"),
        pytest.param("", id="empty"),
    ],
)
async def test_odd_declared_lengths_in_transfers_are_not_5xx(
    safe_client: httpx2.AsyncClient, canaries: Canaries, service: str, length: str
) -> None:
    """``core#length`` params that look numeric to ``str.isdigit`` but are not ints."""
    doc = (
        f'<vos:transfer xmlns:vos="{VOS_NS}" version="2.1"><vos:target>'
        f"{uri(service, 'sized.bin')}</vos:target><vos:direction>pushToVoSpace"
        f'</vos:direction><vos:protocol uri="{HTTPS_PUT}"/>'
        f'<vos:param uri="{props.LENGTH}">{length}</vos:param></vos:transfer>'
    )
    r = await safe_client.post(f"/{service}/synctrans", content=doc)
    assert r.status_code in (303, 400, 413), f"length {length!r}: {r.status_code} {r.text}"
    await canaries.check(safe_client)


# -- property-based: nothing a client sends is a 5xx ----------------------------------------


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    service=st.sampled_from(SERVICES),
    name=names,
    method=st.sampled_from(["PUT", "POST"]),
    body=bodies,
)
async def test_random_node_documents_never_5xx(
    emulator: Emulator, canaries: Canaries, service: str, name: str, method: str, body: bytes
) -> None:
    async with in_process_client(emulator) as client:
        target = quote(name, safe="") if method == "PUT" else "canary.bin"
        r = await client.request(
            method, f"/{service}/nodes/{HOMES[service]}/{target}", content=body
        )
        assert r.status_code < 500, f"{method} {target}: {r.status_code} {r.text}"
        event(f"{method} answered {r.status_code}")
        await canaries.check(client)


@FUZZ
@given(case=node_documents(), method=st.sampled_from(["PUT", "POST"]))
async def test_plausible_node_documents_never_5xx(
    emulator: Emulator, canaries: Canaries, case: tuple[str, str, bytes], method: str
) -> None:
    service, name, body = case
    async with in_process_client(emulator) as client:
        r = await client.request(method, f"/{service}/nodes/{HOMES[service]}/{name}", content=body)
        assert r.status_code < 500, f"{method} {name}: {r.status_code} {r.text}"
        event(f"{method} answered {r.status_code}")
        if r.status_code in (200, 201):
            listing = await client.get(f"/{service}/nodes/{HOMES[service]}")
            assert listing.status_code == 200
            parse_node(listing.content)  # still a readable document
        await canaries.check(client)


@FUZZ
@given(
    service=st.sampled_from(SERVICES),
    body=bodies,
    endpoint=st.sampled_from(["synctrans", "transfers"]),
)
async def test_random_transfer_documents_never_5xx(
    emulator: Emulator, canaries: Canaries, service: str, body: bytes, endpoint: str
) -> None:
    async with in_process_client(emulator) as client:
        r = await client.post(
            f"/{service}/{endpoint}",
            content=body,
            params={"PHASE": "RUN"} if endpoint == "transfers" else {},
        )
        assert r.status_code < 500, f"{endpoint}: {r.status_code} {r.text}"
        event(f"{endpoint} answered {r.status_code}")
        if r.status_code == 303:
            follow = await client.get(r.headers["location"])
            assert follow.status_code < 500, f"{r.headers['location']}: {follow.status_code}"
        await canaries.check(client)


@FUZZ
@given(data=st.data(), endpoint=st.sampled_from(["synctrans", "transfers"]))
async def test_plausible_transfer_documents_never_5xx(
    emulator: Emulator, canaries: Canaries, data: st.DataObject, endpoint: str
) -> None:
    service, body = data.draw(transfer_documents(moves=endpoint == "transfers"))
    async with in_process_client(emulator) as client:
        r = await client.post(
            f"/{service}/{endpoint}",
            content=body,
            params={"PHASE": "RUN"} if endpoint == "transfers" else {},
        )
        assert r.status_code < 500, f"{endpoint}: {r.status_code} {r.text}"
        event(f"{endpoint} answered {r.status_code}")
        if r.status_code == 303:
            follow = await client.get(r.headers["location"])
            assert follow.status_code < 500, f"{r.headers['location']}: {follow.status_code}"
            if endpoint == "transfers":
                job = parse_job(follow.content)
                phase = job.phase.value
                event(f"move job {phase} {(job.error or '').split(':')[0]}".strip())
                if phase == "COMPLETED":  # put the canaries back where check() looks
                    await client.post(
                        f"/{service}/transfers",
                        params={"PHASE": "RUN"},
                        content=reverse_move(body, follow.content),
                    )
        await canaries.check(client)


def reverse_move(request: bytes, job_document: bytes) -> bytes:
    """A move document taking the node at the job's destination back to its source."""
    moved_to = parse_job(job_document).results["destination"]
    source = parse_transfer(request).target
    return (
        f'<vos:transfer xmlns:vos="{VOS_NS}"><vos:target>{escape_text(moved_to)}'
        f"</vos:target><vos:direction>{escape_text(source)}</vos:direction>"
        "<vos:keepBytes>false</vos:keepBytes></vos:transfer>"
    ).encode()


# -- over a real socket ---------------------------------------------------------------------


def raw_exchange(url: str, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes on a fresh connection; return the reply head (or b"" if closed/silent)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reply = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        while b"\r\n\r\n" not in reply:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            reply += chunk
    return reply


def test_live_server_survives_raw_attacks(live: LiveEmulator) -> None:
    auth = f"Authorization: Bearer {live.token}\r\n".encode()
    with httpx2.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {live.token}"}, timeout=30
    ) as http:
        put = http.put("/arc/files/home/alice/canary.bin", content=b"live canary\n" * 1000)
        assert put.status_code == 201
        before = outside_root(live.root)

        for target in (
            b"/arc/nodes/home/alice/../../../../escape",
            b"/arc/files/home/alice/../../../../escape",
            b"/arc/files/home/alice/..%2F..%2F..%2Fescape",
            b"/arc/nodes/home/alice/%00",
            b"/arc/nodes/home/alice/\xff\xfe",
            b"/vault/nodes/alice/../../escape",
        ):
            reply = raw_exchange(
                live.url,
                b"PUT "
                + target
                + b" HTTP/1.1\r\nHost: x\r\n"
                + auth
                + b"Content-Length: 7\r\nConnection: close\r\n\r\nescape!",
            )
            status = reply[9:12]
            assert status in (b"400", b"404"), f"{target!r}: {reply[:200]!r}"

        garbage = [
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200),  # TLS hello
            b"GET\r\n\r\n",
            b"\x00" * 1000,
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 100_000 + b"\r\n\r\n",
        ]
        for payload in garbage:
            started = time.monotonic()
            reply = raw_exchange(live.url, payload)
            assert time.monotonic() - started < 5.0, f"{payload[:20]!r} hung the connection"
            assert not reply.startswith(b"HTTP/1.1 5"), reply[:200]

        assert http.get("/arc/nodes/home/alice").status_code == 200
        assert http.get("/arc/files/home/alice/canary.bin").content == b"live canary\n" * 1000
    assert live.proc.poll() is None, "the emulator process died"
    assert outside_root(live.root) == before
    assert not list(live.root.parent.rglob("*escape*"))


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "declared", ["text/plain\u00e9", "a\u2028b", "x" * 300, "nonsense", "text/plain; charset=utf-8"]
)
async def test_a_free_text_type_property_never_breaks_downloads(
    emulator: Emulator, canaries: Canaries, service: str, declared: str
) -> None:
    """The ``type`` property is free text; only a real media type becomes Content-Type.

    Found by the fuzz above: a type with non-Latin-1 characters made every download of
    the file a 500, because it went into the Content-Type header as it was.
    """
    async with in_process_client(emulator) as client:
        doc = (
            f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}" '
            f'uri="{uri(service, "canary.bin")}" xsi:type="vos:DataNode"><vos:properties>'
            f'<vos:property uri="{props.TYPE}">{escape(declared)}</vos:property>'
            "</vos:properties></vos:node>"
        )
        r = await client.post(f"/{service}/nodes/{HOMES[service]}/canary.bin", content=doc.encode())
        assert r.status_code == 200, r.text
        got = await client.get(
            f"/{service}/files/{HOMES[service]}/canary.bin", follow_redirects=True
        )
        assert got.status_code == 200
        valid = declared.isascii() and "/" in declared and len(declared) < 256
        assert got.headers["content-type"] == (declared if valid else "application/octet-stream")
        await canaries.check(client)

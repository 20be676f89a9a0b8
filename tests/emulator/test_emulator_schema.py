"""Every XML document the emulator emits is valid where a schema exists, well-formed always.

Node and transfer documents are validated against the IVOA VOSpace 2.1 schema shipped in
``canfarfs/data`` (with xmlschema). That schema declares no global ``node`` element (only
``protocols``, ``views``, ``properties`` and ``transfer``), so a two-line wrapper schema
includes it and declares ``vos:node`` of type ``vos:Node``; ``xsi:type`` then selects
ContainerNode/DataNode/LinkNode content as it does for the real services' documents.

The VOSI (capabilities, availability) and UWS (job) schemas are not in the repository, so
those documents are checked for well-formedness and for the elements and attributes the
clients actually read (vospace-api.md §1.2, §6.1, §6.2): ``capability@standardID``,
``interface/accessURL``, ``securityMethod@standardID``, ``uws:phase``,
``uws:errorSummary/uws:message`` and ``uws:results/uws:result@xlink:href``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import httpx2
import pytest
import xmlschema

import canfarfs
from canfarfs.vospace import props
from canfarfs.vospace import xml as vxml
from canfarfs.vospace.model import Node, NodeType

DATA_DIR = Path(canfarfs.__file__).parent / "data"
VOS_NS = vxml.VOS_NS
XSI_NS = vxml.XSI_NS
UWS = "{" + vxml.UWS_NS + "}"
XLINK_HREF = "{" + vxml.XLINK_NS + "}href"
HTTPS_GET = "ivo://ivoa.net/vospace/core#httpsget"
HTTPS_PUT = "ivo://ivoa.net/vospace/core#httpsput"
SM_TOKEN = "ivo://ivoa.net/sso#token"

HOMES = {"arc": "home/alice", "vault": "alice"}
SERVICES = sorted(HOMES)

WRAPPER = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:vos="{VOS_NS}"
           targetNamespace="{VOS_NS}" elementFormDefault="qualified">
  <xs:include schemaLocation="VOSpace-2.1.xsd"/>
  <xs:element name="node" type="vos:Node"/>
</xs:schema>
"""


@functools.cache
def vospace_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(WRAPPER, base_url=str(DATA_DIR))


def assert_valid(document: bytes, root: str = "node") -> Element:
    """Validate against VOSpace 2.1 (root ``vos:node`` or ``vos:transfer``); return the root."""
    schema = vospace_schema()
    errors = [str(e).splitlines()[0] for e in schema.iter_errors(document.decode())]
    assert not errors, "not valid VOSpace 2.1:\n" + "\n".join(errors) + "\n" + document.decode()
    el: Element = SafeET.fromstring(document)
    assert el.tag == f"{{{VOS_NS}}}{root}"
    return el


def well_formed(document: bytes) -> Element:
    try:
        root: Element = SafeET.fromstring(document)
    except SafeET.ParseError as exc:
        pytest.fail(f"not well-formed XML ({exc}):\n{document.decode(errors='replace')}")
    return root


def uri(service: str, name: str = "") -> str:
    base = f"vos://cadc.nrc.ca~{service}/{HOMES[service]}"
    return f"{base}/{name}" if name else base


def node_doc(node_uri: str, kind: str, inner: str = "") -> str:
    return (
        f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}" uri="{node_uri}" '
        f'xsi:type="vos:{kind}">{inner}</vos:node>'
    )


def nodes_url(service: str, name: str = "") -> str:
    return f"/{service}/nodes/{HOMES[service]}/{name}".rstrip("/")


async def put_node(
    client: httpx2.AsyncClient, service: str, name: str, kind: str, inner: str = ""
) -> httpx2.Response:
    r = await client.put(
        nodes_url(service, name), content=node_doc(uri(service, name), kind, inner)
    )
    assert r.status_code == 201, r.text
    return r


async def upload(client: httpx2.AsyncClient, service: str, name: str, data: bytes) -> None:
    r = await client.post(
        f"/{service}/synctrans",
        params={"TARGET": uri(service, name), "DIRECTION": "pushToVoSpace", "PROTOCOL": HTTPS_PUT},
    )
    assert r.status_code == 303, r.text
    put = await client.put(r.headers["location"], content=data)
    assert put.status_code == 201, put.text


async def populate(client: httpx2.AsyncClient, service: str) -> None:
    """A directory with every kind of child, awkward names and property values."""
    await put_node(client, service, "dir", "ContainerNode", "<vos:nodes/>")
    await upload(client, service, "dir/data.fits", b"SIMPLE  = T" * 100)
    await put_node(client, service, "dir/empty.txt", "DataNode")
    await put_node(client, service, "dir/sub", "ContainerNode", "<vos:nodes/>")
    await upload(client, service, "dir/sub/inner.txt", b"inner\n")
    await put_node(
        client,
        service,
        "dir/link",
        "LinkNode",
        f"<vos:target>{uri(service, 'dir/data.fits')}</vos:target>",
    )
    odd = "a%20b%20%26%20%3Cc%3E%20%22q%22%20%C3%A9t%C3%A9"  # 'a b & <c> "q" été'
    await put_node(
        client,
        service,
        f"dir/{odd}",
        "DataNode",
        (
            f'<vos:properties><vos:property uri="{props.CORE}description">'
            "&lt;b&gt; &amp; ü ]]&gt;</vos:property>"
            '<vos:property uri="ivo://example.org/meta#note">tab\there</vos:property>'
            "</vos:properties>"
        ),
    )
    r = await client.post(
        nodes_url(service, "dir/data.fits"),
        content=node_doc(
            uri(service, "dir/data.fits"),
            "DataNode",
            f'<vos:properties><vos:property uri="{props.GROUPREAD}">'
            f"{props.GROUP_PREFIX}survey-team</vos:property>"
            '<vos:property uri="ivo://opencadc.org/tags#quality">good</vos:property>'
            "</vos:properties>",
        ),
    )
    assert r.status_code == 200, r.text


# -- the validator itself ---------------------------------------------------------------


def test_the_wrapper_schema_rejects_documents_the_xsd_forbids() -> None:
    """Guard against a validator that accepts anything (xsi:type content is checked)."""
    schema = vospace_schema()
    good = node_doc("vos://cadc.nrc.ca~arc/x", "ContainerNode", "<vos:nodes/>")
    assert schema.is_valid(good)
    for bad in (
        node_doc("vos://cadc.nrc.ca~arc/x", "ContainerNode"),  # nodes is required
        node_doc("vos://cadc.nrc.ca~arc/x", "LinkNode"),  # target is required
        node_doc("vos://cadc.nrc.ca~arc/x", "DataNode", "<vos:nodes/>"),  # not in a DataNode
        node_doc(
            "vos://cadc.nrc.ca~arc/x", "DataNode", "<vos:accepts/><vos:properties/>"
        ),  # wrong order
        f'<vos:node xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}" xsi:type="vos:DataNode"/>',
    ):
        assert not schema.is_valid(bad), bad


# -- nodes --------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("detail", [None, "min", "properties", "max"])
async def test_container_listing_validates(
    client: httpx2.AsyncClient, service: str, detail: str | None
) -> None:
    await populate(client, service)
    params = {"detail": detail} if detail else {}
    r = await client.get(nodes_url(service, "dir"), params=params)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml")
    assert_valid(r.content)

    listing = vxml.parse_node(r.content)
    kinds = {c.name: c.type for c in listing.children or []}
    assert kinds == {
        "data.fits": NodeType.DATA,
        "empty.txt": NodeType.DATA,
        "sub": NodeType.CONTAINER,
        "link": NodeType.LINK,
        'a b & <c> "q" été': NodeType.DATA,
    }
    if detail == "min":
        assert not listing.properties
    else:
        assert listing.prop(props.DATE)


@pytest.mark.parametrize("service", SERVICES)
async def test_listings_with_limits_validate(client: httpx2.AsyncClient, service: str) -> None:
    await populate(client, service)
    r = await client.get(nodes_url(service, "dir"), params={"limit": "0"})
    assert r.status_code == 200
    assert_valid(r.content)
    assert vxml.parse_node(r.content).children == []

    r = await client.get(nodes_url(service, "dir"), params={"limit": "2"})
    assert_valid(r.content)
    if service == "vault":  # vault pages (inclusive cursor); arc refuses a cursor
        r = await client.get(
            nodes_url(service, "dir"), params={"limit": "2", "uri": uri(service, "dir/empty.txt")}
        )
        assert r.status_code == 200, r.text
        assert_valid(r.content)


@pytest.mark.parametrize(
    "path",
    [
        "/arc/nodes",
        "/arc/nodes/",
        "/arc/nodes/home",
        "/arc/nodes/home/alice",
        "/vault/nodes",
        "/vault/nodes/alice",
    ],
)
@pytest.mark.parametrize("detail", ["properties", "max"])
async def test_roots_and_allocations_validate(
    client: httpx2.AsyncClient, path: str, detail: str
) -> None:
    r = await client.get(path, params={"detail": detail})
    assert r.status_code == 200, r.text
    assert_valid(r.content)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "name",
    [
        "dir/data.fits",
        "dir/empty.txt",
        "dir/link",
        "dir/sub",
        "dir/a%20b%20%26%20%3Cc%3E%20%22q%22%20%C3%A9t%C3%A9",
    ],
)
async def test_single_nodes_validate(client: httpx2.AsyncClient, service: str, name: str) -> None:
    await populate(client, service)
    for detail in ("min", "properties", "max"):
        r = await client.get(nodes_url(service, name), params={"detail": detail})
        assert r.status_code == 200, r.text
        assert_valid(r.content)


@pytest.mark.parametrize("service", SERVICES)
async def test_put_responses_validate(client: httpx2.AsyncClient, service: str) -> None:
    nil_and_custom = (
        "<vos:properties>"
        f'<vos:property uri="{props.ISPUBLIC}">true</vos:property>'
        f'<vos:property uri="{props.GROUPWRITE}" xsi:nil="true"/>'
        f'<vos:property uri="{props.LENGTH}" readOnly="true">999</vos:property>'
        '<vos:property uri="ivo://example.org/meta#x">&amp;&lt;&gt;</vos:property>'
        "</vos:properties>"
    )
    made = [
        await put_node(client, service, "c", "ContainerNode", nil_and_custom + "<vos:nodes/>"),
        await put_node(client, service, "d", "DataNode", nil_and_custom),
        await put_node(client, service, "u", "UnstructuredDataNode"),
        await put_node(client, service, "s", "StructuredDataNode"),
        await put_node(
            client,
            service,
            "l",
            "LinkNode",
            nil_and_custom + f"<vos:target>{uri(service, 'd')}</vos:target>",
        ),
    ]
    for r in made:
        assert r.headers["content-type"].startswith("text/xml")
        assert_valid(r.content)


@pytest.mark.parametrize("service", SERVICES)
async def test_post_responses_validate(client: httpx2.AsyncClient, service: str) -> None:
    await populate(client, service)
    updates = [
        f'<vos:property uri="{props.ISPUBLIC}">true</vos:property>',
        f'<vos:property uri="{props.GROUPREAD}" xsi:nil="true"/>',
        f'<vos:property uri="{props.ISLOCKED}">true</vos:property>',
        f'<vos:property uri="{props.ISLOCKED}" xsi:nil="true"/>',
        '<vos:property uri="ivo://opencadc.org/tags#quality" xsi:nil="true"/>',
        f'<vos:property uri="{props.TYPE}">application/fits</vos:property>',
    ]
    for name, kind in (
        ("dir/data.fits", "DataNode"),
        ("dir/sub", "ContainerNode"),
        ("dir/link", "LinkNode"),
    ):
        for prop in updates:
            inner = f"<vos:properties>{prop}</vos:properties>"
            if kind == "LinkNode":
                inner += f"<vos:target>{uri(service, 'dir/data.fits')}</vos:target>"
            r = await client.post(
                nodes_url(service, name), content=node_doc(uri(service, name), kind, inner)
            )
            assert r.status_code == 200, r.text
            assert_valid(r.content)


def test_node_writer_output_with_nil_properties_validates() -> None:
    """The writer the emulator uses, with nil properties (as some responses may carry)."""
    for kind in NodeType:
        node = Node(
            uri="vos://cadc.nrc.ca~vault/alice/n",
            type=kind,
            properties={
                props.GROUPREAD: None,
                props.ISPUBLIC: "false",
                "ivo://example.org/x#y": None,
            },
            target="vos://cadc.nrc.ca~vault/alice/t" if kind is NodeType.LINK else None,
            children=[] if kind is NodeType.CONTAINER else None,
        )
        for detail in (True, False):
            document = vxml.node_to_xml(node, detail=detail)
            assert_valid(document)
            if detail:
                assert b'xsi:nil="true"' in document


@pytest.mark.parametrize("service", SERVICES)
async def test_listed_uris_address_the_listed_node(
    client: httpx2.AsyncClient, service: str
) -> None:
    """A URI the emulator writes must, sent back, name the same node.

    The emulator decodes the URIs it receives once (``%41`` → ``A``) but writes node
    URIs undecoded, so a node literally named ``a%41`` is listed as ``…/a%41`` and a
    client that moves (or deletes) "that" URI acts on ``aA`` instead.
    """
    await put_node(client, service, "a%2541", "DataNode")  # the node named 'a%41'
    await put_node(client, service, "aA", "DataNode")
    listing = vxml.parse_node((await client.get(nodes_url(service))).content)
    listed = {c.uri for c in listing.children or []}
    odd = next(u for u in listed if not u.endswith("/aA"))

    job = await run_move(client, service, odd, uri(service, "moved"))
    assert read_job(job.content)[0] == "COMPLETED"
    after = vxml.parse_node((await client.get(nodes_url(service))).content)
    remaining = sorted(c.uri.rpartition("/")[2] for c in after.children or [])
    assert "aA" in remaining, f"moving {odd} moved the node 'aA': {remaining}"
    assert len(remaining) == 2


# -- transfers ----------------------------------------------------------------------------


def transfer_doc(target: str, direction: str, *protocols: tuple[str, str | None]) -> str:
    body = "".join(
        f'<vos:protocol uri="{p}">'
        + (f'<vos:securityMethod uri="{sm}"/>' if sm else "")
        + "</vos:protocol>"
        for p, sm in protocols
    )
    return (
        f'<vos:transfer xmlns:vos="{VOS_NS}" version="2.1"><vos:target>{target}'
        f"</vos:target><vos:direction>{direction}</vos:direction>{body}</vos:transfer>"
    )


async def negotiate(
    client: httpx2.AsyncClient, service: str, document: str
) -> tuple[httpx2.Response, str]:
    """POST /synctrans and follow 303 → /transfers/<job>/results/transferDetails → /xfer."""
    r = await client.post(
        f"/{service}/synctrans", content=document, headers={"Content-Type": "text/xml"}
    )
    assert r.status_code == 303, r.text
    assert "/transfers/" in r.headers["location"]
    assert r.headers["location"].endswith("/results/transferDetails")
    job_id = r.headers["location"].split("/transfers/")[1].split("/")[0]
    details = await client.get(r.headers["location"], follow_redirects=True)
    assert details.status_code == 200, details.text
    assert "/xfer/" in str(details.url)
    return details, job_id


@pytest.mark.parametrize("service", SERVICES)
async def test_transfer_details_validate(client: httpx2.AsyncClient, service: str) -> None:
    await populate(client, service)
    cases: list[tuple[str, str, list[tuple[str, str | None]]]] = [
        (uri(service, "dir/data.fits"), "pullFromVoSpace", [(HTTPS_GET, None)]),
        (
            uri(service, "dir/data.fits"),
            "pullFromVoSpace",
            [(HTTPS_GET, SM_TOKEN), (HTTPS_GET, None)],
        ),
        (uri(service, "dir/new.bin"), "pushToVoSpace", [(HTTPS_PUT, None)]),
        (uri(service, "dir/data.fits").replace("~", "!"), "pushToVoSpace", [(HTTPS_PUT, SM_TOKEN)]),
    ]
    for target, direction, protocols in cases:
        details, job_id = await negotiate(
            client, service, transfer_doc(target, direction, *protocols)
        )
        root = assert_valid(details.content, "transfer")
        endpoints = [e.text for e in root.iter(f"{{{VOS_NS}}}endpoint")]
        assert endpoints, details.text
        assert all(e and e.startswith("http") for e in endpoints)
        phase = await client.get(f"/{service}/transfers/{job_id}/phase")
        assert phase.text.strip() == "EXECUTING"


@pytest.mark.parametrize("service", SERVICES)
async def test_failed_negotiation_details_validate(
    client: httpx2.AsyncClient, service: str
) -> None:
    await populate(client, service)
    for target, direction in (
        (uri(service, "missing.bin"), "pullFromVoSpace"),
        (uri(service, "no/such/dir/x"), "pushToVoSpace"),
        (uri(service, "dir/sub"), "pullFromVoSpace"),
    ):
        details, job_id = await negotiate(
            client, service, transfer_doc(target, direction, (HTTPS_GET, None), (HTTPS_PUT, None))
        )
        root = assert_valid(details.content, "transfer")
        assert not list(root.iter(f"{{{VOS_NS}}}endpoint"))
        phase = await client.get(f"/{service}/transfers/{job_id}/phase")
        assert phase.text.strip() == "ERROR"
        error = await client.get(f"/{service}/transfers/{job_id}/error")
        assert error.status_code == 200
        assert error.text.strip()


# -- UWS jobs (no schema in the repository: well-formedness + what clients read) ---------


def read_job(document: bytes) -> tuple[str, str | None, dict[str, str]]:
    """(phase, error message, results) as cadcutils/vos read them."""
    root = well_formed(document)
    assert root.tag == f"{UWS}job"
    phase = root.findtext(f"{UWS}phase")
    assert phase is not None, "uws:phase missing"
    message = root.findtext(f"{UWS}errorSummary/{UWS}message")
    results = {
        r.get("id", ""): r.get(XLINK_HREF, "") for r in root.findall(f"{UWS}results/{UWS}result")
    }
    assert all(results.values()), "a uws:result without xlink:href"
    assert root.findtext(f"{UWS}jobId")
    return phase.strip(), message.strip() if message else None, results


async def run_move(client: httpx2.AsyncClient, service: str, src: str, dst: str) -> httpx2.Response:
    doc = (
        f'<vos:transfer xmlns:vos="{VOS_NS}" version="2.1"><vos:target>{src}</vos:target>'
        f"<vos:direction>{dst}</vos:direction><vos:keepBytes>false</vos:keepBytes>"
        "</vos:transfer>"
    )
    r = await client.post(f"/{service}/transfers", content=doc)
    assert r.status_code == 303, r.text
    job_url = r.headers["location"]
    pending = await client.get(job_url)
    assert read_job(pending.content)[0] == "PENDING"
    run = await client.post(f"{job_url}/phase", data={"PHASE": "RUN"})
    assert run.status_code == 303
    job = await client.get(job_url)
    assert job.status_code == 200
    return job


@pytest.mark.parametrize("service", SERVICES)
async def test_uws_job_documents_are_well_formed(client: httpx2.AsyncClient, service: str) -> None:
    await populate(client, service)

    done = await run_move(
        client, service, uri(service, "dir/empty.txt"), uri(service, "dir/moved.txt")
    )
    phase, message, results = read_job(done.content)
    assert (phase, message) == ("COMPLETED", None)
    assert results["destination"] == uri(service, "dir/moved.txt")

    failed = await run_move(client, service, uri(service, "dir/nothing"), uri(service, "dir/x"))
    phase, message, _ = read_job(failed.content)
    assert phase == "ERROR"
    assert message is not None
    assert message.startswith("NodeNotFound")

    _, job_id = await negotiate(
        client,
        service,
        transfer_doc(uri(service, "dir/data.fits"), "pullFromVoSpace", (HTTPS_GET, None)),
    )
    sync = await client.get(f"/{service}/transfers/{job_id}")
    phase, _, results = read_job(sync.content)
    assert phase == "EXECUTING"
    assert "/xfer/" in results["transferDetails"]

    r = await client.post(
        f"/{service}/async-delete", data={"target": uri(service, "dir/sub"), "PHASE": "RUN"}
    )
    assert r.status_code == 303
    deleted = await client.get(r.headers["location"])
    phase, _, results = read_job(deleted.content)
    assert phase == "COMPLETED"
    assert results == {"successcount": "final:2", "errorcount": "final:0"}


@pytest.mark.parametrize("service", SERVICES)
async def test_delete_job_document_escapes_the_target(
    client: httpx2.AsyncClient, service: str
) -> None:
    """A node named ``a&b`` (vos allows ``&`` in names) must not break the job XML."""
    await put_node(client, service, "a%26b", "ContainerNode", "<vos:nodes/>")
    r = await client.post(
        f"/{service}/async-delete", data={"target": uri(service, "a&b"), "PHASE": "RUN"}
    )
    assert r.status_code == 303, r.text
    job = await client.get(r.headers["location"])
    assert job.status_code == 200
    phase, _, results = read_job(job.content)
    assert phase == "COMPLETED"
    assert results["successcount"] == "final:1"


@pytest.mark.parametrize("service", SERVICES)
async def test_job_document_of_a_request_with_a_byte_order_mark(
    client: httpx2.AsyncClient, service: str
) -> None:
    """A UTF-8 BOM before the XML declaration is legal; the job document must stay XML."""
    await put_node(client, service, "bom-src", "DataNode")
    doc = (
        f'<?xml version="1.0" encoding="UTF-8"?><vos:transfer xmlns:vos="{VOS_NS}">'
        f"<vos:target>{uri(service, 'bom-src')}</vos:target>"
        f"<vos:direction>{uri(service, 'bom-dst')}</vos:direction>"
        "<vos:keepBytes>false</vos:keepBytes></vos:transfer>"
    )
    r = await client.post(
        f"/{service}/transfers", params={"PHASE": "RUN"}, content=b"\xef\xbb\xbf" + doc.encode()
    )
    assert r.status_code == 303, r.text
    job = await client.get(r.headers["location"])
    assert job.status_code == 200
    assert read_job(job.content)[0] == "COMPLETED"


# -- VOSI (no schema in the repository: well-formedness + what clients read) -------------

VOSPACE_CAPS = {
    "ivo://ivoa.net/std/VOSI#capabilities",
    "ivo://ivoa.net/std/VOSI#availability",
    "ivo://ivoa.net/std/VOSpace/v2.0#nodes",
    "ivo://ivoa.net/std/VOSpace#sync-2.1",
    "ivo://ivoa.net/std/VOSpace/v2.0#transfers",
    "ivo://ivoa.net/std/VOSpace#files-proto",
}


@pytest.mark.parametrize("service", ["arc", "vault", "skaha"])
async def test_capabilities_are_well_formed_and_usable(
    client: httpx2.AsyncClient, service: str
) -> None:
    r = await client.get(f"/{service}/capabilities")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(("text/xml", "application/xml"))
    root = well_formed(r.content)
    assert root.tag.endswith("capabilities")
    # cadcutils needs an xmlns:xsi declaration on the root (vospace-api.md §1.2)
    assert f'xmlns:xsi="{XSI_NS}"' in r.text.split(">", 2)[1]

    caps = root.findall("capability")  # un-namespaced, as cadcutils looks them up
    assert caps
    ids = set()
    for cap in caps:
        ids.add(cap.get("standardID"))
        interfaces = cap.findall("interface")
        assert interfaces, cap.get("standardID")
        for interface in interfaces:
            access = interface.find("accessURL")
            assert access is not None
            assert (access.text or "").startswith("http://emu.invalid/"), access.text
            assert access.get("use") in ("full", "base")
        methods = [[sm.get("standardID") for sm in i.findall("securityMethod")] for i in interfaces]
        with_token = any(SM_TOKEN in m for m in methods)
        anonymous = any(not m for m in methods)
        if service != "skaha":
            # token for vos --token; a bare interface for anonymous use (vosfs, §1.3)
            assert with_token, cap.get("standardID")
            assert anonymous, cap.get("standardID")
        else:
            assert with_token or anonymous
    assert "ivo://ivoa.net/std/VOSI#capabilities" in ids
    if service != "skaha":
        assert ids >= VOSPACE_CAPS


@pytest.mark.parametrize("service", ["arc", "vault", "skaha"])
async def test_availability_is_well_formed(client: httpx2.AsyncClient, service: str) -> None:
    r = await client.get(f"/{service}/availability")
    assert r.status_code == 200, r.text
    root = well_formed(r.content)
    assert root.tag == "{http://www.ivoa.net/xml/VOSIAvailability/v1.0}availability"
    available = root.findtext("{http://www.ivoa.net/xml/VOSIAvailability/v1.0}available")
    assert available == "true"

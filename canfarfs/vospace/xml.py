"""Sans-IO VOSpace XML: parse and write node, transfer and UWS job documents.

Parsing is namespace-aware (clients use any prefix, vospace-api.md §4.4) and runs on
expat with defusedxml's protections: no DTDs, no entities, no external references. Node
documents (listings of thousands of children included) are built straight from expat
events; transfer and job documents go through defusedxml's ElementTree. Writing produces
the servers' format (§4.2): pretty-printed, ``vos:`` prefix, properties sorted by URI,
``readOnly="true"`` on immutable properties.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from xml.etree.ElementTree import Element
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)

from canfarfs.vospace import props
from canfarfs.vospace.model import Job, JobPhase, Node, NodeType, Protocol, Transfer

VOS_NS = "http://www.ivoa.net/xml/VOSpace/v2.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"

_V = "{" + VOS_NS + "}"
_U = "{" + UWS_NS + "}"

#: Largest document accepted from a peer (a node document is capped at 32 KiB by the
#: servers; listings and job documents can be larger, so the parser takes a parameter).
MAX_NODE_DOC = 32 * 1024

_INPUT_TYPES = {
    "ContainerNode": NodeType.CONTAINER,
    "DataNode": NodeType.DATA,
    "UnstructuredDataNode": NodeType.DATA,
    "StructuredDataNode": NodeType.DATA,
    "LinkNode": NodeType.LINK,
}


class XMLError(ValueError):
    """A document that is not well-formed, hostile, or not the expected shape."""


class UnknownNodeType(XMLError):
    """An ``xsi:type`` that names no VOSpace node type."""


def _parse(data: bytes) -> tuple[Element, dict[str, str]]:
    """Parse hardened; return the root and every prefix→namespace declaration seen."""
    nsmap: dict[str, str] = {}
    root: Element | None = None
    try:
        for event, item in SafeET.iterparse(
            io.BytesIO(data), events=("start-ns", "start"), forbid_dtd=True
        ):
            if event == "start-ns":
                prefix, uri = item
                nsmap.setdefault(prefix, uri)
            elif root is None:
                root = item
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise XMLError(f"malformed XML: {exc}") from exc
    except (LookupError, ValueError) as exc:  # unknown or unsupported declared encoding
        raise XMLError(f"unreadable XML: {exc}") from exc
    if root is None:
        raise XMLError("empty document")
    return root, nsmap


def _node_type(qname: str | None, nsmap: dict[str, str]) -> NodeType:
    if not qname:
        raise UnknownNodeType("node has no xsi:type")
    prefix, _, local = qname.rpartition(":")
    if nsmap.get(prefix, VOS_NS if not prefix else "") != VOS_NS or local not in _INPUT_TYPES:
        raise UnknownNodeType(f"unsupported node type: {qname}")
    return _INPUT_TYPES[local]


#: A listing nests one level (a container and its children); anything much deeper is not
#: a VOSpace document, and would otherwise exhaust Python's recursion limit.
MAX_NODE_DEPTH = 16

# Names as expat reports them with namespace_separator "}" (ElementTree adds a "{").
_E_NODE = VOS_NS + "}node"
_E_NODES = VOS_NS + "}nodes"
_E_PROPERTIES = VOS_NS + "}properties"
_E_PROPERTY = VOS_NS + "}property"
_E_TARGET = VOS_NS + "}target"
_A_XSI_TYPE = XSI_NS + "}type"
_A_XSI_NIL = XSI_NS + "}nil"

# What the innermost open element is to the builder (anything else is skipped whole).
_TOP, _NODE, _NODES, _PROPS, _PROP, _TARGET = range(6)


class _NodeRec:
    """A ``vos:node`` as read; checked and turned into a Node once the document is parsed
    (``xsi:type`` needs every namespace declaration, and errors keep the tree-walk order)."""

    __slots__ = (
        "attrs",
        "bad_property",
        "children",
        "depth",
        "has_nodes",
        "has_props",
        "properties",
        "target",
    )

    def __init__(self, attrs: dict[str, str], depth: int) -> None:
        self.attrs = attrs
        self.depth = depth
        self.has_props = False
        self.bad_property = False
        self.properties: dict[str, str | None] = {}
        self.target: str | None = None
        self.has_nodes = False
        self.children: list[_NodeRec] = []


class _NodeBuilder:
    """Expat handlers that keep what a node document means: the first ``properties``,
    ``target`` and ``nodes`` child of each node, the direct children of those, and the
    text before an element's first child (ElementTree's ``.text``)."""

    __slots__ = (
        "key",
        "kind",
        "nsmap",
        "parts",
        "rec",
        "root",
        "root_name",
        "skip",
        "stack",
        "text",
    )

    def __init__(self) -> None:
        self.nsmap: dict[str, str] = {}  # first declaration of each prefix anywhere
        self.root_name: str | None = None
        self.root: _NodeRec | None = None
        self.kind = _TOP
        self.rec = _NodeRec({}, -1)  # the node the innermost open element is in
        self.stack: list[tuple[int, _NodeRec]] = []
        self.skip = 0  # depth inside an element that means nothing here
        self.key = ""  # uri of the property being read
        self.parts: list[str] = []  # its (or the target's) text
        self.text: list[str] | None = None  # parts, while that text is still open

    def start_ns(self, prefix: str | None, uri: str | None) -> None:
        self.nsmap.setdefault(prefix or "", uri or "")

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if self.skip:
            self.skip += 1
            return
        kind, rec = self.kind, self.rec
        if kind == _PROPS:
            if name == _E_PROPERTY:
                key = attrs.get("uri")
                if not key:
                    rec.bad_property = True
                elif (attrs.get(_A_XSI_NIL) or "").lower() == "true":
                    rec.properties[key] = None
                else:
                    self.key = key
                    self.parts = self.text = []
                    self.kind = _PROP  # no frame pushed: ends back in _PROPS
                    return
        elif kind == _NODE:
            if name == _E_PROPERTIES and not rec.has_props:
                rec.has_props = True
                self.stack.append((kind, rec))
                self.kind = _PROPS
                return
            if name == _E_TARGET and rec.target is None:
                rec.target = ""
                self.parts = self.text = []
                self.kind = _TARGET  # no frame pushed: ends back in _NODE
                return
            if name == _E_NODES and not rec.has_nodes:
                rec.has_nodes = True
                self.stack.append((kind, rec))
                self.kind = _NODES
                return
        elif kind == _NODES:
            if name == _E_NODE:
                child = _NodeRec(attrs, rec.depth + 1)
                rec.children.append(child)
                if child.depth <= MAX_NODE_DEPTH:  # deeper: refused when converted
                    self.stack.append((kind, rec))
                    self.kind, self.rec = _NODE, child
                    return
        elif kind == _TOP:
            self.root_name = name
            if name == _E_NODE:
                self.root = _NodeRec(attrs, 0)
                self.stack.append((kind, rec))
                self.kind, self.rec = _NODE, self.root
                return
        else:  # a child of a property or target: their text ends here
            self.text = None
        self.skip = 1

    def end(self, name: str) -> None:
        if self.skip:
            self.skip -= 1
            return
        kind = self.kind
        if kind == _PROP:
            self.text = None
            self.rec.properties[self.key] = "".join(self.parts)
            self.kind = _PROPS
        elif kind == _TARGET:
            self.text = None
            self.rec.target = "".join(self.parts).strip()
            self.kind = _NODE
        else:
            self.kind, self.rec = self.stack.pop()

    def data(self, text: str) -> None:
        if self.text is not None:
            self.text.append(text)


def _forbid_dtd(name: str, sysid: str | None, pubid: str | None, internal: int) -> None:
    raise DTDForbidden(name, sysid, pubid)


def _forbid_entity(
    name: str,
    _param: int,
    value: str | None,
    base: str | None,
    sysid: str | None,
    pubid: str | None,
    notation: str | None,
) -> None:
    raise EntitiesForbidden(name, value, base, sysid, pubid, notation)


def _forbid_unparsed(
    name: str, base: str | None, sysid: str | None, pubid: str | None, notation: str | None
) -> None:
    raise EntitiesForbidden(name, None, base, sysid, pubid, notation)


def _forbid_external(context: str, base: str | None, sysid: str | None, pubid: str | None) -> int:
    raise ExternalReferenceForbidden(context, base, sysid, pubid)


def _clark(name: str) -> str:
    """An expat name as ElementTree spells it (``{ns}local``)."""
    return "{" + name if "}" in name else name


def _node_from(rec: _NodeRec, nsmap: dict[str, str]) -> Node:
    # Checks in the order of a walk of the tree: this node's, then each child's in turn.
    if rec.depth > MAX_NODE_DEPTH:
        raise XMLError(f"nodes nested more than {MAX_NODE_DEPTH} deep")
    uri = rec.attrs.get("uri")
    if not uri:
        raise XMLError("node has no uri attribute")
    kind = _node_type(rec.attrs.get(_A_XSI_TYPE), nsmap)
    if rec.bad_property:
        raise XMLError("property without uri")
    if kind is NodeType.LINK and not rec.target:
        raise XMLError("LinkNode without target")
    children = [_node_from(c, nsmap) for c in rec.children] if rec.has_nodes else None
    busy = (rec.attrs.get("busy") or "false").lower() == "true"
    return Node(
        uri=uri,
        type=kind,
        properties=rec.properties,
        busy=busy,
        target=rec.target,
        children=children,
    )


def parse_node(data: bytes, max_size: int | None = None) -> Node:
    """Parse a node document (a listing included). Raises XMLError."""
    if max_size is not None and len(data) > max_size:
        raise XMLError(f"document of {len(data)} bytes exceeds {max_size}")
    builder = _NodeBuilder()
    parser = expat.ParserCreate(None, "}")
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _forbid_dtd  # a DTD is refused outright
    parser.EntityDeclHandler = _forbid_entity
    parser.UnparsedEntityDeclHandler = _forbid_unparsed
    parser.ExternalEntityRefHandler = _forbid_external
    parser.StartNamespaceDeclHandler = builder.start_ns
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except (expat.ExpatError, DefusedXmlException) as exc:
        raise XMLError(f"malformed XML: {exc}") from exc
    except (LookupError, ValueError) as exc:  # unknown or unsupported declared encoding
        raise XMLError(f"unreadable XML: {exc}") from exc
    if builder.root_name is None:
        raise XMLError("empty document")
    if builder.root is None:
        raise XMLError(f"expected a vos:node element, found {_clark(builder.root_name)}")
    return _node_from(builder.root, builder.nsmap)


def _prop_lines(properties: dict[str, str | None], indent: str) -> Iterable[str]:
    for key in sorted(properties):
        value = properties[key]
        attrs = f"uri={quoteattr(key)}"
        if key in props.IMMUTABLE:
            attrs += ' readOnly="true"'
        if value is None:
            yield f'{indent}<vos:property {attrs} xsi:nil="true" />'
        else:
            yield f"{indent}<vos:property {attrs}>{escape(value)}</vos:property>"


def _node_lines(node: Node, indent: str, top: bool, detail: bool) -> Iterable[str]:
    ns = f' xmlns:vos="{VOS_NS}" xmlns:xsi="{XSI_NS}"' if top else ""
    attrs = f'{ns} uri={quoteattr(node.uri)} xsi:type="vos:{node.type.value}"'
    if node.type is NodeType.DATA:
        attrs += f' busy="{"true" if node.busy else "false"}"'
    yield f"{indent}<vos:node{attrs}>"
    inner = indent + "  "
    if detail and node.properties:
        yield f"{inner}<vos:properties>"
        yield from _prop_lines(node.properties, inner + "  ")
        yield f"{inner}</vos:properties>"
    if node.type is NodeType.LINK:
        yield f"{inner}<vos:target>{escape(node.target or '')}</vos:target>"
    else:
        yield f"{inner}<vos:accepts />"
        yield f"{inner}<vos:provides />"
    if node.type is NodeType.CONTAINER:
        if node.children:
            yield f"{inner}<vos:nodes>"
            for child in node.children:
                yield from _node_lines(child, inner + "  ", top=False, detail=detail)
            yield f"{inner}</vos:nodes>"
        else:
            yield f"{inner}<vos:nodes />"
    yield f"{indent}</vos:node>"


def node_to_xml(node: Node, detail: bool = True) -> bytes:
    """Write a node document the way the servers do; ``detail=False`` is ``detail=min``."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    lines.extend(_node_lines(node, "", top=True, detail=detail))
    return ("\n".join(lines) + "\n").encode()


def transfer_to_xml(t: Transfer) -> bytes:
    """Write a transfer document (request or details)."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<vos:transfer xmlns:vos="{VOS_NS}" version="2.1">',
        f"  <vos:target>{escape(t.target)}</vos:target>",
        f"  <vos:direction>{escape(t.direction)}</vos:direction>",
    ]
    for p in t.protocols:
        inner = []
        if p.endpoint:
            inner.append(f"    <vos:endpoint>{escape(p.endpoint)}</vos:endpoint>")
        if p.security_method:
            inner.append(f"    <vos:securityMethod uri={quoteattr(p.security_method)} />")
        if inner:
            out.append(f"  <vos:protocol uri={quoteattr(p.uri)}>")
            out.extend(inner)
            out.append("  </vos:protocol>")
        else:
            out.append(f"  <vos:protocol uri={quoteattr(p.uri)} />")
    out.append(f"  <vos:keepBytes>{'true' if t.keep_bytes else 'false'}</vos:keepBytes>")
    if t.length is not None:
        out.append(f'  <vos:param uri="{props.LENGTH}">{t.length}</vos:param>')
    out.append("</vos:transfer>")
    return ("\n".join(out) + "\n").encode()


def parse_transfer(data: bytes, max_size: int = MAX_NODE_DOC) -> Transfer:
    """Parse a transfer document. Raises XMLError."""
    if len(data) > max_size:
        raise XMLError(f"document of {len(data)} bytes exceeds {max_size}")
    root, _ = _parse(data)
    if root.tag != _V + "transfer":
        raise XMLError(f"expected vos:transfer, found {root.tag}")
    target = (root.findtext(_V + "target") or "").strip()
    direction = (root.findtext(_V + "direction") or "").strip()
    if not target or not direction:
        raise XMLError("transfer needs a target and a direction")
    protocols = []
    for p in root.findall(_V + "protocol"):
        sm = p.find(_V + "securityMethod")
        protocols.append(
            Protocol(
                uri=p.get("uri") or "",
                endpoint=(p.findtext(_V + "endpoint") or "").strip() or None,
                security_method=sm.get("uri") if sm is not None else None,
            )
        )
    keep = (root.findtext(_V + "keepBytes") or "true").strip().lower() != "false"
    length = None
    for param in root.findall(_V + "param"):
        text = (param.text or "").strip()
        if param.get("uri") == props.LENGTH and text.isascii() and text.isdigit():
            length = int(text)
    return Transfer(
        target=target, direction=direction, protocols=protocols, keep_bytes=keep, length=length
    )


def job_to_xml(
    job: Job,
    *,
    owner: str,
    created: str,
    job_info: bytes | None = None,
    results_base: str = "",
) -> bytes:
    """Write a UWS 1.1 job document."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<uws:job xmlns:uws="{UWS_NS}" xmlns:xlink="{XLINK_NS}" '
        f'xmlns:xsi="{XSI_NS}" version="1.1">',
        f"  <uws:jobId>{escape(job.job_id)}</uws:jobId>",
        "  <uws:runId />",
        f"  <uws:ownerId>{escape(owner)}</uws:ownerId>",
        f"  <uws:phase>{job.phase.value}</uws:phase>",
        '  <uws:quote xsi:nil="true" />',
        f"  <uws:creationTime>{created}Z</uws:creationTime>",
        f"  <uws:startTime>{created}Z</uws:startTime>",
        f"  <uws:endTime>{created}Z</uws:endTime>"
        if not job.phase.active
        else '  <uws:endTime xsi:nil="true" />',
        "  <uws:executionDuration>0</uws:executionDuration>",
        '  <uws:destruction xsi:nil="true" />',
        "  <uws:parameters />",
    ]
    if job.results:
        out.append("  <uws:results>")
        for rid, href in job.results.items():
            out.append(f"    <uws:result id={quoteattr(rid)} xlink:href={quoteattr(href)} />")
        out.append("  </uws:results>")
    else:
        out.append("  <uws:results />")
    if job.error:
        out += [
            '  <uws:errorSummary type="fatal" hasDetail="true">',
            f"    <uws:message>{escape(job.error)}</uws:message>",
            "  </uws:errorSummary>",
        ]
    if job_info:
        body = job_info.decode()
        if body.startswith("<?xml"):
            body = body.split("?>", 1)[1].strip()
        out += ["  <uws:jobInfo>", body, "  </uws:jobInfo>"]
    out.append("</uws:job>")
    return ("\n".join(out) + "\n").encode()


def parse_job(data: bytes, max_size: int = 1 << 20) -> Job:
    """Parse a UWS job document. Raises XMLError."""
    if len(data) > max_size:
        raise XMLError(f"document of {len(data)} bytes exceeds {max_size}")
    root, _ = _parse(data)
    if root.tag != _U + "job":
        raise XMLError(f"expected uws:job, found {root.tag}")
    phase_text = (root.findtext(_U + "phase") or "UNKNOWN").strip()
    try:
        phase = JobPhase(phase_text)
    except ValueError as exc:
        raise XMLError(f"unknown job phase {phase_text!r}") from exc
    msg = root.findtext(f"{_U}errorSummary/{_U}message")
    results = {
        r.get("id", ""): r.get("{" + XLINK_NS + "}href", "")
        for r in root.findall(f"{_U}results/{_U}result")
    }
    return Job(
        job_id=(root.findtext(_U + "jobId") or "").strip(),
        phase=phase,
        error=msg.strip() if msg else None,
        results=results,
    )

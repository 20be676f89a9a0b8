"""Pydantic models of what VOSpace documents carry: nodes, transfers, UWS jobs."""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import quote, unquote

from pydantic import BaseModel, Field

from canfarfs.vospace import props

#: Characters left as they are in the path of a vos:// URI; everything else (``%``,
#: spaces, ``#``, ``?``, non-ASCII...) is percent-encoded, and readers decode once.
URI_SAFE = "/~!$&'()*+,;=:@-._"


def path_to_uri(authority: str, path: str) -> str:
    """``vos://<authority>/<encoded path>`` (no trailing slash for the root)."""
    path = path.strip("/")
    return f"vos://{authority}/{quote(path, safe=URI_SAFE)}" if path else f"vos://{authority}"


class NodeType(StrEnum):
    """The node kinds servers emit (input variants of DataNode are mapped to DATA)."""

    CONTAINER = "ContainerNode"
    DATA = "DataNode"
    LINK = "LinkNode"


class Node(BaseModel):
    """One VOSpace node. ``properties`` maps a property URI to its text (None = xsi:nil)."""

    uri: str
    type: NodeType
    properties: dict[str, str | None] = Field(default_factory=dict)
    busy: bool = False
    target: str | None = None
    #: Children as listed by the server; None when the document had no ``nodes`` element.
    children: list[Node] | None = None

    @property
    def name(self) -> str:
        """The last path component of the node URI ('' for a service root)."""
        path = self.uri.split("://", 1)[-1]
        head, _, tail = path.rpartition("/")
        return unquote(tail) if head else ""

    def prop(self, uri: str) -> str | None:
        """A property's text, or None when absent or nil."""
        return self.properties.get(uri)

    @property
    def length(self) -> int:
        """core#length as an int (0 when absent or not a number)."""
        try:
            return int(self.properties.get(props.LENGTH) or 0)
        except ValueError:
            return 0

    @property
    def is_public(self) -> bool:
        return (self.properties.get(props.ISPUBLIC) or "").lower() == "true"

    @property
    def is_locked(self) -> bool:
        return (self.properties.get(props.ISLOCKED) or "").lower() == "true"


class Protocol(BaseModel):
    """A transfer protocol with an optional endpoint and security method."""

    uri: str
    endpoint: str | None = None
    security_method: str | None = None


class Transfer(BaseModel):
    """A VOSpace transfer document (negotiation request, details, or move request)."""

    target: str
    direction: str
    protocols: list[Protocol] = Field(default_factory=list)
    keep_bytes: bool = True
    #: Declared content length (2.1 ``param core#length``), if any.
    length: int | None = None

    @property
    def is_move(self) -> bool:
        return self.direction.startswith("vos://")


class JobPhase(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"

    @property
    def active(self) -> bool:
        return self in (JobPhase.PENDING, JobPhase.QUEUED, JobPhase.EXECUTING, JobPhase.UNKNOWN)


class Job(BaseModel):
    """A UWS job as the client needs it: id, phase, error text and results."""

    job_id: str
    phase: JobPhase
    error: str | None = None
    results: dict[str, str] = Field(default_factory=dict)

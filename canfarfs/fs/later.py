"""What a write-back mount sends later besides file bytes: directories it made
(:class:`PendingDir`), and property changes (:class:`LaterProps`): the dates ``touch``,
``tar -x``, ``cp -a`` and ``rsync -a`` set, and the modes a copy records (which change
no access).

With ``--writeback`` such a change is kept here, shown by the mount at once (laid over
the node it changes), and sent by the write-back queue like an upload: after the
write-back delay, with retries, before ``canfarfs sync`` returns. Access changes
(``chmod o+r``, groups) and ``user.*`` attributes are never deferred: they go to the
server at once, as without write-back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trio

from canfarfs.vospace import props
from canfarfs.vospace.model import Node, NodeType

#: The properties a write-back mount may send later.
DEFERRABLE = frozenset({props.MTIME, props.MODE})


@dataclass
class LaterProps:
    """The changes still to send for one node (the write-back queue's item: it has the
    ``service``, ``path``, ``mtime``, ``dirty`` and ``discarded`` a staged file has)."""

    service: str
    path: str
    type: NodeType
    changes: dict[str, str | None] = field(default_factory=dict)
    #: When the changes were last made (wall clock, as a staged file's).
    mtime: float = field(default_factory=time.time)
    #: The node is gone (removed here): nothing is sent.
    discarded: bool = False
    #: One send at a time (the queue's and ``sync``'s), and no rename during one.
    lock: trio.Lock = field(default_factory=trio.Lock, repr=False)

    @property
    def dirty(self) -> bool:
        return bool(self.changes) and not self.discarded

    def add(self, changes: dict[str, str | None]) -> None:
        self.changes.update(changes)
        self.mtime = time.time()

    def sent(self, changes: dict[str, str | None]) -> None:
        """``changes`` are on the server: forget those not changed again meanwhile."""
        for uri, value in changes.items():
            if uri in self.changes and self.changes[uri] == value:
                del self.changes[uri]

    def over(self, node: Node) -> Node:
        """``node`` as it will be once the changes are sent."""
        properties = dict(node.properties)
        for uri, value in self.changes.items():
            if value is None:
                properties.pop(uri, None)
            else:
                properties[uri] = value
        return node.model_copy(update={"properties": properties})


@dataclass
class PendingDir:
    """A directory a write-back mount made and has not created on the server yet (the
    queue's item, as a staged file is): shown at once, created after the delay, or
    before anything is sent inside it."""

    service: str
    path: str
    #: What the mount shows until the server's node replaces it.
    node: Node
    mtime: float = field(default_factory=time.time)
    discarded: bool = False
    created: bool = False
    lock: trio.Lock = field(default_factory=trio.Lock, repr=False)

    @property
    def dirty(self) -> bool:
        return not self.created and not self.discarded

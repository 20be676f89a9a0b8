"""POSIX attributes of VOSpace nodes (vospace-api.md §8), independent of FUSE."""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from canfarfs.vospace import props
from canfarfs.vospace.model import Node, NodeType

BLOCK = 512


@dataclass(frozen=True)
class Attr:
    """What ``stat`` shows for one entry."""

    mode: int
    size: int
    mtime_ns: int
    nlink: int = 1

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def blocks(self) -> int:
        return (self.size + BLOCK - 1) // BLOCK


def parse_date(text: str | None) -> int:
    """A VOSpace date (UTC, no zone) as nanoseconds since the epoch; now if missing."""
    if text:
        for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
            try:
                dt = datetime.strptime(text.rstrip("Z"), fmt).replace(tzinfo=UTC)
                return int(dt.timestamp() * 1e9)
            except ValueError:
                continue
    return time.time_ns()


def mode_of(node: Node) -> int:
    """Mode bits: owner rwx (rw for files); group r(x) if groupread, w if groupwrite;
    other r(x) if ispublic. Write groups imply read (§4.3)."""
    if node.type is NodeType.CONTAINER:
        kind, x = stat.S_IFDIR, True
    elif node.type is NodeType.LINK:
        return stat.S_IFLNK | 0o777
    else:
        kind, x = stat.S_IFREG, False
    mode = stat.S_IRUSR | stat.S_IWUSR | (stat.S_IXUSR if x else 0)
    if node.prop(props.GROUPREAD) or node.prop(props.GROUPWRITE):
        mode |= stat.S_IRGRP | (stat.S_IXGRP if x else 0)
    if node.prop(props.GROUPWRITE):
        mode |= stat.S_IWGRP
    if node.is_public:
        mode |= stat.S_IROTH | (stat.S_IXOTH if x else 0)
    return kind | mode


def attr_of(node: Node) -> Attr:
    size = node.length if node.type is NodeType.DATA else (
        len((node.target or "").encode()) if node.type is NodeType.LINK else 0)
    return Attr(mode=mode_of(node), size=size, mtime_ns=parse_date(node.prop(props.DATE)),
                nlink=2 if node.type is NodeType.CONTAINER else 1)


def dir_attr(mode: int = 0o755) -> Attr:
    """A virtual directory (the mount root)."""
    return Attr(mode=stat.S_IFDIR | mode, size=0, mtime_ns=time.time_ns(), nlink=2)

"""VOSpace semantics for the emulator, free of HTTP: paths, permissions, nodes, moves.

One :class:`Space` per service (arc or vault). Flavour switches follow the fidelity
checklist of vospace-api.md §13.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from canfarfs.emulator import errors
from canfarfs.emulator.config import EmulatorConfig, User
from canfarfs.emulator.errors import Fault
from canfarfs.emulator.store import NodeRecord, Store
from canfarfs.vospace import props
from canfarfs.vospace.model import Node, NodeType, path_to_uri

#: Owner of the service roots (``arc/``, ``arc/home``, ``arc/projects``, ``vault/``): a
#: system identity no user can be. It was "root", which made a mount run as root on
#: ``--local`` the admin, so the refusals a real user meets were never seen.
ADMIN = "cadc-system"
PATH_MAX = 4096
MAX_LINK_HOPS = 20
# Characters XML 1.0 cannot carry (a node name must fit in a node document).
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Flavour:
    """What differs between arc (cavern) and vault (vospace-api.md §13)."""

    name: str
    ranges: bool
    paged: bool
    locks: bool
    files_put: bool
    max_name_bytes: int
    max_name_chars: int

    @property
    def authority(self) -> str:
        return f"cadc.nrc.ca~{self.name}"


ARC = Flavour(
    "arc",
    ranges=False,
    paged=False,
    locks=False,
    files_put=True,
    max_name_bytes=255,
    max_name_chars=255,
)
VAULT = Flavour(
    "vault",
    ranges=True,
    paged=True,
    locks=True,
    files_put=False,
    max_name_bytes=4 * 512,
    max_name_chars=512,
)
FLAVOURS = {"arc": ARC, "vault": VAULT}


def split_raw_path(raw: str, flavour: Flavour) -> str:
    """A percent-encoded URL path (after ``/nodes``) to a node path; Fault 400 if unsafe.

    Each segment is decoded on its own, so an encoded ``/`` never becomes a separator;
    ``.``/``..``, empty segments, NUL and characters XML cannot carry are refused.
    """
    raw = raw.strip("/")
    if not raw:
        return ""
    parts = []
    for seg in raw.split("/"):
        try:
            name = unquote(seg, errors="strict")
        except UnicodeDecodeError:
            raise errors.invalid("node name is not valid UTF-8") from None
        check_name(name, flavour)
        parts.append(name)
    return "/".join(parts)


def check_name(name: str, flavour: Flavour) -> None:
    """Refuse names VOSpace (and the node XML) cannot hold."""
    if name in ("", ".", ".."):
        raise errors.invalid(f"invalid node name: {name!r}")
    if "/" in name:
        raise errors.invalid("node name contains a path separator")
    if _XML_BAD.search(name):
        raise errors.invalid("node name contains a control character")
    if len(name.encode()) > flavour.max_name_bytes or len(name) > flavour.max_name_chars:
        raise Fault(400, f"InvalidArgument: node name too long: {len(name.encode())} bytes")


class Space:
    """One VOSpace service over the shared store."""

    def __init__(self, flavour: Flavour, config: EmulatorConfig, store: Store) -> None:
        self.flavour = flavour
        self.config = config
        self.store = store
        self.service = flavour.name
        self._ensure_allocations()

    # -- URIs ----------------------------------------------------------------------

    def uri(self, path: str) -> str:
        return path_to_uri(self.flavour.authority, path)

    def path_of(self, uri: str) -> str:
        """The node path of a ``vos://`` URI of this service; Fault 400 otherwise."""
        m = re.match(r"^vos://([^/]+?)(/.*)?$", uri.strip())
        if not m:
            raise Fault(400, f"InvalidURI: not a vos URI: {uri}")
        authority = m.group(1).replace("!", "~")
        if authority != self.flavour.authority:
            raise Fault(400, f"InvalidArgument: not a URI of this service: {uri}")
        raw = m.group(2) or ""
        # URIs in documents are not percent-encoded by every client; decode once.
        parts = [unquote(p) for p in raw.strip("/").split("/") if p]
        for p in parts:
            check_name(p, self.flavour)
        return "/".join(parts)

    # -- allocations and permissions -------------------------------------------------

    def _ensure_allocations(self) -> None:
        def ensure(path: str, owner: str, public: bool, quota: int | None) -> None:
            rec = self.store.get(self.service, path)
            if rec is not None:
                if owner == ADMIN and rec.owner != ADMIN:  # made by an older emulator
                    self.store.db.execute(
                        "UPDATE nodes SET owner=? WHERE service=? AND path=?",
                        (ADMIN, self.service, path),
                    )
                return
            p = {props.ISPUBLIC: "true" if public else "false"}
            if self.service == "arc" or path:
                p[props.INHERIT] = "false"
            if quota is not None:
                p[props.QUOTA] = str(quota)
            self.store.insert(NodeRecord(self.service, path, NodeType.CONTAINER, owner, p))

        ensure("", ADMIN, True, None)
        if self.service == "arc":
            ensure("home", ADMIN, True, None)
            ensure("projects", ADMIN, True, None)
            for u in self.config.users:
                ensure(f"home/{u.name}", u.name, False, self.config.quota)
        else:
            for u in self.config.users:
                ensure(u.name, u.name, False, self.config.quota)

    def allocation(self, path: str) -> NodeRecord | None:
        """The nearest ancestor-or-self carrying a quota (the allocation node)."""
        p: str | None = path
        while p is not None:
            rec = self.store.get(self.service, p)
            if rec is not None and props.QUOTA in rec.props:
                return rec
            p = p.rpartition("/")[0] if p else None
        return None

    def _groups(self, rec: NodeRecord, key: str) -> set[str]:
        return set(props.value_to_groups(rec.props.get(key)))

    def _is_owner(self, rec: NodeRecord, user: User | None) -> bool:
        if user is None:
            return False
        if rec.owner == user.name:
            return True
        alloc = self.allocation(rec.path)
        return alloc is not None and alloc.owner == user.name

    def can_read(self, rec: NodeRecord, user: User | None) -> bool:
        if rec.props.get(props.ISPUBLIC, "").lower() == "true" or self._is_owner(rec, user):
            return True
        if user is None:
            return False
        allowed = self._groups(rec, props.GROUPREAD) | self._groups(rec, props.GROUPWRITE)
        return bool(allowed & user.groups)

    def can_write(self, rec: NodeRecord, user: User | None) -> bool:
        """Write permission, ignoring locks (property updates ignore them)."""
        if self._is_owner(rec, user):
            return True
        return user is not None and bool(self._groups(rec, props.GROUPWRITE) & user.groups)

    def locked(self, rec: NodeRecord) -> bool:
        return self.flavour.locks and rec.props.get(props.ISLOCKED, "").lower() == "true"

    # -- arc is a POSIX tree -----------------------------------------------------------
    # cavern serves a file system: what a session writes under /arc is simply there.
    # The emulator keeps metadata in SQLite, so it reconciles a container with its
    # directory on disk whenever the container is listed or a missing child is looked up.

    def reconcile(self, container: NodeRecord) -> None:
        """Import files and directories that appeared on disk (arc only); refresh the
        length and date of data nodes whose bytes changed there."""
        if self.service != "arc" or container.type is not NodeType.CONTAINER:
            return
        disk = self.store.root / "arc" / container.path
        try:
            entries = list(os.scandir(disk))
        except OSError:
            return
        known = {c.name: c for c in self.store.children(self.service, container.path)}
        for entry in entries:
            self._reconcile_entry(container, entry, known.get(entry.name))

    def _reconcile_entry(
        self, container: NodeRecord, entry: os.DirEntry[str], rec: NodeRecord | None
    ) -> None:
        try:
            check_name(entry.name, self.flavour)
            st = entry.stat(follow_symlinks=False)
        except (Fault, OSError):
            return
        path = f"{container.path}/{entry.name}" if container.path else entry.name
        date = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        if rec is None:
            if entry.is_dir(follow_symlinks=False):
                kind = NodeType.CONTAINER
            elif entry.is_file(follow_symlinks=False):
                kind = NodeType.DATA
            else:
                return
            alloc = self.allocation(container.path)
            owner = alloc.owner if alloc is not None else container.owner
            self.store.insert(
                NodeRecord(
                    self.service,
                    path,
                    kind,
                    owner,
                    {props.ISPUBLIC: "false"},
                    length=st.st_size if kind is NodeType.DATA else 0,
                    date=date,
                )
            )
        elif (
            rec.type is NodeType.DATA
            and entry.is_file(follow_symlinks=False)
            and (st.st_size != rec.length)
        ):
            self.store.save_bytes(rec, st.st_size, None)

    def _refresh_from_disk(self, rec: NodeRecord) -> None:
        """arc is a POSIX tree: a file a session changed shows its new length at once."""
        try:
            size = self.store.data_path(rec).stat().st_size
        except OSError:
            return
        if size != rec.length:
            self.store.save_bytes(rec, size, None)

    # -- resolution ------------------------------------------------------------------

    def link_target_path(self, rec: NodeRecord) -> str:
        """The path a same-service LinkNode points at; Fault for external links."""
        target = rec.target or ""
        if not target.startswith("vos://"):
            raise Fault(400, f"InvalidArgument: cannot navigate external link {target}")
        try:
            return self.path_of(target)
        except Fault:
            raise Fault(400, f"InvalidArgument: cannot navigate external link {target}") from None

    def resolve(
        self,
        path: str,
        user: User | None,
        *,
        follow_last: bool = False,
        not_found_target: bool = False,
    ) -> NodeRecord:
        """Walk ``path`` from the root, following links in intermediate components.

        Read permission is checked on intermediate containers (403).
        """
        rec = self.store.get(self.service, "")
        assert rec is not None
        parts = path.split("/") if path else []
        current = ""
        hops = 0
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            if rec.type is not NodeType.CONTAINER:
                raise errors.node_not_found(self.uri(path), not_found_target)
            if current and not self.can_read(rec, user):
                raise errors.denied(self.uri(current))
            parent_rec = rec
            current = f"{current}/{name}" if current else name
            child = self.store.get(self.service, current)
            if child is None and self.service == "arc":
                self.reconcile(parent_rec)
                child = self.store.get(self.service, current)
            elif (
                child is not None and last and child.type is NodeType.DATA and self.service == "arc"
            ):
                self._refresh_from_disk(child)  # a session may have appended to it
            if child is None:
                raise errors.node_not_found(self.uri(path), not_found_target)
            while child.type is NodeType.LINK and (not last or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise Fault(404, f"UnreadableLinkTarget: {self.uri(path)}")
                current = self.link_target_path(child)
                target = self.store.get(self.service, current)
                if target is None:
                    raise Fault(404, f"UnreadableLinkTarget: {child.target}")
                child = target
            rec = child
        return rec

    def resolve_parent(self, path: str, user: User | None) -> NodeRecord:
        """The container that would hold ``path`` (links followed); ContainerNotFound."""
        parent = path.rpartition("/")[0]
        try:
            rec = self.resolve(parent, user, follow_last=True)
        except Fault as fault:
            if fault.status == 404:
                raise errors.container_not_found(self.uri(parent)) from None
            raise
        if rec.type is not NodeType.CONTAINER:
            raise errors.container_not_found(self.uri(parent))
        return rec

    # -- documents -------------------------------------------------------------------

    def to_node(self, rec: NodeRecord, user: User | None, *, detail: str = "properties") -> Node:
        """The node as the service writes it (without children)."""
        p: dict[str, str | None] = dict(rec.props)
        if not self.flavour.locks:
            p.pop(props.ISLOCKED, None)
        p[props.CREATOR] = rec.owner
        p[props.DATE] = rec.date
        p.setdefault(props.ISPUBLIC, "false")
        if rec.type is NodeType.DATA:
            p[props.LENGTH] = str(rec.length)
            if rec.md5:
                p[props.MD5] = rec.md5
            if self.service == "vault" and rec.content_date:
                p[props.CONTENT_DATE] = rec.content_date
        elif rec.type is NodeType.CONTAINER:
            p[props.LENGTH] = str(self.store.subtree_bytes(self.service, rec.path))
        if detail == "max":
            if self.can_read(rec, user):
                p[props.READABLE] = "true"
            if self.can_write(rec, user) and not self.locked(rec):
                p[props.WRITABLE] = "true"
        return Node(
            uri=self.uri(rec.path),
            type=rec.type,
            properties=p,
            target=rec.target,
            children=[] if rec.type is NodeType.CONTAINER else None,
        )

    def clean_props(self, given: dict[str, str | None]) -> dict[str, str | None]:
        """Drop immutable properties; refuse unknown core keys (400)."""
        out: dict[str, str | None] = {}
        for key, value in given.items():
            if key in props.IMMUTABLE or key == props.CREATOR_JWT:
                continue
            if props.is_unrecognised_core(key):
                raise errors.invalid("unrecognized property URI in vospace namespace")
            if key == props.ISLOCKED and not self.flavour.locks:
                continue  # arc accepts the lock flag but does not store it
            out[key] = value
        return out

    # -- operations ------------------------------------------------------------------

    def check_path_length(self, path: str) -> None:
        """arc keeps bytes in a POSIX tree: a path the OS cannot hold is a 400, not a 500."""
        if self.service == "arc" and len(os.fsencode(self.store.root / "arc" / path)) >= PATH_MAX:
            raise errors.invalid(f"path too long: {len(path.encode())} bytes")

    def create(self, path: str, node: Node, user: User | None) -> NodeRecord:
        if user is None:
            raise errors.denied(self.uri(path))
        self.check_path_length(path)
        if not path:
            raise errors.duplicate(self.uri(path))
        if self.path_of(node.uri) != path:
            raise Fault(
                400,
                "InvalidURI: invalid input: vos URI mismatch: "
                f"doc={node.uri} and path={self.uri(path)}",
            )
        parent = self.resolve_parent(path, user)
        name = path.rpartition("/")[2]
        real_path = f"{parent.path}/{name}" if parent.path else name
        if self.store.get(self.service, real_path) is not None:
            raise errors.duplicate(self.uri(path))
        if not self.can_write(parent, user) or self.locked(parent):
            raise errors.denied(self.uri(path))
        given = {k: v for k, v in self.clean_props(node.properties).items() if v is not None}
        if parent.props.get(props.INHERIT, "").lower() == "true":
            for key in (props.ISPUBLIC, props.GROUPREAD, props.GROUPWRITE):
                if key in parent.props:
                    given.setdefault(key, parent.props[key])
            if node.type is NodeType.CONTAINER:
                given.setdefault(props.INHERIT, "true")
        given.setdefault(props.ISPUBLIC, "false")
        if node.type is NodeType.CONTAINER and self.service == "arc":
            given.setdefault(props.INHERIT, "false")
        target = None
        if node.type is NodeType.LINK:
            target = (node.target or "").strip()
            self._check_link_target(target)
        rec = NodeRecord(self.service, real_path, node.type, user.name, given, target=target)
        self.store.insert(rec)
        return rec

    def _check_link_target(self, target: str) -> None:
        if not target:
            raise errors.invalid("link node has no target")
        if self.service == "arc":
            if target.startswith("file://"):
                return
            if not target.startswith("vos://"):
                raise Fault(400, "link to external resource")
            authority = target[len("vos://") :].split("/", 1)[0].replace("!", "~")
            if authority != self.flavour.authority:
                raise Fault(400, "link to external resource")

    def update(self, path: str, node: Node, user: User | None) -> NodeRecord:
        if self.path_of(node.uri) != path:
            raise Fault(
                400,
                "InvalidArgument: invalid input: vos URI mismatch: "
                f"doc={node.uri} and path={self.uri(path)}",
            )
        rec = self.resolve(path, user, not_found_target=True)
        if rec.type is not node.type:
            raise errors.invalid("cannot change type of node")
        if not self.can_write(rec, user):
            raise errors.denied(self.uri(path))
        for key, value in self.clean_props(node.properties).items():
            if value is None or (value == "" and key in (props.GROUPREAD, props.GROUPWRITE)):
                rec.props.pop(key, None)
            else:
                rec.props[key] = value
        self.store.save_props(rec)
        return rec

    def delete(self, path: str, user: User | None) -> None:
        if not path:
            raise errors.denied(self.uri(path))
        rec = self.resolve(path, user, not_found_target=True)
        parent = self.store.get(self.service, rec.parent or "")
        if parent is None or not self.can_write(parent, user) or self.locked(parent):
            raise errors.denied(self.uri(path))
        if self.locked(rec) or self.allocation(rec.path) is rec or props.QUOTA in rec.props:
            raise errors.denied(self.uri(path))
        if rec.type is NodeType.CONTAINER and self.store.has_children(self.service, rec.path):
            raise Fault(400, f"container node '{rec.name}' is not empty")
        self.store.delete(rec)

    def delete_tree(self, path: str, user: User | None) -> tuple[int, int]:
        """Recursive delete, leaves first, skipping locked or non-writable nodes."""
        rec = self.resolve(path, user, not_found_target=True)
        ok = failed = 0
        if rec.type is NodeType.CONTAINER:
            for child in self.store.children(self.service, rec.path):
                a, b = self.delete_tree(child.path, user)
                ok, failed = ok + a, failed + b
        try:
            self.delete(rec.path, user)
            ok += 1
        except Fault:
            failed += 1
        return ok, failed

    def move(self, src_uri: str, dst_uri: str, user: User | None) -> str:
        """Move/rename per vospace-api.md §6.1; returns the destination URI."""
        src_path = self.path_of(src_uri)
        try:
            dst_path = self.path_of(dst_uri)
        except Fault:
            raise errors.invalid(f"cannot move to another service: {dst_uri}") from None
        try:
            src = self.resolve(src_path, user)
        except Fault as fault:
            if fault.status == 404:
                raise Fault(404, f"NodeNotFound: {src_path}") from None
            raise
        if not src_path:
            raise errors.denied(self.uri(src_path))
        try:
            dst = self.resolve(dst_path, user, follow_last=True)
        except Fault as fault:
            if fault.status != 404:
                raise
            dst = None
        if dst is not None and dst.type is NodeType.CONTAINER:
            container, name = dst, src.name
        elif dst is not None:
            raise Fault(409, f"DuplicateNode: destination is an existing DataNode: {dst_path}")
        else:
            parent_path, _, name = dst_path.rpartition("/")
            try:
                container = self.resolve(parent_path, user, follow_last=True)
            except Fault as fault:
                if fault.status == 404:
                    raise Fault(
                        404, f"NodeNotFound: Parent directory for destination {dst_path}"
                    ) from None
                raise
            if container.type is not NodeType.CONTAINER:
                raise Fault(404, f"NodeNotFound: Parent directory for destination {dst_path}")
        new_path = f"{container.path}/{name}" if container.path else name
        self.check_path_length(new_path)
        deepest = (
            self.store.db.execute(
                "SELECT MAX(LENGTH(CAST(path AS BLOB))) FROM nodes WHERE service=? AND path>=? AND "
                "path<?",
                (self.service, src.path + "/", src.path + "0"),
            ).fetchone()[0]
            or 0
        )
        self.check_path_length(new_path + "x" * max(0, deepest - len(src.path.encode())))
        if self.store.get(self.service, new_path) is not None:
            raise Fault(409, f"DuplicateNode: {self.uri(new_path)}")
        if src.type is NodeType.CONTAINER and (
            new_path == src.path or new_path.startswith(src.path + "/")
        ):
            raise errors.invalid(
                f"Cannot move container node into its descendants: {src_path} -> {new_path}"
            )
        src_parent = self.store.get(self.service, src.parent or "")
        for node in (src_parent, container):
            if node is None or not self.can_write(node, user) or self.locked(node):
                raise errors.denied(self.uri(node.path if node else src_path))
        if self.locked(src) or props.QUOTA in src.props:
            raise errors.denied(self.uri(src_path))
        src_alloc, dst_alloc = self.allocation(src.path), self.allocation(new_path)
        if (
            src_alloc is not dst_alloc
            and dst_alloc is not None
            and src_alloc is not None
            and src_alloc.path != dst_alloc.path
        ):
            self.check_quota(
                new_path,
                self.store.subtree_bytes(self.service, src.path)
                + (src.length if src.type is NodeType.DATA else 0),
            )
        self.store.move(src, new_path)
        if self.service == "vault" and user is not None:
            src.owner = user.name
            self.store.db.execute(
                "UPDATE nodes SET owner=? WHERE service=? AND path=?",
                (user.name, self.service, new_path),
            )
        return self.uri(new_path)

    # -- quota -----------------------------------------------------------------------

    def remaining(self, path: str) -> int | None:
        """Bytes left in the allocation holding ``path`` (None: no quota)."""
        alloc = self.allocation(path)
        if alloc is None:
            return None
        quota = int(alloc.props.get(props.QUOTA, "0") or 0)
        return quota - self.store.subtree_bytes(self.service, alloc.path)

    def check_quota(
        self,
        path: str,
        new_bytes: int,
        replacing: int = 0,
        *,
        files_api: bool = False,
        left: int | None = None,
    ) -> None:
        """413 when ``new_bytes`` (replacing ``replacing``) would exceed the allocation.

        arc's ``/files`` answers ``limit: <remaining>``; negotiation says QuotaExceeded.
        """
        if left is None:
            left = self.remaining(path)
        if left is not None and new_bytes - replacing > left:
            text = f"limit: {max(left, 0)}" if files_api else "QuotaExceeded: quota exceeded"
            raise Fault(413, text)

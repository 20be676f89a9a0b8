"""What the storage core reports to ``canfarfs status`` (through the control file):
services, pending uploads, open files, cache and memory use, pinned trees, warm-ups,
bytes and requests. URLs, states and counts only: no secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from canfarfs.fs.staging import Stage

if TYPE_CHECKING:
    from canfarfs.fs.storage import Storage


class ServiceStatus(TypedDict):
    url: str
    reachable: bool
    #: Why it is unreachable; None while it answers.
    last_error: str | None
    #: Since when (Unix time) it has not answered: the mount serves it offline.
    offline_since: float | None


class UploadStatus(TypedDict):
    """A staged file whose bytes are not (all) on the server yet."""

    name: str
    size: int
    uploaded: int
    uploading: bool
    tries: int
    last_error: str | None
    kept_at: str
    open_handles: int


class CacheStatus(TypedDict):
    dir: str
    used: int
    budget: int


class MemoryStatus(TypedDict):
    used: int
    peak: int
    budget: int


class PinnedStatus(TypedDict):
    """Pinned trees (``canfarfs warmup --pin``) and the complete copies they hold."""

    paths: list[str]
    files: int
    bytes: int


class ConflictStatus(TypedDict):
    """A write-back upload that found the server's copy changed: where each version is."""

    path: str
    kept_as: str
    at: float


class StorageStatus(TypedDict):
    services: dict[str, ServiceStatus]
    #: close() returns once staged (``--writeback``); uploads are queued.
    writeback: bool
    uploads: list[UploadStatus]
    #: Nodes whose dates or copies' modes are still to send (write-back; later.py).
    dates_queued: int
    #: Directories made here and not yet created on the server (write-back).
    dirs_queued: int
    conflicts: list[ConflictStatus]
    #: Handles open on arc and vault files.
    open_files: int
    cache: CacheStatus
    memory: MemoryStatus
    pinned: PinnedStatus
    #: Warm-up jobs running or done (fs/warmup.py).
    warmups: list[dict[str, Any]]
    #: Bytes received for reads.
    fetched: int
    #: HTTP requests sent.
    requests: int


def storage_status(storage: Storage, open_files: int) -> StorageStatus:
    """The status of ``storage``, which has ``open_files`` handles open."""
    services: dict[str, ServiceStatus] = {}
    for name, client in storage.clients.items():
        down = storage.is_down(name)
        services[name] = {
            "url": client.base,
            "reachable": not down,
            "last_error": storage.last_error.get(name) if down else None,
            "offline_since": storage.offline_since.get(name),
        }
    uploads = [
        _upload(storage, stage)
        for stage in storage.stages.values()
        if not stage.discarded and (stage.dirty or stage.uploading)
    ]
    memory = storage.reads.memory
    pinned_files, pinned_bytes = storage.reads.pinned_usage()
    return {
        "services": services,
        "writeback": storage.writeback is not None,
        "uploads": uploads,
        "dates_queued": sum(1 for later in storage.later.values() if later.dirty),
        "dirs_queued": sum(1 for d in storage.pending_dirs.values() if d.dirty),
        "conflicts": [
            {"path": c.path, "kept_as": c.kept_as, "at": c.at} for c in storage.conflicts
        ],
        "open_files": open_files,
        "cache": {
            "dir": str(storage.config.cache_dir),
            "used": storage.reads.used(),
            "budget": storage.config.cache_size,
        },
        "memory": {"used": memory.used, "peak": memory.peak, "budget": memory.capacity},
        "pinned": {
            "paths": sorted(
                f"{service}/{path}".rstrip("/") for service, path in storage.reads.pins.roots
            ),
            "files": pinned_files,
            "bytes": pinned_bytes,
        },
        "warmups": storage.warmups.status(),
        "fetched": storage.reads.totals.fetched,
        "requests": next(iter(storage.clients.values())).http.sent if storage.clients else 0,
    }


def _upload(storage: Storage, stage: Stage) -> UploadStatus:
    f = storage.files.get((stage.service, stage.path))
    return {
        "name": f"{stage.service}/{stage.path}",
        "size": stage.size,
        "uploaded": stage.uploaded_bytes,
        "uploading": stage.uploading,
        "tries": stage.tries,
        "last_error": stage.last_error,
        "kept_at": str(stage.data_path),
        "open_handles": f.handles if f is not None and f.stage is stage else 0,
    }

"""Launching a spec file: read it, send it, record the outcome in ``.ids``/``.error``.

What the mount launched is remembered in memory (``launched``) so ``sessions/<id>/spec``
can show the spec, with the registry secret masked, while the server lists the session.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

import trio

from canfarfs import errors
from canfarfs.sessions.arrays import ArrayRecord, Arrays
from canfarfs.sessions.memfiles import MemFile
from canfarfs.sessions.specs import SpecError, read_spec
from canfarfs.skaha.client import Launch, SkahaClient
from canfarfs.skaha.models import RegistryAuth, SessionSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launched:
    """A session this mount launched: which spec file, and its text (secret masked)."""

    spec_name: str
    text: bytes
    name: str
    kind: str
    at: float


class Launcher:
    """Launches spec files through ``client``; ``registry`` is the configured default
    for specs without a ``registry:`` of their own."""

    def __init__(
        self,
        client: SkahaClient,
        registry: RegistryAuth | None = None,
        arrays: Arrays | None = None,
    ) -> None:
        self.client = client
        self.registry = registry
        #: Job arrays (specs with ``inputs``); None where arc cannot be reached.
        self.arrays = arrays
        self.launched: dict[str, Launched] = {}
        #: Registry secrets given in specs, by username, so a spec read back (showing
        #: ``secret: "***"``) and saved again still launches. Memory only.
        self.secrets: dict[str, str] = {}
        if registry is not None:
            self.secrets[registry.username] = registry.secret.get_secret_value()
        #: The (masked) text of the last spec launched under each session name.
        self._texts: dict[str, tuple[str, bytes]] = {}

    async def __call__(self, f: MemFile) -> None:
        """Launch ``f`` if it is a spec with content no launch has read yet."""
        async with f.lock:
            if not f.dirty or not f.is_spec or f.name is None:
                return
            name, data = f.name, bytes(f.data)
            f.dirty = False
            f.ids, f.error, f.failed_errno = [], None, None
            try:
                spec, parsed = read_spec(data, name, self.secrets)
            except SpecError as exc:
                if exc.parsed is not None:
                    _keep_masked(f, data, exc.parsed.masked)
                f.error = f"{name} was not launched: the spec is invalid.\n{_lines(exc.message)}"
                f.failed_errno = exc.errno
                raise SpecError(f"{name}: {exc.message}") from None
            text = _keep_masked(f, data, parsed.masked)
            if spec.inputs is not None:
                spec, result = await self._launch_array(f, name, spec)
            else:
                result = await self.client.create(spec, self.registry)
            self._record(name, text, spec, result)
            f.ids = result.ids
            if result.failures:
                f.error = _failure_text(name, spec, result)
                first = result.failures[min(result.failures)]
                if not result.ids:
                    f.failed_errno = first.errno
                raise type(first)(
                    f"{name}: {len(result.failures)} of {spec.replicas} "
                    f"replicas not launched: {first.message}",
                    status=first.status,
                )
            log.info("launched %s: %s", name, " ".join(result.ids))

    async def _launch_array(
        self, f: MemFile, name: str, spec: SessionSpec
    ) -> tuple[SessionSpec, Launch]:
        """Plan the array (expand, share out, write manifests), then launch it; a plan
        that fails launches nothing and says why in ``.error``."""
        try:
            if self.arrays is None:
                raise errors.NotPermitted(
                    "inputs need arc, and this mount has no arc storage to expand them in"
                )
            record = await self.arrays.plan(spec)
        except errors.CanfarfsError as exc:
            f.error = f"{name} was not launched: {exc.message}\n"
            f.failed_errno = exc.errno
            raise
        result = await self.client.create(record.spec, self.registry, extra_env=record.extra_env())
        note_launch(record, result)
        await self.arrays.keep(record)
        log.info(
            "array %s: %d inputs over %d replicas (%s), manifests in /arc/%s",
            record.name,
            record.inputs,
            len(record.replicas),
            record.split,
            record.folder,
        )
        return record.spec, result

    async def retry(self, record: ArrayRecord, failed: list[int]) -> Launch:
        """Launch ``failed`` replicas of ``record`` again, each with its own manifest."""
        assert self.arrays is not None
        result = await self.client.create(
            record.spec, self.registry, extra_env=record.extra_env(), only=set(failed)
        )
        note_launch(record, result)
        await self.arrays.keep(record)
        spec_name, text = self._texts.get(record.name, ("", b""))
        self._record(spec_name, text, record.spec, result)
        return result

    def _record(self, spec_name: str, text: bytes, spec: SessionSpec, result: Launch) -> None:
        now = trio.current_time()
        if text:
            self._texts[spec.name] = (spec_name, text)
        for replica, sid in result.by_replica.items():
            self.launched[sid] = Launched(
                spec_name, text, result.names[replica - 1].lower(), spec.kind, now
            )

    def forget(self, keep: set[str], older_than: float) -> None:
        """Drop records of sessions no longer listed (launched before ``older_than``)."""
        for sid in [s for s, r in self.launched.items() if s not in keep and r.at < older_than]:
            del self.launched[sid]


def note_launch(record: ArrayRecord, result: Launch) -> None:
    """Add the launched ids to their replicas; note why the others did not start."""
    for r in record.replicas:
        if r.number in result.by_replica:
            r.ids.append(result.by_replica[r.number])
            r.launch_error = None
        elif r.number in result.failures:
            r.launch_error = result.failures[r.number].message


def _keep_masked(f: MemFile, data: bytes, masked: str) -> bytes:
    """Store the masked text in place of what was written (unless written to since)."""
    text = masked.encode()
    if text != data and bytes(f.data) == data:
        f.data[:] = text
    return text


def _lines(message: str) -> str:
    return "\n".join(part.strip() for part in message.split("; ")) + "\n"


def _failure_text(name: str, spec: SessionSpec, result: Launch) -> str:
    n = spec.replicas
    head = (
        f"{name} was not launched: the server refused it."
        if not result.by_replica
        else f"{name}: {len(result.failures)} of {n} replicas were not launched "
        f"({len(result.by_replica)} launched, listed in {name}.ids)."
    )
    lines = [head]
    for replica in sorted(result.failures):
        exc = result.failures[replica]
        who = f"replica {replica} ({result.names[replica - 1]})" if n > 1 else spec.name
        lines.append(f"{who}: {exc.message} [{errno.errorcode.get(exc.errno, exc.errno)}]")
    if any(isinstance(e, errors.Timeout) for e in result.failures.values()):
        lines.append(
            f"A replica that timed out may still have started; see by-name/{spec.name.lower()}*."
        )
    return "\n".join(lines) + "\n"

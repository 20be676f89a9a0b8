"""Uploads: staged bytes to the server, durable only when its MD5 matches ours.

A staged file goes up whole (``VOSpaceClient.upload``, with ``Digest`` checked); a new
arc file written in order may stream while it is written (upstream.py) and is finished
at flush when the stream holds exactly the staged bytes. :class:`Uploads` knows stages
and clients only: what the mount records afterwards (the node, the cache, dates and
properties) is the storage core's ``after_upload``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from canfarfs import errors
from canfarfs.fs.membudget import MemoryBudget
from canfarfs.fs.meta import Key
from canfarfs.fs.staging import Stage
from canfarfs.fs.upstream import STREAM_AFTER, UploadStream
from canfarfs.vospace import props
from canfarfs.vospace.client import VOSpaceClient

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Uploads of files smaller than this hold back other handles' writes while they run
#: (one consistent copy, no second try); larger ones let writes flow (see upload).
HOLD_WRITES_BELOW = 64 * MiB

#: What the mount does once the server holds a stage's bytes: (key, stage, md5, was_new).
AfterUpload = Callable[[Key, Stage, str, bool], Awaitable[None]]


class Uploads:
    """Uploads of staged files through the service clients."""

    def __init__(
        self,
        clients: dict[str, VOSpaceClient],
        nursery: trio.Nursery,
        *,
        read_timeout: float,
        after_upload: AfterUpload,
        memory: MemoryBudget,
    ) -> None:
        self.clients = clients
        self.nursery = nursery
        self.read_timeout = read_timeout
        self.after_upload = after_upload
        #: The mount's one memory budget: streaming uploads queue within it.
        self.memory = memory

    async def write(self, stage: Stage, offset: int, data: bytes) -> int:
        """Write into the staged file; feed or start its streaming upload (upstream.py)."""
        n = await stage.write(offset, data)
        piece = data if n == len(data) else data[:n]
        if stage.stream is not None:
            await stage.stream.feed(offset, piece)
        elif self._may_stream(stage, offset + n):
            client = self.clients[stage.service]
            path = stage.path
            stage.stream = UploadStream.start(
                lambda body: client.upload_stream(path, body),
                stage.data_path,
                stage.size,
                self.read_timeout,
                self.nursery,
                self.memory,
            )
            stage.streamed = stage.stream is not None
        return n

    def _may_stream(self, stage: Stage, end: int) -> bool:
        """A new arc file, written in order up to here, past STREAM_AFTER, never streamed."""
        return (
            stage.service == "arc"
            and stage.new
            and not stage.streamed
            and not stage.discarded
            and not stage.uploading
            and end == stage.size
            and stage.size >= STREAM_AFTER
            and stage.in_order
        )

    async def _finish_stream(self, stage: Stage, md5: str) -> bool:
        """Complete the streaming upload if it holds exactly the staged bytes.

        True when the server answered with our MD5; otherwise (stream broken, behind,
        failed or a different MD5) False, and the caller uploads the staged copy.
        """
        stream, stage.stream = stage.stream, None
        if stream is None:
            return False
        if stream.upto != stage.size or not stage.in_order:
            stream.abort("the file changed out of order")
            return False
        try:
            server_md5 = await stream.finish()
        except errors.CanfarfsError as exc:
            log.info(
                "streaming upload of %s:%s failed, uploading the staged copy: %s",
                stage.service,
                stage.path,
                exc,
            )
            return False
        if server_md5 is None:
            try:
                node = await self.clients[stage.service].get_node(stage.path)
            except errors.CanfarfsError:
                return False
            server_md5 = node.prop(props.MD5) if node.length == stage.size else None
        if server_md5 != md5:
            log.warning(
                "streaming upload of %s:%s: server holds MD5 %s, ours is %s; "
                "uploading the staged copy",
                stage.service,
                stage.path,
                server_md5,
                md5,
            )
            return False
        stage.uploaded_bytes = stage.size
        return True

    async def upload(self, stage: Stage) -> None:
        """The upload itself (streamed or from the staged copy); the caller holds the lock.

        Other handles may write the file meanwhile. Below :data:`HOLD_WRITES_BELOW`
        bytes their writes wait until the upload ends, so it sends one consistent copy;
        a larger file goes up with writes flowing, and if the server then holds bytes
        other than the ones hashed (its MD5 differs) it goes up once more with writes
        held. Either way a close fails only when the bytes are at risk, never because
        someone else wrote meanwhile, and every write made before this flush is on the
        server; writes made during it leave the file dirty for the next flush.
        """
        key = (stage.service, stage.path)
        generation = stage.generation
        if stage.stream is not None:
            md5 = await stage.md5()
            if await self._finish_stream(stage, md5):
                self._uploaded(stage, generation)
                await self.after_upload(key, stage, md5, stage.new)
                return
        if stage.size < HOLD_WRITES_BELOW:
            async with stage.writes_held():
                generation = stage.generation
                md5 = await self._upload_staged(stage, await stage.md5())
        else:
            md5 = await stage.md5()
            try:
                md5 = await self._upload_staged(stage, md5)
            except errors.IntegrityError:
                if stage.generation == generation:
                    raise
                log.info(
                    "%s:%s was written during its upload: uploading it again with writes held",
                    stage.service,
                    stage.path,
                )
                async with stage.writes_held():
                    generation = stage.generation
                    md5 = await self._upload_staged(stage, await stage.md5())
        self._uploaded(stage, generation)
        await self.after_upload(key, stage, md5, stage.new)

    async def _upload_staged(self, stage: Stage, md5: str) -> str:
        """PUT the staged copy; the server's MD5 is checked by the client."""
        stage.tries += 1
        stage.uploading = True
        stage.uploaded_bytes = 0

        def progress(n: int) -> None:
            stage.uploaded_bytes = n

        try:
            await self.clients[stage.service].upload(
                stage.path, stage.data_path, stage.size, md5, progress=progress
            )
        except errors.CanfarfsError as exc:
            stage.last_error = str(exc)
            await trio.to_thread.run_sync(stage.journal)
            log.warning(
                "upload of %s:%s failed (try %d): %s", stage.service, stage.path, stage.tries, exc
            )
            raise
        finally:
            stage.uploading = False
        return md5

    @staticmethod
    def _uploaded(stage: Stage, generation: int) -> None:
        """The server holds the bytes of ``generation``: clean unless written since."""
        if stage.generation == generation:
            stage.uploaded()
        else:
            stage.last_error = None

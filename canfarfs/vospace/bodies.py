"""File bodies from a data location to a consumer: the one way bytes are read.

:func:`read_into` hands a body, a MiB at a time, to an ``accept(offset, bytes)`` callback
that may make it wait (bounded memory) or stop it. Large bodies are received by worker
threads (:mod:`canfarfs.bulk`) when the client has them; otherwise, and to turn a
refusal into the proper error, through the async client. Callers above this module
(the file system's read path) know neither threads nor HTTP, so in-process tests run
the same path as a mount.
"""

from __future__ import annotations

import trio

from canfarfs import errors
from canfarfs.bulk import Accept, Declined
from canfarfs.net import HTTP
from canfarfs.vospace.faults import error_from_response

MiB = 1024 * 1024
#: Bytes gathered by the async path before they are handed over.
BATCH = 1 * MiB


async def read_into(
    http: HTTP,
    url: str,
    *,
    ranged: bool,
    needs_auth: bool,
    start: int,
    end: int,
    accept: Accept,
    read_timeout: float,
) -> int:
    """Read [start, end) of the body at ``url`` into ``accept``; the offset reached.

    Without ranges the body always starts at 0 (``start`` must be 0). Returns early,
    short of ``end``, when ``accept`` says stop. Raises Timeout (no byte for
    ``read_timeout`` seconds), Unavailable (the body broke off), ProtocolError (a
    range ignored, a body shorter than asked), or the server's refusal.
    """
    if not ranged and start:
        raise errors.ProtocolError("a body without ranges starts at 0")
    headers = {"Accept-Encoding": "identity"}
    if ranged:
        headers["Range"] = f"bytes={start}-{end - 1}"
    bulk = http.bulk
    if bulk is not None:
        threaded = dict(headers)
        if needs_auth:
            threaded.update(await http.credentials.headers())
        http.sent += 1
        result = await bulk.get_into(url, threaded, start, accept, ranged=ranged)
        if not isinstance(result, Declined):
            return result
    return await _read_async(http, url, headers, needs_auth, start, accept, read_timeout)


async def _read_async(
    http: HTTP,
    url: str,
    headers: dict[str, str],
    needs_auth: bool,
    start: int,
    accept: Accept,
    read_timeout: float,
) -> int:
    pos = start
    batch: list[bytes] = []
    batch_len = 0
    async with http.stream("GET", url, headers=headers, auth=needs_auth) as r:
        if r.status_code == 204:
            return pos
        if r.status_code not in (200, 206):
            await r.aread()
            raise error_from_response(r, f"read {url.split('?')[0]}")
        if "Range" in headers and r.status_code != 206:
            raise errors.ProtocolError("server ignored a byte range")
        chunks = r.aiter_raw()
        while True:
            failure: errors.CanfarfsError | None = None
            try:
                with trio.fail_after(read_timeout):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                chunk = b""
            except trio.TooSlowError:
                chunk = b""
                failure = errors.Timeout(f"no data from server for {read_timeout:g} s")
            except Exception as exc:
                chunk = b""
                failure = errors.Unavailable(f"body interrupted: {exc}")
            batch.append(chunk)
            batch_len += len(chunk)
            if batch_len >= BATCH or (not chunk and batch_len):
                # What arrived before an error is kept too, so a retry can resume.
                data = b"".join(batch)
                batch, batch_len = [], 0
                if not await accept(pos, data):
                    return pos
                pos += len(data)
            if failure is not None:
                raise failure
            if not chunk:
                return pos

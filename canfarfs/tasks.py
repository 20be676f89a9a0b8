"""Background tasks that cannot take the mount down.

Every task the file system starts on its own (a download filling a cache copy, a
read-ahead range, a streaming upload, the hashing of staged bytes) runs through
:func:`spawn`. Its failure is logged with its traceback and handed to ``on_error``
(which fails the operations waiting on it, with an errno); it never reaches the
daemon's root nursery, where it would end the whole mount. Cancellation passes through.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from canfarfs import errors

log = logging.getLogger(__name__)

OnError = Callable[[BaseException], None]


def spawn(
    nursery: trio.Nursery,
    fn: Callable[..., Awaitable[object]],
    *args: object,
    what: str,
    on_error: OnError | None = None,
) -> None:
    """Start ``fn(*args)`` in ``nursery``; an exception it raises is contained."""
    nursery.start_soon(_contained, fn, args, what, on_error, name=what)


async def _contained(
    fn: Callable[..., Awaitable[object]],
    args: tuple[object, ...],
    what: str,
    on_error: OnError | None,
) -> None:
    try:
        await fn(*args)
    except Exception as exc:  # containing every failure is the point
        if isinstance(exc, errors.CanfarfsError):
            log.warning("%s failed: %s", what, exc)
        else:
            log.error("%s failed unexpectedly", what, exc_info=exc)
        if on_error is not None:
            try:
                on_error(exc)
            except Exception:  # a broken handler must not escape either
                log.exception("reporting the failure of %s", what)

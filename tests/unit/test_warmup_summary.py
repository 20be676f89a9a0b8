"""``canfarfs warmup``'s summary (warmupcmd.summary): what it prints from the job's
status entry, and its exit code (docs/semantics.md, *Warm-up and pinning*)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console

from canfarfs.warmupcmd import summary


def job(**over: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "state": "done",
        "error": None,
        "files": 60,
        "bytes": 60_000,
        "done_files": 60,
        "cached_files": 0,
        "cached_bytes": 0,
        "fetched_bytes": 60_000,
        "skipped": 0,
        "failed": [],
        "seconds": 1.0,
        "evicted_files": 0,
        "evicted_bytes": 0,
    }
    entry.update(over)
    return entry


def printed(entry: dict[str, Any]) -> tuple[int, str]:
    out = io.StringIO()
    code = summary(Path("/m"), entry, Console(file=out, width=200), pin=False)
    return code, out.getvalue()


def test_a_warm_up_that_kept_everything_exits_0() -> None:
    code, text = printed(job())
    assert code == 0
    assert "did not stay" not in text


def test_a_warm_up_bigger_than_the_cache_says_so_and_exits_1() -> None:
    code, text = printed(job(evicted_files=50, evicted_bytes=50_000))
    assert code == 1
    assert "50 file(s)" in text
    assert "did not stay in the cache" in text
    assert "--pin" in text
    assert "--cache-size" in text

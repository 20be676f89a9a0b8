"""The workloads, and the registry that sets the order they run and are reported in.

A workload is a function ``w_x(b: Bench, rtt: int) -> None`` that measures every tool
once per run at one round-trip time: each tool's measurement is a closure passed to
``b.measure(key, rtt, run_no, tool, fn)`` (a failure is recorded and the run goes on),
and each figure is recorded with ``b.record(key, rtt, tool, value, **extra)`` in the
unit of its row. Adding one is that function, in the module of its theme (``reads``,
``writes``, ``metadata``, ``sessions``, ``limits``) or a new one, and one line in
``STEPS`` below::

    step("jobs", sessions.w_job_arrays, Row("jobs_launch", "s", "≤0.5× canfar")),

which gives its ``--only`` name, the function (``services=ARC_VAULT``: called once per
service, as ``fn(b, rtt, service=...)``) and the rows it fills: the JSON key, the unit
(MB/s and files/s are better higher, s lower) and the goal as the table prints it.
``report.summarise`` computes the ratios against the peers (and the row's ``peer``,
a reference tool of its own: ``local dir``, ``cat``); the verdict is the row's
``judge`` when it has one (see ``Judge``), else ``report.judge_goal``'s rules for the
rows it knows, else n/a. The smoke test (``test_bench_mount_smoke.py``) lists every row
key: a new row goes there too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..rig import Bench
from . import limits, metadata, reads, sessions, writeback, writes

Measure = Callable[[Bench, int], None]
# (rtt, medians by tool, ratios canfarfs ÷ tool, the raw cells) -> (verdict, why)
Judge = Callable[[int, dict[str, float | None], dict[str, float], dict[str, Any]], tuple[str, str]]


@dataclass(frozen=True)
class Row:
    """One row of the table: a key of the JSON's ``workloads`` and ``rows``."""

    key: str
    unit: str
    goal: str
    judge: Judge | None = None
    # the tool the row is measured against, when not one of the table's columns (its
    # figure and the ratio canfarfs ÷ it are printed in the curl columns)
    peer: str | None = None


@dataclass(frozen=True)
class Step:
    """What ``--only NAME`` runs, and the rows it fills."""

    name: str
    measures: tuple[Measure, ...]
    rows: tuple[Row, ...]


ARC_VAULT = ("arc", "vault")


def step(name: str, fn: Callable[..., None], *rows: Row, services: tuple[str, ...] = ()) -> Step:
    measures = tuple(partial(fn, service=s) for s in services) if services else (fn,)
    return Step(name, measures, rows)


READ = "≥0.9×curl @0, ≥0.8×curl @20"
TTFB = "≤1.5×curl (first body byte)"
LS_COLD = "≤1.3×curl; req = pages+O(1)"
LS_WARM = "≤50 ms, 0 requests"
WITHIN_TTL = "≤10 ms within the TTL"

STEPS: tuple[Step, ...] = (
    step("limits", limits.w_limits, Row("limits", "MB/s", "what this machine allows (reference)")),
    step(
        "read",
        reads.w_read,
        Row("read_arc", "MB/s", READ),
        Row("read_vault", "MB/s", READ),
        services=ARC_VAULT,
    ),
    step(
        "full",
        reads.w_read_full_cache,
        Row("read_arc_full_cache", "MB/s", "within 10% of read_arc (fresh cache)"),
    ),
    step(
        "ttfb",
        reads.w_ttfb,
        Row("ttfb_arc", "s", TTFB),
        Row("ttfb_vault", "s", TTFB),
        services=ARC_VAULT,
    ),
    step("random", reads.w_random, Row("random_vault", "s", "≤2×curl time; fetched ≤4× read")),
    step(
        "write",
        writes.w_write,
        Row("write_arc", "MB/s", "≥0.8× the lesser of curl PUT and dd > cache dir"),
    ),
    step(
        "ls",
        metadata.w_listing,
        Row("ls_cold_arc", "s", LS_COLD),
        Row("ls_cold_vault", "s", LS_COLD),
        Row("ls_warm_arc", "s", LS_WARM),
        Row("ls_warm_vault", "s", LS_WARM),
        services=ARC_VAULT,
    ),
    step("small", writes.w_small, Row("small_files_arc", "files/s", "≥10×vcp, ≥3×mountvofs @20")),
    step("parallel", writes.w_parallel, Row("parallel_writers_arc", "x8/x1", "x8 ≥4× x1 @20")),
    Step(
        "writeback",
        (writeback.w_writeback_small, writeback.w_writeback_tar),
        (
            Row(
                "writeback_small_files",
                "files/s",
                "≥20× durable close @20 (to close())",
                judge=writeback.judge_writeback_small,
                peer="durable",
            ),
            Row(
                "writeback_sync",
                "s",
                "≤1.2× 8 parallel curl PUTs @20",
                judge=writeback.judge_writeback_sync,
                peer="curl",
            ),
            Row(
                "writeback_tar",
                "s",
                "≤3× tar -xf into a local dir @20",
                judge=writeback.judge_writeback_tar,
                peer="local dir",
            ),
        ),
    ),
    step(
        "warmup",
        writeback.w_warmup,
        Row(
            "warmup_small_files",
            "files/s",
            "≥8× sequential cat @20",
            judge=writeback.judge_warmup,
            peer="cat",
        ),
    ),
    # the daemon's peak RSS, recorded by read and write: no step of its own
    Step("rss", (), (Row("rss", "MB", "≤200 MB"),)),
    step(
        "sessions",
        sessions.w_sessions,
        Row("sessions_launch", "s", "≤0.5× canfar create(replicas=10)"),
        Row("sessions_ls", "s", WITHIN_TTL),
        Row("sessions_info", "s", WITHIN_TTL),
    ),
    step(
        "arrays",
        sessions.w_arrays,
        Row(
            "sessions_array_launch",
            "s",
            "info: 50 replicas over 10×--files inputs, beside canfar create(replicas=50)",
            judge=sessions.judge_array,
        ),
    ),
)

# Every row, in the order of the JSON and the table (the smoke test checks them all).
ROWS: dict[str, Row] = {row.key: row for s in STEPS for row in s.rows}
WORKLOADS: tuple[str, ...] = tuple(ROWS)
ONLY_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS if s.measures)
assert len(ROWS) == sum(len(s.rows) for s in STEPS), "a row key registered twice"

"""The soak script (benchmarks/soak.py): a short CI run checks that it works and samples;
the 10-minute run is marked slow and asserts that memory and open files stay flat.

    pytest -m slow tests/mount/test_soak.py -s          # CANFARFS_SOAK_MINUTES=10 by default
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mount_util import needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def run_soak(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_soak_script_runs_and_samples(tmp_path: Path) -> None:
    out_json = tmp_path / "soak.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = run_soak(
        "--minutes",
        "0.33",
        "--interval",
        "2",
        "--warmup",
        "0",
        "--settle",
        "2",
        "--json",
        str(out_json),
        "--tmp",
        str(scratch),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "t (s) | phase" in proc.stdout
    result = json.loads(out_json.read_text())
    phases = [s["phase"] for s in result["samples"]]
    assert phases[0] == "baseline"
    assert phases[-2:] == ["stopped", "settled"]
    assert phases.count("run") >= 8
    for s in result["samples"]:
        assert s["rss_kb"] > 10_000
        assert s["fds"] > 3
    ops = result["ops"]
    for op in ("create", "read", "ls", "session"):
        assert ops.get(op, 0) > 0, ops
    assert result["error_count"] == 0, result["errors"]
    assert result["daemon_exit"] == 0
    assert result["daemon_tracebacks"] == 0
    assert {"rss_flat", "fds_flat", "rss_delta_mb", "fd_settled"} <= set(result["verdict"])
    assert list(scratch.iterdir()) == []  # mount, data and cache removed


@pytest.mark.slow
def test_soak_stays_flat() -> None:
    minutes = float(os.environ.get("CANFARFS_SOAK_MINUTES", "10"))
    proc = run_soak("--minutes", str(minutes), "--progress", timeout=minutes * 60 + 600)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((SCRIPT.parent / "results" / "soak.json").read_text())
    v = result["verdict"]
    assert result["error_count"] == 0, result["errors"]
    assert v["rss_flat"], v
    assert v["fds_flat"], v
    assert v["ok"], v

"""The mount benchmark script runs end to end (tiny sizes, one run; not a measurement)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.emulator_util import have_tool
from tests.mount_util import needs_fuse

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mount.py"
WORKLOADS = {
    "limits",
    "read_arc_full_cache",
    "read_arc",
    "read_vault",
    "ttfb_arc",
    "ttfb_vault",
    "random_vault",
    "write_arc",
    "ls_cold_arc",
    "ls_cold_vault",
    "ls_warm_arc",
    "ls_warm_vault",
    "small_files_arc",
    "parallel_writers_arc",
    "writeback_small_files",
    "writeback_sync",
    "writeback_tar",
    "warmup_small_files",
    "rss",
    "sessions_launch",
    "sessions_ls",
    "sessions_info",
    "sessions_array_launch",
}


@needs_fuse
@pytest.mark.skipif(not have_tool("curl"), reason="the benchmark drives curl")
def test_bench_mount_script_runs_and_reports(tmp_path: Path) -> None:
    out_json = tmp_path / "mount.json"
    plot = tmp_path / "throughput.png"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--size",
            "4M",
            "--files",
            "20",
            "--rtts",
            "0",
            "--runs",
            "1",
            "--no-vofs",
            "--json",
            str(out_json),
            "--plot",
            str(plot),
            "--tmp",
            str(scratch),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| workload" in proc.stdout

    result = json.loads(out_json.read_text())
    assert set(result["workloads"]) == WORKLOADS
    assert result["parameters"]["size"] == 4 * 1024 * 1024
    # every measured workload has a canfarfs cell at 0 ms (figures, or the errors seen)
    # and a row in the summary
    for key in WORKLOADS - {"rss", "limits"}:
        cell = result["workloads"][key]["0"]["canfarfs"]
        assert cell["runs"] or cell.get("errors"), (key, cell)
        assert f"{key}@0" in result["rows"]
    assert result["workloads"]["read_arc"]["0"]["curl"]["runs"]
    # the pyfuse3 passthrough floor is measured beside canfarfs, and summarised
    for key in ("read_arc", "write_arc", "ls_cold_arc", "ls_warm_arc", "small_files_arc"):
        assert result["workloads"][key]["0"]["floor"]["runs"], key
        assert "floor" in result["rows"][f"{key}@0"]["ratio"], key
    assert result["rows"]["rss@0"]["result"] in {"PASS", "MISS"}
    # the limits block: every reference figure, and the rows judged against it
    limits = result["workloads"]["limits"]["0"]
    for tool in (
        "curl > /dev/null",
        "curl > cache dir",
        "curl | cat",
        "dd > cache dir",
        "http.client",
    ):
        assert limits[tool]["runs"], tool
    assert "limit" in result["rows"]["write_arc@0"]["ratio"]
    assert "fresh" in result["rows"]["read_arc_full_cache@0"]["ratio"]
    assert result["workloads"]["sessions_launch"]["0"]["canfar sync"]["runs"]
    # the scratch directory (payload, emulator root, mounts) is cleaned up
    assert list(scratch.iterdir()) == []

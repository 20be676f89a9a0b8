"""The emulator benchmark script runs end to end (tiny file, one run; not a measurement)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.emulator_util import have_tool

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_emulator.py"


@pytest.mark.skipif(not have_tool("curl"), reason="the benchmark drives curl")
def test_bench_emulator_script_runs_and_reports(tmp_path: Path) -> None:
    out_json = tmp_path / "emulator.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--size",
            "8M",
            "--runs",
            "1",
            "--json",
            str(out_json),
            "--tmp",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "median MB/s" in proc.stdout
    assert "arc PUT / arc GET" in proc.stdout

    result = json.loads(out_json.read_text())
    assert result["size_bytes"] == 8 * 1024 * 1024
    assert result["runs"] == 1
    assert set(result["median_mb_s"]) == {"baseline", "arc_get", "vault_get", "arc_put", "md5"}
    assert all(v > 0 for v in result["median_mb_s"].values())
    assert set(result["ratios"]) == {
        "arc_get_vs_baseline",
        "vault_get_vs_baseline",
        "arc_put_vs_arc_get",
        "arc_put_vs_md5",
    }
    # the scratch directory (payload, emulator root) is removed afterwards
    assert [p.name for p in tmp_path.iterdir()] == ["emulator.json"]

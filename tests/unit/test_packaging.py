"""Packaging: a wheel builds, holds the package, its data files and the ``canfarfs``
entry point, keeps the test-only dependencies out of the runtime set, and installed into
a fresh venv gives a working ``canfarfs`` command.

The throw-away venv gets its dependencies from this environment's site-packages (a
plain path in a .pth file, so the editable install of the source tree is not picked up)
and the wheel with ``--no-deps``. The build uses ``--no-build-isolation`` when hatchling
is importable here; otherwise pip fetches hatchling for an isolated build.
"""

from __future__ import annotations

import importlib.util
import os
import re
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_ONLY = ("vos", "canfar", "cadcutils", "schemathesis", "pytest", "hypothesis", "mypy")


def run(
    *cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False, cwd=cwd, env=env
    )
    assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        *isolation,
        "--quiet",
        "--wheel-dir",
        str(dist),
        str(ROOT),
    )
    [built] = dist.glob("canfarfs-*.whl")
    return built


def test_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
        metadata = z.read(f"{dist_info}/METADATA").decode()
    package = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "canfarfs").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert {n for n in package if n.startswith("canfarfs/data/")}, "no data files found"
    missing = package - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert not any(n.startswith("tests/") for n in names)
    assert "[console_scripts]\ncanfarfs = canfarfs.cli:main" in entry_points
    runtime = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert any(r.startswith("pyfuse3") for r in runtime)
    names = {re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower() for r in runtime}
    assert not names & set(TEST_ONLY), f"test-only runtime dependencies: {names}"
    assert all(any(op in r for op in (">", "<", "=", "~")) for r in runtime), runtime


def test_installed_wheel_gives_a_working_command(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    purelib = run(
        str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "_canfarfs_test_deps.pth").write_text("\n".join(deps) + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        str(wheel),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = run(
        str(python),
        "-c",
        "import canfarfs, canfarfs.cli; print(canfarfs.__file__)",
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the source tree
    assert Path(where).parent.joinpath("data", "VOSpace-2.1.xsd").is_file()
    command = venv / "bin" / "canfarfs"
    out = run(str(command), "--help", cwd=tmp_path, env=env).stdout
    assert "usage: canfarfs" in out
    assert "mount" in out
    assert "SOURCE MOUNTPOINT" in out
    assert run(str(command), "mount", "--help", cwd=tmp_path, env=env).stdout.count("-o ") >= 1
    version = run(str(command), "--version", cwd=tmp_path, env=env).stdout
    assert version.startswith("canfarfs ")

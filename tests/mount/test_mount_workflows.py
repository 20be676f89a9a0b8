"""End to end: the seed's storage workflow with shell tools, FITS files with astropy,
and (marked slow) a 1 GiB file both ways."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount_util import Mount, local_mount, needs_fuse

pytestmark = [needs_fuse, pytest.mark.fuse]
USER = "alice"


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    yield from local_mount(tmp_path_factory.mktemp("wf"))


def sh(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    return r


def test_seed_storage_workflow_with_shell_tools(mount: Mount, tmp_path: Path) -> None:
    """Create a project directory, upload data and a script, list, download results by
    glob, set a property, make a file public and private again, delete recursively."""
    local = tmp_path / "observations"
    local.mkdir()
    for i in range(3):
        (local / f"obs{i}.fits").write_bytes(os.urandom(10_000 + i))
    (tmp_path / "process_data.py").write_text("print('processing')\n")
    home = mount.path / "arc" / "home" / USER
    steps = [
        "mkdir -p analysis",
        f"cp -r {local} analysis/input",
        f"cp {tmp_path}/process_data.py analysis/",
        "ls -l analysis analysis/input",
        "mkdir -p analysis/output && cp analysis/input/*.fits analysis/output/",
        f"mkdir -p {tmp_path}/results && cp analysis/output/*.fits {tmp_path}/results/",
        "setfattr -n user.quality -v verified analysis/input/obs0.fits",
        "setfattr -n user.processing_date -v 2026-01-14 analysis/input/obs0.fits",
        "chmod o+r analysis/input/obs1.fits",
        "chmod o-r analysis/input/obs1.fits",
    ]
    for step in steps:
        r = sh(step, home)
        assert r.returncode == 0, f"{step}: {r.stderr}"
    for i in range(3):
        got = (tmp_path / "results" / f"obs{i}.fits").read_bytes()
        assert got == (local / f"obs{i}.fits").read_bytes()
    assert os.getxattr(home / "analysis/input/obs0.fits", "user.quality") == b"verified"
    assert os.getxattr(home / "analysis/input/obs1.fits", "user.ispublic") == b"false"
    assert sh("rm -r analysis", home).returncode == 0
    assert not (home / "analysis").exists()


@pytest.mark.parametrize("service", ["arc", "vault"])
def test_astropy_opens_fits_with_and_without_memmap(mount: Mount, service: str) -> None:
    fits = pytest.importorskip("astropy.io.fits")
    np = pytest.importorskip("numpy")
    base = mount.path / "arc" / "home" / USER if service == "arc" else mount.path / "vault" / USER
    data = np.arange(256 * 256, dtype=">f4").reshape(256, 256)
    hdu = fits.PrimaryHDU(data)
    hdu.header["OBSERVER"] = "canfarfs"
    path = base / "image.fits"
    hdu.writeto(path, overwrite=True)
    for memmap in (False, True):
        with fits.open(path, memmap=memmap) as hdul:
            assert hdul[0].header["OBSERVER"] == "canfarfs"
            assert float(hdul[0].data[200, 100]) == float(data[200, 100])
    with fits.open(path, mode="update") as hdul:
        hdul[0].header["QUALITY"] = "good"
    with fits.open(path) as hdul:
        assert hdul[0].header["QUALITY"] == "good"


@pytest.mark.slow
@pytest.mark.parametrize("service", ["arc", "vault"])
def test_one_gib_file_is_byte_identical_both_ways(
    mount: Mount, service: str, tmp_path: Path
) -> None:
    size = 1024**3
    src = tmp_path / "big.bin"
    h = hashlib.md5()  # noqa: S324
    with src.open("wb") as f:
        block = os.urandom(1024 * 1024)
        for i in range(size // len(block)):
            chunk = block[:-8] + i.to_bytes(8, "big")
            f.write(chunk)
            h.update(chunk)
    base = mount.path / "arc" / "home" / USER if service == "arc" else mount.path / "vault" / USER
    assert sh(f"cp {src} big.bin", base).returncode == 0
    assert os.getxattr(base / "big.bin", "user.MD5").decode() == h.hexdigest()
    out = hashlib.md5()  # noqa: S324
    with (base / "big.bin").open("rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            out.update(chunk)
    assert out.hexdigest() == h.hexdigest()
    os.unlink(base / "big.bin")

"""What this machine allows, measured in the same run as the mount (issue 12)."""

from __future__ import annotations

from collections.abc import Callable

from ..rig import Bench
from ..seed import file_url
from ..tools import Failed, curl, curl_args, curl_shell, http_get, mb_s, run


def w_limits(b: Bench, rtt: int) -> None:
    """What this machine allows, measured in the same run (issue 12): a read can go no
    faster than curl to /dev/null; bytes cached on disk no faster than curl or dd into
    the cache directory; a FUSE daemon adds at least one more copy (curl | cat)."""
    key, size = "limits", b.args.size
    url = file_url(b, "arc", "big.bin")
    cache_dir = b.new_dir("limits")  # on the same disk as every mount's cache

    def curl_null() -> None:
        r = curl(url, timeout=b.args.timeout)
        b.record(key, rtt, "curl > /dev/null", mb_s(size, r.total), seconds=round(r.total, 3))

    def curl_cache() -> None:
        out = cache_dir / "curl.bin"
        sec = run(curl_args(url, output=out), timeout=b.args.timeout)
        out.unlink()
        b.record(key, rtt, "curl > cache dir", mb_s(size, sec), seconds=round(sec, 3))

    def curl_pipe() -> None:
        sec = run(["bash", "-c", f"{curl_shell(url)} | cat > /dev/null"], timeout=b.args.timeout)
        b.record(key, rtt, "curl | cat", mb_s(size, sec), seconds=round(sec, 3))

    def dd_cache() -> None:
        out = cache_dir / "dd.bin"
        sec = run(
            ["dd", "if=/dev/zero", f"of={out}", "bs=1M", f"count={size // (1 << 20)}"],
            timeout=b.args.timeout,
        )
        out.unlink()
        b.record(key, rtt, "dd > cache dir", mb_s(size, sec), seconds=round(sec, 3))

    def py_http() -> None:
        sec, n = http_get(url, first_byte=False, timeout=b.args.timeout)
        if n != size:
            raise Failed(f"http.client read {n} bytes")
        b.record(key, rtt, "http.client", mb_s(size, sec), seconds=round(sec, 3))

    plan: list[tuple[str, Callable[[], None]]] = [
        ("curl > /dev/null", curl_null),
        ("curl > cache dir", curl_cache),
        ("curl | cat", curl_pipe),
        ("dd > cache dir", dd_cache),
        ("http.client", py_http),
    ]
    for i in range(b.runs_for(rtt, slow=True)):
        for tool, fn in plan:
            b.measure(key, rtt, i, tool, fn)

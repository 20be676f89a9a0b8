#!/usr/bin/env python3
"""How fast is the mount? canfarfs next to curl (the limit), vcp/vls and mountvofs (peers).

One command (issue 6). It starts ``canfarfs emulator`` on a loopback socket, seeds it, and
for every workload of the issue's table measures, interleaved in the same run:

* **canfarfs**: ``canfarfs mount --foreground`` against the emulator, driven with shell
  tools (``cat``, ``cp``, ``ls -l``, ``xargs -P8 cp``) or ``os.pread``;
* **curl**: the same HTTP work done by curl against the same emulator (the limit);
* **vcp**: the ``vos`` command-line tools (``vcp``, ``vls``; vospace-api.md §10.1);
* **mountvofs**: PyPI ``vofs`` 3.1 (vospace-api.md §10.3, §12.4) when it is installed in
  ``--vofs-target`` (``--install-vofs`` puts it there; it needs ``libfuse2`` from apt).

Each workload runs at the round-trip times given by ``--rtts`` (default 0 and 20 ms).
A network namespace with netem delay is used when netem works here; otherwise the
emulator's latency knob (``POST /_emulator/faults {"latency": s}``) adds the RTT before
every request, which the output and the JSON say. When run as root, the whole benchmark
runs in a private network namespace of its own, so its loopback byte counters
(``/proc/net/dev``) count exactly the bytes the tools moved and nobody else's.

Medians of ``--runs`` runs (``--slow-runs`` for the 1 GiB, random-read and small-file
workloads at a non-zero RTT) are printed as a table with ratios and the issue's goals,
written as JSON (default ``benchmarks/results/mount.json``, git-ignored) and drawn as
throughput against round-trip time (default ``docs/performance-throughput.png``). The
script exits 0 once it has measured, whether or not the goals are met (``--strict``: a
MISS exits 1). Sizes scale down with ``--size`` and ``--files``.

The code is the package ``benchmarks/mountbench/`` (its docstring says what is where;
``mountbench/workloads/__init__.py`` how to add a workload); this file is its entry point.

    python benchmarks/bench_mount.py [--size 1G] [--files 1000] [--rtts 0,20] [--runs 3]
"""

import sys

from mountbench.cli import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__ or ""))

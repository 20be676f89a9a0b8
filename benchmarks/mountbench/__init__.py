"""The mount benchmark (``benchmarks/bench_mount.py``) as a package.

* ``tools``: child processes, curl, timed reads and ``http.client`` GETs in a child;
* ``emulator``: the emulator process, its set-up shortcuts, which canfarfs runs;
* ``rig``: the network namespace and the round-trip time, the mounts and their
  teardown, and :class:`~mountbench.rig.Bench`, the run's state and its figures;
* ``seed``: the payload and the seed data, where they are, mountvofs's check;
* ``workloads``: what is measured, one module per theme, and the registry
  (``workloads.STEPS``) that sets their order, their ``--only`` names and their rows;
* ``report``: medians, ratios, the goals' verdicts, the table, the JSON and the plot;
* ``cli``: the options and the run.

It is imported with ``benchmarks/`` on ``sys.path`` (the script's directory), like
``_common``; it does not import canfarfs, which may come from another source tree.
"""

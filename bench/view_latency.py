"""Per-file read latency of the /proc view inside a container, ours beside real lxcfs.

Runnable by itself: ``python -m bench.view_latency [--quick]``. The measurement is
bench/view.py's (in-container static reader, interleaved rounds, every file our shim binds --
all nine now -- against the same path served by a private lxcfs 5.0.3 ``--enable-cfs -l``);
this entry point only sets up the private containerd and prints the table, so the figures come
from one method whether run here or from the bench runner. It deliberately defines no
``bench(env)``: the runner already calls bench.view.
"""

from __future__ import annotations

import argparse
import sys

from bench import view
from bench.common import bench_env, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 rounds instead of 15")
    args = p.parse_args(argv)
    with bench_env(quick=args.quick) as env:
        rows = view.bench(env)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""cProfile every lxcfs-shim process of a `python -m bench.profile` run, start to exit.

bench.profile runs the shims through a copy of the installed launcher that imports this module
first (the real launcher runs `python -S`, so a sitecustomize would never load). Processes:

* `start`, `delete`, an exec'd serving process: profiled from here (imports included) until
  `shim.entry.cli.main` returns;
* the fork server (`-zygote`): not profiled itself; each spare it forks is profiled from the
  moment a `start` hands it over until it exits, i.e. without the imports and the event-loop
  set-up it did ahead, as in production.

Output: $BENCH_PROF_DIR/<action>-<pid>.prof (the serving process reads the variable from the
environment of its request). Without BENCH_PROF_DIR this module does nothing.
"""

from __future__ import annotations

import cProfile
import os
import sys
from collections.abc import Callable


def _dump(prof: cProfile.Profile, action: str) -> None:
    prof.disable()
    out = os.environ.get("BENCH_PROF_DIR")
    if out:
        prof.dump_stats(os.path.join(out, f"{action}-{os.getpid()}.prof"))


def _profile_forked_shims() -> None:
    import shim.entry.daemon

    real = shim.entry.daemon.serve_spare

    def serve_spare(ready: int, take: Callable[[], tuple[list[str], int]]) -> int:
        prof = cProfile.Profile()

        def take_and_profile() -> tuple[list[str], int]:
            handed = take()
            prof.enable()  # from the hand-over on: the spare's idle wait is not the shim's
            return handed

        try:
            return real(ready, take_and_profile)
        finally:
            _dump(prof, "serve")

    shim.entry.daemon.serve_spare = serve_spare


def install() -> None:
    if not os.environ.get("BENCH_PROF_DIR"):
        return
    argv = sys.argv[1:]
    if "-zygote" in argv:
        _profile_forked_shims()
        return
    # shim.entry.cli.run ends with os._exit (no atexit): dump when main returns
    action = next((a for a in argv if a in ("start", "delete")), "serve")
    prof = cProfile.Profile()
    prof.enable()
    import shim.entry.cli

    real_main = shim.entry.cli.main

    def profiled_main(argv: list[str] | None = None) -> int:
        try:
            return real_main(argv)
        finally:
            _dump(prof, action)

    shim.entry.cli.main = profiled_main


install()

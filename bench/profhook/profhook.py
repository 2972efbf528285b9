"""cProfile every lxcfs-shim process of a `python -m bench.profile` run, start to exit.

bench.profile runs the shims through a copy of the installed launcher that imports this module
first (the real launcher runs `python -S`, so a sitecustomize would never load). Processes:

* `start`, `delete`, an exec'd serving process: profiled from here (imports included) until
  `shim.cli.main` returns;
* the fork server (`-zygote`): not profiled itself; each serving process it forks is
  profiled from `shim.cli.main` to its `os._exit`, i.e. without the imports it inherited,
  as in production.

Output: $BENCH_PROF_DIR/<action>-<pid>.prof (the serving process reads the variable from the
environment of its request). Without BENCH_PROF_DIR this module does nothing.
"""

from __future__ import annotations

import cProfile
import os
import sys


def _dump(prof: cProfile.Profile, action: str) -> None:
    prof.disable()
    out = os.environ.get("BENCH_PROF_DIR")
    if out:
        prof.dump_stats(os.path.join(out, f"{action}-{os.getpid()}.prof"))


def _profile_forked_shims() -> None:
    import shim.cli
    import shim.zygote

    become = shim.zygote._become_shim
    real_main = shim.cli.main

    def profiled_main(argv: list[str] | None = None) -> int:
        prof = cProfile.Profile()
        prof.enable()
        try:
            return real_main(argv)
        finally:
            _dump(prof, "serve")

    def become_profiled(request: dict, listener: int, keep: list[int]) -> None:
        shim.cli.main = profiled_main  # _become_shim imports main after this
        become(request, listener, keep)

    shim.zygote._become_shim = become_profiled


def install() -> None:
    if not os.environ.get("BENCH_PROF_DIR"):
        return
    argv = sys.argv[1:]
    if "-zygote" in argv:
        _profile_forked_shims()
        return
    # shim.cli.run ends with os._exit (no atexit): dump when main returns
    action = next((a for a in argv if a in ("start", "delete")), "serve")
    prof = cProfile.Profile()
    prof.enable()
    import shim.cli

    real_main = shim.cli.main

    def profiled_main(argv: list[str] | None = None) -> int:
        try:
            return real_main(argv)
        finally:
            _dump(prof, action)

    shim.cli.main = profiled_main


install()

"""Profile every lxcfs-shim process (start, serve, delete) from interpreter start to exit.

`python -m bench.profile` puts this directory on containerd's -- hence the shims' --
PYTHONPATH; `site` imports it before anything else, so imports are in the profile too. Other
Python programs ignore it (argv[0] must name the shim). Output: $BENCH_PROF_DIR/<action>-<pid>.prof.
"""

import os
import sys

_argv = sys.argv
if (
    _argv
    and "containerd-shim-lxcfs" in os.path.basename(_argv[0])
    and os.environ.get("BENCH_PROF_DIR")
):
    import atexit
    import cProfile

    _action = next((a for a in _argv[1:] if a in ("start", "delete")), "serve")
    _prof = cProfile.Profile()

    def _dump() -> None:
        _prof.disable()
        _prof.dump_stats(
            os.path.join(os.environ["BENCH_PROF_DIR"], f"{_action}-{os.getpid()}.prof")
        )

    atexit.register(_dump)
    _prof.enable()

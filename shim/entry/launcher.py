"""Write the fast `containerd-shim-lxcfs-v2` launcher: `python -m shim.entry.launcher <path>`.

containerd runs the shim binary twice per container on its critical path (`start`, then
`delete`). pip's console script runs the venv interpreter with `site`, which scans the
site-packages `.pth` files (and, for editable installs, imports a path finder): 15-25 ms of
each run. The launcher instead starts the same interpreter with `-S` and puts exactly the
directories our packages and their dependencies live in on `sys.path`. install.sh writes it
over pip's script.
"""

from __future__ import annotations

import os
import sys
import sysconfig


def launcher_text() -> str:
    import shim

    purelib = sysconfig.get_paths()["purelib"]
    platlib = sysconfig.get_paths()["platlib"]
    source = os.path.dirname(os.path.dirname(os.path.abspath(shim.__file__)))
    paths = list(dict.fromkeys([source, purelib, platlib]))
    return (
        f"#!{sys.executable} -S\n"
        "# Written by install.sh (python -m shim.entry.launcher): the interpreter without `site`\n"
        "# (faster start/delete on containerd's create path), with our paths set directly.\n"
        "import sys\n"
        f"sys.path += {paths!r}  # after PYTHONPATH (bench --tree) and the stdlib\n"
        "from shim.entry.cli import run\n"
        "run()\n"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print(
            "usage: python -m shim.entry.launcher <path of containerd-shim-lxcfs-v2 to write>",
            file=sys.stderr,
        )
        return 2
    target = argv[0]
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(launcher_text())
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""`start` and `delete` stay import-light: guarded by the set of modules they import.

containerd execs the shim binary twice per container on its critical path (`start`, then
`delete`), through the launcher (`python -S`, shim/entry/launcher.py). Everything those two
modes import is paid on every container, so they are stdlib-only by design, and the heavy
serving stack (anyio, pyfuse3, betterproto and the generated messages, grpclib) is imported
only by the serving process or the zygote. This test reads `python -X importtime` of a fresh
interpreter started the launcher's way and fails naming any heavy module that crept in, or
when the number of modules beyond a bare interpreter's grows past the budget. It measures
no time: wall-clock figures belong in bench/profile.py.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
#: The launcher's sys.path: the source tree, then the venv's site-packages (no `site`).
PATHS_AFTER = list(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))

#: Modules (and packages, with everything under them) that neither path may import.
HEAVY = (
    "anyio", "sniffio", "trio", "asyncio", "pyfuse3", "betterproto", "grpclib", "h2",
    "protos", "procfs", "shim.transport", "shim.oci", "logging", "argparse", "json",
    "subprocess", "socket", "selectors", "hashlib", "ssl", "enum", "ctypes", "threading",
    "typing", "re", "dataclasses", "inspect",
)  # fmt: skip

#: What each path imports beyond a bare `python -I -S -c pass` (15 modules here): start
#: 24 modules and delete 20 when this budget was set, plus room for a few small stdlib ones.
PATHS = {
    "start": ("import shim.entry.cli, shim.entry.start", 30),
    "delete": ("import shim.entry.cli, shim.entry.cleanup", 26),
}

#: The delete path may use this one module of the task package (stdlib only, ctypes lazily).
ALLOWED = {"shim.task", "shim.task.mountutil"}


def _imported(statement: str) -> list[str]:
    """Module names in import order, as the launcher's interpreter (-S) would load them."""
    code = f"import sys; sys.path.insert(0, {ROOT!r}); sys.path += {PATHS_AFTER!r}; {statement}"
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    names = []
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            names.append(line.rsplit("|", 1)[1].strip())
    return names


def _heavy(name: str) -> bool:
    if name in ALLOWED:
        return False
    return any(name == h or name.startswith(h + ".") for h in (*HEAVY, "shim.task"))


@pytest.mark.parametrize("path", sorted(PATHS))
def test_fast_path_imports_no_heavy_module(path: str) -> None:
    statement, budget = PATHS[path]
    bare = set(_imported("pass"))
    loaded = _imported(statement)
    heavy = [m for m in loaded if _heavy(m)]
    assert not heavy, f"{path} path ({statement}) imports heavy modules: {heavy}"
    extra = [m for m in loaded if m not in bare]
    assert len(extra) <= budget, (
        f"{path} path imports {len(extra)} modules beyond a bare interpreter "
        f"(budget {budget}): {extra}"
    )


def test_serving_path_is_what_the_guard_keeps_out() -> None:
    """The guard is meaningful: the serving process does import the heavy stack."""
    loaded = set(_imported("import shim.entry.daemon"))
    for name in ("anyio", "pyfuse3", "betterproto", "protos", "shim.task.service"):
        assert name in loaded, f"{name} no longer imported by the serving path"


def test_procfs_imports_nothing_of_shim() -> None:
    """procfs is the bottom layer: the shim wires it (fuseloop.urgent), it never imports shim."""
    names = ", ".join(
        p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
        for p in sorted(Path(ROOT, "procfs").rglob("*.py"))
        if p.name != "__init__.py"
    )
    loaded = _imported(f"import {names}")
    assert "procfs.view" in loaded
    assert not [m for m in loaded if m == "shim" or m.startswith("shim.")]

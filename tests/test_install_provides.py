"""Every program the test suite and the benches run is installed by install.sh.

A fresh Debian machine has only the checkout: a test that runs a program some earlier machine
had by hand fails there (criu did, issue 17). This test finds, in tests/ and bench/, every argv
literal handed to subprocess (or bound to a `cmd`/`argv` name) and every `shutil.which("x")`, and
checks that each program resolves on PATH and that its owner is something install.sh installs:
a Debian package on its lists (or a dependency of one), a package every Debian system has
(Priority required/important), or the venv. Removing a package from install.sh's lists makes this
test fail, whatever machine it runs on.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("tests", "bench")
#: call names whose first argument is an argv (or, for `which`, a program name)
RUNNERS = {
    "run",
    "Popen",
    "check_output",
    "check_call",
    "call",
    "which",
    "execvp",
    "execv",
    "create_subprocess_exec",
    "run_process",
    "open_process",
}
ARGV_NAMES = re.compile(r"(^|_)(cmd|argv|command)$")
PROGRAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
#: The machine's own toolchain, not ours to install (the brief: machines have Go and Python).
MACHINE_PROVIDED = {"go"}


def _argv_head(node: ast.AST) -> str | None:
    if isinstance(node, ast.List | ast.Tuple) and node.elts:
        node = node.elts[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        head = node.value.split(" ", 1)[0]
        return head if PROGRAM.match(head) else None
    return None


def programs_called() -> dict[str, list[str]]:
    """{program: ["path:line", ...]} for every literal argv in tests/ and bench/."""
    found: dict[str, list[str]] = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "fixtures" in path.parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                heads: list[str | None] = []
                if isinstance(node, ast.Call) and node.args:
                    f = node.func
                    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                    if name in RUNNERS:
                        arg = node.args[0]
                        # a string literal is an argv only for which/exec-style calls
                        if name == "which" or isinstance(arg, ast.List | ast.Tuple):
                            heads.append(_argv_head(arg))
                elif (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.List | ast.Tuple)
                    and any(
                        isinstance(t, ast.Name) and ARGV_NAMES.search(t.id) for t in node.targets
                    )
                ):
                    heads.append(_argv_head(node.value))
                for head in heads:
                    if head:
                        found.setdefault(head, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def install_sh_packages() -> set[str]:
    """The Debian packages install.sh's lists name (APT_PACKAGES and TEST_APT_PACKAGES)."""
    text = (ROOT / "install.sh").read_text()
    out: set[str] = set()
    for m in re.finditer(r"^(?:TEST_)?APT_PACKAGES=\(([^)]*)\)", text, re.M):
        out.update(m.group(1).split())
    return out


@cache
def _dpkg(*args: str) -> str:
    r = subprocess.run(["dpkg-query", *args], capture_output=True, text=True, timeout=60)
    return r.stdout if r.returncode == 0 else ""


def owner_package(path: str) -> str | None:
    """The Debian package that owns `path` (or the file it links to), None if none does."""
    for candidate in dict.fromkeys((path, os.path.realpath(path))):
        # merged /usr: dpkg may know the file under /bin or /usr/bin
        alts = {
            candidate,
            re.sub(r"^/usr(/s?bin/)", r"\1", candidate),
            re.sub(r"^/(s?bin/)", r"/usr/\1", candidate),
        }
        for alt in alts:
            for line in _dpkg("-S", alt).splitlines():
                if line and not line.startswith("diversion "):  # dash diverts /bin/sh
                    return line.split(":", 1)[0].split(",")[0].strip()
    return None


@cache
def dependency_closure(packages: frozenset[str]) -> frozenset[str]:
    """Packages installed because install.sh installs `packages` (Depends/PreDepends, recursive)."""
    seen: set[str] = set()
    todo = list(packages)
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        deps = _dpkg("-W", "-f=${Depends}, ${Pre-Depends}", pkg)
        for alt in re.split(r"[,|]", deps):
            name = alt.strip().split(" ", 1)[0].split(":", 1)[0]
            if name:
                todo.append(name)
    return frozenset(seen)


def base_system(pkg: str) -> bool:
    """Every Debian system has it: Essential, or Priority required/important."""
    fields = _dpkg("-W", "-f=${Essential} ${Priority}", pkg).split()
    return "yes" in fields or bool({"required", "important"} & set(fields))


def test_scanner_sees_known_calls():
    """The scanner itself works: it finds programs we know the suite and benches call."""
    found = programs_called()
    for program in ("criu", "lxcfs", "gcc", "runc", "umount"):
        assert program in found, (program, sorted(found))


def test_install_sh_lists_are_installed():
    """What install.sh --test installs is here (this suite runs after it)."""
    missing = [
        p
        for p in sorted(install_sh_packages())
        if "install ok installed" not in _dpkg("-W", "-f=${Status}", p)
    ]
    assert not missing, f"install.sh lists these but they are not installed: {missing}"


def test_every_program_called_is_installed_by_install_sh():
    if not shutil.which("dpkg-query"):
        pytest.fail("dpkg-query missing: this suite supports Debian only", pytrace=False)
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join([venv_bin, os.environ.get("PATH", "")])
    provided = dependency_closure(frozenset(install_sh_packages()))
    problems = []
    for program, where in sorted(programs_called().items()):
        if program in MACHINE_PROVIDED:
            continue
        found = shutil.which(program, path=path)
        if found is None:
            problems.append(f"{program}: not on PATH (called at {', '.join(where[:3])})")
            continue
        if found.startswith(venv_bin + os.sep):
            continue  # the venv install.sh builds
        pkg = owner_package(found)
        if pkg is None:
            problems.append(
                f"{program}: {found} belongs to no Debian package and is not in the "
                f"venv (installed by hand?); called at {', '.join(where[:3])}"
            )
        elif pkg not in provided and not base_system(pkg):
            problems.append(
                f"{program}: package {pkg} is not installed by install.sh "
                f"(add it to APT_PACKAGES or TEST_APT_PACKAGES); "
                f"called at {', '.join(where[:3])}"
            )
    assert not problems, "\n".join(problems)

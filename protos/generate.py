"""Regenerate the betterproto modules in protos/gen from the .proto files in protos/src.

Usage (from the repository root, inside the dev venv):

    python -m protos.generate          wipe protos/gen and regenerate it
    python -m protos.generate --check  regenerate into a temporary directory and
                                       exit 1 (listing the files) if it differs
                                       from the committed protos/gen

protoc is grpcio-tools' bundled compiler (``python -m grpc_tools.protoc``); the
well-known types (google/protobuf/*.proto) come from its include directory and
are mapped by betterproto to ``betterproto.lib.google.protobuf`` (not generated).
The plugin is ``protoc-gen-python_betterproto`` from the directory of
``sys.executable`` (falling back to PATH). All .proto files are compiled in one
protoc run, in sorted order, so the output is deterministic.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROTOS_DIR = Path(__file__).resolve().parent
SRC_DIR = PROTOS_DIR / "src"
GEN_DIR = PROTOS_DIR / "gen"
PLUGIN_NAME = "protoc-gen-python_betterproto"

# Files/dirs that never count as generated output.
_IGNORED_NAMES = {"__pycache__"}


def find_plugin() -> Path:
    candidate = Path(sys.executable).parent / PLUGIN_NAME
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(PLUGIN_NAME)
    if found:
        return Path(found)
    raise SystemExit(
        f"{PLUGIN_NAME} not found next to {sys.executable} or on PATH; "
        'install "betterproto[compiler]==2.0.0b7" into this environment'
    )


def well_known_include() -> Path:
    include = Path(str(importlib.resources.files("grpc_tools") / "_proto"))
    if not (include / "google" / "protobuf" / "any.proto").is_file():
        raise SystemExit(f"grpc_tools well-known .proto files not found under {include}")
    return include


def proto_sources() -> list[str]:
    """All .proto files under protos/src, relative POSIX paths, sorted."""
    return sorted(p.relative_to(SRC_DIR).as_posix() for p in SRC_DIR.rglob("*.proto"))


def _ensure_package_inits(root: Path) -> None:
    """Every directory of the generated tree must be an importable package."""
    for dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_NAMES)
        init = Path(dirpath) / "__init__.py"
        if not init.exists():
            init.write_text("")


def generate_into(out_dir: Path) -> None:
    """Run protoc + betterproto for every source into the (empty) directory out_dir."""
    sources = proto_sources()
    if not sources:
        raise SystemExit(f"no .proto files under {SRC_DIR}")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={SRC_DIR}",
        f"--proto_path={well_known_include()}",
        f"--plugin={PLUGIN_NAME}={find_plugin()}",
        f"--python_betterproto_out={out_dir}",
        *sources,
    ]
    env = dict(os.environ)
    # The plugin's own interpreter/tools (black, isort) live next to sys.executable.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(cmd, cwd=SRC_DIR, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"protoc failed with exit status {proc.returncode}")
    _ensure_package_inits(out_dir)


def _tree_files(root: Path) -> set[str]:
    files: set[str] = set()
    if not root.is_dir():
        return files
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _IGNORED_NAMES]
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            files.add((Path(dirpath) / name).relative_to(root).as_posix())
    return files


def diff_trees(expected: Path, actual: Path) -> list[str]:
    """Relative paths that are missing, extra or different in actual vs expected."""
    want = _tree_files(expected)
    have = _tree_files(actual)
    problems = [f"missing: {p}" for p in sorted(want - have)]
    problems += [f"extra: {p}" for p in sorted(have - want)]
    for rel in sorted(want & have):
        if not filecmp.cmp(expected / rel, actual / rel, shallow=False):
            problems.append(f"differs: {rel}")
    return problems


def regenerate() -> int:
    with tempfile.TemporaryDirectory(prefix="protos-gen-") as tmp:
        staged = Path(tmp) / "gen"
        staged.mkdir()
        generate_into(staged)
        if GEN_DIR.exists():
            shutil.rmtree(GEN_DIR)
        shutil.move(str(staged), str(GEN_DIR))
    count = len(_tree_files(GEN_DIR))
    print(f"regenerated {GEN_DIR.relative_to(PROTOS_DIR.parent)} ({count} files)")
    return 0


def check() -> int:
    with tempfile.TemporaryDirectory(prefix="protos-check-") as tmp:
        fresh = Path(tmp) / "gen"
        fresh.mkdir()
        generate_into(fresh)
        problems = diff_trees(fresh, GEN_DIR)
    if problems:
        print("protos/gen is stale; run `python -m protos.generate`:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("protos/gen is up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m protos.generate",
        description="Regenerate protos/gen (betterproto) from protos/src/**/*.proto.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write anything; exit 1 and list the files if protos/gen is stale",
    )
    args = parser.parse_args(argv)
    return check() if args.check else regenerate()


if __name__ == "__main__":
    sys.exit(main())

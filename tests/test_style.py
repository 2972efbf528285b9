"""`ruff check` and `ruff format --check` over the repository, as CI runs the tests.

The ruff of the dev extra (`install.sh --test`), next to the interpreter that runs pytest;
the configuration is pyproject.toml's [tool.ruff]. A failure prints ruff's own report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> str:
    beside = Path(sys.executable).parent / "ruff"
    found = str(beside) if beside.exists() else shutil.which("ruff")
    assert found, "ruff is missing: install the dev extra (install.sh --test)"
    return found


@pytest.mark.parametrize(
    "args",
    [["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]],
    ids=["check", "format"],
)
def test_ruff(args: list[str]) -> None:
    out = subprocess.run(
        [_ruff(), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, f"ruff {' '.join(args)}:\n{out.stdout}{out.stderr}"

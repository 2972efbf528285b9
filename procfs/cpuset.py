"""cpuset list strings (``0-3,6``): the kernel's format for cpuset.cpus and cpu/online."""

from __future__ import annotations

from collections.abc import Iterable


def parse_cpuset(text: str) -> list[int]:
    """``"0-2,5\\n"`` → ``[0, 1, 2, 5]`` (sorted, unique). Empty text → ``[]``."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep:
            first, last = int(lo), int(hi)
            if last < first:
                raise ValueError(f"bad cpuset range {part!r}")
            cpus.update(range(first, last + 1))
        else:
            cpus.add(int(lo))
    return sorted(cpus)


def format_cpuset(cpus: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``: ranges collapsed as the kernel prints them."""
    out: list[str] = []
    run: list[int] = []
    for cpu in sorted(set(cpus)):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(_span(run))
        run = [cpu]
    if run:
        out.append(_span(run))
    return ",".join(out)


def _span(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"

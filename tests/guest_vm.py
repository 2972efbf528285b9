"""Boot the cgroup v2 test guest (tests/guest/) under QEMU and collect what it ran.

The development host is cgroup v1 hybrid and cannot be switched, so the cgroup v2 code paths run
inside a Debian 12 guest: kernel, initrd and root image from `tests/guest/build_image.sh`
(cached by a hash of its recipe), PID 1 = `tests/guest/init.sh`. Debian's cloud kernel has no
9p, so the checkout (plus the job script) goes in as a tar on a read-only virtio disk and the
results come back as a tar the guest writes onto a second, blank disk; progress lines arrive
over the serial console while it runs. The root image is opened with snapshot=on, so the cached
image never changes. Nested KVM makes no progress on this machine, so a short probe decides
between KVM and TCG (software emulation).

Stdlib only.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent
BUILD_SCRIPT = HERE / "guest" / "build_image.sh"
QEMU = "qemu-system-x86_64"
KERNEL_ARGS = (
    "console=ttyS0 root=/dev/vda rw init=/sbin/guest-init panic=-1 quiet loglevel=4 "
    # cgroup v2 only: no v1 hierarchy may hold a controller
    "systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all"
)


#: TCG's CPU model (GUEST_QEMU_CPU overrides it)
TCG_CPU = os.environ.get("GUEST_QEMU_CPU", "max")


class GuestError(RuntimeError):
    pass


def build_image(timeout: float = 3600) -> Path:
    """The cache directory of the guest image, building it first if the recipe changed."""
    r = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if r.returncode != 0:
        raise GuestError(f"{BUILD_SCRIPT} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return Path(r.stdout.strip().splitlines()[-1])


def kvm_runs(image: Path, timeout: float = 10.0) -> bool:
    """True when a KVM guest gets as far as printing the kernel banner within `timeout`.

    On the development host /dev/kvm accepts KVM_CREATE_VM but nested guests make no
    progress, so the answer there is False and the suites run under TCG.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="kvmprobe-") as d:
        log = Path(d) / "console"
        p = subprocess.Popen(
            [
                QEMU,
                "-accel",
                "kvm",
                "-m",
                "256",
                "-display",
                "none",
                "-monitor",
                "none",
                "-nodefaults",
                "-no-reboot",
                "-serial",
                f"file:{log}",
                "-kernel",
                str(image / "vmlinuz"),
                "-append",
                "console=ttyS0 panic=-1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and p.poll() is None:
                if log.exists() and b"Linux version" in log.read_bytes():
                    return True
                time.sleep(0.2)
            return log.exists() and b"Linux version" in log.read_bytes()
        finally:
            p.kill()
            p.wait(10)


@dataclass
class GuestRun:
    """What one boot left behind: its out directory, console log and timings."""

    out: Path
    console: str
    accel: str
    wall: float
    returncode: int | None
    marks: dict[str, float] = field(default_factory=dict)  # "GUEST: <what>" -> guest uptime

    def junit(self, name: str) -> list[InnerResult]:
        path = self.out / name
        return parse_junit(path) if path.exists() else []


@dataclass
class InnerResult:
    nodeid: str
    outcome: str  # passed / failed / error / skipped
    seconds: float
    message: str = ""


def parse_junit(path: Path) -> list[InnerResult]:
    results = []
    for case in ET.parse(path).getroot().iter("testcase"):
        nodeid = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (el.get("message") or "") + "\n" + (el.text or "")
                break
        results.append(InnerResult(nodeid, outcome, float(case.get("time", 0)), message.strip()))
    return results


def _checkout_tar(src: Path, job: str, dest: Path) -> None:
    """The checkout without VCS data and caches, plus the job as `.guest-job.sh`."""
    skip = {".git", "__pycache__", ".pytest_cache", "build", ".venv", ".ruff_cache"}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if any(p in skip or p.endswith(".egg-info") for p in parts):
            return None
        return info

    with tarfile.open(dest, "w") as tar:
        tar.add(src, arcname=".", filter=keep)
        data = job.encode()
        info = tarfile.TarInfo("./.guest-job.sh")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))


def boot(
    image: Path,
    job: str,
    out: Path,
    *,
    accel: str = "tcg",
    memory_mb: int = 3072,
    cpus: int = 2,
    timeout: float = 1200.0,
    src: Path = SRC,
) -> GuestRun:
    """Boot the guest once: it unpacks `src`, sources `job` (bash, cwd = the copy), writes its
    /mnt/out back and powers off. `out` receives those files and console.log."""
    if not shutil.which(QEMU):
        raise GuestError(f"{QEMU} missing: apt-get install qemu-system-x86 (install.sh --test)")
    out.mkdir(parents=True, exist_ok=True)
    console = out / "console.log"
    with tempfile.TemporaryDirectory(prefix="guest-", dir="/var/tmp") as tmp:
        src_tar, out_img = Path(tmp) / "src.tar", Path(tmp) / "out.img"
        _checkout_tar(src, job, src_tar)
        with open(out_img, "wb") as f:
            f.truncate(256 * 1024 * 1024)
        accel_opt = "kvm" if accel == "kvm" else "tcg,thread=multi"
        cmd = [
            QEMU,
            "-accel",
            accel_opt,
            "-cpu",
            "host" if accel == "kvm" else TCG_CPU,
            "-smp",
            str(cpus),
            "-m",
            str(memory_mb),
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
            "-no-reboot",
            "-serial",
            f"file:{console}",
            "-kernel",
            str(image / "vmlinuz"),
            "-initrd",
            str(image / "initrd.img"),
            "-append",
            KERNEL_ARGS,
            "-drive",
            f"file={image / 'root.img'},if=virtio,format=raw,snapshot=on",
            "-drive",
            f"file={src_tar},if=virtio,format=raw,readonly=on",
            "-drive",
            f"file={out_img},if=virtio,format=raw",
        ]
        t0 = time.monotonic()
        with open(out / "qemu.err", "wb") as err:
            p = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
            try:
                rc = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
                rc = None
        wall = time.monotonic() - t0
        # the guest's tar ends with zero blocks; an untouched (all-zero) disk is an empty archive
        with contextlib.suppress(tarfile.TarError), tarfile.open(out_img) as tar:
            # plain files and dirs inside `out` only (Debian's 3.11.2 has no extraction filters)
            tar.extractall(
                out,
                members=[
                    m
                    for m in tar.getmembers()
                    if (m.isfile() or m.isdir())
                    and not m.name.startswith("/")
                    and ".." not in Path(m.name).parts
                ],
            )
    text = console.read_text(errors="replace") if console.exists() else ""
    marks = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^GUEST: (.*?) \(uptime ([\d.]+)\)\s*$", text, re.M)
    }
    return GuestRun(out, text, accel, wall, rc, marks)

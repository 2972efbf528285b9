"""`check`: what this node has and needs to run io.containerd.lxcfs.v2, one verdict a line.

Like `kata-runtime check`: an operator (or the node installer DaemonSet) runs it before
pointing pods at the runtime. A FAIL is something without which no container of ours runs;
a warn is a feature or an integration that is missing (Kubernetes handler, seccomp notify);
ok is what was found. Exit status 1 when anything required is missing.

Every fact comes from the node itself: the device, the binaries' own version output, the
kernel's mount of /sys/fs/cgroup, and containerd's *effective* configuration
(`containerd config dump`, so imports and version 2/3 migrations are applied as containerd
applies them). Stdlib only; nothing here runs on containerd's critical path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata

from shim.identity import RUNTIME_NAME, SHIM_NAME, __version__

OK, WARN, FAIL = "ok", "warn", "FAIL"
HANDLER = "lxcfs"
ANNOTATIONS = "io.containerd.lxcfs.*"
_TIMEOUT = 20.0
#: CRI plugin sections holding runtime handlers: config version 2 (1.6/1.7, and 2.x reading
#: a version 2 file after migration) and version 3 (containerd 2.x).
_CRI_SECTIONS = (
    ("io.containerd.grpc.v1.cri", "containerd", "runtimes"),
    ("io.containerd.cri.v1.runtime", "containerd", "runtimes"),
)


@dataclass(frozen=True)
class Verdict:
    level: str
    what: str
    detail: str

    def line(self) -> str:
        return f"  {self.level:<4}  {self.what}: {self.detail}"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_fuse() -> Iterator[Verdict]:
    try:
        st = os.stat("/dev/fuse")
    except OSError as e:
        yield Verdict(FAIL, "/dev/fuse", f"{e.strerror}: load the fuse module (modprobe fuse)")
        return
    if not stat.S_ISCHR(st.st_mode):
        yield Verdict(FAIL, "/dev/fuse", "not a character device")
        return
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        yield Verdict(FAIL, "/dev/fuse", f"cannot open read-write: {e.strerror}")
        return
    yield Verdict(
        OK,
        "/dev/fuse",
        f"character device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}, opens read-write",
    )
    helper = shutil.which("fusermount3")
    yield (
        Verdict(OK, "fusermount3", helper)
        if helper
        else Verdict(
            WARN,
            "fusermount3",
            "missing (apt-get install fuse3); the shim mounts "
            "directly as root, unmounting after a crash needs it",
        )
    )


def check_python() -> Iterator[Verdict]:
    missing = []
    versions = []
    for module in ("pyfuse3", "anyio", "betterproto", "grpclib"):
        try:
            __import__(module)
        except ImportError as e:
            missing.append(f"{module} ({e})")
        else:
            try:
                versions.append(f"{module} {metadata.version(module)}")
            except metadata.PackageNotFoundError:
                versions.append(module)
    py = ".".join(map(str, sys.version_info[:3]))
    if missing:
        yield Verdict(
            FAIL,
            "shim install",
            f"python {py}: cannot import {', '.join(missing)} (reinstall: ./install.sh)",
        )
    else:
        yield Verdict(
            OK, "shim install", f"{SHIM_NAME} {__version__}, python {py}, " + ", ".join(versions)
        )
    on_path = shutil.which(SHIM_NAME)
    if on_path is None:
        yield Verdict(
            FAIL,
            f"{SHIM_NAME} on PATH",
            "not found: containerd resolves "
            f"{RUNTIME_NAME} to this name on its PATH (install.sh links it into "
            "/usr/local/bin)",
        )
    else:
        yield Verdict(OK, f"{SHIM_NAME} on PATH", f"{on_path} -> {os.path.realpath(on_path)}")


def _runc_features(runc: str) -> dict:
    r = _run([runc, "features"])
    if r is None or r.returncode != 0:
        return {}
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def check_runc() -> Iterator[Verdict]:
    runc = shutil.which("runc")
    if runc is None:
        yield Verdict(FAIL, "runc", "not on PATH (apt-get install runc)")
        return
    r = _run([runc, "--version"])
    first = (r.stdout.splitlines() or ["?"])[0] if r and r.returncode == 0 else "no version"
    yield Verdict(OK, "runc", f"{runc}: {first}")
    seccomp = _runc_features(runc).get("linux", {}).get("seccomp", {})
    if not seccomp:
        yield Verdict(
            WARN,
            "runc seccomp notify",
            "`runc features` reports no seccomp support (runc < 1.1 or built without libseccomp)",
        )
    elif "SCMP_ACT_NOTIFY" in seccomp.get("actions", []):
        yield Verdict(
            OK,
            "runc seccomp notify",
            "SCMP_ACT_NOTIFY supported (sysinfo(2) can be answered by the shim)",
        )
    else:
        yield Verdict(
            WARN, "runc seccomp notify", "SCMP_ACT_NOTIFY not among runc's seccomp actions"
        )


def check_cgroup() -> Iterator[Verdict]:
    fstype = ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split(" ")[4] == "/sys/fs/cgroup":
                fstype = right.split(" ", 1)[0]
    if fstype == "cgroup2":
        yield Verdict(OK, "cgroups", "v2 (unified hierarchy)")
    elif fstype == "tmpfs":
        hybrid = os.path.isdir("/sys/fs/cgroup/unified")
        yield Verdict(
            OK,
            "cgroups",
            "v1"
            + (" (hybrid: v2 at /sys/fs/cgroup/unified)" if hybrid else "")
            + "; containerd 2.2+ and kubelet 1.35+ deprecate v1",
        )
    else:
        yield Verdict(FAIL, "cgroups", f"/sys/fs/cgroup is {fstype or 'not mounted'}")


def _handler(dump: dict) -> tuple[str, dict | None]:
    """(CRI plugin holding the runtimes, our handler there); 2.x still has a grpc.v1.cri
    section after migrating a version 2 file, but only for server settings."""
    plugins = dump.get("plugins", {})
    found = ""
    for plugin, *path in _CRI_SECTIONS:
        section = plugins.get(plugin)
        for key in path:
            section = section.get(key) if isinstance(section, dict) else None
        if isinstance(section, dict):
            if HANDLER in section:
                return plugin, section[HANDLER]
            found = found or plugin
    return found, None


def check_containerd(containerd: list[str]) -> Iterator[Verdict]:
    if shutil.which(containerd[0]) is None:
        yield Verdict(FAIL, "containerd", f"{containerd[0]} not on PATH")
        return
    r = _run([*containerd, "--version"])
    version = r.stdout.strip() if r and r.returncode == 0 else ""
    m = re.search(r"\sv?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        yield Verdict(WARN, "containerd", f"cannot read its version ({version or 'no output'})")
    elif (int(m[1]), int(m[2])) in ((1, 6), (1, 7)) or int(m[1]) == 2:
        yield Verdict(OK, "containerd", version)
    else:
        yield Verdict(WARN, "containerd", f"{version}: tested with 1.6, 1.7 and 2.x only")
    r = _run([*containerd, "config", "dump"])
    if r is None or r.returncode != 0:
        err = (r.stderr.strip().splitlines() or [""])[-1] if r else "did not run"
        yield Verdict(WARN, "containerd config", f"`config dump` failed: {err}")
        return
    try:
        dump = tomllib.loads(r.stdout)
    except tomllib.TOMLDecodeError as e:
        yield Verdict(WARN, "containerd config", f"`config dump` is not TOML: {e}")
        return
    plugin, handler = _handler(dump)
    if not plugin:
        yield Verdict(
            WARN,
            "CRI handler lxcfs",
            "containerd's CRI plugin is not configured (ctr works; Kubernetes needs it)",
        )
        return
    if handler is None:
        yield Verdict(
            WARN,
            "CRI handler lxcfs",
            f"no runtimes.{HANDLER} in {plugin}: "
            "Kubernetes RuntimeClass handler lxcfs fails (./install.sh writes it)",
        )
        return
    rtype = handler.get("runtime_type", "")
    if rtype != RUNTIME_NAME:
        yield Verdict(WARN, "CRI handler lxcfs", f"runtime_type is {rtype!r}, not {RUNTIME_NAME!r}")
    else:
        yield Verdict(OK, "CRI handler lxcfs", f"{plugin} runtimes.{HANDLER} -> {rtype}")
    if ANNOTATIONS in handler.get("pod_annotations", []):
        yield Verdict(OK, "annotation passthrough", f"pod_annotations has {ANNOTATIONS}")
    else:
        yield Verdict(
            WARN,
            "annotation passthrough",
            f"pod_annotations lacks {ANNOTATIONS}: "
            "per-pod file selection and opt-out do not reach the shim",
        )


def run_checks(containerd: list[str]) -> list[Verdict]:
    checks: list[Callable[[], Iterator[Verdict]]] = [
        check_python,
        check_fuse,
        check_runc,
        check_cgroup,
        lambda: check_containerd(containerd),
    ]
    return [v for check in checks for v in check()]


def main() -> int:
    """Print every verdict and a summary; 1 when anything required is missing."""
    containerd = (os.environ.get("CONTAINERD") or "containerd").split()
    verdicts = run_checks(containerd)
    print(f"{SHIM_NAME} check ({RUNTIME_NAME}):")
    for v in verdicts:
        print(v.line())
    counts = {level: sum(v.level == level for v in verdicts) for level in (OK, WARN, FAIL)}
    failed = counts[FAIL]
    print(
        f"summary: {counts[OK]} ok, {counts[WARN]} warn, {failed} failed"
        + (" -> this node cannot run io.containerd.lxcfs.v2" if failed else "")
    )
    return 1 if failed else 0

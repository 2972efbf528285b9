"""The main job: a 256 MiB, 1-CPU busybox container reads every virtualised file beside the host.

    python -m shim.entry.demo [--runtime io.containerd.lxcfs.v2] [--memory-limit 268435456]
                              [--cpus 1]

Builds a busybox rootfs from the host's static /bin/busybox, uses the system containerd when it
answers on /run/containerd/containerd.sock (else starts a private one in a temp dir), runs
`ctr run --rm --runtime <runtime> --memory-limit <limit> --cpus <n> --rootfs <rootfs> <id>
/bin/sh -c 'cat <each file>; free'`, prints the key line of each virtualised file (MemTotal,
processors, cpu lines of /proc/stat, uptime, loadavg, swaps, cpu/online) and busybox `free`
(which asks sysinfo(2), answered by the shim) for the host beside the container, a one-line
verdict, and removes everything it created. Exit status: 0 verdict OK, 1 verdict MISMATCH,
2 could not run.

Stdlib only (run by install.sh --demo with the venv's python).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEM_SOCK = "/run/containerd/containerd.sock"
SHIM = "containerd-shim-lxcfs-v2"
NAMESPACE = "lxcfs-demo"
FREE = "free"
#: the files whose key line the demo shows, in order
FILES = (
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/stat",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/swaps",
    "/sys/devices/system/cpu/online",
)


class DemoError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"    {msg}", flush=True)


def ctr(address: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """ctr with a hard timeout (SIGKILL: `ctr run` forwards SIGTERM to the container)."""
    return subprocess.run(
        ["ctr", "--address", address, "--namespace", NAMESPACE, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_rootfs(root: Path) -> None:
    busybox = "/bin/busybox"
    if not os.access(busybox, os.X_OK):
        raise DemoError("/bin/busybox missing: apt-get install busybox-static")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    # chrooted, so the applet symlinks point at /bin/busybox inside the rootfs
    subprocess.run(
        ["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def answers(address: str) -> bool:
    if not os.path.exists(address):
        return False
    try:
        return ctr(address, "version", timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def shim_dir() -> str | None:
    here = Path(sys.executable).parent
    if os.access(here / SHIM, os.X_OK):
        return str(here)
    found = shutil.which(SHIM)
    return str(Path(found).parent) if found else None


class PrivateContainerd:
    def __init__(self, tmp: Path):
        self.dir = tmp
        self.address = str(tmp / "c.sock")
        self.log = tmp / "containerd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if not shutil.which("containerd"):
            raise DemoError("containerd not installed: apt-get install containerd")
        cfg = self.dir / "config.toml"
        cfg.write_text(
            "version = 2\n"
            f'root = "{self.dir}/root"\n'
            f'state = "{self.dir}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.address}"\n'
            f'[ttrpc]\n  address = "{self.address}.ttrpc"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.dir}/opt"\n'
        )
        env = dict(os.environ)
        path = [p for p in (shim_dir(), "/usr/local/bin") if p]
        env["PATH"] = os.pathsep.join([*path, env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not answers(self.address):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").splitlines()[-10:]
                self.stop()
                raise DemoError("private containerd did not start:\n" + "\n".join(tail))
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def remove_container(address: str, cid: str) -> None:
    """Best effort: kill, delete task and container `cid` if any of it is left."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        tasks = ctr(address, "task", "ls", "-q", timeout=20).stdout.split()
        if cid in tasks:
            ctr(address, "task", "kill", "-a", "-s", "SIGKILL", cid, timeout=20)
            time.sleep(0.5)
            ctr(address, "task", "rm", "-f", cid, timeout=30)
        if cid in ctr(address, "container", "ls", "-q", timeout=20).stdout.split():
            ctr(address, "container", "rm", cid, timeout=30)


def meminfo_kb(text: str, key: str) -> int | None:
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == key and rest.split():
            return int(rest.split()[0])
    return None


def free_kb(text: str) -> int | None:
    """The total of busybox `free`'s Mem: line (KiB)."""
    for line in text.splitlines():
        if line.startswith("Mem:") and len(line.split()) > 1:
            return int(line.split()[1])
    return None


def _mark(name: str) -> str:
    return f"=====lxcfs-demo {name}====="


def script() -> str:
    """The container's command: every file, then `free`, each after a marker line."""
    parts = [f"echo '{_mark(f)}'; cat {f}" for f in FILES]
    return "; ".join([*parts, f"echo '{_mark(FREE)}'; free"])


def split_sections(out: str) -> dict[str, str]:
    """The container's output, back into {file or "free": its text}."""
    sections: dict[str, str] = {}
    name = None
    for line in out.splitlines(keepends=True):
        if line.startswith("=====lxcfs-demo ") and line.rstrip().endswith("====="):
            name = line.rstrip()[len("=====lxcfs-demo ") : -len("=====")]
            sections[name] = ""
        elif name is not None:
            sections[name] += line
    return sections


def key_line(name: str, text: str) -> str:
    """What to compare of one file (or of `free`), in a few words."""
    lines = text.splitlines()
    if name == "/proc/meminfo":
        kb = meminfo_kb(text, "MemTotal")
        return f"MemTotal: {kb} kB" if kb is not None else "(no MemTotal)"
    if name == "/proc/cpuinfo":
        return f"processors: {sum(ln.startswith('processor') for ln in lines)}"
    if name == "/proc/stat":
        cpus = [ln.split()[0] for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit()]
        return f"cpu lines: {len(cpus)} ({' '.join(cpus[:4])}{' ...' if len(cpus) > 4 else ''})"
    if name == "/proc/swaps":
        devices = [ln.split() for ln in lines[1:] if ln.split()]
        if not devices:
            return "swap: none (header only)"
        total = sum(int(d[2]) for d in devices if len(d) > 2 and d[2].isdigit())
        return f"swap: {len(devices)} device(s), {total} kB"
    if name == FREE:
        total = free_kb(text)
        return f"Mem: total {total} kB" if total is not None else "(no Mem: line)"
    return lines[0].strip() if lines else "(empty)"


def host_sections() -> dict[str, str]:
    out = {f: Path(f).read_text() for f in FILES}
    out[FREE] = subprocess.run(
        ["busybox", "free"], capture_output=True, text=True, timeout=10
    ).stdout
    return out


def key_table(host: dict[str, str], container: dict[str, str], title: str) -> str:
    """The key line of every file: host beside container."""
    rows = [(f, key_line(f, host.get(f, "")), key_line(f, container.get(f, ""))) for f in FILES]
    rows.append(
        ("free (sysinfo(2))", key_line(FREE, host[FREE]), key_line(FREE, container.get(FREE, "")))
    )
    w0 = max(len(r[0]) for r in rows) + 2
    w1 = max(len("host"), *(len(r[1]) for r in rows)) + 3
    out = [
        f"{'':<{w0}}{'host':<{w1}}{title}",
        f"{'':<{w0}}{'-' * (w1 - 3):<{w1}}{'-' * len(title)}",
    ]
    out += [f"{a:<{w0}}{b:<{w1}}{c}" for a, b, c in rows]
    return "\n".join(out)


def side_by_side(left_title: str, left: str, right_title: str, right: str, n: int) -> str:
    ll, rl = left.splitlines()[:n], right.splitlines()[:n]
    width = max([len(left_title), *map(len, ll)]) + 4
    rows = [f"{left_title:<{width}}{right_title}", f"{'-' * (width - 4):<{width}}{'-' * 40}"]
    for i in range(max(len(ll), len(rl))):
        a = ll[i] if i < len(ll) else ""
        b = rl[i] if i < len(rl) else ""
        rows.append(f"{a:<{width}}{b}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m shim.entry.demo", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--runtime", default="io.containerd.lxcfs.v2")
    ap.add_argument("--memory-limit", type=int, default=268435456, help="bytes")
    ap.add_argument("--cpus", default="1")
    ap.add_argument(
        "--lines", type=int, default=0, help="also show this many meminfo lines side by side"
    )
    ap.add_argument("--private", action="store_true", help="never use the system containerd")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        print("demo: must run as root", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="lxd-", dir="/tmp"))  # short: socket paths < 108 bytes
    private: PrivateContainerd | None = None
    cid = f"lxcfs-demo-{os.getpid()}"
    address = SYSTEM_SOCK
    try:
        log(f"building busybox rootfs in {tmp / 'rootfs'}")
        build_rootfs(tmp / "rootfs")
        if not args.private and answers(SYSTEM_SOCK):
            log(f"using the system containerd at {SYSTEM_SOCK} (namespace {NAMESPACE})")
        else:
            private = PrivateContainerd(tmp)
            log(f"no system containerd answering: starting a private one at {private.address}")
            private.start()
            address = private.address
        cmd = [
            "run", "--rm", "--runtime", args.runtime,
            "--memory-limit", str(args.memory_limit), "--cpus", args.cpus,
            "--rootfs", str(tmp / "rootfs"), cid,
            "/bin/sh", "-c", script(),
        ]  # fmt: skip
        log("ctr " + " ".join(cmd[:-1]) + " '<cat each file; free>'")
        try:
            r = ctr(address, *cmd, timeout=120)
        except subprocess.TimeoutExpired:
            raise DemoError("ctr run did not finish within 120 s") from None
        if r.returncode != 0:
            raise DemoError(f"ctr run failed (exit {r.returncode}): {r.stderr.strip()}")

        sections = split_sections(r.stdout)
        meminfo, free = sections.get("/proc/meminfo", ""), sections.get(FREE, "")
        hosts = host_sections()
        host = hosts["/proc/meminfo"]
        limit_kb = args.memory_limit // 1024
        title = f"container ({args.runtime}, {limit_kb} kB, --cpus {args.cpus})"
        print()
        print(key_table(hosts, sections, title))
        if args.lines > 0:
            print()
            print(
                side_by_side(
                    "host /proc/meminfo", host, "container /proc/meminfo", meminfo, args.lines
                )
            )
        print()
        print("host: busybox free (sysinfo(2))")
        print(hosts[FREE].rstrip())
        print("container: busybox free (sysinfo(2), answered by the shim)")
        print(free.rstrip())
        print()
        got, host_total = meminfo_kb(meminfo, "MemTotal"), meminfo_kb(host, "MemTotal")
        free_total = free_kb(free)
        if got == limit_kb and free_total == limit_kb:
            print(
                f"VERDICT: OK - container MemTotal and free's total ({got} kB) equal its "
                f"memory limit {limit_kb} kB (host MemTotal {host_total} kB)"
            )
            return 0
        why = " (the host's value)" if host_total in (got, free_total) else ""
        print(
            f"VERDICT: MISMATCH - container MemTotal {got} kB, free total {free_total} kB"
            f"{why}, but its memory limit is {limit_kb} kB"
        )
        return 1
    except (DemoError, subprocess.CalledProcessError, OSError) as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    finally:
        if answers(address):
            remove_container(address, cid)
            if private is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    ctr(address, "namespaces", "rm", NAMESPACE, timeout=20)
        if private is not None:
            private.stop()
        prefix = str(tmp) + "/"
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split()[4] for ln in f]
        for mp in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True, timeout=10, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        log("cleaned up")


if __name__ == "__main__":
    sys.exit(main())

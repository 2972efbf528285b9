"""Shared helpers for the end-to-end tests: a private containerd, a busybox rootfs, leak checks.

Stdlib only (plus pytest in conftest.py), so it also works from a bare interpreter:

    >>> from tests.harness import PrivateContainerd, build_busybox_rootfs
    >>> with PrivateContainerd() as c:
    ...     c.ctr("version")

Everything here bounds its waits: every `ctr` call has a timeout (subprocess kills ctr with
SIGKILL on expiry; SIGTERM would be *forwarded* by `ctr run` to the container and ignored by a
PID 1 without handlers), and every poll loop has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import peer_builds as peers

RUNC_RUNTIME = "io.containerd.runc.v2"
LXCFS_RUNTIME = "io.containerd.lxcfs.v2"
LXCFS_SHIM = "containerd-shim-lxcfs-v2"

#: Where containerd 1.6/1.7 shims put their ttrpc sockets, whatever containerd's state dir is.
SHIM_SOCKET_DIR = Path("/run/containerd/s")
#: Per-shim state dir of the lxcfs shim (its FUSE mountpoint lives below it).
LXCFS_STATE_DIR = Path("/run/containerd-shim-lxcfs")

DEFAULT_CTR_TIMEOUT = 60.0
#: Every bounded wait here (wait_until, ctr calls) is multiplied by this: the cgroup v2 guest
#: (tests/test_guest_cgroup_v2.py) runs under software emulation, several times slower.
TIMEOUT_SCALE = float(os.environ.get("CONTAINERD_SHIM_LXCFS_TIMEOUT_SCALE", "1"))

_ID_OK = re.compile(r"[^A-Za-z0-9]+")


class HarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------- small helpers


def shim_hash(address: str, namespace: str, group: str) -> str:
    """sha256 hex of `<containerd address>/<namespace>/<group>`: how 1.6/1.7 shims name sockets."""
    return hashlib.sha256(os.path.join(address, namespace, group).encode()).hexdigest()


def find_shim_bin_dir() -> str | None:
    """Directory holding `containerd-shim-lxcfs-v2`: next to sys.executable, else on PATH."""
    here = Path(sys.executable).parent
    if os.access(here / LXCFS_SHIM, os.X_OK):
        return str(here)
    found = shutil.which(LXCFS_SHIM)
    return str(Path(found).parent) if found else None


def host_meminfo() -> dict[str, int]:
    return parse_meminfo(Path("/proc/meminfo").read_text())


def parse_meminfo(text: str) -> dict[str, int]:
    """`{"MemTotal": 24684084, ...}` (values as printed, kB for most keys)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key.strip()] = int(fields[0])
    return out


def fuse_mounts() -> list[str]:
    """Mount points of all FUSE mounts visible to this process (from /proc/self/mountinfo)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split(" ", 1)[0]
        if fstype == "fuse" or fstype.startswith(("fuse.", "fuseblk")):
            out.append(_unescape_mount(left.split(" ")[4]))
    return out


def mount_points() -> list[str]:
    return [
        _unescape_mount(line.split(" ")[4])
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ]


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def process_cmdlines() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if raw:  # zombies and kernel threads have an empty cmdline
            argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
            if len(argv) == 1 and " " in argv[0]:
                argv = argv[0].split()  # a title set with setproctitle (forked shims)
            out[int(entry)] = argv
    return out


def _flag_value(argv: list[str], flag: str) -> str | None:
    """Value of a Go-style flag (`-x v`, `--x v`, `-x=v`) in argv."""
    for i, arg in enumerate(argv):
        for prefix in (f"-{flag}", f"--{flag}"):
            if arg == prefix and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(prefix + "="):
                return arg[len(prefix) + 1 :]
    return None


def remove_empty_cgroups(name: str) -> None:
    """rmdir `/sys/fs/cgroup[/<controller>]/<name>` bottom-up where nothing lives in it.

    containerd puts a namespace's containers under `/<namespace>/<id>`; runc removes the
    container's cgroup, the namespace's stays. rmdir fails on a cgroup with tasks or children,
    so a cgroup someone still uses (k8s.io is shared by every CRI containerd) is never touched.
    """
    root = Path("/sys/fs/cgroup")
    for top in [root / name, *root.glob(f"*/{name}")]:
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def wait_until(predicate, timeout: float, interval: float = 0.1):
    """Poll `predicate()` until it returns something truthy (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --------------------------------------------------------------------------- busybox rootfs


def build_busybox_rootfs(dest: str | os.PathLike, busybox: str = "/bin/busybox") -> Path:
    """A minimal rootfs: a static busybox in /bin with all applets as symlinks, empty mountpoints.

    Debian's busybox-static provides /bin/busybox. `busybox --install -s /bin` runs chrooted into
    the new rootfs so the symlinks point at /bin/busybox *inside* it.
    """
    root = Path(dest)
    if not os.access(busybox, os.X_OK):
        raise HarnessError(f"{busybox} missing: install Debian's busybox-static (install.sh does)")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d).chmod(0o755)
    root.chmod(0o755)  # mkdtemp makes it 0700: a non-root container user could not run /bin/sh
    (root / "root").chmod(0o700)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    subprocess.run(
        ["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    # root, and one unprivileged user as most images have (tests that drop privileges)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    (root / "etc" / "hostname").write_text("busybox\n")
    if not (root / "bin" / "sh").exists():
        raise HarnessError(f"busybox --install did not create {root}/bin/sh")
    return root


# --------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class ContainerdRelease:
    """One containerd of the test matrix, with its own ctr and runc shim (the reference runtime).

    `version` is the pytest param id ("1.6", "1.7.35", "2.4.2"); `how` says how to get it when
    its binaries are missing.
    """

    version: str
    bin_dir: Path
    how: str

    @property
    def containerd(self) -> str:
        return str(self.bin_dir / "containerd")

    @property
    def ctr(self) -> str:
        return str(self.bin_dir / "ctr")

    def missing(self) -> list[str]:
        return [
            str(self.bin_dir / b)
            for b in ("containerd", "ctr", "containerd-shim-runc-v2")
            if not os.access(self.bin_dir / b, os.X_OK)
        ]


def _peer_release(peer: peers.Peer) -> ContainerdRelease:
    return ContainerdRelease(
        peer.version.lstrip("v"),
        peer.bin_dir,
        f"built from {peer.module}@{peer.version} by `install.sh --test` (tests/peer_builds.py; "
        "needs Go and the Go module proxy)",
    )


#: Debian 12's containerd (apt, /usr/bin), the newest 1.7 and 2.x (tests/peer_builds.py).
CONTAINERD_MATRIX = (
    ContainerdRelease("1.6", Path("/usr/bin"), "Debian 12 package `containerd` (install.sh)"),
    _peer_release(peers.CONTAINERD_17),
    _peer_release(peers.CONTAINERD_2),
)
#: The release the single-version suites (CRI, critest, crictl) run against.
NEWEST = CONTAINERD_MATRIX[-1]


def selected_releases() -> list[ContainerdRelease]:
    """The matrix, or the subset named in $LXCFS_TEST_CONTAINERD ("1.6,2.4.2"): an explicit
    choice, so a node without Go can run the 1.6 column on purpose (never silently)."""
    wanted = os.environ.get("LXCFS_TEST_CONTAINERD", "").replace(",", " ").split()
    if not wanted:
        return list(CONTAINERD_MATRIX)
    known = {r.version: r for r in CONTAINERD_MATRIX}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise HarnessError(f"LXCFS_TEST_CONTAINERD: unknown {unknown}; known: {list(known)}")
    return [known[w] for w in wanted]


def binary_version(binary: str) -> tuple[int, int, int]:
    """(major, minor, patch) from `<binary> --version` (containerd and ctr print it alike)."""
    r = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    m = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", r.stdout)
    if r.returncode != 0 or not m:
        raise HarnessError(f"{binary} --version: exit {r.returncode}: {r.stdout}{r.stderr}")
    return int(m[1]), int(m[2]), int(m[3])


#: Lines containerd 2.2+'s ctr prints on stderr for every call on a cgroup v1 host; they are
#: about the host, not the command, so ctr() drops them (tests compare stderr exactly).
CTR_HOST_WARNINGS = re.compile(
    rb"^.*(cgroup v1 (support )?is deprecated|support for cgroup v1 is deprecated).*(\r?\n)?",
    re.MULTILINE | re.IGNORECASE,
)


def drop_host_warnings(stderr: str | bytes) -> str | bytes:
    if isinstance(stderr, bytes):
        return CTR_HOST_WARNINGS.sub(b"", stderr)
    return CTR_HOST_WARNINGS.sub(b"", stderr.encode()).decode()


# --------------------------------------------------------------------------- containerd


CONFIG_TEMPLATE = """\
# Generated by tests/harness.py: a private containerd for the e2e tests.
version = 2
root = "{root}"
state = "{state}"
# CRI is not needed by ctr-driven tests and slows start-up; enable with cri=True.
disabled_plugins = [{disabled}]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{ttrpc_address}"

[debug]
  # debug: shims get -debug and their log fifo lines land in containerd's log
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  # keep containerd from creating /opt/containerd and putting it first on the shims' PATH
  path = "{opt}"
"""

#: containerd 2.x: config version 3 (2.4 migrates it to its own version 4 on load), the CRI
#: plugin split into io.containerd.cri.v1.{runtime,images} plus the streaming grpc.v1.cri.
CONFIG_TEMPLATE_V3 = CONFIG_TEMPLATE.replace("version = 2", "version = 3", 1)
CRI_PLUGINS_V2 = ('"io.containerd.grpc.v1.cri"',)
CRI_PLUGINS_V3 = (
    '"io.containerd.grpc.v1.cri"',
    '"io.containerd.cri.v1.runtime"',
    '"io.containerd.cri.v1.images"',
)


class PrivateContainerd:
    """A containerd of our own: root, state, grpc and ttrpc sockets in a short tmp dir.

    Attributes: `address` (grpc socket), `ttrpc_address`, `namespace`, `log_path`, `config_path`,
    `tmpdir`, `root`, `state`, `env` (of containerd: PATH starts with the shim's bin dir, then
    the directory of *this* containerd, whose containerd-shim-runc-v2 is the reference runtime),
    `shim_bin_dir` (None when `containerd-shim-lxcfs-v2` is not installed), `version`
    ((major, minor, patch) of the containerd binary).

    `containerd`/`ctr` are command names or paths, e.g. the binaries of a
    `ContainerdRelease` of CONTAINERD_MATRIX.
    """

    def __init__(
        self,
        namespace: str | None = None,
        cri: bool = False,
        containerd: str = "containerd",
        ctr: str = "ctr",
        start_timeout: float = 30.0,
    ):
        self.containerd_bin = shutil.which(containerd)
        self.ctr_bin = shutil.which(ctr)
        if not self.containerd_bin or not self.ctr_bin:
            raise HarnessError(
                f"containerd/ctr not found on PATH ({containerd}={self.containerd_bin}, "
                f"{ctr}={self.ctr_bin}): run install.sh (Debian package `containerd`)"
            )
        self.version = binary_version(self.containerd_bin)
        self.namespace = namespace or f"e2e-{os.getpid()}"
        self.cri = cri
        self.start_timeout = start_timeout
        # unix socket paths must stay < 108 bytes: keep the dir short, under /tmp
        self.tmpdir = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
        self.root = self.tmpdir / "root"
        self.state = self.tmpdir / "state"
        self.address = str(self.tmpdir / "c.sock")
        self.ttrpc_address = self.address + ".ttrpc"
        self.log_path = self.tmpdir / "containerd.log"
        self.config_path = self.tmpdir / "config.toml"
        self.shim_bin_dir = find_shim_bin_dir()
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.issued_ids: list[str] = []
        self._id_counter = 0
        # containerd finds shims on PATH: ours, then this release's own runc shim
        own_dir = str(Path(self.containerd_bin).parent)
        path = [p for p in (self.shim_bin_dir, own_dir) if p]
        path += os.environ.get("PATH", "").split(os.pathsep)
        path += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        seen: set[str] = set()
        self.env = dict(os.environ)
        self.env["PATH"] = os.pathsep.join(p for p in path if p and not (p in seen or seen.add(p)))

    # ---- lifecycle

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def task_service(self) -> str:
        """The ttrpc Task service every shim of this containerd serves: 2.x's runc shim
        registers only `containerd.task.v3.Task`, 1.6/1.7's only v2 (ours serves both)."""
        return "containerd.task.v3.Task" if self.major >= 2 else "containerd.task.v2.Task"

    def config_text(self) -> str:
        template = CONFIG_TEMPLATE_V3 if self.major >= 2 else CONFIG_TEMPLATE
        disabled = [] if self.cri else list(CRI_PLUGINS_V3 if self.major >= 2 else CRI_PLUGINS_V2)
        return template.format(
            root=self.root,
            state=self.state,
            address=self.address,
            ttrpc_address=self.ttrpc_address,
            opt=self.tmpdir / "opt",
            disabled=", ".join(disabled),
        )

    def start(self) -> PrivateContainerd:
        self.config_path.write_text(self.config_text())
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [self.containerd_bin, "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"containerd exited with {self.proc.returncode} at start-up; log tail:\n"
                    + self.log_tail()
                )
            if os.path.exists(self.address):
                r = self.ctr("version", timeout=5, check=False)
                if r.returncode == 0:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(
                    f"containerd did not answer on {self.address} within "
                    f"{self.start_timeout}s; log tail:\n" + self.log_tail()
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> PrivateContainerd:
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.cleanup_all()
        finally:
            self.stop()
            self.remove_tmpdir()

    def remove_tmpdir(self) -> None:
        """Remove the tmp dir, unmounting (lazily) anything still mounted below it first."""
        prefix = str(self.tmpdir) + "/"
        for mp in sorted((m for m in mount_points() if m.startswith(prefix)), reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True, timeout=10, check=False)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        # runc state root of our namespace (shared /run/containerd/runc), if it is empty now
        with contextlib.suppress(OSError):
            os.rmdir(f"/run/containerd/runc/{self.namespace}")
        remove_empty_cgroups(self.namespace)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- ctr

    def ctr(
        self,
        *args: str,
        input: str | bytes | None = None,
        timeout: float = DEFAULT_CTR_TIMEOUT,
        check: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run `ctr --address <sock> --namespace <ns> *args`; text mode unless input is bytes.

        stdin is /dev/null unless `input` is given (ctr copies its stdin into the container).
        On timeout ctr is SIGKILLed and subprocess.TimeoutExpired propagates.
        """
        cmd = [self.ctr_bin, "--address", self.address, "--namespace", self.namespace, *args]
        kw: dict = {"capture_output": True, "timeout": timeout * TIMEOUT_SCALE, "env": self.env}
        if input is None:
            kw["stdin"] = subprocess.DEVNULL
            kw["text"] = True
        else:
            kw["input"] = input
            kw["text"] = isinstance(input, str)
        r = subprocess.run(cmd, **kw)
        if r.stderr:
            r.stderr = drop_host_warnings(r.stderr)
        if check and r.returncode != 0:
            raise HarnessError(
                f"{' '.join(cmd)} -> exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
            )
        return r

    def new_id(self, hint: str = "c") -> str:
        """A container id unique in this containerd (and valid for containerd: [A-Za-z0-9._-])."""
        self._id_counter += 1
        slug = _ID_OK.sub("-", hint).strip("-")[-40:].strip("-") or "c"
        cid = f"{slug}-{os.getpid()}-{self._id_counter}"
        self.issued_ids.append(cid)
        return cid

    def run(
        self,
        runtime: str,
        rootfs: str | os.PathLike,
        cid: str,
        *command: str,
        ctr_args: tuple[str, ...] = (),
        input: str | bytes | None = None,
        timeout: float = DEFAULT_CTR_TIMEOUT,
    ) -> subprocess.CompletedProcess:
        """`ctr run --rm --runtime <runtime> [ctr_args] --rootfs <rootfs> <cid> <command...>`."""
        args = ["run", "--rm", "--runtime", runtime, *ctr_args, "--rootfs", str(rootfs), cid]
        return self.ctr(*args, *command, input=input, timeout=timeout)

    def run_detached(
        self,
        runtime: str,
        rootfs: str | os.PathLike,
        cid: str,
        *command: str,
        ctr_args: tuple[str, ...] = (),
        timeout: float = DEFAULT_CTR_TIMEOUT,
    ) -> subprocess.CompletedProcess:
        """`ctr run -d --runtime <runtime> [ctr_args] --rootfs <rootfs> <cid> <command...>`."""
        args = ["run", "-d", "--runtime", runtime, *ctr_args, "--rootfs", str(rootfs), cid]
        return self.ctr(*args, *command, timeout=timeout)

    # ---- tasks and containers

    def tasks(self) -> dict[str, tuple[int, str]]:
        """`{id: (pid, STATUS)}` from `ctr task ls`."""
        r = self.ctr("task", "ls", timeout=20, check=True)
        out = {}
        for line in r.stdout.splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                out[f[0]] = (int(f[1]) if f[1].isdigit() else 0, f[2])
        return out

    def containers(self) -> list[str]:
        r = self.ctr("container", "ls", "-q", timeout=20, check=True)
        return [line.strip() for line in r.stdout.splitlines() if line.strip()]

    def task_status(self, cid: str) -> str | None:
        return self.tasks().get(cid, (0, None))[1]

    def wait_status(self, cid: str, status: str, timeout: float = 20.0) -> bool:
        return bool(wait_until(lambda: self.task_status(cid) == status, timeout, 0.2))

    def delete_task(self, cid: str, timeout: float = 30.0) -> int | None:
        """`ctr task rm <cid>`; returns the exit status containerd recorded.

        ctr 1.6 has no `task wait`; `task rm` exits 0 and only *logs* a non-zero exit code
        (`task <id> exit with non-zero exit code 137`) on stderr. Returns 0 when nothing was
        logged, None when the delete itself failed.
        """
        r = self.ctr("task", "rm", cid, timeout=timeout)
        if r.returncode != 0:
            return None
        m = re.search(r"exit with non-zero exit code (\d+)", r.stderr)
        return int(m.group(1)) if m else 0

    def force_remove(self, cid: str) -> None:
        """Kill, delete task and container `cid`, whatever state it is in (best effort)."""
        st = self.task_status(cid)
        if st is not None:
            if st not in ("STOPPED", "CREATED"):
                self.ctr("task", "kill", "-a", "-s", "SIGKILL", cid, timeout=20)
                self.wait_status(cid, "STOPPED", timeout=20)
            self.ctr("task", "rm", "-f", cid, timeout=30)
        if cid in self.containers():
            self.ctr("container", "rm", cid, timeout=30)

    def cleanup_all(self) -> list[str]:
        """Remove every container of our namespace; returns the ids found (leftovers)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            left = sorted(set(self.tasks()) | set(self.containers()))
        except (HarnessError, subprocess.TimeoutExpired):
            return []
        for cid in left:
            with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
                self.force_remove(cid)
        return left

    # ---- leak detection

    def shim_processes(self, cid: str | None = None) -> list[tuple[int, str]]:
        """Shim processes (any runtime) serving *this* containerd, optionally for one id."""
        out = []
        for pid, argv in process_cmdlines().items():
            # interpreter, `-S` (our launcher's shebang), script: the name is in the first 3
            if not argv or "containerd-shim" not in " ".join(argv[:3]):
                continue
            if _flag_value(argv, "address") != self.address:
                continue
            if cid is not None and _flag_value(argv, "id") != cid:
                continue
            out.append((pid, " ".join(argv)))
        return out

    def leaks_for(self, cid: str) -> list[str]:
        """What container `cid` left behind: shim process, shim socket, mounts, state dirs."""
        problems = []
        for pid, cmd in self.shim_processes(cid):
            problems.append(f"shim process {pid} still running: {cmd}")
        h = shim_hash(self.address, self.namespace, cid)
        sock = SHIM_SOCKET_DIR / h
        if sock.exists():
            problems.append(f"shim socket {sock} left behind")
        bundle = f"/io.containerd.runtime.v2.task/{self.namespace}/{cid}/"
        for mp in mount_points():
            if h in mp or bundle in mp + "/":
                problems.append(f"mount {mp} left behind")
        if (LXCFS_STATE_DIR / h).exists():
            problems.append(f"lxcfs shim state dir {LXCFS_STATE_DIR / h} left behind")
        return problems

    def wait_no_leaks_for(self, cid: str, timeout: float = 10.0) -> list[str]:
        """Shims exit asynchronously after Shutdown: give them `timeout` s to go away."""
        leaks: list[str] = []

        def clean():
            nonlocal leaks
            leaks = self.leaks_for(cid)
            return not leaks

        wait_until(clean, timeout, 0.2)
        return leaks

    def session_leaks(self) -> list[str]:
        """After stop(): anything of this containerd still around (processes, mounts, sockets)."""
        problems = []
        for pid, cmd in self.shim_processes():
            problems.append(f"shim process {pid} still running: {cmd}")
        prefix = str(self.tmpdir) + "/"
        for mp in fuse_mounts():
            if mp.startswith(prefix):
                problems.append(f"fuse mount {mp} left behind")
        for cid in self.issued_ids:
            problems.extend(p for p in self.leaks_for(cid) if "process" not in p)
        return problems

    def kill_leftover_shims(self) -> None:
        """Last resort after a leak was recorded: SIGKILL shims of this containerd."""
        for pid, _ in self.shim_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for cid in self.issued_ids:
            h = shim_hash(self.address, self.namespace, cid)
            for mp in fuse_mounts():
                if h in mp:
                    subprocess.run(["umount", "-l", mp], capture_output=True, timeout=10)
            with contextlib.suppress(OSError):
                (SHIM_SOCKET_DIR / h).unlink()

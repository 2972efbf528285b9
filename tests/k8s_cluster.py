"""A one-node Kubernetes cluster on loopback: etcd, kube-apiserver, kubelet, kubectl, crictl.

Binaries come from the shared peer cache (`tests/peers/k8s/build.sh`, run by `install.sh
--test`; containerd and crictl from the matrix peers). The kubelet talks CRI to a private
containerd 2.x (own root, state, sockets) configured the way a node is: its config imports
the drop-in that `install.sh --containerd-config-only` writes (handler `lxcfs`, annotation
passthrough) next to the stock `runc` handler.

Left out on purpose, and why:
* kube-scheduler: test pods are bound with `spec.nodeName`, which is all it would do here.
  The RuntimeClass admission plugin (in the API server) still merges the class's
  `scheduling.nodeSelector` into the pod and sets `spec.overhead`; the kubelet's own
  admission then checks the selector against the node's labels.
* kube-controller-manager: it would create the `default` ServiceAccount and the
  `kube-root-ca.crt` ConfigMap (the test creates the ServiceAccount, with
  `automountServiceAccountToken: false`, so no token volume is needed), garbage-collect
  pods and taint NotReady nodes; none of it is on the path under test.
* CNI: pods use the host network (the node reports NetworkReady=false, which only keeps
  pods that need a pod network from starting). Loopback only: every listener binds 127.0.0.1.

Everything started here is stopped, and everything written is removed, by `Cluster.stop()`:
pods first (through the API, so the kubelet tears them down as it would on a node), then the
kubelet, containerd (and any sandbox still there), the API server and etcd; the kubelet's
mounts under its root dir, the cgroups under its cgroup root, /var/log/containers links, and
the kernel settings the kubelet changes (it sets vm.overcommit_memory, kernel.panic, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import peer_builds as peers
from cri_node import CriContainerd
from harness import NEWEST, HarnessError, mount_points, process_cmdlines, wait_until

REPO = Path(__file__).resolve().parent.parent
PEERS = peers.PEER_DIR
CONTAINERD_DIR = peers.CONTAINERD_2.bin_dir
CRICTL = peers.CRI_TOOLS.path("crictl")
#: The node's name is also its Hostname address, which the API server dials for logs/exec:
#: the kubelet refuses a loopback --node-ip, and "localhost" resolves to 127.0.0.1 everywhere.
NODE = "localhost"
#: What kubelet's setupKernelTunables writes when protectKernelDefaults is false.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
CONTAINER_LOGS = Path("/var/log/containers")  # hard-coded in the kubelet
#: Created on the host whatever the root dirs say: the kubelet's device-plugin socket dir
#: (k8s.io/kubelet deviceplugin DevicePluginPath), go-cni's result cache of containerd's CRI, and
#: the default pod log dir (in case podLogsDir is not honoured).
#: Removed again if this run created them.
HOST_DIRS = (Path("/var/lib/kubelet"), Path("/var/lib/cni"), Path("/var/log/pods"))


def k8s_version() -> str:
    """The k8s.io/kubernetes version the wrapper module pins (what build.sh builds)."""
    for line in (REPO / "tests/peers/k8s/go.mod").read_text().splitlines():
        f = line.split()
        if len(f) >= 3 and f[0] == "require" and f[1] == "k8s.io/kubernetes":
            return f[2]
        if len(f) == 2 and f[0] == "k8s.io/kubernetes" and f[1].startswith("v"):
            return f[1]
    raise HarnessError("no k8s.io/kubernetes version in tests/peers/k8s/go.mod")


def k8s_bin_dir() -> Path:
    return PEERS / f"kubernetes-{k8s_version()}" / "bin"


def missing_binaries() -> list[str]:
    wanted = [k8s_bin_dir() / n for n in ("etcd", "kube-apiserver", "kubelet", "kubectl")]
    wanted += [CONTAINERD_DIR / n for n in ("containerd", "ctr", "containerd-shim-runc-v2")]
    wanted += [CRICTL]
    return [str(p) for p in wanted if not os.access(p, os.X_OK)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- certificates

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {eku}
authorityKeyIdentifier = keyid
{san}
"""


class Pki:
    """A throw-away CA and the certificates of one run, made with Debian's `openssl`.

    ECDSA P-256 keys: fast to generate on a loaded machine and accepted by every component
    (the service-account signing key too: ES256 tokens).
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"
        self._serial = 1

    def _openssl(self, *args: str, cnf: str | None = None) -> None:
        env = dict(os.environ)
        if cnf is not None:
            path = self.dir / "openssl.cnf"
            path.write_text(cnf)
            env["OPENSSL_CONF"] = str(path)
        r = subprocess.run(
            ["openssl", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        if r.returncode != 0:
            raise HarnessError(f"openssl {' '.join(args)}: {r.stderr.strip()}")

    def _key(self, path: Path) -> None:
        self._openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
        )

    def make_ca(self) -> None:
        self._key(self.ca_key)
        cnf = _OPENSSL_CNF.format(eku="serverAuth", san="")
        self._openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            str(self.ca_key),
            "-subj",
            "/CN=containerd-shim-lxcfs test CA",
            "-days",
            "2",
            "-extensions",
            "ca",
            "-config",
            str(self.dir / "openssl.cnf"),
            "-out",
            str(self.ca),
            cnf=cnf,
        )

    def issue(
        self,
        name: str,
        subject: str,
        *,
        server: bool = False,
        client: bool = False,
        sans: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        """Certificate and key `<name>.crt`/`<name>.key` signed by the CA."""
        crt, key, csr = (self.dir / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
        self._key(key)
        eku = ",".join(u for u, on in (("serverAuth", server), ("clientAuth", client)) if on)
        san = f"subjectAltName = {','.join(sans)}" if sans else ""
        cnf = _OPENSSL_CNF.format(eku=eku, san=san)
        cnf_path = str(self.dir / "openssl.cnf")
        self._openssl(
            "req",
            "-new",
            "-key",
            str(key),
            "-subj",
            subject,
            "-config",
            cnf_path,
            "-out",
            str(csr),
            cnf=cnf,
        )
        self._serial += 1
        self._openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.ca),
            "-CAkey",
            str(self.ca_key),
            "-set_serial",
            str(self._serial),
            "-days",
            "2",
            "-extfile",
            cnf_path,
            "-extensions",
            "leaf",
            "-out",
            str(crt),
            cnf=cnf,
        )
        csr.unlink()
        return crt, key

    def service_account_keys(self) -> tuple[Path, Path]:
        key, pub = self.dir / "sa.key", self.dir / "sa.pub"
        self._key(key)
        self._openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))
        return key, pub


def kubeconfig(path: Path, server: str, ca: Path, crt: Path, key: Path, user: str) -> Path:
    """A kubeconfig (JSON is YAML) with one cluster, one client-certificate user, one context."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": server, "certificate-authority": str(ca)},
                    }
                ],
                "users": [
                    {"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}
                ],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
                "current-context": "local",
            },
            indent=1,
        )
    )
    return path


# --------------------------------------------------------------------------- containerd 2.x


class NodeContainerd(CriContainerd):
    """The node's containerd: the matrix's newest (2.4.2) with CRI and install.sh's drop-in."""

    def __init__(self) -> None:
        super().__init__(NEWEST, start_timeout=90.0)


# --------------------------------------------------------------------------- processes


class Daemon:
    """One control-plane process: its own session, log file, bounded stop."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


class Cluster:
    """etcd + kube-apiserver + kubelet (+ containerd 2.x) on 127.0.0.1, for one test module."""

    def __init__(self) -> None:
        self.bin = k8s_bin_dir()
        self.version = k8s_version()
        self.tmp = Path(tempfile.mkdtemp(prefix="k8s-", dir="/tmp"))
        self.pki = Pki(self.tmp / "pki")
        self.cgroup_root = f"/lxcfs-k8s-{os.getpid()}"
        self.kubelet_dir = self.tmp / "kubelet"
        self.pod_logs = self.tmp / "pod-logs"
        self.daemons: dict[str, Daemon] = {}
        self.containerd: NodeContainerd | None = None
        self.env = dict(os.environ)
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.admin_kubeconfig = self.tmp / "admin.kubeconfig"
        self._sysctls: dict[str, str] = {}
        self._container_logs_existed = CONTAINER_LOGS.is_dir()
        self._host_dirs_created = [d for d in HOST_DIRS if not d.exists()]
        self.timings: dict[str, float] = {}

    # ---- start

    def start(self) -> Cluster:
        t0 = time.monotonic()
        self._make_pki()
        self._start_etcd()
        self._start_apiserver()
        self.timings["control plane"] = time.monotonic() - t0
        t1 = time.monotonic()
        self.containerd = NodeContainerd().start()
        self.timings["containerd"] = time.monotonic() - t1
        t2 = time.monotonic()
        self._start_kubelet()
        self.timings["kubelet"] = time.monotonic() - t2
        return self

    def _make_pki(self) -> None:
        p = self.pki
        p.make_ca()
        self.apiserver_cert = p.issue(
            "apiserver",
            "/CN=kube-apiserver",
            server=True,
            sans=(
                "IP:127.0.0.1",
                "IP:10.96.0.1",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
            ),
        )
        self.admin_cert = p.issue("admin", "/O=system:masters/CN=kubernetes-admin", client=True)
        # the API server's identity towards the kubelet (logs, exec): authorized by webhook
        self.apiserver_kubelet_cert = p.issue(
            "apiserver-kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            client=True,
        )
        # the kubelet's identity towards the API server: the Node authorizer's subject
        self.kubelet_client_cert = p.issue(
            "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE}", client=True
        )
        self.kubelet_serving_cert = p.issue(
            "kubelet", f"/CN={NODE}", server=True, sans=("IP:127.0.0.1", "DNS:localhost")
        )
        self.sa_key, self.sa_pub = p.service_account_keys()
        kubeconfig(self.admin_kubeconfig, self.server, p.ca, *self.admin_cert, "admin")
        self.kubelet_kubeconfig = kubeconfig(
            self.tmp / "kubelet.kubeconfig",
            self.server,
            p.ca,
            *self.kubelet_client_cert,
            f"system:node:{NODE}",
        )

    def _daemon(self, name: str, argv: list[str]) -> Daemon:
        d = Daemon(name, argv, self.tmp / f"{name}.log", self.env)
        self.daemons[name] = d
        return d

    def _wait(self, name: str, ready, timeout: float) -> None:
        d = self.daemons[name]
        ok = wait_until(lambda: not d.alive() or ready(), timeout, 0.5)
        if not ok or not d.alive():
            state = "exited" if not d.alive() else f"not ready after {timeout:.0f}s"
            raise HarnessError(f"{name} {state}; log tail:\n{d.tail()}")

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._daemon(
            "etcd",
            [
                str(self.bin / "etcd"),
                "--name",
                "node",
                "--data-dir",
                str(self.tmp / "etcd"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"node=http://127.0.0.1:{peer}",
                # a throw-away store on a shared disk: fsync would only add seconds per write
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._wait("etcd", lambda: _http_ok(self.etcd_url + "/health"), 120)

    def _start_apiserver(self) -> None:
        ca = str(self.pki.ca)
        self._daemon(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                "--etcd-servers",
                self.etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(self.api_port),
                "--tls-cert-file",
                str(self.apiserver_cert[0]),
                "--tls-private-key-file",
                str(self.apiserver_cert[1]),
                "--client-ca-file",
                ca,
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                str(self.sa_pub),
                "--service-account-signing-key-file",
                str(self.sa_key),
                "--service-cluster-ip-range",
                "10.96.0.0/24",
                "--authorization-mode",
                "Node,RBAC",
                "--enable-admission-plugins",
                "NodeRestriction",
                "--kubelet-client-certificate",
                str(self.apiserver_kubelet_cert[0]),
                "--kubelet-client-key",
                str(self.apiserver_kubelet_cert[1]),
                "--kubelet-certificate-authority",
                ca,
                "--kubelet-preferred-address-types",
                "Hostname",
                # the `kubernetes` Service's endpoints may not be a loopback address
                "--endpoint-reconciler-type",
                "none",
                "--profiling=false",
                "-v",
                "1",
            ],
        )
        self._wait(
            "kube-apiserver",
            lambda: (
                self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0
            ),
            240,
        )

    def _prepare_cgroup_root(self) -> None:
        """The kubelet wants its --cgroup-root to exist in every v1 hierarchy it uses."""
        name = self.cgroup_root.lstrip("/")
        for hierarchy in self._hierarchies():
            d = hierarchy / name
            d.mkdir(exist_ok=True)
            if (hierarchy / "cpuset.cpus").exists():  # v1 cpuset starts empty: inherit
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((hierarchy / f).read_text())

    @staticmethod
    def _hierarchies() -> list[Path]:
        root = Path("/sys/fs/cgroup")
        if (root / "cgroup.controllers").exists():  # unified (v2) host
            return [root]
        return [
            p
            for p in root.iterdir()
            if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists()
        ]

    def _start_kubelet(self) -> None:
        for name in KUBELET_SYSCTLS:
            with contextlib.suppress(OSError):
                self._sysctls[name] = Path("/proc/sys", name).read_text().strip()
        self._prepare_cgroup_root()
        self.kubelet_dir.mkdir()
        self.pod_logs.mkdir()
        self.kubelet_port, self.kubelet_healthz = free_port(), free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroup v1 host: since 1.35 the kubelet refuses v1 unless told otherwise
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{self.containerd.address}",
            "address": "127.0.0.1",
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.kubelet_healthz,
            "tlsCertFile": str(self.kubelet_serving_cert[0]),
            "tlsPrivateKeyFile": str(self.kubelet_serving_cert[1]),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki.ca)},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.pod_logs),
            "failSwapOn": True,
            "staticPodPath": "",
            # a shared development disk: do not evict or garbage-collect our images
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "10s",
            "serializeImagePulls": False,
            "resolvConf": "/etc/resolv.conf",
        }
        config_path = self.tmp / "kubelet-config.json"
        config_path.write_text(json.dumps(config, indent=1))
        self._daemon(
            "kubelet",
            [
                str(self.bin / "kubelet"),
                "--config",
                str(config_path),
                "--kubeconfig",
                str(self.kubelet_kubeconfig),
                "--root-dir",
                str(self.kubelet_dir),
                "--hostname-override",
                NODE,
                "-v",
                "2",
            ],
        )
        self._wait(
            "kubelet",
            lambda: (
                _http_ok(f"http://127.0.0.1:{self.kubelet_healthz}/healthz")
                and self.kubectl("get", "node", NODE, check=False, timeout=10).returncode == 0
            ),
            240,
        )

    # ---- clients

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / "kubectl"), "--kubeconfig", str(self.admin_kubeconfig), *args]
        r = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and r.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, manifest: dict | str) -> str:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.kubectl("apply", "-f", "-", input=text).stdout

    def crictl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        assert self.containerd is not None
        cmd = [
            str(CRICTL),
            "--runtime-endpoint",
            f"unix://{self.containerd.address}",
            "--image-endpoint",
            f"unix://{self.containerd.address}",
            "--timeout",
            "30s",
            *args,
        ]
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and r.returncode != 0:
            raise HarnessError(f"crictl {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def import_image(self, archive: Path) -> None:
        assert self.containerd is not None
        self.containerd.ctr("images", "import", str(archive), check=True, timeout=180)

    # ---- what the node holds

    def kubelet_mounts(self) -> list[str]:
        """Mounts at or below the kubelet's root dir (it bind-mounts the dir onto itself)."""
        root = str(self.kubelet_dir)
        return [m for m in mount_points() if m == root or m.startswith(root + "/")]

    def pod_cgroups(self, uid: str = "") -> list[str]:
        """cgroup dirs below the kubelet's cgroup root named after pod `uid` (any pod if '')."""
        name = self.cgroup_root.lstrip("/")
        found = []
        for hierarchy in self._hierarchies():
            base = hierarchy / name
            if base.is_dir():
                found += [str(p) for p in base.rglob(f"pod{uid}*") if p.is_dir()]
        return found

    # ---- stop

    def stop(self) -> list[str]:
        """Tear everything down; returns what had to be forced (empty when all went away)."""
        forced: list[str] = []
        kubelet = self.daemons.get("kubelet")
        if kubelet and kubelet.alive() and "kube-apiserver" in self.daemons:
            r = self.kubectl(
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--wait=true",
                "--timeout=90s",
                check=False,
                timeout=120,
            )
            if r.returncode != 0:
                forced.append(f"kubectl delete pods: {r.stderr.strip()}")
        if kubelet:
            kubelet.stop()
        if self.containerd is not None:
            c = self.containerd
            if c.proc is not None and c.proc.poll() is None:
                # stopped sandboxes of deleted pods wait for the kubelet's GC (once a
                # minute): normal; a *ready* one means a pod was not torn down
                ready = self.crictl("pods", "-q", "--state", "ready", check=False).stdout.split()
                if ready:
                    forced.append(f"sandboxes still ready after the kubelet stopped: {ready}")
                pods = self.crictl("pods", "-q", check=False).stdout.split()
                if pods:
                    self.crictl("rmp", "-f", *pods, check=False, timeout=120)
                forced += [f"container {cid}" for cid in c.cleanup_all()]
            c.stop()
            if wait_until(lambda: not c.shim_processes(), 15, 0.2) is False:
                forced.append(f"shims left: {c.shim_processes()}")
                c.kill_leftover_shims()
            c.remove_tmpdir()
        for name in ("kube-apiserver", "etcd"):
            if name in self.daemons:
                self.daemons[name].stop()
        # the kubelet's mounts under its root dir (volumes, etc-hosts bind sources...)
        left = self.kubelet_mounts()
        # the kubelet makes its root dir a mount of its own (for mount propagation) and
        # leaves it when it stops; anything else below it is a pod's and should be gone
        extra = [m for m in left if m != str(self.kubelet_dir)]
        if extra:
            forced.append(f"kubelet mounts left: {extra}")
        for mp in sorted(left, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True, timeout=10, check=False)
        self._remove_cgroups()
        self._remove_container_log_links()
        for d in self._host_dirs_created:
            self._remove_if_only_dirs_and_sockets(d)
        for name, value in self._sysctls.items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", name).write_text(value)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return forced

    def _remove_cgroups(self) -> None:
        name = self.cgroup_root.lstrip("/")
        for hierarchy in self._hierarchies():
            base = hierarchy / name
            if not base.is_dir():
                continue
            for d in sorted(
                (p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                base.rmdir()

    @staticmethod
    def _remove_if_only_dirs_and_sockets(top: Path) -> None:
        """Remove `top` unless it holds a regular file (then someone else uses it now)."""
        if not top.is_dir():
            return
        entries = list(top.rglob("*"))
        if any(p.is_file() and not p.is_socket() for p in entries):
            return
        for p in sorted(entries, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
        with contextlib.suppress(OSError):
            top.rmdir()

    def _remove_container_log_links(self) -> None:
        """The kubelet links /var/log/containers/<pod>_<ns>_<ctr>-<id>.log into its pod logs."""
        if not CONTAINER_LOGS.is_dir():
            return
        prefix = str(self.pod_logs) + "/"
        for link in CONTAINER_LOGS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(prefix):
                    link.unlink()
        if not self._container_logs_existed:
            with contextlib.suppress(OSError):
                CONTAINER_LOGS.rmdir()


def zygote_pids() -> list[int]:
    """The lxcfs shim's fork servers started from *this* install (next to sys.executable)."""
    import sys

    here = str(Path(sys.executable).parent)
    return [
        pid
        for pid, argv in process_cmdlines().items()
        if "-zygote" in argv and any(a.startswith(here) for a in argv)
    ]

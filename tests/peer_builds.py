"""The real peers the test matrix runs against: pinned releases, built with Go into a shared cache.

    python3 tests/peer_builds.py install      # build what is missing (install.sh --test runs this)
    python3 tests/peer_builds.py status       # what is there, what is missing, one line each

The product stays Python: Go is used only to build the peers (containerd 1.7 and 2.x with their
own runc shims, cri-tools, grpcurl) from their release tags through the Go module proxy, into
`/var/cache/containerd-shim-lxcfs/peers/<name>-<version>/bin`, with the module and build caches
next to it so a second run (or a fresh checkout on the same machine) is warm. Debian's
containerd 1.6 comes from apt (install.sh), not from here.

Why not `go install module/cmd/x@version` for everything: containerd 1.7's go.mod carries
`exclude` directives, which `go install pkg@version` refuses; critest is a test binary (its
package has only `_test.go` files), so it is built with `go test -c`. Both therefore build inside
the downloaded module (`go mod download -json` gives its directory) with `-mod=mod`.

Stdlib only: it runs with the node's /usr/bin/python3 and is imported by tests/harness.py for
the pins and paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("LXCFS_PEER_CACHE", "/var/cache/containerd-shim-lxcfs"))
PEER_DIR = CACHE / "peers"
#: Build tags containerd's own release builds of a minimal node use: no btrfs/devmapper/zfs/aufs
#: headers or libraries are needed on the build machine.
TAGS = "no_btrfs no_devmapper no_zfs no_aufs"


@dataclass(frozen=True)
class Peer:
    """One pinned release: which module, which commands, and how to build them."""

    name: str
    module: str
    version: str
    commands: tuple[str, ...]
    #: "install": `go install module/cmd/<c>@version`; "build": `go build` inside the module
    #: (go.mod with exclude/replace); "test": `go test -c` (a suite shipped as _test.go files);
    #: "local": `go build` of this repository's directory `module`
    how: dict[str, str] = field(default_factory=dict)
    #: `-X` flags (the version a binary reports when built outside the release Makefile)
    ldflags: str = ""

    @property
    def bin_dir(self) -> Path:
        return PEER_DIR / f"{self.name}-{self.version}" / "bin"

    def path(self, command: str) -> Path:
        return self.bin_dir / command

    def missing(self) -> list[str]:
        return [c for c in self.commands if not os.access(self.path(c), os.X_OK)]


CONTAINERD_2 = Peer(
    "containerd",
    "github.com/containerd/containerd/v2",
    "v2.4.2",
    ("containerd", "ctr", "containerd-shim-runc-v2"),
    ldflags="-X github.com/containerd/containerd/v2/version.Version=v2.4.2",
)
CONTAINERD_17 = Peer(
    "containerd",
    "github.com/containerd/containerd",
    "v1.7.35",
    ("containerd", "ctr", "containerd-shim-runc-v2"),
    how={"containerd": "build", "ctr": "build", "containerd-shim-runc-v2": "build"},
    ldflags="-X github.com/containerd/containerd/version.Version=v1.7.35",
)
CRI_TOOLS = Peer(
    "cri-tools", "sigs.k8s.io/cri-tools", "v1.37.0", ("crictl", "critest"), how={"critest": "test"}
)
GRPCURL = Peer("grpcurl", "github.com/fullstorydev/grpcurl", "v1.9.4", ("grpcurl",))
#: containerd 1.7.35's Go client with WithShimCgroup (test_e2e_bootstrap): our own small
#: program in tests/peers/shimcgroup (its go.mod pins the client)
SHIMCGROUP = Peer(
    "shimcgroup",
    "tests/peers/shimcgroup",
    "containerd-v1.7.35",
    ("shimcgroup",),
    how={"shimcgroup": "local"},
)

PEERS = (CONTAINERD_2, CONTAINERD_17, CRI_TOOLS, GRPCURL, SHIMCGROUP)
REPO = Path(__file__).resolve().parent.parent


def go_env() -> dict[str, str]:
    """Go's caches under CACHE (shared by every checkout on the machine), reproducible paths."""
    env = dict(os.environ)
    env.update(
        GOPATH=str(CACHE / "go" / "path"),
        GOCACHE=str(CACHE / "go" / "build"),
        GOMODCACHE=str(CACHE / "go" / "mod"),
        GOFLAGS="-trimpath",
    )
    return env


def find_go() -> str | None:
    return shutil.which("go") or next(
        (g for g in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(g, os.X_OK)), None
    )


def _run(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> None:
    print("    $", " ".join(cmd), flush=True)
    r = subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if r.returncode != 0:
        noise = ("go: downloading", "go: finding")
        err = "\n".join(ln for ln in r.stderr.splitlines() if not ln.startswith(noise))
        raise RuntimeError(f"{' '.join(cmd)} -> exit {r.returncode}\n{err[-3000:]}")


def _module_dir(go: str, peer: Peer, env: dict[str, str]) -> str:
    r = subprocess.run(
        [go, "mod", "download", "-json", f"{peer.module}@{peer.version}"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    info = json.loads(r.stdout or "{}")
    if r.returncode != 0 or "Dir" not in info:
        raise RuntimeError(
            f"go mod download {peer.module}@{peer.version}: {info.get('Error') or r.stderr.strip()}"
        )
    return info["Dir"]


def build(go: str, peer: Peer, command: str) -> None:
    """Build one command into a temp file, then rename: a half-built binary is never 'present'."""
    env = go_env()
    peer.bin_dir.mkdir(parents=True, exist_ok=True)
    how = peer.how.get(command, "install")
    flags = ["-tags", TAGS] + (["-ldflags", peer.ldflags] if peer.ldflags else [])
    with tempfile.TemporaryDirectory(prefix=".build-", dir=peer.bin_dir) as tmp:
        if how == "install":
            env["GOBIN"] = tmp
            _run([go, "install", *flags, f"{peer.module}/cmd/{command}@{peer.version}"], env)
        elif how == "local":
            _run([go, "build", "-o", f"{tmp}/{command}", "."], env, cwd=str(REPO / peer.module))
        else:
            # inside the module: it is the main module, so its own go.mod directives apply
            env["GOFLAGS"] += " -mod=mod"
            src = _module_dir(go, peer, env)
            verb = ["test", "-c"] if how == "test" else ["build"]
            _run([go, *verb, *flags, "-o", f"{tmp}/{command}", f"./cmd/{command}"], env, cwd=src)
        os.replace(f"{tmp}/{command}", peer.path(command))


def install(peers: tuple[Peer, ...] = PEERS) -> int:
    todo = [(p, c) for p in peers for c in p.missing()]
    for p in peers:
        have = [c for c in p.commands if c not in p.missing()]
        if have:
            print(f"    {p.name} {p.version}: present {' '.join(have)} ({p.bin_dir})")
    if not todo:
        print("    all peers present (warm cache): nothing to build")
        return 0
    go = find_go()
    if go is None:
        print(
            "peers: Go is not installed, so these peers cannot be built:\n      "
            + "\n      ".join(f"{p.name} {p.version}: {c}" for p, c in todo)
            + "\n    the tests that need them FAIL with a message (matrix ids "
            "[1.7.35-*], [2.4.2-*], crictl/critest, grpcurl).\n"
            "    Install Go >= 1.26 (https://go.dev/dl; Debian 12's golang-go is too old; "
            "the go.mod files ask for 1.26)\n    and re-run install.sh --test, or restrict "
            "the matrix on purpose: LXCFS_TEST_CONTAINERD=1.6",
            file=sys.stderr,
        )
        return 1
    version = subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip()
    print(
        f"    building {len(todo)} missing peer binaries with {version} "
        f"(caches under {CACHE}/go; the first, cold build takes minutes)",
        flush=True,
    )
    failed = []
    for p, c in todo:
        t0 = time.monotonic()
        print(f"    {p.name} {p.version}: {c} ...", flush=True)
        try:
            build(go, p, c)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"    FAILED: {e}", file=sys.stderr, flush=True)
            failed.append(f"{p.name} {p.version} {c}")
            continue
        print(f"    {p.name} {p.version}: {c} built in {time.monotonic() - t0:.0f}s", flush=True)
    if failed:
        print("peers: could not build: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def status() -> int:
    bad = 0
    for p in PEERS:
        miss = p.missing()
        bad |= bool(miss)
        print(
            f"{p.name} {p.version}: "
            + (f"MISSING {' '.join(miss)}" if miss else "ok")
            + f" ({p.bin_dir})"
        )
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("install", "status"))
    args = ap.parse_args(argv)
    if args.action == "install":
        t0 = time.monotonic()
        rc = install()
        print(f"    peers: {time.monotonic() - t0:.1f}s", flush=True)
        return rc
    return status()


if __name__ == "__main__":
    sys.exit(main())

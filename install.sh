#!/usr/bin/env bash
# Install containerd-shim-lxcfs on a Debian 12 node (idempotent), then optionally run the demo
# or the test suite. Run as root. See --help.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./install.sh [--demo [demo args]] [--test [pytest args]] [options]
       ./install.sh --containerd-config-only | --uninstall [options]
       install.sh --node [--uninstall] [--restart-containerd]   (node installer DaemonSet)

Installs containerd-shim-lxcfs on Debian 12 (idempotent; safe to run again):
  1. apt packages (only missing ones): containerd runc fuse3 libfuse3-dev pkg-config gcc
     python3-venv python3-dev busybox-static lxcfs; with --test also: criu libc6-dev
     openssl containernetworking-plugins (critest's pod network); --test then builds the
     test peers (containerd 1.7/2.x, crictl, critest, grpcurl) with Go: tests/peer_builds.py
  2. a venv at $PREFIX (default /opt/containerd-shim-lxcfs) made with /usr/bin/python3,
     with this directory's package installed into it (non-editable)
  3. /usr/local/bin/containerd-shim-lxcfs-v2 -> $PREFIX/bin/containerd-shim-lxcfs-v2
  4. /etc/containerd/conf.d/lxcfs.toml: CRI runtime handler "lxcfs"
     (runtime_type io.containerd.lxcfs.v2, pod_annotations io.containerd.lxcfs.*, the runc
     handler's options), imported from /etc/containerd/config.toml (an existing config is
     kept; an imports line is added if missing, after a backup). containerd 1.6/1.7 replace
     a whole plugin section per imported file, so the drop-in carries a copy of the node's
     CRI section from `containerd config dump`; the result is checked with `containerd
     config dump` (handler present, every other CRI setting unchanged), else rolled back.

Modes:
  (none)                 install only
  --demo [args]          install, then run the main job: a busybox container limited to
                         256 MiB and 1 CPU shows the key line of every virtualised file
                         (and busybox free) next to the host's
                         (args go to `python -m shim.entry.demo`, e.g. --runtime io.containerd.runc.v2)
  --test [pytest args]   install with the `dev` extra, then run the whole test suite:
                         `$PREFIX/bin/python -m pytest [pytest args]` from this directory;
                         exits with pytest's status ("no tests collected" counts as failure)
  --containerd-config-only
                         step 4 only (e.g. after changing CRI settings in config.toml)
  --node                 node installer (deploy/node-installer.yaml): no apt, no pip; copies
                         the prebuilt bundle $PAYLOAD (default /payload/containerd-shim-lxcfs)
                         to $PREFIX, links it into $BINDIR and writes the drop-in; the node's
                         containerd and systemctl are run through `nsenter --target 1
                         --mount` (the pod needs hostPID and privileged)
  --uninstall            remove the drop-in, the $BINDIR link and $PREFIX (refused while lxcfs
                         shims run, unless --force); the imports line is kept (harmless).
                         With --node: the DaemonSet cleanup (deploy/node-uninstaller.yaml)

Options:
  --restart-containerd   restart a running containerd so it reads the new CRI config
                         (never done otherwise; a stopped containerd is left stopped and
                         reads the config when it starts)
  --editable             developer mode: pip install -e (the venv follows this checkout)
  --force                --uninstall even while lxcfs shims run (their pods lose cleanup)
  -h, --help             this help

Environment: PREFIX (venv dir), BINDIR (symlink dir, default /usr/local/bin),
             CONTAINERD_CONFIG_DIR (default /etc/containerd), PAYLOAD (--node),
             CONTAINERD (containerd command, default `containerd`).
EOF
}

MODE=install
RESTART=0
EDITABLE=0
NODE=0
FORCE=0
EXTRA_ARGS=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --demo) MODE=demo; shift; EXTRA_ARGS=("$@"); break ;;
    --test) MODE=test; shift; EXTRA_ARGS=("$@"); break ;;
    --containerd-config-only) MODE=config; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --node) NODE=1; shift ;;
    --force) FORCE=1; shift ;;
    --restart-containerd) RESTART=1; shift ;;
    --editable) EDITABLE=1; shift ;;
    *) echo "install.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
if ((NODE)) && [[ $MODE != install && $MODE != uninstall ]]; then
  echo "install.sh: --node goes with install (the default) or --uninstall only" >&2; exit 2
fi

PREFIX="${PREFIX:-/opt/containerd-shim-lxcfs}"
BINDIR="${BINDIR:-/usr/local/bin}"
CONF_DIR="${CONTAINERD_CONFIG_DIR:-/etc/containerd}"
PAYLOAD="${PAYLOAD:-/payload/containerd-shim-lxcfs}"
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SYS_PYTHON=/usr/bin/python3
SHIM=containerd-shim-lxcfs-v2
RUNTIME=io.containerd.lxcfs.v2
# In the DaemonSet the node's tools live in the host's mount namespace (pid 1, hostPID).
HOST=()
((NODE)) && HOST=(nsenter --target 1 --mount --)
read -r -a CONTAINERD_CMD <<<"${CONTAINERD:-containerd}"
CONTAINERD_CMD=(${HOST[@]+"${HOST[@]}"} "${CONTAINERD_CMD[@]}")
APT_PACKAGES=(containerd runc fuse3 libfuse3-dev pkg-config gcc python3-venv python3-dev
  busybox-static lxcfs)
# Programs only the test suite and the benches call (--test installs them too; the suite's
# tests/test_install_provides.py checks that every program they run is installed by this file).
# libc6-dev: libc.a for the `gcc -static` helpers the tests and benches build into the rootfs
# openssl: certificates and keys for the one-node Kubernetes cluster of tests/k8s_cluster.py
# containernetworking-plugins: the bridge network of critest's pods (tests/critest_run.py)
# qemu-system-x86, mmdebstrap: the cgroup v2 guest (tests/guest/, tests/test_guest_cgroup_v2.py)
TEST_APT_PACKAGES=(criu libc6-dev openssl containernetworking-plugins qemu-system-x86 mmdebstrap)
SUMMARY=()
CLEANUP=()
cleanup() { ((${#CLEANUP[@]})) && rm -rf "${CLEANUP[@]}"; return 0; }
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
host() { ${HOST[@]+"${HOST[@]}"} "$@"; }

[[ $(id -u) -eq 0 ]] || die "must run as root (a root shell: Debian ships no sudo by default)"
((NODE)) || [[ -r /etc/debian_version ]] || info "warning: not Debian; only Debian 12 is tested"

# ------------------------------------------------------------------ 1. apt packages
install_packages() {
  step "Debian packages"
  local missing=() p wanted=("${APT_PACKAGES[@]}")
  [[ $MODE == test ]] && wanted+=("${TEST_APT_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    info "all present: ${wanted[*]}"
    SUMMARY+=("apt: nothing to install")
    return
  fi
  info "missing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  info "apt-get update"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  info "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" \
    </dev/null >/dev/null
  SUMMARY+=("apt: installed ${missing[*]}")
}

# ------------------------------------------------------------------ 2. venv + package
venv_ok() {
  [[ -x $PREFIX/bin/python && -r $PREFIX/pyvenv.cfg ]] || return 1
  # must be Debian's interpreter (not pyenv/another python on PATH), still present
  grep -Eq '^home = /usr/bin$' "$PREFIX/pyvenv.cfg" || return 1
  "$PREFIX/bin/python" -c 'import sys, venv' >/dev/null 2>&1
}

install_venv() {
  step "Python venv at $PREFIX (with $SYS_PYTHON)"
  [[ -x $SYS_PYTHON ]] || die "$SYS_PYTHON missing (python3 from Debian)"
  if venv_ok; then
    info "exists: $($PREFIX/bin/python --version 2>&1), refreshing"
    "$SYS_PYTHON" -m venv --upgrade "$PREFIX"
  else
    if [[ -e $PREFIX ]]; then
      info "not a venv of $SYS_PYTHON: recreating"
      rm -rf "$PREFIX"
    fi
    "$SYS_PYTHON" -m venv "$PREFIX"
    info "created: $($PREFIX/bin/python --version 2>&1)"
  fi

  local extra="" pipq=(-q --disable-pip-version-check)
  [[ $MODE == test ]] && extra="[dev]"
  if ((EDITABLE)); then
    step "pip install -e $SRC_DIR$extra"
    "$PREFIX/bin/pip" install "${pipq[@]}" -e "$SRC_DIR$extra"
  else
    # Build from a clean copy so the checkout gets no build/ or *.egg-info litter.
    local build
    build="$(mktemp -d /tmp/shim-lxcfs-build.XXXXXX)"
    CLEANUP+=("$build")
    tar -C "$SRC_DIR" --exclude=.git --exclude='__pycache__' --exclude='*.egg-info' \
      --exclude=build --exclude=.venv --exclude=.pytest_cache -cf - . | tar -C "$build" -xf -
    step "pip install $SRC_DIR$extra (non-editable)"
    "$PREFIX/bin/pip" install "${pipq[@]}" "$build$extra"
  fi
  # pip's console script runs `site` (15-25 ms per start/delete): replace it by our launcher
  "$PREFIX/bin/python" -I -m shim.entry.launcher "$PREFIX/bin/$SHIM"
  info "launcher: $PREFIX/bin/$SHIM (python -S, explicit sys.path)"
  stop_zygotes
  local v
  v="$("$PREFIX/bin/pip" show containerd-shim-lxcfs 2>/dev/null | sed -n 's/^Version: //p')"
  SUMMARY+=("venv: $PREFIX (python $("$PREFIX/bin/python" -c 'import platform; print(platform.python_version())'), containerd-shim-lxcfs $v${extra:+ + dev extra})")
}

# ------------------------------------------------------------------ 3. shim on PATH
install_symlink() {
  step "$BINDIR/$SHIM"
  local target="$PREFIX/bin/$SHIM"
  [[ -x $target ]] || die "$target missing after pip install"
  mkdir -p "$BINDIR"
  if [[ $(readlink "$BINDIR/$SHIM" 2>/dev/null || true) == "$target" ]]; then
    info "already -> $target"
  else
    ln -sfn "$target" "$BINDIR/$SHIM"
    info "linked -> $target"
  fi
  SUMMARY+=("shim: $BINDIR/$SHIM -> $target")
}

# ------------------------------------------------------------------ 4. containerd config
CONFIG_CHANGED=0

configure_containerd() {
  step "containerd configuration ($CONF_DIR)"
  local cfg="$CONF_DIR/config.toml" dropin="$CONF_DIR/conf.d/lxcfs.toml"
  local glob="$CONF_DIR/conf.d/*.toml" backup="" dropin_backup="" created_cfg=0
  mkdir -p "$CONF_DIR/conf.d"

  rollback() {
    if [[ -n $dropin_backup ]]; then mv -f "$dropin_backup" "$dropin"; else rm -f "$dropin"; fi
    info "rolled back $dropin"
    if [[ -n $backup ]]; then mv -f "$backup" "$cfg"; info "rolled back $cfg"; fi
    if ((created_cfg)); then rm -f "$cfg"; info "removed created $cfg"; fi
    return 0
  }

  # 1. the main config imports conf.d/*.toml (created, or one top-level line added)
  if [[ ! -e $cfg ]]; then
    # containerd 2.x reads version 2 too, but migrates it on every start: write its own
    local version=2
    [[ $("${CONTAINERD_CMD[@]}" --version 2>/dev/null) =~ [[:space:]]v?([0-9]+)\. ]] &&
      ((BASH_REMATCH[1] >= 2)) && version=3
    printf 'version = %s\nimports = ["%s"]\n' "$version" "$glob" >"$cfg"
    created_cfg=1
    CONFIG_CHANGED=1
    info "created minimal $cfg (version $version, imports $glob)"
  else
    local action
    action="$("$SYS_PYTHON" - "$cfg" "$glob" <<'PY'
import re, sys, tomllib
path, glob = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
try:
    data = tomllib.loads(text)
except tomllib.TOMLDecodeError as e:
    print(f"invalid {e}"); sys.exit(0)
imports = data.get("imports")
if imports is not None:
    print("present" if glob in imports else "other")
    sys.exit(0)
# insert a top-level imports line before the first table header, after `version = ...`
lines = text.splitlines(keepends=True)
new = f'imports = ["{glob}"]\n'
first_table = next((i for i, l in enumerate(lines) if re.match(r"\s*\[", l)), len(lines))
at = next((i + 1 for i, l in enumerate(lines[:first_table]) if re.match(r"\s*version\s*=", l)),
          None)
if at is None:
    at = first_table
    # skip leading comments so the note stays on top
    while at > 0 and not lines[at - 1].strip():
        at -= 1
lines.insert(at, new)
out = "".join(lines)
tomllib.loads(out)  # still valid TOML
open(path + ".new", "w", encoding="utf-8").write(out)
print("added")
PY
)"
    case "$action" in
      present) info "$cfg already imports $glob" ;;
      other)
        info "warning: $cfg has its own 'imports' without $glob; left unchanged."
        info "         add \"$glob\" to it for the CRI handler 'lxcfs' (ctr/nerdctl work anyway)"
        ;;
      added)
        backup="$cfg.bak.$(date +%Y%m%d%H%M%S)"
        cp -p "$cfg" "$backup"
        mv -f "$cfg.new" "$cfg"
        CONFIG_CHANGED=1
        info "added imports = [\"$glob\"] to $cfg (backup: $backup)"
        ;;
      invalid*) die "$cfg is not valid TOML (${action#invalid }); fix it first" ;;
      *) die "could not inspect $cfg" ;;
    esac
  fi

  # 2. the node's effective config *without* our drop-in: what the drop-in must preserve
  if [[ -f $dropin ]]; then
    dropin_backup="$(mktemp /tmp/lxcfs.toml.XXXXXX)"
    mv -f "$dropin" "$dropin_backup"
  fi
  local work before after rc=0
  work="$(mktemp -d /tmp/shim-lxcfs-config.XXXXXX)"
  CLEANUP+=("$work")
  before="$work/before.toml" after="$work/after.toml"
  "${CONTAINERD_CMD[@]}" --config "$cfg" config dump >"$before" 2>"$work/err" || rc=$?
  if ((rc != 0)); then
    tail -5 "$work/err" >&2
    rollback
    die "containerd cannot read $cfg as it is (${CONTAINERD_CMD[*]} --config $cfg config dump)"
  fi

  # 3. the drop-in: the node's CRI section + handler "lxcfs" (see deploy/containerd_dropin.py)
  if ! "$SYS_PYTHON" "$SRC_DIR/deploy/containerd_dropin.py" --dump "$before" \
      --runtime "$RUNTIME" >"$work/dropin.toml" 2>"$work/err"; then
    cat "$work/err" >&2
    rollback
    die "could not generate $dropin"
  fi
  if [[ -n $dropin_backup ]] && cmp -s "$work/dropin.toml" "$dropin_backup"; then
    info "$dropin up to date"
  else
    CONFIG_CHANGED=1
    info "wrote $dropin"
  fi
  cp "$work/dropin.toml" "$dropin.tmp.$$" && mv -f "$dropin.tmp.$$" "$dropin"
  chmod 0644 "$dropin"

  # 4. validate: containerd reads it, the handler is there, nothing else changed
  rc=0
  "${CONTAINERD_CMD[@]}" --config "$cfg" config dump >"$after" 2>"$work/err" || rc=$?
  local verdict=""
  if ((rc == 0)); then
    verdict="$("$SYS_PYTHON" - "$before" "$after" "$RUNTIME" <<'PY'
import sys, tomllib
before, after = (tomllib.load(open(p, "rb")) for p in sys.argv[1:3])
runtime = sys.argv[3]
def cri(d):
    # 2.x: the runtimes live in cri.v1.runtime (grpc.v1.cri is only the streaming server)
    plugins = d.get("plugins", {})
    return plugins.get("io.containerd.cri.v1.runtime") or plugins.get("io.containerd.grpc.v1.cri")
a, b = cri(after), cri(before)
if a is None:
    print("no CRI section in the result"); sys.exit(0)
handler = a.get("containerd", {}).get("runtimes", {}).pop("lxcfs", None)
if not handler or handler.get("runtime_type") != runtime:
    print(f"runtimes.lxcfs.runtime_type is not {runtime}"); sys.exit(0)
if "io.containerd.lxcfs.*" not in handler.get("pod_annotations", []):
    print("pod_annotations lacks io.containerd.lxcfs.*"); sys.exit(0)
if b is not None:
    b.get("containerd", {}).get("runtimes", {}).pop("lxcfs", None)
    if a != b:
        print("the drop-in changed other CRI settings"); sys.exit(0)
print("ok")
PY
)"
  fi
  if ((rc != 0)) || [[ $verdict != ok ]]; then
    tail -5 "$work/err" >&2
    rollback
    die "containerd rejected the configuration (${verdict:-config dump failed}); nothing changed"
  fi
  [[ -n $dropin_backup ]] && rm -f "$dropin_backup"
  info "validated: containerd config dump shows runtimes.lxcfs (runtime_type = \"$RUNTIME\"),"
  info "pod_annotations io.containerd.lxcfs.*, and the node's other CRI settings unchanged"
  SUMMARY+=("containerd: $dropin imported by $cfg ($( ((CONFIG_CHANGED)) && echo changed || echo unchanged))")
}

system_containerd_running() {
  host test -S /run/containerd/containerd.sock &&
    timeout 5 ${HOST[@]+"${HOST[@]}"} ctr --address /run/containerd/containerd.sock version \
      >/dev/null 2>&1
}

maybe_restart_containerd() {
  if ! system_containerd_running; then
    SUMMARY+=("system containerd: not running (nothing to restart; it reads the config when started)")
    return
  fi
  if ((!RESTART)); then
    if ((CONFIG_CHANGED)); then
      info "system containerd is running: restart it to load the CRI handler 'lxcfs'"
      info "(ctr --runtime $RUNTIME works without a restart); or: $0 --restart-containerd"
      SUMMARY+=("system containerd: running, NOT restarted (config changed; use --restart-containerd)")
    else
      SUMMARY+=("system containerd: running, not restarted")
    fi
    return
  fi
  step "restarting containerd"
  if host test -d /run/systemd/system && host sh -c 'command -v systemctl' >/dev/null; then
    host systemctl restart containerd
  elif host test -x /etc/init.d/containerd; then
    host /etc/init.d/containerd restart
  else
    die "containerd runs but is not managed by systemd or an init script: restart it yourself"
  fi
  local i
  for i in $(seq 1 30); do system_containerd_running && break; sleep 1; done
  system_containerd_running || die "containerd did not come back after restart"
  SUMMARY+=("system containerd: restarted")
}

# ------------------------------------------------------------------ test peers (--test)
# The test matrix's real peers (containerd 1.7 and 2.x with their runc shims, crictl, critest,
# grpcurl) are built with Go from pinned release tags into a shared cache by tests/peer_builds.py;
# what is present is skipped. Without Go the affected tests FAIL with a message (never pass).
install_test_peers() {
  step "test peers (tests/peer_builds.py: pinned releases built with Go into /var/cache/containerd-shim-lxcfs)"
  local rc=0 t0=$SECONDS
  PATH="$PATH:/usr/local/go/bin" "$SYS_PYTHON" "$SRC_DIR/tests/peer_builds.py" install || rc=$?
  if ((rc == 0)); then
    SUMMARY+=("test peers: present ($((SECONDS - t0))s; tests/peer_builds.py status lists them)")
  else
    info "warning: some peers are missing; the tests that need them will fail and say so"
    SUMMARY+=("test peers: INCOMPLETE (see above; the matrix tests needing them fail)")
  fi
}

# ------------------------------------------------------------------ 5. node check
# What the node has and needs (shim/entry/check.py), logged; a FAIL is reported, not fatal here: the
# operator (or the DaemonSet's log reader) fixes the node and runs `$SHIM check` again.
node_check() {
  step "node check: $SHIM check"
  local out rc=0
  out="$(host env CONTAINERD="${CONTAINERD:-containerd}" "$PREFIX/bin/$SHIM" check 2>&1)" || rc=$?
  printf '%s\n' "$out" | sed 's/^/    /'
  local line
  line="node check: $(printf '%s\n' "$out" | sed -n 's/^summary: //p')"
  ((rc == 0)) || line+=" (exit $rc)"
  SUMMARY+=("$line")
}

# ------------------------------------------------------------------ node mode (DaemonSet)
install_payload() {
  step "bundle $PAYLOAD -> $PREFIX"
  [[ -x $PAYLOAD/bin/$SHIM ]] || die "$PAYLOAD/bin/$SHIM missing: --node runs in the installer image"
  local new="$PREFIX.new.$$" old="$PREFIX.old.$$"
  rm -rf "$new"
  mkdir -p "$(dirname "$PREFIX")"
  cp -a "$PAYLOAD" "$new"
  # swap in one rename each, so running shims keep their (old, still open) files
  if [[ -e $PREFIX ]]; then mv "$PREFIX" "$old"; fi
  mv "$new" "$PREFIX"
  rm -rf "$old"
  host "$PREFIX/bin/$SHIM" -v >/dev/null 2>&1 ||
    die "$PREFIX/bin/$SHIM -v does not run on this node (see deploy/README.md: requirements)"
  SUMMARY+=("bundle: $PREFIX ($(du -sh "$PREFIX" | cut -f1))")
}

# ------------------------------------------------------------------ uninstall
lxcfs_shims_running() {
  local f line
  for f in /proc/[0-9]*/cmdline; do
    line="$(tr '\0' ' ' <"$f" 2>/dev/null)" || continue
    # the fork server (zygote) serves no pod: it does not count
    [[ $line == *"$SHIM"* && $line != *" -zygote "* ]] && return 0
  done
  return 1
}

# The fork server holds the old code's image: stop it when the code changes or goes away (it is
# in no container's path; the next `start` launches a new one).
# Only this $PREFIX's zygotes: another installation (a second PREFIX) keeps its own.
stop_zygotes() {
  if pkill -TERM -f -- "$PREFIX/bin/$SHIM -zygote " 2>/dev/null; then
    local i
    for ((i = 0; i < 50; i++)); do # they exit at once: wait so nothing counts them as running
      pgrep -f -- "$PREFIX/bin/$SHIM -zygote " >/dev/null || break
      sleep 0.1
    done
    info "stopped the idle fork server(s) of this installation"
  fi
  # a zygote removes its socket when it stops; one killed outright (SIGKILL, OOM) leaves it:
  # remove the sockets nobody listens on
  local s
  for s in /run/containerd-shim-lxcfs/zygote-*.sock; do
    [[ -S $s ]] || continue
    "$SYS_PYTHON" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError:
    sys.exit(1)' "$s" 2>/dev/null || rm -f "$s"
  done
}

# What a test run must not leave behind: shims of this prefix, their FUSE views, state dirs.
report_leftovers() {
  local f line shims=0 views=0 dirs=0
  for f in /proc/[0-9]*/cmdline; do
    line="$(tr '\0' ' ' <"$f" 2>/dev/null)" || continue
    [[ $line == *"$PREFIX/bin/$SHIM "* ]] && shims=$((shims + 1))
  done
  views="$(grep -c ' fuse\.shim-lxcfs ' /proc/self/mountinfo || true)"
  if [[ -d /run/containerd-shim-lxcfs ]]; then
    dirs="$(find /run/containerd-shim-lxcfs -mindepth 1 -maxdepth 1 -type d | wc -l)"
  fi
  SUMMARY+=("left after the tests: $shims shim process(es) of $PREFIX, $views view mount(s), $dirs state dir(s)")
}

uninstall() {
  step "uninstall"
  if lxcfs_shims_running; then
    if ((FORCE)); then
      info "warning: $SHIM processes are running; their pods can no longer be cleaned up"
    else
      die "$SHIM processes are running (pods with runtimeClassName: lxcfs); delete those pods first, or pass --force"
    fi
  fi
  local cfg="$CONF_DIR/config.toml" dropin="$CONF_DIR/conf.d/lxcfs.toml"
  if [[ -f $dropin ]]; then
    rm -f "$dropin"
    CONFIG_CHANGED=1
    SUMMARY+=("removed $dropin")
  fi
  if [[ -f $cfg ]] && ! "${CONTAINERD_CMD[@]}" --config "$cfg" config dump >/dev/null 2>&1; then
    info "warning: containerd cannot read $cfg after removing the drop-in; check it"
  fi
  if [[ -L $BINDIR/$SHIM && $(readlink "$BINDIR/$SHIM") == "$PREFIX/"* ]]; then
    rm -f "$BINDIR/$SHIM"
    SUMMARY+=("removed $BINDIR/$SHIM")
  fi
  stop_zygotes
  if [[ -d $PREFIX ]]; then
    rm -rf "$PREFIX"
    SUMMARY+=("removed $PREFIX")
  fi
  SUMMARY+=("kept: the imports line in $cfg (matches nothing harmful) and apt packages")
}

# ------------------------------------------------------------------ cgroup v2 guest (--test)
# The suites' cgroup v2 part runs in a QEMU guest (tests/test_guest_cgroup_v2.py): build its
# image now (Debian packages + wheels, cached by a hash of the recipe under
# /var/cache/containerd-shim-lxcfs/guest/), so the test run only boots it. Not inside the guest.
prepare_cgroup_v2_guest() {
  [[ $MODE == test && -z ${CONTAINERD_SHIM_LXCFS_IN_GUEST:-} ]] || return 0
  step "cgroup v2 test guest (tests/guest/build_image.sh)"
  local t=$SECONDS dir
  if dir="$(bash "$SRC_DIR/tests/guest/build_image.sh")"; then
    info "image: $dir ($((SECONDS - t)) s)"
    SUMMARY+=("cgroup v2 guest image: $dir ($((SECONDS - t)) s)")
  else
    info "warning: building the guest image failed; tests/test_guest_cgroup_v2.py will fail"
    SUMMARY+=("cgroup v2 guest image: build FAILED")
  fi
}

print_summary() {
  printf '\n==== summary (%s%s) ====\n' "$MODE" "$( ((NODE)) && echo ', node' )"
  local s
  for s in "${SUMMARY[@]}"; do printf '  - %s\n' "$s"; done
}

case "$MODE" in
  config)
    configure_containerd
    maybe_restart_containerd
    print_summary
    exit 0
    ;;
  uninstall)
    uninstall
    maybe_restart_containerd
    print_summary
    exit 0
    ;;
esac

if ((NODE)); then
  install_payload
else
  install_packages
  install_venv
fi
install_symlink
configure_containerd
maybe_restart_containerd
node_check
prepare_cgroup_v2_guest

case "$MODE" in
  install)
    print_summary
    ((NODE)) || printf '  next: %s --demo   |   %s --test\n' "$0" "$0"
    ;;
  demo)
    step "main job: $PREFIX/bin/python -m shim.entry.demo ${EXTRA_ARGS[*]:-}"
    rc=0
    "$PREFIX/bin/python" -m shim.entry.demo "${EXTRA_ARGS[@]}" || rc=$?
    SUMMARY+=("demo: exit $rc")
    print_summary
    exit "$rc"
    ;;
  test)
    install_test_peers
    step "Kubernetes peers for tests/test_k8s_node.py" && bash "$SRC_DIR/tests/peers/k8s/build.sh"
    step "tests: $PREFIX/bin/python -m pytest ${EXTRA_ARGS[*]:-} (in $SRC_DIR)"
    rc=0
    (cd "$SRC_DIR" && "$PREFIX/bin/python" -m pytest "${EXTRA_ARGS[@]}") || rc=$?
    # the suite's last shims forked from this prefix's zygote; it would idle out in 300 s
    stop_zygotes
    report_leftovers
    if ((rc == 5)); then
      SUMMARY+=("tests: pytest collected no tests (exit 5) -> failure")
      rc=1
    else
      SUMMARY+=("tests: pytest exit $rc")
    fi
    print_summary
    exit "$rc"
    ;;
esac

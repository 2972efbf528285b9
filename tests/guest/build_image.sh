#!/usr/bin/env bash
# Build (or find cached) the Debian 12 cgroup v2 test guest: kernel, initrd and an ext4 root
# image with containerd, runc, fuse3, lxcfs, busybox and a venv holding the shim's dependencies.
# Everything comes from Debian packages (mmdebstrap) and PyPI wheels installed in the chroot on
# the host, so the guest itself needs no network. Cached under
#   $GUEST_CACHE/<hash>/{vmlinuz,initrd.img,root.img,ok}
# where <hash> covers this recipe, the guest's init, pyproject.toml and the containerd 2.x peer
# binaries copied in. Prints the cache directory on stdout (last line). Run as root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)"
GUEST_CACHE="${GUEST_CACHE:-/var/cache/containerd-shim-lxcfs/guest}"
# containerd 2.x binaries (built by tests/peer_builds.py; optional): copied in at the same path
PEER2="${GUEST_CONTAINERD2:-/var/cache/containerd-shim-lxcfs/peers/containerd-v2.4.2/bin}"
MIRROR="${GUEST_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${GUEST_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES=(linux-image-cloud-amd64 initramfs-tools kmod containerd runc fuse3 libfuse3-dev
  pkg-config gcc python3-venv python3-dev busybox-static lxcfs ca-certificates)
VENV=/opt/containerd-shim-lxcfs
WHEELS=/var/lib/shim-wheels

log() { printf 'guest-image: %s\n' "$*" >&2; }

sha() { sha256sum | cut -c1-16; }
# Three cached stages, each keyed by what it is made from, so changing the init script does not
# download Debian again: the Debian root (package list + mirrors), the wheels (pyproject.toml),
# the image (both + this script + init.sh + the containerd 2.x binaries).
DEBS_HASH="$(printf '%s\n' "${PACKAGES[@]}" "$MIRROR" "$SECURITY" "$(sed -n '/^ *mmdebstrap/,/bookworm-security/p' "$HERE/build_image.sh")" | sha)"
WHEELS_HASH="$(cat "$SRC/pyproject.toml" | sha)"
HASH="$({
  echo "$DEBS_HASH $WHEELS_HASH"
  cat "$HERE/build_image.sh" "$HERE/init.sh"
  if [[ -x $PEER2/containerd ]]; then sha256sum "$PEER2"/{containerd,ctr,containerd-shim-runc-v2}; fi
} | sha)"
OUT="$GUEST_CACHE/$HASH"
DEBS="$GUEST_CACHE/debian-$DEBS_HASH.tar"
WHEELHOUSE="$GUEST_CACHE/wheels-$WHEELS_HASH"
if [[ -f $OUT/ok ]]; then
  log "cached: $OUT"
  echo "$OUT"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { log "must run as root"; exit 1; }
for tool in mmdebstrap mkfs.ext4; do
  command -v "$tool" >/dev/null || { log "$tool missing (install.sh --test installs it)"; exit 1; }
done

mkdir -p "$GUEST_CACHE"
WORK="$(mktemp -d "$GUEST_CACHE/build.XXXXXX")"
ROOT="$WORK/root"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
start=$SECONDS

if [[ ! -f $DEBS ]]; then
  log "mmdebstrap bookworm -> $DEBS"
  # initramfs: only what mounting a virtio disk needs (smaller, faster to unpack under TCG)
  mmdebstrap --variant=apt --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d" && printf "MODULES=list\nCOMPRESS=gzip\n" >"$1/etc/initramfs-tools/conf.d/guest.conf" && printf "virtio_pci\nvirtio_blk\next4\n" >"$1/usr/share/initramfs-tools/modules.d/guest"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$WORK/debian.tar" \
  "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
  "deb $SECURITY bookworm-security main" >&2
  mv "$WORK/debian.tar" "$DEBS"
fi

if [[ ! -d $WHEELHOUSE ]]; then
  # Built on the host (its pip reaches the index; the chroot's CA store may not), with the same
  # Debian Python 3.11 as the guest's, so compiled wheels (pyfuse3) fit.
  log "wheels for pyproject.toml's dependencies -> $WHEELHOUSE"
  /usr/bin/python3 - "$SRC/pyproject.toml" >"$WORK/reqs.txt" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(p["project"]["dependencies"] + p["project"]["optional-dependencies"]["dev"]
                + p["build-system"]["requires"] + ["wheel"]))
PY
  /usr/bin/python3 -m venv "$WORK/pip"
  "$WORK/pip/bin/pip" wheel -q --disable-pip-version-check -w "$WORK/wheels" -r "$WORK/reqs.txt" >&2
  mv "$WORK/wheels" "$WHEELHOUSE"
fi

log "root: $DEBS + venv $VENV (wheels from $WHEELHOUSE, offline)"
mkdir -p "$ROOT"
tar -C "$ROOT" --numeric-owner --xattrs -xpf "$DEBS"
mkdir -p "$ROOT$WHEELS"
cp "$WHEELHOUSE"/*.whl "$ROOT$WHEELS/"
/usr/bin/python3 - "$SRC/pyproject.toml" >"$ROOT/tmp/deps.txt" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(p["project"]["dependencies"] + p["project"]["optional-dependencies"]["dev"]
                + p["build-system"]["requires"]))
PY
mount -t proc proc "$ROOT/proc"
chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh -euc "
  /usr/bin/python3 -m venv $VENV
  $VENV/bin/pip install -q --disable-pip-version-check --no-index --find-links $WHEELS -r /tmp/deps.txt
  rm -rf /root/.cache /tmp/deps.txt
" >&2 || { umount "$ROOT/proc"; exit 1; }
umount "$ROOT/proc"

if [[ -x $PEER2/containerd ]]; then
  # the same path as on the host: tests/harness.py's matrix finds the release there
  log "containerd 2.x from $PEER2 -> the same path in the guest"
  mkdir -p "$ROOT$PEER2"
  cp "$PEER2"/{containerd,ctr,containerd-shim-runc-v2} "$ROOT$PEER2/"
fi

install -m 0755 "$HERE/init.sh" "$ROOT/sbin/guest-init"
printf 'guest\n' >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost guest\n::1 localhost\n' >"$ROOT/etc/hosts"
: >"$ROOT/etc/resolv.conf"
# The guest's pip never reaches an index: the venv has the dependencies and the build backend.
# Build isolation off ("= 0" is how pip spells that): under TCG a throw-away build venv costs
# a minute of install.sh.
printf '[global]\nno-index = true\nfind-links = %s\ndisable-pip-version-check = true\nno-build-isolation = 0\n' \
  "$WHEELS" >"$ROOT/etc/pip.conf"
rm -rf "$ROOT/var/cache/apt/archives"/*.deb "$ROOT/var/lib/apt/lists"/*

mkdir -p "$WORK/out"
cp "$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -1)" "$WORK/out/vmlinuz"
cp "$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -1)" "$WORK/out/initrd.img"
size_mb=$(( $(du -sm "$ROOT" | cut -f1) + 1024 ))
log "ext4 image (${size_mb} MiB) from the rootfs"
mkfs.ext4 -q -F -L guestroot -E root_owner=0:0 -d "$ROOT" "$WORK/out/root.img" "${size_mb}M"
touch "$WORK/out/ok"
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
# keep only this recipe's image and stages (each image is ~2 GB)
for old in "$GUEST_CACHE"/*; do
  case "$old" in
    "$OUT" | "$DEBS" | "$WHEELHOUSE" | "$GUEST_CACHE/last-run" | "$WORK") ;;
    *) rm -rf "$old" ;;
  esac
done
log "built $OUT in $((SECONDS - start)) s (cold = with the Debian and wheel stages)"
echo "$OUT"

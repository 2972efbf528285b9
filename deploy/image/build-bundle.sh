#!/bin/sh
# Build the node bundle: Debian 12's python3.11, its stdlib, this package with its
# dependencies, and the shared libraries they load (ld.so included), under one directory
# that works when copied to /opt/containerd-shim-lxcfs on a node whatever its distribution.
# Run in the image's builder stage (deploy/image/Containerfile):
#     build-bundle.sh <source dir> <output dir, default /payload/containerd-shim-lxcfs>
set -eu
SRC=${1:?source dir}
OUT=${2:-/payload/containerd-shim-lxcfs}
PREFIX=/opt/containerd-shim-lxcfs   # where install.sh --node puts it on the node
PY=/usr/bin/python3.11
LDSO=$(readlink -f /lib64/ld-linux-x86-64.so.2 2>/dev/null || readlink -f /lib/ld-linux-aarch64.so.1)

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
cp -L "$PY" "$OUT/bin/python3.11"
cp -a /usr/lib/python3.11 "$OUT/lib/python3.11"
rm -rf "$OUT/lib/python3.11/test" "$OUT/lib/python3.11/idlelib" "$OUT/lib/python3.11/tkinter" \
  "$OUT/lib/python3.11/ensurepip" "$OUT/lib/python3.11/dist-packages"
# Debian's site.py looks in lib/python3.11/dist-packages (not site-packages)
"$PY" -m pip install --no-cache-dir --disable-pip-version-check -q \
  --target "$OUT/lib/python3.11/dist-packages" "$SRC"

# shared libraries of the interpreter and of every extension module (pyfuse3 -> libfuse3)
find "$OUT/bin/python3.11" "$OUT/lib" -name '*.so*' -o -name python3.11 -type f |
  xargs ldd 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  while read -r lib; do cp -L "$lib" "$OUT/lib/"; done
cp -L "$LDSO" "$OUT/lib/ld.so"

# the interpreter runs through the bundled ld.so and libraries, never the node's
cat >"$OUT/bin/python3" <<WRAP
#!/bin/sh
exec $PREFIX/lib/ld.so --library-path $PREFIX/lib $PREFIX/bin/python3.11 "\$@"
WRAP
# containerd runs containerd-shim-lxcfs-v2 (the name the shim re-executes itself by)
cat >"$OUT/bin/containerd-shim-lxcfs-v2" <<SHIM
#!$PREFIX/bin/python3
from shim.entry.cli import run
run()
SHIM
chmod 0755 "$OUT/bin/python3" "$OUT/bin/containerd-shim-lxcfs-v2"
"$PY" -m compileall -q "$OUT/lib/python3.11/dist-packages" >/dev/null || true
du -sh "$OUT"

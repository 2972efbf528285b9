#!/usr/bin/env bash
# Build kubelet, kube-apiserver, kubectl and etcd for the one-node cluster test
# from the wrapper module next to this script, into the shared peer cache:
#   /var/cache/containerd-shim-lxcfs/peers/kubernetes-<version>/bin
# Rebuilds only when go.mod/go.sum change (their hash is stored next to bin/).
# Runs at nice 19: the build is long and the machine is shared.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${LXCFS_PEER_CACHE:-/var/cache/containerd-shim-lxcfs}
version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
[ -n "$version" ] || { echo "build.sh: no k8s.io/kubernetes version in $here/go.mod" >&2; exit 1; }
dest="$cache/peers/kubernetes-$version"
key=$(cat "$here/go.mod" "$here/go.sum" "$here"/cmd/*/main.go | sha256sum | cut -c1-16)
names=(kubelet kube-apiserver kubectl etcd)

built() {
    [ "$(cat "$dest/.build-key" 2>/dev/null)" = "$key" ] || return 1
    for n in "${names[@]}"; do [ -x "$dest/bin/$n" ] || return 1; done
}

mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
if built; then
    echo "kubernetes $version peers up to date in $dest/bin (key $key)"
    exit 0
fi
command -v go >/dev/null || export PATH=/usr/local/go/bin:$PATH
export GOPATH="$cache/go/path" GOCACHE="$cache/go/build" GOMODCACHE="$cache/go/mod"
export GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0
minor=${version#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor
 -X k8s.io/client-go/pkg/version.gitVersion=$version
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
tmp=$(mktemp -d "$dest/.bin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
cd "$here"
for n in "${names[@]}"; do
    echo "building $n ($version) ..."
    nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$tmp/$n" "./cmd/$n"
done
rm -rf "$dest/bin"
mv "$tmp" "$dest/bin"
chmod 755 "$dest/bin"
echo "$key" >"$dest/.build-key"
echo "kubernetes $version peers built in $(( $(date +%s) - start ))s into $dest/bin"

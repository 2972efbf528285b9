"""Build OCI image archives from a local directory, for `ctr images import` (no registry here).

The CRI test needs a pause image and a container image in containerd's `k8s.io` namespace, and
no registry is reachable. This writes an OCI image layout as one tar (the format `ctr images
import` and `docker load` read): `oci-layout`, `index.json` and `blobs/sha256/<digest>` for one
uncompressed layer, the image config and the manifest. The index entry carries
`io.containerd.image.name`, so containerd imports it under exactly that name.

Stdlib only; the output is deterministic (sorted entries, zero mtimes, root ownership), so the
same rootfs always gives the same image id.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_GOARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def goarch() -> str:
    """The OCI/Go name of this machine's architecture (what containerd matches platforms on)."""
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


@dataclass(frozen=True)
class ImageInfo:
    """What was written: the import name and digests (config digest = CRI image id)."""

    name: str
    archive: Path
    manifest_digest: str
    config_digest: str
    layer_digest: str


def _tarinfo_for(path: Path, arcname: str) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    info.mode = st.st_mode & 0o7777
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if path.is_symlink():
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif path.is_dir():
        info.type = tarfile.DIRTYPE
    elif path.is_file():
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    else:
        raise ValueError(f"{path}: only files, directories and symlinks go into a layer")
    return info


def layer_tar(rootfs: Path) -> bytes:
    """An uncompressed layer of everything under `rootfs` (paths relative, sorted)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = sorted(p for p in rootfs.rglob("*"))
        for path in entries:
            info = _tarinfo_for(path, path.relative_to(rootfs).as_posix())
            if info.type == tarfile.REGTYPE:
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ImageBlobs:
    """One image's content-addressed parts, as a registry serves them."""

    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    layer: bytes
    layer_digest: str

    def blobs(self) -> dict[str, bytes]:
        return {self.config_digest: self.config, self.layer_digest: self.layer}


def image_blobs(
    rootfs: str | os.PathLike | None = None,
    *,
    layer: bytes | None = None,
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = (),
    env: Sequence[str] = (DEFAULT_PATH,),
    user: str = "",
) -> ImageBlobs:
    """Layer (of `rootfs`, or a prebuilt `layer`), config and manifest of one image."""
    if layer is None:
        assert rootfs is not None
        layer = layer_tar(Path(rootfs))
    layer_digest = _digest(layer)
    config = _json(
        {
            "architecture": goarch(),
            "os": "linux",
            "config": {
                "Entrypoint": list(entrypoint) or None,
                "Cmd": list(cmd) or None,
                "Env": list(env),
                "WorkingDir": "/",
                **({"User": user} if user else {}),
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": "tests/cri_images.py", "created": "1970-01-01T00:00:00Z"}],
            "created": "1970-01-01T00:00:00Z",
        }
    )
    config_digest = _digest(config)
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    )
    return ImageBlobs(manifest, _digest(manifest), config, config_digest, layer, layer_digest)


def build_image(
    rootfs: str | os.PathLike,
    name: str,
    dest: str | os.PathLike,
    *,
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = (),
    env: Sequence[str] = (DEFAULT_PATH,),
) -> ImageInfo:
    """Write an OCI image archive of `rootfs` to `dest`, to be imported as `name`."""
    image = image_blobs(rootfs, entrypoint=entrypoint, cmd=cmd, env=env)
    manifest, manifest_digest = image.manifest, image.manifest_digest
    layer, layer_digest = image.layer, image.layer_digest
    config, config_digest = image.config, image.config_digest
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "platform": {"architecture": goarch(), "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
    )
    files = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        **{
            f"blobs/sha256/{d.split(':', 1)[1]}": data
            for d, data in (
                (layer_digest, layer),
                (config_digest, config),
                (manifest_digest, manifest),
            )
        },
    }
    out = Path(dest)
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirname in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(dirname)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for arcname, data in files.items():
            info = tarfile.TarInfo(arcname)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return ImageInfo(name, out, manifest_digest, config_digest, layer_digest)

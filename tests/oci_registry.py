"""A read-only OCI distribution registry on 127.0.0.1, serving locally built images (critest).

critest pulls every image it uses through CRI PullImage, and containerd's PullImage always asks
a registry (an imported image of the same name does not satisfy it). No registry is reachable
here, so containerd's registry hosts config sends every registry host to this one: the pull
path (resolve, manifest, config and layer blobs) is containerd's real one, only the bytes are
ours.

Serves `GET/HEAD /v2/`, `/v2/<name>/manifests/<tag or digest>` and `/v2/<name>/blobs/<digest>`.
`images` maps a repository name (without the registry host) to `{tag: ImageBlobs}`; a name not
listed gets `default(name)` for any tag, so critest's many `busybox`-like names all resolve. Stdlib
only, one thread per request (containerd fetches blobs in parallel).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cri_images import MEDIA_MANIFEST, ImageBlobs


class Registry:
    def __init__(
        self,
        images: dict[str, dict[str, ImageBlobs]],
        default: Callable[[str], ImageBlobs] | None = None,
    ) -> None:
        self.images = images
        self.default = default
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self._lock = threading.Lock()
        for image in (i for tags in images.values() for i in tags.values()):
            self._add(image)
        self.requests: list[str] = []

    def _add(self, image: ImageBlobs) -> ImageBlobs:
        self.blobs.update(image.blobs())
        self.manifests[image.manifest_digest] = image.manifest
        return image

    def manifest(self, name: str, ref: str) -> bytes | None:
        """A listed image, else `default(name)`: one image per repository (all its tags),
        so different names are different images and tags of one name are the same."""
        if ref.startswith("sha256:"):
            return self.manifests.get(ref)
        with self._lock:
            tags = self.images.get(name)
            if tags is None and self.default is not None:
                tags = self.images[name] = {"*": self._add(self.default(name))}
        if not tags:
            return None
        image = tags.get(ref) or tags.get("*")
        return image.manifest if image else None


def _handler(registry: Registry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            registry.requests.append(f"{self.command} {self.path}")

        def _send(
            self, code: int, body: bytes, ctype: str = "application/json", digest: str = ""
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, code: int, err: str) -> None:
            self._send(code, json.dumps({"errors": [{"code": err, "message": err}]}).encode())

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/v2", "/v2/"):
                return self._send(200, b"{}")
            if not path.startswith("/v2/"):
                return self._error(404, "NAME_UNKNOWN")
            name, sep, rest = path[4:].rpartition("/manifests/")
            if sep:
                body = registry.manifest(name, rest)
                if body is None:
                    return self._error(404, "MANIFEST_UNKNOWN")
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
                return self._send(200, body, MEDIA_MANIFEST, digest)
            name, sep, digest = path[4:].rpartition("/blobs/")
            if sep and digest in registry.blobs:
                return self._send(200, registry.blobs[digest], "application/octet-stream", digest)
            return self._error(404, "BLOB_UNKNOWN")

        do_HEAD = do_GET

    return Handler


@contextlib.contextmanager
def serve(registry: Registry) -> Iterator[str]:
    """Run the registry on 127.0.0.1:<free port>; yields `host:port`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="oci-registry", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def hosts_toml(registry_dir, name: str, server: str) -> None:
    """containerd `config_path` layout: registry `name` (a host, or `_default` for all) is
    served by `server` over plain HTTP."""
    d = registry_dir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(
        f'server = "http://{server}"\n\n[host."http://{server}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )

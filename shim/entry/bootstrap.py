"""What containerd writes on `start`'s stdin, and the answer containerd 2.3+ reads back.

containerd 2.3+ (docs/runtime-v2.md, "Bootstrap protocol") writes a `BootstrapParams`
protobuf (protos/src/containerd/runtime/bootstrap/v1/bootstrap.proto): the instance id,
namespace, log level, its own version and addresses, an optional socket directory, and the
runtime options as an `Extension{Any}`. It reads a `BootstrapResult` protobuf back and only
falls back (deprecated) to the plain address or JSON older shims print.

containerd 1.6 to 2.2 write the runtime options Any itself (or nothing). The two are told
apart as containerd's own pkg/shim does: the bytes parse as BootstrapParams *and* name the
`-id` and `-namespace` of the command line (an options Any read as BootstrapParams would
carry its type URL as the id). Anything else that is not an options Any is garbage, and
`start` refuses it with one line rather than guess. Sans-I/O and stdlib only.
"""

from __future__ import annotations

from shim import options, wire

#: sizeof(sockaddr_un.sun_path) on Linux, NUL included.
_SUN_PATH = 108
#: BootstrapParams.log_level at or below this is debug (containerd's LOG_LEVEL_DEBUG = -4).
LOG_LEVEL_DEBUG = -4

# BootstrapParams: field number -> (name, wire type)
_PARAMS = {
    1: ("instance_id", 2),
    2: ("namespace", 2),
    3: ("log_level", 0),
    4: ("containerd_version", 2),
    5: ("containerd_ttrpc_address", 2),
    6: ("containerd_grpc_address", 2),
    7: ("containerd_binary", 2),
    8: ("extensions", 2),
    9: ("socket_dir", 2),
}


class StartInputError(ValueError):
    """stdin is unusable: `start` prints this as its one line on stderr and exits 1."""


class StartInput:
    """What containerd told `start`: the decoded options and, on 2.3+, who it is."""

    __slots__ = (
        "bootstrap",
        "containerd_version",
        "debug",
        "ignored",
        "options",
        "socket_dir",
        "ttrpc_address",
    )

    def __init__(self) -> None:
        #: containerd spoke the bootstrap protocol (2.3+): answer with BootstrapResult
        self.bootstrap = False
        self.containerd_version = ""
        self.debug = False
        self.ttrpc_address = ""
        self.socket_dir = ""
        #: the runtime options, decoded by shim/options.py
        self.options: dict[str, object] = {}
        #: type URLs of bootstrap extensions this shim does not know (forward compatible)
        self.ignored: list[str] = []


def _signed(value: int) -> int:
    """int32/int64 varints arrive as 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _params(raw: bytes) -> dict[str, object]:
    """BootstrapParams as a dict; ValueError if the bytes are not one."""
    out: dict[str, object] = {"extensions": []}
    for number, kind, value in wire.typed_fields(raw):
        known = _PARAMS.get(number)
        if known is None:
            continue  # a newer containerd's field: proto3 skips it
        name, want = known
        if kind != want:
            raise ValueError(f"BootstrapParams.{name} has wire type {kind}")
        if name == "extensions":
            out["extensions"].append(value)  # type: ignore[union-attr]
        elif name == "log_level":
            out[name] = _signed(value)  # type: ignore[arg-type]
        else:
            out[name] = value.decode()  # type: ignore[union-attr]
    return out


def _extension_any(extension: bytes) -> tuple[str, bytes]:
    """Extension{google.protobuf.Any value = 1} -> (type_url, value)."""
    for number, kind, value in wire.typed_fields(extension):
        if number == 1 and kind == 2:
            return wire.unpack_any(value)  # type: ignore[arg-type]
    return "", b""


def parse(raw: bytes, cli_id: str, cli_namespace: str) -> StartInput:
    """Decode start's stdin (BootstrapParams, an options Any, or nothing)."""
    got = StartInput()
    if not raw:
        return got
    try:
        params = _params(raw)
        problem = ""
    except (ValueError, UnicodeDecodeError) as e:
        params, problem = {}, str(e)
    if params.get("instance_id") == cli_id and params.get("namespace") == cli_namespace:
        return _from_params(got, params)
    if params.get("instance_id") == cli_id:
        raise StartInputError(
            f"BootstrapParams for {cli_id} name namespace {params.get('namespace', '')!r}, "
            f"but -namespace is {cli_namespace!r}"
        )
    try:
        type_url, value = wire.unpack_any(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise StartInputError(
            "stdin is neither containerd's BootstrapParams nor a runtime "
            f"options Any ({problem or e})"
        ) from None
    if not type_url:
        raise StartInputError(
            "stdin is neither containerd's BootstrapParams for "
            f"{cli_id} nor a runtime options Any (no type URL)"
        )
    try:
        got.options = options.decode_any(type_url, value)
    except options.OptionsError as e:
        raise StartInputError(str(e)) from None
    return got


def _from_params(got: StartInput, params: dict[str, object]) -> StartInput:
    got.bootstrap = True
    got.containerd_version = str(params.get("containerd_version", ""))
    got.debug = int(params.get("log_level", 0)) <= LOG_LEVEL_DEBUG  # type: ignore[arg-type]
    got.ttrpc_address = str(params.get("containerd_ttrpc_address", ""))
    got.socket_dir = str(params.get("socket_dir", ""))
    if got.socket_dir and not got.socket_dir.startswith("/"):
        raise StartInputError(f"BootstrapParams.socket_dir {got.socket_dir!r} is not absolute")
    if len(got.socket_dir.encode()) + 1 + 64 >= _SUN_PATH:  # <dir>/<sha256 hex>
        raise StartInputError(
            f"BootstrapParams.socket_dir {got.socket_dir!r} is too long for "
            f"a unix socket path ({_SUN_PATH - 66} bytes at most)"
        )
    seen = ""
    for extension in params["extensions"]:  # type: ignore[attr-defined]
        try:
            type_url, value = _extension_any(extension)
        except (ValueError, UnicodeDecodeError) as e:
            raise StartInputError(f"BootstrapParams extension: {e}") from None
        if type_url.rsplit("/", 1)[-1] not in options.TYPES:
            got.ignored.append(type_url)
            continue
        if seen:
            raise StartInputError(
                f"BootstrapParams carry two runtime options ({seen} and "
                f"{type_url}): which one to honour is not defined"
            )
        seen = type_url
        try:
            got.options = options.decode_any(type_url, value)
        except options.OptionsError as e:
            raise StartInputError(str(e)) from None
    return got


def _int_field(number: int, value: int) -> bytes:
    return wire.varint_field(number, value)


def result(version: int, address: str, protocol: str) -> bytes:
    """BootstrapResult{version, address, protocol}: what `start` prints for containerd 2.3+."""
    return (
        _int_field(1, version)
        + wire.bytes_field(2, address.encode())
        + wire.bytes_field(3, protocol.encode())
    )

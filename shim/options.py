"""Runtime options in every shape containerd sends them, decoded once, refused loudly.

containerd hands the runtime options (an Any) to `start` and again to Create:

* `containerd.runc.v1.Options`: the 2.x client for every runtime, 1.6/1.7 for runtimes named
  `io.containerd.runc*`;
* `containerd.linux.runc.CreateOptions` (legacy): the 1.6/1.7 client's `WithNoPivotRoot`,
  `WithShimCgroup`, `WithUIDOwner`/`WithGIDOwner` (ctr `--no-pivot`, `--uidmap`) for any
  other runtime name, such as ours;
* `runtimeoptions.v1.Options`: CRI for a runtime with an `options` table and ctr's
  `--runtime-config-path`: a TOML table, inline (`config_body`, containerd 2.x) or in the
  file `config_path` names, with the runc Options keys (`BinaryName`, `SystemdCgroup`, ...)
  plus our `task_api`.

All three become one flat dict of runc-Options names. Whatever we cannot honour (an unknown
type, field or key, a value of the wrong type, `criu_path`) raises OptionsError naming it:
an option is never silently dropped. Stdlib only: `start` and `-info` import this.
"""

from __future__ import annotations

from shim import wire

RUNC = "containerd.runc.v1.Options"
LEGACY = "containerd.linux.runc.CreateOptions"
RUNTIME = "runtimeoptions.v1.Options"
TYPES = (RUNC, LEGACY, RUNTIME)

#: What a decoded options dict may hold, with the zero values (as Go leaves them out).
DEFAULTS: dict[str, object] = {
    "binary_name": "",
    "root": "",
    "systemd_cgroup": False,
    "no_pivot_root": False,
    "no_new_keyring": False,
    "shim_cgroup": "",
    "io_uid": 0,
    "io_gid": 0,
    "criu_image_path": "",
    "criu_work_path": "",
    #: ours: the task API `start` offers (shim/entry/config.py), TOML only
    "task_api": "",
    #: legacy CreateOptions' restore flags, as `runc restore` arguments
    "restore_flags": (),
}

# field number -> (name, kind); kind: str, bool, u32, strs (repeated string)
_RUNC_FIELDS = {
    1: ("no_pivot_root", "bool"),
    2: ("no_new_keyring", "bool"),
    3: ("shim_cgroup", "str"),
    4: ("io_uid", "u32"),
    5: ("io_gid", "u32"),
    6: ("binary_name", "str"),
    7: ("root", "str"),
    8: ("criu_path", "str"),
    9: ("systemd_cgroup", "bool"),
    10: ("criu_image_path", "str"),
    11: ("criu_work_path", "str"),
    12: ("task_api_address", "str"),
    13: ("task_api_version", "u32"),
}
_LEGACY_FIELDS = {
    1: ("no_pivot_root", "bool"),
    2: ("open_tcp", "bool"),
    3: ("external_unix_sockets", "bool"),
    4: ("terminal", "bool"),
    5: ("file_locks", "bool"),
    6: ("empty_namespaces", "strs"),
    7: ("cgroups_mode", "str"),
    8: ("no_new_keyring", "bool"),
    9: ("shim_cgroup", "str"),
    10: ("io_uid", "u32"),
    11: ("io_gid", "u32"),
    12: ("criu_work_path", "str"),
    13: ("criu_image_path", "str"),
}
_RUNTIMEOPTIONS_FIELDS = {
    1: ("type_url", "str"),
    2: ("config_path", "str"),
    3: ("config_body", "bytes"),
}
#: legacy CreateOptions fields that only shape `runc restore` (containerd's v1 shim)
_RESTORE_FLAGS = {
    "open_tcp": "--tcp-established",
    "external_unix_sockets": "--ext-unix-sk",
    "terminal": "--shell-job",
    "file_locks": "--file-locks",
}
#: runc Options fields containerd itself consumes (a task API address it dials instead of
#: running `start`): they reach us only as an echo, so they are accepted and not acted on
_CONTAINERD_ONLY = ("task_api_address", "task_api_version")


class OptionsError(ValueError):
    """Options we cannot honour: `start` exits 1 with this line, Create answers InvalidArgument."""


def _short(type_url: str) -> str:
    return type_url.rsplit("/", 1)[-1]


def _message(value: bytes, schema: dict[int, tuple[str, str]], name: str) -> dict[str, object]:
    """Decode a flat proto3 message strictly: unknown fields and wrong wire types are errors."""
    out: dict[str, object] = {}
    try:
        for number, kind, field in wire.typed_fields(value):
            known = schema.get(number)
            if known is None:
                raise OptionsError(f"{name}: field {number} is not known to this shim")
            key, want = known
            if want in ("str", "strs", "bytes"):
                if kind != 2:
                    raise OptionsError(f"{name}.{key}: wrong wire type {kind}")
                if want == "bytes":
                    out[key] = field
                elif want == "strs":
                    out.setdefault(key, []).append(field.decode())  # type: ignore[union-attr]
                else:
                    out[key] = field.decode()  # type: ignore[union-attr]
            else:
                if kind != 0:
                    raise OptionsError(f"{name}.{key}: wrong wire type {kind}")
                if want == "u32" and field >= 1 << 32:  # type: ignore[operator]
                    raise OptionsError(f"{name}.{key}: {field} does not fit uint32")
                out[key] = bool(field) if want == "bool" else field
    except UnicodeDecodeError as e:
        raise OptionsError(f"{name}: a string field is not UTF-8 ({e.reason})") from None
    except ValueError as e:
        if isinstance(e, OptionsError):
            raise
        raise OptionsError(f"{name}: {e}") from None
    return out


def _from_runc(fields: dict[str, object]) -> dict[str, object]:
    if fields.pop("criu_path", ""):
        raise OptionsError(
            f"{RUNC}.criu_path is not supported: runc ignores --criu, put criu on PATH instead"
        )
    for key in _CONTAINERD_ONLY:
        fields.pop(key, None)
    return fields


def _from_legacy(fields: dict[str, object]) -> dict[str, object]:
    flags: list[str] = []
    for key, flag in _RESTORE_FLAGS.items():
        if fields.pop(key, False):
            flags.append(flag)
    for ns in fields.pop("empty_namespaces", []):  # type: ignore[union-attr]
        flags += ["--empty-ns", ns]
    if mode := fields.pop("cgroups_mode", ""):
        flags += ["--manage-cgroups-mode", mode]  # type: ignore[list-item]
    if flags:
        fields["restore_flags"] = tuple(flags)
    return fields


#: TOML keys (lower case, no underscores) -> options name; runc's Go field names and ours
_TOML_KEYS = {k.replace("_", ""): k for k in DEFAULTS if k != "restore_flags"}
#: keys of the runtimeoptions table itself (containerd 2.x puts the whole table in the body)
_TOML_META = ("configpath", "typeurl")


def _toml_table(body: bytes, source: str) -> dict[str, object]:
    import tomllib  # only TOML runtime options need it: ~8 ms off every other `start`

    try:
        return tomllib.loads(body.decode())
    except UnicodeDecodeError as e:
        raise OptionsError(f"{source}: not UTF-8 ({e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        raise OptionsError(f"{source}: {e}") from None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise OptionsError(f"{RUNTIME} config_path {path}: {e.strerror or e}") from None


def _from_runtimeoptions(fields: dict[str, object]) -> dict[str, object]:
    path = str(fields.get("config_path", ""))
    body = fields.get("config_body", b"")
    table: dict[str, object] = {}
    source = f"{RUNTIME} config_body"
    if body:
        table = _toml_table(body, source)  # type: ignore[arg-type]
        inner = {k.replace("_", "").lower(): v for k, v in table.items()}.get("configpath")
        if isinstance(inner, str) and inner and not path:
            path = inner
    if path:
        from_file = _toml_table(_read(path), f"{RUNTIME} config_path {path}")
        table = {**from_file, **table}  # the inline table wins over the file it names
        if not body:
            source = f"{RUNTIME} config_path {path}"
    out: dict[str, object] = {}
    for key, value in table.items():
        norm = key.replace("_", "").lower()
        if norm in _TOML_META:
            continue
        if norm == "criupath":
            if value:
                raise OptionsError(
                    f"{source}: {key} is not supported: runc ignores --criu, "
                    "put criu on PATH instead"
                )
            continue
        name = _TOML_KEYS.get(norm)
        if name is None:
            raise OptionsError(f"{source}: unknown option {key!r}")
        default = DEFAULTS[name]
        if type(value) is not type(default):
            raise OptionsError(
                f"{source}: {key} must be a {type(default).__name__}, not {type(value).__name__}"
            )
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < 1 << 32:
            raise OptionsError(f"{source}: {key} = {value} is out of range")
        out[name] = value
    return out


def decode(raw: bytes) -> dict[str, object]:
    """The options in an encoded Any (empty bytes: none). Raises OptionsError."""
    if not raw:
        return {}
    try:
        type_url, value = wire.unpack_any(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise OptionsError(f"runtime options are not a protobuf Any: {e}") from None
    return decode_any(type_url, value)


def decode_any(type_url: str, value: bytes) -> dict[str, object]:
    """The options of one Any, by its type (a `<host>/` prefix is tolerated)."""
    if not type_url:
        if value:
            raise OptionsError("runtime options carry a value but no type")
        return {}
    name = _short(type_url)
    if name == RUNC:
        return _from_runc(_message(value, _RUNC_FIELDS, RUNC))
    if name == LEGACY:
        return _from_legacy(_message(value, _LEGACY_FIELDS, LEGACY))
    if name == RUNTIME:
        return _from_runtimeoptions(_message(value, _RUNTIMEOPTIONS_FIELDS, RUNTIME))
    raise OptionsError(
        f"runtime options of type {type_url!r} are not supported "
        f"(expected one of {', '.join(TYPES)})"
    )

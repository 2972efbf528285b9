"""Small protobuf helpers shared by the shim service and the transports.

* ``GO_ZERO_TIME``: Go's zero ``time.Time`` (0001-01-01T00:00:00Z). The Go shim
  sends it as ``exited_at`` for processes that have not exited; betterproto
  encodes it as ``Timestamp{seconds: -62135596800, nanos: 0}``.
* ``pack_any`` / ``unpack_any``: ``google.protobuf.Any`` with containerd's
  type URL convention, the *bare* proto full name (``containerd.events.TaskExit``,
  no ``type.googleapis.com/`` prefix; containerd 1.6 looks the name up verbatim).

betterproto classes do not know their proto full name (and their Python names
are re-cased: ``TaskOOM`` -> ``TaskOom``, ``CPUStat`` -> ``CpuStat``), so the
names are kept in the explicit tables below.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType

import betterproto
from betterproto.lib.google.protobuf import Any

from protos.gen.containerd import events
from protos.gen.containerd import types as ctypes
from protos.gen.containerd.linux import runc as legacy_runc
from protos.gen.containerd.runc import v1 as runc_opts
from protos.gen.io.containerd.cgroups import v1 as cgroups_v1
from protos.gen.io.containerd.cgroups import v2 as cgroups_v2
from protos.gen.runtimeoptions import v1 as runtimeoptions

__all__ = [
    "GO_ZERO_TIME",
    "RECEIVED_OPTIONS",
    "TYPE_NAMES",
    "pack_any",
    "type_name",
    "unpack_any",
]

# Go's time.Time{} as a timezone-aware datetime (betterproto rejects naive ones).
GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)

# Messages the shim packs into an Any -> their proto full name (= type_url).
TYPE_NAMES: Mapping[type[betterproto.Message], str] = MappingProxyType(
    {
        # /tasks/* events (containerd.events)
        events.TaskCreate: "containerd.events.TaskCreate",
        events.TaskStart: "containerd.events.TaskStart",
        events.TaskDelete: "containerd.events.TaskDelete",
        events.TaskIo: "containerd.events.TaskIO",
        events.TaskExit: "containerd.events.TaskExit",
        events.TaskOom: "containerd.events.TaskOOM",
        events.TaskExecAdded: "containerd.events.TaskExecAdded",
        events.TaskExecStarted: "containerd.events.TaskExecStarted",
        events.TaskPaused: "containerd.events.TaskPaused",
        events.TaskResumed: "containerd.events.TaskResumed",
        events.TaskCheckpointed: "containerd.events.TaskCheckpointed",
        # Pids: ProcessInfo.info
        runc_opts.ProcessDetails: "containerd.runc.v1.ProcessDetails",
        # runc options (echoed back in RuntimeInfo.options, tests)
        runc_opts.Options: "containerd.runc.v1.Options",
        runc_opts.CheckpointOptions: "containerd.runc.v1.CheckpointOptions",
        runtimeoptions.Options: "runtimeoptions.v1.Options",
        legacy_runc.CreateOptions: "containerd.linux.runc.CreateOptions",
        # Stats
        cgroups_v1.Metrics: "io.containerd.cgroups.v1.Metrics",
        cgroups_v2.Metrics: "io.containerd.cgroups.v2.Metrics",
        # -info
        ctypes.RuntimeInfo: "containerd.types.RuntimeInfo",
    }
)

# Runtime option types the shim accepts (CreateTaskRequest.options, `start`/-info stdin).
RECEIVED_OPTIONS: Mapping[str, type[betterproto.Message]] = MappingProxyType(
    {
        "containerd.runc.v1.Options": runc_opts.Options,
        "runtimeoptions.v1.Options": runtimeoptions.Options,
        "containerd.linux.runc.CreateOptions": legacy_runc.CreateOptions,
    }
)


def type_name(msg: betterproto.Message | type[betterproto.Message]) -> str:
    """Proto full name of a registered message (instance or class); KeyError if unknown."""
    cls = msg if isinstance(msg, type) else type(msg)
    try:
        return TYPE_NAMES[cls]
    except KeyError:
        raise KeyError(
            f"no proto type name registered for {cls.__module__}.{cls.__qualname__}"
        ) from None


def pack_any(msg: betterproto.Message) -> Any:
    """Wrap ``msg`` in an Any whose type_url is the bare proto full name."""
    return Any(type_url=type_name(msg), value=bytes(msg))


def unpack_any(
    value: Any | None,
    registry: Mapping[str, type[betterproto.Message]] = RECEIVED_OPTIONS,
) -> betterproto.Message | None:
    """Decode an Any using ``registry`` (proto full name -> class).

    Returns None when ``value`` is None or carries no type_url (absent options).
    A ``<host>/`` URL prefix (``type.googleapis.com/...``) is tolerated. Raises
    KeyError for a type that is not in the registry.
    """
    if value is None or not value.type_url:
        return None
    name = value.type_url.rsplit("/", 1)[-1]
    try:
        cls = registry[name]
    except KeyError:
        raise KeyError(f"unsupported Any type {value.type_url!r}") from None
    return cls().parse(value.value)

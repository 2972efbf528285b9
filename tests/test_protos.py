"""Generated protobuf modules: freshness, wire layout (field numbers) and protoutil."""

from __future__ import annotations

import inspect
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import betterproto
import pytest
from betterproto.lib.google.protobuf import Any, Empty, Timestamp

from protos.gen.containerd import events
from protos.gen.containerd.runc import v1 as runc_opts
from protos.gen.containerd.services.events.ttrpc import v1 as events_svc
from protos.gen.containerd.task import v2 as task_v2
from protos.gen.containerd.task import v3 as task_v3
from protos.gen.containerd.types import Mount, RuntimeInfo, RuntimeVersion
from protos.gen.containerd.v1 import types as v1types
from protos.gen.google.rpc import Status
from protos.gen.io.containerd.cgroups import v1 as cgroups_v1
from protos.gen.io.containerd.cgroups import v2 as cgroups_v2
from protos.gen.runtimeoptions import v1 as runtimeoptions
from protos.gen.ttrpc import KeyValue, Request, Response
from shim.transport import protoutil
from shim.transport.protoutil import GO_ZERO_TIME, pack_any, type_name, unpack_any

REPO_ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------
# hand-rolled protobuf encoder (only what the tests need)
# ---------------------------------------------------------------------------


def varint(n: int) -> bytes:
    if n < 0:  # int64 negative values: 10-byte two's complement
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def f_varint(field: int, n: int) -> bytes:
    return key(field, 0) + varint(n)


def f_bytes(field: int, data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return key(field, 2) + varint(len(data)) + data


def f_double(field: int, x: float) -> bytes:
    return key(field, 1) + struct.pack("<d", x)


def timestamp(seconds: int, nanos: int = 0) -> bytes:
    return (f_varint(1, seconds) if seconds else b"") + (f_varint(2, nanos) if nanos else b"")


def any_bytes(type_url: str, value: bytes) -> bytes:
    return f_bytes(1, type_url) + (f_bytes(2, value) if value else b"")


T_2024 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T_2024_SECONDS = 1714979289
T_2024_NANOS = 123456000

# ---------------------------------------------------------------------------
# (a) protos/gen must match protos/src
# ---------------------------------------------------------------------------


def test_generated_code_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, "-m", "protos.generate", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        "protos/gen is stale or generation failed "
        f"(run `python -m protos.generate`):\n{proc.stdout}{proc.stderr}"
    )


def test_generate_help():
    proc = subprocess.run(
        [sys.executable, "-m", "protos.generate", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "--check" in proc.stdout


def test_check_detects_stale_tree(tmp_path, monkeypatch):
    from protos import generate

    stale = tmp_path / "gen"
    stale.mkdir()
    (stale / "__init__.py").write_text("")
    (stale / "bogus.py").write_text("x = 1\n")
    monkeypatch.setattr(generate, "GEN_DIR", stale)
    assert generate.check() == 1


# ---------------------------------------------------------------------------
# (b) wire layout: betterproto output == bytes built from the tag numbers
# ---------------------------------------------------------------------------


def runc_options_msg() -> runc_opts.Options:
    return runc_opts.Options(
        no_pivot_root=True,
        no_new_keyring=True,
        shim_cgroup="/shim",
        io_uid=1000,
        io_gid=1001,
        binary_name="runc",
        root="/run/containerd/runc",
        criu_path="/usr/sbin/criu",
        systemd_cgroup=True,
        criu_image_path="/img",
        criu_work_path="/work",
        task_api_address="ttrpc+unix:///x.sock",
        task_api_version=3,
    )


RUNC_OPTIONS_WIRE = (
    f_varint(1, 1)
    + f_varint(2, 1)
    + f_bytes(3, "/shim")
    + f_varint(4, 1000)
    + f_varint(5, 1001)
    + f_bytes(6, "runc")
    + f_bytes(7, "/run/containerd/runc")
    + f_bytes(8, "/usr/sbin/criu")
    + f_varint(9, 1)
    + f_bytes(10, "/img")
    + f_bytes(11, "/work")
    + f_bytes(12, "ttrpc+unix:///x.sock")
    + f_varint(13, 3)
)


def test_runc_options_wire():
    assert bytes(runc_options_msg()) == RUNC_OPTIONS_WIRE
    parsed = runc_opts.Options().parse(RUNC_OPTIONS_WIRE)
    assert parsed.binary_name == "runc"
    assert parsed.systemd_cgroup is True
    assert parsed.task_api_version == 3


def test_runc_checkpoint_options_and_process_details_wire():
    msg = runc_opts.CheckpointOptions(
        exit=True,
        open_tcp=True,
        external_unix_sockets=True,
        terminal=True,
        file_locks=True,
        empty_namespaces=["network", "ipc"],
        cgroups_mode="soft",
        image_path="/i",
        work_path="/w",
    )
    want = (
        f_varint(1, 1)
        + f_varint(2, 1)
        + f_varint(3, 1)
        + f_varint(4, 1)
        + f_varint(5, 1)
        + f_bytes(6, "network")
        + f_bytes(6, "ipc")
        + f_bytes(7, "soft")
        + f_bytes(8, "/i")
        + f_bytes(9, "/w")
    )
    assert bytes(msg) == want
    assert bytes(runc_opts.ProcessDetails(exec_id="e1")) == f_bytes(1, "e1")


def test_runtimeoptions_wire():
    msg = runtimeoptions.Options(
        type_url="io.containerd.lxcfs.v1.Config", config_path="/etc/x.toml", config_body=b"a=1"
    )
    want = (
        f_bytes(1, "io.containerd.lxcfs.v1.Config") + f_bytes(2, "/etc/x.toml") + f_bytes(3, b"a=1")
    )
    assert bytes(msg) == want


MOUNT_WIRE = (
    f_bytes(1, "overlay")
    + f_bytes(2, "overlay")
    + f_bytes(3, "/t")
    + f_bytes(4, "lowerdir=/l")
    + f_bytes(4, "upperdir=/u")
)


def mount_msg() -> Mount:
    return Mount(
        type="overlay", source="overlay", target="/t", options=["lowerdir=/l", "upperdir=/u"]
    )


@pytest.mark.parametrize("task_api", [task_v2, task_v3], ids=["v2", "v3"])
def test_create_task_request_wire(task_api):
    opts = bytes(runc_options_msg())
    msg = task_api.CreateTaskRequest(
        id="c1",
        bundle="/run/b/c1",
        rootfs=[mount_msg()],
        terminal=True,
        stdin="/fifo/in",
        stdout="/fifo/out",
        stderr="/fifo/err",
        checkpoint="/ck",
        parent_checkpoint="/pck",
        options=Any(type_url="containerd.runc.v1.Options", value=opts),
    )
    want = (
        f_bytes(1, "c1")
        + f_bytes(2, "/run/b/c1")
        + f_bytes(3, MOUNT_WIRE)
        + f_varint(4, 1)
        + f_bytes(5, "/fifo/in")
        + f_bytes(6, "/fifo/out")
        + f_bytes(7, "/fifo/err")
        + f_bytes(8, "/ck")
        + f_bytes(9, "/pck")
        + f_bytes(10, any_bytes("containerd.runc.v1.Options", opts))
    )
    assert bytes(msg) == want

    parsed = task_api.CreateTaskRequest().parse(want)
    assert parsed.rootfs[0].options == ["lowerdir=/l", "upperdir=/u"]
    decoded = unpack_any(parsed.options)
    assert isinstance(decoded, runc_opts.Options)
    assert decoded.root == "/run/containerd/runc"


@pytest.mark.parametrize("task_api", [task_v2, task_v3], ids=["v2", "v3"])
def test_state_response_wire(task_api):
    msg = task_api.StateResponse(
        id="c1",
        bundle="/b",
        pid=4242,
        status=v1types.Status.RUNNING,
        stdin="/i",
        stdout="/o",
        stderr="/e",
        terminal=True,
        exit_status=0,
        exited_at=GO_ZERO_TIME,
        exec_id="x",
    )
    want = (
        f_bytes(1, "c1")
        + f_bytes(2, "/b")
        + f_varint(3, 4242)
        + f_varint(4, 2)
        + f_bytes(5, "/i")
        + f_bytes(6, "/o")
        + f_bytes(7, "/e")
        + f_varint(8, 1)
        + f_bytes(10, timestamp(-62135596800))
        + f_bytes(11, "x")
    )
    assert bytes(msg) == want


def test_status_enum_values():
    assert [(s.name, int(s)) for s in v1types.Status] == [
        ("UNKNOWN", 0),
        ("CREATED", 1),
        ("RUNNING", 2),
        ("STOPPED", 3),
        ("PAUSED", 4),
        ("PAUSING", 5),
    ]


def test_small_task_messages_wire():
    ts = timestamp(T_2024_SECONDS, T_2024_NANOS)
    cases = [
        (task_v2.CreateTaskResponse(pid=7), f_varint(1, 7)),
        (task_v2.StartRequest(id="a", exec_id="b"), f_bytes(1, "a") + f_bytes(2, "b")),
        (
            task_v2.DeleteResponse(pid=7, exit_status=137, exited_at=T_2024),
            f_varint(1, 7) + f_varint(2, 137) + f_bytes(3, ts),
        ),
        (
            task_v2.WaitResponse(exit_status=143, exited_at=T_2024),
            f_varint(1, 143) + f_bytes(2, ts),
        ),
        (
            task_v2.KillRequest(id="a", exec_id="b", signal=9, all=True),
            f_bytes(1, "a") + f_bytes(2, "b") + f_varint(3, 9) + f_varint(4, 1),
        ),
        (
            task_v2.ExecProcessRequest(
                id="a",
                exec_id="e",
                terminal=True,
                stdin="i",
                stdout="o",
                stderr="r",
                spec=Any(type_url="types.containerd.io/x", value=b"{}"),
            ),
            f_bytes(1, "a")
            + f_bytes(2, "e")
            + f_varint(3, 1)
            + f_bytes(4, "i")
            + f_bytes(5, "o")
            + f_bytes(6, "r")
            + f_bytes(7, any_bytes("types.containerd.io/x", b"{}")),
        ),
        (
            task_v2.ResizePtyRequest(id="a", exec_id="e", width=80, height=24),
            f_bytes(1, "a") + f_bytes(2, "e") + f_varint(3, 80) + f_varint(4, 24),
        ),
        (
            task_v2.CloseIoRequest(id="a", exec_id="e", stdin=True),
            f_bytes(1, "a") + f_bytes(2, "e") + f_varint(3, 1),
        ),
        (
            task_v2.UpdateTaskRequest(
                id="a", resources=Any(type_url="r", value=b"{}"), annotations={"k": "v"}
            ),
            f_bytes(1, "a")
            + f_bytes(2, any_bytes("r", b"{}"))
            + f_bytes(3, f_bytes(1, "k") + f_bytes(2, "v")),
        ),
        (
            task_v2.CheckpointTaskRequest(id="a", path="/p", options=Any(type_url="t", value=b"")),
            f_bytes(1, "a") + f_bytes(2, "/p") + f_bytes(3, any_bytes("t", b"")),
        ),
        (
            task_v2.PidsResponse(
                processes=[
                    v1types.ProcessInfo(pid=5),
                    v1types.ProcessInfo(
                        pid=6, info=pack_any(runc_opts.ProcessDetails(exec_id="e"))
                    ),
                ]
            ),
            f_bytes(1, f_varint(1, 5))
            + f_bytes(
                1,
                f_varint(1, 6)
                + f_bytes(2, any_bytes("containerd.runc.v1.ProcessDetails", f_bytes(1, "e"))),
            ),
        ),
        (
            task_v2.StatsResponse(
                stats=Any(type_url="io.containerd.cgroups.v2.Metrics", value=b"")
            ),
            f_bytes(1, any_bytes("io.containerd.cgroups.v2.Metrics", b"")),
        ),
        (
            task_v2.ConnectResponse(shim_pid=10, task_pid=11, version="v"),
            f_varint(1, 10) + f_varint(2, 11) + f_bytes(3, "v"),
        ),
        (task_v2.ShutdownRequest(id="a", now=True), f_bytes(1, "a") + f_varint(2, 1)),
        (task_v2.PauseRequest(id="a"), f_bytes(1, "a")),
        (task_v2.ResumeRequest(id="a"), f_bytes(1, "a")),
        (task_v2.ExecProcessResponse(), b""),
        (Empty(), b""),
    ]
    for msg, want in cases:
        assert bytes(msg) == want, type(msg).__name__


@pytest.mark.parametrize("task_api", [task_v2, task_v3], ids=["v2", "v3"])
def test_task_service_has_all_rpcs(task_api):
    source = inspect.getsource(task_api)
    service = task_api.__name__.removeprefix("protos.gen.") + ".Task"
    rpcs = [
        "State", "Create", "Start", "Delete", "Pids", "Pause", "Resume", "Checkpoint", "Kill",
        "Exec", "ResizePty", "CloseIO", "Update", "Wait", "Stats", "Connect", "Shutdown",
    ]  # fmt: skip
    for rpc in rpcs:
        assert f'"/{service}/{rpc}"' in source, rpc
    assert source.count(f'"/{service}/') == 2 * len(rpcs)  # stub + server mapping


def test_task_exit_wire():
    msg = events.TaskExit(container_id="c1", id="e1", pid=99, exit_status=137, exited_at=T_2024)
    want = (
        f_bytes(1, "c1")
        + f_bytes(2, "e1")
        + f_varint(3, 99)
        + f_varint(4, 137)
        + f_bytes(5, timestamp(T_2024_SECONDS, T_2024_NANOS))
    )
    assert bytes(msg) == want
    assert events.TaskExit().parse(want).exited_at == T_2024


def test_other_events_wire():
    io = events.TaskIo(stdin="i", stdout="o", stderr="e", terminal=True)
    io_wire = f_bytes(1, "i") + f_bytes(2, "o") + f_bytes(3, "e") + f_varint(4, 1)
    cases = [
        (
            events.TaskCreate(
                container_id="c", bundle="/b", rootfs=[mount_msg()], io=io, checkpoint="k", pid=3
            ),
            f_bytes(1, "c")
            + f_bytes(2, "/b")
            + f_bytes(3, MOUNT_WIRE)
            + f_bytes(4, io_wire)
            + f_bytes(5, "k")
            + f_varint(6, 3),
        ),
        (events.TaskStart(container_id="c", pid=3), f_bytes(1, "c") + f_varint(2, 3)),
        (
            events.TaskDelete(container_id="c", pid=3, exit_status=1, exited_at=T_2024, id="x"),
            f_bytes(1, "c")
            + f_varint(2, 3)
            + f_varint(3, 1)
            + f_bytes(4, timestamp(T_2024_SECONDS, T_2024_NANOS))
            + f_bytes(5, "x"),
        ),
        (events.TaskOom(container_id="c"), f_bytes(1, "c")),
        (events.TaskExecAdded(container_id="c", exec_id="e"), f_bytes(1, "c") + f_bytes(2, "e")),
        (
            events.TaskExecStarted(container_id="c", exec_id="e", pid=4),
            f_bytes(1, "c") + f_bytes(2, "e") + f_varint(3, 4),
        ),
        (events.TaskPaused(container_id="c"), f_bytes(1, "c")),
        (events.TaskResumed(container_id="c"), f_bytes(1, "c")),
        (
            events.TaskCheckpointed(container_id="c", checkpoint="k"),
            f_bytes(1, "c") + f_bytes(2, "k"),
        ),
    ]
    for msg, want in cases:
        assert bytes(msg) == want, type(msg).__name__


def test_forward_request_envelope_wire():
    exit_msg = events.TaskExit(container_id="c1", id="c1", pid=5, exit_status=0, exited_at=T_2024)
    env = events_svc.Envelope(
        timestamp=T_2024, namespace="k8s.io", topic="/tasks/exit", event=pack_any(exit_msg)
    )
    env_wire = (
        f_bytes(1, timestamp(T_2024_SECONDS, T_2024_NANOS))
        + f_bytes(2, "k8s.io")
        + f_bytes(3, "/tasks/exit")
        + f_bytes(4, any_bytes("containerd.events.TaskExit", bytes(exit_msg)))
    )
    assert bytes(env) == env_wire
    assert bytes(events_svc.ForwardRequest(envelope=env)) == f_bytes(1, env_wire)


def test_ttrpc_request_response_wire():
    req = Request(
        service="containerd.task.v2.Task",
        method="Create",
        payload=b"\x0a\x02c1",
        timeout_nano=5_000_000_000,
        metadata=[KeyValue(key="containerd-namespace-ttrpc", value="default")],
    )
    req_wire = (
        f_bytes(1, "containerd.task.v2.Task")
        + f_bytes(2, "Create")
        + f_bytes(3, b"\x0a\x02c1")
        + f_varint(4, 5_000_000_000)
        + f_bytes(5, f_bytes(1, "containerd-namespace-ttrpc") + f_bytes(2, "default"))
    )
    assert bytes(req) == req_wire
    parsed = Request().parse(req_wire)
    assert parsed.metadata[0].value == "default"
    assert parsed.timeout_nano == 5_000_000_000

    detail = Any(type_url="x.Y", value=b"\x08\x01")
    resp = Response(
        status=Status(code=5, message="container not created: not found", details=[detail]),
        payload=b"\x08\x07",
    )
    resp_wire = f_bytes(
        1,
        f_varint(1, 5)
        + f_bytes(2, "container not created: not found")
        + f_bytes(3, any_bytes("x.Y", b"\x08\x01")),
    ) + f_bytes(2, b"\x08\x07")
    assert bytes(resp) == resp_wire
    assert Response().parse(resp_wire).status.code == 5

    # quirk: Status() (nothing set) is omitted by betterproto, while an explicit
    # Status(code=0) is encoded as an empty sub-message "0a 00" like the Go server
    # does. Go clients treat a missing status as success either way.
    assert bytes(Response(status=Status(), payload=b"\x08\x07")) == f_bytes(2, b"\x08\x07")
    assert bytes(Response(status=Status(code=0), payload=b"\x08\x07")) == (
        b"\x0a\x00" + f_bytes(2, b"\x08\x07")
    )
    ok = Response().parse(b"\x0a\x00" + f_bytes(2, b"\x08\x07"))
    assert ok.status.code == 0
    assert ok.payload == b"\x08\x07"


def test_runtime_info_wire():
    opts = pack_any(runtimeoptions.Options(config_path="/c"))
    msg = RuntimeInfo(
        name="io.containerd.lxcfs.v2",
        version=RuntimeVersion(version="0.1.0", revision="abc"),
        options=opts,
        features=Any(type_url="types.containerd.io/f", value=b"{}"),
        annotations={"a": "b"},
    )
    want = (
        f_bytes(1, "io.containerd.lxcfs.v2")
        + f_bytes(2, f_bytes(1, "0.1.0") + f_bytes(2, "abc"))
        + f_bytes(3, any_bytes("runtimeoptions.v1.Options", f_bytes(2, "/c")))
        + f_bytes(4, any_bytes("types.containerd.io/f", b"{}"))
        + f_bytes(5, f_bytes(1, "a") + f_bytes(2, "b"))
    )
    assert bytes(msg) == want


def test_cgroups_v1_metrics_wire():
    m = cgroups_v1.Metrics(
        pids=cgroups_v1.PidsStat(current=3, limit=10),
        cpu=cgroups_v1.CpuStat(usage=cgroups_v1.CpuUsage(total=1000, per_cpu=[400, 600])),
        memory=cgroups_v1.MemoryStat(
            total_rss=11,
            total_pg_fault=12,
            total_pg_maj_fault=13,
            total_inactive_file=14,
            usage=cgroups_v1.MemoryEntry(limit=100, usage=50),
        ),
        memory_oom_control=cgroups_v1.MemoryOomControl(oom_kill=1),
    )
    want = (
        f_bytes(2, f_varint(1, 3) + f_varint(2, 10))
        + f_bytes(3, f_bytes(1, f_varint(1, 1000) + f_bytes(4, varint(400) + varint(600))))
        + f_bytes(
            4,
            f_varint(19, 11)
            + f_varint(26, 12)
            + f_varint(27, 13)
            + f_varint(30, 14)
            + f_bytes(33, f_varint(1, 100) + f_varint(2, 50)),
        )
        + f_bytes(9, f_varint(3, 1))
    )
    assert bytes(m) == want
    assert type_name(m) == "io.containerd.cgroups.v1.Metrics"


def test_cgroups_v2_metrics_wire():
    m = cgroups_v2.Metrics(
        pids=cgroups_v2.PidsStat(current=3, limit=10),
        cpu=cgroups_v2.CpuStat(
            usage_usec=5,
            throttled_usec=6,
            psi=cgroups_v2.PsiStats(some=cgroups_v2.PsiData(avg10=1.5, total=7)),
            burst_usec=8,
        ),
        memory=cgroups_v2.MemoryStat(
            anon=1, inactive_file=13, pgfault=18, pgmajfault=19, usage=32, usage_limit=33
        ),
        io=cgroups_v2.IoStat(usage=[cgroups_v2.IoEntry(major=8, minor=0, rbytes=1)]),
        hugetlb=[cgroups_v2.HugeTlbStat(current=1, pagesize="2MB")],
        memory_events=cgroups_v2.MemoryEvents(oom=4, oom_kill=5, oom_group_kill=6),
        network=[cgroups_v2.NetworkStat(name="eth0", tx_dropped=9)],
    )
    want = (
        f_bytes(1, f_varint(1, 3) + f_varint(2, 10))
        + f_bytes(
            2,
            f_varint(1, 5)
            + f_varint(6, 6)
            + f_bytes(7, f_bytes(1, f_double(1, 1.5) + f_varint(4, 7)))
            + f_varint(9, 8),
        )
        + f_bytes(
            4,
            f_varint(1, 1)
            + f_varint(13, 13)
            + f_varint(18, 18)
            + f_varint(19, 19)
            + f_varint(32, 32)
            + f_varint(33, 33),
        )
        + f_bytes(6, f_bytes(1, f_varint(1, 8) + f_varint(3, 1)))
        + f_bytes(7, f_varint(1, 1) + f_bytes(3, "2MB"))
        + f_bytes(8, f_varint(4, 4) + f_varint(5, 5) + f_varint(6, 6))
        + f_bytes(9, f_bytes(1, "eth0") + f_varint(9, 9))
    )
    assert bytes(m) == want
    assert type_name(m) == "io.containerd.cgroups.v2.Metrics"


# ---------------------------------------------------------------------------
# (c) Go zero time
# ---------------------------------------------------------------------------


def test_go_zero_time_round_trip():
    go_zero_wire = timestamp(-62135596800, 0)
    assert go_zero_wire == b"\x08" + bytes.fromhex("8092b8c398feffffff01")
    msg = task_v2.WaitResponse(exit_status=0, exited_at=GO_ZERO_TIME)
    wire = bytes(msg)
    assert wire == f_bytes(2, go_zero_wire)
    parsed = task_v2.WaitResponse().parse(wire)
    assert parsed.exited_at == GO_ZERO_TIME
    assert parsed.exited_at.tzinfo is not None
    # and again through a second encode
    assert bytes(parsed) == wire
    ts = Timestamp().parse(go_zero_wire)
    assert (ts.seconds, ts.nanos) == (-62135596800, 0)


def test_timestamp_quirks():
    # Unset datetime fields read back as the Unix epoch and are not encoded, so
    # "field absent" and "1970-01-01" are indistinguishable. Always send GO_ZERO_TIME
    # (or a real time) explicitly.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert task_v2.WaitResponse().exited_at == epoch
    assert bytes(task_v2.WaitResponse(exited_at=epoch)) == b""
    assert task_v2.WaitResponse().parse(b"").exited_at == epoch
    # Naive datetimes are rejected at encode time.
    with pytest.raises(TypeError):
        bytes(task_v2.WaitResponse(exited_at=datetime(2024, 1, 1)))


# ---------------------------------------------------------------------------
# (d) pack_any / unpack_any
# ---------------------------------------------------------------------------


def test_pack_any_type_urls():
    cases = [
        (events.TaskCreate(container_id="c"), "containerd.events.TaskCreate"),
        (events.TaskStart(container_id="c"), "containerd.events.TaskStart"),
        (events.TaskDelete(container_id="c"), "containerd.events.TaskDelete"),
        (events.TaskExit(container_id="c"), "containerd.events.TaskExit"),
        (events.TaskOom(container_id="c"), "containerd.events.TaskOOM"),
        (events.TaskExecAdded(container_id="c"), "containerd.events.TaskExecAdded"),
        (events.TaskExecStarted(container_id="c"), "containerd.events.TaskExecStarted"),
        (events.TaskPaused(container_id="c"), "containerd.events.TaskPaused"),
        (events.TaskResumed(container_id="c"), "containerd.events.TaskResumed"),
        (events.TaskCheckpointed(container_id="c"), "containerd.events.TaskCheckpointed"),
        (runc_opts.ProcessDetails(exec_id="e"), "containerd.runc.v1.ProcessDetails"),
        (cgroups_v1.Metrics(), "io.containerd.cgroups.v1.Metrics"),
        (cgroups_v2.Metrics(), "io.containerd.cgroups.v2.Metrics"),
        (RuntimeInfo(name="n"), "containerd.types.RuntimeInfo"),
    ]
    for msg, url in cases:
        packed = pack_any(msg)
        assert packed.type_url == url
        assert "/" not in packed.type_url
        assert packed.value == bytes(msg)
        # Any itself encodes as {1: type_url, 2: value}
        assert bytes(packed) == any_bytes(url, bytes(msg))


def test_every_event_class_is_registered():
    classes = [
        obj
        for obj in vars(events).values()
        if isinstance(obj, type) and issubclass(obj, betterproto.Message)
    ]
    assert len(classes) == 11
    for cls in classes:
        name = type_name(cls)
        assert name.startswith("containerd.events.")
        assert name.rsplit(".", 1)[1].lower() == cls.__name__.lower()


def test_registry_names_match_classes():
    for cls, name in protoutil.TYPE_NAMES.items():
        assert name.rsplit(".", 1)[1].lower() == cls.__name__.lower(), name
        package = name.rsplit(".", 1)[0]
        assert cls.__module__ == "protos.gen." + package, name


def test_pack_any_unregistered_raises():
    with pytest.raises(KeyError):
        pack_any(task_v2.StateRequest(id="x"))


def test_unpack_any_options():
    runc = runc_options_msg()
    got = unpack_any(Any(type_url="containerd.runc.v1.Options", value=bytes(runc)))
    assert isinstance(got, runc_opts.Options)
    assert bytes(got) == bytes(runc)

    cri = unpack_any(Any(type_url="runtimeoptions.v1.Options", value=f_bytes(2, "/etc/lxcfs.toml")))
    assert isinstance(cri, runtimeoptions.Options)
    assert cri.config_path == "/etc/lxcfs.toml"

    # a URL-style prefix is tolerated
    pref = unpack_any(Any(type_url="type.googleapis.com/runtimeoptions.v1.Options", value=b""))
    assert isinstance(pref, runtimeoptions.Options)

    # absent options
    assert unpack_any(None) is None
    assert unpack_any(Any()) is None
    assert unpack_any(task_v2.CreateTaskRequest().parse(b"").options) is None

    with pytest.raises(KeyError):
        unpack_any(Any(type_url="containerd.events.TaskExit", value=b""))

    # explicit registry
    custom = {"containerd.events.TaskExit": events.TaskExit}
    ev = unpack_any(pack_any(events.TaskExit(container_id="c", pid=1)), custom)
    assert isinstance(ev, events.TaskExit)
    assert ev.pid == 1

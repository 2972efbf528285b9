"""The Task service: one object behind every transport (ttrpc v2/v3 now, gRPC later).

Methods take and return the generated `containerd.task.v2` messages; transports only decode,
call and encode. Semantics and error texts follow containerd-shim-runc-v2 (see
shared/reference/task-api.md). Process state lives in shim/task/process.py, stdio in
shim/task/stdio.py, cgroup counters and OOM watching in shim/task/stats.py and shim/task/oom.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import anyio.abc
from betterproto.lib.google.protobuf import Any as AnyMsg
from betterproto.lib.google.protobuf import Empty

from procfs import late_mounts
from procfs.cgroups import CgroupRef
from procfs.view import View
from protos.gen.containerd import events
from protos.gen.containerd.runc import v1 as runc_opts
from protos.gen.containerd.task import v2 as api
from protos.gen.containerd.types import Mount
from protos.gen.containerd.v1 import types as v1types
from shim import options as runtime_options
from shim import trace
from shim.identity import RUNC_ROOT
from shim.oci import plan as oci_plan
from shim.oci import spec
from shim.task import mountutil, oom, stats
from shim.task.events import Publisher
from shim.task.process import Process, Status
from shim.task.reaper import Reaper, Watch
from shim.task.runc import Runc, RuncError
from shim.task.stdio import IOContext, ProcessIO
from shim.task.sysinfo_notify import SysinfoNotifier
from shim.transport.errors import RpcError
from shim.transport.protoutil import GO_ZERO_TIME, pack_any

log = logging.getLogger("shim.service")

_STATUS = {
    Status.CREATED: v1types.Status.CREATED,
    Status.RUNNING: v1types.Status.RUNNING,
    Status.PAUSING: v1types.Status.PAUSING,
    Status.PAUSED: v1types.Status.PAUSED,
    Status.STOPPED: v1types.Status.STOPPED,
    Status.DELETED: v1types.Status.STOPPED,
}

_CHECKPOINT_OPTIONS = "containerd.runc.v1.CheckpointOptions"


def _timestamp(at: float | None) -> datetime:
    return GO_ZERO_TIME if at is None else datetime.fromtimestamp(at, tz=UTC)


@dataclass
class RuncOptions:
    """The runtime options of a Create, honoured as containerd-shim-runc-v2 does.

    Decoded by shim/options.py from whichever type containerd sent (runc Options, legacy
    CreateOptions, runtimeoptions TOML); what it cannot honour fails the Create with
    InvalidArgument naming it."""

    binary_name: str = ""
    root: str = ""
    systemd_cgroup: bool = False
    no_pivot_root: bool = False
    no_new_keyring: bool = False
    shim_cgroup: str = ""  #: applied by `start` (shim/entry/start.py), kept here for options.json
    io_uid: int = 0
    io_gid: int = 0
    criu_image_path: str = ""
    criu_work_path: str = ""
    #: legacy CreateOptions' restore flags (`--tcp-established`, ...): a restore only
    restore_flags: tuple[str, ...] = ()

    @classmethod
    def from_any(cls, any_options: AnyMsg | None) -> RuncOptions:
        if any_options is None:
            return cls()
        try:
            decoded = runtime_options.decode_any(any_options.type_url, bytes(any_options.value))
        except runtime_options.OptionsError as e:
            raise RpcError.invalid_argument(str(e)) from e
        decoded.pop("task_api", None)  # `start`'s business (shim/entry/config.py)
        return cls(**decoded)  # type: ignore[arg-type]

    def write(self, bundle: str) -> None:
        """`options.json` (Go JSON: snake_case, zero values left out) is what `delete` reads."""
        values = {k: v for k, v in vars(self).items() if v and k != "restore_flags"}
        with open(os.path.join(bundle, "options.json"), "w") as f:
            json.dump(values, f)
        with open(os.path.join(bundle, "runtime"), "w") as f:
            f.write(self.binary_name or "runc")


@dataclass
class Container:
    id: str
    bundle: str
    runc: Runc
    init: Process
    rootfs: list[Mount]
    #: what Create decided from the spec (shim/oci/plan.py)
    plan: oci_plan.CreatePlan
    options: RuncOptions = field(default_factory=RuncOptions)
    rootfs_mounted: bool = False
    watch: Watch | None = field(default=None, repr=False)
    execs: dict[str, Process] = field(default_factory=dict)
    cgroup: CgroupRef | None = None
    #: create from a checkpoint: the image that Start restores
    checkpoint: str = ""
    #: cancels this container's OOM watcher
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def io_context(self, namespace: str) -> IOContext:
        return IOContext(self.id, namespace, self.options.io_uid, self.options.io_gid)


def _rootfs_mount(m: Mount, target: str) -> None:
    flags, data = mountutil.parse_options(m.options)
    mountutil.mount(m.source, target, m.type, flags, data)
    if flags & mountutil.MS_BIND and flags & mountutil.MS_RDONLY:
        # a bind mount ignores MS_RDONLY until it is remounted
        mountutil.mount("", target, "", flags | mountutil.MS_REMOUNT)


def _read_pid(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def _checkpoint_flags(o: runc_opts.CheckpointOptions) -> list[str]:
    """runc checkpoint/restore flags from CheckpointOptions, as go-runc builds them."""
    flags = []
    if o.open_tcp:
        flags.append("--tcp-established")
    if o.external_unix_sockets:
        flags.append("--ext-unix-sk")
    if o.terminal:
        flags.append("--shell-job")
    if o.file_locks:
        flags.append("--file-locks")
    for ns in o.empty_namespaces:
        flags += ["--empty-ns", ns]
    if o.cgroups_mode:
        flags += ["--manage-cgroups-mode", o.cgroups_mode]
    return flags


class TaskService:
    def __init__(
        self,
        *,
        namespace: str,
        reaper: Reaper,
        view: View,
        publisher: Publisher,
        task_group: anyio.abc.TaskGroup,
        on_idle: Callable[[], None],
        sysinfo: SysinfoNotifier | None = None,
    ) -> None:
        self.namespace = namespace
        self._sysinfo = sysinfo
        self._reaper = reaper
        self._view = view
        self._events = publisher
        self._tg = task_group
        self._on_idle = on_idle
        self._containers: dict[str, Container] = {}
        #: Creates under way: not in _containers until runc create returns, but a Shutdown
        #: (for another container of the pod) must not take the shim away under them.
        self._creating: set[str] = set()
        #: monotonic time of the last request (shim/task/methods.py notes it)
        self.last_request = time.monotonic()

    # -- helpers ---------------------------------------------------------------------------

    def _container(self, id: str) -> Container:
        c = self._containers.get(id)
        if c is None:
            raise RpcError.not_found("container not created")
        return c

    def _process(self, id: str, exec_id: str) -> tuple[Container, Process]:
        c = self._container(id)
        if not exec_id:
            return c, c.init
        p = c.execs.get(exec_id)
        if p is None:
            raise RpcError.not_found(f"process does not exist {exec_id}")
        return c, p

    def has_containers(self) -> bool:
        """Anything this shim still serves: created containers, or creates under way."""
        return bool(self._containers or self._creating)

    def _runc_error(self, what: str, e: RuncError) -> RpcError:
        return RpcError.unknown(f"{what}: {e.detail}" if e.detail else what)

    # -- lifecycle -------------------------------------------------------------------------

    async def create(self, req: api.CreateTaskRequest) -> api.CreateTaskResponse:
        if req.id in self._containers or req.id in self._creating:
            raise RpcError.already_exists(f"container {req.id}")
        self._creating.add(req.id)
        try:
            return await self._create(req)
        finally:
            self._creating.discard(req.id)

    async def _create(self, req: api.CreateTaskRequest) -> api.CreateTaskResponse:
        bundle = req.bundle
        try:
            oci = spec.load(bundle)
        except spec.SpecError as e:
            raise RpcError.invalid_argument(str(e)) from e
        options = RuncOptions.from_any(req.options)
        if options.restore_flags and not req.checkpoint:
            raise RpcError.invalid_argument(
                f"{runtime_options.LEGACY} restore options ({' '.join(options.restore_flags)}) "
                "apply only to a create from a checkpoint"
            )
        options.write(bundle)
        listener = None
        if self._sysinfo is not None and not req.checkpoint:  # criu restores filters itself
            listener = self._sysinfo.listener()
        # every decision the spec implies, before anything is done (an annotation typo
        # raises SpecError, a ValueError: the caller sees Unknown with its message)
        plan = oci_plan.plan(oci, listener)
        runc = Runc(
            self._reaper,
            root=os.path.join(options.root or RUNC_ROOT, self.namespace),
            log_path=os.path.join(bundle, "log.json"),
            binary=options.binary_name or "runc",
            systemd_cgroup=options.systemd_cgroup,
        )
        init = Process(req.id, ProcessIO())
        c = Container(
            req.id,
            bundle,
            runc,
            init,
            list(req.rootfs),
            plan,
            options,
            checkpoint=req.checkpoint,
        )
        try:
            await self._prepare(c, oci, req)
            trace.mark("runc create")
            if not c.checkpoint:
                await runc.create(
                    req.id,
                    bundle,
                    os.path.join(bundle, "init.pid"),
                    init.io.child,
                    console_socket=init.io.console.path if init.io.console else "",
                    no_pivot=options.no_pivot_root,
                    no_new_keyring=options.no_new_keyring,
                )
                if init.io.console is not None:
                    await init.io.attach_console(self._tg)
        except BaseException as e:
            await self._undo_create(c)
            if isinstance(e, RuncError):
                raise RpcError.unknown(f"OCI runtime create failed: {e.detail}") from e
            if isinstance(e, OSError | TimeoutError):
                raise RpcError.unknown(f"create {req.id}: {e}") from e
            raise
        trace.mark("runc create done")
        self._containers[req.id] = c
        if not c.checkpoint:
            init.io.release_child_fds()
            self._track_init(c, _read_pid(os.path.join(bundle, "init.pid")))
            await self._mount_late_files(c)
        self._events.publish(
            "/tasks/create",
            events.TaskCreate(
                container_id=req.id,
                bundle=bundle,
                rootfs=list(req.rootfs),
                io=events.TaskIo(
                    stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal
                ),
                checkpoint=req.checkpoint,
                pid=init.pid,
            ),
        )
        log.info("created %s pid %d", req.id, init.pid)
        return api.CreateTaskResponse(pid=init.pid)

    def _track_init(self, c: Container, pid: int) -> None:
        """The init exists (created or restored): watch its exit, cgroup and OOMs."""
        c.init.pid = pid
        c.watch = self._reaper.watch(pid)
        c.cgroup = self._view.set_init_pid(c.id, pid)
        self._tg.start_soon(self._wait_init_exit, c)
        self._tg.start_soon(self._watch_oom, c)

    async def _mount_late_files(self, c: Container) -> None:
        """/proc files runc will not bind (vmstat, pressure): into the created container's
        mount namespace now, before its start. A failure leaves the host's file (logged)."""
        view = self._view.container(c.id)
        late = frozenset(c.plan.late)
        files = late_mounts.late_files(view, late) if view is not None and late else {}
        if not files:
            return
        try:
            done = await late_mounts.bind(c.init.pid, files, self._reaper.watch)
            log.debug("mounted %s into %s", done, c.id)
        except (OSError, TimeoutError) as e:
            log.error("cannot mount %s into %s: %s", sorted(files), c.id, e)

    async def _watch_oom(self, c: Container) -> None:
        memory = c.cgroup.dir("memory") if c.cgroup else None
        version = c.cgroup.version("memory") if c.cgroup else None
        if memory is None or version is None:
            return

        def on_oom() -> None:
            log.info("OOM in %s", c.id)
            self._events.publish("/tasks/oom", events.TaskOom(container_id=c.id))

        with c.scope:
            await oom.watch(memory, version, on_oom)

    async def _prepare(self, c: Container, oci: dict, req: api.CreateTaskRequest) -> None:
        """Execute the plan up to runc: rootfs mounts, the view, config.json rewritten,
        stdio. All undone on failure."""
        plan = c.plan
        if c.rootfs:
            target = os.path.join(c.bundle, "rootfs")
            os.makedirs(target, mode=0o711, exist_ok=True)
            for m in c.rootfs:
                _rootfs_mount(m, target)
                c.rootfs_mounted = True
        sources = self._view.add(c.id, plan.cgroups_path, plan.files)
        oci_plan.rewrite(oci, plan, sources)
        if plan.sysinfo == "shim":
            assert self._sysinfo is not None
            self._sysinfo.register(c.id)
        elif plan.sysinfo == "profile":
            log.info("sysinfo of %s left to the kernel (its seccomp profile decides)", c.id)
        spec.save(c.bundle, oci)
        c.init.io = await ProcessIO.open(
            req.stdin,
            req.stdout,
            req.stderr,
            req.terminal,
            reaper=self._reaper,
            ctx=c.io_context(self.namespace),
        )

    async def _undo_create(self, c: Container) -> None:
        with anyio.CancelScope(shield=True):
            await c.init.io.aclose()
            with contextlib.suppress(RuncError):
                await c.runc.delete(c.id, force=True)
            self._view.remove(c.id)
            if self._sysinfo is not None:
                self._sysinfo.forget(c.id)
            if c.rootfs_mounted:
                mountutil.umount_all(os.path.join(c.bundle, "rootfs"))

    async def _wait_init_exit(self, c: Container) -> None:
        assert c.watch is not None
        ex = await c.watch.wait()
        if c.init.starting:
            await c.init.start_done.wait()  # never publish an exit before its start
        if not c.plan.private_pid_ns:
            try:  # without its own pid namespace, the init's children outlive it
                await c.runc.kill(c.id, signal.SIGKILL, all=True)
            except RuncError as e:
                log.debug("kill --all after exit of %s: %s", c.id, e)
        # the init's exit is final only once every running exec has exited
        for p in list(c.execs.values()):
            if p.pid and not p.exited.is_set():
                await p.exited.wait()
        if c.init.set_exited(ex.status, ex.at):
            c.init.io.close_stdin()
            log.info("%s exited with status %d", c.id, ex.status)
            self._events.publish(
                "/tasks/exit",
                events.TaskExit(
                    container_id=c.id,
                    id=c.id,
                    pid=c.init.pid,
                    exit_status=ex.status,
                    exited_at=_timestamp(ex.at),
                ),
            )

    async def _wait_exec_exit(self, c: Container, p: Process, watch: Watch) -> None:
        ex = await watch.wait()
        await p.start_done.wait()  # exec-started goes out first
        if p.set_exited(ex.status, ex.at):
            p.io.close_stdin()
            self._events.publish(
                "/tasks/exit",
                events.TaskExit(
                    container_id=c.id,
                    id=p.id,
                    pid=p.pid,
                    exit_status=ex.status,
                    exited_at=_timestamp(ex.at),
                ),
            )

    async def start(self, req: api.StartRequest) -> api.StartResponse:
        c, p = self._process(req.id, req.exec_id)
        if p.is_exec:
            return await self._start_exec(c, p)
        p.check_start()
        p.starting = True
        try:
            if c.checkpoint:
                await self._restore(c)
            else:
                trace.mark("runc start")
                await c.runc.start(c.id)
                trace.mark("runc start done")
        except RuncError as e:
            what = "OCI runtime restore failed" if c.checkpoint else "OCI runtime start failed"
            raise self._runc_error(what, e) from e
        finally:
            p.starting = False
        if p.status is Status.CREATED:
            p.status = Status.RUNNING
        self._events.publish("/tasks/start", events.TaskStart(container_id=c.id, pid=p.pid))
        p.start_done.set()
        return api.StartResponse(pid=p.pid)

    async def _restore(self, c: Container) -> None:
        """Start of a container created from a checkpoint: `runc restore --detach`."""
        io = c.init.io
        work = c.options.criu_work_path or os.path.join(c.bundle, "work")
        try:
            await c.runc.restore(
                c.id,
                c.bundle,
                c.checkpoint,
                os.path.join(c.bundle, "init.pid"),
                io.child,
                work_path=work,
                console_socket=io.console.path if io.console else "",
                options=c.options.restore_flags,
                no_pivot=c.options.no_pivot_root,
            )
            if io.console is not None:
                await io.attach_console(self._tg)
        finally:
            io.release_child_fds()
        self._track_init(c, _read_pid(os.path.join(c.bundle, "init.pid")))

    async def _start_exec(self, c: Container, p: Process) -> api.StartResponse:
        if c.init.exited.is_set() or c.init.status is not Status.RUNNING:
            raise RpcError.failed_precondition(f"container {c.id} init process is not running")
        p.check_start()
        assert p.spec is not None
        p.starting = True
        pid_file = os.path.join(c.bundle, f"{p.id}.pid")
        try:
            p.io = await ProcessIO.open(
                p.io.stdin,
                p.io.stdout,
                p.io.stderr,
                p.io.terminal,
                reaper=self._reaper,
                ctx=c.io_context(self.namespace),
            )
            with tempfile.NamedTemporaryFile(
                "w", prefix="runc-process", suffix=".json", dir=os.environ.get("XDG_RUNTIME_DIR")
            ) as f:
                json.dump(p.spec, f)
                f.flush()
                trace.mark("runc exec")
                await c.runc.exec(
                    c.id,
                    f.name,
                    pid_file,
                    p.io.child,
                    console_socket=p.io.console.path if p.io.console else "",
                )
            if p.io.console is not None:
                await p.io.attach_console(self._tg)
            p.io.release_child_fds()
            p.pid = _read_pid(pid_file)
            trace.mark("runc exec done")
        except BaseException as e:
            # the exec never ran: it is stopped with runc's own exit code (Wait returns)
            with anyio.CancelScope(shield=True):
                await p.io.aclose()
            p.starting = False
            p.set_exited(e.status if isinstance(e, RuncError) else 255, time.time())
            p.start_done.set()
            if isinstance(e, RuncError):
                raise self._runc_error("OCI runtime exec failed", e) from e
            if isinstance(e, OSError | TimeoutError):
                raise RpcError.unknown(f"exec {p.id}: {e}") from e
            raise
        watch = self._reaper.watch(p.pid)
        self._tg.start_soon(self._wait_exec_exit, c, p, watch)
        p.starting = False
        p.status = Status.RUNNING
        self._events.publish(
            "/tasks/exec-started",
            events.TaskExecStarted(container_id=c.id, exec_id=p.id, pid=p.pid),
        )
        p.start_done.set()
        return api.StartResponse(pid=p.pid)

    async def exec(self, req: api.ExecProcessRequest) -> Empty:
        c = self._container(req.id)
        if req.exec_id in c.execs:
            raise RpcError.already_exists(f"id {req.exec_id}")
        c.init.check_exec()
        try:
            process_spec = json.loads(req.spec.value) if req.spec else None
        except ValueError as e:
            raise RpcError.invalid_argument(f"exec {req.exec_id}: process spec: {e}") from e
        if not isinstance(process_spec, dict):
            raise RpcError.invalid_argument(f"exec {req.exec_id}: no process spec")
        process_spec["terminal"] = req.terminal
        c.execs[req.exec_id] = Process(
            req.exec_id,
            ProcessIO(req.stdin, req.stdout, req.stderr, req.terminal),
            spec=process_spec,
        )
        self._events.publish(
            "/tasks/exec-added", events.TaskExecAdded(container_id=c.id, exec_id=req.exec_id)
        )
        return Empty()

    async def delete(self, req: api.DeleteRequest) -> api.DeleteResponse:
        c, p = self._process(req.id, req.exec_id)
        p.check_delete()
        if p.is_exec:
            p.status = Status.DELETED
            await p.io.aclose(drain=True)
            del c.execs[p.id]
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(c.bundle, f"{p.id}.pid"))
            return api.DeleteResponse(
                pid=p.pid, exit_status=p.exit_status, exited_at=_timestamp(p.exited_at)
            )
        if c.init.pid or not c.checkpoint:
            trace.mark("runc delete")
            try:
                await c.runc.delete(c.id, force=p.status is Status.CREATED)
            except RuncError as e:
                if "does not exist" not in e.detail:
                    raise self._runc_error("failed to delete task", e) from e
            trace.mark("runc delete done")
        if not p.exited.is_set() and p.pid:
            with anyio.move_on_after(2):  # runc delete killed a created init: collect it
                await p.exited.wait()
        p.status = Status.DELETED
        c.scope.cancel()
        await p.io.aclose(drain=True)
        for e in c.execs.values():
            await e.io.aclose()
        self._view.remove(c.id)
        if self._sysinfo is not None:
            self._sysinfo.forget(c.id)
        if c.rootfs_mounted:
            try:
                mountutil.umount_all(os.path.join(c.bundle, "rootfs"))
            except OSError as e:
                log.warning("unmount rootfs of %s: %s", c.id, e)
        del self._containers[c.id]
        exited_at = _timestamp(p.exited_at)
        self._events.publish(
            "/tasks/delete",
            events.TaskDelete(
                container_id=c.id, pid=p.pid, exit_status=p.exit_status, exited_at=exited_at
            ),
        )
        log.info("deleted %s", c.id)
        return api.DeleteResponse(pid=p.pid, exit_status=p.exit_status, exited_at=exited_at)

    async def kill(self, req: api.KillRequest) -> Empty:
        c, p = self._process(req.id, req.exec_id)
        p.check_kill()
        if p.is_exec:
            try:
                os.kill(p.pid, req.signal)
            except ProcessLookupError as e:
                raise RpcError.not_found("process already finished") from e
            except OSError as e:
                raise RpcError.unknown(f"unknown error after kill: {e}") from e
            return Empty()
        try:
            await c.runc.kill(c.id, req.signal, all=req.all)
        except RuncError as e:
            text = e.detail.lower()
            if any(
                s in text
                for s in ("process already finished", "container not running", "no such process")
            ):
                raise RpcError.not_found("process already finished") from e
            if "does not exist" in text:
                raise RpcError.not_found("no such container") from e
            raise RpcError.unknown(f"unknown error after kill: {e.detail}") from e
        return Empty()

    async def wait(self, req: api.WaitRequest) -> api.WaitResponse:
        _, p = self._process(req.id, req.exec_id)
        await p.exited.wait()
        return api.WaitResponse(exit_status=p.exit_status, exited_at=_timestamp(p.exited_at))

    async def state(self, req: api.StateRequest) -> api.StateResponse:
        c, p = self._process(req.id, req.exec_id)
        status = p.status
        if (
            p.is_exec
            and status is Status.RUNNING
            and c.init.status in (Status.PAUSED, Status.PAUSING)
        ):
            status = c.init.status
        return api.StateResponse(
            id=p.id,
            bundle=c.bundle,
            pid=p.pid,
            status=_STATUS[status],
            stdin=p.io.stdin,
            stdout=p.io.stdout,
            stderr=p.io.stderr,
            terminal=p.io.terminal,
            exit_status=p.exit_status,
            exited_at=_timestamp(p.exited_at),
        )

    async def pids(self, req: api.PidsRequest) -> api.PidsResponse:
        c = self._container(req.id)
        try:
            pids = await c.runc.ps(c.id)
        except RuncError as e:
            raise self._runc_error("failed to list pids", e) from e
        by_pid = {p.pid: p.id for p in c.execs.values() if p.pid}
        return api.PidsResponse(
            processes=[
                v1types.ProcessInfo(
                    pid=pid,
                    info=pack_any(runc_opts.ProcessDetails(exec_id=by_pid[pid]))
                    if pid in by_pid
                    else None,
                )
                for pid in pids
            ]
        )

    async def close_io(self, req: api.CloseIoRequest) -> Empty:
        _, p = self._process(req.id, req.exec_id)
        p.io.close_stdin()
        return Empty()

    async def resize_pty(self, req: api.ResizePtyRequest) -> Empty:
        _, p = self._process(req.id, req.exec_id)
        if p.is_exec and p.status in (Status.STOPPED, Status.DELETED):
            raise RpcError.unknown("cannot resize a stopped container")
        try:
            p.io.resize(req.width, req.height)
        except OSError as e:
            raise RpcError.unknown(f"resize pty: {e}") from e
        return Empty()

    # -- container-wide operations -------------------------------------------------------

    async def pause(self, req: api.PauseRequest) -> Empty:
        c = self._container(req.id)
        c.init.check_pause()
        c.init.status = Status.PAUSING
        try:
            await c.runc.pause(c.id)
        except RuncError as e:
            if c.init.status is Status.PAUSING:
                c.init.status = Status.RUNNING
            raise self._runc_error("OCI runtime pause failed", e) from e
        if c.init.status is Status.PAUSING:
            c.init.status = Status.PAUSED
        self._events.publish("/tasks/paused", events.TaskPaused(container_id=c.id))
        return Empty()

    async def resume(self, req: api.ResumeRequest) -> Empty:
        c = self._container(req.id)
        c.init.check_resume()
        try:
            await c.runc.resume(c.id)
        except RuncError as e:
            raise self._runc_error("OCI runtime resume failed", e) from e
        if c.init.status is Status.PAUSED:
            c.init.status = Status.RUNNING
        self._events.publish("/tasks/resumed", events.TaskResumed(container_id=c.id))
        return Empty()

    async def update(self, req: api.UpdateTaskRequest) -> Empty:
        c = self._container(req.id)
        c.init.check_update()
        if req.resources is None or not req.resources.value:
            raise RpcError.invalid_argument("update: no resources given")
        try:
            json.loads(req.resources.value)
        except ValueError as e:
            raise RpcError.invalid_argument(f"update: resources are not JSON: {e}") from e
        try:
            await c.runc.update(c.id, bytes(req.resources.value))
        except RuncError as e:
            raise self._runc_error("OCI runtime update failed", e) from e
        return Empty()

    async def stats(self, req: api.StatsRequest) -> api.StatsResponse:
        c = self._container(req.id)
        if c.cgroup is None or not stats.exists(c.cgroup):
            raise RpcError.not_found("cgroup does not exist")
        return api.StatsResponse(stats=pack_any(stats.metrics(c.cgroup)))

    async def checkpoint(self, req: api.CheckpointTaskRequest) -> Empty:
        c = self._container(req.id)
        c.init.check_checkpoint()
        opts = runc_opts.CheckpointOptions()
        if req.options is not None and req.options.type_url:
            if req.options.type_url.rsplit("/", 1)[-1] != _CHECKPOINT_OPTIONS:
                raise RpcError.invalid_argument(
                    f"checkpoint options of type {req.options.type_url} are not supported"
                )
            opts = runc_opts.CheckpointOptions().parse(req.options.value)
        image = req.path or opts.image_path or c.options.criu_image_path
        if not image:
            raise RpcError.invalid_argument("checkpoint: no image path")
        work = opts.work_path or c.options.criu_work_path
        keep_work = bool(work)
        if not work:
            work = os.path.join(c.bundle, "criu-work")
        flags = _checkpoint_flags(opts)
        if not opts.exit:
            flags.append("--leave-running")
        try:
            await c.runc.checkpoint(c.id, image, work_path=work, options=flags)
        except RuncError as e:
            raise self._runc_error(
                f"checkpoint failed (criu log in {work}), path={c.bundle}", e
            ) from e
        finally:
            if not keep_work:
                shutil.rmtree(work, ignore_errors=True)
        return Empty()

    # -- the shim --------------------------------------------------------------------------

    async def connect(self, req: api.ConnectRequest) -> api.ConnectResponse:
        c = self._containers.get(req.id)
        return api.ConnectResponse(shim_pid=os.getpid(), task_pid=c.init.pid if c else 0)

    async def shutdown(self, req: api.ShutdownRequest) -> Empty:
        if not self.has_containers():
            self._on_idle()
        return Empty()

"""The Task service: one object behind every transport (ttrpc v2/v3 now, gRPC later).

Methods take and return the generated `containerd.task.v2` messages; transports only decode,
call and encode. Semantics and error texts follow containerd-shim-runc-v2 (see
shared/reference/task-api.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import anyio.abc
from betterproto.lib.google.protobuf import Any as AnyMsg
from betterproto.lib.google.protobuf import Empty

from procfs.view import View
from protos.gen.containerd import events
from protos.gen.containerd.runc import v1 as runc_opts
from protos.gen.containerd.task import v2 as api
from protos.gen.containerd.types import Mount
from protos.gen.containerd.v1 import types as v1types
from shim import mountutil, spec
from shim.errors import RpcError
from shim.events import Publisher
from shim.identity import RUNC_ROOT
from shim.process import Process, Status
from shim.protoutil import GO_ZERO_TIME
from shim.reaper import Reaper, Watch
from shim.runc import Runc, RuncError
from shim.stdio import ProcessIO

log = logging.getLogger("shim.service")

_STATUS = {
    Status.CREATED: v1types.Status.CREATED,
    Status.RUNNING: v1types.Status.RUNNING,
    Status.STOPPED: v1types.Status.STOPPED,
    Status.DELETED: v1types.Status.STOPPED,
}


def _timestamp(at: float | None) -> datetime:
    return GO_ZERO_TIME if at is None else datetime.fromtimestamp(at, tz=UTC)


@dataclass
class RuncOptions:
    """The subset of containerd.runc.v1.Options the shim honours (so runc configs carry over)."""

    binary_name: str = ""
    root: str = ""
    systemd_cgroup: bool = False
    no_pivot_root: bool = False
    no_new_keyring: bool = False

    @classmethod
    def from_any(cls, options: AnyMsg | None) -> RuncOptions:
        if options is None or not options.type_url:
            return cls()
        if options.type_url.rsplit("/", 1)[-1] == "containerd.runc.v1.Options":
            o = runc_opts.Options().parse(options.value)
            return cls(o.binary_name, o.root, o.systemd_cgroup, o.no_pivot_root,
                       o.no_new_keyring)
        return cls()  # runtimeoptions.v1.Options and others: defaults for now

    def write(self, bundle: str) -> None:
        """`options.json` (Go JSON: snake_case, zero values left out) is what `delete` reads."""
        values = {k: v for k, v in vars(self).items() if v}
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
    private_pid_ns: bool
    rootfs_mounted: bool = False
    watch: Watch | None = field(default=None, repr=False)


def _rootfs_mount(m: Mount, target: str) -> None:
    flags, data = mountutil.parse_options(m.options)
    mountutil.mount(m.source, target, m.type, flags, data)
    if flags & mountutil.MS_BIND and flags & mountutil.MS_RDONLY:
        # a bind mount ignores MS_RDONLY until it is remounted
        mountutil.mount("", target, "", flags | mountutil.MS_REMOUNT)


class TaskService:
    def __init__(self, *, namespace: str, reaper: Reaper, view: View, publisher: Publisher,
                 task_group: anyio.abc.TaskGroup, on_idle: Callable[[], None]) -> None:
        self.namespace = namespace
        self._reaper = reaper
        self._view = view
        self._events = publisher
        self._tg = task_group
        self._on_idle = on_idle
        self._containers: dict[str, Container] = {}

    # -- helpers ---------------------------------------------------------------------------

    def _container(self, id: str) -> Container:
        c = self._containers.get(id)
        if c is None:
            raise RpcError.not_found("container not created")
        return c

    def _process(self, id: str, exec_id: str) -> tuple[Container, Process]:
        c = self._container(id)
        if exec_id:
            raise RpcError.not_found(f"process does not exist {exec_id}")
        return c, c.init

    def has_containers(self) -> bool:
        return bool(self._containers)

    # -- lifecycle -------------------------------------------------------------------------

    async def create(self, req: api.CreateTaskRequest) -> api.CreateTaskResponse:
        if req.id in self._containers:
            raise RpcError.already_exists(f"container {req.id}")
        if req.checkpoint:
            raise RpcError.unimplemented("create from checkpoint is not supported yet")
        bundle = req.bundle
        try:
            oci = spec.load(bundle)
        except spec.SpecError as e:
            raise RpcError.invalid_argument(str(e)) from e
        options = RuncOptions.from_any(req.options)
        options.write(bundle)
        runc = Runc(self._reaper, root=os.path.join(options.root or RUNC_ROOT, self.namespace),
                    log_path=os.path.join(bundle, "log.json"),
                    binary=options.binary_name or "runc", systemd_cgroup=options.systemd_cgroup)
        init = Process(req.id, ProcessIO())
        c = Container(req.id, bundle, runc, init, list(req.rootfs), spec.has_private_pid_ns(oci))
        try:
            await self._prepare(c, oci, req)
            await runc.create(req.id, bundle, os.path.join(bundle, "init.pid"), init.io.child,
                              no_pivot=options.no_pivot_root,
                              no_new_keyring=options.no_new_keyring)
        except BaseException as e:
            await self._undo_create(c)
            if isinstance(e, RuncError):
                raise RpcError.unknown(f"OCI runtime create failed: {e.detail}") from e
            if isinstance(e, OSError):
                raise RpcError.unknown(f"create {req.id}: {e}") from e
            raise
        init.io.release_child_fds()
        with open(os.path.join(bundle, "init.pid")) as f:
            init.pid = int(f.read().strip())
        c.watch = self._reaper.watch(init.pid)
        self._view.set_init_pid(req.id, init.pid)
        self._containers[req.id] = c
        self._tg.start_soon(self._wait_init_exit, c)
        self._events.publish("/tasks/create", events.TaskCreate(
            container_id=req.id, bundle=bundle, rootfs=list(req.rootfs),
            io=events.TaskIo(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                             terminal=req.terminal),
            checkpoint=req.checkpoint, pid=init.pid))
        log.info("created %s pid %d", req.id, init.pid)
        return api.CreateTaskResponse(pid=init.pid)

    async def _prepare(self, c: Container, oci: dict, req: api.CreateTaskRequest) -> None:
        """Rootfs mounts, the view and its binds in config.json, stdio: all undone on failure."""
        if c.rootfs:
            target = os.path.join(c.bundle, "rootfs")
            os.makedirs(target, mode=0o711, exist_ok=True)
            for m in c.rootfs:
                _rootfs_mount(m, target)
                c.rootfs_mounted = True
        sources = self._view.add(c.id, spec.cgroups_path(oci), spec.wanted_files(oci))
        spec.add_view_mounts(oci, sources)
        spec.save(c.bundle, oci)
        c.init.io = ProcessIO.open(req.stdin, req.stdout, req.stderr, req.terminal)

    async def _undo_create(self, c: Container) -> None:
        with anyio.CancelScope(shield=True):
            c.init.io.close()
            with contextlib.suppress(RuncError):
                await c.runc.delete(c.id, force=True)
            self._view.remove(c.id)
            if c.rootfs_mounted:
                mountutil.umount_all(os.path.join(c.bundle, "rootfs"))

    async def _wait_init_exit(self, c: Container) -> None:
        assert c.watch is not None
        ex = await c.watch.wait()
        if c.init.starting:
            await c.init.start_done.wait()  # never publish an exit before its start
        if not c.private_pid_ns:
            try:  # without its own pid namespace, the init's children outlive it
                await c.runc.kill(c.id, signal.SIGKILL, all=True)
            except RuncError as e:
                log.debug("kill --all after exit of %s: %s", c.id, e)
        if c.init.set_exited(ex.status, ex.at):
            c.init.io.close_stdin()
            log.info("%s exited with status %d", c.id, ex.status)
            self._events.publish("/tasks/exit", events.TaskExit(
                container_id=c.id, id=c.id, pid=c.init.pid, exit_status=ex.status,
                exited_at=_timestamp(ex.at)))

    async def start(self, req: api.StartRequest) -> api.StartResponse:
        c, p = self._process(req.id, req.exec_id)
        p.check_start()
        p.starting = True
        try:
            await c.runc.start(c.id)
        except RuncError as e:
            raise RpcError.unknown(f"OCI runtime start failed: {e.detail}") from e
        finally:
            p.starting = False
        if p.status is Status.CREATED:
            p.status = Status.RUNNING
        self._events.publish("/tasks/start", events.TaskStart(container_id=c.id, pid=p.pid))
        p.start_done.set()
        return api.StartResponse(pid=p.pid)

    async def delete(self, req: api.DeleteRequest) -> api.DeleteResponse:
        c, p = self._process(req.id, req.exec_id)
        p.check_delete()
        try:
            await c.runc.delete(c.id, force=p.status is Status.CREATED)
        except RuncError as e:
            if "does not exist" not in e.detail:
                raise RpcError.unknown(f"failed to delete task: {e.detail}") from e
        if not p.exited.is_set():
            with anyio.move_on_after(2):  # runc delete killed a created init: collect it
                await p.exited.wait()
        p.status = Status.DELETED
        p.io.close()
        self._view.remove(c.id)
        if c.rootfs_mounted:
            try:
                mountutil.umount_all(os.path.join(c.bundle, "rootfs"))
            except OSError as e:
                log.warning("unmount rootfs of %s: %s", c.id, e)
        del self._containers[c.id]
        exited_at = _timestamp(p.exited_at)
        self._events.publish("/tasks/delete", events.TaskDelete(
            container_id=c.id, pid=p.pid, exit_status=p.exit_status, exited_at=exited_at))
        log.info("deleted %s", c.id)
        return api.DeleteResponse(pid=p.pid, exit_status=p.exit_status, exited_at=exited_at)

    async def kill(self, req: api.KillRequest) -> Empty:
        c, p = self._process(req.id, req.exec_id)
        p.check_kill()
        try:
            await c.runc.kill(c.id, req.signal, all=req.all)
        except RuncError as e:
            text = e.detail.lower()
            if any(s in text for s in ("process already finished", "container not running",
                                       "no such process")):
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
        return api.StateResponse(
            id=p.id, bundle=c.bundle, pid=p.pid, status=_STATUS[p.status],
            stdin=p.io.stdin, stdout=p.io.stdout, stderr=p.io.stderr, terminal=p.io.terminal,
            exit_status=p.exit_status, exited_at=_timestamp(p.exited_at))

    async def pids(self, req: api.PidsRequest) -> api.PidsResponse:
        c = self._container(req.id)
        try:
            pids = await c.runc.ps(c.id)
        except RuncError as e:
            raise RpcError.unknown(f"failed to list pids: {e.detail}") from e
        return api.PidsResponse(processes=[v1types.ProcessInfo(pid=pid) for pid in pids])

    async def close_io(self, req: api.CloseIoRequest) -> Empty:
        _, p = self._process(req.id, req.exec_id)
        p.io.close_stdin()
        return Empty()

    async def connect(self, req: api.ConnectRequest) -> api.ConnectResponse:
        c = self._containers.get(req.id)
        return api.ConnectResponse(shim_pid=os.getpid(), task_pid=c.init.pid if c else 0)

    async def shutdown(self, req: api.ShutdownRequest) -> Empty:
        if not self._containers:
            self._on_idle()
        return Empty()

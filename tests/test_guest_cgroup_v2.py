"""The cgroup v2 code paths on a real cgroup v2 kernel: the suites below, inside a QEMU guest.

This host is cgroup v1 hybrid and cannot be switched, so tests/guest_vm.py boots a Debian 12
guest (cgroup v2 only, no systemd: tests/guest/init.sh) built from Debian packages by
tests/guest/build_image.sh (cached by a hash of its recipe; `install.sh --test` builds it
before the suite). Inside, `install.sh` installs the shim from a copy of this checkout and
pytest runs SUBSET against Debian's containerd 1.6 and then, when its binaries were available
at image build, containerd 2.x. Each outer test fails naming the inner tests that failed.

The guest runs under TCG (software emulation: nested KVM makes no progress here), several
times slower than the host, so SUBSET proves each v2 code path once instead of repeating the
host's suites: every renderer (the /proc view tests and the parity test against the guest's
lxcfs 5.0.3), the ctr lifecycle, CRI (pods in their own cgroup namespace), Task API stats
(v2 Metrics), OOM via memory.events, and the v2-only limits (tests/test_e2e_cgroup_v2.py).

The last run's files (console log, pytest logs, junit XML, the kernel's cgroup files) are kept
in /var/cache/containerd-shim-lxcfs/guest/last-run for inspection.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import guest_vm
import peer_builds as peers
import pytest

pytestmark = pytest.mark.e2e

#: What runs in the guest (paths relative to the checkout), with containerd 1.6. Each test
#: costs ~30 s there (TCG on a loaded 2-core host), so: the lxcfs runtime only (the host's
#: suites prove each test fair against runc.v2) and one test per v2 code path.
SUBSET = [
    "tests/test_e2e_cgroup_v2.py",  # memory.max/high/swap.max, cpu.max, cpuset, cpu.stat,
    #                                 io.stat, memory.events, nested slice paths
    "tests/test_e2e_view.py::test_every_file_is_the_containers",  # every renderer
    "tests/test_e2e_view.py::test_parity_with_lxcfs",  # against lxcfs 5.0.3 on v2
    "tests/test_e2e_task.py::test_metrics",  # Task API Stats: v2 Metrics
    "tests/test_e2e_task.py::test_oom_event",  # /tasks/oom from memory.events
    "tests/test_e2e_task.py::test_update_memory_limit",  # Update → memory.max
    "tests/test_e2e_task.py::test_pause_resume",  # cgroup.freeze
    "tests/test_e2e_task.py::test_runtime_config_shim_cgroup_and_keyring",  # ShimCgroup on v2
    "tests/test_e2e_ctr.py::test_exit_code_propagates",  # ctr lifecycle
    "tests/test_e2e_ctr.py::test_stdin_is_piped_in",
    "tests/test_e2e_ctr.py::test_kill_sigterm_handled_by_init",
    "tests/test_e2e_ctr.py::test_run_rm_leaves_no_container",
    "tests/test_e2e_ctr.py::test_meminfo_shows_memory_limit",
    "tests/test_cri.py",  # CRI pods (cgroupfs parent), stats, cgroup namespace
    # sysinfo(2) through the notifier (free, sysconf, uptime) and the late-mounted files:
    # /proc/pressure/* from the container's own *.pressure, vmstat from v2 memory.stat
    "tests/test_e2e_sysinfo.py::test_init_sees_the_limit[containerd-1.6]",
    "tests/test_e2e_sysinfo.py::test_vmstat_and_pressure_are_the_containers[containerd-1.6]",
]
#: containerd 2.x: the lifecycle, the view on v2, stats and OOM
SUBSET_2 = [
    "tests/test_e2e_cgroup_v2.py::test_memory_max_high_and_swap_max",
    "tests/test_e2e_view.py::test_every_file_is_the_containers",
    "tests/test_e2e_ctr.py::test_exit_code_propagates",
    "tests/test_e2e_task.py::test_metrics",
    "tests/test_e2e_task.py::test_oom_event",
]
KEEP = Path("/var/cache/containerd-shim-lxcfs/guest/last-run")
VENV = "/opt/containerd-shim-lxcfs"
#: containerd 2.x in the guest: tests/guest/build_image.sh copies it to the host's path
PEER2 = str(peers.CONTAINERD_2.bin_dir)

JOB = """\
# written by tests/test_guest_cgroup_v2.py; sourced by /sbin/guest-init in the checkout's copy
export CONTAINERD_SHIM_LXCFS_IN_GUEST=1 GUEST_CGROUP_DUMP=/mnt/out/cgroup-dump
export CONTAINERD_SHIM_LXCFS_TIMEOUT_SCALE=4  # TCG: every bounded wait of tests/harness.py x4
say "install.sh"
# each line of install.sh's output stamped with the guest's uptime (where its time goes)
bash install.sh 2>&1 | while IFS= read -r line; do
  echo "$(cut -d' ' -f1 /proc/uptime) $line"; done >/mnt/out/install.log
echo "${{PIPESTATUS[0]}}" >/mnt/out/install.rc
say "install.sh done"
grep -a '==>' /mnt/out/install.log >/dev/console
run_suite() {{  # name, matrix release (tests/harness.py LXCFS_TEST_CONTAINERD), tests...
  local name=$1 release=$2; shift 2
  say "first test ($name)"
  LXCFS_TEST_CONTAINERD=$release {venv}/bin/python -m pytest -p no:cacheprovider -v -rfEs \\
    -k "not runc" --junitxml=/mnt/out/junit-$name.xml "$@" 2>&1 \\
    | tee /mnt/out/pytest-$name.log \\
    | grep --line-buffered -E ' (PASSED|FAILED|ERROR|SKIPPED)' >/dev/console
  echo "${{PIPESTATUS[0]}}" >/mnt/out/pytest-$name.rc
  say "suite done ($name)"
}}
run_suite containerd-1.6 1.6 {subset}
if [[ -x {peer2}/containerd ]]; then
  {peer2}/containerd --version >/mnt/out/containerd-2.version
  run_suite containerd-2 2.4.2 {subset2}
fi
"""


@pytest.fixture(scope="module")
def guest_run():
    if os.geteuid() != 0:
        pytest.fail(
            "the guest needs root (qemu, the image build): sudo ./install.sh --test", pytrace=False
        )
    if shutil.which(guest_vm.QEMU) is None:
        pytest.fail(
            "qemu-system-x86_64 missing: apt-get install qemu-system-x86 (install.sh --test does)",
            pytrace=False,
        )
    t0 = time.monotonic()
    try:
        image = guest_vm.build_image()
    except guest_vm.GuestError as e:
        pytest.fail(str(e), pytrace=False)
    built = time.monotonic() - t0
    accel = "kvm" if guest_vm.kvm_runs(image) else "tcg"
    if KEEP.exists():
        shutil.rmtree(KEEP)
    job = JOB.format(venv=VENV, subset=" ".join(SUBSET), subset2=" ".join(SUBSET_2), peer2=PEER2)
    run = guest_vm.boot(image, job, KEEP, accel=accel, timeout=2400)
    report = [
        f"image {image} (ready in {built:.0f} s), accel {accel}, "
        f"guest wall {run.wall:.0f} s, qemu exit {run.returncode}"
    ]
    report += [f"  guest uptime {t:7.1f} s  {what}" for what, t in run.marks.items()]
    (KEEP / "summary.txt").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    return run


def _inner(run: guest_vm.GuestRun, name: str) -> None:
    results = run.junit(f"junit-{name}.xml")
    log = run.out / f"pytest-{name}.log"
    if not results:
        tail = log.read_text()[-3000:] if log.exists() else "(no pytest log)"
        install = run.out / "install.log"
        pytest.fail(
            f"no results from the guest for {name} (qemu exit {run.returncode}, "
            f"wall {run.wall:.0f} s)\n--- pytest log tail:\n{tail}\n--- install.log "
            f"tail:\n{install.read_text()[-1500:] if install.exists() else '-'}\n"
            f"--- console tail:\n{run.console[-3000:]}",
            pytrace=False,
        )
    lines = [f"{r.outcome:7} {r.seconds:6.1f} s  {r.nodeid}" for r in results]
    print(f"inner results ({name}, {sum(r.seconds for r in results):.0f} s):")
    print("\n".join(lines))
    bad = [r for r in results if r.outcome in ("failed", "error")]
    if bad:
        pytest.fail(
            f"{len(bad)} of {len(results)} tests failed in the cgroup v2 guest "
            f"({name}):\n"
            + "\n".join(f"  {r.nodeid}\n    {r.message[:600]}" for r in bad)
            + f"\n(full log: {log})",
            pytrace=False,
        )


def test_guest_boots_cgroup_v2_only(guest_run):
    assert "init started" in guest_run.marks, guest_run.console[-3000:]
    assert "first test (containerd-1.6)" in guest_run.marks, guest_run.console[-3000:]
    assert (guest_run.out / "install.rc").read_text().strip() == "0", (
        guest_run.out / "install.log"
    ).read_text()[-3000:]


def test_suites_in_guest_containerd_1_6(guest_run):
    _inner(guest_run, "containerd-1.6")


def test_suites_in_guest_containerd_2(guest_run):
    if not (guest_run.out / "containerd-2.version").exists():
        pytest.skip(
            "no containerd 2.x binaries were available when the image was built "
            "(/var/cache/containerd-shim-lxcfs/peers/containerd-v2.4.2/bin)"
        )
    _inner(guest_run, "containerd-2")

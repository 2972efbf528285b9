#!/bin/bash
# PID 1 of the cgroup v2 test guest (tests/guest/build_image.sh installs it as /sbin/guest-init).
# No systemd: mount what the suites need (cgroup2 only), unpack the checkout from the read-only
# disk /dev/vdb (a tar the host wrote; Debian's cloud kernel has no 9p, and a copy is what the
# tests need anyway: they write next to the code), run its .guest-job.sh, write everything left
# in /mnt/out as a tar onto /dev/vdc and power off. Progress goes to the serial console as
# "GUEST: ..." lines (the host's pytest reads them).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
say() { echo "GUEST: $* (uptime $(cut -d' ' -f1 /proc/uptime))" >/dev/console; }
off() {
  say "writing results"
  tar -C /mnt/out -cf /dev/vdc . 2>/dev/console
  sync; echo o >/proc/sysrq-trigger; sleep 30
}
trap off EXIT

# the initramfs hands over /proc, /sys, /dev and /run already mounted
m() { mountpoint -q "${@: -1}" || mount "$@"; }
m -t proc proc /proc
m -t sysfs sysfs /sys
m -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
m -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
m -t tmpfs tmpfs /dev/shm
m -t tmpfs -o mode=755 tmpfs /run
m -t tmpfs -o mode=1777 tmpfs /tmp
m -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
say "init started"
for m in fuse overlay; do modprobe "$m" || say "modprobe $m failed"; done
m -t fusectl fusectl /sys/fs/fuse/connections
ip link set lo up 2>/dev/null || busybox ip link set lo up
hostname guest
# every controller for the children (the root cgroup is exempt from the no-internal-processes rule)
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || say "cannot enable $c"
done

mkdir -p /mnt/out /root/src
tar -C /root/src -xf /dev/vdb || { say "no checkout on /dev/vdb"; exit 1; }
say "checkout copied; cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
uname -a >/mnt/out/uname.txt
if [[ -r /root/src/.guest-job.sh ]]; then
  cd /root/src && . ./.guest-job.sh
else
  say "no .guest-job.sh in the checkout"
fi
say "done"

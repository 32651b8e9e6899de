#!/bin/sh
# PID 1 of the oomlab guest: mount what the experiments read, then hand over to the guest agent.
export PATH=/usr/bin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The links udev makes on a system: runc and crun re-execute themselves from a memfd, which on 5.10 needs /dev/fd.
ln -s /proc/self/fd /dev/fd && ln -s fd/0 /dev/stdin && ln -s fd/1 /dev/stdout && ln -s fd/2 /dev/stderr
mount -t tmpfs -o mode=1777 tmpfs /tmp
# oomlab.cgroup2=OPTS on the kernel command line: mount options (e.g. memory_localevents), to try them.
cg2opts=$(sed -n 's/.*oomlab\.cgroup2=\([^ ]*\).*/\1/p' /proc/cmdline)
mount -t cgroup2 ${cg2opts:+-o "$cg2opts"} cgroup2 /sys/fs/cgroup
# What systemd does on a host: let child cgroups use the memory controller.
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
ip link set lo up
# The agent's channel: a virtio-serial port when the kernel command line says so (the modules, where the
# kernel has virtio as modules, come in a second archive), else ttyS1, raw so bytes pass unchanged.
if grep -q 'oomlab\.channel=virtio' /proc/cmdline; then
	if [ -f /oomlab-modules/order ]; then
		for m in $(cat /oomlab-modules/order); do insmod "/oomlab-modules/$m.ko" || echo "oomlab: insmod $m failed"; done
	fi
else
	stty -F /dev/ttyS1 raw -echo
fi
OOMLAB_INIT_READY=$(cut -d' ' -f1 /proc/uptime)
export OOMLAB_INIT_READY
echo "oomlab: /init ready at $OOMLAB_INIT_READY s of guest uptime"
cd /oomlab && node .oomlab/guest/agent.mjs
status=$?
if [ "$status" -ne 0 ]; then
	echo "oomlab: the guest agent exited with status $status"
	# The console is quiet (loglevel=3): say here whether the guest itself ran out of memory.
	dmesg | grep -E 'Out of memory: Killed process' | tail -n 3
fi
# -no-reboot on the QEMU side turns this into QEMU's exit.
reboot -f

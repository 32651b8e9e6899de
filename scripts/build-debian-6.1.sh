#!/usr/bin/env bash
# A kernel built from a source tree, as a kernel engineer's would be: Debian's linux-source-6.1 tarball,
# unpacked into oomlab's cache and built out of tree with the project's fragment, then spec 02 on it.
# Cached by its key: a machine that built it before reuses it in a second; a fresh one builds it first
# (about 15 minutes on two idle cores). Usage: scripts/build-debian-6.1.sh [REPORT-DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
TARBALL=/usr/src/linux-source-6.1.tar.xz
# The tree and what building it needs (apt-get: Debian or Ubuntu).
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  linux-source-6.1 gcc make flex bison bc libelf-dev libssl-dev xz-utils >/dev/null
node bin/oomlab.mjs kernel build "$TARBALL"
node bin/oomlab.mjs reproduce --kernel-src "$TARBALL" --report "${1:-reports/linux-source-6.1}" 02-

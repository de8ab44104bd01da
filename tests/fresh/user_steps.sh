#!/usr/bin/env bash
# What a user does with petrel's source on a fresh Debian 12 / Raspberry Pi OS machine,
# and nothing more: ports/debian/install-deps (then a check that every program the
# tests and scripts call is installed), the release build, cmake --install, then
# programs built against the installed tree with pkg-config alone (with and without
# --static; tests/install/pkgconfig_link_test.sh), the installed petreld and petrelctl
# started once, and the busybox image examples/run makes. Then the same install once
# more with PETREL_DLOPEN_LIBARCHIVE=OFF, whose petrel-crun.pc pulls in libarchive's
# own dependencies. Each step prints its time; a failing step prints the end of its
# output. tests/fresh/debian_chroot.sh runs this inside a minbase chroot, as root, so
# that a package missing from install-deps fails there and not on a user's machine. It
# needs no root feature beyond apt-get (no container is started).
# Usage: tests/fresh/user_steps.sh   (from any directory; works on the tree it is in)
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc)
log=$(mktemp /tmp/petrel-user-steps.XXXXXX)
trap 'rm -f "$log"' EXIT

# step TITLE COMMAND...: runs COMMAND with its output kept in $log; prints the title and
# the time taken, or the last lines of the output and fails.
step() {
  local title=$1 start=$SECONDS
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "user_steps: failed: $title ($*)" >&2
    exit 1
  fi
  printf '  %-58s %4ds\n' "$title" $((SECONDS - start))
}

step "ports/debian/install-deps" ports/debian/install-deps
grep '^install-deps: ' "$log" | sed 's/^/    /' || true

# The programs petrel's tests and scripts call (tests/, examples/run,
# runtime-adapters/*/tests, examples/images/make-busybox-image), which install-deps or
# minbase itself must provide: one missing fails here, not in a user's test run. The
# host-only tools of tests/run (debootstrap, zstd: install-deps --host-tools) are not.
tools=(
  cmake ctest make g++ c++ clang clang++ pkg-config  # the presets; pkgconfig_link_test.sh
  crun runc busybox                   # real containers; busybox-static for the test image
  curl socat jq timeout stat          # petreld_fake_test.sh, petrelctl_test.sh
  pgrep                               # petreld_idle_bench.sh
  valgrind setarch                    # tests/run: callgrind counts, TSan without ASLR
  findmnt unshare                     # tests/fresh/debian_chroot.sh
  awk sed grep head tail sort wc seq date sleep xargs umount mktemp dirname  # the scripts
  tar gzip sha256sum find cut ln touch  # make-busybox-image
  setsid id nproc                     # examples/run
  ip ss iptables iptables-save        # tests/lib/netns.sh, network_test.sh, the bridge
  nsenter shuf                        # examples/local-cluster, petreld_fake_test.sh
  getconf mkfifo rmdir basename tr    # tests/cluster/runc_cluster_test.sh, local-cluster down
  strace setpriv getent               # petreld_access_test.sh, sync_test.sh
  docker-registry skopeo dd openssl tee  # tests/integration/registry_pull_test.sh
  htpasswd base64                     # tests/integration/registry_auth_test.sh
  mountpoint sync                     # tests/integration/power_cut_test.sh (with dropfs)
  stdbuf                              # tests/lib/registry.sh's cutting proxy
  containerd ctr protoc-c             # runtime-adapters/containerd, containerd_grpc_test.sh
  dockerd                             # runtime-adapters/docker: tests/lib/dockerd.sh
)
# CNI's plugins, which petrel runs for the bridge network (ports/linux/cni.cpp).
plugins=(loopback bridge host-local portmap)
check_tools() {
  local missing=()
  for tool in "${tools[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  for plugin in "${plugins[@]}"; do [ -x "/usr/lib/cni/$plugin" ] || missing+=("/usr/lib/cni/$plugin"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "not installed after ports/debian/install-deps: ${missing[*]}"
  return 1
}
step "the ${#tools[@]} programs the tests and scripts call are installed" check_tools
step "cmake --preset release" cmake --preset release
step "cmake --build --preset release -j$jobs" cmake --build --preset release -j"$jobs"
step "cmake --install build/release --prefix /opt/petrel" \
  cmake --install build/release --prefix /opt/petrel
step "installed petreld --version, petrelctl --help" \
  sh -c '/opt/petrel/bin/petreld --version && /opt/petrel/bin/petrelctl --help'
tests/install/pkgconfig_link_test.sh /opt/petrel
step "examples/images/make-busybox-image (examples/run's image)" \
  examples/images/make-busybox-image /tmp/busybox.tar

echo "  and with PETREL_DLOPEN_LIBARCHIVE=OFF (libarchive linked, not loaded):"
step "cmake --preset release -DPETREL_DLOPEN_LIBARCHIVE=OFF" \
  cmake --preset release -DPETREL_DLOPEN_LIBARCHIVE=OFF
step "cmake --build --preset release -j$jobs" cmake --build --preset release -j"$jobs"
step "cmake --install build/release --prefix /opt/petrel-archive" \
  cmake --install build/release --prefix /opt/petrel-archive
tests/install/pkgconfig_link_test.sh /opt/petrel-archive

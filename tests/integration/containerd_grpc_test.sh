#!/usr/bin/env bash
# The containerd adapter's gRPC transport against a real containerd (issue 16): Debian's
# containerd with a root, state, sockets and config of its own under a temp dir (never
# /run/containerd, /var/lib/containerd or /opt/containerd, so a system containerd is
# left alone), a namespace made with its ctr, and the cases of
# petrel_containerd_grpc_test (runtime-adapters/containerd/tests/grpc_test.cpp): Version,
# Namespaces/List and Create, Events/Subscribe as a stream stopped from another thread,
# Containers (metadata: create, list by label, get, delete), Tasks (busybox processes of
# Debian's busybox-static under runc: create, start, kill, wait, delete, their exit
# events), the exit watcher across a restart of containerd, a method containerd does
# not have, the answer size bound; or, given petrel_containerd_driver_test
# (tests/driver_test.cpp), ContainerdDriver running bundles as tasks. containerd
# (tests/lib/containerd.sh) is stopped and the dir removed at the end, also on failure. A missing containerd, ctr or
# busybox is a failure, never a skip. (containerd 1.6's shims keep their sockets in
# /run/containerd/s whatever containerd's state dir: that much of /run/containerd the
# tasks use; runc's state goes where each container's runtime options say.)
#   containerd_grpc_test.sh TEST_BINARY
set -euo pipefail
binary=${1:?usage: containerd_grpc_test.sh TEST_BINARY}
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib/containerd.sh
. "$src/tests/lib/containerd.sh"
dir=$(mktemp -d /tmp/petrel-containerd.XXXXXX)
socket=$(containerd_socket "$dir")

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
cleanup() {
  containerd_stop "$dir" || true
  containerd_kill_shims "$dir"  # a failed case's tasks
  rm -rf "$dir"
}
trap cleanup EXIT

command -v ctr >/dev/null || fail "no ctr (it comes with Debian's containerd)"
containerd_start "$dir" || fail "containerd did not start"
ctr --address "$socket" namespaces create petrel-test petrel=test ||
  fail "ctr namespaces create petrel-test"
PETREL_TEST_CONTAINERD_SOCKET=$socket \
  PETREL_TEST_CONTAINERD_RESTART="bash $src/tests/lib/containerd.sh restart $dir" "$binary" ||
  fail "$(basename "$binary") failed (containerd log: $(tail -5 "$dir/containerd.log"))"
containerd_stop "$dir" || fail "containerd did not stop cleanly: $(tail -5 "$dir/containerd.log")"
echo "PASS"

#!/usr/bin/env bash
# The containerd adapter's gRPC transport against a real containerd (issue 16): Debian's
# containerd with a root, state, sockets and config of its own under a temp dir (never
# /run/containerd, /var/lib/containerd or /opt/containerd, so a system containerd is
# left alone), a namespace made with its ctr, and the cases of
# petrel_containerd_grpc_test (runtime-adapters/containerd/tests/grpc_test.cpp): Version,
# Namespaces/List and Create, Events/Subscribe as a stream stopped from another thread,
# Containers (metadata: create, list by label, get, delete), Tasks (busybox processes of
# Debian's busybox-static under runc: create, start, kill, wait, delete, their exit
# events), a method containerd does not have, the answer size bound. containerd is
# stopped and the dir removed at the end, also on failure. A missing containerd, ctr or
# busybox is a failure, never a skip. (containerd 1.6's shims keep their sockets in
# /run/containerd/s whatever containerd's state dir: that much of /run/containerd the
# tasks use; runc's state goes where each container's runtime options say.)
#   containerd_grpc_test.sh TEST_BINARY
set -euo pipefail
binary=${1:?usage: containerd_grpc_test.sh TEST_BINARY}
dir=$(mktemp -d /tmp/petrel-containerd.XXXXXX)
socket=$dir/containerd.sock
containerd_pid=""

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
cleanup() {
  if [ -n "$containerd_pid" ]; then
    kill "$containerd_pid" 2>/dev/null || true
    wait "$containerd_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

command -v containerd >/dev/null || fail "no containerd (apt-get install containerd)"
command -v ctr >/dev/null || fail "no ctr (it comes with Debian's containerd)"
# Without CRI (Kubernetes' API, the heaviest plugin) and without its debug socket; opt's
# default path is /opt/containerd.
cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$socket"
[ttrpc]
  address = "$socket.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
TOML
containerd --config "$dir/config.toml" --root "$dir/root" --state "$dir/state" \
  --address "$socket" >"$dir/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 100); do
  [ -S "$socket" ] && break
  kill -0 "$containerd_pid" 2>/dev/null ||
    fail "containerd exited: $(tail -5 "$dir/containerd.log")"
  sleep 0.1
done
[ -S "$socket" ] || fail "no socket $socket after 10 s: $(tail -5 "$dir/containerd.log")"
ctr --address "$socket" namespaces create petrel-test petrel=test ||
  fail "ctr namespaces create petrel-test"
PETREL_TEST_CONTAINERD_SOCKET=$socket "$binary" ||
  fail "petrel_containerd_grpc_test failed (containerd log: $(tail -5 "$dir/containerd.log"))"
kill "$containerd_pid"
wait "$containerd_pid" || fail "containerd did not stop cleanly: $(tail -5 "$dir/containerd.log")"
containerd_pid=""
echo "PASS"

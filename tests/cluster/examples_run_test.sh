#!/usr/bin/env bash
# examples/run, the README's main command, end to end on crun, twice (a user runs it
# again): with PETREL_BUILD_DIR (this build's petreld and petrelctl: nothing installed
# or built) and a state dir, socket, run dir and local-cluster dir of its own, so that
# it disturbs no other petreld or local cluster. Each run must
#  1. show hello's container restarted after kill -9 ("petrel restarted it: new pid N");
#  2. show beacon Running on one node of a 3-node local cluster, that node's power cut,
#     and beacon Running on another node within $MOVE_S s ("beacon is running again on
#     node-J after X.Y s"), get nodes listing the dead node Lost, then the node Ready
#     again after its start;
# the second run must use the petreld the first left running and remove the first run's
# local cluster before making its own. Then everything is removed: hello deleted (its
# container stopped), petreld stopped, local-cluster down; no process names the test's
# directory and no namespace of the cluster is left.
# Not root: FAIL (a test that cannot run did not pass).
#
# Usage: examples_run_test.sh BUILD_DIR   (a CMake build tree with petreld and petrelctl)
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
ctl=$build/examples/petrelctl/petrelctl
lc=$src/examples/local-cluster
MOVE_S=${MOVE_S:-15}
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"   # wait_for, petreld_stop
# shellcheck source=tests/lib/cluster.sh
. "$src/tests/lib/cluster.sh"   # pid_running

[ "$(id -u)" -eq 0 ] || { echo "FAIL: needs root (crun, namespaces)" >&2; exit 1; }

dir=$(mktemp -d /tmp/petrel-examples-run.XXXXXX)
export PETREL_BUILD_DIR=$build PETREL_RUNTIME=crun PETREL_STATE_DIR=$dir/state \
  PETREL_SOCKET=$dir/petrel.sock PETREL_RUN_DIR=$dir PETREL_CLUSTER_DIR=$dir/cluster \
  PETREL_NODE_NAME=examples-run-test-$$
pid_gone() { ! pid_running "$1"; }
# node_cgroups: the cgroups of the containers the cluster's nodes made (crun makes
# /petrel/ID on cgroup v2, petrel or runc /CONTROLLER/petrel/ID on v1), which nothing
# removes when a node's processes are killed, as local-cluster kill and down do.
node_cgroups() {
  local c id
  for c in "$dir"/cluster/node-*/state/oci/containers/*/; do
    [ -d "$c" ] || continue
    id=$(basename "$c")
    compgen -G "/sys/fs/cgroup/petrel/$id" || true
    compgen -G "/sys/fs/cgroup/*/petrel/$id" || true
  done
}
# stop_all: the local cluster down (and its containers' cgroups removed when empty),
# hello deleted (its container stopped), petreld stopped; 1 when something failed.
stop_all() {
  local p rc=0 cg cgroups
  cgroups=$(node_cgroups)
  "$lc" down --dir "$dir/cluster" || rc=1
  for cg in $cgroups; do [ ! -d "$cg" ] || rmdir "$cg" || echo "cgroup $cg left (in use?)" >&2; done
  pid=$(cat "$dir/petreld.pid" 2>/dev/null) || return "$rc"
  p=$pid
  petreld_stop hello
  wait_for 10 pid_gone "$p" || { echo "petreld (pid $p) did not stop on SIGTERM" >&2; kill -KILL "$p"; rc=1; }
  rm -f "$dir/petreld.pid"
  return "$rc"
}
cleanup() {
  stop_all >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
# processes_of DIR: processes whose command line names DIR.
processes_of() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$1/" && echo "${p#/proc/}"
  done
  return 0
}

# check_run N OUTPUT: what run N printed shows every step.
check_run() {
  local n=$1 out=$2 at now secs victim
  grep -qE '^petrel restarted it: new pid [0-9]+$' <<<"$out" || fail "run $n: no restart of hello shown"
  at=$(sed -n 's/^beacon runs on \(node-[1-3]\)$/\1/p' <<<"$out")
  [ -n "$at" ] || fail "run $n: no 'beacon runs on node-K'"
  read -r now secs < <(sed -n 's/^beacon is running again on \(node-[1-3]\) after \([0-9]*\.[0-9]\) s$/\1 \2/p' <<<"$out") || true
  [ -n "${secs:-}" ] || fail "run $n: no 'beacon is running again on node-J after X.Y s'"
  [ "$now" != "$at" ] || fail "run $n: beacon 'running again' on $at, the node powered off"
  awk -v s="$secs" -v max="$MOVE_S" 'BEGIN { exit !(s <= max) }' ||
    fail "run $n: beacon took $secs s to run on another node (more than $MOVE_S s)"
  victim=$at
  grep -qE "^$victim +[a-z]+ +Lost " <<<"$out" || fail "run $n: get nodes never listed $victim Lost"
  grep -qE "^$victim is Ready again after [0-9]+\.[0-9] s" <<<"$out" || fail "run $n: $victim not shown Ready again"
  echo "RESULT: run $n: beacon moved from $at to $now in $secs s"
}

for n in 1 2; do
  echo "== examples/run, run $n"
  t0=$(ms_now)
  out=$("$src/examples/run" 2>&1) || { echo "$out"; fail "examples/run (run $n) exited non-zero"; }
  echo "$out"
  echo "== run $n took $(($(ms_now) - t0)) ms"
  check_run "$n" "$out"
  [ -f "$dir/cluster/cluster.env" ] || fail "run $n left no local cluster in $dir/cluster"
done
grep -q "petreld already answers on $dir/petrel.sock: using it" <<<"$out" ||
  fail "run 2 did not use the petreld run 1 left"
grep -q "a local cluster of an earlier run is in $dir/cluster: removing it" <<<"$out" ||
  fail "run 2 did not remove run 1's local cluster"

echo "== cleanup: hello deleted, petreld stopped, local cluster down"
stop_all || fail "cleanup: local-cluster down or stopping petreld failed"
left=$(processes_of "$dir")
[ -z "$left" ] || fail "processes left that name $dir: $left"
echo "PASS"

#!/usr/bin/env bash
# containerd restarted under petreld (issue 16), with a containerd of the test's own
# (tests/lib/containerd.sh; CTest's shared one must not go down under other suites):
# while containerd is down petreld still answers and its containers keep running; a
# container killed meanwhile is restarted once containerd is back (its exit read from
# containerd's task, the event having been lost), the other is not touched; petreld
# says when it stops and starts hearing containerd's exits; a workload applied after
# the restart runs; a task whose shim is killed is restarted, once; deleting everything
# leaves nothing in containerd. A missing
# containerd is a failure, never a skip.
#   containerd_restart_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: containerd_restart_test.sh PETRELD PETRELCTL}
ctl=${2:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-ctd-restart.XXXXXX)
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
pid=""

# shellcheck source=tests/lib/containerd.sh
. "$src/tests/lib/containerd.sh"
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
export PETREL_TEST_CONTAINERD_SOCKET=$dir/ctd/containerd.sock

fail() {
  echo "FAIL: $*" >&2
  "$ctl" get workloads -o wide >&2 || true
  echo "--- petreld log (tail)" >&2
  tail -40 "$dir/petreld.log" >&2 || true
  echo "--- containerd log (tail)" >&2
  tail -10 "$dir/ctd/containerd.log" >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  runtime_cleanup containerd "$state" "$dir"
  containerd_stop "$dir/ctd" || true
  containerd_kill_shims "$dir/ctd"
  rm -rf "$dir"
}
trap cleanup EXIT

mkdir "$dir/ctd"
containerd_start "$dir/ctd" || fail "containerd did not start"
busybox_image "$dir/busybox.tar"
cat >"$dir/w.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: survivor}
spec:
  replicas: 2
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
  backoff: {initial: 200ms}
YAML
runtime_flags containerd || fail "runtime_flags"
petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" \
  --node-name ctd-restart --log-level debug || fail "petreld did not answer"
"$ctl" apply -f "$dir/w.yaml" >/dev/null || fail "apply"
json() { "$ctl" get workloads "${1:-survivor}" -o json; }
ready_is() { [ "$(json | jq '.items[0].readyReplicas')" = "$1" ]; }
wait_for 30 ready_is 2 || fail "timed out waiting for 2 ready replicas"
read -r p0 p1 <<<"$(json | jq -r '[.items[0].replicas[].pid] | join(" ")')"

# containerd goes away: petreld answers, the containers run on; one is killed.
containerd_stop "$dir/ctd" || fail "containerd did not stop"
wait_for 10 grep -q "not hearing containerd's exits" "$dir/petreld.log" ||
  fail "petreld did not say it lost containerd's exits"
sleep 1
petreld_answers || fail "petreld does not answer while containerd is down"
kill -0 "$p0" && kill -0 "$p1" || fail "containers died with containerd"
kill -9 "$p1"
sleep 2
petreld_answers || fail "petreld does not answer while containerd is down"

# containerd is back: the killed one is restarted, the other left alone.
containerd_start "$dir/ctd" || fail "containerd did not start again"
restarted() {
  [ "$(json | jq '.items[0].replicas[1] | .restarts == 1 and .phase == "Running" and .ready')" = true ]
}
wait_for 60 restarted || fail "timed out waiting for replica 1 restarted: $(json)"
read -r q0 q1 <<<"$(json | jq -r '[.items[0].replicas[].pid] | join(" ")')"
[ "$q0" = "$p0" ] || fail "replica 0 changed: pid $p0 became $q0"
[ "$(json | jq '.items[0].replicas[0].restarts')" = 0 ] || fail "replica 0 was restarted"
[ "$q1" != "$p1" ] && kill -0 "$q1" || fail "replica 1 runs no new process ($p1 -> $q1)"
wait_for 10 grep -q "hearing containerd's exits again" "$dir/petreld.log" ||
  fail "petreld did not say it hears containerd's exits again"

# A task's shim dies (kill -9): containerd reports the task gone, petreld restarts the
# replica, and one process runs for it, not two; the other replica is left alone.
shim=$(pgrep -f "containerd-shim-runc-v2 .*-id [^ ]*survivor_1 .*-address $PETREL_TEST_CONTAINERD_SOCKET( |\$)") ||
  fail "no shim of replica 1"
kill -9 "$shim"
restarted_again() {
  [ "$(json | jq '.items[0].replicas[1] | .restarts == 2 and .phase == "Running" and .ready')" = true ]
}
wait_for 60 restarted_again || fail "timed out waiting for replica 1 restarted after its shim died: $(json)"
read -r r0 r1 <<<"$(json | jq -r '[.items[0].replicas[].pid] | join(" ")')"
[ "$r0" = "$p0" ] || fail "replica 0 changed when replica 1's shim died: pid $p0 became $r0"
[ "$r1" != "$q1" ] && kill -0 "$r1" || fail "replica 1 runs no new process ($q1 -> $r1)"
sleep 1
! kill -0 "$q1" 2>/dev/null || fail "replica 1's old process $q1 lives on beside $r1"
runs=$(pgrep -c -f "while true; do sleep 1; done") || true
[ "$runs" = 2 ] || fail "$runs container processes for 2 replicas after the shim died"

# The adapter works as before: a new workload runs, a kill is heard at once.
sed 's/name: survivor/name: later/; s/replicas: 2/replicas: 1/' "$dir/w.yaml" >"$dir/later.yaml"
"$ctl" apply -f "$dir/later.yaml" >/dev/null || fail "apply later"
wait_for 30 bash -c "[ \"\$('$ctl' get workloads later -o json | jq '.items[0].readyReplicas')\" = 1 ]" ||
  fail "timed out waiting for later running"
for w in survivor later; do "$ctl" delete workload "$w" >/dev/null || fail "delete $w"; done
for w in survivor later; do wait_for 30 petreld_gone "$w" || fail "timed out waiting for $w gone"; done
left=$(ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" -n petrel containers ls -q)
[ -z "$left" ] || fail "containerd still has containers: $left"
kill -TERM "$pid"
wait "$pid" || fail "petreld exited with $? on SIGTERM"
pid=""
containerd_stop "$dir/ctd" || fail "containerd did not stop cleanly"
echo "PASS: containerd restarted under petreld; the exit it missed is read, nothing else restarts"

#!/usr/bin/env bash
# dockerd restarted under petreld (issue 15), with a containerd and a dockerd of the
# test's own (tests/lib/dockerd.sh; CTest's shared one must not go down under other
# suites), dockerd with live-restore (containers outlive it, as a gateway keeps them):
# while dockerd is down petreld still answers and its containers keep running; a
# container killed meanwhile is restarted once dockerd is back, the other is not
# touched; the output petrel follows of the one that lived on has every line once,
# none lost or repeated across the reconnect; a workload applied after the restart runs;
# deleting everything leaves nothing in dockerd. A missing dockerd is a failure, never a
# skip.
#   docker_restart_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: docker_restart_test.sh PETRELD PETRELCTL}
ctl=${2:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-docker-restart.XXXXXX)
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
pid=""

# shellcheck source=tests/lib/containerd.sh
. "$src/tests/lib/containerd.sh"
# shellcheck source=tests/lib/dockerd.sh
. "$src/tests/lib/dockerd.sh"
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
export PETREL_TEST_DOCKERD_SOCKET=$dir/docker/docker.sock

fail() {
  echo "FAIL: $*" >&2
  "$ctl" get workloads -o wide >&2 || true
  echo "--- petreld log (tail)" >&2
  tail -40 "$dir/petreld.log" >&2 || true
  echo "--- dockerd log (tail)" >&2
  tail -10 "$dir/docker/dockerd.log" >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  runtime_cleanup docker "$state" "$dir"
  dockerd_remove_containers "$dir/docker"
  dockerd_stop "$dir/docker" || true
  containerd_stop "$dir/ctd" || true
  containerd_kill_shims "$dir/ctd"
  dockerd_unmount "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$dir/ctd" "$dir/docker"
containerd_start "$dir/ctd" || fail "containerd did not start"
echo '{"live-restore": true}' >"$dir/docker/daemon.json"
dockerd_start "$dir/docker" "$dir/ctd/containerd.sock" || fail "dockerd did not start"
busybox_image "$dir/busybox.tar"
cat >"$dir/w.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: survivor}
spec:
  replicas: 2
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=\$((i+1)); echo \$i; sleep 0.05; done"]
  backoff: {initial: 200ms}
  network: none
YAML
runtime_flags docker || fail "runtime_flags"
petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" \
  --node-name docker-restart --log-level debug || fail "petreld did not answer"
"$ctl" apply -f "$dir/w.yaml" >/dev/null || fail "apply"
json() { "$ctl" get workloads "${1:-survivor}" -o json; }
ready_is() { [ "$(json | jq '.items[0].readyReplicas')" = "$1" ]; }
wait_for 30 ready_is 2 || fail "timed out waiting for 2 ready replicas"
read -r p0 p1 <<<"$(json | jq -r '[.items[0].replicas[].pid] | join(" ")')"

# dockerd goes away: petreld answers, the containers run on; one is killed.
dockerd_stop "$dir/docker" || fail "dockerd did not stop"
sleep 1
petreld_answers || fail "petreld does not answer while dockerd is down"
kill -0 "$p0" && kill -0 "$p1" || fail "containers died with dockerd (live-restore)"
kill -9 "$p1"
sleep 2
petreld_answers || fail "petreld does not answer while dockerd is down"

# dockerd is back: the killed one is restarted, the other left alone.
dockerd_start "$dir/docker" "$dir/ctd/containerd.sock" || fail "dockerd did not start again"
restarted() {
  [ "$(json | jq '.items[0].replicas[1] | .restarts == 1 and .phase == "Running" and .ready')" = true ]
}
wait_for 60 restarted || fail "timed out waiting for replica 1 restarted: $(json)"
read -r q0 q1 <<<"$(json | jq -r '[.items[0].replicas[].pid] | join(" ")')"
[ "$q0" = "$p0" ] || fail "replica 0 changed: pid $p0 became $q0"
[ "$(json | jq '.items[0].replicas[0].restarts')" = 0 ] || fail "replica 0 was restarted"
[ "$q1" != "$p1" ] && kill -0 "$q1" || fail "replica 1 runs no new process ($p1 -> $q1)"

# Replica 0 counted on while dockerd was away and petrel reconnected: each number once,
# in order, from 1.
sleep 1
"$ctl" logs survivor --replica 0 >"$dir/counted" || fail "logs of replica 0"
awk 'NR != $1 { printf "line %d says %s\n", NR, $0; bad = 1; exit } END { exit bad }' "$dir/counted" ||
  fail "replica 0's output lost or repeated a line: $(awk 'NR != $1 { print NR ": " $0; exit }' "$dir/counted")"
[ "$(wc -l <"$dir/counted")" -gt 40 ] || fail "replica 0 said only $(wc -l <"$dir/counted") lines"

# The adapter works as before: a new workload runs.
sed 's/name: survivor/name: later/; s/replicas: 2/replicas: 1/' "$dir/w.yaml" >"$dir/later.yaml"
"$ctl" apply -f "$dir/later.yaml" >/dev/null || fail "apply later"
wait_for 30 bash -c "[ \"\$('$ctl' get workloads later -o json | jq '.items[0].readyReplicas')\" = 1 ]" ||
  fail "timed out waiting for later running"
for w in survivor later; do "$ctl" delete workload "$w" >/dev/null || fail "delete $w"; done
for w in survivor later; do wait_for 30 petreld_gone "$w" || fail "timed out waiting for $w gone"; done
left=$(docker_api '/containers/json?all=1' | jq -r '.[].Names[0]')
[ -z "$left" ] || fail "dockerd still has containers: $left"
kill -TERM "$pid"
wait "$pid" || fail "petreld exited with $? on SIGTERM"
pid=""
echo "PASS: dockerd restarted under petreld; the exit it missed is heard, nothing else restarts, no line lost or repeated"

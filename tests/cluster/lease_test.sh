#!/usr/bin/env bash
# Issue 11: an exclusive workload is never started anywhere while its previous node
# could still be running it, also when that node's petreld dies and its containers live
# on. Three petreld as peers in network namespaces (tests/lib/netns.sh), on a real
# runtime (crun, runc, containerd at $PETREL_TEST_CONTAINERD_SOCKET or dockerd at
# $PETREL_TEST_DOCKERD_SOCKET, shared by the three), each with its own --lease-dir:
#  1. form the cluster; an exclusive workload runs on one node, whose lease file is
#     owner-only (0600 in a 0700 dir) and renewed;
#  2. kill -9 of that node's petreld alone (its shim and container live on): the shim
#     (on containerd, the container's logger; on Docker, its lease watcher) kills the
#     container within fenceAfter (1 s) + $DEAD_MARGIN_MS of the kill (timed by the
#     line it writes), says so in the container's runtime.log (containerd: its log;
#     Docker: its lease.log), and the workload runs on another node; every node's runtime is asked every ~50 ms
#     ("<runtime> state", "ctr tasks ls", dockerd's inspect: the runtime's own view, not
#     petrel's) and never two run it at once;
#  3. the killed petreld, restarted, rejoins and leaves the workload where it runs, once.
# Each step prints what it measured.
#
# Usage: lease_test.sh PETRELD PETRELCTL RUNTIME   (exit 77: skipped, not root or no netns)
# Environment: PETREL_TEST_IMAGE=oci-archive:PATH (else built here); PETREL_KEEP=1 keeps
# the nodes' files (path printed).
set -euo pipefail
petreld=$1
ctl=$2
runtime=$3
src=$(cd "$(dirname "$0")/../.." && pwd)
FORM_S=${FORM_S:-30}                  # cluster formed, a workload running
DEAD_MARGIN_MS=${DEAD_MARGIN_MS:-2000}  # beyond fenceAfter, on a busy machine
MOVE_S=${MOVE_S:-20}                  # the workload runs elsewhere after the kill
pid=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/netns.sh
. "$src/tests/lib/netns.sh"
# shellcheck source=tests/lib/cluster.sh
. "$src/tests/lib/cluster.sh"

case $runtime in
  containerd) tools=(jq busybox ctr) ;;
  docker) tools=(jq busybox curl) ;;
  *) tools=(jq busybox "$runtime") ;;
esac
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (ports/debian/install-deps)" >&2; exit 1; }
done
cluster_dir=$(mktemp -d /tmp/petrel-lease-test.XXXXXX)
CLUSTER_RUNTIME=$runtime
rc=0
netns_setup 3 || rc=$?
# Before the namespaces' processes are killed: the containers, with their cgroups and
# the runtime's records, then the files.
cleanup_containers() {
  local i
  for i in 1 2 3; do runtime_cleanup "$runtime" "$(node_state "$i")" "$(node_state "$i")"; done
}
cluster_dir_at_exit
netns_at_exit cleanup_containers  # first: before the files go
[ "$rc" -eq 0 ] || { [ "$rc" -eq "$NETNS_SKIP" ] && echo "SKIP: no network namespaces here"; exit "$rc"; }

fail() {
  echo "FAIL ($runtime): $*" >&2
  cluster_dump 25 1 2 3
  exit 1
}
step() { echo "== $*"; }
note() { echo "  $*"; }

if [ -n "${PETREL_TEST_IMAGE:-}" ]; then
  cp "${PETREL_TEST_IMAGE#oci-archive:}" "$cluster_dir/busybox.tar"
else
  "$src/examples/images/make-busybox-image" "$cluster_dir/busybox.tar" >/dev/null
fi

# runs_in_runtime I: node I's runtime (not petrel) says its replica of lock runs.
runs_in_runtime() {
  if [ "$runtime" = containerd ]; then
    # A `ctr` that fails (containerd slow to answer on a loaded machine) is asked
    # again: its silence is not the task's end. What it said, and how long it took,
    # goes to the test's output, so that a failure here can be told apart.
    local tasks="" _ t0
    for _ in 1 2 3; do
      t0=$(date +%s%N)
      tasks=$(ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" -n petrel tasks ls 2>"$cluster_dir/ctr.err") && break
      echo "  ctr tasks ls failed after $((($(date +%s%N) - t0) / 1000000)) ms: $(head -c 300 "$cluster_dir/ctr.err")" >&2
      sleep 0.1
    done
    grep -Eq "^petrel_n$1_lock_0[[:space:]].*[[:space:]]RUNNING[[:space:]]*\$" <<<"$tasks"
  elif [ "$runtime" = docker ]; then
    docker_api "/containers/petrel_n$1_lock_0/json" 2>/dev/null | jq -e '.State.Running' >/dev/null
  else
    "$runtime" --root "$(node_state "$1")/oci/runtime" state "petrel_n$1_lock_0" 2>/dev/null |
      grep -q '"status": *"running"'
  fi
}
# runs_itself I: node I says it runs lock itself (its own replica, Running).
runs_itself() {
  node_ctl "$1" get workloads lock -o json 2>/dev/null |
    jq -e --arg n "n$1" '.items[0].replicas[0] | .node == $n and .phase == "Running"' >/dev/null
}
owner() { local i; for i in 1 2 3; do runs_itself "$i" && runs_in_runtime "$i" && { echo "$i"; return 0; }; done; return 1; }

echo "$NETNS_ID ($runtime): nodes at $(node_addr 1) $(node_addr 2) $(node_addr 3), files in $cluster_dir"

# ---------------------------------------------------------------------------------
step "1. form, run an exclusive workload; its node's lease is owner-only and renewed"
node_start 1 || fail "n1 did not start"
token=$(cluster_init 1) || fail "petrelctl cluster init on n1"
for i in 2 3; do
  node_start "$i" --join "$(node_addr 1)" --token "$token" || fail "n$i (joining) did not start"
done
wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "3 Ready members and one leader not seen on every node"
cat >"$cluster_dir/lock.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: lock}
spec:
  replicas: 1
  exclusive: true
  image: oci-archive:$cluster_dir/busybox.tar
  command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
  terminationGracePeriod: 2s
YAML
node_ctl 1 apply -f "$cluster_dir/lock.yaml" >/dev/null || fail "apply the exclusive workload"
wait_for "$FORM_S" owner >/dev/null || fail "the exclusive workload does not run"
victim=$(owner)
leases=$cluster_dir/run/petrel
[ "$(stat -c %a "$leases")" = 700 ] || fail "the lease dir is $(stat -c %a "$leases"), not 700"
lease=$(ls "$leases"/n"$victim"-*.lease) || fail "no lease file of n$victim in $leases"
[ "$(stat -c %a "$lease")" = 600 ] || fail "the lease file is $(stat -c %a "$lease"), not 600"
files=("$leases"/*.lease)
[ "${#files[@]}" = 3 ] || fail "not one lease file per node: ${files[*]}"
first=$(cat "$lease")
sleep 0.5
[ "$(cat "$lease")" -gt "$first" ] || fail "n$victim's lease was not renewed in 0.5 s"
note "lock runs on n$victim; lease $lease ($(stat -c %a "$lease")), renewed"

# ---------------------------------------------------------------------------------
step "2. kill -9 petreld on n$victim alone: the shim kills lock, then another node runs it"
kill -9 "${node_pid[$victim]}"
t0=$(ms_now)
node_wait "$victim"
# Outliving petreld is only asked before its lease can have run out (fenceAfter 1 s).
if ! runs_in_runtime "$victim" && [ $(($(ms_now) - t0)) -lt 1000 ]; then
  fail "lock's container on n$victim died with petreld (it must outlive it)"
fi
dead=-1 started=-1 samples=0 where="" slowest=0
while [ $(($(ms_now) - t0)) -lt $((MOVE_S * 1000)) ]; do
  round=$(ms_now)
  count=0 others=""
  for i in 1 2 3; do
    if runs_in_runtime "$i"; then
      count=$((count + 1))
      [ "$i" != "$victim" ] && others="$others n$i"
    fi
  done
  samples=$((samples + 1))
  [ $(($(ms_now) - round)) -gt "$slowest" ] && slowest=$(($(ms_now) - round))
  [ "$count" -le 1 ] || fail "lock runs on $count nodes at once ($(($(ms_now) - t0)) ms after kill -9), as the runtimes say"
  [ "$dead" -lt 0 ] && ! runs_in_runtime "$victim" && dead=$(($(ms_now) - t0))
  if [ "$started" -lt 0 ] && [ -n "$others" ]; then
    started=$(($(ms_now) - t0))
    where=$others
  fi
  # Once it runs elsewhere, a further 2 s of samples.
  [ "$started" -ge 0 ] && [ $(($(ms_now) - t0)) -gt $((started + 2000)) ] && break
  sleep 0.05
done
[ "$dead" -ge 0 ] || fail "lock's container on n$victim still runs ${MOVE_S}s after its petreld was killed"
[ "$started" -ge 0 ] || fail "lock did not run on another node within ${MOVE_S}s of kill -9"
[ "$started" -gt "$dead" ] || fail "lock ran elsewhere ($started ms) before n$victim's container died ($dead ms)"
# When the kill came, by the enforcer's own word: the file it wrote its line into, an
# instant before (crun's shim) or after (the logger, the watcher) its SIGKILL. The
# samples above tell it only as fast as the runtimes answer: on a loaded machine one
# `ctr tasks ls` (every task's shim asked in turn) took seconds.
container_dir=$(node_state "$victim")
case $runtime in
  containerd)
    said=$(grep -l "petrel-logger: lease .* ran out: killed the container" \
      "$container_dir"/containerd/containers/petrel_n"${victim}"_lock_0/log.*) ||
      fail "n$victim's logger did not say why it killed the container"
    ;;
  docker)
    said=$container_dir/docker/containers/petrel_n${victim}_lock_0/lease.log
    grep -q "petrel-lease: lease .* ran out: killed the container" "$said" ||
      fail "n$victim's lease watcher did not say why it killed the container"
    ;;
  *)
    said=$container_dir/oci/containers/petrel_n${victim}_lock_0/runtime.log
    grep -q "lease .* ran out: killing the container" "$said" ||
      fail "n$victim's shim did not say why it killed the container"
    ;;
esac
killed=$(($(stat -c %.3Y "$said" | tr -d .) - t0))
[ "$killed" -le $((1000 + DEAD_MARGIN_MS)) ] ||
  fail "lock's container on n$victim was killed ${killed} ms after kill -9 (bound: fenceAfter 1000 + $DEAD_MARGIN_MS ms; seen dead at ${dead} ms; $samples samples, the slowest ${slowest} ms)"
note "n$victim's container killed ${killed} ms after kill -9 of its petreld (seen dead at ${dead} ms), lock running on$where ${started} ms after ($samples samples of 3 runtimes, the slowest ${slowest} ms, never 2 at once)"

# ---------------------------------------------------------------------------------
step "3. n$victim's petreld restarted: it rejoins and leaves lock where it runs, once"
# Its own replica of the cluster's state may still assign lock to it until raft has
# caught up: it must not start lock while another node reports running it.
node_start "$victim" || fail "n$victim did not restart"
t0=$(ms_now) samples=0
while [ $(($(ms_now) - t0)) -lt 5000 ]; do
  count=0
  for i in 1 2 3; do runs_in_runtime "$i" && count=$((count + 1)); done
  [ "$count" -le 1 ] || fail "lock runs on $count nodes at once, $(($(ms_now) - t0)) ms after n$victim's restart"
  samples=$((samples + 1))
  sleep 0.05
done
wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "n$victim not Ready again after its restart"
[ "$count" = 1 ] || fail "after the restart lock runs on $count nodes"
note "n$victim rejoined; lock runs on n$(owner) alone ($samples samples in the 5 s after the restart)"

node_ctl 1 delete workload lock >/dev/null || fail "delete lock"
gone() { ! node_ctl 1 get workloads lock >/dev/null 2>&1; }
wait_for 30 gone || fail "lock not gone 30 s after delete"
for i in 1 2 3; do node_signal "$i" TERM; done
echo "PASS"

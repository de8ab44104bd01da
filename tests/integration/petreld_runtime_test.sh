#!/usr/bin/env bash
# petreld on a real runtime (crun or runc): kill -9 of petreld leaves the containers
# running; a container that dies while petreld is down is seen as exited and
# restarted; the restarted petreld adopts the rest without duplicates; a deleted
# workload is Terminating until its last container is gone, also across a restart of
# petreld; deleting leaves no container directory, mount, cgroup or runtime record
# behind. The state dir does not exist before petreld starts: petreld makes it. An
# image that is not there is reported as such (phase Pulling, the image's error, its
# own back-off), with no container made, until it appears. A warm standby
# (standbyReplicas) is a created container the runtime never started, kept across a
# kill -9 of petreld, and scaling onto it only starts it. Containers sit below
# --cgroup-parent; one made under an earlier petreld's parent stays there and is
# removed from there.
# On containerd, petreld drives the containerd whose socket
# $PETREL_TEST_CONTAINERD_SOCKET names (CTest's shared one), in its namespace "petrel",
# and containerd's own records are read with ctr. On docker, the dockerd whose socket
# $PETREL_TEST_DOCKERD_SOCKET names, its records read through its API; its containers
# sit in dockerd's cgroups, not below --cgroup-parent (which daemons do not take).
#   petreld_runtime_test.sh PETRELD PETRELCTL RUNTIME   (crun, runc, containerd or docker)
set -euo pipefail
petreld=${1:?usage: petreld_runtime_test.sh PETRELD PETRELCTL RUNTIME}
ctl=${2:?}
runtime=${3:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-rt-test.XXXXXX)
state=$dir/var/lib/petrel
export PETREL_SOCKET=$dir/petrel.sock
node=rt-$runtime
pid=""
# Below it, the parent of petreld's first run, then of the others.
cgtop=petrel-it-$runtime
cgparent=$cgtop/first
# The adapter's folder in the state dir, and how to reach the runtime's own records.
sub=oci
[ "$runtime" = containerd ] && sub=containerd socket=${PETREL_TEST_CONTAINERD_SOCKET:-}
[ "$runtime" = docker ] && sub=docker
ctrs=$state/$sub/containers
# rt_list: the names of the containers the runtime has of this node.
rt_list() {
  case "$runtime" in
    containerd) ctr --address "$socket" -n petrel containers ls -q ;;
    docker) docker_api '/containers/json?all=1' | jq -r '.[].Names[0] | ltrimstr("/")' ;;
    *) "$runtime" --root "$state/oci/runtime" list -q 2>/dev/null ;;
  esac | grep "petrel_${node}_" || true
}
# rt_status ID: what the runtime says of the container's process ("running"), "" for none.
rt_status() {
  case "$runtime" in
    containerd)
      ctr --address "$socket" -n petrel tasks ls 2>/dev/null | awk -v id="$1" '$1 == id {print tolower($3)}'
      ;;
    # dockerd's "created": no process yet.
    docker) docker_api "/containers/$1/json" 2>/dev/null | jq -r '.State.Status | select(. != "created")' ;;
    *) "$runtime" --root "$state/oci/runtime" state "$1" 2>/dev/null | jq -r .status ;;
  esac
}

fail() {
  echo "FAIL ($runtime): $*" >&2
  echo "--- petreld log" >&2
  cat "$dir"/petreld*.log >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  # Whatever a failed run left: containers, mounts, cgroups.
  runtime_cleanup "$runtime" "$state" "$dir"
  find /sys/fs/cgroup -depth -type d -path "*/$cgtop*" -exec rmdir {} \; 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
runtime_flags "$runtime" || fail "no runtime $runtime"
start_petreld() {
  petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" --node-name "$node" \
    --cgroup-parent "$cgparent" --log-level debug || fail "petreld did not answer"
}
json() { "$ctl" get workloads "${2:-keeper}" -o json; }
ready_is() { [ "$(json | jq '.items[0].readyReplicas')" = "$1" ]; }
pids() { json | jq -r '[.items[0].replicas[].pid] | join(" ")'; }

busybox_image "$dir/busybox.tar"
cat >"$dir/keeper.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: keeper}
spec:
  replicas: 2
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "echo up; trap 'exit 0' TERM; while true; do sleep 1; done"]
  backoff: {initial: 200ms}
  terminationGracePeriod: 5s
  resources: {memory: 32Mi, pids: 32}
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: stubborn}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "trap '' TERM; echo up; while true; do sleep 1; done"]
  terminationGracePeriod: 3s
YAML
phase_of() { "$ctl" get workloads "$1" -o json 2>/dev/null | jq -r '.items[0].phase'; }

start_petreld
"$ctl" apply -f "$dir/keeper.yaml" >/dev/null || fail "apply"
wait_for 30 ready_is 2 ||
  fail "timed out waiting for 2 ready replicas"
read -r p0 p1 <<<"$(pids)"
[ "$p0" -gt 0 ] && [ "$p1" -gt 0 ] || fail "no pids: $(json)"
"$ctl" logs keeper --replica 1 | grep -qx up || fail "logs of replica 1"
# in_cgroup PID PARENT: the process is in a cgroup of a keeper container below PARENT
# (every hierarchy of runc's; of crun's, the v2 one or, on a hybrid host, petrel's v1
# memory and devices cgroups).
in_cgroup() {
  if [ "$runtime" = docker ]; then
    grep -q ":/docker/[0-9a-f]\{64\}\$" "/proc/$1/cgroup"  # dockerd's, whatever the parent
  else
    grep -q ":/$2/petrel_${node}_keeper_[0-9]*\$" "/proc/$1/cgroup"
  fi
}
in_cgroup "$p0" "$cgparent" || fail "replica 0 is not below --cgroup-parent $cgparent: $(cat "/proc/$p0/cgroup")"

# kill -9 petreld: the containers live on.
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=""
kill -0 "$p0" && kill -0 "$p1" || fail "containers died with petreld"
# One container dies while nobody watches.
kill -9 "$p1"
wait_for 10 bash -c "! kill -0 $p1 2>/dev/null" || fail "container $p1 outlived kill -9"

cgparent=$cgtop/later
start_petreld
wait_for 30 bash -c "[ \"\$('$ctl' get workloads keeper -o json |
  jq '.items[0].replicas[1] | .restarts == 1 and .phase == \"Running\" and .lastExitCode == 137')\" = true ]" ||
  fail "timed out waiting for replica 1 restarted"
wait_for 30 ready_is 2 ||
  fail "timed out waiting for 2 ready replicas again"
read -r q0 q1 <<<"$(pids)"
[ "$q0" = "$p0" ] || fail "replica 0 was not adopted: pid $p0 became $q0"
[ "$q1" != "$p1" ] || fail "replica 1 kept its dead pid"
in_cgroup "$q0" "$cgtop/first" || fail "adopted replica 0 moved: $(cat "/proc/$q0/cgroup")"
in_cgroup "$q1" "$cgparent" || fail "replica 1 is not below $cgparent: $(cat "/proc/$q1/cgroup")"
[ "$(json | jq '.items[0].replicas[0].restarts')" = 0 ] || fail "replica 0 was restarted"
# No duplicates: two containers in petrel's state and in the runtime's.
n=$(ls "$ctrs" | grep -c keeper || true)
[ "$n" = 2 ] || fail "$n container directories: $(ls "$ctrs")"
n=$(rt_list | grep -c keeper || true)
[ "$n" = 2 ] || fail "$runtime lists $n containers"

# A deleted workload is Terminating while its container takes its grace period,
# also after a kill -9 of petreld; then it is gone.
wait_for 30 bash -c "[ \"\$('$ctl' get workloads stubborn -o json | jq -r '.items[0].phase')\" = Running ]" ||
  fail "timed out waiting for stubborn running"
"$ctl" delete workload stubborn >/dev/null || fail "delete stubborn"
[ "$(phase_of stubborn)" = Terminating ] || fail "stubborn is not Terminating: $("$ctl" get workloads)"
"$ctl" get workloads | grep -qE '^stubborn +0/1 +Terminating ' || fail "get: $("$ctl" get workloads)"
"$ctl" describe workload stubborn | grep -q '^Status: *Terminating' || fail "describe: no Terminating"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=""
start_petreld
[ "$(phase_of stubborn)" = Terminating ] || fail "stubborn not Terminating after restart"
wait_for 30 petreld_gone stubborn ||
  fail "timed out waiting for stubborn gone"
"$ctl" events | grep -qE ' stubborn +- +Deleted +its last container is gone' ||
  fail "no Deleted event: $("$ctl" events | grep stubborn)"
[ ! -e "$ctrs/petrel_${node}_stubborn_0" ] || fail "stubborn's container is left"

# A missing image: Pulling with the image's error, no container, until it is there.
cat >"$dir/late.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: late}
spec:
  image: oci-archive:late.tar
  command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
  backoff: {initial: 200ms, max: 400ms}
YAML
"$ctl" apply -f "$dir/late.yaml" >/dev/null || fail "apply late"
late_msg() { "$ctl" get workloads late -o json | jq -r '.items[0].replicas[0] | .phase + " " + .message'; }
# Read once per look: between two retries (every 400 ms) the message changes.
late_waits() {
  case "$(late_msg)" in
    "Pulling image oci-archive:$dir/late.tar: no such file or directory; retry in "*) ;;
    *) return 1 ;;
  esac
}
wait_for 30 late_waits || fail "timed out waiting for late waiting for its image: $(late_msg)"
"$ctl" events | grep -qE ' late +- +Failed +image oci-archive:' || fail "no image Failed event"
"$ctl" events | grep -q ' late .* BackOff ' && fail "an image error became a crash loop"
[ -z "$(ls "$ctrs" | grep late || true)" ] || fail "a container was made for late"
cp "$dir/busybox.tar" "$dir/late.tar"
wait_for 30 bash -c "[ \"\$('$ctl' get workloads late -o json |
  jq -r '.items[0].replicas[0].phase')\" = Running ]" ||
  fail "timed out waiting for late running once its image is there"
"$ctl" delete workload late >/dev/null || fail "delete late"
wait_for 30 petreld_gone late ||
  fail "timed out waiting for late gone"

# A warm standby (standbyReplicas): created by the runtime, never started, kept across
# a kill -9 of petreld; scaling onto it starts that very container.
cat >"$dir/spare.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: spare}
spec:
  replicas: 0
  standbyReplicas: 1
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
YAML
"$ctl" apply -f "$dir/spare.yaml" >/dev/null || fail "apply spare"
spare() { "$ctl" get workloads spare -o json | jq -r ".items[0].replicas[0].$1"; }
wait_for 30 bash -c "[ \"\$('$ctl' get workloads spare -o json |
  jq -r '.items[0].replicas[0].phase')\" = Standby ]" ||
  fail "timed out waiting for spare in Standby: $("$ctl" get workloads spare -o json)"
held=$(spare containerId)
# Created, for this adapter: the bundle made (rootfs mounted, config written), no
# process yet (the runtime is called at Start, with `run`).
held_ok() {
  if [ "$runtime" = docker ]; then
    [ "$(docker_api "/containers/$held/json" | jq -r .State.Status)" = created ]
  else
    [ -f "$ctrs/$held/config.json" ] && [ -z "$(rt_status "$held")" ]
  fi
}
held_ok || fail "spare's container $held: no bundle, or $runtime runs it ('$(rt_status "$held")')"
[ "$(json - spare | jq '.items[0].readyReplicas')" = 0 ] || fail "a standby counted as ready"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=""
start_petreld
sleep 1
[ "$(spare phase)" = Standby ] && [ "$(spare containerId)" = "$held" ] ||
  fail "after a restart of petreld the standby is $(spare phase) $(spare containerId), not Standby $held"
held_ok || fail "after a restart: spare's bundle is gone, or $runtime runs it ('$(rt_status "$held")')"
sed -i 's/replicas: 0/replicas: 1/; s/standbyReplicas: 1/standbyReplicas: 0/' "$dir/spare.yaml"
"$ctl" apply -f "$dir/spare.yaml" >/dev/null || fail "scale spare"
wait_for 30 bash -c "[ \"\$('$ctl' get workloads spare -o json | jq -r '.items[0].readyReplicas')\" = 1 ]" ||
  fail "timed out waiting for spare running"
[ "$(spare containerId)" = "$held" ] || fail "scaling onto the standby made a new container: $(spare containerId)"
[ "$(spare restarts)" = 0 ] || fail "starting the standby counted as a restart"
[ "$(rt_status "$held")" = running ] || fail "$runtime says '$(rt_status "$held")', not running"
"$ctl" events --workload spare | grep -q 'starting the warm standby' || fail "no event for the start"
"$ctl" delete workload spare >/dev/null || fail "delete spare"
wait_for 30 petreld_gone spare || fail "timed out waiting for spare gone"

# Delete: everything goes.
"$ctl" delete workload keeper >/dev/null || fail "delete"
wait_for 30 bash -c "[ -z \"\$(ls '$ctrs')\" ]" ||
  fail "timed out waiting for containers removed"
grep -q "$ctrs" /proc/self/mountinfo && fail "stray mounts: $(grep "$dir" /proc/self/mountinfo)"
# No cgroup of this node's containers in any hierarchy: runc makes /petrel/<id> in
# every one mounted (v1 controllers, named ones, the unified one), crun in v2's.
for cg in /sys/fs/cgroup/petrel/petrel_"${node}"_* /sys/fs/cgroup/*/petrel/petrel_"${node}"_* \
  /sys/fs/cgroup/"$cgtop"/*/petrel_* /sys/fs/cgroup/*/"$cgtop"/*/petrel_*; do
  [ -e "$cg" ] && fail "stray cgroup $cg"
done
n=$(rt_list | grep -c . || true)
[ "$n" = 0 ] || fail "$runtime still lists $n containers"

kill -TERM "$pid"
wait "$pid" || fail "petreld exited with $? on SIGTERM"
pid=""
echo "PASS ($runtime): kill -9, adoption, restart of a container that died meanwhile, clean delete"

# Shell helpers for the scripts that run a real petreld and drive it with petrelctl.
# Source it after setting $petreld and $ctl (the two programs) and exporting
# PETREL_SOCKET (where petreld listens and petrelctl connects).

# wait_for SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds (0) or
# SECONDS passed (1). The caller says what timed out: wait_for 30 ready || fail "...".
wait_for() {
  local tries=$(($1 * 10))
  shift
  for _ in $(seq "$tries"); do
    "$@" && return 0
    sleep 0.1
  done
  "$@"
}

# petreld_answers: petrelctl gets an answer from the petreld on $PETREL_SOCKET.
petreld_answers() { "$ctl" version >/dev/null 2>&1; }

# petreld_start LOG [FLAG...]: starts petreld in the background on $PETREL_SOCKET with
# the flags given, its output appended to LOG; sets $pid. Returns 0 once petrelctl gets
# an answer, 1 when petreld exits first or none came within 10 s. When $petreld_netns
# names a network namespace (tests/lib/netns.sh), petreld runs in it, and $pid is still
# petreld's own (nsenter execs it); petrelctl reaches its socket from outside. nsenter,
# not `ip netns exec`, which remounts /sys and so hides /sys/fs/cgroup from crun and runc.
petreld_start() {
  local log=$1
  shift
  if [ -n "${petreld_netns:-}" ]; then
    nsenter --net="/run/netns/$petreld_netns" "$petreld" --socket "$PETREL_SOCKET" "$@" >>"$log" 2>&1 &
  else
    "$petreld" --socket "$PETREL_SOCKET" "$@" >>"$log" 2>&1 &
  fi
  pid=$!
  wait_for 10 petreld_up_or_gone && petreld_answers
}
petreld_up_or_gone() { petreld_answers || ! kill -0 "$pid" 2>/dev/null; }

# petreld_stop [WORKLOAD]: deletes WORKLOAD (when given) and waits up to 60 s until it
# is gone with its containers, then stops petreld ($pid) with SIGTERM. For cleanup
# traps: it never fails.
petreld_stop() {
  [ -n "${pid:-}" ] || return 0
  if [ -n "${1:-}" ]; then
    "$ctl" delete workload "$1" >/dev/null 2>&1 || true
    wait_for 60 petreld_gone "$1" || true
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

# petreld_gone WORKLOAD: petreld no longer knows WORKLOAD (or does not answer).
petreld_gone() { ! "$ctl" get workloads "$1" >/dev/null 2>&1; }
# phase_of W, message_of W: the phase and message of workload W's first replica, as
# `petrelctl get workloads -o json` tells them; running W: that replica is Running.
phase_of() { "$ctl" get workloads "$1" -o json 2>/dev/null | jq -r '.items[0].replicas[0].phase'; }
message_of() { "$ctl" get workloads "$1" -o json 2>/dev/null | jq -r '.items[0].replicas[0].message'; }
running() { [ "$(phase_of "$1")" = Running ]; }

# sleeper_yaml NAME IMAGE [WORDS]: writes $dir/NAME.yaml, a workload NAME whose
# container runs IMAGE's /bin/sh, says WORDS (when given) and sleeps until SIGTERM. Its
# image errors are retried soon (back-off 200 ms to 1 s); $pull_policy, when set, is
# its imagePullPolicy.
sleeper_yaml() {
  local say=${3:+echo $3; }
  cat >"$dir/$1.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: $1}
spec:
  image: $2
  ${pull_policy:+imagePullPolicy: $pull_policy}
  command: ["/bin/sh", "-c", "${say}trap 'exit 0' TERM; while true; do sleep 1; done"]
  backoff: {initial: 200ms, max: 1s}
  terminationGracePeriod: 2s
YAML
}
# apply_sleeper NAME IMAGE [WORDS]: sleeper_yaml, then petrelctl apply; fails the test
# (its `fail`) when the apply is refused.
apply_sleeper() {
  sleeper_yaml "$@"
  "$ctl" apply -f "$dir/$1.yaml" >/dev/null || fail "apply $1"
}

# petreld_report LOG: what a failing test prints: every workload petreld still knows,
# described (phase, message, last events), and the end of LOG without the per-connection
# debug lines. Never fails.
petreld_report() {
  local log=$1 w
  if petreld_answers; then
    for w in $("$ctl" get workloads -o json 2>/dev/null | jq -r '.items[].name' 2>/dev/null); do
      echo "--- petrelctl describe workload $w" >&2
      "$ctl" describe workload "$w" >&2 2>&1 || true
    done
  fi
  echo "--- petreld log (last 40 lines but connections)" >&2
  grep -v 'api: connection from' "$log" 2>/dev/null | tail -n 40 >&2 || true
}

# busybox_image FILE: the busybox image CTest's fixture built ($PETREL_TEST_IMAGE,
# oci-archive:PATH) copied to FILE, or one built there (examples/images).
busybox_image() {
  if [ -n "${PETREL_TEST_IMAGE:-}" ]; then
    cp "${PETREL_TEST_IMAGE#oci-archive:}" "$1"
  else
    "$(dirname "${BASH_SOURCE[0]}")/../../examples/images/make-busybox-image" "$1" >/dev/null
  fi
}

# runtime_flags RUNTIME: sets the array runtime_flags to petreld's flags for RUNTIME:
# --runtime RUNTIME, and for containerd (docker) the endpoint of the one
# $PETREL_TEST_CONTAINERD_SOCKET ($PETREL_TEST_DOCKERD_SOCKET) names (CTest's fixture
# containerd_daemon, docker_daemon); fails when none does.
runtime_flags() {
  runtime_flags=(--runtime "$1")
  local var
  case "$1" in
    containerd) var=PETREL_TEST_CONTAINERD_SOCKET ;;
    docker) var=PETREL_TEST_DOCKERD_SOCKET ;;
    *) return 0 ;;
  esac
  [ -n "${!var:-}" ] || {
    echo "runtime $1: $var is not set" >&2
    return 1
  }
  runtime_flags+=(--runtime-endpoint "unix://${!var}")
}

# docker_api PATH [CURL ARGS...]: dockerd's answer to GET (or what CURL ARGS say) of
# Engine API PATH, on $PETREL_TEST_DOCKERD_SOCKET.
docker_api() {
  local path=$1
  shift
  curl -sf --unix-socket "$PETREL_TEST_DOCKERD_SOCKET" "$@" "http://docker/v1.41$path"
}

# runtime_cleanup RUNTIME STATE DIR: what a failed run on a real runtime left, for
# cleanup traps: the runtime's containers of petreld's state dir STATE (crun's, runc's,
# containerd's or dockerd's), then every mount
# below DIR (deepest first). Never fails.
runtime_cleanup() {
  local rec c
  for rec in "$2"/oci/runtime/*; do
    [ -e "$rec" ] || continue
    "$1" --root "$2/oci/runtime" delete --force "${rec##*/}" >/dev/null 2>&1 || true
  done
  # containerd's (on $PETREL_TEST_CONTAINERD_SOCKET, namespace $containerd_ns, else
  # petrel): those of the state dir's containers.
  for rec in "$2"/containerd/containers/*; do
    [ -e "$rec" ] && [ -n "${PETREL_TEST_CONTAINERD_SOCKET:-}" ] || continue
    c=${rec##*/}
    ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" -n "${containerd_ns:-petrel}" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" -n "${containerd_ns:-petrel}" tasks rm -f "$c" >/dev/null 2>&1 || true
    ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" -n "${containerd_ns:-petrel}" containers rm "$c" >/dev/null 2>&1 || true
    # Its root: a snapshot, held by a lease (runtime-adapters/containerd/image_backend.h).
    ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" -n "${containerd_ns:-petrel}" snapshots rm "petrel-$c" >/dev/null 2>&1 || true
    ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" -n "${containerd_ns:-petrel}" leases rm "petrel-root-$c" >/dev/null 2>&1 || true
  done
  # dockerd's (on $PETREL_TEST_DOCKERD_SOCKET): those of the state dir's containers.
  for rec in "$2"/docker/containers/*; do
    [ -e "$rec" ] && [ -n "${PETREL_TEST_DOCKERD_SOCKET:-}" ] || continue
    docker_api "/containers/${rec##*/}?force=1" -X DELETE >/dev/null 2>&1 || true
  done
  grep -o "${3}[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

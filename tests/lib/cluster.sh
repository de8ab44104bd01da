# shellcheck shell=bash
# petreld peers, one per network namespace (tests/lib/netns.sh), driven with petrelctl:
# what tests/cluster/cluster_test.sh and tests/bench/cluster_bench.sh share.
# Source it after petreld.sh and netns.sh, with $petreld, $ctl (the programs) and
# $cluster_dir (an empty directory) set, then call netns_setup.
#
# Node I (1..N) is named nI, runs in namespace `netns_name I`, listens for peers on
# `node_addr I` (its namespace's address, port $CLUSTER_PORT: every node has its own
# port space), and keeps its files in $cluster_dir/nI: state/ (its --state-dir),
# petrel.sock, petreld.log (appended to across restarts).
#
#   node_start I [FLAG...]   petreld --runtime $CLUSTER_RUNTIME (default fake; runtime_flags
#                            of petreld.sh) on node I
#                            with its state dir, socket, name, --peer-listen and
#                            --lease-dir $cluster_dir/run/petrel (on a tmpfs the nodes
#                            share, as /run is on a host: the lease renewed every
#                            heartbeat is no disk write), plus $CLUSTER_PETRELD_FLAGS and
#                            the flags given; 0 once its API
#                            answers (petreld_start), 1 if it exited first or did not
#                            answer in 10 s. node_pid[I] = its pid
#   node_signal I SIGNAL     sends SIGNAL, then node_wait I
#   node_wait I              waits for its petreld's exit; $node_rc = its exit status
#   node_running I           its petreld runs (pid_running PID: any pid, not a zombie)
#   node_ctl I ARGS...       petrelctl against node I
#   cluster_init I           `cluster init` on node I; prints the token (last line)
#   node_leader I            the leader's name as node I sees it ("" if none, or no answer)
#   node_view I              node I's `get nodes` in one line: "n1:Ready:leader n2:Ready"
#   nodes_report COUNT       on stderr, for a failing script: what each node of 1..COUNT
#                            that has a log sees (node_view), and its log's last 10 lines
#   node_sees_ready I COUNT  node I lists COUNT members, all Ready, exactly one leader
#   all_see_ready COUNT I... every node given sees COUNT Ready members and all of them
#                            name the same leader
#   node_has_workload I NAME node I's `get workloads NAME` succeeds
#   node_index NAME          nI -> I
#   log_size I / log_since I OFFSET   the log's length; what was logged after OFFSET
#   ms_now                   milliseconds since the epoch
#   node_stats I             "rss_kib write_bytes" of its petreld (/proc)
#   cluster_dump LINES I...  on stderr, for a failure: what each node sees and the last
#                            LINES lines of its log
#   cluster_dir_at_exit      at exit (netns_at_exit): $cluster_dir goes, mounts below it
#                            (node_start's tmpfs) first; with PETREL_KEEP=1 it stays and
#                            its path is printed, its mounts are undone
#   local_cluster_report LC DIR [LINES]   for examples/local-cluster tests: the nodes' log
#                            tails and its status, on stderr

CLUSTER_PORT=${CLUSTER_PORT:-7400}
CLUSTER_PETRELD_FLAGS=${CLUSTER_PETRELD_FLAGS:-}
CLUSTER_RUNTIME=${CLUSTER_RUNTIME:-fake}
node_pid=()
node_rc=0

node_name() { echo "n$1"; }
node_index() { echo "${1#n}"; }
node_addr() { echo "$(netns_ip "$1"):$CLUSTER_PORT"; }
node_dir() { echo "$cluster_dir/n$1"; }
node_state() { echo "$cluster_dir/n$1/state"; }
node_sock() { echo "$cluster_dir/n$1/petrel.sock"; }
node_log() { echo "$cluster_dir/n$1/petreld.log"; }
node_ctl() {
  local i=$1
  shift
  "$ctl" --socket "$(node_sock "$i")" "$@"
}
ms_now() { echo $(($(date +%s%N) / 1000000)); }

node_start() {
  local i=$1 rc=0
  shift
  mkdir -p "$(node_dir "$i")"
  if ! mountpoint -q "$cluster_dir/run"; then
    mkdir -p "$cluster_dir/run"
    mount -t tmpfs -o size=1m petrel-run "$cluster_dir/run" || return 1
  fi
  echo "=== $(date '+%T.%N' | cut -c1-12) start: $*" >>"$(node_log "$i")"
  runtime_flags "$CLUSTER_RUNTIME" || return 1  # containerd: its endpoint too
  # shellcheck disable=SC2086  # CLUSTER_PETRELD_FLAGS is a list of words
  PETREL_SOCKET=$(node_sock "$i") petreld_netns=$(netns_name "$i") \
    petreld_start "$(node_log "$i")" "${runtime_flags[@]}" --state-dir "$(node_state "$i")" \
    --node-name "$(node_name "$i")" --peer-listen "$(node_addr "$i")" \
    --lease-dir "$cluster_dir/run/petrel" \
    $CLUSTER_PETRELD_FLAGS "$@" || rc=$?
  node_pid[$i]=$pid
  return "$rc"
}

pid_running() {
  local state
  [ -n "$1" ] || return 1
  state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
node_running() { pid_running "${node_pid[$1]:-}"; }

node_wait() {
  local p=${node_pid[$1]:-}
  node_rc=0
  [ -n "$p" ] || return 0
  wait "$p" 2>/dev/null || node_rc=$?
  node_pid[$1]=""
}
node_signal() {
  [ -n "${node_pid[$1]:-}" ] && kill -s "$2" "${node_pid[$1]}" 2>/dev/null
  node_wait "$1"
}

cluster_init() {
  local out
  out=$(node_ctl "$1" cluster init) || return 1
  echo "$out" | tail -n 1
}

# The leader by name: `cluster status` gives "leader" as a name, as "self" is.
node_leader() {
  node_ctl "$1" cluster status -o json 2>/dev/null | jq -r '.leader // ""' 2>/dev/null || true
}

node_view() {
  node_ctl "$1" get nodes -o json 2>/dev/null |
    jq -r '[.items[] | .name + ":" + .status + (if .leader then ":leader" else "" end)] | join(" ")' \
      2>/dev/null || echo "(no answer)"
}

nodes_report() {
  local i
  for i in $(seq "$1"); do
    [ -f "$(node_log "$i")" ] || continue
    echo "--- $(node_name "$i") sees: $(node_view "$i"); log (last 10 lines):" >&2
    tail -n 10 "$(node_log "$i")" >&2
  done
}

node_sees_ready() {
  node_ctl "$1" get nodes -o json 2>/dev/null |
    jq -e --argjson n "$2" '(.items | length) == $n and all(.items[]; .status == "Ready")
                            and ([.items[] | select(.leader)] | length) == 1' >/dev/null 2>&1
}

all_see_ready() {
  local count=$1 i leader="" l
  shift
  for i in "$@"; do
    node_sees_ready "$i" "$count" || return 1
    l=$(node_ctl "$i" get nodes -o json 2>/dev/null | jq -r '.items[] | select(.leader) | .name')
    [ -z "$leader" ] && leader=$l
    [ "$l" = "$leader" ] || return 1
  done
}

node_has_workload() { node_ctl "$1" get workloads "$2" >/dev/null 2>&1; }

log_size() { stat -c %s "$(node_log "$1")" 2>/dev/null || echo 0; }
log_since() { tail -c +"$(($2 + 1))" "$(node_log "$1")" 2>/dev/null; }

node_stats() {
  local p=${node_pid[$1]}
  echo "$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\) kB/\1/p' "/proc/$p/status") $(sed -n 's/^write_bytes: //p' "/proc/$p/io")"
}

cluster_dump() {
  local lines=$1 i
  shift
  for i in "$@"; do
    [ -f "$(node_log "$i")" ] || continue
    echo "--- n$i ($(node_addr "$i")) sees: $(node_view "$i")" >&2
    echo "--- n$i log (last $lines lines):" >&2
    tail -n "$lines" "$(node_log "$i")" >&2
  done
}

cluster_dir_at_exit() {
  if [ "${PETREL_KEEP:-0}" = 1 ]; then
    netns_at_exit 'echo "kept: $cluster_dir" >&2'
  else
    netns_at_exit 'rm -rf "$cluster_dir"'
  fi
  # Run first (last registered): the mounts go before the files.
  netns_at_exit 'grep -o "$cluster_dir[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r |
                   xargs -r -n1 umount -l 2>/dev/null || true'
}

# local_cluster_report LOCAL_CLUSTER DIR [LINES]: on stderr, the last LINES (20) of each
# node's log of the examples/local-cluster cluster in DIR, and its status: for a failure.
local_cluster_report() {
  local f
  for f in "$2"/node-*/petreld.log; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$(dirname "$f")") log (last ${3:-20} lines):" >&2
    tail -n "${3:-20}" "$f" >&2
  done
  "$1" status --dir "$2" >&2 || true
}

# workload_manifest FILE NAME [REPLICAS]: a workload the fake runtime runs forever.
workload_manifest() {
  cat >"$1" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: $2}
spec:
  replicas: ${3:-2}
  image: oci-archive:/images/busybox.tar
  command: ["/bin/sh", "-c", "sleep 1d"]
YAML
}

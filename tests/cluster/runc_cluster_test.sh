#!/usr/bin/env bash
# Clusters on runc, the real runtime (issue 11 §4), with examples/local-cluster: every
# petreld in a network namespace and a PID namespace of its own, so a power cut takes
# its containers too. What runs is checked with runc itself (`runc list` in the node's
# namespaces) and with the containers' own processes, not only with petrel's word.
#
# A. three nodes:
#  1. up --nodes 3 --runtime runc; rcweb (3 replicas) and rclock (exclusive) applied;
#  2. power cut of a worker that is not the leader: within $MOVE_S its replicas run on
#     the survivors (Running as both say; running as their runc says); it comes back;
#  3. power cut of the leader: the same; it comes back;
#  4. the link of the node running rclock cut (the node keeps power): that node kills
#     rclock (fenced) before another node starts it. Measured from the processes: the
#     old one watched every 5 ms until it is gone, every node's rclock processes sampled
#     every 50 ms (never two at once), the new one's start time from /proc, runc's own
#     `created` time; printed as times after the cut and the gap between stop and start;
#  5. link up: the node is Ready again; replica counts exact and rclock once, as runc
#     on every node sees it, for a while; from the heal on, rclock's processes sampled
#     every 50 ms in the background: never on two nodes (the same in 2, 3 and B when a
#     node is back: it starts no exclusive workload another node runs);
#  6. every node powered off and on again: the same workloads and members, all Ready,
#     every replica Running, runc agrees; rclock never on two nodes meanwhile;
#  7. down: no namespace, process or cgroup of it left.
# B. two nodes and a witness (up --nodes 2 --witness): a power cut of either worker moves
#    its replicas to the other; the witness never runs a container; rclock never on
#    two nodes.
#
# What 2 nodes + a witness guarantee: the witness is the third vote. Any one of the three
# may be lost (power or link) and the other two are a majority: they keep a leader,
# accept writes, declare the lost worker lost and run its replicas on the other worker;
# a worker cut off alone is a minority and kills its exclusive workloads (fenceAfter)
# before the majority may start them (nodeLostAfter), so those never run twice. Losing
# two of the three (both workers, or a worker and the witness) leaves no majority: the
# survivor keeps running what it has (but not exclusive workloads) and nothing moves.
# The witness runs nothing, so with one worker left its replicas all run on that one.
#
# Needs root, runc, ip, unshare, nsenter, jq: without any of them, FAIL (exit 1).
# Usage: runc_cluster_test.sh PETRELD PETRELCTL
# Environment: PETREL_TEST_IMAGE (oci-archive:PATH of the busybox image; built here
# without it); MOVE_S, FENCE_S, READY_S bounds (seconds); PETREL_KEEP=1 keeps the nodes'
# state dirs and logs (path printed).
set -euo pipefail
petreld=${1:?usage: runc_cluster_test.sh PETRELD PETRELCTL}
ctl=${2:?usage: runc_cluster_test.sh PETRELD PETRELCTL}
src=$(cd "$(dirname "$0")/../.." && pwd)
lc=$src/examples/local-cluster
MOVE_S=${MOVE_S:-15}    # replicas of a lost node Running elsewhere (target about 2 s)
FENCE_S=${FENCE_S:-10}  # a cut-off node kills its exclusive workload (target 1 s)
READY_S=${READY_S:-40}  # a node started again is Ready everywhere, replicas settled
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh" # wait_for
# shellcheck source=tests/lib/cluster.sh
. "$src/tests/lib/cluster.sh" # ms_now, local_cluster_report

[ "$(id -u)" -eq 0 ] || { echo "FAIL: needs root (runc, network and PID namespaces)" >&2; exit 1; }
for tool in runc ip unshare nsenter jq; do
  command -v "$tool" >/dev/null ||
    { echo "FAIL: $tool is not installed (ports/debian/install-deps)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/petrel-runc-cluster.XXXXXX)
chmod 755 "$work"
dir_a=$work/a
dir_b=$work/b
dir=$dir_a
watcher=""
guard=""
down_flags=()
[ "${PETREL_KEEP:-0}" != 1 ] || down_flags=(--keep)
mkfifo "$work/never"
exec {never}<>"$work/never" # read -t on it: a sleep without a process
nap() { read -r -t "$1" -u "$never" _ || true; }
cleanup() {
  [ -z "$watcher" ] || kill "$watcher" 2>/dev/null || true
  [ -z "$guard" ] || kill "$guard" 2>/dev/null || true
  if [ "${PETREL_KEEP:-0}" = 1 ]; then
    "$lc" down --dir "$dir_a" --keep >/dev/null 2>&1 || true
    "$lc" down --dir "$dir_b" --keep >/dev/null 2>&1 || true
    echo "kept: $work" >&2
  else
    "$lc" down --dir "$dir_a" >/dev/null 2>&1 || true
    "$lc" down --dir "$dir_b" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t_test=$(ms_now)
step() { echo "== [$(secs $(($(ms_now) - t_test))) s] $*"; }
note() { echo "  $*"; }
fail() {
  echo "FAIL: $*" >&2
  local_cluster_report "$lc" "$dir" 25
  echo "--- containers as runc sees them:" >&2
  runc_view >&2 || true
  exit 1
}
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }
lcd() { "$lc" "$@" --dir "$dir"; }
ctlk() { # K ARGS...: petrelctl against node K
  local k=$1
  shift
  "$ctl" --socket "$dir/node-$k/petrel.sock" "$@"
}
workers=(1 2 3)  # the nodes that run containers (not the witness)
up_workers() { # the workers whose petreld runs (local-cluster's pid file)
  local k
  for k in "${workers[@]}"; do [ -f "$dir/node-$k/pid" ] && echo "$k"; done
  return 0
}

# --- runc's view --------------------------------------------------------------------
# runc_in K ARGS...: runc with node K's --root, in node K's PID and mount namespaces
# (the pids in its records are that namespace's; its /proc is there).
runc_in() {
  local k=$1 p
  shift
  p=$(cat "$dir/node-$k/pid") || return 1
  nsenter -t "$p" -p -m -- runc --root "$dir/node-$k/state/oci/runtime" "$@"
}
# runc_running K: the ids of node K's running containers, as its runc lists them.
runc_running() { runc_in "$1" list -f json 2>/dev/null | jq -r '.[]? | select(.status == "running") | .id'; }
runc_view() { # one line per running worker: "node-K: id id ..."
  local k
  for k in $(up_workers); do echo "node-$k: $(runc_running "$k" | tr '\n' ' ')"; done
}
# runc_count WORKLOAD [NODES...]: running containers of WORKLOAD on these nodes (default:
# every running worker), as runc says.
runc_count() {
  local w=$1 k n=0 c nodes
  shift
  nodes=("$@")
  [ $# -gt 0 ] || mapfile -t nodes < <(up_workers)
  for k in "${nodes[@]}"; do
    c=$(runc_running "$k" | grep -c "^petrel_node-${k}_${w}_[0-9]*$" || true)
    n=$((n + c))
  done
  echo "$n"
}
runc_count_is() { [ "$(runc_count "$1")" = "$2" ]; } # WORKLOAD COUNT
runc_on() { # K WORKLOAD: node K runs a container of WORKLOAD, as its runc says
  runc_running "$1" | grep -q "^petrel_node-$1_$2_[0-9]*$"
}

# --- the containers' own processes ---------------------------------------------------
# Every container's command carries "$MARK-<workload>" as an argument; `procs` finds the
# processes with it (any namespace) and tells the node by their cgroup, which runc names
# /petrel/petrel_<node>_<workload>_<replica>.
MARK=petrel-runc-test-$$
MARK_RE="petrel-runc-test-$$-[r]c" # matches no grep that looks for it
# procs [WORKLOAD]: "K WORKLOAD HOSTPID STARTTIME" for each container process, STARTTIME
# in clock ticks after boot (/proc/PID/stat field 22), as /proc/uptime counts.
procs() {
  local f p line rest stat fields nspid
  # shellcheck disable=SC2013  # file names, one a line
  for f in $(grep -l -e "$MARK_RE${1:+${1#rc}}" /proc/[0-9]*/cmdline 2>/dev/null); do
    p=${f#/proc/}
    p=${p%/cmdline}
    { read -r stat <"/proc/$p/stat"; } 2>/dev/null || continue
    fields=${stat##*) }
    # shellcheck disable=SC2086  # split the fields after (comm)
    set -- $fields
    [ "$1" != Z ] || continue
    # The container's own process only (pid 1 of its PID namespace), not a child forked
    # with its command line and not yet exec'd.
    nspid=""
    while read -r line rest; do
      [ "$line" = NSpid: ] && { nspid=${rest##*[[:space:]]}; break; }
    done <"/proc/$p/status" 2>/dev/null || true
    [ "$nspid" = 1 ] || continue
    while IFS= read -r line; do
      if [[ "$line" =~ /petrel/petrel_node-([0-9]+)_([a-z0-9]+)_[0-9]+$ ]]; then
        echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} $p ${20}"
        break
      fi
    done <"/proc/$p/cgroup" 2>/dev/null || true
  done
}
uptime_cs() { local u; read -r u _ </proc/uptime; echo "${u/./}"; } # centiseconds

# guard_start / guard_stop WHAT: meanwhile, every 50 ms in the background, which nodes
# run an rclock process; guard_stop fails when two ever did at once, else says how many
# samples it took.
guard_start() {
  : >"$work/guard.bad"
  (
    n=0 t0=$(uptime_cs)
    while :; do
      t_us=${EPOCHREALTIME/./}
      seen=$(procs rclock)
      n=$((n + 1))
      if [ "$(wc -l <<<"$seen")" -gt 1 ]; then
        echo "+$((($(uptime_cs) - t0) * 10)) ms: $(awk '{print "node-" $1 " pid " $3}' <<<"$seen" | tr '\n' ' ')" >>"$work/guard.bad"
      fi
      echo "$n" >"$work/guard.n"
      d=$((50000 - (${EPOCHREALTIME/./} - t_us)))
      [ "$d" -le 0 ] || nap "0.$(printf '%06d' "$d")"
    done
  ) &
  guard=$!
}
guard_stop() {
  kill "$guard" 2>/dev/null || true
  wait "$guard" 2>/dev/null || true
  guard=""
  [ ! -s "$work/guard.bad" ] || fail "rclock ran on two nodes at once ($1; times after the guard started): $(head -n 5 "$work/guard.bad" | tr '\n' ';')"
  note "$1: $(cat "$work/guard.n") samples of every node every 50 ms, rclock never on two at once"
}
[ "$(getconf CLK_TCK)" = 100 ] || fail "clock ticks are not 1/100 s: the times below assume so"

# --- workloads --------------------------------------------------------------------------
image=""
if [ -n "${PETREL_TEST_IMAGE:-}" ]; then
  image=${PETREL_TEST_IMAGE#oci-archive:}
  [ -f "$image" ] || fail "PETREL_TEST_IMAGE $PETREL_TEST_IMAGE: no such file"
else
  image=$work/busybox.tar
  "$src/examples/images/make-busybox-image" "$image" >/dev/null || fail "make-busybox-image"
fi
# manifest FILE NAME REPLICAS [SPEC_LINE [GRACE]]: a busybox container that runs until
# stopped, its process tagged with the marker. With GRACE it ignores SIGTERM and has
# that terminationGracePeriod: only SIGKILL (or GRACE) ends it.
manifest() {
  local on_term="exit 0"
  [ -z "${5:-}" ] || on_term=""
  cat >"$1" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: $2}
spec:
  replicas: $3
  ${4:-}
  image: oci-archive:$image
  command: ["/bin/sh", "-c", "trap '$on_term' TERM; while :; do sleep 1; done", "$MARK-$2"]
  terminationGracePeriod: ${5:-3s}
YAML
}
# settled K WEB LOCK_NODES...: as node K says, rcweb has WEB replicas all Running on
# nodes other than those given, rclock one, Running on such a node.
settled() {
  local k=$1 web=$2
  shift 2
  ctlk "$k" get workloads -o json 2>/dev/null | jq -e --argjson web "$web" --args '
    [.items[] | select(.name == "rcweb" or .name == "rclock")] | length == 2 and
    all(.[]; (.replicas | length) == (if .name == "rcweb" then $web else 1 end) and
        .readyReplicas == (.replicas | length) and
        all(.replicas[]; .phase == "Running" and .node != "" and (.node as $n | $ARGS.positional | index($n) | not)))' \
    "$@" >/dev/null 2>&1
}
# runc_settled WEB: runc on the running workers runs rcweb WEB times, rclock once, and the
# containers' processes say the same (one per container).
runc_settled() {
  local k ids p
  ids=$(for k in $(up_workers); do runc_running "$k" | grep "^petrel_node-${k}_" || true; done)
  p=$(procs)
  [ "$(grep -c '_rcweb_' <<<"$ids")" = "$1" ] && [ "$(grep -c '_rclock_' <<<"$ids")" = 1 ] &&
    [ "$(grep -c ' rcweb ' <<<"$p")" = "$1" ] && [ "$(grep -c ' rclock ' <<<"$p")" = 1 ]
}
placement() { # K: "rcweb: node-1 node-2 ...; rclock: node-3" as node K says
  ctlk "$1" get workloads -o json 2>/dev/null |
    jq -r '[.items[] | "\(.name): \([.replicas[] | "\(.node)/\(.phase)"] | join(" "))"] | join("; ")' ||
    echo "(no answer)"
}
leader_of() { ctlk "$1" cluster status -o json 2>/dev/null | jq -r '.leader // ""' 2>/dev/null || true; }
all_ready() { # COUNT K...: each lists COUNT members, all Ready
  local n=$1 k
  shift
  for k in "$@"; do
    ctlk "$k" get nodes -o json 2>/dev/null |
      jq -e --argjson n "$n" '(.items | length) == $n and all(.items[]; .status == "Ready")' \
        >/dev/null 2>&1 || return 1
  done
}

# power_cut VICTIM WEB NODES...: local-cluster kill VICTIM; then, within $MOVE_S, every
# replica Running on the other workers as each node of NODES says, and runc on those
# workers runs them (WEB rcweb, one rclock). Sets $moved_ms.
power_cut() {
  local v=$1 web=$2 k t0 ok
  shift 2
  local others=("$@")
  t0=$(ms_now)
  lcd kill "$v" >/dev/null || fail "local-cluster kill $v"
  moved_everywhere() {
    for k in "${others[@]}"; do settled "$k" "$web" "node-$v" || return 1; done
    runc_settled "$web"
  }
  ok=0
  wait_for "$MOVE_S" moved_everywhere && ok=1
  moved_ms=$(($(ms_now) - t0))
  [ "$ok" = 1 ] || fail "node-$v's replicas not Running elsewhere within ${MOVE_S}s of its power cut: node-${others[0]} says $(placement "${others[0]}"); runc: $(runc_view | tr '\n' ' ')"
  [ -z "$(ip netns pids "$ID-n$v")" ] || fail "processes left in node-$v's namespace after the power cut"
}
# fail_over VICTIM WHAT WEB NODES...: power_cut, then where the replicas run and the
# RESULT line "failover after a power cut of WHAT".
fail_over() {
  local v=$1 what=$2
  shift 2
  guard_start
  power_cut "$v" "$@"
  note "every replica Running elsewhere (as node(s) ${*:2} say; runc runs them) $(secs "$moved_ms") s after the power cut"
  runc_view | sed 's/^/  runc on /'
  guard_stop "the power cut of node-$v"
  echo "RESULT: failover after a power cut of $what: $(secs "$moved_ms") s"
}
# back_on K WEB COUNT NODES...: power_on, then runc runs rcweb WEB times and rclock once.
back_on() {
  local k=$1 web=$2
  shift 2
  guard_start
  power_on "$k" "$@"
  wait_for "$READY_S" runc_settled "$web" || fail "after node-$k came back, runc runs: $(runc_view | tr '\n' ' ')"
  guard_stop "node-$k back"
}
power_on() { # K COUNT NODES...: local-cluster start K; every node lists COUNT Ready
  local k=$1 n=$2 t0
  shift 2
  t0=$(ms_now)
  lcd start "$k" >/dev/null || fail "local-cluster start $k"
  wait_for "$READY_S" all_ready "$n" "$@" || fail "node-$k not Ready again everywhere within ${READY_S}s"
  note "node-$k powered on: Ready everywhere after $(secs $(($(ms_now) - t0))) s"
}

# =====================================================================================
echo "image $image; marker $MARK; files in $work"
step "A1. up --nodes 3 --runtime runc; rcweb (3 replicas) and rclock (exclusive)"
t0=$(ms_now)
lcd up --nodes 3 --runtime runc --petreld "$petreld" --petrelctl "$ctl" >/dev/null ||
  fail "local-cluster up --nodes 3 --runtime runc"
# shellcheck source=/dev/null
ID=$(. "$dir/cluster.env" && echo "$ID")
note "3 Ready members in $(secs $(($(ms_now) - t0))) s ($ID)"
for k in 1 2 3; do
  p=$(cat "$dir/node-$k/pid")
  grep -q '^NSpid:.*[[:space:]]1$' "/proc/$p/status" || fail "node-$k's petreld is not pid 1 of a PID namespace"
done
manifest "$work/rcweb.yaml" rcweb 3
# rclock ignores SIGTERM: a node cut off must kill it, not stop it gracefully.
manifest "$work/rclock.yaml" rclock 1 "exclusive: true" 20s
t0=$(ms_now)
ctlk 1 apply -f "$work/rcweb.yaml" >/dev/null || fail "apply rcweb"
ctlk 1 apply -f "$work/rclock.yaml" >/dev/null || fail "apply rclock"
wait_for 60 settled 1 3 || fail "rcweb and rclock not all Running within 60s: $(placement 1)"
wait_for 15 runc_settled 3 || fail "runc does not run rcweb 3 times and rclock once: $(runc_view | tr '\n' ' ')"
note "all Running $(secs $(($(ms_now) - t0))) s after the apply: $(placement 1)"
runc_view | sed 's/^/  runc on /'

# =====================================================================================
leader=$(leader_of 1)
L=${leader#node-}
[[ "$L" =~ ^[1-3]$ ]] || fail "no leader: '$leader'"
V=""
for k in 1 2 3; do
  [ "$k" != "$L" ] && runc_on "$k" rcweb && { V=$k; break; }
done
[ -n "$V" ] || fail "no worker other than the leader runs rcweb: $(runc_view | tr '\n' ' ')"
survivors=()
for k in 1 2 3; do [ "$k" != "$V" ] && survivors+=("$k"); done
step "A2. power cut of node-$V (not the leader, $leader): runs $(runc_running "$V" | tr '\n' ' ')"
fail_over "$V" "a worker (not the leader)" 3 "${survivors[@]}"
failover_worker=$moved_ms
back_on "$V" 3 3 1 2 3

# =====================================================================================
leader=$(leader_of 1)
L=${leader#node-}
[[ "$L" =~ ^[1-3]$ ]] || fail "no leader: '$leader'"
survivors=()
for k in 1 2 3; do [ "$k" != "$L" ] && survivors+=("$k"); done
if [ -z "$(runc_running "$L")" ]; then
  # The leader runs nothing (it came back in A2): a replica that prefers it.
  manifest "$work/rcpin.yaml" rcpin 1 "preferredNodes: [$leader]"
  ctlk 1 apply -f "$work/rcpin.yaml" >/dev/null || fail "apply rcpin"
  wait_for 30 runc_on "$L" rcpin || fail "rcpin does not run on $leader"
fi
step "A3. power cut of the leader $leader: runs $(runc_running "$L" | tr '\n' ' ')"
pinned=$(runc_count rcpin "$L")
fail_over "$L" "the leader" 3 "${survivors[@]}"
failover_leader=$moved_ms
if [ "$pinned" != 0 ]; then
  wait_for "$MOVE_S" runc_count_is rcpin 1 || fail "rcpin not running elsewhere"
fi
new_leader=$(leader_of "${survivors[0]}")
if [ -z "$new_leader" ] || [ "$new_leader" = "$leader" ]; then fail "no new leader after the leader's power cut"; fi
note "new leader $new_leader"
back_on "$L" 3 3 1 2 3

# =====================================================================================
read -r C _ old_pid old_start < <(procs rclock) || fail "no rclock process"
runc_on "$C" rclock || fail "rclock's process is in node-$C's cgroup, but node-$C's runc does not run it"
step "A4. link of node-$C cut (it runs rclock, pid $old_pid on the host; leader $(leader_of 1))"
# The old process, watched every 5 ms until it is gone or a zombie; its file gets the
# uptime (centiseconds) of the first look that found it gone.
gone_file=$work/gone
(
  while { read -r stat <"/proc/$old_pid/stat"; } 2>/dev/null; do
    f=${stat##*) }
    # shellcheck disable=SC2086
    set -- $f
    if [ "$1" = Z ] || [ "${20}" != "$old_start" ]; then break; fi
    nap 0.005
  done
  uptime_cs >"$gone_file"
) &
watcher=$!
sleep 0.2
[ ! -s "$gone_file" ] || fail "the watcher saw rclock gone before the cut"
cut_cs=$(uptime_cs)
ip -n "$ID-hub" link set "n$C" down
# Every 50 ms: which nodes run an rclock process; never two.
samples=0 first_other=0 new="" prev_us=0 max_step_us=0
until_us=$((${EPOCHREALTIME/./} + (FENCE_S + MOVE_S) * 1000000))
while :; do
  t_us=${EPOCHREALTIME/./}
  [ "$prev_us" = 0 ] || [ $((t_us - prev_us)) -le "$max_step_us" ] || max_step_us=$((t_us - prev_us))
  prev_us=$t_us
  now=$(uptime_cs)
  seen=$(procs rclock)
  samples=$((samples + 1))
  n=0
  [ -z "$seen" ] || n=$(echo "$seen" | wc -l)
  [ "$n" -le 1 ] || fail "rclock runs on $n nodes at once, $(((now - cut_cs) * 10)) ms after the cut: $(echo "$seen" | awk '{print "node-" $1 " pid " $3}' | tr '\n' ' ')"
  if [ "$n" = 1 ]; then
    read -r k _ p st <<<"$seen"
    if [ "$k" != "$C" ] && [ -z "$new" ]; then
      new="$k $p $st"
      first_other=$now
    fi
  fi
  # Go on 2 s after it started elsewhere, to see that the two never overlap.
  [ -z "$new" ] || [ $((now - first_other)) -lt 200 ] || break
  [ "$t_us" -lt "$until_us" ] || break
  d=$((50000 - (${EPOCHREALTIME/./} - t_us)))
  [ "$d" -le 0 ] || nap "0.$(printf '%06d' "$d")"
done
wait "$watcher" 2>/dev/null || true
watcher=""
[ -s "$gone_file" ] || fail "node-$C still runs rclock (pid $old_pid) $((FENCE_S + MOVE_S)) s after its link was cut"
gone_cs=$(cat "$gone_file")
[ -n "$new" ] || fail "rclock did not start elsewhere within $((FENCE_S + MOVE_S)) s of the cut"
read -r nk npid nstart <<<"$new"
stop_ms=$(((gone_cs - cut_cs) * 10))
start_ms=$(((nstart - cut_cs) * 10))
gap_ms=$(((nstart - gone_cs) * 10))
[ "$stop_ms" -le $((FENCE_S * 1000)) ] || fail "node-$C killed rclock only $stop_ms ms after its link was cut"
[ "$start_ms" -le $(((FENCE_S + MOVE_S) * 1000)) ] || fail "rclock started elsewhere only $start_ms ms after the cut"
[ "$nstart" -gt "$gone_cs" ] ||
  fail "rclock started on node-$nk (process start +$start_ms ms) before node-$C's was gone (+$stop_ms ms)"
# runc's own record of the new container: created (wall clock), in the same time frame.
created=$(runc_in "$nk" state "petrel_node-${nk}_rclock_0" | jq -r .created) || fail "runc state on node-$nk"
read -r up_now _ </proc/uptime
created_ms=$((($(date -d "$created" +%s%N) - $(date +%s%N)) / 1000000 + ${up_now/./} * 10 - cut_cs * 10))
[ "$created_ms" -gt "$stop_ms" ] || fail "runc created rclock on node-$nk at +$created_ms ms, before node-$C's was gone (+$stop_ms ms)"
grep -q "cut off from the majority" "$dir/node-$C/petreld.log" || fail "node-$C did not log that it is cut off"
note "node-$C: rclock's process gone $stop_ms ms after the cut (watched every 5 ms)"
note "node-$nk: rclock's process (pid $npid on the host) started $start_ms ms after the cut (/proc start time); runc created it at +$created_ms ms"
note "$samples samples of every node every 50 ms (the longest interval $((max_step_us / 1000)) ms): never two at once"
echo "RESULT: exclusive workload: stopped on the cut node +${stop_ms} ms, started elsewhere +${start_ms} ms, gap ${gap_ms} ms"

# =====================================================================================
step "A5. link of node-$C up: it rejoins, nothing twice"
guard_start
t0=$(ms_now)
ip -n "$ID-hub" link set "n$C" up
wait_for "$READY_S" all_ready 3 1 2 3 || fail "node-$C not Ready again after the heal"
note "node-$C Ready everywhere $(secs $(($(ms_now) - t0))) s after the heal; runc runs: $(runc_view | tr '\n' ' ')"
# While cut off, node-$C kept its replicas of rcweb (not exclusive) and the others
# started theirs: node-$C stops its own once it hears the cluster again.
wait_for "$READY_S" runc_settled 3 || fail "after the heal runc runs: $(runc_view | tr '\n' ' ')"
note "counts exact $(secs $(($(ms_now) - t0))) s after the heal"
exact() { runc_settled 3 && settled 1 3 && settled "$C" 3; }
# runc settles first; node-$C's own account (its replicas gone, the others Running as it
# hears of them) may follow a moment later: waited for, then it must hold.
wait_for "$READY_S" exact || fail "after the heal: runc $(runc_view | tr '\n' ' '); node-1 says $(placement 1); node-$C says $(placement "$C")"
holds=0
t0=$(ms_now)
while [ $(($(ms_now) - t0)) -lt 3000 ] || [ "$holds" -lt 3 ]; do
  exact || fail "not exact after the heal: runc $(runc_view | tr '\n' ' '); node-$C says $(placement "$C")"
  holds=$((holds + 1))
done
note "$holds checks over 3 s: rcweb 3 and rclock once as runc on every node and the processes say, and as petrel says"
guard_stop "from the heal on"
runc_view | sed 's/^/  runc on /'

# =====================================================================================
step "A6. every node powered off, then on again"
before=$(ctlk 1 get workloads -o json | jq -c '[.items[].name] | sort')
guard_start
t0=$(ms_now)
for k in 1 2 3; do lcd kill "$k" >/dev/null || fail "local-cluster kill $k"; done
no_procs() { [ -z "$(procs)" ]; }
wait_for 5 no_procs || fail "container processes left after every node's power cut: $(procs | tr '\n' ' ')"
for k in 1 2 3; do lcd start "$k" >/dev/null || fail "local-cluster start $k"; done
wait_for "$READY_S" all_ready 3 1 2 3 || fail "not 3 Ready members everywhere after every node came back"
for k in 1 2 3; do
  wait_for "$READY_S" settled "$k" 3 || fail "node-$k says after the restart: $(placement "$k")"
  [ "$(ctlk "$k" get workloads -o json | jq -c '[.items[].name] | sort')" = "$before" ] ||
    fail "node-$k has other workloads after the restart than $before"
done
wait_for "$READY_S" runc_settled 3 || fail "after the restart runc runs: $(runc_view | tr '\n' ' ')"
note "workloads $before, 3 Ready members, every replica Running, $(secs $(($(ms_now) - t0))) s after the power cut"
guard_stop "from the power cut on"
runc_view | sed 's/^/  runc on /'

# =====================================================================================
step "A7. down: nothing left"
cg_left() { find /sys/fs/cgroup -maxdepth 4 -type d -path '*/petrel/petrel_node-*_rc*' 2>/dev/null || true; }
lcd down "${down_flags[@]}" >/dev/null || fail "local-cluster down"
left="$(ip netns list | awk '{print $1}' | grep "^$ID-" || true)$(procs)"
[ -z "$left" ] || fail "left after down: $left"
[ -z "$(cg_left)" ] || fail "cgroups left after down: $(cg_left | tr '\n' ' ')"
note "no namespace, container process or cgroup left"

# =====================================================================================
dir=$dir_b
workers=(1 2)
step "B1. up --nodes 2 --witness --runtime runc (node-3 is the witness)"
lcd up --nodes 2 --witness --runtime runc --petreld "$petreld" --petrelctl "$ctl" >/dev/null ||
  fail "local-cluster up --nodes 2 --witness --runtime runc"
# shellcheck source=/dev/null
ID=$(. "$dir/cluster.env" && echo "$ID")
role=$(ctlk 1 get nodes -o json | jq -r '.items[] | select(.name == "node-3") | .role')
[ "$role" = witness ] || fail "node-3's role is '$role', not witness"
manifest "$work/rcweb.yaml" rcweb 2
ctlk 1 apply -f "$work/rcweb.yaml" >/dev/null || fail "apply rcweb"
ctlk 1 apply -f "$work/rclock.yaml" >/dev/null || fail "apply rclock"
wait_for 60 settled 1 2 || fail "rcweb and rclock not all Running: $(placement 1)"
wait_for 15 runc_settled 2 || fail "runc does not run rcweb twice and rclock once: $(runc_view | tr '\n' ' ')"
# The witness's petreld has no child (no shim, no runtime), no runtime state, and no
# container process is in a cgroup of node-3's.
no_witness_container() {
  ! pgrep -P "$(cat "$dir/node-3/pid")" >/dev/null && [ ! -e "$dir/node-3/state/oci" ] &&
    ! procs | grep -q '^3 '
}
witness_children() { pgrep -a -P "$(cat "$dir/node-3/pid")" | tr '\n' ' '; }
no_witness_container || fail "the witness runs something: $(witness_children)"
note "$(placement 1); the witness runs only its petreld"
for v in 1 2; do
  o=$((3 - v))
  step "B$((v + 1)). power cut of worker node-$v: its replicas on node-$o"
  fail_over "$v" "node-$v (2 nodes + witness)" 2 "$o" 3
  no_witness_container || fail "the witness runs something: $(witness_children)"
  back_on "$v" 2 3 1 2 3
  no_witness_container || fail "the witness runs something: $(witness_children)"
done
note "the witness never ran a container (no runtime state, its petreld has no child)"
lcd down "${down_flags[@]}" >/dev/null || fail "local-cluster down (2 nodes + witness)"
[ -z "$(cg_left)$(procs)" ] || fail "left after down: $(cg_left) $(procs)"

echo "RESULT: failover seconds: worker $(secs "$failover_worker"), leader $(secs "$failover_leader"); exclusive gap ${gap_ms} ms; test took $(secs $(($(ms_now) - t_test))) s"
echo "PASS"

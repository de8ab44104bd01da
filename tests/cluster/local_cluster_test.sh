#!/usr/bin/env bash
# examples/local-cluster, end to end (issue 11, "Local clusters"), fake runtime:
#  1. up --nodes 3: every node lists 3 Ready members; the host's own links, addresses and
#     routes are what they were;
#  2. a workload of 2 replicas applied through node 1 runs (2 Running);
#  3. kill (power cut) of the node running replica 0: nothing is left in its namespaces,
#     and within $MOVE_S every replica is Running on the other nodes, as both of them
#     say; prints the seconds it took;
#  4. start of that node: it is Ready again everywhere, and the workload has 2 replicas,
#     all Running (not more);
#  5. down: no namespace, host link or process of it is left (ip netns list, ip link and
#     the processes compared with before), DIR is gone; down again succeeds;
#  6. an `up` whose cluster.env and pid files are lost (a crashed up): down still removes
#     everything, found by name.
# Not root: FAIL (a test that cannot run did not pass).
#
# Usage: local_cluster_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=$1
ctl=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
lc=$src/examples/local-cluster
MOVE_S=${MOVE_S:-10}
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"   # wait_for
# shellcheck source=tests/lib/cluster.sh
. "$src/tests/lib/cluster.sh"   # workload_manifest, ms_now, pid_running, local_cluster_report

[ "$(id -u)" -eq 0 ] || { echo "FAIL: needs root (network and PID namespaces)" >&2; exit 1; }
for tool in ip unshare nsenter jq; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/petrel-local-cluster-test.XXXXXX)
dir2=$dir-crashed
cleanup() {
  "$lc" down --dir "$dir2" >/dev/null 2>&1 || true
  "$lc" down --dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir" "$dir2"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { echo "== $*"; }
note() { echo "  $*"; }
fail() {
  echo "FAIL: $*" >&2
  local_cluster_report "$lc" "$dir"
  exit 1
}
lcd() { "$lc" "$@" --dir "$dir"; }
node_ctl() {
  local k=$1
  shift
  "$ctl" --socket "$dir/node-$k/petrel.sock" "$@"
}
sees_ready() { # K COUNT
  node_ctl "$1" get nodes -o json 2>/dev/null |
    jq -e --argjson n "$2" '(.items | length) == $n and all(.items[]; .status == "Ready")' >/dev/null 2>&1
}
placement() { node_ctl "$1" get workloads w1 -o json | jq -c '[.items[0].replicas[] | "\(.node):\(.phase)"]'; }

netns_names() { ip netns list 2>/dev/null | awk '{print $1}' | sort; }
# The host's links, addresses and routes, less petrel's bridge networks (petrel0, the
# petrel1 of network_test's runc run, and the veths CNI's bridge plugin names veth + 8
# hex digits), which containers of other tests running meanwhile come and go on.
# local-cluster's own links are named otherwise.
not_bridge() { grep -Ev '(^|[ @])(petrel[0-9]|veth[0-9a-f]{8})([ @:]|$)'; }
host_links() { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | not_bridge | sort; }
host_net() {
  ip -o addr show | awk '{print $2, $3, $4}' | not_bridge | sort
  ip route show table all | not_bridge | sort
}
# processes_of DIR: processes whose command line names DIR (every petreld of it does).
processes_of() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$1/" &&
      echo "${p#/proc/} $(tr '\0' ' ' 2>/dev/null <"$p/cmdline" | cut -c1-80)"
  done
  return 0
}
# in_namespaces INODE...: the processes whose network or PID namespace is one of these,
# as PID:START (START: its start time, field 22 of /proc/PID/stat), one per line.
in_namespaces() {
  local -A ours=()
  local ino p kind
  for ino in "$@"; do ours[$ino]=1; done
  for kind in net pid; do
    while read -r ino p; do
      [ -n "${ours[$ino]:-}" ] || continue
      p=${p#/proc/}
      p=${p%%/*}
      echo "$p:$(start_of "$p")"
    done < <(stat -L -c '%i %n' /proc/[0-9]*/ns/$kind 2>/dev/null || true)
  done | sort -u
}
start_of() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }
# still_alive PID:START...: those of these processes that still run (zombies, dead
# and waiting for their parent to reap them, do not count). Asked after the
# namespaces are gone, by process and not by namespace: the kernel gives a freed
# namespace's inode number to the next namespace made (a container of another test).
still_alive() {
  local e
  for e in "$@"; do
    [ "$(start_of "${e%%:*}")" = "${e#*:}" ] &&
      [ "$(awk '{print $3}' "/proc/${e%%:*}/stat" 2>/dev/null)" != Z ] && echo "${e%%:*}"
  done
  return 0
}
# new_lines BEFORE AFTER: the lines of AFTER that BEFORE has not, without other petrel
# tests' namespaces (ptb<pid>-..., tests/lib/netns.sh), which may come and go meanwhile.
new_lines() { comm -13 <(echo "$1") <(echo "$2") | grep -v '^ptb[0-9]*-' || true; }

netns_before=$(netns_names)
links_before=$(host_links)
net_before=$(host_net)
[ -z "$(processes_of "$dir")" ] || fail "processes name $dir before the test"

# ---------------------------------------------------------------------------------
step "1. up --nodes 3 (runtime fake)"
t0=$(ms_now)
lcd up --nodes 3 --runtime fake --petreld "$petreld" --petrelctl "$ctl" || fail "local-cluster up"
note "up in $(($(ms_now) - t0)) ms"
for k in 1 2 3; do sees_ready "$k" 3 || fail "node-$k does not list 3 Ready members after up"; done
# shellcheck source=/dev/null
ID=$(. "$dir/cluster.env" && echo "$ID")
ours=$(netns_names | grep -E "^$ID-" || true)
[ "$(echo "$ours" | wc -l)" -eq 4 ] || fail "expected 4 namespaces $ID-*, found: $ours"
note "namespaces: $(echo "$ours" | tr '\n' ' ')"
[ "$(host_links)" = "$links_before" ] || fail "up changed the host's links: $(diff <(echo "$links_before") <(host_links) | tr '\n' ' ')"
[ "$(host_net)" = "$net_before" ] || fail "up changed the host's addresses or routes: $(diff <(echo "$net_before") <(host_net) | tr '\n' ' ')"
note "host links, addresses and routes unchanged"
inodes=()
for ns in $ours; do inodes+=("$(stat -L -c %i "/run/netns/$ns")"); done
for k in 1 2 3; do
  p=$(cat "$dir/node-$k/pid")
  inodes+=("$(stat -L -c %i "/proc/$p/ns/pid")")
  grep -q '^NSpid:.*[[:space:]]1$' "/proc/$p/status" || fail "node-$k's petreld (pid $p) is not pid 1 of a PID namespace"
done
lcd status | sed 's/^/  /'

# ---------------------------------------------------------------------------------
step "2. a workload of 2 replicas through node 1"
workload_manifest "$dir/w1.yaml" w1 2
node_ctl 1 apply -f "$dir/w1.yaml" >/dev/null || fail "apply w1 through node 1"
running() { # K: node K sees 2 replicas of w1, all Running, on distinct non-empty nodes
  node_ctl "$1" get workloads w1 -o json 2>/dev/null | jq -e '.items[0] | .readyReplicas == 2 and
    (.replicas | length) == 2 and all(.replicas[]; .phase == "Running" and .node != "")' >/dev/null 2>&1
}
wait_for 30 running 1 || fail "w1 not 2 Running replicas as node 1 says: $(placement 1)"
note "w1: $(placement 1)"

# ---------------------------------------------------------------------------------
victim_name=$(node_ctl 1 get workloads w1 -o json | jq -r '.items[0].replicas[0].node')
victim=${victim_name#node-}
[[ "$victim" =~ ^[1-3]$ ]] || fail "replica 0 runs on '$victim_name', not node-1..3"
survivors=()
for k in 1 2 3; do [ "$k" != "$victim" ] && survivors+=("$k"); done
step "3. power cut of $victim_name (runs replica 0); survivors node-${survivors[0]}, node-${survivors[1]}"
moved() { # every replica Running on a survivor, as both survivors say
  local k
  for k in "${survivors[@]}"; do
    node_ctl "$k" get workloads w1 -o json 2>/dev/null | jq -e --arg d "$victim_name" '.items[0] |
      .readyReplicas == 2 and (.replicas | length) == 2 and
      all(.replicas[]; .node != $d and .node != "" and .phase == "Running")' >/dev/null 2>&1 || return 1
  done
}
t0=$(ms_now)
lcd kill "$victim" || fail "local-cluster kill $victim"
t_kill=$(($(ms_now) - t0))
[ -z "$(ip netns pids "$ID-n$victim")" ] || fail "processes left in $ID-n$victim after the power cut: $(ip netns pids "$ID-n$victim" | tr '\n' ' ')"
[ ! -S "$dir/node-$victim/petrel.sock" ] || ! "$ctl" --socket "$dir/node-$victim/petrel.sock" version >/dev/null 2>&1 ||
  fail "$victim_name still answers after the power cut"
wait_for "$MOVE_S" moved || fail "w1 not Running on the survivors within ${MOVE_S}s of the power cut: $(placement "${survivors[0]}")"
t_moved=$(($(ms_now) - t0))
secs=$(awk -v ms="$t_moved" 'BEGIN { printf "%.1f", ms / 1000 }')
note "kill took ${t_kill} ms (link down, PID namespace killed, nothing left in it)"
note "every replica Running on the survivors ${secs} s after the power cut, as both say: $(placement "${survivors[0]}")"
echo "RESULT: failover after a power cut of $victim_name: ${secs} s"

# ---------------------------------------------------------------------------------
step "4. start $victim_name: Ready again, still 2 replicas"
t0=$(ms_now)
lcd start "$victim" || fail "local-cluster start $victim"
all_ready() { local k; for k in 1 2 3; do sees_ready "$k" 3 || return 1; done; }
wait_for 30 all_ready || fail "$victim_name not Ready again on every node within 30s: $(node_ctl 1 get nodes 2>&1 | tr '\n' ' ')"
note "$victim_name Ready again on every node $(($(ms_now) - t0)) ms after its start"
wait_for 15 running "$victim" || fail "$victim_name does not see w1's 2 Running replicas: $(placement "$victim")"
for k in 1 2 3; do running "$k" || fail "node-$k does not see exactly 2 Running replicas of w1: $(placement "$k")"; done
note "w1: $(placement 1) on every node"

# ---------------------------------------------------------------------------------
step "5. down: nothing left"
# shellcheck disable=SC2207  # PID:START words
members=($(in_namespaces "${inodes[@]}"))
[ "${#members[@]}" -ge 3 ] || fail "fewer processes than nodes in the nodes' namespaces: ${members[*]}"
t0=$(ms_now)
lcd down || fail "local-cluster down"
note "down in $(($(ms_now) - t0)) ms"
leaks=""
left=$(netns_names | grep -E "^$ID-" || true)
[ -z "$left" ] || leaks+=" namespaces: $left;"
added=$(new_lines "$netns_before" "$(netns_names)")
[ -z "$added" ] || leaks+=" new namespaces: $added;"
added=$(new_lines "$links_before" "$(host_links)")
[ -z "$added" ] || leaks+=" new host links: $added;"
[ "$(host_net)" = "$net_before" ] || leaks+=" host addresses or routes changed;"
procs=$(processes_of "$dir")
[ -z "$procs" ] || leaks+=" processes: $procs;"
procs=$(still_alive "${members[@]}")
[ -z "$procs" ] || leaks+=" processes of its namespaces: $procs;"
[ ! -e "$dir" ] || leaks+=" $dir still exists;"
[ -z "$leaks" ] || fail "left behind by down:$leaks"
note "no namespace, host link or process left; $dir removed"
lcd down >/dev/null || fail "a second down failed"
note "down again: exit 0"

# ---------------------------------------------------------------------------------
step "6. down after a crashed up (no cluster.env, no pid files)"
"$lc" up --nodes 2 --dir "$dir2" --runtime fake --petreld "$petreld" --petrelctl "$ctl" >/dev/null ||
  fail "local-cluster up --nodes 2 --dir $dir2"
# shellcheck source=/dev/null
ID2=$(. "$dir2/cluster.env" && echo "$ID")
inodes2=()
for ns in $(netns_names | grep -E "^$ID2-"); do inodes2+=("$(stat -L -c %i "/run/netns/$ns")"); done
# shellcheck disable=SC2207  # PID:START words
members=($(in_namespaces "${inodes2[@]}"))
rm -f "$dir2/cluster.env" "$dir2"/node-*/pid
"$lc" down --dir "$dir2" || fail "down after a crashed up"
left="$(netns_names | grep -E "^$ID2-" || true)$(processes_of "$dir2")$(still_alive "${members[@]}")"
[ -z "$left" ] || fail "left behind by down after a crashed up: $left"
[ ! -e "$dir2" ] || fail "$dir2 still exists"
added=$(new_lines "$links_before" "$(host_links)")
[ -z "$added" ] || fail "new host links: $added"
note "everything removed, found by name"
echo "PASS"

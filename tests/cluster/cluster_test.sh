#!/usr/bin/env bash
# Three petreld as peers, each in its own network namespace on a private bridge
# (tests/lib/netns.sh), fake runtime (issue 10, "Tests: real processes"):
#  1. node 1 runs `cluster init`; nodes 2 and 3 join with its token; every node lists 3
#     Ready members and the same single leader;
#  2. a workload applied on a follower is read on every node, its replicas placed from
#     that follower on (spread), Running, as every node says;
#  3. kill -9 of the leader: the survivors elect another within $FAILOVER_S, the replica
#     it ran runs on a survivor, a write through a survivor succeeds, the killed node
#     restarted with its state dir rejoins and has that write;
#  4. every node stopped (SIGTERM, exit 0) and started again: the same workloads on
#     every node, 3 Ready members, a leader; a drained node's replicas move away, and
#     it is Draining until uncordoned;
#  5. a node with a wrong token (the one `cluster token --rotate` replaced: well formed,
#     right CA, old secret) is refused: petreld exits non-zero or logs the refusal, and
#     no member lists it; the new token works;
#  6. that node, once `cluster remove`d (through a follower) and restarted with its
#     state dir, is refused by the others and told so;
#  7. a node whose certificate comes from another cluster's CA is refused (below);
#  8. an exclusive workload: its node's link cut, that node stops it (fenced) before
#     another starts it, never two at once (all 3 nodes asked in turn throughout);
#  9. its node cut off again while the leader takes it over, then back hearing the
#     third node but not the leader: it does not start it from its stale replica;
# 10. its node cut off from the leader only (a partial partition): it keeps it, and the
#     leader does not start it too.
# Each step prints what it measured. Node 4 is the outsider of steps 5 to 7.
#
# A certificate from another CA (step 7): node 4 runs `cluster init` on a fresh state
# dir under the name n3, which makes cluster B with its own CA and a certificate CN=n3.
# Node 3 of cluster A is stopped, its state dir copied, and in the copy every PEM file
# of cluster/ (outside cluster/raft) is replaced by B's file of the same name, or all of
# A's by all of B's when the names differ: an impostor that is n3 in every way
# (name, address, raft id, raft log) but its certificate and CA. Started in node 3's
# namespace, it dials A's members and they dial it: A refuses it (logged, with its
# address), it gets none of A's writes, and the real n3, started again, rejoins.
#
# The words petreld uses to refuse are matched loosely ($REFUSED); refine them, and the
# bounds below, once lib/cluster has landed.
#
# Usage: cluster_test.sh PETRELD PETRELCTL   (exit 77: skipped, not root or no netns)
# Environment: PETREL_KEEP=1 keeps the nodes' state dirs and logs (path printed).
set -euo pipefail
petreld=$1
ctl=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
FORM_S=${FORM_S:-30}          # cluster formed, a node rejoined, a write seen everywhere
FAILOVER_S=${FAILOVER_S:-10}  # a new leader after kill -9 of the old one
REFUSE_S=${REFUSE_S:-15}      # a refusal shows (exit or log line)
HOLD_S=${HOLD_S:-3}           # how long a refused node must stay out
REFUSED='refus|reject|denied|den(y|ies)|not authori[sz]ed|unauthori[sz]ed|forbidden|invalid|wrong|mismatch|removed|not a member|unknown (node|member|peer)|verif|untrusted|not signed|bad certificate|unknown ca'
# A peer that is down: "connection refused" is no refusal.
NOT_REFUSAL='(connection|connect)[^a-z]*refused|ECONNREFUSED'
pid=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/netns.sh
. "$src/tests/lib/netns.sh"
# shellcheck source=tests/lib/cluster.sh
. "$src/tests/lib/cluster.sh"

for tool in jq busybox; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (ports/debian/install-deps)" >&2; exit 1; }
done
cluster_dir=$(mktemp -d /tmp/petrel-cluster-test.XXXXXX)
rc=0
netns_setup 4 || rc=$?
cluster_dir_at_exit
[ "$rc" -eq 0 ] || { [ "$rc" -eq "$NETNS_SKIP" ] && echo "SKIP: no network namespaces here"; exit "$rc"; }

fail() {
  echo "FAIL: $*" >&2
  cluster_dump 25 1 2 3 4
  exit 1
}
step() { echo "== $*"; }
note() { echo "  $*"; }
# holds_for SECONDS COMMAND...: COMMAND succeeds at every check for SECONDS (0), or
# fails once (1). For what must stay true; never to wait for something.
holds_for() {
  local until=$(($(ms_now) + $1 * 1000))
  shift
  while [ "$(ms_now)" -lt "$until" ]; do
    "$@" || return 1
    sleep 0.2
  done
}
not() { ! "$@"; }
# A refusal is on a line that names the refused one (address or name) or says why.
refused_in_log() { # I OFFSET WHO_REGEX
  log_since "$1" "$2" | grep -vE "$NOT_REFUSAL" | grep -iE "$3" | grep -qiE "$REFUSED"
}

echo "$NETNS_ID: nodes at $(node_addr 1) $(node_addr 2) $(node_addr 3) (+ $(node_addr 4)), files in $cluster_dir"
netns_netfilter_report

# ---------------------------------------------------------------------------------
step "1. form: init on n1, join n2 and n3 with the token"
t0=$(ms_now)
node_start 1 || fail "n1 did not start"
token=$(cluster_init 1) || fail "petrelctl cluster init on n1"
[ -n "$token" ] || fail "cluster init printed no token"
[ "$(node_ctl 1 cluster token | tail -n 1)" = "$token" ] || fail "cluster token does not print init's token"
wait_for "$FORM_S" all_see_ready 1 1 || fail "n1 is not a 1-node cluster with itself as leader"
for i in 2 3; do
  node_start "$i" --join "$(node_addr 1)" --token "$token" || fail "n$i (joining) did not start"
done
wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "3 Ready members and one leader not seen on every node within ${FORM_S}s"
leader=$(node_leader 1)
note "formed in $(($(ms_now) - t0)) ms; token ${#token} chars; leader $leader"
for i in 1 2 3; do note "n$i sees: $(node_view "$i")"; done
status=$(node_ctl 2 cluster status -o json) || fail "cluster status on n2"
echo "$status" | jq -e '.member == true and .self == "n2" and (.members | length) == 3 and .term > 0' >/dev/null ||
  fail "cluster status on n2 is not a member of 3 with a term: $status"
[ "$(echo "$status" | jq -r .leader)" = "$leader" ] || fail "n2's cluster status names another leader than n1's"

# ---------------------------------------------------------------------------------
step "2. apply on a follower, read on every node"
follower=""
for i in 1 2 3; do [ "n$i" != "$leader" ] && { follower=$i; break; }; done
workload_manifest "$cluster_dir/w1.yaml" w1 2
t0=$(ms_now)
node_ctl "$follower" apply -f "$cluster_dir/w1.yaml" >/dev/null || fail "apply w1 on follower n$follower"
note "apply through follower n$follower acknowledged in $(($(ms_now) - t0)) ms"
[ "$(node_ctl "$follower" get workloads w1 -o json | jq -r '.items[0].name')" = w1 ] ||
  fail "n$follower does not read its own write w1 at once"
all_have() { # WORKLOAD NODES...
  local w=$1 i
  shift
  for i in "$@"; do node_has_workload "$i" "$w" || return 1; done
}
wait_for "$FORM_S" all_have w1 1 2 3 || fail "w1 not readable on every node within ${FORM_S}s"
note "readable on every node $(($(ms_now) - t0)) ms after the apply"
# Where its replicas run, as every node says: the first on the follower it was applied
# through, the other on another node (replicas spread).
placement() { node_ctl "$1" get workloads "$2" -o json | jq -c '[.items[0].replicas[].node]'; }
spread_from() { # NODE WORKLOAD FIRST: replica 0 on FIRST, every replica on its own node
  node_ctl "$1" get workloads "$2" -o json |
    jq -e --arg n "$3" '.items[0].replicas as $r | $r[0].node == $n and
      ([$r[].node] | unique | length) == ($r | length) and all($r[]; .node != "")' >/dev/null
}
ready_on() { # NODE WORKLOAD COUNT: node I sees COUNT replicas of it Running
  [ "$(node_ctl "$1" get workloads "$2" -o json | jq '.items[0].readyReplicas')" = "$3" ]
}
for i in 1 2 3; do
  wait_for "$FORM_S" ready_on "$i" w1 2 || fail "n$i does not see the 2 replicas of w1 Running: $(node_ctl "$i" get workloads w1 -o json)"
  spread_from "$i" w1 "n$follower" || fail "n$i says w1 runs on $(placement "$i" w1), not spread from n$follower"
  note "n$i: w1 runs on $(placement "$i" w1), 2 Running"
done

# ---------------------------------------------------------------------------------
step "3. kill -9 the leader ($leader): a new leader, writes go on, the old one rejoins"
dead=$(node_index "$leader")
survivors=()
for i in 1 2 3; do [ "$i" != "$dead" ] && survivors+=("$i"); done
new_leader() { # a survivor leads and both survivors say so
  local a b
  a=$(node_leader "${survivors[0]}")
  b=$(node_leader "${survivors[1]}")
  [ -n "$a" ] && [ "$a" != "$leader" ] && [ "$a" = "$b" ]
}
t0=$(ms_now)
node_signal "$dead" KILL
wait_for "$FAILOVER_S" new_leader || fail "no new leader among n${survivors[0]}, n${survivors[1]} within ${FAILOVER_S}s of kill -9 $leader"
elected=$(($(ms_now) - t0))
# w1's replicas run on the survivors again (the dead leader ran one of them), as both
# survivors see it.
moved() { # every replica of w1 is Running on a survivor, as both survivors say
  local i
  for i in "${survivors[@]}"; do
    node_ctl "$i" get workloads w1 -o json | jq -e --arg d "$leader" \
      '.items[0] | .readyReplicas == 2 and all(.replicas[]; .node != $d and .phase == "Running")' >/dev/null || return 1
  done
}
wait_for "$FAILOVER_S" moved || fail "w1's replicas do not run on the survivors within ${FAILOVER_S}s: $(placement "${survivors[0]}" w1)"
note "w1 runs on $(placement "${survivors[0]}" w1) again $(($(ms_now) - t0)) ms after kill -9 $leader (nodeLostAfter 1.5 s)"
leader2=$(node_leader "${survivors[0]}")
note "new leader $leader2 seen by both survivors ${elected} ms after kill -9 (bound ${FAILOVER_S}s)"
workload_manifest "$cluster_dir/w2.yaml" w2 1
via=${survivors[0]}
[ "n$via" = "$leader2" ] && via=${survivors[1]}
t0=$(ms_now)
node_ctl "$via" apply -f "$cluster_dir/w2.yaml" >/dev/null || fail "apply w2 through survivor n$via (a follower of $leader2)"
note "write through n$via acknowledged in $(($(ms_now) - t0)) ms with $leader down"
wait_for 20 all_have w2 "${survivors[@]}" || fail "w2 not on both survivors"
lost() { [ "$(node_ctl "$via" get nodes -o json | jq -r --arg n "$leader" '.items[] | select(.name == $n) | .status')" != Ready ]; }
if wait_for 10 lost; then
  note "$leader shown as $(node_ctl "$via" get nodes -o json | jq -r --arg n "$leader" '.items[] | select(.name == $n) | .status') on n$via"
else
  note "$leader still shown Ready on n$via 10 s after kill -9 (status is not checked before part 2)"
fi
t0=$(ms_now)
node_start "$dead" || fail "$leader did not restart with its state dir"
wait_for "$FORM_S" all_have w2 "$dead" || fail "$leader restarted but has not got w2 within ${FORM_S}s"
wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "not 3 Ready members everywhere after $leader rejoined"
note "$leader rejoined without --join and has w2 $(($(ms_now) - t0)) ms after its start; leader $(node_leader 1)"

# ---------------------------------------------------------------------------------
step "4. restart every node: state intact, a leader again"
snapshot() { node_ctl "$1" get workloads -o json | jq -c '[.items[] | {name, desiredReplicas, nodes: [.replicas[].node] | unique}]'; }
before=$(snapshot 1)
for i in 1 2 3; do
  [ "$(snapshot "$i")" = "$before" ] || fail "before the restart n$i holds $(snapshot "$i"), n1 $before"
done
t0=$(ms_now)
for i in 1 2 3; do kill -TERM "${node_pid[$i]}"; done
for i in 1 2 3; do
  node_wait "$i"
  [ "$node_rc" -eq 0 ] || fail "n$i exited with status $node_rc on SIGTERM"
done
note "all 3 stopped (exit 0) in $(($(ms_now) - t0)) ms"
t0=$(ms_now)
for i in 1 2 3; do node_start "$i" || fail "n$i did not restart"; done
wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "after restarting all: not 3 Ready members and one leader everywhere"
note "3 Ready members and leader $(node_leader 1) $(($(ms_now) - t0)) ms after the starts"
same_as_before() { [ "$(snapshot "$1")" = "$before" ]; }
for i in 1 2 3; do
  wait_for 10 same_as_before "$i" || fail "after the restart n$i holds $(snapshot "$i"), before $before"
done
note "every node holds $before"
wait_for "$FORM_S" ready_on "$follower" w1 2 || fail "n$follower does not run w1's 2 replicas after the restart"
node_ctl 3 apply -f "$cluster_dir/w1.yaml" | grep -q unchanged || fail "re-applying w1 on n3 after the restart is not 'unchanged'"

# Draining: the replicas on a node move to the others; uncordon takes it back.
drained=$(placement 1 w1 | jq -r '.[0]')
t0=$(ms_now)
node_ctl 1 drain "$drained" >/dev/null || fail "drain $drained"
away() { # no replica of w1 on the drained node, both Running, as node 1 says
  node_ctl 1 get workloads w1 -o json | jq -e --arg d "$drained" \
    '.items[0] | .readyReplicas == 2 and all(.replicas[]; .node != $d)' >/dev/null
}
wait_for "$FORM_S" away || fail "w1 still on the drained $drained: $(placement 1 w1)"
draining() { [ "$(node_ctl 1 get nodes -o json | jq -r --arg d "$drained" '.items[] | select(.name == $d) | .status')" = Draining ]; }
draining || fail "$drained is not shown as Draining"
note "drained $drained: w1 runs on $(placement 1 w1) $(($(ms_now) - t0)) ms later"
node_ctl 1 uncordon "$drained" >/dev/null || fail "uncordon $drained"
wait_for 10 all_see_ready 3 1 2 3 || fail "$drained not Ready again after uncordon"

# ---------------------------------------------------------------------------------
step "5. a wrong token is refused; the rotated one works"
old=$token
token=$(node_ctl 1 cluster token --rotate | tail -n 1) || fail "cluster token --rotate"
{ [ -n "$token" ] && [ "$token" != "$old" ]; } || fail "cluster token --rotate printed no new token"
# Reads answer from the local replica: n2 has it once the commit reached it.
token_on_2() { [ "$(node_ctl 2 cluster token | tail -n 1)" = "$token" ]; }
wait_for 5 token_on_2 || fail "n2's cluster token is not the rotated one 5 s after the rotation"
offsets=()
for i in 1 2 3; do offsets[$i]=$(log_size "$i"); done
t0=$(ms_now)
node_start 4 --join "$(node_addr 1)" --token "$old" || true  # may exit at once: that is a refusal
refused_token() {
  ! node_running 4 || grep -iE 'token|join' "$(node_log 4)" | grep -qiE "$REFUSED"
}
wait_for "$REFUSE_S" refused_token || fail "n4 with the replaced token neither exited nor logged a refusal within ${REFUSE_S}s"
if node_running 4; then
  note "n4 refused after $(($(ms_now) - t0)) ms; it says: $(grep -iE 'token|join' "$(node_log 4)" | grep -iE "$REFUSED" | head -n 1)"
  status=$(node_ctl 4 cluster status -o json 2>/dev/null || echo '{}')
  [ "$(echo "$status" | jq -r .member)" != true ] || fail "n4 with a wrong token says it is a member: $status"
  node_signal 4 TERM
else
  node_wait 4
  [ "$node_rc" -ne 0 ] || fail "n4 with a wrong token exited with status 0"
  note "n4 exited with status $node_rc after $(($(ms_now) - t0)) ms: $(tail -n 1 "$(node_log 4)")"
fi
n4_listed() { node_ctl "$1" get nodes -o json | jq -e 'any(.items[]; .name == "n4")' >/dev/null; }
for i in 1 2 3; do n4_listed "$i" && fail "n$i lists n4, which had a wrong token"; done
for i in 1 2 3; do
  refused_in_log "$i" "${offsets[$i]}" "$(netns_ip 4)|n4|join|token" && note "n$i logged: $(log_since "$i" "${offsets[$i]}" | grep -vE "$NOT_REFUSAL" | grep -iE "$(netns_ip 4)|n4|join|token" | grep -iE "$REFUSED" | head -n 1)"
done
rm -rf "$(node_state 4)"
t0=$(ms_now)
node_start 4 --join "$(node_addr 2)" --token "$token" || fail "n4 (joining through n2 with the rotated token) did not start"
wait_for "$FORM_S" all_see_ready 4 1 2 3 4 || fail "n4 did not join with the rotated token (through follower-or-leader n2)"
note "with the rotated token n4 joined through n2 in $(($(ms_now) - t0)) ms"

# ---------------------------------------------------------------------------------
step "6. a removed node is refused when it comes back"
via=1
[ "$(node_leader 1)" = n1 ] && via=2
t0=$(ms_now)
node_ctl "$via" cluster remove n4 >/dev/null || fail "cluster remove n4 through n$via"
wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "after cluster remove n4 not 3 Ready members everywhere"
note "n4 removed through n$via; every member lists 3 after $(($(ms_now) - t0)) ms"
node_signal 4 TERM
offsets=()
for i in 1 2 3 4; do offsets[$i]=$(log_size "$i"); done
t0=$(ms_now)
node_start 4 || true  # may exit at once: that is a refusal
told() { # n4 exited, says it is no member, or its log says it was refused
  ! node_running 4 && return 0
  [ "$(node_ctl 4 cluster status -o json 2>/dev/null | jq -r .member)" = false ] && return 0
  refused_in_log 4 "${offsets[4]}" .
}
others_refuse() { # a member logged a refusal naming n4 or its address
  local i
  for i in 1 2 3; do refused_in_log "$i" "${offsets[$i]}" "$(netns_ip 4)|n4" && return 0; done
  return 1
}
wait_for "$REFUSE_S" others_refuse || fail "no member logged a refusal of the removed n4 within ${REFUSE_S}s"
for i in 1 2 3; do
  refused_in_log "$i" "${offsets[$i]}" "$(netns_ip 4)|n4" &&
    note "n$i logged: $(log_since "$i" "${offsets[$i]}" | grep -vE "$NOT_REFUSAL" | grep -iE "$(netns_ip 4)|n4" | grep -iE "$REFUSED" | head -n 1)"
done
wait_for "$REFUSE_S" told || fail "the removed n4 runs on and neither its status nor its log says it was refused"
if node_running 4; then
  note "n4 runs, told $(($(ms_now) - t0)) ms after its start: member=$(node_ctl 4 cluster status -o json 2>/dev/null | jq -r .member); $(log_since 4 "${offsets[4]}" | grep -vE "$NOT_REFUSAL" | grep -iE "$REFUSED" | head -n 1)"
else
  note "n4 exited after $(($(ms_now) - t0)) ms: $(tail -n 1 "$(node_log 4)")"
fi
workload_manifest "$cluster_dir/w3.yaml" w3 1
node_ctl 1 apply -f "$cluster_dir/w3.yaml" >/dev/null || fail "apply w3 on n1 with n4 removed"
not_listed_anywhere() { local i; for i in 1 2 3; do n4_listed "$i" && return 1; done; return 0; }
holds_for "$HOLD_S" not_listed_anywhere || fail "a member lists the removed n4 again"
if node_running 4; then
  holds_for "$HOLD_S" not node_has_workload 4 w3 || fail "the removed n4 got w3, written after its removal"
  note "for ${HOLD_S}s no member listed n4, and n4 did not get w3"
  node_signal 4 TERM
else
  note "for ${HOLD_S}s no member listed n4"
fi

# ---------------------------------------------------------------------------------
step "7. a certificate from another cluster's CA is refused"
node_signal 3 TERM
for i in 1 2; do offsets[$i]=$(log_size "$i"); done
a_refuses() { # n1 or n2 logged a refusal naming n3's address or name
  refused_in_log 1 "${offsets[1]}" "$(netns_ip 3)|n3" || refused_in_log 2 "${offsets[2]}" "$(netns_ip 3)|n3"
}
show_refusals() {
  local i
  for i in 1 2; do
    refused_in_log "$i" "${offsets[$i]}" "$(netns_ip 3)|n3" &&
      note "n$i logged: $(log_since "$i" "${offsets[$i]}" | grep -vE "$NOT_REFUSAL" | grep -iE "$(netns_ip 3)|n3" | grep -iE "$REFUSED" | head -n 1)"
  done
  return 0
}
# 7a. Cluster B: a fresh node named n3 at n3's address, in n3's namespace: A's members,
# dialing n3, meet B's certificate.
bdir=$cluster_dir/b
mkdir -p "$bdir"
t0=$(ms_now)
PETREL_SOCKET=$bdir/petrel.sock petreld_netns=$(netns_name 3) petreld_start "$bdir/petreld.log" \
  --runtime fake --state-dir "$bdir/state" --node-name n3 --peer-listen "$(node_addr 3)" \
  --lease-dir "$cluster_dir/run/petrel" ||
  fail "cluster B's node did not start"
bpid=$pid
"$ctl" --socket "$bdir/petrel.sock" cluster init >/dev/null || fail "cluster init of cluster B"
wait_for "$REFUSE_S" a_refuses || fail "neither n1 nor n2 logged a refusal of B's n3 at $(node_addr 3) within ${REFUSE_S}s"
note "7a. A dialing n3 met cluster B's certificate; refused within $(($(ms_now) - t0)) ms"
show_refusals
kill -TERM "$bpid"
wait "$bpid" || fail "cluster B's node exited with status $? on SIGTERM"

# 7b. The impostor: n3's own state dir with B's certificates and keys, so that it dials
# A's members as n3 itself.
pems() { # STATE_DIR: the PEM files of its cluster/ outside raft/, relative paths
  (cd "$1/cluster" && grep -rlE --exclude-dir=raft -- '-----BEGIN' . | sed 's|^\./||' | sort) || true
}
b_pems=$(pems "$bdir/state")
[ -n "$b_pems" ] || fail "no PEM file in cluster B's $bdir/state/cluster: adjust pems() to where lib/cluster keeps certificates"
imp=$cluster_dir/impostor
mkdir -p "$imp"
cp -a "$(node_state 3)" "$imp/state"
a_pems=$(pems "$imp/state")
[ -n "$a_pems" ] || fail "no PEM file in n3's state/cluster: adjust pems()"
for f in $a_pems; do rm -f "$imp/state/cluster/$f"; done
for f in $b_pems; do
  mkdir -p "$(dirname "$imp/state/cluster/$f")"
  cp "$bdir/state/cluster/$f" "$imp/state/cluster/$f"
done
note "7b. impostor: n3's state dir with B's $(echo "$b_pems" | wc -w) PEM file(s) ($(echo "$b_pems" | tr '\n' ' '))"
for i in 1 2; do offsets[$i]=$(log_size "$i"); done
t0=$(ms_now)
PETREL_SOCKET=$imp/petrel.sock petreld_netns=$(netns_name 3) petreld_start "$imp/petreld.log" \
  --runtime fake --state-dir "$imp/state" --node-name n3 --peer-listen "$(node_addr 3)" \
  --lease-dir "$cluster_dir/run/petrel" || true
ipid=$pid
if pid_running "$ipid"; then
  wait_for "$REFUSE_S" a_refuses || fail "neither n1 nor n2 logged a refusal of the impostor n3 within ${REFUSE_S}s"
  note "refused within $(($(ms_now) - t0)) ms"
  show_refusals
  workload_manifest "$cluster_dir/w4.yaml" w4 1
  node_ctl 2 apply -f "$cluster_dir/w4.yaml" >/dev/null || fail "apply w4 on n2 with the impostor up"
  impostor_has_w4() { "$ctl" --socket "$imp/petrel.sock" get workloads w4 >/dev/null 2>&1; }
  holds_for "$HOLD_S" not impostor_has_w4 || fail "the impostor with B's certificate got w4 from cluster A"
  note "for ${HOLD_S}s the impostor did not get w4; it logged: $(grep -vE "$NOT_REFUSAL" "$imp/petreld.log" | grep -iE "$REFUSED" | head -n 1)"
  kill -TERM "$ipid"
  wait "$ipid" || true
else
  # petreld itself refused to run with a certificate its stored cluster does not know.
  wait "$ipid" && fail "the impostor exited with status 0 at once"
  grep -qiE "cert|\bca\b|$REFUSED" "$imp/petreld.log" || fail "the impostor exited without saying why"
  note "the impostor refused to start: $(tail -n 1 "$imp/petreld.log")"
  workload_manifest "$cluster_dir/w4.yaml" w4 1
  node_ctl 2 apply -f "$cluster_dir/w4.yaml" >/dev/null || fail "apply w4 on n2 with n3 down"
fi
t0=$(ms_now)
node_start 3 || fail "the real n3 did not restart"
wait_for "$FORM_S" all_have w4 3 || fail "the real n3 did not get w4 within ${FORM_S}s of its restart"
wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "not 3 Ready members after the real n3 came back"
note "the real n3 rejoined and has w4 $(($(ms_now) - t0)) ms after its start"

# ---------------------------------------------------------------------------------
step "8. an exclusive workload: the cut-off node stops it before another starts it"
cat >"$cluster_dir/lock.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: lock}
spec:
  replicas: 1
  exclusive: true
  image: oci-archive:/images/busybox.tar
  command: ["/bin/sh", "-c", "sleep 1d"]
YAML
node_ctl 1 apply -f "$cluster_dir/lock.yaml" >/dev/null || fail "apply the exclusive workload"
runs_itself() { # NODE: node I says it runs lock itself (its own replica, Running)
  node_ctl "$1" get workloads lock -o json 2>/dev/null |
    jq -e --arg n "n$1" '.items[0].replicas[0] | .node == $n and .phase == "Running"' >/dev/null
}
owner() { local i; for i in 1 2 3; do runs_itself "$i" && { echo "$i"; return 0; }; done; return 1; }
wait_for "$FORM_S" owner >/dev/null || fail "the exclusive workload does not run"
cut=$(owner)
t0=$(ms_now)
netns_cut "$cut"
# Every node asked in turn, for 6 s: never two say they run it; the cut node stops it
# before another starts it.
stopped=-1 started=-1 samples=0
while [ $(($(ms_now) - t0)) -lt 6000 ]; do
  count=0 other=0
  for i in 1 2 3; do
    if runs_itself "$i"; then
      count=$((count + 1))
      [ "$i" != "$cut" ] && other=1
    fi
  done
  samples=$((samples + 1))
  [ "$count" -le 1 ] || fail "the exclusive workload runs on $count nodes at once ($(($(ms_now) - t0)) ms after the cut)"
  [ "$stopped" -lt 0 ] && ! runs_itself "$cut" && stopped=$(($(ms_now) - t0))
  [ "$started" -lt 0 ] && [ "$other" = 1 ] && started=$(($(ms_now) - t0))
done
[ "$stopped" -ge 0 ] || fail "n$cut still runs the exclusive workload 6 s after its link was cut"
[ "$started" -ge 0 ] || fail "the exclusive workload did not start elsewhere within 6 s of the cut"
[ "$started" -gt "$stopped" ] || fail "it started elsewhere ($started ms) before n$cut stopped it ($stopped ms)"
note "n$cut cut off: it stopped lock ${stopped} ms after the cut, another node started it ${started} ms after ($samples samples of all 3 nodes, never 2 at once)"
grep -q "cut off from the majority" "$(node_log "$cut")" || fail "n$cut did not log that it is cut off"
netns_heal "$cut"
wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "n$cut not Ready again after the heal"
holds_for 2 owner >/dev/null || fail "the exclusive workload does not run after the heal"
count=0
for i in 1 2 3; do runs_itself "$i" && count=$((count + 1)); done
[ "$count" = 1 ] || fail "after the heal the exclusive workload runs on $count nodes"
note "healed: n$cut Ready again, lock runs once (on n$(owner))"

# lock_off_leader STEP: sets $lead (the leader), $o (lock's node, another one) and $f
# (the third, then drained, so that only the leader could take lock over).
lock_off_leader() {
  lead=$(node_index "$(node_leader 1)")
  [ -n "$lead" ] || fail "no leader to start step $1 from"
  if [ "$(owner)" = "$lead" ]; then
    node_ctl 1 drain "n$lead" >/dev/null || fail "drain the leader n$lead"
    off_leader() { local o; o=$(owner) && [ "$o" != "$lead" ]; }
    wait_for "$FORM_S" off_leader || fail "lock did not leave the drained leader n$lead"
    node_ctl 1 uncordon "n$lead" >/dev/null || fail "uncordon n$lead"
  fi
  o=$(owner) || fail "lock does not run before step $1"
  f=$((6 - o - lead))
  node_ctl 1 drain "n$f" >/dev/null || fail "drain n$f"
}
# leader_link -I|-D: drops (or passes again) all traffic between n$o and n$lead, in
# n$o's namespace.
leader_link() {
  local chain
  for chain in "INPUT -s" "OUTPUT -d"; do
    # shellcheck disable=SC2086 # the chain and its match, two words
    netns_exec "$o" iptables "$1" $chain "$(netns_ip "$lead")" -j DROP || fail "iptables in n$o's namespace"
  done
}
# link_back: the link between n$o and n$lead again, n$f uncordoned, 3 Ready members.
link_back() {
  leader_link -D
  node_ctl 1 uncordon "n$f" >/dev/null || fail "uncordon n$f"
  wait_for "$FORM_S" all_see_ready 3 1 2 3 || fail "not 3 Ready members after n$o's link to n$lead is back"
}
at_most_one() {
  local i count=0
  for i in 1 2 3; do runs_itself "$i" && count=$((count + 1)); done
  [ "$count" -le 1 ] || { echo "lock runs on $count nodes at once" >&2; return 1; }
}

# ---------------------------------------------------------------------------------
step "9. back from a cut, a node that hears the majority but not the leader that took its exclusive workload does not start it again"
# lock runs on O, not the leader L; the third node F is drained, so that when O is cut
# off, L places lock on itself. O then comes back hearing F but not L: unfenced, with a
# replica from before the move (it still places lock on O) and no way to catch up (L
# unreachable, F follows L). It must not start lock while L runs it.
lock_off_leader 9
leader_runs() { at_most_one && runs_itself "$lead"; }
off=$(log_size "$o")
t0=$(ms_now)
netns_cut "$o"
wait_for "$FORM_S" leader_runs || fail "lock does not run on the leader n$lead after n$o was cut off: n$o $(runs_itself "$o" && echo runs || echo stopped)"
note "n$o (runs lock) cut off; the leader n$lead runs it $(($(ms_now) - t0)) ms later (n$f drained)"
leader_link -I
t0=$(ms_now)
netns_heal "$o"
back() { log_since "$o" "$off" | grep -q "n$o reaches the majority again"; }
wait_for "$FORM_S" back || fail "n$o, healed but for its link to n$lead, did not reach the majority again"
note "n$o hears n$f again (not n$lead): it reaches the majority $(($(ms_now) - t0)) ms after the heal"
holds_for 5 leader_runs || fail "n$o, back without the leader, started lock ($(($(ms_now) - t0)) ms after the heal)"
log_since "$o" "$off" | grep -q "lock waits until this node has caught up" ||
  fail "n$o did not say that lock waits until it has caught up"
note "for 5 s after, lock ran on n$lead only; n$o waits until it has caught up"
link_back
holds_for 2 leader_runs || fail "once n$o caught up, lock does not run on n$lead alone"
note "link to n$lead back: 3 Ready members, lock still on n$lead alone"

# ---------------------------------------------------------------------------------
step "10. a node cut off from the leader only keeps its exclusive workload, and the leader does not start it too"
# A partial partition: lock runs on O; the link between O and the leader L drops, O
# still hears the third node F (drained, so the leader would place lock on itself). O
# is not fenced (it hears the majority) and keeps lock; L must not count O as lost on
# its own word, since F's heartbeat answers say it hears O.
lock_off_leader 10
owner_runs() { at_most_one && runs_itself "$o"; }
leader_link -I
t0=$(ms_now)
holds_for 6 owner_runs ||
  fail "cut from the leader n$lead only, n$o lost lock or another node started it too ($(($(ms_now) - t0)) ms after the cut)"
note "n$o cut off from the leader n$lead only: for 6 s (4 times nodeLostAfter) lock ran on n$o alone"
link_back
holds_for 2 at_most_one || fail "lock runs twice after the link came back"
note "link back: 3 Ready members, lock once"

for i in 1 2 3; do node_signal "$i" TERM; done
echo "PASS"

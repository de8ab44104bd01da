# shellcheck shell=bash
# Network namespaces as test hosts: N "machines" on a private Ethernet segment, for the
# scripts that run several petreld as peers (tests/cluster, tests/bench/cluster_bench.sh).
# Needs root, iproute2 (ip) and, to prove the path, busybox (ping); iptables only where
# the bridge's netfilter hooks would drop traffic (see "Netfilter" below).
#
#   . tests/lib/netns.sh
#   netns_setup 3 || exit $?              # namespaces 1..3, cleaned up at exit
#   netns_exec 1 busybox ping -c1 "$(netns_ip 2)"
#   netns_spawn 2 "$dir/log" petreld ...  # in the background; $NETNS_PID is petreld's
#   netns_cut 3; netns_heal 3             # pull and plug node 3's cable
#
# Layout, per run (NETNS_ID=ptb<pid of the sourcing shell>, so concurrent runs never share
# a name, an address space or a segment):
#   ${NETNS_ID}-hub   a namespace holding only the bridge $NETNS_ID and the hub end of
#                     every node's veth (named n1, n2, ...)
#   ${NETNS_ID}-nI    node I: lo up, eth0 = the other end of its veth, address
#                     $NETNS_NET.I/24; NETNS_NET is 10.231.X with X = 1 + pid % 250
# Nothing of it is in the host's own network namespace: the host has no link, no route
# and no address on the segment, so nothing a test sends can leave it, and the host's
# firewall never sees it.
#
# Netfilter: with br_netfilter loaded and net.bridge.bridge-nf-call-iptables=1 (Docker
# loads it and sets FORWARD's policy to DROP), frames crossing a bridge go through the
# iptables FORWARD chain of the bridge's namespace. The bridge lives in the hub namespace,
# whose tables start empty (policy ACCEPT), so the host's rules never apply. netns_setup
# still checks the hub: if its FORWARD chain would drop (in the nft or the legacy
# tables), it adds "-i BRIDGE -o BRIDGE -j ACCEPT" there, which goes away with the hub.
# netns_netfilter_report prints what the host has, for the log.
#
# Cleanup: netns_setup traps EXIT (and INT, TERM, HUP: they exit, so EXIT runs): it
# runs the commands given to netns_at_exit (last first), stops every process still in a
# namespace (TERM, then KILL after 5 s), deletes the namespaces (the bridge and veths go
# with them) and prints whatever is left (netns_leaks) on stderr. A script with its own
# cleanup registers it with netns_at_exit instead of trapping EXIT itself.
#
# Functions (NODE is 1..N):
#   netns_setup N          creates it all; 0 done, 1 failed (message on stderr), and
#                          $NETNS_SKIP (77) when this machine cannot (not root, no ip,
#                          no netns support): CTest's SKIP_RETURN_CODE
#   netns_name NODE        the node's namespace name
#   netns_ip NODE          its address
#   netns_exec NODE CMD... runs CMD (a program, not a shell function) in the namespace
#   netns_spawn NODE LOG CMD...
#                          CMD in the background, stdout and stderr appended to LOG;
#                          $NETNS_PID is CMD's own pid (ip netns exec execs it), so
#                          kill -9 "$NETNS_PID" kills CMD itself
#   netns_pids NODE        the pids of every process in the namespace
#   netns_cut NODE         link down on the hub's end of the node's veth: the node
#                          keeps its address and route, but nothing gets through
#   netns_heal NODE        link up again
#   netns_reachable FROM TO  one ping within 1 s
#   netns_at_exit CMD      runs CMD (eval'd) at exit, before the namespaces go
#   netns_cleanup          what the EXIT trap does (safe to call twice)
#   netns_leaks            lists anything of this run left behind; 1 if any
#   netns_stale            lists namespaces of runs whose shell is gone (not removed)
#   netns_allow_forward    adds the hub's ACCEPT rule if its FORWARD chain would drop
#                          (netns_setup calls it; again after a test changes the chain)
#   netns_netfilter_report one line about br_netfilter and the host's FORWARD chain

NETNS_SKIP=77
NETNS_ID=ptb$$
NETNS_HUB=$NETNS_ID-hub
NETNS_BRIDGE=$NETNS_ID
NETNS_NET=10.231.$((1 + $$ % 250))
NETNS_COUNT=0
NETNS_PID=""
_netns_inodes=()   # the namespaces' inodes, to find processes that keep one alive
_netns_exit_cmds=()
_netns_opened=""   # the iptables programs netns_allow_forward added a rule with
_netns_done=0

netns_name() { echo "$NETNS_ID-n$1"; }
netns_ip() { echo "$NETNS_NET.$1"; }
netns_exec() {
  local node=$1
  shift
  ip netns exec "$(netns_name "$node")" "$@"
}
netns_spawn() {
  local node=$1 log=$2
  shift 2
  ip netns exec "$(netns_name "$node")" "$@" >>"$log" 2>&1 &
  NETNS_PID=$!
}
netns_pids() { ip netns pids "$(netns_name "$1")" 2>/dev/null; }
netns_cut() { ip -n "$NETNS_HUB" link set "n$1" down; }
netns_heal() { ip -n "$NETNS_HUB" link set "n$1" up; }
netns_reachable() { netns_exec "$1" busybox ping -c 1 -W 1 "$(netns_ip "$2")" >/dev/null 2>&1; }
netns_at_exit() { _netns_exit_cmds+=("$1"); }

netns_setup() {
  local n=$1 i ns
  # First, so that what the caller gives netns_at_exit runs even when this fails.
  trap 'netns_cleanup' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  if [ "$(id -u)" -ne 0 ]; then
    echo "netns: needs root (ip netns)" >&2
    return "$NETNS_SKIP"
  fi
  command -v ip >/dev/null || { echo "netns: ip is missing (ports/debian/install-deps: iproute2)" >&2; return "$NETNS_SKIP"; }
  local stale
  stale=$(netns_stale)
  [ -z "$stale" ] || echo "netns: namespaces of runs that are gone (remove with ip netns del):" $stale >&2
  if ! ip netns add "$NETNS_HUB" 2>/dev/null; then
    echo "netns: cannot create a network namespace here (ip netns add $NETNS_HUB)" >&2
    return "$NETNS_SKIP"
  fi
  _netns_remember "$NETNS_HUB"
  _netns_setup_hub || { echo "netns: cannot make bridge $NETNS_BRIDGE in $NETNS_HUB" >&2; return 1; }
  for i in $(seq "$n"); do
    ns=$(netns_name "$i")
    ip netns add "$ns" || { echo "netns: ip netns add $ns failed" >&2; return 1; }
    _netns_remember "$ns"
    NETNS_COUNT=$i
    _netns_setup_node "$i" || { echo "netns: cannot wire $ns to $NETNS_BRIDGE" >&2; return 1; }
  done
  netns_allow_forward
}

_netns_remember() {
  _netns_inodes+=("$(stat -L -c %i "/run/netns/$1" 2>/dev/null)")
}

_netns_setup_hub() {
  ip -n "$NETNS_HUB" link set lo up &&
    ip -n "$NETNS_HUB" link add "$NETNS_BRIDGE" type bridge stp_state 0 forward_delay 0 &&
    ip -n "$NETNS_HUB" link set "$NETNS_BRIDGE" up
}

_netns_setup_node() {
  local i=$1 ns
  ns=$(netns_name "$i")
  ip -n "$NETNS_HUB" link add "n$i" type veth peer name eth0 netns "$ns" &&
    ip -n "$NETNS_HUB" link set "n$i" master "$NETNS_BRIDGE" &&
    ip -n "$NETNS_HUB" link set "n$i" up &&
    ip -n "$ns" link set lo up &&
    ip -n "$ns" addr add "$(netns_ip "$i")/24" dev eth0 &&
    ip -n "$ns" link set eth0 up
}

# _netns_dropping_tools: the iptables programs (nft or legacy tables) whose FORWARD
# chain in the hub is not plainly "policy ACCEPT, no rules", when bridged IPv4 goes
# through it there (bridge-nf-call-iptables=1); nothing otherwise.
_netns_dropping_tools() {
  local nf tool rules
  nf=$(ip netns exec "$NETNS_HUB" cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)
  [ "$nf" = 1 ] || return 0
  for tool in iptables-nft iptables-legacy; do
    command -v "$tool" >/dev/null || continue
    rules=$(ip netns exec "$NETNS_HUB" "$tool" -S FORWARD 2>/dev/null) || continue
    [ "$rules" = "-P FORWARD ACCEPT" ] || echo "$tool"
  done
}

netns_allow_forward() {
  local tool
  for tool in $(_netns_dropping_tools); do
    ip netns exec "$NETNS_HUB" "$tool" -C FORWARD -i "$NETNS_BRIDGE" -o "$NETNS_BRIDGE" -j ACCEPT 2>/dev/null &&
      continue
    ip netns exec "$NETNS_HUB" "$tool" -I FORWARD -i "$NETNS_BRIDGE" -o "$NETNS_BRIDGE" -j ACCEPT ||
      { echo "netns: $tool -I FORWARD in $NETNS_HUB failed" >&2; return 1; }
    _netns_opened+=" $tool"
  done
}

netns_netfilter_report() {
  local nf policy="iptables not installed"
  nf=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo "absent (br_netfilter not loaded)")
  if command -v iptables >/dev/null; then
    policy=$(iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')
    policy="FORWARD policy ${policy:-unknown}, $(iptables -S FORWARD 2>/dev/null | grep -c '^-A' || true) rule(s)"
  fi
  local hub="its FORWARD chain was open"
  [ -n "$_netns_opened" ] && hub="an ACCEPT rule was added to its FORWARD chain by:$_netns_opened"
  echo "host: bridge-nf-call-iptables=$nf; $policy; the bridge lives in $NETNS_HUB, so host rules do not apply ($hub)"
}

netns_cleanup() {
  [ "$_netns_done" = 0 ] || return 0
  _netns_done=1
  local i ns p pids=() deadline
  for ((i = ${#_netns_exit_cmds[@]} - 1; i >= 0; i--)); do
    eval "${_netns_exit_cmds[$i]}" || true
  done
  for ns in "$NETNS_HUB" $(for i in $(seq "$NETNS_COUNT"); do netns_name "$i"; done); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do pids+=("$p"); done
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while [ $SECONDS -lt $deadline ] && _netns_any_alive "${pids[@]}"; do sleep 0.1; done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while [ $SECONDS -lt $deadline ] && _netns_any_alive "${pids[@]}"; do sleep 0.05; done
  fi
  for i in $(seq "$NETNS_COUNT"); do ip netns del "$(netns_name "$i")" 2>/dev/null || true; done
  ip netns del "$NETNS_HUB" 2>/dev/null || true
  netns_leaks >&2 || true
}

# _netns_any_alive PID...: one of them runs (a zombie, dead but not yet reaped by its
# parent, does not count: it holds no namespace).
_netns_any_alive() {
  local p state
  for p in "$@"; do
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$p/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] && return 0
  done
  return 1
}

netns_leaks() {
  local left="" ns ino p link
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    case "$ns" in "$NETNS_ID"-*) left+="  namespace $ns"$'\n' ;; esac
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    case "$link" in "$NETNS_ID"*) left+="  host link $link"$'\n' ;; esac
  done
  local -A ours=()
  for ino in "${_netns_inodes[@]}"; do [ -n "$ino" ] && ours[$ino]=1; done
  while read -r ino p; do
    [ -n "${ours[$ino]:-}" ] || continue
    p=${p#/proc/}
    p=${p%%/*}
    left+="  process $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60)) in a namespace of this run"$'\n'
  done < <(stat -L -c '%i %n' /proc/[0-9]*/ns/net 2>/dev/null || true)
  [ -z "$left" ] && return 0
  printf 'netns: left behind by %s:\n%s' "$NETNS_ID" "$left"
  return 1
}

netns_stale() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    pid=$(echo "$ns" | sed -n 's/^ptb\([0-9]*\)-.*/\1/p')
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && echo "$ns"
  done
  return 0
}

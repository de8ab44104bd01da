#!/usr/bin/env bash
# The harness of the cluster tests on its own (tests/lib/netns.sh): three namespaces on
# a private bridge reach each other and nothing else; a cut node is unreachable and a
# healed one reachable again; a bridge whose FORWARD chain drops is opened; a petreld
# started in a namespace answers /healthz on its Unix socket and opens no port; after
# cleanup nothing is left (no namespace, link or process).
# Usage: netns_test.sh PETRELD PETRELCTL   (CTest: cluster.netns; exit 77 = skipped:
# not root or no network namespaces here)
set -euo pipefail
petreld=$1
ctl=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
pid=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/netns.sh
. "$src/tests/lib/netns.sh"

fail() {
  echo "FAIL: $*" >&2
  [ -f "${tmp:-}/petreld.log" ] && { echo "--- petreld log (last 20 lines):" >&2; tail -20 "$tmp/petreld.log" >&2; }
  exit 1
}
for tool in busybox curl ss; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (ports/debian/install-deps)"
done

tmp=$(mktemp -d /tmp/petrel-netns-test.XXXXXX)
rc=0
netns_setup 3 || rc=$?
netns_at_exit 'rm -rf "$tmp"'
[ "$rc" -eq 0 ] || { [ "$rc" -eq "$NETNS_SKIP" ] && echo "SKIP: no network namespaces here"; exit "$rc"; }
echo "== $NETNS_ID: 3 namespaces on bridge $NETNS_BRIDGE (in $NETNS_HUB), $NETNS_NET.0/24"
netns_netfilter_report

echo "== every node reaches every other over the bridge"
for a in 1 2 3; do
  for b in 1 2 3; do
    [ "$a" = "$b" ] && continue
    netns_reachable "$a" "$b" || fail "node $a cannot ping node $b ($(netns_ip "$b"))"
  done
done
echo "  6 pings answered"

echo "== the host has no link and no address on the segment"
ip -o link show | grep -q "$NETNS_ID" && fail "a link of $NETNS_ID is in the host's namespace"
ip -o addr show | grep -q " $NETNS_NET\." && fail "the host has an address in $NETNS_NET.0/24"
echo "  none"

echo "== a cut node is unreachable both ways, the others still talk; healed, it is back"
netns_cut 3
netns_reachable 1 3 && fail "node 1 reaches node 3 after netns_cut 3"
netns_reachable 3 2 && fail "node 3 reaches node 2 after netns_cut 3"
netns_reachable 1 2 || fail "node 1 cannot reach node 2 while only node 3 is cut"
netns_heal 3
start=$(date +%s%N)
wait_for 5 netns_reachable 1 3 || fail "node 1 cannot reach node 3 5 s after netns_heal 3"
wait_for 5 netns_reachable 3 2 || fail "node 3 cannot reach node 2 5 s after netns_heal 3"
echo "  reachable again $((($(date +%s%N) - start) / 1000000)) ms after the heal"

echo "== bridged traffic goes through the hub's FORWARD chain; netns_allow_forward opens it"
if [ "$(ip netns exec "$NETNS_HUB" cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ] &&
  command -v iptables >/dev/null; then
  ip netns exec "$NETNS_HUB" iptables -P FORWARD DROP
  netns_reachable 1 2 && fail "node 1 reaches node 2 with the hub's FORWARD policy DROP"
  netns_allow_forward || fail "netns_allow_forward"
  netns_reachable 1 2 || fail "node 1 cannot reach node 2 after netns_allow_forward"
  echo "  policy DROP cut the bridge; the ACCEPT rule ($_netns_opened) restored it"
else
  echo "  br_netfilter off or iptables missing: bridged traffic skips iptables (nothing to check)"
fi

echo "== petreld (fake runtime, no --peer-listen) in namespace 2"
export PETREL_SOCKET=$tmp/petrel.sock
petreld_netns=$(netns_name 2)
petreld_start "$tmp/petreld.log" --runtime fake --state-dir "$tmp/state" --node-name n2 ||
  fail "petreld in $petreld_netns did not answer on $PETREL_SOCKET"
[ "$(stat -L -c %i "/proc/$pid/ns/net")" = "$(stat -L -c %i "/run/netns/$petreld_netns")" ] ||
  fail "petreld ($pid) is not in namespace $petreld_netns"
health=$(curl -sf --unix-socket "$PETREL_SOCKET" http://petrel/healthz) || fail "GET /healthz"
[ "$(echo "$health" | jq -r .status)" = ok ] || fail "GET /healthz answered $health"
listening=$(netns_exec 2 ss -Hltnu)
[ -z "$listening" ] || fail "petreld without --peer-listen listens in its namespace:"$'\n'"$listening"
echo "  pid $pid in $petreld_netns: /healthz $health; no TCP or UDP port open"

echo "== cleanup stops petreld and leaves nothing behind"
netns_cleanup
kill -0 "$pid" 2>/dev/null && [ "$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status")" != Z ] &&
  fail "petreld ($pid) still runs after netns_cleanup"
netns_leaks || fail "netns_cleanup left the above"
[ -e "$tmp" ] && fail "netns_at_exit did not remove $tmp"
echo "  no namespace, link or process of $NETNS_ID left"
echo "PASS"

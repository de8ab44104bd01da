#!/usr/bin/env bash
# Container networks through petreld on a real runtime (crun, runc, containerd or docker:
# the one $PETREL_TEST_CONTAINERD_SOCKET or $PETREL_TEST_DOCKERD_SOCKET names), issue 14: a
# workload on the bridge (the default) publishes its port 8080 as another number on the
# host, which answers on 127.0.0.1; a client workload reaches it by name while it is
# ready, and finds no such name while its readiness probe fails; one with `network:
# none` has loopback only and no attachment. kill -9 of petreld leaves the network of the running container as it is
# (it still answers); after petreld is back, deleting both leaves no network namespace,
# attachment record, address lease or iptables rule of theirs behind, and the port
# answers no more.
#   network_test.sh PETRELD PETRELCTL RUNTIME
set -euo pipefail
petreld=${1:?usage: network_test.sh PETRELD PETRELCTL RUNTIME}
ctl=${2:?}
runtime=${3:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-net-test.XXXXXX)
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
node=net-$runtime
pid=""
# A host port of its own per runtime: the two runs may overlap. runc's run puts its
# containers on a bridge and subnet of its own (petreld --bridge-name, --bridge-subnet).
# containerd's and docker's likewise.
sub=oci
case "$runtime" in
  crun) port=18093 bridge=petrel0 subnet=10.47. bridge_flags=() ;;
  runc) port=18094 bridge=petrel1 subnet=10.46.1. bridge_flags=(--bridge-name petrel1 --bridge-subnet 10.46.1.0/24) ;;
  containerd)
    port=18095 bridge=petrel2 subnet=10.46.2. sub=containerd
    bridge_flags=(--bridge-name petrel2 --bridge-subnet 10.46.2.0/24)
    ;;
  docker)
    port=18096 bridge=petrel3 subnet=10.46.3. sub=docker
    bridge_flags=(--bridge-name petrel3 --bridge-subnet 10.46.3.0/24)
    ;;
  *) echo "network_test.sh: unknown runtime $runtime" >&2; exit 2 ;;
esac

fail() {
  echo "FAIL ($runtime): $*" >&2
  echo "--- petreld log" >&2
  cat "$dir"/petreld*.log >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  runtime_cleanup "$runtime" "$state" "$dir"
  rm -rf "$dir"
  # The bridge of runc's run is the test's own: it goes, with its host rules.
  if [ "$bridge" != petrel0 ]; then
    ip link del "$bridge" 2>/dev/null || true
    local table rule
    for table in filter nat; do
      iptables -w -t "$table" -S | grep -F -- "--comment \"petrel bridge $bridge\"" |
        sed 's/^-A //' | while read -r rule; do
          eval "iptables -w -t $table -D $rule" 2>/dev/null || true
        done
    done
  fi
}
trap cleanup EXIT

# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
runtime_flags "$runtime" || fail "no runtime $runtime"
for tool in curl jq iptables-save; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (ports/debian/install-deps)"
done
busybox_image "$dir/busybox.tar"
mkdir "$dir/flag"
touch "$dir/flag/ready"
cat >"$dir/net.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: web}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "mkdir /w && echo hello > /w/i && exec httpd -f -p 8080 -h /w"]
  ports: [{containerPort: 8080, hostPort: $port}]
  terminationGracePeriod: 1s
  mounts: [{source: $dir/flag, target: /flag, readOnly: true}]
  readinessProbe:
    exec: {command: [test, -f, /flag/ready]}
    period: 200ms
    failureThreshold: 1
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: client}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "while :; do wget -q -O - http://web:8080/i 2>/dev/null || echo no-web; sleep 0.2; done"]
  terminationGracePeriod: 1s
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: alone}
spec:
  image: oci-archive:busybox.tar
  network: none
  command: ["/bin/sh", "-c", "ls /sys/class/net; exec sleep 1d"]
  terminationGracePeriod: 1s
YAML

start_petreld() {
  petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" --node-name "$node" \
    "${bridge_flags[@]}" || fail "petreld did not answer"
}
ready() { [ "$("$ctl" get workloads "$1" -o json | jq '.items[0].readyReplicas')" = 1 ]; }
answers() { [ "$(curl -s --max-time 2 "http://127.0.0.1:$port/i")" = hello ]; }
# The network id the adapter gives container ID of this state dir.
net_of() { printf '%s' "$state/$sub/containers/$1" | sha256sum | cut -c1-16 | sed 's/^/petrel-/'; }

start_petreld
"$ctl" apply -f "$dir/net.yaml" >/dev/null || fail "apply"
wait_for 30 ready web || fail "web is not ready"
wait_for 30 ready alone || fail "alone is not ready"
web_id=petrel_${node}_web_0
alone_id=petrel_${node}_alone_0
web_net=$(net_of "$web_id")
alone_net=$(net_of "$alone_id")
wait_for 10 answers || fail "127.0.0.1:$port does not answer hello"
[ -e "/run/petrel/cni/$web_net.json" ] || fail "no attachment of web ($web_net)"
[ -e "/run/petrel/netns/$web_net" ] || fail "no network namespace of web ($web_net)"
[ ! -e "/run/petrel/cni/$alone_net.json" ] || fail "network none, yet attached"
web_address=$(jq -r '.result.ips[0].address' "/run/petrel/cni/$web_net.json")
case "$web_address" in
  "$subnet"*) ;;
  *) fail "web's address $web_address is not in the subnet $subnet* petreld was given" ;;
esac
ip link show "$bridge" >/dev/null 2>&1 || fail "no bridge $bridge"
[ "$("$ctl" logs alone --replica 0)" = lo ] || fail "network none has more than lo: $("$ctl" logs alone --replica 0)"
echo "ok: published port $port answers from the host; network none has loopback only"

# Names: the client's last fetch of http://web:8080/i, through its /etc/hosts.
client_got() { [ "$("$ctl" logs client --replica 0 | tail -n 1)" = "$1" ]; }
wait_for 30 client_got hello || fail "client does not reach web by name: $("$ctl" logs client --replica 0 | tail -n 3)"
rm "$dir/flag/ready"
wait_for 30 client_got no-web || fail "web not ready, yet the client still reaches it by name"
touch "$dir/flag/ready"
wait_for 30 client_got hello || fail "web ready again, yet the client does not reach it by name"
echo "ok: a client reaches web by name while it is ready, and not while it is not"

kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=""
answers || fail "the container's network went with petreld"
start_petreld
wait_for 30 ready web || fail "web not adopted"
echo "ok: petreld killed and back, the published port still answers"

"$ctl" delete workload web >/dev/null || fail "delete web"
"$ctl" delete workload alone >/dev/null || fail "delete alone"
"$ctl" delete workload client >/dev/null || fail "delete client"
gone() { [ "$("$ctl" get workloads -o json | jq '.items | length')" = 0 ]; }
wait_for 60 gone || fail "workloads not gone: $("$ctl" get workloads)"
for net in "$web_net" "$alone_net"; do
  [ ! -e "/run/petrel/cni/$net.json" ] || fail "attachment $net left"
  [ ! -e "/run/petrel/netns/$net" ] || fail "network namespace $net left"
  ! iptables-save | grep -q "$net" || fail "iptables rules of $net left: $(iptables-save | grep "$net")"
  ! grep -rqs "$net" /run/petrel/cni/ipam || fail "an address lease of $net left"
done
! answers || fail "127.0.0.1:$port still answers"
petreld_stop ""
echo "PASS"

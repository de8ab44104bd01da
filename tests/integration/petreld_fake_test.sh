#!/usr/bin/env bash
# petreld end to end with the fake runtime: flags and config, the socket, every kind
# of request over curl (socat for bytes curl will not send), systemd notification,
# SIGTERM, kill -9 and a restart on the same state. Needs curl and socat
# (ports/debian/install-deps). WITH_CRUN (1 or 0: the build's PETREL_WITH_CRUN) is
# whether petreld must offer the crun runtime.
# Usage: petreld_fake_test.sh PETRELD PETRELCTL WITH_CRUN
set -uo pipefail

usage="usage: $0 PETRELD PETRELCTL WITH_CRUN"
petreld=${1:?$usage}
ctl=${2:?$usage}
with_crun=${3:?$usage}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/petreld-test.XXXXXX)
sock=$work/run/petrel/api.sock
state=$work/state
pid=""
listener=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/api.sh
. "$src/tests/lib/api.sh"

cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  [ -n "$listener" ] && kill "$listener" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

for tool in curl socat; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (ports/debian/install-deps)"
done

start() {  # start [flags...]: petreld in the background, once it answers
  PETREL_SOCKET=$sock petreld_start "$work/petreld.log" --runtime fake --state-dir "$state" \
    --node-name itest --log-level debug "$@" ||
    fail "petreld did not answer within 10 s (or exited)"
}
stop() {  # SIGTERM; petreld must exit 0 and remove its socket
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  pid=""
  [ "$rc" = 0 ] || fail "petreld exited $rc on SIGTERM"
  [ ! -e "$sock" ] || fail "socket $sock left behind after SIGTERM"
}

step "flags: --help, --version, bad flags exit 2 with one line"
"$petreld" --help | grep -q -- "--state-dir DIR" || fail "--help lacks --state-dir"
"$petreld" --version | grep -qE '^petreld [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
for bad in "--bogus" "--socket" "--runtime podman" "--log-level loud" "stray"; do
  # shellcheck disable=SC2086
  out=$("$petreld" $bad 2>&1)
  rc=$?
  [ "$rc" = 2 ] || fail "petreld $bad exited $rc, not 2"
  [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "petreld $bad printed more than one line: $out"
  case "$out" in *"see petreld --help"*) ;; *) fail "petreld $bad: no usage hint: $out" ;; esac
done
"$petreld" --help | grep -q -- '^ *fake  *containers in memory' || fail "--help does not describe fake"
out=$("$petreld" --runtime fake --runtime-endpoint /run/x.sock --state-dir "$state" --socket "$sock" 2>&1)
[ $? = 1 ] || fail "--runtime fake with an endpoint should fail with 1"
[ "$out" = 'petreld: runtime fake takes no endpoint (its containers live in memory); got "/run/x.sock"' ] ||
  fail "fake with an endpoint: $out"
# The crun adapter is optional (PETREL_WITH_CRUN); --help names the runtimes built in.
if [ "$with_crun" = 1 ]; then
  "$petreld" --help | grep -q -- '--runtime crun' || fail "--help does not offer crun"
  out=$(PATH=/nonexistent "$petreld" --runtime crun --state-dir "$state" --socket "$sock" 2>&1)
  [ $? = 1 ] || fail "--runtime crun without crun should fail with 1"
  [ "$out" = 'petreld: runtime crun: not found in $PATH (install the crun or runc package, or give a path)' ] ||
    fail "crun: $out"
else
  "$petreld" --help | grep -q -- '--runtime crun' && fail "--help offers crun, built without it"
  out=$("$petreld" --runtime crun 2>&1)
  [ $? = 2 ] || fail "--runtime crun in a petreld without crun should fail with 2"
  [ "$out" = 'petreld: runtime "crun" is not fake or none (see petreld --help)' ] || fail "no crun: $out"
fi

step "cluster flags: usage errors exit 2 with one clear line, before anything opens"
cluster_bad=(
  "--join 10.0.0.1:7400|--join needs --peer-listen ADDR:PORT"
  "--token t|--token needs --peer-listen ADDR:PORT"
  "--witness|--witness needs --peer-listen ADDR:PORT"
  "--advertise 10.0.0.1:7400|--advertise needs --peer-listen ADDR:PORT"
  "--node-label zone=north|--node-label needs --peer-listen ADDR:PORT"
  "--peer-listen 10.0.0.1:7400 --join 10.0.0.2:7400|--join needs --token T (run 'petrelctl cluster token' on a member)"
  "--peer-listen 10.0.0.1:7400 --token t|--token needs --join ADDR:PORT (the member whose token it is)"
  "--peer-listen 10.0.0.1|peer-listen \"10.0.0.1\" is not ADDR:PORT (e.g. 10.0.0.5:7400, [fd00::5]:7400)"
  "--peer-listen pi1:7400|peer-listen \"pi1:7400\" is not ADDR:PORT (e.g. 10.0.0.5:7400, [fd00::5]:7400)"
  "--peer-listen ::1:7400|peer-listen \"::1:7400\" is not ADDR:PORT (e.g. 10.0.0.5:7400, [fd00::5]:7400)"
  "--peer-listen [::1]:65536|peer-listen \"[::1]:65536\" is not ADDR:PORT (e.g. 10.0.0.5:7400, [fd00::5]:7400)"
  "--peer-listen 10.0.0.1:7400 --join 10.0.0.2:x --token t|join \"10.0.0.2:x\" is not ADDR:PORT (e.g. 10.0.0.5:7400, [fd00::5]:7400)"
  "--peer-listen 0.0.0.0:7400 --advertise 0.0.0.0:7400|advertise \"0.0.0.0:7400\": a wildcard address is not one peers can reach"
  "--peer-listen 10.0.0.1:7400 --node-label zone|node-label \"zone\" is not KEY=VALUE"
  "--peer-listen 10.0.0.1:7400 --node-label -zone=north|node-label: \"-zone\" is not a label key ([prefix/]name; name is at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends)"
  "--peer-listen 10.0.0.1:7400 --witness=maybe|witness \"maybe\" is not true or false"
  "--peer-listen=|peer-listen must not be empty"
  "--runtime none|--runtime none is for a witness: add --witness"
  "--runtime none --peer-listen 10.0.0.1:7400|--runtime none is for a witness: add --witness"
  "--runtime none --peer-listen 10.0.0.1:7400 --witness=false|--runtime none is for a witness: add --witness"
  "--runtime none --witness|--witness needs --peer-listen ADDR:PORT"
  "--capacity-memory 1Gi|--capacity-memory needs --peer-listen ADDR:PORT"
  "--peer-listen 10.0.0.1:7400 --capacity-memory 1Q|capacity-memory: \"1Q\" is not a quantity"
  "--peer-listen 10.0.0.1:7400 --capacity-cpu lots|capacity-cpu: \"lots\" is not a quantity"
)
for case in "${cluster_bad[@]}"; do
  flags=${case%%|*}
  want="petreld: ${case#*|} (see petreld --help)"
  # shellcheck disable=SC2086
  out=$("$petreld" --runtime fake --state-dir "$state" --socket "$sock" $flags 2>&1)
  rc=$?
  [ "$rc" = 2 ] || fail "petreld $flags exited $rc, not 2: $out"
  [ "$out" = "$want" ] || fail "petreld $flags:"$'\n'"  got:  $out"$'\n'"  want: $want"
done
[ ! -e "$state" ] || fail "a usage error opened the state dir"
"$petreld" --help | grep -q -- '--peer-listen ADDR:PORT' || fail "--help lacks --peer-listen"
"$petreld" --help | grep -q -- '--node-label KEY=VALUE' || fail "--help lacks --node-label"
"$petreld" --help | grep -q -- '^ *none  *no containers: for a witness' || fail "--help does not describe none"
out=$("$petreld" --runtime none --runtime-endpoint /run/x.sock --witness --peer-listen 127.0.0.1:7400 \
        --state-dir "$state" --socket "$sock" 2>&1)
[ $? = 1 ] || fail "--runtime none with an endpoint should fail with 1"
[ "$out" = 'petreld: runtime none takes no endpoint (it runs no containers); got "/run/x.sock"' ] ||
  fail "none with an endpoint: $out"

step "config file: unknown key names file:line; flags override it"
mkdir -p "$work/etc"
printf 'state-dir: /x\nsokcet: /y\n' >"$work/etc/bad.yaml"
out=$("$petreld" --config "$work/etc/bad.yaml" 2>&1)
[ $? = 2 ] || fail "bad config should exit 2"
case "$out" in "petreld: $work/etc/bad.yaml:2: unknown key \"sokcet\""*) ;; *) fail "config: $out" ;; esac
printf 'peer-listen: 10.0.0.1:7400\nnode-label:\n  zone: north\n  -disk: ssd\n' >"$work/etc/bad.yaml"
out=$("$petreld" --config "$work/etc/bad.yaml" 2>&1)
[ $? = 2 ] || fail "a bad node-label in the config should exit 2"
[ "$out" = "petreld: $work/etc/bad.yaml:4: node-label: \"-disk\" is not a label key ([prefix/]name; name is at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends)" ] ||
  fail "config node-label: $out"
printf 'peer-listen: 10.0.0.1:7400\nnode-label: [zone=north]\n' >"$work/etc/bad.yaml"
out=$("$petreld" --config "$work/etc/bad.yaml" 2>&1)
[ $? = 2 ] || fail "a node-label list in the config should exit 2"
[ "$out" = "petreld: $work/etc/bad.yaml:2: node-label: must be a map of KEY: VALUE" ] ||
  fail "config node-label list: $out"
printf 'join: 10.0.0.1:7400\ntoken: t\n' >"$work/etc/bad.yaml"
out=$("$petreld" --config "$work/etc/bad.yaml" 2>&1)
[ $? = 2 ] || fail "join in the config without peer-listen should exit 2"
[ "$out" = "petreld: --join needs --peer-listen ADDR:PORT (see petreld --help)" ] ||
  fail "config join: $out"
# witness: false and an empty node-label map are what no cluster flags are.
printf 'state-dir: %s\nsocket: /nonexistent/dir/x.sock\nruntime: crun\nlog-level: info\nwitness: false\nnode-label: {}\n' \
  "$state" >"$work/etc/petreld.yaml"

step "a manifest error at start is fatal with the library's message"
mkdir -p "$work/manifests"
printf 'apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: bad}\nspec:\n  image: oci:/i\n  replicas: many\n' \
  >"$work/manifests/bad.yaml"
out=$("$petreld" --runtime fake --state-dir "$state" --socket "$sock" \
        --manifests "$work/manifests/bad.yaml" 2>&1)
[ $? = 1 ] || fail "a bad manifest should exit 1"
case "$out" in "petreld: $work/manifests/bad.yaml:6:13: spec.replicas"*) ;; *) fail "manifest: $out" ;; esac
rm "$work/manifests/bad.yaml"
cp "$(dirname "$0")/../../examples/manifests/hello.yaml" "$work/manifests/"

step "start (config + overriding flags + manifests) with NOTIFY_SOCKET; READY=1"
socat -u UNIX-RECV:"$work/notify" OPEN:"$work/notified",creat,append &
listener=$!
wait_for 3 test -S "$work/notify" || fail "socat made no $work/notify"
NOTIFY_SOCKET=$work/notify start --config "$work/etc/petreld.yaml" --manifests "$work/manifests"
wait_for 3 grep -qs READY=1 "$work/notified" || fail "no READY=1 on NOTIFY_SOCKET"

step "socket 0660 in a 0750 directory"
[ "$(stat -c %a "$sock")" = 660 ] || fail "socket mode $(stat -c %a "$sock")"
[ "$(stat -c %a "$(dirname "$sock")")" = 750 ] || fail "socket dir mode"

step "a second petreld on the same socket is refused"
out=$("$petreld" --runtime fake --state-dir "$work/state2" --socket "$sock" 2>&1)
[ $? = 1 ] || fail "a second petreld should fail"
case "$out" in *"socket $sock is in use"*) ;; *) fail "second petreld: $out" ;; esac
curl -sf --unix-socket "$sock" http://petrel/healthz >/dev/null || fail "first petreld lost its socket"

step "without --peer-listen: no TCP port, and the cluster paths say how to get one"
if ss -Hltnp | grep -q "pid=$pid,"; then fail "petreld listens on TCP: $(ss -Hltnp | grep "pid=$pid,")"; fi
api GET /v1/nodes
expect 404 '"error":"this node is not cluster-capable: start petreld with --peer-listen ADDR:PORT"'
api POST /v1/cluster/init -H 'Content-Type: application/json' -d '{}'
expect 404 'not cluster-capable'

step "GET /healthz, /v1/version; the manifest's workload is there"
api GET /healthz
expect 200 '{"status":"ok"}'
api GET /v1/version
expect 200 '"runtime":"fake"' '"node":"itest"' '"api":"v1"'
api GET /v1/workloads/hello
expect 200 '"name":"hello"'

step "PUT JSON and YAML, GET them back"
spec='{"args":[],"backoff":{"initialMs":1000,"maxMs":300000,"resetAfterMs":0},"command":["/bin/sh","-c","sleep 1d"],"env":{"A":"b"},"image":"oci-archive:/images/busybox.tar","labels":{},"mounts":[],"ports":[],"readOnlyRootfs":false,"replicas":2,"resources":{"cpuMillis":0,"memoryBytes":0,"pids":0},"restartPolicy":"Always","terminationGraceMs":10000,"user":"","workingDir":""}'
api PUT /v1/workloads/web -H 'Content-Type: application/json' --data-binary "$spec"
expect 200 '{"generation":1,"name":"web","outcome":"created"}'
cat >"$work/db.yaml" <<'EOF'
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: db}
spec:
  image: oci-archive:/images/busybox.tar
  command: ["/bin/sh", "-c", "sleep 1d"]
EOF
api PUT /v1/workloads -H 'Content-Type: application/yaml' --data-binary @"$work/db.yaml"
expect 200 '{"items":[{"generation":1,"name":"db","outcome":"created"}]}'
api PUT /v1/workloads -H 'Content-Type: application/yaml' --data-binary @"$work/db.yaml"
expect 200 '"outcome":"unchanged"'
wait_for 10 bash -c "curl -s --unix-socket '$sock' http://petrel/v1/workloads/web |
  grep -q '\"readyReplicas\":2'" || fail "web: 2 replicas not ready"
api GET /v1/workloads/web
expect 200 '"name":"web"' '"generation":1' '"specHash":"' '"createdAt":' '"updatedAt":' \
  '"desiredReplicas":2' '"readyReplicas":2' '"spec":{"args":[]' '"replicas":[{"containerId":"' \
  '"phase":"Running"' '"lastExitCode":-1' '"nextRetry":0'
api GET /v1/workloads
expect 200 '"name":"db"' '"name":"hello"' '"name":"web"'
api GET '/v1/workloads/web/logs?replica=1'
expect 200
api GET '/v1/workloads/web/logs?replica=5'
expect 404 '{"error":"workload web has no replica 5 (replicas: 2)"}'

step "events with follow=1: the backlog and a live one"
(timeout 20 curl -sSN --unix-socket "$sock" 'http://petrel/v1/events?follow=1&workload=web' \
   >"$work/events" 2>&1 || true) &
follower=$!
# Subscribed once the backlog is out: the event of the PUT below is live.
wait_for 10 grep -q '"type":"Started"' "$work/events" || fail "no backlog: $(cat "$work/events")"
grep -q 'configured, generation 2' "$work/events" && fail "generation 2 before the PUT"
api PUT /v1/workloads/web -H 'Content-Type: application/json' \
  --data-binary "${spec/\"replicas\":2/\"replicas\":3}"
expect 200 '"outcome":"configured"' '"generation":2'
wait_for 10 grep -q 'configured, generation 2' "$work/events" || true
pkill -f 'follow=1&workload=web' || true
wait "$follower"
grep -q '"type":"Applied"' "$work/events" || fail "no Applied event: $(cat "$work/events")"
grep -q '"type":"Started"' "$work/events" || fail "no Started event: $(cat "$work/events")"
grep -q 'configured, generation 2' "$work/events" || fail "no live event: $(cat "$work/events")"
grep -q '"workload":"db"' "$work/events" && fail "the workload filter let db through"
api GET '/v1/events?workload=db&limit=1'
expect 200 '"type":"Applied"' '"workload":"db"'

step "errors: manifest position, name mismatch, bad JSON, 404, 405, 415"
printf 'apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: x}\nspec:\n  image: oci:/i\n  resources: {memory: 64Q}\n' \
  >"$work/bad.yaml"
api PUT /v1/workloads -H 'Content-Type: application/yaml' --data-binary @"$work/bad.yaml"
expect 400 '{"error":"request:6:' 'spec.resources.memory: \"64Q\" is not a quantity'
api PUT /v1/workloads/other -H 'Content-Type: application/json' \
  --data-binary "${spec/\"args\"/\"name\":\"web\",\"args\"}"
expect 400 'does not match'
api PUT /v1/workloads -H 'Content-Type: application/json' --data-binary '{"items": ['
expect 400 '"error":"body: invalid JSON: '
api GET /v1/nothing
expect 404 '{"error":"no such path: /v1/nothing"}'
api POST /v1/workloads -H 'Content-Type: application/json' --data-binary '{}'
expect 405
api PUT /v1/workloads -H 'Content-Type: text/plain' --data-binary 'x'
expect 415

step "malformed and oversized requests: 400 / 413 / 411 as JSON, then close"
printf 'NOT HTTP AT ALL\r\n\r\n' | socat -t 2 - UNIX-CONNECT:"$sock" >"$work/raw" ||
  fail "socat failed"
grep -q '^HTTP/1.1 400 Bad Request' "$work/raw" || fail "garbage: $(cat "$work/raw")"
grep -q '{"error":"malformed request: ' "$work/raw" || fail "garbage body: $(cat "$work/raw")"
printf 'PUT /v1/workloads HTTP/1.1\r\nContent-Type: application/json\r\n\r\n' |
  socat -t 2 - UNIX-CONNECT:"$sock" >"$work/raw" || fail "socat failed"
grep -q '^HTTP/1.1 411 Length Required' "$work/raw" || fail "no length: $(cat "$work/raw")"
printf 'PUT /v1/workloads HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n' |
  socat -t 2 - UNIX-CONNECT:"$sock" >"$work/raw" || fail "socat failed"
grep -q '^HTTP/1.1 413 Payload Too Large' "$work/raw" || fail "too large: $(cat "$work/raw")"
printf 'GET /healthz HTTP/1.1\r\n\r\nGET /v1/version HTTP/1.1\r\nConnection: close\r\n\r\n' |
  socat -t 2 - UNIX-CONNECT:"$sock" >"$work/raw" || fail "socat failed"
[ "$(grep -c '^HTTP/1.1 200 OK' "$work/raw")" = 2 ] || fail "pipelining: $(cat "$work/raw")"

step "DELETE"
api DELETE /v1/workloads/db
expect 200 '{"deleted":true,"name":"db"}'
# Terminating until its last container is gone (a second DELETE meanwhile is a 200),
# then gone: a busy machine may take a moment.
gone() { api GET /v1/workloads/db && [ "$code" = 404 ]; }
wait_for 10 gone || fail "workload db still there 10 s after DELETE: $(cat "$work/body")"
api DELETE /v1/workloads/db
expect 404 '{"error":"workload db not found"}'

step "SIGTERM: exit 0, socket removed, STOPPING=1"
stop
grep -q STOPPING=1 "$work/notified" || fail "no STOPPING=1 on NOTIFY_SOCKET"
kill "$listener" 2>/dev/null
wait "$listener" 2>/dev/null
listener=""

step "restart on the same state (abstract NOTIFY_SOCKET): the workloads are still there"
name="petreld-test-$$"
socat -u ABSTRACT-RECV:"$name" OPEN:"$work/notified2",creat,append &
listener=$!
wait_for 3 grep -q "@$name\$" /proc/net/unix || fail "socat made no @$name"
NOTIFY_SOCKET="@$name" start
wait_for 3 grep -qs READY=1 "$work/notified2" || fail "no READY=1 on the abstract NOTIFY_SOCKET"
api GET /v1/workloads/web
expect 200 '"generation":2' '"desiredReplicas":3'
api GET /v1/workloads/db
expect 404

step "kill -9 leaves a stale socket; the next petreld replaces it"
kill -9 "$pid"
wait "$pid" 2>/dev/null
pid=""
[ -S "$sock" ] || fail "expected a stale socket after kill -9"
start
api GET /v1/workloads/web
expect 200 '"name":"web"'
stop

step "a witness without a container runtime: --witness --runtime none starts and answers"
# A free loopback port for its peers' TLS port.
for peer_port in $(shuf -i 20000-60000 -n 20); do
  ss -Hltn "sport = :$peer_port" | grep -q . || break
done
start --runtime none --witness --peer-listen "127.0.0.1:$peer_port" --state-dir "$work/witness" \
  --capacity-memory 1Gi --capacity-cpu 0 --lease-dir "$work/leases"
api GET /healthz
expect 200 '{"status":"ok"}'
api GET /v1/version
expect 200 '"runtime":"none"'
api GET /v1/workloads
expect 200 '{"items":[]}'

step "cluster set: on a one-node cluster (the witness's own), keys not given stay"
PETREL_SOCKET=$sock "$ctl" cluster init --node-lost-after 3s >/dev/null || fail "cluster init"
out=$(PETREL_SOCKET=$sock "$ctl" cluster set --heartbeat 300ms 2>&1) || fail "cluster set: $out"
[ "$out" = "cluster settings now: heartbeat 300ms, node lost after 3s, fence after 1s" ] ||
  fail "cluster set: $out"
api GET /v1/cluster
expect 200 '"settings":{"fenceAfter":"1s","heartbeat":"300ms","nodeLostAfter":"3s"}'
out=$(PETREL_SOCKET=$sock "$ctl" cluster set --fence-after 2.6s 2>&1)
[ $? = 1 ] || fail "cluster set past nodeLostAfter should exit 1: $out"
case "$out" in "petrelctl: cluster set: nodeLostAfter (3s) must be at least fenceAfter + heartbeat + 200ms (3s100ms)"*) ;;
  *) fail "cluster set past nodeLostAfter: $out" ;; esac
api PUT /v1/cluster/settings -H 'Content-Type: application/json' -d '{"nodeLostAfter":"4s","fenceAfter":"2.6s"}'
expect 200 '{"fenceAfter":"2s600ms","heartbeat":"300ms","nodeLostAfter":"4s"}'
# The capacity it offers, as given (cpu 0: not limited).
api GET /v1/nodes
expect 200 '"capacity":{"cpuMillis":0,"memory":1073741824}'
stop

echo "PASS: petreld_fake"

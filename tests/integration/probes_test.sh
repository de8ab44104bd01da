#!/usr/bin/env bash
# Health probes on a real runtime (crun, runc or containerd), through petreld: an exec liveness
# probe that starts failing restarts its container; so does an HTTP endpoint (busybox
# httpd in the container's own network namespace) that starts answering 404; readiness
# flips with a file the test creates and removes; a slow start held by a startup probe
# is not killed; a tcp probe of a closed port fails and one of an open port passes;
# an exec probe that outlives its timeout fails as timed out; a container that exits
# while probed every 100 ms is restarted once per exit, not twice.
#   probes_test.sh PETRELD PETRELCTL RUNTIME
set -euo pipefail
petreld=${1:?usage: probes_test.sh PETRELD PETRELCTL RUNTIME}
ctl=${2:?}
runtime=${3:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-probes.XXXXXX)
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
pid=""

fail() {
  echo "FAIL ($runtime): $*" >&2
  "$ctl" get workloads -o wide >&2 || true
  "$ctl" events >&2 || true
  echo "--- petreld log (tail)" >&2
  tail -50 "$dir/petreld.log" >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  runtime_cleanup "$runtime" "$state" "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
runtime_flags "$runtime" || fail "no runtime $runtime"
busybox_image "$dir/busybox.tar"
mkdir "$dir/flag"

# field WORKLOAD JQ: a field of the workload's JSON.
field() { "$ctl" get workloads "$1" -o json | jq -r ".items[0]$2"; }
is() { [ "$(field "$1" "$2")" = "$3" ]; }
# events_of WORKLOAD: its events' "TYPE MESSAGE" lines.
events_of() { "$ctl" events --workload "$1" -o json | jq -r '.items[] | .type + " " + .message'; }
has_event() { events_of "$1" | grep -qF -- "$2"; }

cat >"$dir/probes.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: exec-live}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600"]
  backoff: {initial: 200ms}
  terminationGracePeriod: 1s
  livenessProbe:
    exec: {command: [test, -f, /tmp/healthy]}
    period: 300ms
    failureThreshold: 2
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: http-live}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "mkdir /tmp/www; echo ok >/tmp/www/healthz; httpd -p 8080 -h /tmp/www; sleep 2; rm /tmp/www/healthz; exec sleep 3600"]
  backoff: {initial: 200ms}
  terminationGracePeriod: 1s
  livenessProbe:
    httpGet: {path: /healthz, port: 8080}
    initialDelay: 300ms
    period: 300ms
    failureThreshold: 2
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: ready-file}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sleep", "3600"]
  terminationGracePeriod: 1s
  mounts: [{source: $dir/flag, target: /flag, readOnly: true}]
  readinessProbe:
    exec: {command: [test, -f, /flag/ready]}
    period: 200ms
    failureThreshold: 1
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: slow-start}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "sleep 3; touch /tmp/started; exec sleep 3600"]
  terminationGracePeriod: 1s
  # Timeouts generous: these fail for the file only, never for an exec slowed by a
  # busy machine (one through containerd takes about twice crun's).
  startupProbe:
    exec: {command: [test, -f, /tmp/started]}
    period: 300ms
    timeout: 3s
    failureThreshold: 40
  livenessProbe:
    exec: {command: [test, -f, /tmp/started]}
    period: 300ms
    timeout: 3s
    failureThreshold: 1
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: tcp}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "mkdir /tmp/www; httpd -f -p 7000 -h /tmp/www"]
  terminationGracePeriod: 1s
  readinessProbe:
    tcpSocket: {port: 7000}
    period: 200ms
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: tcp-closed}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sleep", "3600"]
  terminationGracePeriod: 1s
  readinessProbe:
    tcpSocket: {port: 9}
    period: 200ms
    failureThreshold: 1
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: slow-probe}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sleep", "3600"]
  backoff: {initial: 200ms}
  terminationGracePeriod: 1s
  livenessProbe:
    exec: {command: [sleep, "5"]}
    timeout: 500ms
    period: 1s
    failureThreshold: 1
---
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: exits}
spec:
  image: oci-archive:busybox.tar
  command: ["/bin/sh", "-c", "sleep 1; exit 3"]
  backoff: {initial: 3s}
  livenessProbe:
    exec: {command: ["true"]}
    period: 100ms
    failureThreshold: 1
YAML

petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" --node-name "probes-$runtime" \
  --log-level debug || fail "petreld did not answer"
"$ctl" apply -f "$dir/probes.yaml" >/dev/null || fail "apply"

# First, while its first back-off runs: an exit while probed is one failure: after the
# first exit it waits out one back-off (3 s) with 0 restarts, and no probe kills the
# container it already lost.
wait_for 20 is exits .replicas[0].phase CrashLoop || fail "exits never exited"
sleep 1
is exits .replicas[0].restarts 0 || fail "exits restarted during its back-off"
[ "$(events_of exits | grep -c '^BackOff')" = 1 ] || fail "exits: $(events_of exits)"
has_event exits "Unhealthy" && fail "exits: a probe judged an exited container: $(events_of exits)"
wait_for 10 is exits .replicas[0].restarts 1 || fail "exits not restarted after its back-off"

# Readiness with a file: not ready without it, ready with it, not ready again.
wait_for 30 is ready-file .replicas[0].phase Running || fail "ready-file not running"
sleep 1
is ready-file .readyReplicas 0 || fail "ready-file is ready without its file"
is ready-file .replicas[0].ready false || fail "ready-file replica says ready"
touch "$dir/flag/ready"
wait_for 10 is ready-file .readyReplicas 1 || fail "ready-file did not become ready"
is ready-file .replicas[0].ready true || fail "ready-file replica not ready"
has_event ready-file "Ready readiness probe passed" || fail "no Ready event"
rm "$dir/flag/ready"
wait_for 10 is ready-file .readyReplicas 0 || fail "ready-file stayed ready"
has_event ready-file "readiness probe failed once: exit code 1" || fail "no Unhealthy event for readiness"
is ready-file .replicas[0].restarts 0 || fail "a readiness probe restarted its container"

# tcp: an open port in the container's own network namespace passes, a closed one fails.
wait_for 20 is tcp .readyReplicas 1 || fail "tcp probe of an open port did not pass"
wait_for 10 has_event tcp-closed "readiness probe failed once: connect 127.0.0.1:9: connection refused; not ready" ||
  fail "tcp probe of a closed port: no failure"
is tcp-closed .readyReplicas 0 || fail "tcp-closed is ready"

# Liveness: exec and HTTP probes that start failing restart their containers.
wait_for 30 is exec-live '.replicas[0].restarts >= 1' true || fail "exec-live was not restarted"
has_event exec-live "Unhealthy liveness probe failed 2 times in a row: exit code 1; killing the container" ||
  fail "exec-live: no Unhealthy event"
events_of exec-live | grep -q "after its liveness probe failed" || fail "exec-live: the exit does not say why"
wait_for 30 is http-live '.replicas[0].restarts >= 1' true || fail "http-live was not restarted"
has_event http-live "liveness probe failed 2 times in a row: HTTP 404; killing the container" ||
  fail "http-live: no Unhealthy event for HTTP 404"
# Each kill has its failed probe: the restarted container (the same id on crun and runc,
# a new pid) is probed afresh, not killed for its predecessor's failures.
wait_for 30 is http-live '.replicas[0].restarts >= 2' true || fail "http-live was not restarted twice"
kills=$(events_of http-live | grep -c '^Killing .*SIGTERM' || true)
unhealthy=$(events_of http-live | grep -c '^Unhealthy' || true)
[ "$kills" -le "$unhealthy" ] || fail "http-live: $kills kills for $unhealthy failed probes"

# A probe that outlives its timeout fails as timed out.
wait_for 30 has_event slow-probe "liveness probe failed once: timed out after 500ms" ||
  fail "slow-probe: no timeout"

# The startup probe held the liveness probe back: started late, never killed.
wait_for 30 is slow-start .readyReplicas 1 || fail "slow-start never became ready"
is slow-start .replicas[0].restarts 0 || fail "slow-start was killed while starting"
has_event slow-start "Unhealthy" && fail "slow-start: $(events_of slow-start)"


"$ctl" delete -f "$dir/probes.yaml" >/dev/null || fail "delete"
for w in exec-live http-live ready-file slow-start tcp tcp-closed slow-probe exits; do
  wait_for 60 petreld_gone "$w" || fail "$w is not gone"
done
petreld_stop
echo "ok ($runtime): exec, http and tcp probes; liveness restarts, readiness, startup, timeouts"

#!/usr/bin/env bash
# What health probes cost petreld (issue 13). Two figures, each against a baseline run
# in this script:
#  1. petreld's CPU with 10 replicas probed 10 times a second each (100 httpGet checks
#     per second into the containers' own network namespaces), as % of one core, against
#     the same petreld and containers without probes (target: under 2% of one core), and
#     against the simplest blocking client making the same checks (http_get_loop.cpp).
#  2. One exec probe: the CPU petreld and its children (the runtime's exec) spend per
#     exec check, and its wall time, against `RUNTIME exec` run by hand in this script.
#   tests/bench/probe_bench.sh BUILD_DIR [RUNTIME] [SECONDS]
set -euo pipefail
build=${1:?usage: probe_bench.sh BUILD_DIR [RUNTIME] [SECONDS]}
runtime=${2:-crun}
seconds=${3:-20}
src=$(cd "$(dirname "$0")/../.." && pwd)
petreld=$build/examples/petreld/petreld
ctl=$build/examples/petrelctl/petrelctl
dir=$(mktemp -d /tmp/petrel-probe-bench.XXXXXX)
export PETREL_SOCKET=$dir/petrel.sock
pid=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
cleanup() {
  petreld_stop probed
  rm -rf "$dir"
}
trap cleanup EXIT
die() {
  tail -30 "$dir/petreld.log" >&2 || true
  echo "probe bench: $*" >&2
  exit 1
}

"$src/examples/images/make-busybox-image" "$dir/busybox.tar" >/dev/null
# manifest PROBE_YAML: 10 replicas of busybox httpd, with the probe given (or none).
manifest() {
  cat <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: probed}
spec:
  replicas: 10
  image: oci-archive:$dir/busybox.tar
  command: ["/bin/sh", "-c", "mkdir /tmp/www; echo ok >/tmp/www/healthz; exec httpd -f -p 8080 -h /tmp/www"]
  terminationGracePeriod: 1s
$1
YAML
}
# cpu_ticks [children]: petreld's utime+stime (fields 14, 15), or with "children" also
# those of its reaped children (16, 17), in clock ticks.
cpu_ticks() {
  local f
  read -ra f <"/proc/$pid/stat"
  # Fields counted from 1 after the command, which has no spaces here.
  if [ "${1:-}" = children ]; then
    echo $((f[13] + f[14] + f[15] + f[16]))
  else
    echo $((f[13] + f[14]))
  fi
}
hz=$(getconf CLK_TCK)
# measure [children]: % of one core over $seconds.
measure() {
  local t0 t1
  t0=$(cpu_ticks "${1:-}")
  sleep "$seconds"
  t1=$(cpu_ticks "${1:-}")
  awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$seconds" 'BEGIN { printf "%.2f", 100 * t / hz / s }'
}
ready() { [ "$("$ctl" get workloads probed -o json | jq '.items[0].readyReplicas')" = 10 ]; }

petreld_start "$dir/petreld.log" --runtime "$runtime" --state-dir "$dir/state" --log-level warn ||
  die "petreld did not answer"
manifest "" >"$dir/plain.yaml"
"$ctl" apply -f "$dir/plain.yaml" >/dev/null
wait_for 60 ready || die "10 containers did not start"
sleep 11  # past the first resync
base=$(measure)

manifest "  readinessProbe:
    httpGet: {path: /healthz, port: 8080}
    period: 100ms" >"$dir/http.yaml"
"$ctl" apply -f "$dir/http.yaml" >/dev/null  # probes are not in the hash: same containers
wait_for 30 ready || die "probed replicas did not become ready"
sleep 2
probed=$(measure)
per100=$(awk -v a="$probed" -v b="$base" 'BEGIN { printf "%.2f", a - b }')

# The baseline: the simplest client making the same checks from inside each container's
# namespace (tests/bench/http_get_loop.cpp), 10 of them, 10 checks a second each.
loop_bin=$build/tests/http_get_loop
[ -x "$loop_bin" ] || die "no $loop_bin"
"$ctl" apply -f "$dir/plain.yaml" >/dev/null  # petreld's probes off meanwhile
outs=()
loops=()
for cpid in $("$ctl" get workloads probed -o json | jq -r '.items[0].replicas[].pid'); do
  out=$(mktemp "$dir/loop.XXXXXX")
  nsenter --net="/proc/$cpid/ns/net" "$loop_bin" 8080 /healthz 100 "$seconds" >"$out" &
  outs+=("$out")
  loops+=($!)
done
wait "${loops[@]}"  # not petreld, a job of this shell too
base_us=0
for out in "${outs[@]}"; do
  grep -q 'failures=0 ' "$out" || die "baseline client: $(cat "$out")"
  base_us=$((base_us + $(sed -n 's/.*cpu_us=\([0-9]*\).*/\1/p' "$out")))
done
loop_pct=$(awk -v us="$base_us" -v s="$seconds" 'BEGIN { printf "%.2f", 100 * us / 1e6 / s }')
ratio=$(awk -v p="$per100" -v b="$loop_pct" 'BEGIN { printf "%.2f", (b > 0 ? p / b : 0) }')

# Exec: 10 replicas probed once a second each = 10 execs per second.
manifest "  readinessProbe:
    exec: {command: [test, -f, /tmp/www/healthz]}
    period: 1s" >"$dir/exec.yaml"
"$ctl" apply -f "$dir/exec.yaml" >/dev/null
sleep 3
wait_for 30 ready || die "exec-probed replicas did not become ready"
exec_cpu=$(measure children)
base_children=$(awk -v b="$base" 'BEGIN { printf "%.2f", b }')
# CPU ms per exec check: (% of a core - baseline) * 10 ms per % per second / 10 checks/s.
exec_ms=$(awk -v a="$exec_cpu" -v b="$base_children" 'BEGIN { printf "%.1f", (a - b) * 10 / 10 }')

# By hand: the runtime's own exec of the same command in the same container, 20 times.
id=$(ls "$dir/state/oci/runtime" | grep probed | head -1)
[ -n "$id" ] || die "no container to exec into"
start=$(date +%s%N)
t0=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
for _ in $(seq 20); do
  "$runtime" --root "$dir/state/oci/runtime" exec "$id" test -f /tmp/www/healthz >/dev/null 2>&1 ||
    die "$runtime exec failed"
done
t1=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
end=$(date +%s%N)
hand_wall=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.1f", ns / 20 / 1e6 }')
hand_cpu=$(awk -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN { printf "%.1f", 1000 * t / hz / 20 }')

cat <<TABLE

Health probes (petreld on $runtime, 10 busybox httpd replicas, ${seconds}s each)
| measure                                   | value      | baseline / target            |
|-------------------------------------------|------------|------------------------------|
| petreld CPU, no probes                    | ${base}%      | -                            |
| petreld CPU, 100 httpGet checks/s         | ${probed}%      | +${per100}% of a core (target < 2%) |
| the same checks, simplest blocking client | ${loop_pct}%      | petreld / client: ${ratio}x     |
| petreld+children CPU per exec check       | ${exec_ms} ms    | $runtime exec by hand: ${hand_cpu} ms CPU, ${hand_wall} ms wall |
TABLE
# A regression guard, generous (several times the target): the machines are shared.
awk -v p="$per100" 'BEGIN { exit !(p < 10) }' || die "100 probes/s cost ${per100}% of a core (bound 10%)"

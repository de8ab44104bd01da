#!/usr/bin/env bash
# One client must never kill or lock up petreld (issue 9): a real petreld (fake
# runtime) against a body nested 100,000 levels deep (JSON and YAML) and a manifest
# file nested too deep, slowloris clients, clients that pipeline without reading their
# answers, and more follow streams than request slots. /healthz must answer
# throughout and petreld's RSS stay bounded. Needs curl and socat.
# Usage: petreld_abuse_test.sh PETRELD PETRELCTL
set -uo pipefail

usage="usage: $0 PETRELD PETRELCTL"
petreld=${1:?$usage}
ctl=${2:?$usage}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/petreld-abuse.XXXXXX)
export PETREL_SOCKET=$work/run/api.sock
sock=$PETREL_SOCKET
pid=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"

cleanup() {
  # The clients this script started, then petreld.
  jobs -p | grep -vx "${pid:-none}" | xargs -r kill 2>/dev/null
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  wait 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "--- petreld's log (tail):" >&2
  tail -n 20 "$work/petreld.log" >&2
  exit 1
}
step() { echo "== $*"; }

healthz() { curl -sf --max-time 3 --unix-socket "$sock" http://petrel/healthz >/dev/null; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
# repeat N CHAR: CHAR N times.
repeat() { head -c "$1" /dev/zero | tr '\0' "$2"; }
# Checks /healthz every 0.25 s until the file $1 appears; fails if one check fails.
watch_healthz() {
  while [ ! -e "$1" ]; do
    healthz || { echo "healthz failed at $(date +%s.%N)" >"$work/healthz.failed"; return; }
    sleep 0.25
  done
}

# ASan keeps freed memory in quarantine (256 MiB): RSS would measure that, not petreld.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4
petreld_start "$work/petreld.log" --runtime fake --state-dir "$work/state" \
  --request-timeout 6s || fail "petreld did not start"
base=$(rss_kb)
echo "petreld RSS at start: ${base} KiB"

step "the nesting bomb: 100,000 levels of JSON and of YAML are a 400 naming where"
{ printf '{"items":['; repeat 100000 '['; repeat 100000 ']'; printf ']}'; } >"$work/bomb.json"
out=$(curl -s --unix-socket "$sock" -X PUT -H 'Content-Type: application/json' \
  --data-binary @"$work/bomb.json" -w ' %{http_code}' http://petrel/v1/workloads)
[ "$out" = '{"error":"body: JSON nested deeper than 64 levels at line 1, column 73"}
 400' ] || fail "JSON bomb: got $out"
{ printf 'items:\n- '; repeat 100000 '['; printf '\n'; } >"$work/bomb.yaml"
out=$(curl -s --unix-socket "$sock" -X PUT -H 'Content-Type: application/yaml' \
  --data-binary @"$work/bomb.yaml" -w ' %{http_code}' http://petrel/v1/workloads)
case "$out" in *"nested deeper than 64 levels"*" 400") ;; *) fail "YAML bomb: got $out" ;; esac
healthz || fail "petreld stopped answering after the bombs"

step "a manifest file nested too deep stops a petreld at start with the file and line"
{ printf 'apiVersion: petrel.dev/v1\nkind: Workload\nmetadata:\n  name: deep\nspec:\n  image: oci:/i\n  command: '
  repeat 100000 '['; repeat 100000 ']'; printf '\n'; } >"$work/deep.yaml"
PETREL_SOCKET=$work/run/other.sock "$petreld" --runtime fake --state-dir "$work/other" \
  --socket "$work/run/other.sock" --manifests "$work/deep.yaml" >"$work/other.log" 2>&1
rc=$?
[ "$rc" -eq 1 ] || fail "petreld with a deep manifest exited $rc: $(cat "$work/other.log")"
grep -q "deep.yaml:7:.*nested deeper than 64 levels" "$work/other.log" ||
  fail "no clear error for the deep manifest: $(cat "$work/other.log")"

step "slowloris: 80 clients at once, a byte a second each: cut at the deadline, or make room"
# petreld runs with --request-timeout 6s. Each client would send for 20 s; without the
# deadline every byte kept its connection alive, and 64 of them held every slot.
rm -f "$work/stop"
watch_healthz "$work/stop" &
watcher=$!
for i in $(seq 80); do
  ( t0=$(date +%s%N)
    ( printf 'GET /healthz HTTP/1.1\r\nX-Slow: '
      for _ in $(seq 20); do sleep 1; printf a; done ) 2>/dev/null |
      socat -t 1 - "UNIX-CONNECT:$sock" >"$work/slow.$i" 2>/dev/null
    echo "$((($(date +%s%N) - t0) / 1000000))" >"$work/slow_ms.$i" ) &
  echo $! >>"$work/slow.pids"
done
while read -r p; do wait "$p"; done <"$work/slow.pids"
touch "$work/stop"
wait "$watcher"
[ ! -e "$work/healthz.failed" ] || fail "healthz failed during slowloris: $(cat "$work/healthz.failed")"
longest=$(sort -n "$work"/slow_ms.* | tail -n 1)
[ "$longest" -le 12000 ] || fail "a slowloris connection stayed $longest ms (deadline 6 s)"
got408=$(grep -l "408 Request Timeout" "$work"/slow.? "$work"/slow.?? | wc -l)
evicted=$(grep -c "request slots taken" "$work/petreld.log")
[ $((got408 + evicted)) -ge 72 ] || fail "$got408 slow clients got a 408, $evicted made room"
# Which clients were cut and which made room depends on the order they connected in
# (80 subshells start in any order): every 408 must carry the clear message.
[ "$got408" -ge 1 ] || fail "no slow client got a 408 ($evicted made room)"
for f in $(grep -l "408 Request Timeout" "$work"/slow.? "$work"/slow.??); do
  grep -q "request not complete within 6000 ms (headers and body)" "$f" ||
    fail "no clear 408 message in ${f##*/}: $(cat "$f")"
done
echo "slowloris: the longest stayed ${longest} ms; ${got408} answered 408, ${evicted} made room"

step "pipelining floods: 4 clients send 16 MiB of requests each and never read"
rm -f "$work/stop" "$work/healthz.failed"
watch_healthz "$work/stop" &
watcher=$!
for _ in $(seq 500000); do printf 'GET /v1/events?limit=1 HTTP/1.1\r\n\r\n'; done |
  head -c $((16 << 20)) >"$work/flood"
floods=""
for i in 1 2 3 4; do
  timeout 5 socat -u "OPEN:$work/flood" "UNIX-CONNECT:$sock" 2>/dev/null &
  floods="$floods $!"
done
sleep 5
peak=$(rss_kb)
touch "$work/stop"
wait "$watcher"
# shellcheck disable=SC2086
wait $floods
[ ! -e "$work/healthz.failed" ] || fail "healthz failed during the flood: $(cat "$work/healthz.failed")"
echo "RSS during the flood: ${peak} KiB (at start ${base} KiB)"
[ "$peak" -le $((base + 256 * 1024)) ] || fail "RSS grew from $base KiB to $peak KiB"

step "64 follow streams: 32 served beside the request slots, 32 refused with a 503"
for i in $(seq 64); do
  curl -sN --max-time 20 --unix-socket "$sock" "http://petrel/v1/events?follow=1" \
    >"$work/stream.$i" 2>/dev/null &
done
wait_for 10 bash -c "[ \$(grep -l 'too many follow streams (at most 32)' $work/stream.* | wc -l) -eq 32 ]" ||
  fail "not 32 refused streams: $(grep -l 'too many' "$work"/stream.* | wc -l)"
healthz || fail "healthz failed beside 32 streams"
"$ctl" get workloads >/dev/null || fail "petrelctl failed beside 32 streams"
rss=$(rss_kb)
echo "RSS at the end: ${rss} KiB"
[ "$rss" -le $((base + 256 * 1024)) ] || fail "RSS grew from $base KiB to $rss KiB"
kill -0 "$pid" || fail "petreld died"
echo "petreld abuse test: passed"

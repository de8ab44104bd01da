#!/usr/bin/env bash
# The limit on blob downloads at once (issue 12: "a concurrency limit keeps a slow uplink
# usable"), petreld --max-concurrent-downloads, seen on the wire. Three images of one
# ~4 MiB layer each, in Debian's docker-registry, are pulled at once with `petrelctl pull
# image` through a loopback proxy that passes the registry's answers on at about 1 MiB/s
# and logs, per connection, when blob bytes pass. From that log: how many layers were
# coming in at the same time.
#  - a value outside 1..16 is refused at start with one line;
#  - --max-concurrent-downloads 1: never two at once; every image is pulled;
#  - the default (3), a new store: two or more at once (the API pulls two images at a
#    time), which shows that the proxy sees an overlap when there is one;
#  - petrelctl apply --progress plain shows the image's pull on stderr and returns once
#    the replica is past Pulling; --progress none returns at once, mid-pull;
#  - SIGTERM stops petreld mid-pull within seconds (a workload's pull and an API one).
#   registry_downloads_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: registry_downloads_test.sh PETRELD PETRELCTL}
ctl=${2:?usage: registry_downloads_test.sh PETRELD PETRELCTL}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-downloads-test.XXXXXX)
chmod 0755 "$dir"
export PETREL_SOCKET=$dir/petrel.sock
pid=""
registry_pid=""
proxy_pid=""
log=$dir/petreld.log

fail() {
  echo "FAIL: $*" >&2
  petreld_report "$log"
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  registry_stop
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/registry.sh
. "$src/tests/lib/registry.sh"
command -v socat >/dev/null || fail "no socat (ports/debian/install-deps)"

# A value outside 1..16 stops petreld before it starts, saying what and why.
for bad in 0 17 x; do
  rc=0
  out=$("$petreld" --max-concurrent-downloads "$bad" --state-dir "$dir/never" 2>&1) || rc=$?
  [ "$rc" = 2 ] && [ "$out" = "petreld: max-concurrent-downloads \"$bad\" is not a number in 1..16 (see petreld --help)" ] ||
    fail "--max-concurrent-downloads $bad: exit $rc, said: $out"
done
[ ! -e "$dir/never" ] || fail "a refused --max-concurrent-downloads made a state dir"

registry_start "$dir/registry"
for n in 1 2 3; do
  "$src/examples/images/make-busybox-image" --pad-mib 3 "$dir/img$n.tar" >/dev/null
  registry_push "oci-archive:$dir/img$n.tar" "img$n:1" --dest-compress=false
done

# The proxy: socat hands each connection to slow.sh, which passes the registry's answers
# on 64 KiB at most every 50 ms and logs each read of 16 KiB or more (blob bodies;
# manifests and configs are smaller) to flow.log as "<ns> <connection>".
for pport in $(seq $((40000 + $$ % 10000)) $((40099 + $$ % 10000))); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$pport") 2>/dev/null; then break; fi
done
cat >"$dir/slow.sh" <<EOF
#!/bin/sh
chunk=\$(mktemp "$dir/chunk.XXXXXX")
socat - "TCP:$registry" | while :; do
  dd bs=65536 count=1 of="\$chunk" status=none 2>/dev/null || break
  n=\$(stat -c %s "\$chunk")
  [ "\$n" -gt 0 ] || break
  cat "\$chunk" || break
  [ "\$n" -lt 16384 ] || echo "\$(date +%s%N) \$\$" >>"$dir/flow.log"
  sleep 0.05
done
rm -f "\$chunk"
EOF
socat "TCP-LISTEN:$pport,bind=127.0.0.1,reuseaddr,fork" EXEC:"sh $dir/slow.sh" 2>/dev/null &
proxy_pid=$!
proxy=127.0.0.1:$pport
up() { curl -sf -o /dev/null "http://$proxy/v2/"; }
wait_for 10 up || fail "the proxy on $proxy does not answer"

# most_at_once FLOW_LOG: the most connections whose blob transfers (the span from the
# first logged read to the last) overlapped.
most_at_once() {
  awk '{ if (!($2 in f)) f[$2] = $1; l[$2] = $1 } END { for (c in f) { print f[c], 1; print l[c], -1 } }' "$1" |
    sort -k1,1n -k2,2n | awk '{ cur += $2; if (cur > max) max = cur } END { print max + 0 }'
}

# pull_all STATE FLOW_LOG [PETRELD FLAGS...]: a petreld with a new store, the three
# images pulled at once through the proxy; each pull must succeed.
pull_all() {
  local state=$1 flow=$2 n pids=()
  shift 2
  : >"$dir/flow.log"
  petreld_start "$log" --runtime crun --state-dir "$state" --node-name downloads "$@" ||
    fail "petreld did not answer"
  for n in 1 2 3; do
    "$ctl" pull image "$proxy/img$n:1" >"$dir/pull$n.out" 2>&1 &
    pids+=($!)
  done
  for n in 1 2 3; do
    wait "${pids[$((n - 1))]}" || fail "petrelctl pull image $proxy/img$n:1: $(cat "$dir/pull$n.out")"
  done
  for n in 1 2 3; do
    "$ctl" get images -o json | jq -e --arg r "$proxy/img$n:1" '[.items[] | select(.refs | index($r))] | length == 1' >/dev/null ||
      fail "img$n is not in the store after its pull: $("$ctl" get images)"
  done
  petreld_stop
  cp "$dir/flow.log" "$flow"
  [ "$(awk '{print $2}' "$flow" | sort -u | wc -l)" -ge 3 ] ||
    fail "the proxy saw fewer than 3 layer transfers: $(wc -l <"$flow") reads"
}

t0=$(date +%s%N)
pull_all "$dir/state1" "$dir/flow1.log" --max-concurrent-downloads 1
limited=$(most_at_once "$dir/flow1.log")
t1=$(date +%s%N)
[ "$limited" = 1 ] || fail "with --max-concurrent-downloads 1, $limited layers came in at once"
echo "ok: --max-concurrent-downloads 1: one layer at a time, 3 images in $(((t1 - t0) / 1000000)) ms"

pull_all "$dir/state2" "$dir/flow2.log"
free=$(most_at_once "$dir/flow2.log")
t2=$(date +%s%N)
[ "$free" -ge 2 ] || fail "with the default limit (3) the proxy saw only $free layer at once: it cannot tell"
echo "ok: the default limit: $free layers at once, 3 images in $(((t2 - t1) / 1000000)) ms"

# apply and the images it brings: with --progress plain, the image's progress on stderr
# while it arrives (the same slow proxy), the stdout line as ever, and it returns once
# the replica is past Pulling; with --progress none it returns at once, mid-pull.
petreld_start "$log" --runtime crun --state-dir "$dir/state3" --node-name downloads ||
  fail "petreld did not answer"
sleeper_yaml shown "$proxy/img1:1"
"$ctl" apply -f "$dir/shown.yaml" --progress plain >"$dir/apply.out" 2>"$dir/apply.err" ||
  fail "apply --progress plain: $(cat "$dir/apply.err")"
phase=$(phase_of shown)
[ "$(cat "$dir/apply.out")" = "workload.petrel/shown created" ] ||
  fail "apply's stdout: $(cat "$dir/apply.out")"
grep -q "^$proxy/img1:1: downloading [0-9.]* of [0-9.]* MiB, 0/1 layers" "$dir/apply.err" ||
  fail "apply --progress plain showed no download of $proxy/img1:1: $(cat "$dir/apply.err")"
case "$phase" in Creating | Running) ;; *) fail "apply returned with its replica $phase" ;; esac
echo "ok: apply --progress plain showed $(wc -l <"$dir/apply.err") lines, returned with its replica $phase:"
sed 's/^/    /' "$dir/apply.err"
sleeper_yaml quiet "$proxy/img2:1"
"$ctl" apply -f "$dir/quiet.yaml" --progress none >"$dir/apply.out" 2>"$dir/apply.err" ||
  fail "apply --progress none: $(cat "$dir/apply.err")"
phase=$(phase_of quiet)
[ ! -s "$dir/apply.err" ] || fail "apply --progress none wrote to stderr: $(cat "$dir/apply.err")"
case "$phase" in Pending | Pulling) ;; *) fail "apply --progress none returned with its replica $phase, not mid-pull" ;; esac
wait_for 60 running quiet || fail "quiet not Running: $(phase_of quiet)"
echo "ok: apply --progress none returned at once (its replica $phase)"
"$ctl" delete workload shown >/dev/null
petreld_stop quiet

# SIGTERM mid-pull: petreld stops within seconds, not when its downloads end (through
# the slow proxy, ~20 s each), both a workload's pull and petrelctl pull image's; the
# next petreld completes the image from what the first one kept.
for n in 4 5; do
  "$src/examples/images/make-busybox-image" --pad-mib 12 "$dir/img$n.tar" >/dev/null
  registry_push "oci-archive:$dir/img$n.tar" "img$n:1" --dest-compress=false
done
petreld_start "$log" --runtime crun --state-dir "$dir/state4" --node-name downloads ||
  fail "petreld did not answer"
sleeper_yaml big "$proxy/img4:1"
"$ctl" apply -f "$dir/big.yaml" --progress none >/dev/null || fail "apply big"
"$ctl" pull image "$proxy/img5:1" >"$dir/pull5.out" 2>&1 &
pull5=$!
downloading() { # a byte of both layers came
  [ "$(find "$dir/state4" -path '*partial*' -type f -size +0 2>/dev/null | wc -l)" -ge 2 ]
}
wait_for 30 downloading || fail "the two pulls did not start: $(find "$dir/state4" -type f | head)"
t0=$(date +%s%N)
kill "$pid"
wait "$pid" || true
pid=""
t1=$(date +%s%N)
stop_ms=$(((t1 - t0) / 1000000))
wait "$pull5" && fail "petrelctl pull image succeeded though petreld stopped mid-pull"
[ "$stop_ms" -lt 5000 ] || fail "petreld took $stop_ms ms to stop mid-pull (pulls of ~20 s)"
echo "ok: SIGTERM mid-pull: petreld stopped in $stop_ms ms; petrelctl pull said: $(tail -1 "$dir/pull5.out")"
petreld_start "$log" --runtime crun --state-dir "$dir/state4" --node-name downloads ||
  fail "petreld did not answer after its stop mid-pull"
wait_for 120 running big || fail "big not Running after petreld came back: $(phase_of big)"
echo "ok: the next petreld completed the image and runs big"
petreld_stop big
echo PASS

#!/usr/bin/env bash
# Failover as a user sees it (issue 11 §4): from the power cut of the node that runs a
# 1-replica workload until the first instruction of its replacement's container, on a
# 3-node local cluster (examples/local-cluster, crun: real containers), split by whether
# the dead node was the leader. Prints tables of p50 / p95 / max, in milliseconds:
#  (a) the busybox image, default settings, TRIALS power cuts (20; half of them the leader's);
#  (b) an image of PAD MiB (100, make-busybox-image --pad-mib), cold: BIG_TRIALS cuts
#      (8: fewer than in (a), for time; half of them the leader's);
#  (c) the same with `standby: warm`, BIG_TRIALS cuts, in turn with (b)'s on one cluster
#      (one of (b), one of (c), ...), so that the other work of a shared machine, which
#      the unpack of a big image feels, weighs on both alike;
# and (b) and (c) against (a) as ratios and differences of the medians.
# Targets: p50 <= 2 s and p95 <= 3 s in (a), leader or not; (c) within 0.3 s of (a).
# Fails only past bounds several times the targets (the machines are shared and noisy),
# so that a regression still fails CI: a p95 in (a) over 9 s, one in (b) over 20 s, and
# once a standby is seen (below), one in (c) over 9 s or (c)'s median 1.5 s over (a)'s.
#
#   tests/bench/failover_bench.sh BUILD_DIR [--trials N] [--big-trials N] [--pad-mib MIB]
#
# How a trial goes, on a cluster brought up once for (a) and once for (b) and (c): with all 3 nodes Ready
# and one leader, the bench picks the node to cut (the leader, or not: they alternate)
# and the replacement (always a node that is not the leader), applies a new workload
# with `preferredNodes: [cut, replacement]` so that it runs where it is to be cut, and
# waits until it runs there. Then it takes the time on the host (bash's EPOCHREALTIME,
# microseconds) just before `local-cluster kill` (link down, then the node's whole PID
# namespace SIGKILLed: containers too), and waits for the replacement's timestamp. The
# figure is that timestamp minus the kill time: it includes local-cluster's own start
# before the link goes down (about 50 ms on a busy 2-core machine), so it errs long. Then `local-cluster start`,
# all 3 Ready again, the workload deleted.
#
# The timestamp: the container's first command is `t=$(adjtimex); echo $t >>/stamp/...`
# into a bind-mounted directory of the host. busybox's adjtimex prints adjtimex(2)'s
# time: CLOCK_REALTIME in microseconds, the clock EPOCHREALTIME reads on the host (Debian's
# busybox `date` has no %N, and /proc/uptime has 10 ms steps). So the figure does not
# depend on petrel's status at all; its resolution is 1 us, and it includes the
# container's shell starting and forking once (well under a millisecond). The line also
# names the node the container ran on, as the container sees it (the first node-K in its
# /proc/self/mountinfo: its root lies in that node's state dir); the trial's line shows it.
#
# Cold and warm: in (b) and (c) each trial uses an image of its own (new random padding,
# so a new digest), made before the trial: the replacement node has never unpacked it,
# and in (b) that unpack is part of the failover, as on a device that never ran the
# workload. The archive itself is in the host's page cache (every node reads the same
# file), so "cold" is the unpack, not a read from disk or a network. In (c) the bench
# waits, before the cut, until the replacement holds the image unpacked (its store,
# state/oci/images/<config digest>) and the container made (state/oci/containers/*), as
# petrel's warm standby promises; while petrel does not act on `standby: warm`, the first
# trial waits 20 s for that in vain, the table says no standby was seen, (c) measures the
# same as (b), and (c)'s bound against (a) is not checked.
#
# In (a) the busybox image is unpacked on a node the first time it runs there (a few
# MiB). The whole bench takes 4 to 6 minutes on 2 cores, depending on what else runs (a
# trial with its setup, restart and clean-up takes 5-15 s). Needs root (network and PID
# namespaces, crun), crun, jq, busybox-static.
set -euo pipefail
usage="usage: failover_bench.sh BUILD_DIR [--trials N] [--big-trials N] [--pad-mib MIB]"
build=${1:?$usage}
shift
trials=20 big_trials=8 pad=100
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials=$2; shift 2 ;;
    --big-trials) big_trials=$2; shift 2 ;;
    --pad-mib) pad=$2; shift 2 ;;
    *) echo "failover_bench: unknown argument $1 ($usage)" >&2; exit 2 ;;
  esac
done
for n in "$trials" "$big_trials" "$pad"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "failover_bench: '$n' is not a count ($usage)" >&2; exit 2; }
done
if [ "$(id -u)" -ne 0 ]; then
  echo "failover_bench: needs root (network and PID namespaces, real containers with crun)" >&2
  exit 1
fi
for tool in crun jq busybox; do
  command -v "$tool" >/dev/null || { echo "failover_bench: $tool is missing" >&2; exit 1; }
done
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$build" && pwd)
petreld=$build/examples/petreld/petreld
ctl=$build/examples/petrelctl/petrelctl
lcl=$src/examples/local-cluster
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/cluster.sh
. "$src/tests/lib/cluster.sh"
# shellcheck source=tests/lib/stats.sh
. "$src/tests/lib/stats.sh"

tmp=$(mktemp -d /tmp/petrel-failover-bench.XXXXXX)
chmod 0755 "$tmp"
cdir=$tmp/cluster
lc_log=$tmp/local-cluster.log
results=$tmp/results  # one line per trial: SCENARIO KIND MS
: >"$results"
# cluster.sh's node_* helpers, pointed at local-cluster's nodes.
node_name() { echo "node-$1"; }
node_sock() { echo "$cdir/node-$1/petrel.sock"; }
node_log() { echo "$cdir/node-$1/petreld.log"; }
lc() { "$lcl" "$@" --dir "$cdir" >>"$lc_log" 2>&1; }
cleanup() {
  lc down || { echo "failover_bench: local-cluster down failed:" >&2; tail -n 5 "$lc_log" >&2; }
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

fail() {
  echo "failover_bench: $*" >&2
  nodes_report 3
  echo "--- local-cluster (last 5 lines):" >&2
  tail -n 5 "$lc_log" >&2
  exit 1
}

now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
stamp_file() { echo "$tmp/stamps/$1/starts"; }
# starts NAME: how many times a container of NAME ran its first instruction.
starts() { wc -l 2>/dev/null <"$(stamp_file "$1")" || echo 0; }
# stamp_us NAME N: the N-th start's time, in microseconds since the epoch. adjtimex's
# "time.tv_usec" holds nanoseconds while the kernel's status has STA_NANO (8192), which
# an NTP daemon may have set.
stamp_us() {
  sed -n "$2s/.*status: *\([0-9]*\).*time\.tv_sec: *\([0-9]*\) *time\.tv_usec: *\([0-9]*\).*/\1 \2 \3/p" \
    "$(stamp_file "$1")" |
    { read -r st s u && u=$((10#$u)) && { [ $((st & 8192)) -eq 0 ] || u=$((u / 1000)); } &&
      echo $((s * 1000000 + u)); }
}
# stamp_node NAME N: the node whose container made the N-th start, as the container saw
# it (the first node-K in its mountinfo: its root lies in that node's state dir).
stamp_node() { sed -n "$2s/.* on: \(node-[0-9]*\).*/\1/p" "$(stamp_file "$1")"; }
node_of() { # I NAME: the node that node I says runs NAME's replica, when it is Running
  node_ctl "$1" get workloads "$2" -o json 2>/dev/null |
    jq -r '.items[0].replicas[0] | select(.phase == "Running") | .node' 2>/dev/null
}
started_twice() { [ "$(starts "$1")" -ge 2 ]; }
runs_on() { [ "$(starts "$2")" -ge 1 ] && [ "$(node_of "$1" "$2")" = "node-$1" ]; }
gone_from() { ! node_ctl "$1" get workloads "$2" >/dev/null 2>&1; }
# config_hex IMAGE: the digest of an oci-archive's config, which names it in a store.
config_hex() {
  local m
  m=$(tar -xOf "$1" ./index.json | jq -r '.manifests[0].digest')
  tar -xOf "$1" "./blobs/sha256/${m#sha256:}" | jq -r '.config.digest | ltrimstr("sha256:")'
}
# standing_by I NAME HEX: node I holds the image unpacked and NAME's container made.
standing_by() {
  local s=$cdir/node-$1/state/oci
  [ -d "$s/images/$3/rootfs" ] && compgen -G "$s/containers/*_$2_*/meta.json" >/dev/null
}

manifest() { # FILE NAME IMAGE CUT REPLACEMENT STANDBY
  cat >"$1" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: $2}
spec:
  replicas: 1
  image: oci-archive:$3
  command: ["/bin/sh", "-c", "t=\$(adjtimex); echo \$t on: \$(grep -o -m1 'node-[0-9]*' /proc/self/mountinfo) >>/stamp/starts; trap 'exit 0' TERM; while true; do sleep 1; done"]
  mounts:
    - {type: bind, source: $tmp/stamps/$2, target: /stamp}
  preferredNodes: [node-$4, node-$5]
  terminationGracePeriod: 2s
YAML
  [ -z "$6" ] || echo "  standby: $6" >>"$1"
}

standby_wait=20 standby_seen=0
# trial SCENARIO T IMAGE STANDBY: one power cut; odd T cut the leader, even T a follower.
trial() {
  local sc=$1 t=$2 image=$3 standby=$4 name=$1$2
  local kind leader cut repl k f=() t0 ms landed back hex="" warm=-
  wait_for 60 all_see_ready 3 1 2 3 || fail "$name: the 3 nodes are not Ready under one leader"
  leader=$(node_leader 1)
  leader=${leader#node-}
  for k in 1 2 3; do [ "$k" = "$leader" ] || f+=("$k"); done
  k=$(((t - 1) / 2 % 2))  # which follower, so that both take turns
  if [ $((t % 2)) -eq 1 ]; then
    kind=leader cut=$leader repl=${f[$k]}
  else
    kind=follower cut=${f[$k]} repl=${f[$((1 - k))]}
  fi
  mkdir -p "$tmp/stamps/$name"
  manifest "$tmp/$name.yaml" "$name" "$image" "$cut" "$repl" "$standby"
  node_ctl "$leader" apply -f "$tmp/$name.yaml" >/dev/null || fail "$name: apply"
  wait_for 180 runs_on "$cut" "$name" || fail "$name: not running on node-$cut after 180 s"
  if [ -n "$standby" ]; then
    hex=$(config_hex "$image")
    warm=no
    if [ "$standby_wait" -gt 0 ] && wait_for "$standby_wait" standing_by "$repl" "$name" "$hex"; then
      warm=yes standby_seen=$((standby_seen + 1))
    elif [ "$standby_seen" -eq 0 ]; then
      standby_wait=0  # not acted on: no point waiting again
    fi
  fi
  t0=$(now_us)
  lc kill "$cut" || fail "$name: local-cluster kill $cut"
  wait_for 60 started_twice "$name" || fail "$name: no replacement started within 60 s of the cut"
  ms=$((($(stamp_us "$name" 2) - t0 + 500) / 1000))
  [ "$ms" -gt 0 ] || fail "$name: the replacement's timestamp is before the cut"
  echo "$sc $kind $ms" >>"$results"
  landed=$(stamp_node "$name" 2)
  t0=$(ms_now)
  lc start "$cut" || fail "$name: local-cluster start $cut"
  wait_for 60 all_see_ready 3 1 2 3 || fail "$name: the 3 nodes are not Ready again after node-$cut came back"
  back=$(($(ms_now) - t0))
  wait_for 30 runs_on "$repl" "$name" || fail "$name: not Running on node-$repl after node-$cut came back"
  printf '  %-3s cut node-%s (%-8s) -> %-7s %6d ms  %s back: 3 Ready in %5d ms, %d start(s)\n' \
    "$name" "$cut" "$kind" "${landed:-?}" "$ms" "${standby:+standby seen: $warm } " "$back" "$(starts "$name")"
  node_ctl "$repl" delete workload "$name" >/dev/null || fail "$name: delete"
  wait_for 60 gone_from "$repl" "$name" || fail "$name: not deleted after 60 s"
}

# scenarios TITLE TRIALS PAD SC=STANDBY...: a fresh cluster; TRIALS rounds of one trial
# of each scenario SC in turn (so that a change in the machine's load falls on each
# alike), each with its STANDBY ("" or warm); then down. PAD 0: the busybox image for
# every trial; else an image of PAD MiB of its own per trial.
scenarios() {
  local title=$1 n=$2 mib=$3 t s image
  shift 3
  echo
  echo "$title: $n power cuts$([ $# -eq 1 ] || echo " each")"
  lc up --nodes 3 --runtime crun --petreld "$petreld" --petrelctl "$ctl" || fail "local-cluster up"
  for t in $(seq "$n"); do
    for s in "$@"; do
      image=$tmp/busybox.tar
      if [ "$mib" -gt 0 ]; then
        image=$tmp/image-${s%%=*}$t.tar
        "$src/examples/images/make-busybox-image" --pad-mib "$mib" "$image" >/dev/null
      fi
      trial "${s%%=*}" "$t" "$image" "${s#*=}"
      [ "$mib" -eq 0 ] || rm -f "$image"
    done
  done
  lc down || fail "local-cluster down"
}

# figures SC [KIND]: the trials' milliseconds.
figures() { awk -v s="$1" -v k="${2:-}" '$1 == s && (k == "" || $2 == k) { print $3 }' "$results"; }
row() { # LABEL SC [KIND]
  local v
  mapfile -t v < <(figures "$2" "${3:-}")
  printf '  %-36s %3d %7s %7s %7s\n' "$1" "${#v[@]}" "$(percentile 50 "${v[@]}")" \
    "$(percentile 95 "${v[@]}")" "$(percentile 100 "${v[@]}")"
}
p() { local v; mapfile -t v < <(figures "$2" "${3:-}"); percentile "$1" "${v[@]}"; }

start=$(ms_now)
"$src/examples/images/make-busybox-image" "$tmp/busybox.tar" >/dev/null
echo "failover: power cut of the node running a 1-replica workload until the replacement's"
echo "first instruction (its own timestamp), 3-node local cluster, crun, $(nproc) CPUs," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
scenarios "(a) busybox, defaults" "$trials" 0 a=
scenarios "(b) $pad MiB image, cold, and (c) the same with standby: warm, in turn" "$big_trials" "$pad" b= c=warm

echo
echo "failover, power cut to the replacement's first instruction, ms (targets in (a): p50 <= 2000, p95 <= 3000)"
printf '  %-36s %3s %7s %7s %7s\n' "" n p50 p95 max
row "(a) busybox, the leader cut" a leader
row "(a) busybox, a follower cut" a follower
row "(a) busybox, all" a
row "(b) $pad MiB cold, the leader cut" b leader
row "(b) $pad MiB cold, a follower cut" b follower
row "(b) $pad MiB cold, all" b
row "(c) $pad MiB warm, the leader cut" c leader
row "(c) $pad MiB warm, a follower cut" c follower
row "(c) $pad MiB warm, all" c
a50=$(p 50 a) b50=$(p 50 b) c50=$(p 50 c)
echo "against (a), medians (target: (c) within 300 ms of (a))"
awk -v a="$a50" -v b="$b50" -v c="$c50" 'BEGIN {
  printf "  %-36s %6.2fx %+7d ms\n", "(b) cold / (a) busybox", b / a, b - a
  printf "  %-36s %6.2fx %+7d ms\n", "(c) warm / (a) busybox", c / a, c - a }'
if [ "$standby_seen" -eq 0 ]; then
  echo "  (c): no standby seen on the replacement before any cut: petrel does not act on"
  echo "       'standby: warm' yet, so (c) measured a cold failover and its bound is not checked"
else
  echo "  (c): a standby was ready on the replacement before $standby_seen of $big_trials cuts"
fi
echo "bench took $((($(ms_now) - start) / 1000)) s"

over=()
for kind in leader follower; do
  x=$(p 95 a "$kind")
  [ -z "$x" ] || [ "$x" -le 9000 ] || over+=("(a) p95 with the $kind cut ${x} ms > 9000 ms")
done
x=$(p 95 b)
[ "$x" -le 20000 ] || over+=("(b) p95 ${x} ms > 20000 ms")
x=$(p 95 c)
[ "$x" -le 9000 ] || [ "$standby_seen" -eq 0 ] || over+=("(c) p95 ${x} ms > 9000 ms")
[ "$standby_seen" -eq 0 ] || [ $((c50 - a50)) -le 1500 ] ||
  over+=("(c) median ${c50} ms > (a)'s ${a50} ms + 1500 ms")
if [ "${#over[@]}" -gt 0 ]; then
  printf 'failover_bench: past its bound: %s\n' "${over[@]}" >&2
  exit 1
fi

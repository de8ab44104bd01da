#!/usr/bin/env bash
# Power cuts under petreld (issue 9 §4). The kill -9 tests keep the page cache; here
# petreld's state dir is on dropfs (tests/tools/dropfs.cpp), a FUSE file system over a
# directory that, when told, forgets every write and directory change not yet fsynced,
# as a power cut does (these kernels have no device-mapper, and a loop device does not
# drop unsynced writes).
#  1. The seam itself: a synced file in a synced directory stays, an unsynced file, an
#     unsynced append and an unsynced rename go.
#  2. Rounds of: petreld (fake runtime) on dropfs takes applies, a scaling and a delete,
#     each acknowledged one recorded; round 2 also has applies in flight at the cut.
#     Then kill -9 and the cut, at once. petreld starts on what is left (without dropfs):
#     it opens, every acknowledged change is there (the spec of the last acknowledged
#     apply, the deleted workload gone), and it converges: every replica runs.
#   power_cut_test.sh PETRELD PETRELCTL DROPFS
set -euo pipefail
petreld=${1:?usage: power_cut_test.sh PETRELD PETRELCTL DROPFS}
ctl=${2:?}
dropfs=${3:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-power-cut-test.XXXXXX)
export PETREL_SOCKET=$dir/petrel.sock
pid=""
dropfs_pid=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"

fail() {
  echo "FAIL: $*" >&2
  petreld_report "$dir/petreld.log" >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  [ -n "$dropfs_pid" ] && kill "$dropfs_pid" 2>/dev/null
  mountpoint -q "$dir/mnt" && umount -l "$dir/mnt"
  rm -rf "$dir"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || fail "needs root (a FUSE mount)"

# mount: dropfs over $dir/backing at $dir/mnt, its copies in a fresh $dir/shadow.
mount_dropfs() {
  rm -rf "$dir/shadow"
  mkdir -p "$dir/backing" "$dir/shadow" "$dir/mnt"
  "$dropfs" "$dir/backing" "$dir/shadow" "$dir/mnt" >>"$dir/dropfs.log" 2>&1 &
  dropfs_pid=$!
  wait_for 10 mountpoint -q "$dir/mnt" || fail "dropfs did not mount: $(cat "$dir/dropfs.log")"
}
# cut: the power cut; dropfs undoes what was not durable and unmounts.
cut() {
  kill -USR1 "$dropfs_pid"
  wait "$dropfs_pid" || fail "dropfs failed: $(cat "$dir/dropfs.log")"
  dropfs_pid=""
  ! mountpoint -q "$dir/mnt" || fail "dropfs left its mount"
  tail -n 1 "$dir/dropfs.log"
}

# --- 1. The seam.
mount_dropfs
m=$dir/mnt
mkdir "$m/check" && sync "$m"
printf durable >"$m/check/kept" && sync "$m/check/kept" && sync "$m/check"
printf lost >"$m/check/new"                 # never synced
printf ' and more' >>"$m/check/kept"        # an append never synced
printf x >"$m/check/tmp" && sync "$m/check/tmp"
mv "$m/check/tmp" "$m/check/renamed"        # a rename whose directory is not synced
[ "$(cat "$m/check/kept")" = "durable and more" ] || fail "dropfs does not pass writes through"
cut
b=$dir/backing/check
[ "$(cat "$b/kept")" = durable ] || fail "the synced content is not what the cut left: '$(cat "$b/kept")'"
[ ! -e "$b/new" ] || fail "an unsynced file survived the cut"
[ ! -e "$b/renamed" ] && [ ! -e "$b/tmp" ] || fail "an unsynced rename survived the cut: $(ls "$b")"
rm -rf "$b"
echo "ok: dropfs keeps what was synced and forgets the rest"

# --- 2. petreld.
workload() {  # workload NAME REPLICAS: a manifest
  cat >"$dir/$1.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: $1}
spec:
  replicas: $2
  image: oci-archive:/images/busybox.tar
  command: ["/bin/sh", "-c", "sleep 1d"]
YAML
}
declare -A want  # workload -> replicas of its last acknowledged apply; 0 = deleted
apply() {  # apply NAME REPLICAS: recorded once petrelctl says it was done
  workload "$1" "$2"
  "$ctl" apply -f "$dir/$1.yaml" >/dev/null || fail "apply $1"
  want[$1]=$2
}
converged() {
  local json name
  json=$("$ctl" get workloads -o json) || return 1
  for name in "${!want[@]}"; do
    if [ "${want[$name]}" = 0 ]; then
      jq -e --arg n "$name" 'any(.items[]; .name == $n) | not' <<<"$json" >/dev/null || return 1
    else
      jq -e --arg n "$name" --argjson r "${want[$name]}" \
        'any(.items[]; .name == $n and .desiredReplicas == $r and .readyReplicas == $r)' \
        <<<"$json" >/dev/null || return 1
    fi
  done
}
# burst_begun: petreld has acknowledged one of round 2's burst of applies at least.
burst_begun() {
  "$ctl" get workloads -o json 2>/dev/null |
    jq -e 'any(.items[]; .name | startswith("r2-burst"))' >/dev/null
}
# after_cut ROUND: petreld on what the cut left converges to every acknowledged change.
after_cut() {
  petreld_start "$dir/petreld.log" --runtime fake --state-dir "$dir/backing/state" \
    --node-name cut || fail "round $1: petreld did not start on what the power cut left"
  wait_for 60 converged || fail "round $1: not every acknowledged change is there: $("$ctl" get workloads 2>&1)"
  petreld_stop
  echo "ok: round $1: after the power cut, every acknowledged change is there and runs"
}

for round in 1 2 3; do
  mount_dropfs
  petreld_start "$dir/petreld.log" --runtime fake --state-dir "$dir/mnt/state" --node-name cut ||
    fail "round $round: petreld did not start on dropfs"
  for i in 1 2 3 4; do apply "r$round-w$i" 2; done
  apply "r$round-w1" 3                     # a scaling: generation 2
  "$ctl" delete workload "r$round-w2" >/dev/null || fail "delete r$round-w2"
  want[r$round-w2]=0
  wait_for 30 converged || fail "round $round: did not converge before the cut"
  apply "r$round-w5" 1                     # acknowledged just before the cut
  if [ "$round" = 2 ]; then
    # Applies in flight at the cut: each may be there or not, and nothing may break.
    for i in 1 2 3 4 5 6; do
      workload "r2-burst$i" 1
      "$ctl" apply -f "$dir/r2-burst$i.yaml" >/dev/null 2>&1 &
    done
    # The cut comes once the first of them is acknowledged, while the others run.
    wait_for 10 burst_begun || fail "round 2: no apply of the burst was acknowledged"
  fi
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  cut
  wait || true  # the applies in flight, which failed or not: not recorded either way
  after_cut "$round"
done
echo "PASS"

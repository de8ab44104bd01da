#!/usr/bin/env bash
# petreld --image-preload DIR on crun (issue 12): the archives in DIR, an OCI archive
# and `docker save` output told apart by content whatever their file names, are
# imported at start beside the loop (petreld answers at once) and found by the names
# they carry, so that workloads naming busybox:1.36 and registry.invalid/tools/bb:2
# run without any registry (none is reachable here: a pull would fail). A file that is
# no image is logged and skipped.
#   image_preload_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: image_preload_test.sh PETRELD PETRELCTL}
ctl=${2:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-preload-test.XXXXXX)
chmod 0755 "$dir"
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
pid=""

fail() {
  echo "FAIL: $*" >&2
  echo "--- petreld log (last 40 lines)" >&2
  tail -n 40 "$dir"/petreld.log >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  runtime_cleanup crun "$state" "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
command -v crun >/dev/null || fail "no crun (apt-get install crun)"

mk=$src/examples/images/make-busybox-image
mkdir -p "$dir/preload"
"$mk" --format docker-archive --name busybox:1.36 "$dir/preload/first.img" >/dev/null
# A second, different image (a pad makes its layer differ), as an OCI archive.
"$mk" --pad-mib 1 --name registry.invalid/tools/bb:2 "$dir/preload/second.img" >/dev/null
echo "not an image" >"$dir/preload/notes.txt"


started=$(date +%s%N)
petreld_start "$dir/petreld.log" --runtime crun --state-dir "$state" --node-name pre \
  --image-preload "$dir/preload" || fail "petreld did not answer"
answered_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "petreld answered after ${answered_ms} ms"
apply_sleeper one busybox:1.36 up
apply_sleeper two registry.invalid/tools/bb:2 up
wait_for 60 running one || fail "workload one (busybox:1.36) is $(phase_of one), not Running"
wait_for 60 running two || fail "workload two is $(phase_of two), not Running"
grep -q "image preload: $dir/preload/first.img: sha256:[0-9a-f]* docker.io/library/busybox:1.36" "$dir/petreld.log" ||
  fail "no log line for first.img"
grep -q "image preload: $dir/preload/second.img: sha256:[0-9a-f]* registry.invalid/tools/bb:2" "$dir/petreld.log" ||
  fail "no log line for second.img"
grep -q "image preload: $dir/preload/notes.txt: neither an OCI archive" "$dir/petreld.log" ||
  fail "notes.txt was not reported"
[ "$(ls -d "$state"/oci/images/*/ | grep -c '/[0-9a-f]\{64\}/$')" = 2 ] ||
  fail "the store does not hold exactly the 2 images: $(ls "$state/oci/images")"
# Still found after a restart, from the store's records, with the preload dir gone.
"$ctl" delete workload two >/dev/null || fail "delete two"
wait_for 60 petreld_gone two || fail "workload two was not deleted"
petreld_stop one
rm -rf "$dir/preload"
mkdir "$dir/preload"
petreld_start "$dir/petreld.log" --runtime crun --state-dir "$state" --node-name pre \
  --image-preload "$dir/preload" || fail "petreld did not answer after the restart"
apply_sleeper three busybox:1.36 up
wait_for 60 running three || fail "workload three (after a restart) is $(phase_of three)"
petreld_stop three
echo "PASS: preloaded images ran under the names they carry"

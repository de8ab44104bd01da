#!/usr/bin/env bash
# A full disk (issue 9, section 4): petreld (fake runtime) on a 2 MiB tmpfs state dir
# that a file then fills. An apply is refused with 503 and the reason ("... disk
# full"), never a bare 500; /healthz still answers; once the file is gone the same
# apply succeeds and the workload runs. Needs root (mount) and curl.
# Usage: petreld_disk_full_test.sh PETRELD PETRELCTL
set -uo pipefail

usage="usage: $0 PETRELD PETRELCTL"
petreld=${1:?$usage}
ctl=${2:?$usage}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/petreld-full.XXXXXX)
sock=$work/api.sock
state=$work/state
pid=""
export PETREL_SOCKET=$sock
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/api.sh
. "$src/tests/lib/api.sh"

cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  wait 2>/dev/null
  umount "$state" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "needs root (mount)"
mkdir -m 0700 "$state"
mount -t tmpfs -o size=2m,mode=0700 petrel-full-test "$state" || fail "mount tmpfs on $state"
petreld_start "$work/petreld.log" --runtime fake --state-dir "$state" --node-name full ||
  fail "petreld did not start"

manifest() { # manifest NAME: a workload whose spec takes a few KiB
  printf 'apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: %s}\nspec:\n  image: oci-archive:/images/busybox.tar\n  env: {BIG: "%s"}\n' \
    "$1" "$(head -c 3000 /dev/zero | tr '\0' x)"
}

step "a full state dir: 503 with the reason, and /healthz answers"
dd if=/dev/zero of="$state/fill" bs=64k 2>/dev/null # until ENOSPC
for i in 1 2 3; do
  api PUT /v1/workloads -H 'Content-Type: application/yaml' --data-binary "$(manifest "w$i")"
  expect 503 "petrel.db: disk full"
done
api GET /healthz
expect 200

step "space back: the same apply succeeds and the workload runs"
rm -f "$state/fill"
api PUT /v1/workloads -H 'Content-Type: application/yaml' --data-binary "$(manifest w1)"
expect 200 '"name":"w1"' '"outcome":"created"'
ready() { "$ctl" get workloads w1 | grep -qE '^w1 +1/1 +Running'; }
wait_for 10 ready || fail "w1 is not running: $("$ctl" get workloads)"
echo "PASS"

#!/usr/bin/env bash
# Registry pulls (issue 12 §3): throughput against curl, and petreld's memory.
#
#   tests/bench/pull_bench.sh BUILD_DIR [--mib N] [--runs N]
#
# An image with one layer of N MiB (default 100; random bytes, pushed uncompressed so
# the wire carries them all) in Debian's docker-registry on loopback. Each run, side by
# side in this script:
#   curl        one curl -o FILE ... of the blobs a pull fetches, the image's manifest,
#               config and layer (one connection, as petreld's): the wire alone;
#   curl+sync   the same, then sync of the files: the wire and the disk, durable;
#   curl+check  curl | tee FILE | sha256sum of the layer alone, then sync FILE: also
#               the digest checked (coreutils' sha256sum, slower than OpenSSL's, which
#               petreld uses);
#   petreld     POST /v1/images/pull to a petreld with an empty store: "download" ends
#               when the checked blob appears in the store (polled every 5 ms; the
#               cache takes it unsynced, as curl -o leaves its file), "pull" when the
#               stream's result line comes: the image unpacked, and it and its blobs
#               durable (one syncfs at its commit).
# Prints the times of each run, the medians, and petreld's throughput as a ratio of
# curl's (target: download >= 0.9x curl -o FILES; fails below 0.45x, a regression however
# noisy the machine). RSS: petreld idle (1 s after it answers, before any pull) and its
# peak during the pulls (VmHWM), against the target of at most a few MiB above what
# libcurl and OpenSSL take (no layer held in memory).
set -euo pipefail
build=${1:?usage: pull_bench.sh BUILD_DIR [--mib N] [--runs N]}
shift
mib=100 runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --mib) mib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "pull_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
src=$(cd "$(dirname "$0")/../.." && pwd)
petreld=$build/examples/petreld/petreld
ctl=$build/examples/petrelctl/petrelctl
dir=$(mktemp -d /tmp/petrel-pull-bench.XXXXXX)
chmod 0755 "$dir"
export PETREL_SOCKET=$dir/petrel.sock
pid=""
registry_pid=""
fail() {
  echo "pull_bench: $*" >&2
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  registry_stop
  rm -rf "$dir"
}
trap cleanup EXIT
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/registry.sh
. "$src/tests/lib/registry.sh"

registry_start "$dir/registry"
"$src/examples/images/make-busybox-image" --pad-mib "$mib" "$dir/big.tar" >/dev/null
registry_push "oci-archive:$dir/big.tar" big:1 --dest-compress=false
rm -f "$dir/big.tar"
layer=$(registry_manifest big:1 | jq -r '.layers | max_by(.size) | .digest')
bytes=$(registry_manifest big:1 | jq -r '.layers | max_by(.size) | .size')
url=http://$registry/v2/big/blobs/$layer
config=$(registry_manifest big:1 | jq -r '.config.digest')
accept='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
# curl_image: one curl fetching what a pull of big:1 fetches, each blob into a file.
curl_image() {
  curl -sf -H "$accept" -o "$dir/c.manifest" "http://$registry/v2/big/manifests/1" \
    -o "$dir/c.config" "http://$registry/v2/big/blobs/$config" -o "$dir/c.blob" "$url"
}
mkfifo "$dir/never"
exec {never}<>"$dir/never"
nap() { read -r -t "$1" -u "$never" _ || true; } # a sleep without a process
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
kib_of() { awk -v k="$2" '$1 == k ":" { print $2 }' "/proc/$1/status"; }

curl_raw=() curl_sync=() curl_check=() pd_download=() pd_pull=()
idle_kib="" peak_kib=0
for run in $(seq "$runs"); do
  rm -f "$dir"/c.*
  sync
  t=$(date +%s%N)
  curl_image || fail "curl of big:1's manifest, config and layer"
  curl_raw+=("$(ms_since "$t")")
  [ "$(stat -c %s "$dir/c.blob")" = "$bytes" ] || fail "curl got $(stat -c %s "$dir/c.blob") bytes of the layer"
  rm -f "$dir"/c.*
  sync
  t=$(date +%s%N)
  curl_image || fail "curl of big:1's manifest, config and layer"
  sync "$dir"/c.*
  curl_sync+=("$(ms_since "$t")")
  rm -f "$dir"/c.*
  sync
  t=$(date +%s%N)
  got=$(curl -sf "$url" | tee "$dir/c.blob" | sha256sum | cut -d' ' -f1)
  sync "$dir/c.blob"
  curl_check+=("$(ms_since "$t")")
  [ "sha256:$got" = "$layer" ] || fail "curl got $got, not $layer"
  rm -f "$dir/c.blob"

  state=$dir/state$run
  petreld_start "$dir/petreld.log" --runtime crun --state-dir "$state" --node-name pull ||
    fail "petreld did not answer: $(tail -5 "$dir/petreld.log")"
  if [ -z "$idle_kib" ]; then
    sleep 1
    idle_kib=$(kib_of "$pid" VmRSS)
  fi
  blob=$state/oci/images/blobs/sha256/${layer#sha256:}
  sync
  t=$(date +%s%N)
  curl -sf --unix-socket "$PETREL_SOCKET" -X POST -H 'Content-Type: application/json' -d "{\"image\":\"$registry/big:1\"}" \
    http://petrel/v1/images/pull >"$dir/pull.out" &
  puller=$!
  download=""
  while kill -0 "$puller" 2>/dev/null; do
    [ -n "$download" ] || [ ! -f "$blob" ] || download=$(ms_since "$t")
    nap 0.005
  done
  wait "$puller" || fail "POST /v1/images/pull: $(cat "$dir/pull.out")"
  pd_pull+=("$(ms_since "$t")")
  tail -n 1 "$dir/pull.out" | jq -e '.pulled == true' >/dev/null ||
    fail "the pull failed: $(tail -n 1 "$dir/pull.out")"
  [ -n "$download" ] || download=${pd_pull[-1]}
  pd_download+=("$download")
  hwm=$(kib_of "$pid" VmHWM)
  [ "$hwm" -le "$peak_kib" ] || peak_kib=$hwm
  petreld_stop
  rm -rf "$state"
  echo "run $run: curl ${curl_raw[-1]} ms, curl+sync ${curl_sync[-1]} ms, curl+check ${curl_check[-1]} ms, petreld download ${pd_download[-1]} ms, pull ${pd_pull[-1]} ms"
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
m_raw=$(median "${curl_raw[@]}")
m_sync=$(median "${curl_sync[@]}")
m_check=$(median "${curl_check[@]}")
m_down=$(median "${pd_download[@]}")
m_pull=$(median "${pd_pull[@]}")
echo
echo "a $((bytes / 1048576)) MiB layer from the loopback registry, medians of $runs runs"
printf '%-34s %8s %12s\n' "" "ms" "MiB/s"
for row in "curl -o FILES:$m_raw" "curl -o FILES, sync FILES:$m_sync" "curl | sha256sum, sync FILE:$m_check" \
  "petreld download (checked):$m_down" "petreld pull (unpacked, synced):$m_pull"; do
  ms=${row##*:}
  awk -v n="${row%:*}" -v ms="$ms" -v b="$bytes" \
    'BEGIN { printf "%-34s %8d %12.1f\n", n, ms, (ms > 0 ? b / 1048576 / (ms / 1000) : 0) }'
done
awk -v d="$m_down" -v r="$m_raw" -v c="$m_check" 'BEGIN {
  printf "petreld download throughput: %.2fx curl -o FILES (target >= 0.9x), %.2fx curl | sha256sum\n", r / d, c / d }'
echo "petreld RSS: idle $idle_kib KiB before any pull; peak $peak_kib KiB during the pulls ($(((peak_kib - idle_kib) / 1024)) MiB above idle)"
awk -v d="$m_down" -v r="$m_raw" 'BEGIN { exit !(r / d >= 0.45) }' ||
  fail "petreld's download is below 0.45x curl -o FILES's throughput: a regression"

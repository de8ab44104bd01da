#!/usr/bin/env bash
# Images in containerd's own stores through the containerd adapter (issue 16): petreld
# --runtime containerd on CTest's shared containerd ($PETREL_TEST_CONTAINERD_SOCKET), in
# a containerd namespace of its own (--runtime-namespace: the image removals here must
# not touch what other suites' petreld keep in "petrel"), and Debian's docker-registry
# on 127.0.0.1. petrel's puller downloads (with
# progress), containerd keeps the image: `ctr images ls` names it, its snapshots hold
# the layers, and petreld's state dir keeps no blob once the pull is done; a workload
# runs from it on a snapshot; `delete image` is refused in use, then the name goes from
# containerd. A zstd image runs too, and one whose blob a proxy cuts is pulled over
# several pulls, each going on from the last. --image-preload imports an archive into containerd
# under the name it carries, and --image-store-max removes the oldest unused image.
#   containerd_images_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: containerd_images_test.sh PETRELD PETRELCTL}
ctl=${2:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
for tool in jq curl skopeo docker-registry ctr; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (ports/debian/install-deps)" >&2; exit 1; }
done
[ -S "${PETREL_TEST_CONTAINERD_SOCKET:-}" ] ||
  { echo "FAIL: no containerd: PETREL_TEST_CONTAINERD_SOCKET names no socket" >&2; exit 1; }
dir=$(mktemp -d /tmp/petrel-containerd-images.XXXXXX)
chmod 0755 "$dir"
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
pid=""
registry_pid=""
proxy_pid=""
containerd_ns=petrel-images-test-$$

fail() {
  echo "FAIL: $*" >&2
  for f in out err; do
    [ -f "$dir/$f" ] && { echo "--- last std$f:" >&2; cat "$dir/$f" >&2; }
  done
  petreld_report "$dir/petreld.log" >&2
  exit 1
}
cleanup() {
  petreld_stop app
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null
  runtime_cleanup containerd "$state" "$dir"
  # The test's namespace, with the images in it (their blobs and snapshots go by
  # containerd's garbage collection).
  ctr_ images ls -q 2>/dev/null | xargs -r ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" \
    -n "$containerd_ns" images rm --sync >/dev/null 2>&1 || true
  ctr_ namespaces rm "$containerd_ns" >/dev/null 2>&1 || true
  registry_stop
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/registry.sh
. "$src/tests/lib/registry.sh"

run() {
  set +e
  "$@" >"$dir/out" 2>"$dir/err"
  rc=$?
  set -e
}
ctr_() { ctr --address "$PETREL_TEST_CONTAINERD_SOCKET" -n "$containerd_ns" "$@"; }
# containerd_has REF: containerd names an image REF in namespace petrel.
containerd_has() { ctr_ images ls -q | awk -v r="$1" '$0 == r { found = 1 } END { exit !found }'; }
# has_snapshot KEY: containerd has snapshot KEY in the test's namespace. awk reads all
# of ctr's output: a grep -q that stops early can fail the pipeline (pipefail) with
# ctr's SIGPIPE, and so say "no snapshot" when there is one.
has_snapshot() { ctr_ snapshots ls | awk -v k="$1" '$1 == k { found = 1 } END { exit !found }'; }
# blobs_kept: the blob files petreld keeps in its state dir (none once pulls are done).
blobs_kept() { find "$state/containerd/images" -path '*/blobs/*' -type f | wc -l; }

registry_start "$dir/registry"
echo "registry on $registry"
mk=$src/examples/images/make-busybox-image
"$mk" --pad-mib 4 "$dir/big.tar" >/dev/null || fail "make-busybox-image"
"$mk" --pad-mib 1 "$dir/small.tar" >/dev/null || fail "make-busybox-image"
"$mk" --pad-mib 1 "$dir/other.tar" >/dev/null || fail "make-busybox-image"
registry_push "oci-archive:$dir/big.tar" pulled:1
registry_push "oci-archive:$dir/small.tar" zstd:1 --dest-compress-format zstd
registry_push "oci-archive:$dir/other.tar" other:1

runtime_flags containerd || fail "no containerd"
runtime_flags+=(--runtime-namespace "$containerd_ns")
petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" --node-name cimg \
  --log-level info || fail "petreld did not answer"

echo "== pull image: petrel's progress, containerd keeps the image"
ref=$registry/pulled:1
run "$ctl" pull image "$ref"
[ "$rc" = 0 ] || fail "pull image: exit status $rc"
[ "$(cat "$dir/out")" = "image.petrel/$ref pulled" ] || fail "pull image: stdout"
grep -qE '^(downloading|unpacking) [0-9]+\.[0-9] of [0-9]+\.[0-9] MiB, [0-9]+/[0-9]+ layers' "$dir/err" ||
  fail "pull image: no progress line with bytes"
containerd_has "$ref" || fail "containerd names no $ref after the pull"
[ "$(blobs_kept)" = 0 ] || fail "petreld kept $(blobs_kept) blob files after the pull"
ctr_ images ls | awk -v r="$ref" '$1 == r' | grep -q 'petrel.image.id=sha256:[0-9a-f]*' ||
  fail "containerd's image $ref has no petrel.image.id label: $(ctr_ images ls)"

echo "== get images: the image and its size"
run "$ctl" get images -o json
[ "$rc" = 0 ] || fail "get images: exit status $rc"
jq -e --arg r "$ref" '[.items[] | select(.refs | index($r) != null) | .sizeBytes > 4000000] | .[0]' \
  "$dir/out" >/dev/null || fail "get images: $ref is not listed with its size: $(cat "$dir/out")"

echo "== a workload from the pulled image runs on a snapshot"
apply_sleeper app "$ref" from-app
wait_for 60 running app || fail "app did not run: $(message_of app)"
wait_for 10 sh -c "'$ctl' logs app | grep -q from-app" || fail "app: no output"
has_snapshot petrel-petrel_cimg_app_0 || fail "no snapshot petrel-petrel_cimg_app_0: $(ctr_ snapshots ls)"

echo "== a zstd image runs too"
apply_sleeper zstd "$registry/zstd:1" from-zstd
wait_for 60 running zstd || fail "zstd did not run: $(message_of zstd)"
"$ctl" delete workload zstd >/dev/null

echo "== delete image: refused in use, then gone from containerd"
run "$ctl" delete image "$ref"
[ "$rc" = 1 ] || fail "delete image in use: exit status $rc, want 1"
"$ctl" delete workload app >/dev/null
wait_for 30 petreld_gone app || fail "app was not deleted"
has_snapshot petrel-petrel_cimg_app_0 && fail "app's snapshot outlived it: $(ctr_ snapshots ls)"
run "$ctl" delete image "$ref"
[ "$rc" = 0 ] || fail "delete image: exit status $rc"
containerd_has "$ref" && fail "containerd still names $ref after delete image"

echo "== a link that breaks mid-blob: each pull goes on from what the last one had"
# A 6 MiB layer, uncompressed, behind a proxy that cuts every connection after 1 MiB.
"$mk" --pad-mib 6 "$dir/resume.tar" >/dev/null || fail "make-busybox-image"
registry_push "oci-archive:$dir/resume.tar" resume:1 --dest-compress=false
registry_cutting_proxy 1048576 "$dir"
pulls=0
until "$ctl" pull image "$proxy/resume:1" >"$dir/out" 2>"$dir/err"; do
  pulls=$((pulls + 1))
  [ "$pulls" -lt 12 ] || fail "resume:1 not pulled after $pulls pulls over the cutting proxy"
done
[ "$pulls" -gt 0 ] || fail "the proxy cut nothing: resume:1 came in one pull"
containerd_has "$proxy/resume:1" || fail "containerd names no $proxy/resume:1"
[ "$(blobs_kept)" = 0 ] || fail "petreld kept $(blobs_kept) blob files after the pull"
echo "resume:1 pulled after $pulls broken pulls"
kill "$proxy_pid" 2>/dev/null || true
proxy_pid=""

echo "== cached blobs a power cut damaged are fetched anew"
# Blobs enter the local cache unsynced; after a power cut one may be there by name with
# zeros for bytes. The next pull hashes it, drops it and fetches it again.
"$mk" --pad-mib 1 "$dir/cut.tar" >/dev/null || fail "make-busybox-image"
registry_push "oci-archive:$dir/cut.tar" cut:1
mkdir -p "$state/containerd/images/blobs/sha256"
for d in $(registry_manifest cut:1 | jq -r '.config.digest, .layers[].digest'); do
  size=$(registry_manifest cut:1 | jq --arg d "$d" '[.config, .layers[]] | map(select(.digest == $d))[0].size')
  head -c "$size" /dev/zero >"$state/containerd/images/blobs/sha256/${d#sha256:}"
done
run "$ctl" pull image "$registry/cut:1"
[ "$rc" = 0 ] || fail "pull over damaged cached blobs: exit status $rc: $(cat "$dir/err")"
containerd_has "$registry/cut:1" || fail "containerd names no $registry/cut:1"
[ "$(blobs_kept)" = 0 ] || fail "petreld kept $(blobs_kept) blob files after the pull"

echo "== --image-preload: an archive into containerd under the name it carries"
mkdir -p "$dir/preload"
"$mk" --format docker-archive --pad-mib 1 --name preloaded:1 "$dir/preload/first.img" >/dev/null
petreld_stop
# --image-store-max: far below two images: after a pull, the older unused one goes.
petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" --node-name cimg \
  --log-level info --image-preload "$dir/preload" --image-store-max 1 ||
  fail "petreld did not answer"
wait_for 30 grep -q "image preload: $dir/preload/first.img: sha256:[0-9a-f]* docker.io/library/preloaded:1" \
  "$dir/petreld.log" || fail "the preload was not logged"
containerd_has docker.io/library/preloaded:1 || fail "containerd names no preloaded:1"
apply_sleeper pre preloaded:1 from-pre
wait_for 60 running pre || fail "pre did not run: $(message_of pre)"
run "$ctl" pull image "$registry/other:1"
[ "$rc" = 0 ] || fail "pull other: exit status $rc"
wait_for 10 sh -c "! ctr --address '$PETREL_TEST_CONTAINERD_SOCKET' -n '$containerd_ns' images ls -q | grep -qxF '$registry/zstd:1'" ||
  fail "the store limit left zstd:1, unused: $(ctr_ images ls -q)"
containerd_has docker.io/library/preloaded:1 || fail "the store limit removed preloaded:1, in use"
containerd_has "$registry/other:1" || fail "the store limit removed other:1, just pulled"
grep -q "removed the least recently used image" "$dir/petreld.log" || fail "no removal logged"
"$ctl" delete workload pre >/dev/null
wait_for 30 petreld_gone pre || fail "pre was not deleted"
echo "PASS"

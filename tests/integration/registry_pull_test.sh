#!/usr/bin/env bash
# Images from a real registry (issue 12), on crun: Debian's docker-registry on
# 127.0.0.1 with its own storage, images pushed into it with skopeo, and petreld
# running workloads whose image is a registry reference.
#  - a pull over plain HTTP (loopback) gives a running container; a layer already in the
#    store is not fetched again by a second image that shares it;
#  - from a multi-arch OCI index (arm64, arm/v7, then amd64) this machine's is picked;
#  - a layer whose bytes in the registry were tampered with fails the pull with a
#    digest error naming the blob, and nothing of it is kept in the store;
#  - kill -9 of petreld in the middle of a pull leaves no image that is used; the next
#    petreld completes the pull from the partial download it left;
#  - cached blobs a power cut damaged (zeros under their names) are hashed, dropped
#    and fetched anew, not trusted and not failing the pull for ever;
#  - a blob whose connection a proxy cuts is completed with HTTP Range requests;
#  - a registry behind token auth (auth: token, a token server of the test's own) is
#    pulled from with an anonymous Bearer token.
# Also compares the time of a 128 MiB blob's pull with curl fetching the same blob.
#   registry_pull_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: registry_pull_test.sh PETRELD PETRELCTL}
ctl=${2:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-registry-test.XXXXXX)
chmod 0755 "$dir"
state=$dir/state
images=$state/oci/images
export PETREL_SOCKET=$dir/petrel.sock
pid=""
registry_pid=""
proxy_pid=""

fail() {
  echo "FAIL: $*" >&2
  petreld_report "$dir"/petreld.log
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  runtime_cleanup crun "$state" "$dir"
  [ -n "$registry_pid" ] && kill -CONT "$registry_pid" 2>/dev/null
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  registry_stop
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/registry.sh
. "$src/tests/lib/registry.sh"

start_petreld() {
  petreld_start "$dir/petreld.log" --runtime crun --state-dir "$state" --node-name reg \
    --log-level debug || fail "petreld did not answer"
}
config_of() { registry_manifest "$1" | jq -r '.config.digest'; }
tmp_files() { ls "$images" 2>/dev/null | grep -c '^tmp-' || true; }

registry_start "$dir/registry"
echo "registry on $registry"

# --- Test images.
mk=$src/examples/images/make-busybox-image
if [ -n "${PETREL_TEST_IMAGE:-}" ]; then
  cp "${PETREL_TEST_IMAGE#oci-archive:}" "$dir/busybox.tar"
else
  "$mk" "$dir/busybox.tar" >/dev/null
fi
registry_push "oci-archive:$dir/busybox.tar" busybox:1
# The same image under a second name: its layer is in the store once the first is pulled.
registry_push "oci-archive:$dir/busybox.tar" again:1
# busybox:1 with a Docker schema 2 manifest: the same config and layer, a new manifest.
registry_push "oci-archive:$dir/busybox.tar" docker:1 --format v2s2
# An image with a layer and config of its own, never pulled before it is traced.
"$mk" --pad-mib 1 "$dir/fresh.tar" >/dev/null
registry_push "oci-archive:$dir/fresh.tar" fresh:1

# A multi-arch index: arm64 and arm/v7 images (a layer with one file, which this
# machine must never pick) listed before the amd64 busybox.
layout=$dir/multi
"$mk" --format oci-dir "$layout" >/dev/null
blob() {  # blob FILE: moves FILE into the layout, prints its digest
  local h
  h=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$layout/blobs/sha256/$h"
  echo "sha256:$h"
}
amd=$(jq -c '.manifests[0] | del(.annotations)' "$layout/index.json")
others=""
arm_configs=""
for arch in arm64 arm/v7; do
  mkdir -p "$dir/fake" && echo "$arch" >"$dir/fake/arch"
  tar -C "$dir/fake" -cf "$dir/layer.tar" arch
  diff_id=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  lsize=$(stat -c %s "$dir/layer.tar")
  layer=$(blob "$dir/layer.tar")
  a=${arch%/*}
  v=""
  [ "$a" != "$arch" ] && v=${arch#*/}
  printf '{"architecture":"%s","os":"linux","config":{"Cmd":["/arch"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$a" "$diff_id" >"$dir/config.json"
  csize=$(stat -c %s "$dir/config.json")
  config=$(blob "$dir/config.json")
  arm_configs+=" $config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$config" "$csize" "$layer" "$lsize" >"$dir/manifest.json"
  msize=$(stat -c %s "$dir/manifest.json")
  manifest=$(blob "$dir/manifest.json")
  platform=$(jq -cn --arg a "$a" --arg v "$v" '{os: "linux", architecture: $a} + (if $v == "" then {} else {variant: $v} end)')
  others+="{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$manifest\",\"size\":$msize,\"platform\":$platform},"
done
amd=$(jq -c '. + {platform: {os: "linux", architecture: "amd64"}}' <<<"$amd")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s%s]}' \
  "$others" "$amd" >"$dir/image-index.json"
isize=$(stat -c %s "$dir/image-index.json")
image_index=$(blob "$dir/image-index.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
  "$image_index" "$isize" >"$layout/index.json"
registry_push "oci:$layout:1" multi:1 --all
[ "$(registry_manifest multi:1 | jq '.manifests | length')" = 3 ] ||
  fail "the registry does not hold a 3-platform index: $(registry_manifest multi:1)"

# An image whose layer will be tampered with in the registry's storage.
"$mk" --pad-mib 1 "$dir/corrupt.tar" >/dev/null
registry_push "oci-archive:$dir/corrupt.tar" corrupt:1
corrupt_layer=$(registry_manifest corrupt:1 | jq -r '.layers[0].digest')
f=$(registry_blob_file "$corrupt_layer")
[ -f "$f" ] || fail "no registry blob file $f"
size=$(stat -c %s "$f")
printf 'X' | dd of="$f" bs=1 seek=$((size / 2)) conv=notrunc status=none

# A big image, to kill petreld in the middle of its pull.
"$mk" --pad-mib 256 "$dir/big.tar" >/dev/null
registry_push "oci-archive:$dir/big.tar" big:1 --dest-compress=false
big_layer=$(registry_manifest big:1 | jq -r '.layers[0].digest')
big_config=$(config_of big:1 | cut -d: -f2)  # now: the registry is frozen later

# --- A pull and a container running from it.
start_petreld
# libcurl (and OpenSSL) is loaded only while a pull runs.
mapped() { grep -E "/lib(curl|ssl)\.so" "/proc/$pid/maps" | awk '{print $6}' | sort -u | xargs -r -n1 basename | tr '\n' ' '; }
[ -z "$(mapped)" ] || fail "petreld has $(mapped)mapped before any pull"
rss_before=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
apply_sleeper bb "$registry/busybox:1" up
wait_for 60 running bb || fail "bb not Running: $(phase_of bb) $(message_of bb)"
"$ctl" logs bb | grep -qx up || fail "bb's container did not say up"
bb_config=$(config_of busybox:1)
[ -d "$images/${bb_config#sha256:}/rootfs" ] || fail "busybox:1 ($bb_config) is not unpacked in $images: $(ls "$images")"
layer=$(registry_manifest busybox:1 | jq -r '.layers[0].digest')
[ -f "$images/blobs/sha256/${layer#sha256:}" ] || fail "layer $layer is not in the store's blobs"
echo "ok: $registry/busybox:1 pulled and running"
if grep -q '/libcurl\.so' "/proc/$pid/maps"; then fail "libcurl is still mapped after the pull"; fi
echo "ok: libcurl unloaded after the pull (still mapped: $(mapped))"
echo "figure: petreld VmRSS ${rss_before} kB before any pull, $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status") kB after one"

# The same layer under another name: not fetched again (its cached file is unchanged).
before=$(stat -c %Y.%i "$images/blobs/sha256/${layer#sha256:}")
apply_sleeper again "$registry/again:1" up
wait_for 60 running again || fail "again not Running: $(message_of again)"
[ "$(stat -c %Y.%i "$images/blobs/sha256/${layer#sha256:}")" = "$before" ] ||
  fail "the shared layer was fetched again"
echo "ok: a second image with the same layer did not fetch it again"

# --- Multi-arch: this machine's image is picked.
[ "$(uname -m)" = x86_64 ] || fail "the multi-arch case expects an amd64 machine"
apply_sleeper multi "$registry/multi:1" up
wait_for 60 running multi || fail "multi not Running: $(phase_of multi) $(message_of multi)"
amd_config=$(jq -r '.config.digest' "$layout/blobs/sha256/$(jq -r '.digest' <<<"$amd" | cut -d: -f2)")
[ -d "$images/${amd_config#sha256:}/rootfs" ] || fail "the amd64 image $amd_config was not unpacked"
for c in $arm_configs; do
  [ ! -e "$images/${c#sha256:}" ] || fail "an arm image ($c) was unpacked"
done
# The amd64 image is busybox:1's (the same config): nothing else was unpacked.
[ "$(ls "$images" | grep -cE '^[0-9a-f]{64}$')" = 1 ] ||
  fail "more images unpacked than the amd64 one: $(ls "$images")"
echo "ok: amd64 picked from the arm64, arm/v7, amd64 index"

# --- A pull waits for the disk only when it wrote something, and asks over one
# connection. strace -f attached to petreld sees the connect and syncfs calls of its
# threads and their children; calls counts those of the API's pull threads alone (the
# runtime's crun children may connect to systemd meanwhile).
# trace_pull REF: petrelctl pull image REF, with petreld's calls in $dir/pull.trace.
trace_pull() {
  strace -f -qq -e trace=connect,syncfs -p "$pid" -o "$dir/pull.trace" 2>/dev/null &
  local tracer=$!
  # Every thread traced (strace attaches them one by one), the pull's included.
  wait_for 10 bash -c "! grep -qx 'TracerPid:[[:space:]]*0' /proc/$pid/task/*/status" ||
    fail "strace did not attach to petreld's threads"
  "$ctl" pull image "$1" >/dev/null 2>&1 || fail "petrelctl pull image $1"
  kill -INT "$tracer"
  wait "$tracer" 2>/dev/null || true
}
# calls NAME: how many NAME calls petreld's pull threads made in the last trace_pull.
calls() {
  local tids
  tids=$(grep -lx 'petrel-api-pull' /proc/"$pid"/task/*/comm | cut -d/ -f5 | tr '\n' ' ')
  [ -n "$tids" ] || fail "petreld has no petrel-api-pull thread"
  awk -v tids=" $tids" -v call="$1(" 'index(tids, " " $1 " ") && index($2, call) == 1 { n++ } END { print n + 0 }' "$dir/pull.trace"
}
trace_pull "$registry/busybox:1"
[ "$(calls syncfs)" = 0 ] ||
  fail "pulling busybox:1 again (Always: resolved anew, nothing new) ran $(calls syncfs) syncfs"
trace_pull "$registry/docker:1"
[ "$(calls syncfs)" = 1 ] || fail "a pull that wrote only a new manifest ran $(calls syncfs) syncfs, not 1"
echo "ok: a pull that wrote nothing did not sync; one that wrote a manifest synced once"
trace_pull "$registry/fresh:1"
[ "$(calls connect)" = 1 ] ||
  fail "a pull of a manifest, config and layer made $(calls connect) connections, not 1: $(cat "$dir/pull.trace")"
echo "ok: a pull's manifest, config and layer came over one connection"

# --- A tampered layer: a digest error naming the blob, nothing committed.
apply_sleeper corrupt "$registry/corrupt:1" up
wait_for 60 bash -c "'$ctl' get workloads corrupt -o json | jq -e '.items[0].replicas[0].message | test(\"digest mismatch\")' >/dev/null" ||
  fail "no digest error for corrupt: $(message_of corrupt)"
# The replica's message changes as it retries; the Failed event keeps the error.
msg=$("$ctl" events | grep -m1 -E ' corrupt .*digest mismatch' || true)
[[ $msg == *"$corrupt_layer"* ]] || fail "the digest error does not name blob $corrupt_layer: $msg"
echo "ok: $msg"
[ ! -e "$images/blobs/sha256/${corrupt_layer#sha256:}" ] || fail "the tampered blob was kept"
[ ! -e "$images/$(config_of corrupt:1 | cut -d: -f2)" ] || fail "the corrupt image was committed"
"$ctl" events | grep -qE ' corrupt .* BackOff ' && fail "an image error became a crash loop"
"$ctl" delete workload corrupt >/dev/null || fail "delete corrupt"

# --- kill -9 in the middle of a pull.
apply_sleeper big "$registry/big:1" up
# Busy-polls (no sleep: the download takes well under a second) for the partial blob
# past 1 MiB, then freezes the registry so that the pull stalls where it is.
partial_seen() {
  local end=$((SECONDS + 60)) f
  while [ $SECONDS -lt $end ]; do
    for f in "$images"/partial/sha256/*; do
      [ -f "$f" ] && [ "$(stat -c %s "$f" 2>/dev/null || echo 0)" -gt 1048576 ] && return 0
    done
  done
  return 1
}
partial_seen || fail "no partial download of big's layer seen: $(ls -la "$images")"
kill -STOP "$registry_pid"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=""
[ ! -e "$images/blobs/sha256/${big_layer#sha256:}" ] || fail "the pull finished before the kill (too fast to test)"
[ ! -e "$images/$big_config" ] || fail "a half-pulled image was committed"
partial=$images/partial/sha256/${big_layer#sha256:}
[ -s "$partial" ] || fail "no partial download of $big_layer left: $(ls -la "$images/partial/sha256")"
kill -CONT "$registry_pid"
start_petreld
wait_for 120 running big || fail "big not Running after the restart: $(message_of big)"
[ -d "$images/$big_config/rootfs" ] || fail "big is not unpacked after the restart"
[ "$(tmp_files)" = 0 ] || fail "temporary files left: $(ls "$images")"
[ ! -e "$partial" ] || fail "the partial download is still there after the pull completed"
echo "ok: kill -9 mid-pull left no used image; the next petreld completed it"

# --- What a power cut can leave: the cache takes a blob without an fsync (the image's
# commit syncs them all), so after one a blob may be there by name with other bytes.
# Here the layer and the config of an image never pulled are in the cache with zeros
# (as the disk keeps a renamed file whose data never reached it): the pull hashes them,
# sees they are damaged, and fetches them anew instead of failing for ever.
"$mk" --pad-mib 2 "$dir/cut.tar" >/dev/null
registry_push "oci-archive:$dir/cut.tar" cut:1 --dest-compress=false
cut_layer=$(registry_manifest cut:1 | jq -r '.layers[0].digest')
cut_config=$(config_of cut:1)
for d in "$cut_layer" "$cut_config"; do
  size=$(registry_manifest cut:1 | jq --arg d "$d" '[.config, .layers[]] | map(select(.digest == $d))[0].size')
  head -c "$size" /dev/zero >"$images/blobs/sha256/${d#sha256:}"
done
apply_sleeper cut "$registry/cut:1" up
wait_for 60 running cut || fail "cut not Running over its damaged cached blobs: $(phase_of cut) $(message_of cut)"
for d in "$cut_layer" "$cut_config"; do
  [ "sha256:$(sha256sum <"$images/blobs/sha256/${d#sha256:}" | cut -d' ' -f1)" = "$d" ] ||
    fail "the cached blob $d is still damaged after the pull"
done
echo "ok: cached blobs damaged as a power cut leaves them were hashed, dropped and fetched anew"

# --- A figure (printed, never failing): petreld's download of a 128 MiB layer, from
# the apply to the blob in the store, beside curl fetching the same blob.
"$mk" --pad-mib 128 "$dir/speed.tar" >/dev/null
registry_push "oci-archive:$dir/speed.tar" speed:1 --dest-compress=false
speed_layer=$(registry_manifest speed:1 | jq -r '.layers[0].digest')
t0=$(date +%s%N)
apply_sleeper speed "$registry/speed:1" up
end=$((SECONDS + 60))
while [ ! -e "$images/blobs/sha256/${speed_layer#sha256:}" ] && [ $SECONDS -lt $end ]; do :; done
t1=$(date +%s%N)
curl -sf -o "$dir/speed.blob" "http://$registry/v2/speed/blobs/$speed_layer" || fail "curl of $speed_layer"
t2=$(date +%s%N)
rm -f "$dir/speed.blob"
# petreld hashes what it stores: curl piped into sha256sum does the same work.
curl -sf "http://$registry/v2/speed/blobs/$speed_layer" | tee "$dir/speed.blob" | sha256sum >/dev/null
sync "$dir/speed.blob"
t3=$(date +%s%N)
rm -f "$dir/speed.blob"
echo "figure: 128 MiB layer from the loopback registry: petreld $(( (t1 - t0) / 1000000 )) ms" \
  "(apply to blob stored: hashed), curl to a file $(( (t2 - t1) / 1000000 )) ms," \
  "curl | tee file | sha256sum, then sync $(( (t3 - t2) / 1000000 )) ms"
wait_for 60 running speed || fail "speed not Running: $(message_of speed)"
echo "figure: petreld's own word: $(grep -o 'speed Pulled: .*' "$dir/petreld.log" | tail -1) (download and unpack)"

# --- A dropped download resumes with HTTP Range: through a loopback proxy that cuts
# every connection after at most 5 MiB, a 7 MiB blob only arrives when each retry asks
# for the rest; starting it again would fail the same way every time.
"$mk" --pad-mib 6 "$dir/resume.tar" >/dev/null
registry_push "oci-archive:$dir/resume.tar" resume:1 --dest-compress=false
resume_layer=$(registry_manifest resume:1 | jq -r '.layers[0].digest')
[ "$(registry_manifest resume:1 | jq '.layers[0].size')" -gt $((6 * 1048576)) ] ||
  fail "the resume image's layer is too small to be cut"
registry_cutting_proxy $((5 * 1048576)) "$dir"
got=$(curl -s -o /dev/null -w '%{size_download}' "http://$proxy/v2/resume/blobs/$resume_layer" || true)
[ "$got" -gt 1048576 ] && [ "$got" -lt $((6 * 1048576)) ] ||
  fail "the proxy did not pass the start of the blob and cut it (curl got $got bytes)"
apply_sleeper resume "$proxy/resume:1" up
wait_for 60 running resume || fail "resume not Running: $(phase_of resume) $(message_of resume)"
[ -f "$images/blobs/sha256/${resume_layer#sha256:}" ] || fail "the resumed blob is not in the store"
kill "$proxy_pid" 2>/dev/null || true
proxy_pid=""
echo "ok: a blob cut at 5 MiB was completed with Range requests"

# --- A registry that wants Bearer tokens: the anonymous token flow (401, the realm of
# its WWW-Authenticate challenge, the request again with the token).
registry_stop
registry_start_token "$dir/token-registry"
registry_push "oci-archive:$dir/busybox.tar" private:1
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$registry/v2/private/manifests/1")" = 401 ] ||
  fail "the token registry answers without a token"
apply_sleeper private "$registry/private:1" up
wait_for 60 running private || fail "private not Running: $(phase_of private) $(message_of private)"
echo "ok: $registry/private:1 pulled with a Bearer token from the registry's realm"

for w in bb again multi big cut speed resume private; do "$ctl" delete workload "$w" >/dev/null || true; done
for w in bb again multi big cut speed resume private; do wait_for 60 petreld_gone "$w" || fail "$w not gone"; done
petreld_stop
registry_stop
echo "PASS"

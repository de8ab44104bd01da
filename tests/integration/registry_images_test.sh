#!/usr/bin/env bash
# The crun adapter's images against a real registry (issue 12): Debian's docker-registry
# on 127.0.0.1 with its own storage, three different busybox images (a 1 MiB random pad
# each), and the cases of petrel_crun_registry_test (runtime-adapters/crun/tests/
# registry_images_test.cpp): imagePullPolicy Always pulls a moved tag again while
# IfNotPresent and a digest keep theirs, pull progress, removal with the blobs, and the
# store's size limit removing the least recently used unused images, and a blob whose
# every connection a proxy cuts completed over several pulls (a partial download kept).
#   registry_images_test.sh TEST_BINARY
set -euo pipefail
binary=${1:?usage: registry_images_test.sh TEST_BINARY}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-registry-images.XXXXXX)
chmod 0755 "$dir"
registry_pid=""
proxy_pid=""

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null
  registry_stop
  grep -o "/tmp/petrel-[^ ]*" /proc/self/mountinfo 2>/dev/null | grep "$dir" | sort -r |
    xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=tests/lib/registry.sh
. "$src/tests/lib/registry.sh"
command -v crun >/dev/null || fail "no crun (apt-get install crun)"
registry_start "$dir/registry"
echo "registry on $registry"
for name in a b c; do
  "$src/examples/images/make-busybox-image" --pad-mib 1 "$dir/$name.tar" >/dev/null ||
    fail "make-busybox-image $name"
done
# resume:1 (a 6 MiB pad, uncompressed) behind a proxy that cuts every connection after
# 1 MiB.
"$src/examples/images/make-busybox-image" --pad-mib 6 "$dir/resume.tar" >/dev/null
registry_push "oci-archive:$dir/resume.tar" resume:1 --dest-compress=false
registry_cutting_proxy 1048576 "$dir"
layer=$(registry_manifest resume:1 | jq -r '.layers[0].digest')
for _ in $(seq 50); do
  got=$(curl -s -o /dev/null -w '%{size_download}' "http://$proxy/v2/resume/blobs/$layer" || true)
  [ "${got:-0}" -gt 0 ] && break
  sleep 0.1
done
[ "$got" -gt 0 ] && [ "$got" -le 1048576 ] ||
  fail "the proxy did not pass the start of the blob and cut it (curl got $got bytes)"
PETREL_TEST_REGISTRY=$registry PETREL_TEST_IMAGES=$dir PETREL_TEST_CUT_REGISTRY=$proxy \
  "$binary" ||
  fail "petrel_crun_registry_test failed (registry log: $(tail -5 "$dir/registry/registry.log"))"

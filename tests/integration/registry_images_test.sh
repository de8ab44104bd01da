#!/usr/bin/env bash
# The crun adapter's images against a real registry (issue 12): Debian's docker-registry
# on 127.0.0.1 with its own storage, three different busybox images (a 1 MiB random pad
# each), and the cases of petrel_crun_registry_test (runtime-adapters/crun/tests/
# registry_images_test.cpp): imagePullPolicy Always pulls a moved tag again while
# IfNotPresent and a digest keep theirs, pull progress, removal with the blobs, and the
# store's size limit removing the least recently used unused images.
#   registry_images_test.sh TEST_BINARY
set -euo pipefail
binary=${1:?usage: registry_images_test.sh TEST_BINARY}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-registry-images.XXXXXX)
chmod 0755 "$dir"
registry_pid=""

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
cleanup() {
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
PETREL_TEST_REGISTRY=$registry PETREL_TEST_IMAGES=$dir "$binary" ||
  fail "petrel_crun_registry_test failed (registry log: $(tail -5 "$dir/registry/registry.log"))"

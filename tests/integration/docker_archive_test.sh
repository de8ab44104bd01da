#!/usr/bin/env bash
# Issue 15: OCI images written as `docker save` output by WriteDockerArchiveOf
# (lib/image/docker_archive.h, through tests/tools/write_docker_archive.cpp) load into a
# real dockerd 20.10 (Debian 12's docker.io, which cannot load OCI layouts: moby#44162)
# and run. The script starts its own containerd (tests/lib/containerd.sh) and dockerd
# (tests/lib/dockerd.sh) under a temp dir, never touching a system Docker, and stops
# both at the end, also on failure. For the busybox image of make-busybox-image, its
# layer plain and gzip-compressed: POST /images/load (a file, then a stream straight
# from the writer), the tag and id dockerd reports, a container running `echo hello`
# (NetworkMode none) whose log says hello. Then a layer whose digest is wrong: the
# writer fails naming it, and dockerd refuses what it had streamed. A missing dockerd
# or containerd is a failure, never a skip.
#   docker_archive_test.sh WRITE_DOCKER_ARCHIVE
set -euo pipefail
tool=${1:?usage: docker_archive_test.sh WRITE_DOCKER_ARCHIVE}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-docker-archive.XXXXXX)
ctd=$dir/containerd
dkd=$dir/dockerd
socket=$dkd/docker.sock

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
cleanup() {
  bash "$src/tests/lib/dockerd.sh" stop "$dkd" || true
  bash "$src/tests/lib/containerd.sh" stop "$ctd" || true
  rm -rf "$dir"
}
trap cleanup EXIT

# The Engine API: curl on the private socket. A body is never form data: dockerd would
# parse a form's Content-Type and refuse the tar ("invalid semicolon separator in query").
api() { curl -sS --unix-socket "$socket" "$@"; }
load_file() { api -X POST -H 'Content-Type: application/x-tar' --data-binary "@$1" http://d/v1.41/images/load; }
load_stdin() { api -X POST -H 'Content-Type: application/x-tar' -T - http://d/v1.41/images/load; }

command -v dockerd >/dev/null || fail "no dockerd (apt-get install docker.io)"
command -v containerd >/dev/null || fail "no containerd (apt-get install containerd)"
bash "$src/tests/lib/containerd.sh" start "$ctd" || fail "containerd did not start"
bash "$src/tests/lib/dockerd.sh" start "$dkd" "$ctd/containerd.sock" || fail "dockerd did not start"

for variant in plain gzip; do
  image=$dir/$variant.tar
  name=petrel-test/busybox:$variant
  gzip_flag=()
  [ "$variant" = gzip ] && gzip_flag=(--gzip)
  "$src/examples/images/make-busybox-image" "${gzip_flag[@]}" "$image" >/dev/null ||
    fail "make-busybox-image $variant"
  if [ "$variant" = plain ]; then
    id=$("$tool" "oci-archive:$image" "$dir/$variant.docker.tar" "$name") ||
      fail "write_docker_archive $variant"
    out=$(load_file "$dir/$variant.docker.tar")
  else
    # Streamed as the Docker adapter does: the writer's output goes out as it comes.
    out=$("$tool" "oci-archive:$image" - "$name" 2>"$dir/id" | load_stdin) ||
      fail "write_docker_archive $variant | load: $(cat "$dir/id")"
    id=$(cat "$dir/id")
  fi
  echo "$variant: $out"
  # dockerd answers a failed load with 200 and {"error": ...} in the body.
  if grep -q '"error"' <<<"$out"; then fail "$variant: dockerd refused the load: $out"; fi
  grep -q "Loaded image: $name" <<<"$out" || fail "$variant: no \"Loaded image: $name\" in $out"
  got=$(api "http://d/v1.41/images/$name/json" | jq -r .Id)
  [ "$got" = "$id" ] || fail "$variant: dockerd calls $name $got, the writer said $id"

  cid=$(api -X POST -H 'Content-Type: application/json' \
    -d "{\"Image\":\"$name\",\"Cmd\":[\"echo\",\"hello\"],\"HostConfig\":{\"NetworkMode\":\"none\"}}" \
    http://d/v1.41/containers/create | jq -r .Id)
  [ -n "$cid" ] && [ "$cid" != null ] || fail "$variant: no container created"
  code=$(api -o "$dir/start.out" -w '%{http_code}' -X POST "http://d/v1.41/containers/$cid/start")
  [ "$code" = 204 ] || fail "$variant: start answered $code: $(cat "$dir/start.out")"
  status=$(api -X POST "http://d/v1.41/containers/$cid/wait" | jq -r .StatusCode)
  [ "$status" = 0 ] || fail "$variant: the container exited $status"
  # Not a TTY: the log is multiplexed, 8 bytes of header before each line.
  api "http://d/v1.41/containers/$cid/logs?stdout=1" | grep -aq hello ||
    fail "$variant: no hello in the container's log"
  api -X DELETE "http://d/v1.41/containers/$cid?force=1" >/dev/null
  # Both variants are one image: removed, so that the gzip layer is loaded, not found.
  api -X DELETE "http://d/v1.41/images/$name?force=1" | grep -q '"Deleted"' ||
    fail "$variant: image $name not deleted"
  echo "$variant: loaded as $id, ran, said hello"
done

# A layer that is not what its digest says: the writer fails naming it, and what it had
# written ends inside the layer, so dockerd refuses the load.
mkdir "$dir/bad"
tar -C "$dir/bad" -xf "$dir/plain.tar"
digest=$(jq -r '.layers[0].digest' "$dir/bad/blobs/sha256/$(jq -r '.manifests[0].digest' \
  "$dir/bad/index.json" | cut -d: -f2)")
blob=$dir/bad/blobs/sha256/${digest#sha256:}
printf X | dd of="$blob" bs=1 seek=$(($(stat -c %s "$blob") - 600)) conv=notrunc status=none
out=$("$tool" "oci:$dir/bad" - 2>"$dir/bad.err" | load_stdin) || true
grep -q "oci:$dir/bad: layer $digest: digest mismatch" "$dir/bad.err" ||
  fail "the writer did not name the bad layer: $(cat "$dir/bad.err")"
grep -q '"error"' <<<"$out" || fail "dockerd took an archive with a bad layer: $out"
echo "bad layer: $(cat "$dir/bad.err"); dockerd: $out"
[ "$(api 'http://d/v1.41/images/json' | jq length)" = 0 ] || fail "an image is left in dockerd"
echo "PASS"

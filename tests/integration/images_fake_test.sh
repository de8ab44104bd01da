#!/usr/bin/env bash
# The image API (GET /v1/images, POST /v1/images/pull, DELETE /v1/images/REF, POST
# /v1/images/prune) and petrelctl's image commands against a real petreld on the fake
# runtime, whose images live in memory (1 MiB each, one layer).
# Usage: images_fake_test.sh PETRELCTL PETRELD SOURCE_DIR   (CTest: integration.images_fake)
set -euo pipefail

ctl=$(realpath "$1")
petreld=$(realpath "$2")
src=$3
for tool in jq curl tar; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (ports/debian/install-deps)" >&2; exit 1; }
done
pid=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"

tmp=$(mktemp -d /tmp/images-fake-test.XXXXXX)
export PETREL_SOCKET=$tmp/s.sock
cleanup() {
  petreld_stop
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in out err; do
    [ -f "$tmp/$f" ] && { echo "--- last std$f:" >&2; cat "$tmp/$f" >&2; }
  done
  [ -f "$tmp/petreld.log" ] && { echo "--- petreld log (last 20 lines):" >&2; tail -20 "$tmp/petreld.log" >&2; }
  exit 1
}
run() {
  set +e
  "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  set -e
}
expect_rc() { [ "$rc" -eq "$1" ] || fail "$2: exit status $rc, want $1"; }
expect_out() { [ "$(cat "$tmp/out")" = "$1" ] || fail "$2: stdout is not:"$'\n'"$1"; }
expect_err() { [ "$(cat "$tmp/err")" = "$1" ] || fail "$2: stderr is not:"$'\n'"$1"; }
expect_out_has() { grep -qE -- "$1" "$tmp/out" || fail "$2: stdout lacks /$1/"; }
expect_err_has() { grep -qE -- "$1" "$tmp/err" || fail "$2: stderr lacks /$1/"; }
api() { curl -sS --unix-socket "$PETREL_SOCKET" -o "$tmp/out" -w '%{http_code}' "$@"; }

echo "== start petreld (fake runtime)"
petreld_start "$tmp/petreld.log" --runtime fake --state-dir "$tmp/state" --node-name imgtest \
  --log-level warn || fail "petreld did not answer within 10 s (or exited)"

echo "== no images yet"
run "$ctl" get images
expect_rc 0 "get images, none"
expect_out "" "get images, none"
expect_err "No images found." "get images, none"
[ "$(api http://p/v1/images)" = 200 ] || fail "GET /v1/images"
[ "$(jq -c . "$tmp/out")" = '{"items":[]}' ] || fail "GET /v1/images: not an empty list"

echo "== pull over the API: NDJSON progress lines, then the result"
code=$(api -X POST -H 'Content-Type: application/json' -d '{"image":"reg.test/a:1"}' http://p/v1/images/pull)
[ "$code" = 200 ] || fail "POST /v1/images/pull: HTTP $code"
[ "$(tail -1 "$tmp/out" | jq -c .)" = '{"image":"reg.test/a:1","pulled":true}' ] || fail "pull: no result line"
[ "$(head -1 "$tmp/out" | jq -c .progress)" = \
  '{"bytesDone":1048576,"bytesTotal":1048576,"layersDone":1,"layersTotal":1,"phase":"downloading"}' ] ||
  fail "pull: no progress line first"
code=$(api -X POST -H 'Content-Type: application/json' -d '{"image":"reg.test/x:1","policy":"Never"}' \
  http://p/v1/images/pull)
[ "$(jq -c . "$tmp/out")" = '{"error":"reg.test/x:1: not present, and imagePullPolicy is Never","image":"reg.test/x:1","status":409}' ] ||
  fail "pull with policy Never: the error line"
code=$(api -X POST -H 'Content-Type: application/json' -d '{"image":"reg.test/x:1","policy":"Sometimes"}' \
  http://p/v1/images/pull)
[ "$code" = 400 ] || fail "pull with a bad policy: HTTP $code"
[ "$(jq -r .error "$tmp/out")" = 'policy: "Sometimes" is not IfNotPresent, Always or Never' ] ||
  fail "pull with a bad policy: the error"
code=$(api -X POST -H 'Content-Type: application/json' -d '{"img":"reg.test/x:1"}' http://p/v1/images/pull)
[ "$code" = 400 ] || fail "pull with an unknown key: HTTP $code"

echo "== petrelctl pull image: plain progress lines on stderr (not a terminal)"
run "$ctl" pull image reg.test/b:1
expect_rc 0 "pull image"
expect_out "image.petrel/reg.test/b:1 pulled" "pull image"
expect_err_has '^downloading 1\.0 of 1\.0 MiB, 1/1 layers' "pull image"
run "$ctl" pull image reg.test/y:1 --policy Never
expect_rc 1 "pull image --policy Never"
expect_err "petrelctl: reg.test/y:1: not present, and imagePullPolicy is Never" "pull image --policy Never"
run "$ctl" pull image reg.test/y:1 --policy never
expect_rc 2 "pull image with a bad --policy"

echo "== import image: the transport told by the archive's contents, the path made absolute"
mkdir "$tmp/oci" "$tmp/docker"
echo '{}' >"$tmp/oci/index.json"
echo '[]' >"$tmp/docker/manifest.json"
tar -C "$tmp/oci" -cf "$tmp/oci.tar" index.json
tar -C "$tmp/docker" -cf "$tmp/docker.tar" ./manifest.json
echo hello >"$tmp/plain.txt"
tar -C "$tmp" -cf "$tmp/plain.tar" plain.txt
(
  cd "$tmp"
  run "$ctl" import image oci.tar
  expect_rc 0 "import image (OCI)"
  expect_out "image.petrel/oci-archive:$tmp/oci.tar imported" "import image (OCI)"
  run "$ctl" import image ./docker.tar
  expect_rc 0 "import image (docker)"
  expect_out "image.petrel/docker-archive:$tmp/docker.tar imported" "import image (docker)"
  run "$ctl" import image plain.tar
  expect_rc 1 "import image (not an image)"
  expect_err "petrelctl: $tmp/plain.tar: not an image archive (a tar with index.json or manifest.json)" \
    "import image (not an image)"
  run "$ctl" import image nothing.tar
  expect_rc 1 "import image (no file)"
  expect_err "petrelctl: $tmp/nothing.tar: No such file or directory" "import image (no file)"
)

echo "== get images: the table and -o json"
cat >"$tmp/user.yaml" <<EOF
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: user}
spec: {image: "reg.test/a:1", command: [/bin/sh, -c, "sleep 3600"]}
EOF
run "$ctl" apply -f "$tmp/user.yaml"
expect_rc 0 "apply"
wait_for 10 sh -c "'$ctl' get workloads user | grep -q Running" || fail "user did not run"
run "$ctl" get images
expect_rc 0 "get images"
head -1 "$tmp/out" | grep -qE '^IMAGE ID +REFERENCES +SIZE +AGE +IN USE$' || fail "get images: header"
expect_out_has '^[0-9a-f]{12}  reg\.test/a:1 +1\.0MiB +[0-9]+s +yes$' "get images: reg.test/a:1 in use"
expect_out_has '^[0-9a-f]{12}  reg\.test/b:1 +1\.0MiB +[0-9]+s +no$' "get images: reg.test/b:1"
[ "$(wc -l <"$tmp/out")" -eq 5 ] || fail "get images: 4 images and a header"
run "$ctl" get images -o json
expect_rc 0 "get images -o json"
[ "$(jq -r '.items[] | select(.refs == ["reg.test/a:1"]) | .inUse' "$tmp/out")" = true ] ||
  fail "get images -o json: reg.test/a:1 in use"
[ "$(jq -r '.items[0] | keys | join(",")' "$tmp/out")" = "createdAt,id,inUse,refs,sizeBytes" ] ||
  fail "get images -o json: the keys"

echo "== delete image: refused while in use (409), 404 for none, then done"
run "$ctl" delete image reg.test/a:1
expect_rc 1 "delete image in use"
expect_err "petrelctl: reg.test/a:1: in use by container petrel_imgtest_user_0" "delete image in use"
[ "$(api -X DELETE http://p/v1/images/reg.test%2Fnope%3A1)" = 404 ] || fail "DELETE of no image: not 404"
[ "$(api -X DELETE http://p/v1/images/reg.test%2Fa%3A1)" = 409 ] || fail "DELETE of an image in use: not 409"
run "$ctl" delete image "oci-archive:$tmp/oci.tar"
expect_rc 0 "delete image"
expect_out "image.petrel/oci-archive:$tmp/oci.tar deleted" "delete image"

echo "== prune images: all but the one in use"
run "$ctl" prune images
expect_rc 0 "prune images"
[ "$(grep -c '^deleted sha256:[0-9a-f]\{64\}$' "$tmp/out")" -eq 2 ] || fail "prune: two images deleted"
expect_out_has '^freed 2\.0MiB$' "prune images"
run "$ctl" get images -o json
[ "$(jq -c '[.items[].refs[]]' "$tmp/out")" = '["reg.test/a:1"]' ] || fail "after prune: only reg.test/a:1 left"
run "$ctl" prune images extra
expect_rc 2 "prune with an argument"

echo "PASS"

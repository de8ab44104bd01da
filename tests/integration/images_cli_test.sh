#!/usr/bin/env bash
# petrelctl's image commands against petreld on crun (issue 12): Debian's
# docker-registry on 127.0.0.1 (its own storage, an image pushed with skopeo), then
# `pull image` with its progress lines, the NDJSON stream of POST /v1/images/pull,
# `get images`, a workload with imagePullPolicy Never, `delete image` refused while the
# workload uses it, `import image` of an OCI archive, `prune images`.
#   images_cli_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: images_cli_test.sh PETRELD PETRELCTL}
ctl=${2:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
for tool in crun jq curl skopeo docker-registry; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (ports/debian/install-deps)" >&2; exit 1; }
done
dir=$(mktemp -d /tmp/petrel-images-cli.XXXXXX)
chmod 0755 "$dir"
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
pid=""
registry_pid=""

fail() {
  echo "FAIL: $*" >&2
  for f in out err; do
    [ -f "$dir/$f" ] && { echo "--- last std$f:" >&2; cat "$dir/$f" >&2; }
  done
  echo "--- petreld log (last 30 lines)" >&2
  tail -n 30 "$dir"/petreld.log >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  runtime_cleanup crun "$state" "$dir"
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
expect_rc() { [ "$rc" -eq "$1" ] || fail "$2: exit status $rc, want $1"; }
expect_out() { [ "$(cat "$dir/out")" = "$1" ] || fail "$2: stdout is not:"$'\n'"$1"; }
expect_err_has() { grep -qE -- "$1" "$dir/err" || fail "$2: stderr lacks /$1/"; }
pull_policy=Never  # for apply_sleeper: these workloads use only images the store has

registry_start "$dir/registry"
echo "registry on $registry"
mk=$src/examples/images/make-busybox-image
"$mk" --pad-mib 16 "$dir/big.tar" >/dev/null || fail "make-busybox-image big"
"$mk" --pad-mib 1 "$dir/small.tar" >/dev/null || fail "make-busybox-image small"
registry_push "oci-archive:$dir/big.tar" big:1
registry_push "oci-archive:$dir/big.tar" other:1

petreld_start "$dir/petreld.log" --runtime crun --state-dir "$state" --node-name img \
  --log-level info || fail "petreld did not answer"

echo "== pull image: progress lines on stderr, one line on stdout"
ref=$registry/big:1
run "$ctl" pull image "$ref"
expect_rc 0 "pull image"
expect_out "image.petrel/$ref pulled" "pull image"
expect_err_has '^(downloading|unpacking) [0-9]+\.[0-9] of 1[6-7]\.[0-9] MiB, [0-9]+/[0-9]+ layers' \
  "pull image: progress with bytes and layers"
cp "$dir/err" "$dir/pull-progress.txt"

echo "== POST /v1/images/pull: NDJSON progress lines, then the result"
code=$(curl -sS --unix-socket "$PETREL_SOCKET" -o "$dir/out" -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -d "{\"image\":\"$registry/other:1\",\"policy\":\"Always\"}" \
  http://p/v1/images/pull)
[ "$code" = 200 ] || fail "POST /v1/images/pull: HTTP $code"
[ "$(tail -1 "$dir/out" | jq -c .)" = "{\"image\":\"$registry/other:1\",\"pulled\":true}" ] ||
  fail "POST /v1/images/pull: the result line"
[ "$(grep -c '"progress"' "$dir/out")" -ge 1 ] || fail "POST /v1/images/pull: no progress line"
jq -e 'select(.progress) | .progress.bytesTotal > 16000000 and .progress.layersTotal >= 1' \
  <(grep '"progress"' "$dir/out" | tail -1) >/dev/null || fail "POST /v1/images/pull: progress totals"

echo "== get images: one image with two references, not in use"
run "$ctl" get images
expect_rc 0 "get images"
head -1 "$dir/out" | grep -qE '^IMAGE ID +REFERENCES +SIZE +AGE +IN USE$' || fail "get images: header"
grep -qE "^[0-9a-f]{12}  .*big:1.* +[0-9]+\.[0-9]MiB +[0-9]+s +no$" "$dir/out" || fail "get images: the row"
run "$ctl" get images -o json
[ "$(jq '.items | length' "$dir/out")" = 1 ] || fail "get images -o json: one image"
[ "$(jq '.items[0].refs | length' "$dir/out")" = 2 ] || fail "get images -o json: two references"

echo "== a workload with imagePullPolicy Never: runs from the store; a missing image says so"
apply_sleeper user "$ref"
wait_for 30 running user || fail "user did not run: $(message_of user)"
apply_sleeper nothing "$registry/nothing:1"
wait_for 10 sh -c "'$ctl' get workloads nothing -o json | jq -r '.items[0].replicas[0].message' | grep -q 'not present, and imagePullPolicy is Never'" ||
  fail "nothing: message is $(message_of nothing)"
[ "$(phase_of nothing)" = Pulling ] || fail "nothing: phase $(phase_of nothing), want Pulling"
"$ctl" delete workload nothing >/dev/null

echo "== delete image: refused while the workload uses it (exit 1, 409)"
run "$ctl" delete image "$ref"
expect_rc 1 "delete image in use"
expect_err_has "in use by container" "delete image in use"
[ "$(curl -sS --unix-socket "$PETREL_SOCKET" -o /dev/null -w '%{http_code}' -X DELETE \
  "http://p/v1/images/$(jq -rn --arg r "$ref" '$r | @uri')")" = 409 ] || fail "DELETE in use: not 409"
[ "$(curl -sS --unix-socket "$PETREL_SOCKET" -o /dev/null -w '%{http_code}' -X DELETE \
  "http://p/v1/images/nothing%3A1")" = 404 ] || fail "DELETE of no image: not 404"

echo "== import image: an OCI archive, the path made absolute"
(
  cd "$dir"
  run "$ctl" import image small.tar
  expect_rc 0 "import image"
  expect_out "image.petrel/oci-archive:$dir/small.tar imported" "import image"
)
run "$ctl" get images -o json
[ "$(jq '.items | length' "$dir/out")" = 2 ] || fail "after import: two images"

echo "== prune images: the imported one goes, the one in use stays"
run "$ctl" prune images
expect_rc 0 "prune images"
[ "$(grep -c '^deleted sha256:[0-9a-f]\{64\}$' "$dir/out")" = 1 ] || fail "prune: one image deleted"
grep -qE '^freed [0-9.]+(KiB|MiB)$' "$dir/out" || fail "prune: freed"
run "$ctl" get images -o json
[ "$(jq '.items | length' "$dir/out")" = 1 ] || fail "after prune: one image"
[ "$(jq '.items[0].inUse' "$dir/out")" = true ] || fail "after prune: the image in use stays"

echo "== once the workload is gone, the image can be deleted"
"$ctl" delete workload user >/dev/null
wait_for 30 petreld_gone user || fail "user was not deleted"
run "$ctl" delete image "$ref"
expect_rc 0 "delete image"
expect_out "image.petrel/$ref deleted" "delete image"
run "$ctl" get images
expect_rc 0 "get images, none"
[ "$(cat "$dir/err")" = "No images found." ] || fail "get images after delete: not empty"

echo "pull progress seen:"
cat "$dir/pull-progress.txt"
echo "PASS"

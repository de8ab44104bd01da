#!/usr/bin/env bash
# Registry images through the Docker adapter (issue 15): petreld --runtime docker on
# CTest's shared dockerd ($PETREL_TEST_DOCKERD_SOCKET), and Debian's docker-registry on
# 127.0.0.1 (dockerd treats loopback registries as insecure on its own). dockerd pulls:
# `petrelctl pull image` shows dockerd's progress as petrel's; a reference without a
# tag pulls :latest alone, not every tag; `get images` lists what this petreld pulled;
# a workload runs from the pulled image; a missing reference says what the registry
# said; `delete image` removes it from dockerd too. Then a registry with htpasswd: refused
# without credentials, pulled with the one petreld's --registry-auth file holds, which
# goes to dockerd with the pull (X-Registry-Auth).
#   docker_pull_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: docker_pull_test.sh PETRELD PETRELCTL}
ctl=${2:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
for tool in jq curl skopeo docker-registry htpasswd; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (ports/debian/install-deps)" >&2; exit 1; }
done
[ -S "${PETREL_TEST_DOCKERD_SOCKET:-}" ] ||
  { echo "FAIL: no dockerd: PETREL_TEST_DOCKERD_SOCKET names no socket" >&2; exit 1; }
dir=$(mktemp -d /tmp/petrel-docker-pull.XXXXXX)
chmod 0755 "$dir"
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
pid=""
registry_pid=""
pulled=()

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
  runtime_cleanup docker "$state" "$dir"
  # The images this test made dockerd pull.
  for ref in "${pulled[@]}"; do
    docker_api "/images/$ref?force=1" -X DELETE >/dev/null 2>&1 || true
  done
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
# docker_has REF: dockerd has an image by that name.
docker_has() { docker_api "/images/$1/json" >/dev/null 2>&1; }

registry_start "$dir/registry"
echo "registry on $registry"
mk=$src/examples/images/make-busybox-image
"$mk" --pad-mib 8 "$dir/big.tar" >/dev/null || fail "make-busybox-image"
registry_push "oci-archive:$dir/big.tar" pulled:1
# Two tags of one repository: a pull of the bare name must take latest alone.
registry_push "oci-archive:$dir/big.tar" untagged:latest
registry_push "oci-archive:$dir/big.tar" untagged:other
pulled=("$registry/pulled:1" "$registry/untagged:latest" "$registry/untagged:other")

runtime_flags docker || fail "no dockerd"
petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" --node-name dpull \
  --log-level info || fail "petreld did not answer"

echo "== pull image: dockerd's progress, as petrel's lines"
ref=$registry/pulled:1
run "$ctl" pull image "$ref"
[ "$rc" = 0 ] || fail "pull image: exit status $rc"
[ "$(cat "$dir/out")" = "image.petrel/$ref pulled" ] || fail "pull image: stdout"
grep -qE '^downloading [0-9]+\.[0-9] of [0-9]+\.[0-9] MiB' "$dir/err" ||
  fail "pull image: no progress line with bytes"
cp "$dir/err" "$dir/progress.txt"
docker_has "$ref" || fail "dockerd has no $ref after the pull"

echo "== a reference without a tag: :latest alone"
run "$ctl" pull image "$registry/untagged"
[ "$rc" = 0 ] || fail "pull image of a bare name: exit status $rc"
docker_has "$registry/untagged:latest" || fail "dockerd has no untagged:latest"
docker_has "$registry/untagged:other" && fail "a bare name pulled every tag (untagged:other too)"

echo "== get images: what this petreld pulled"
run "$ctl" get images -o json
[ "$rc" = 0 ] || fail "get images: exit status $rc"
jq -e --arg r "$ref" '[.items[].refs[]] | index($r) != null' "$dir/out" >/dev/null ||
  fail "get images: $ref is not listed"

echo "== a workload from the pulled image runs"
cat >"$dir/app.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: app}
spec:
  image: $ref
  command: ["/bin/sh", "-c", "echo from-the-registry; trap 'exit 0' TERM; while true; do sleep 1; done"]
  terminationGracePeriod: 2s
YAML
"$ctl" apply -f "$dir/app.yaml" >/dev/null || fail "apply app"
wait_for 60 running app || fail "app did not run: $(message_of app)"
wait_for 10 sh -c "'$ctl' logs app | grep -q from-the-registry" || fail "app: no output"

echo "== a reference the registry lacks: its answer, named"
cat >"$dir/missing.yaml" <<YAML
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: missing}
spec:
  image: $registry/nothing:1
  command: ["/bin/true"]
YAML
"$ctl" apply -f "$dir/missing.yaml" >/dev/null || fail "apply missing"
wait_for 30 sh -c "'$ctl' get workloads missing -o json | jq -r '.items[0].replicas[0].message' | grep -q 'nothing'" ||
  fail "missing: message is $(message_of missing)"
[ "$(phase_of missing)" = Pulling ] || fail "missing: phase $(phase_of missing), want Pulling"
echo "missing image: $(message_of missing)"
"$ctl" delete workload missing >/dev/null

echo "== delete image: refused in use, then gone from dockerd"
run "$ctl" delete image "$ref"
[ "$rc" = 1 ] || fail "delete image in use: exit status $rc, want 1"
"$ctl" delete workload app >/dev/null
wait_for 30 petreld_gone app || fail "app was not deleted"
run "$ctl" delete image "$ref"
[ "$rc" = 0 ] || fail "delete image: exit status $rc"
docker_has "$ref" && fail "dockerd still has $ref after delete image"

echo "== credentials: refused without, pulled with the one --registry-auth names"
registry_stop
htpasswd -Bbc "$dir/htpasswd" alice s3cret >/dev/null 2>&1 || fail "htpasswd failed"
registry_auth="auth: {htpasswd: {realm: petrel-test, path: $dir/htpasswd}}" \
  registry_start "$dir/auth-registry"
registry_push "oci-archive:$dir/big.tar" private:1 --dest-creds alice:s3cret
private=$registry/private:1
pulled+=("$private")
run "$ctl" pull image "$private"
[ "$rc" = 1 ] || fail "pull without credentials: exit status $rc, want 1"
grep -q "unauthorized\|no basic auth" "$dir/err" || fail "pull without credentials: not refused as such"
echo "without credentials: $(cat "$dir/err")"
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$registry" "$(printf alice:s3cret | base64)" \
  >"$dir/auth.json"
petreld_stop
petreld_start "$dir/petreld.log" "${runtime_flags[@]}" --state-dir "$state" --node-name dpull \
  --log-level info --registry-auth "$dir/auth.json" || fail "petreld did not answer"
run "$ctl" pull image "$private"
[ "$rc" = 0 ] || fail "pull with credentials: exit status $rc"
docker_has "$private" || fail "dockerd has no $private after the pull"

echo "progress seen:"
cat "$dir/progress.txt"
echo "PASS"

#!/usr/bin/env bash
# Who may drive petreld (issue 9, section 3), with the fake runtime: the socket has its
# mode and group from the moment it exists at its path (chmod and chown are slowed
# down under strace, so a socket bound at its path first would be seen open wider);
# a user outside the socket's group is refused by the kernel, a member is served;
# each connection's uid and pid are logged; --allow-host-path refuses a bind mount
# outside its directories (API: 400 naming workload and field; --manifests: the
# manifest's file, line and field) and accepts one inside. Needs root, strace, setpriv,
# curl and jq.
# Usage: petreld_access_test.sh PETRELD PETRELCTL
set -uo pipefail

usage="usage: $0 PETRELD PETRELCTL"
petreld=${1:?$usage}
ctl=${2:?$usage}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/petreld-access.XXXXXX)
chmod 0755 "$work" # an unprivileged user must reach the socket's directory
mkdir -m 0755 "$work/run"
sock=$work/run/petrel/api.sock
state=$work/state
group=users
pid=""
tracer=""
export PETREL_SOCKET=$sock
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/api.sh
. "$src/tests/lib/api.sh"

cleanup() {
  [ -z "$pid" ] && [ -s "$work/pid" ] && pid=$(cat "$work/pid")
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "needs root (setpriv to another user)"
for tool in curl jq strace setpriv; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
gid=$(getent group "$group" | cut -d: -f3)
[ -n "$gid" ] || fail "group $group does not exist"

# as_nobody [setpriv flags...] -- curl args: curl as uid 65534, in no group but those given.
as_nobody() {
  local flags=()
  while [ "$1" != "--" ]; do
    flags+=("$1")
    shift
  done
  shift
  setpriv --reuid=65534 --regid=65534 "${flags[@]}" curl -sS --unix-socket "$sock" "$@"
}

# expect_error CODE TEXT: the last answer is CODE with TEXT in its "error".
expect_error() {
  [ "$code" = "$1" ] || fail "expected HTTP $1, got $code: $(cat "$work/body")"
  jq -r .error "$work/body" | grep -qF -- "$2" || fail "error lacks $2: $(cat "$work/body")"
}

mkdir -p "$work/allowed/data" "$work/also"
ln -s /etc "$work/allowed/escape"

step "the socket has mode 0660 and group $group from its first moment at its path"
# Every chmod and chown of petreld's waits 0.5 s: a socket bound at its final path and
# only then restricted would sit there with the umask's mode meanwhile.
(
  umask 000
  # LeakSanitizer cannot run under ptrace; the other runs of petreld here keep it.
  export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
  exec strace -f -qq -o /dev/null -e trace=chmod,fchmodat,chown,fchownat,lchown \
    -e inject=chmod,fchmodat,chown,fchownat,lchown:delay_enter=500000 \
    sh -c 'echo $$ >"$0"; exec "$@"' "$work/pid" "$petreld" --socket "$sock" --runtime fake \
    --state-dir "$state" --node-name access --log-level debug --socket-group "$group" \
    --allow-host-path "$work/allowed" --allow-host-path "$work/also/" >>"$work/petreld.log" 2>&1
) &
tracer=$!
seen=0
for _ in $(seq 300); do # up to 15 s
  if [ -S "$sock" ]; then
    got=$(stat -c '%a %G' "$sock")
    [ "$got" = "660 $group" ] || fail "socket was $got at $sock before petreld restricted it"
    seen=$((seen + 1))
    [ "$seen" -ge 3 ] && break
  fi
  kill -0 "$tracer" 2>/dev/null || fail "petreld exited at start"
  sleep 0.05
done
[ "$seen" -ge 1 ] || fail "no socket at $sock within 15 s"
pid=$(cat "$work/pid")
wait_for 10 petreld_answers || fail "petreld does not answer"
[ "$(stat -c '%a %G' "$(dirname "$sock")")" = "750 $group" ] ||
  fail "socket directory is $(stat -c '%a %G' "$(dirname "$sock")"), not 750 $group"
leftover=$(find "$(dirname "$sock")" -mindepth 1 -not -path "$sock")
[ -z "$leftover" ] || fail "left beside the socket: $leftover"

step "a user outside group $group is refused, a member is served"
out=$(as_nobody --clear-groups -- -v http://petrel/healthz 2>&1) &&
  fail "uid 65534 outside $group was served: $out"
case "$out" in *"ermission denied"*) ;; *) fail "refused for another reason: $out" ;; esac
out=$(as_nobody --groups="$gid" -- -o /dev/null -w '%{http_code}' http://petrel/healthz 2>&1)
[ "$out" = 200 ] || fail "uid 65534 in $group was not served: $out"

step "each connection's uid and pid are logged"
grep -qE 'api: connection from uid 65534 gid 65534 pid [0-9]+$' "$work/petreld.log" ||
  fail "no log line with uid 65534 and its pid"
grep -qE 'api: connection from uid 0 gid 0 pid [0-9]+$' "$work/petreld.log" ||
  fail "no log line with uid 0 and its pid"

step "--allow-host-path: refused outside the directories, accepted inside"
manifest() { # manifest NAME SOURCE: a workload with one bind mount of SOURCE
  printf 'apiVersion: petrel.dev/v1\nkind: Workload\nmetadata: {name: %s}\nspec:\n  image: oci-archive:/images/busybox.tar\n  mounts:\n    - {type: bind, source: "%s", target: /data}\n' "$1" "$2"
}
for bad in /etc "$work/allowedx" "$work/allowed/escape/shadow" "$work/also-not"; do
  api PUT /v1/workloads -H 'Content-Type: application/yaml' --data-binary "$(manifest bad "$bad")"
  expect_error 400 "workload bad: spec.mounts[0].source: \"$bad\" is not below an allowed host path ($work/allowed, $work/also/)"
done
api PUT /v1/workloads -H 'Content-Type: application/yaml' \
  --data-binary "$(manifest bad "$work/allowed/escape/shadow")"
expect_error 400 'it resolves to "/etc/shadow"'
api GET /v1/workloads/bad
expect 404
for good in "$work/allowed" "$work/allowed/data" "$work/allowed/not-yet/made" "$work/also/x"; do
  api PUT /v1/workloads -H 'Content-Type: application/yaml' --data-binary "$(manifest good "$good")"
  expect 200 '"name":"good"'
done
# The JSON SPEC of PUT /v1/workloads/NAME: the same check, the same message.
api GET /v1/workloads/good
spec=$(jq -c '.spec | .mounts[0].source = "/var"' "$work/body") || fail "no SPEC: $(cat "$work/body")"
api PUT /v1/workloads/good -H 'Content-Type: application/json' --data-binary "$spec"
expect_error 400 'workload good: spec.mounts[0].source: "/var" is not below an allowed host path'
cat >"$work/bad.yaml" <<EOF
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: yaml-bad}
spec:
  image: oci-archive:/images/busybox.tar
  mounts:
    - {type: bind, source: /, target: /host}
EOF
api PUT /v1/workloads -H 'Content-Type: application/yaml' --data-binary @"$work/bad.yaml"
expect_error 400 'workload yaml-bad: spec.mounts[0].source: "/" is not below an allowed host path'
kill -TERM "$pid"
wait "$tracer" || fail "petreld did not exit 0 on SIGTERM"
pid=""
[ ! -e "$sock" ] || fail "socket $sock left behind after SIGTERM"

step "--allow-host-path with --manifests: the manifest's file, line and field"
out=$("$petreld" --socket "$sock" --runtime fake --state-dir "$state" --node-name access \
  --allow-host-path "$work/allowed" --manifests "$work/bad.yaml" 2>&1)
[ $? = 1 ] || fail "petreld with a manifest outside --allow-host-path did not exit 1: $out"
[ "$out" = "petreld: $work/bad.yaml:7:28: spec.mounts[0].source: \"/\" is not below an allowed host path ($work/allowed)" ] ||
  fail "manifest error: $out"
out=$("$petreld" --allow-host-path data 2>&1)
[ $? = 2 ] || fail "a relative --allow-host-path should exit 2: $out"
[ "$out" = 'petreld: allow-host-path "data" is not an absolute path (see petreld --help)' ] ||
  fail "relative --allow-host-path: $out"
out=$("$petreld" --cgroup-parent /petrel 2>&1)
[ $? = 2 ] || fail "an absolute --cgroup-parent should exit 2: $out"
[ "$out" = 'petreld: cgroup parent "/petrel": must be relative to the cgroup root (e.g. petrel) (see petreld --help)' ] ||
  fail "absolute --cgroup-parent: $out"
out=$("$petreld" --cgroup-parent petrel/../.. 2>&1)
[ $? = 2 ] || fail "--cgroup-parent with .. should exit 2: $out"
[ "$out" = 'petreld: cgroup parent "petrel/../..": ".." is not a name (see petreld --help)' ] ||
  fail "--cgroup-parent with ..: $out"
out=$("$petreld" --bridge-subnet 10.47.0.1/16 2>&1)
[ $? = 2 ] || fail "--bridge-subnet with host bits should exit 2: $out"
[ "$out" = 'petreld: bridge subnet "10.47.0.1/16": host bits are set (the network is 10.47.0.0/16) (see petreld --help)' ] ||
  fail "--bridge-subnet with host bits: $out"

step "a socket group that does not exist: one line, exit 1"
out=$("$petreld" --socket "$sock" --runtime fake --state-dir "$state" --node-name access \
  --socket-group no-such-group-here 2>&1)
[ $? = 1 ] || fail "--socket-group no-such-group-here did not exit 1: $out"
case "$out" in *"socket group no-such-group-here: no such group"*) ;; *) fail "bad group: $out" ;; esac

echo "PASS"

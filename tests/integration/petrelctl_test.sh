#!/usr/bin/env bash
# petrelctl against a real petreld (fake runtime) on a socket in a temporary
# directory: every command, its output and exit status, the errors users see.
# Usage: petrelctl_test.sh PETRELCTL PETRELD SOURCE_DIR   (CTest: integration.petrelctl)
set -euo pipefail

ctl=$1
petreld=$2
src=$3
manifests=$src/examples/manifests
command -v jq >/dev/null || { echo "FAIL: jq is missing (ports/debian/install-deps)" >&2; exit 1; }
pid=""
# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"

tmp=$(mktemp -d /tmp/petrelctl-test.XXXXXX)
sock=$tmp/s.sock
daemon_pid=
follow_pids=()
cleanup() {
  for p in "${follow_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$daemon_pid" ]; then kill -TERM "$daemon_pid" 2>/dev/null || true; fi
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

# run CMD...: runs it with stdout in $tmp/out, stderr in $tmp/err, status in $rc.
run() {
  set +e
  "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  set -e
}
out() { cat "$tmp/out"; }
err() { cat "$tmp/err"; }
expect_rc() { [ "$rc" -eq "$1" ] || fail "$2: exit status $rc, want $1"; }
expect_out() { [ "$(out)" = "$1" ] || fail "$2: stdout is not:"$'\n'"$1"; }
expect_err() { [ "$(err)" = "$1" ] || fail "$2: stderr is not:"$'\n'"$1"; }
expect_out_has() { grep -qE -- "$1" "$tmp/out" || fail "$2: stdout lacks /$1/"; }
ctl() { "$ctl" --socket "$sock" "$@"; }

# check_aligned WHAT < TABLE: every column of every row starts where its header word
# does, after at least two spaces (the last column may be empty).
check_aligned() {
  awk '
    NR == 1 {
      n = 0
      for (i = 1; i <= length($0); i++) {
        if (substr($0, i, 1) != " " && (i == 1 || substr($0, i - 1, 1) == " ")) start[++n] = i
      }
      next
    }
    {
      for (k = 2; k <= n; k++) {
        s = start[k]
        if (k == n && length($0) < s) continue
        if (substr($0, s - 2, 2) != "  " || substr($0, s, 1) == " ") {
          print "misaligned row " NR ", column " k ": " $0
          bad = 1
        }
      }
    }
    END { exit bad }' || fail "$1: columns not aligned"
}

echo "== without a daemon: the connection error, the client version, exit 1"
nosock=$tmp/nothing-here.sock
run "$ctl" --socket "$nosock" get workloads
expect_rc 1 "get without petreld"
expect_out "" "get without petreld"
expect_err "petrelctl: cannot connect to $nosock: No such file or directory (is petreld running? set --socket or PETREL_SOCKET)" "get without petreld"
run "$ctl" --socket "$nosock" version
expect_rc 1 "version without petreld"
[ "$(out | wc -l)" -eq 1 ] || fail "version without petreld: one line expected"
expect_out_has '^Client Version: [0-9]+\.[0-9]+\.[0-9]+$' "version without petreld"
version=$(out | sed 's/^Client Version: //')  # the project's, as petreld's is
expect_err "petrelctl: cannot connect to $nosock: No such file or directory (is petreld running? set --socket or PETREL_SOCKET)" "version without petreld"
run env -u PETREL_SOCKET "$ctl" get workloads
expect_rc 1 "the default socket"
err | grep -q "^petrelctl: cannot connect to /run/petrel/petrel.sock: " || fail "default socket: $(err)"

echo "== usage: help exits 0, unknown commands and flags exit 2 with one line"
run "$ctl" --help
expect_rc 0 "--help"
cp "$tmp/out" "$tmp/overview"
for c in apply get describe delete logs events cluster version help; do
  grep -qE "^  $c  " "$tmp/overview" || fail "--help does not list $c"
  run "$ctl" help "$c"
  expect_rc 0 "help $c"
  expect_out_has "^Usage: petrelctl $c" "help $c"
  run "$ctl" "$c" --help
  expect_rc 0 "$c --help"
done
run "$ctl" frobnicate
expect_rc 2 "unknown command"
expect_err "petrelctl: unknown command \"frobnicate\" (see 'petrelctl --help')" "unknown command"
run "$ctl" get workloads --colour
expect_rc 2 "unknown flag"
expect_err "petrelctl get: unknown flag \"--colour\" (see 'petrelctl help get')" "unknown flag"
run "$ctl" get pods
expect_rc 2 "unknown resource type"
run "$ctl" get workloads -o yaml
expect_rc 2 "unknown output format"
run "$ctl" logs
expect_rc 2 "logs without NAME"

run "$ctl" cluster
expect_rc 2 "cluster without a subcommand"
expect_err "petrelctl cluster: missing the subcommand (init, set, token, status, remove) (see 'petrelctl help cluster')" \
  "cluster without a subcommand"
for bad in "cluster frob" "cluster remove" "cluster remove a b" "cluster status x" \
  "cluster init --heartbeat fast" "cluster init --fence-after -1s" "cluster token --heartbeat 1s" \
  "cluster set" "cluster set x --heartbeat 1s" "cluster set --node-lost-after fast" \
  "cluster set --rotate" "cluster status --rotate" "cluster status -o yaml" "get nodes -o wide" "describe node" \
  "delete node pi2"; do
  # shellcheck disable=SC2086
  run "$ctl" --socket "$nosock" $bad
  expect_rc 2 "$bad"
  [ "$(err | wc -l)" -eq 1 ] || fail "$bad: one line on stderr expected"
done
run "$ctl" --socket "$nosock" cluster init --heartbeat fast
expect_err "petrelctl cluster: --heartbeat: \"fast\" is not a duration (e.g. 500ms, 10s, 1m30s) (see 'petrelctl help cluster')" \
  "cluster init with a bad duration"
run "$ctl" --socket "$nosock" cluster token --heartbeat 1s
expect_err "petrelctl cluster: --heartbeat is a flag of 'cluster init' or 'cluster set' (see 'petrelctl help cluster')" \
  "a flag of another subcommand"
run "$ctl" --socket "$nosock" cluster set
expect_err "petrelctl cluster: nothing to set: give --heartbeat, --node-lost-after or --fence-after (see 'petrelctl help cluster')" \
  "cluster set without a flag"

echo "== start petreld (fake runtime)"
PETREL_SOCKET=$sock petreld_start "$tmp/petreld.log" --runtime fake --state-dir "$tmp/state" \
  --node-name ctltest --log-level warn || fail "petreld did not answer within 10 s (or exited)"
daemon_pid=$pid

echo "== version"
run ctl version
expect_rc 0 "version"
expect_out "Client Version: $version"$'\n'"Server Version: $version (api v1, runtime fake, node ctltest)" "version"

echo "== a broken manifest: the library's error, exit 1, nothing applied"
mkdir "$tmp/bad"
cat >"$tmp/bad/a-good.yaml" <<'EOF'
apiVersion: petrel.dev/v1
kind: Workload
metadata: {name: fresh}
spec: {image: "oci:/images/x"}
EOF
cat >"$tmp/bad/web.yaml" <<'EOF'
apiVersion: petrel.dev/v1
kind: Workload
metadata:
  name: broken
spec:
  image: oci:/images/x
  resources: {cpu: 1, memory: 64Q}
EOF
run ctl apply -f "$tmp/bad"
expect_rc 1 "apply broken dir"
expect_out "" "apply broken dir"
expect_err "petrelctl: $tmp/bad/web.yaml:7:31: spec.resources.memory: \"64Q\" is not a quantity" "apply broken dir"
run ctl apply -f "$tmp/bad/a-good.yaml" -f "$tmp/bad/web.yaml"
expect_rc 1 "apply good then broken file"
run ctl apply -f "$tmp/bad/a-good.yaml" -f "$tmp/bad/a-good.yaml"
expect_rc 1 "the same workload twice"
expect_err "petrelctl: $tmp/bad/a-good.yaml: duplicate workload name \"fresh\" (first in $tmp/bad/a-good.yaml)" "the same workload twice"
run ctl apply -f "$tmp/no-such.yaml"
expect_rc 1 "apply a missing file"
expect_err "petrelctl: $tmp/no-such.yaml: No such file or directory" "apply a missing file"
run ctl get workloads -o json
expect_out '{
  "items": []
}' "nothing applied"

echo "== apply examples/manifests: created, then unchanged"
run ctl apply -f "$manifests"
expect_rc 0 "apply"
expect_out "workload.petrel/hello created
workload.petrel/ticker created
workload.petrel/uptime-log created
workload.petrel/web created" "apply"
expect_err "" "apply"
run ctl apply -f "$manifests/web.yaml" -f "$manifests/hello.yaml"
expect_out "workload.petrel/web unchanged
workload.petrel/hello unchanged" "apply again"

all_ready() {
  ctl get workloads -o json >"$tmp/out" 2>"$tmp/err" &&
    jq -e 'all(.items[]; .readyReplicas == .desiredReplicas)' "$tmp/out" >/dev/null
}
wait_for 10 all_ready || fail "replicas not all ready after 10 s"

echo "== get workloads: the table"
run ctl get workloads
expect_rc 0 "get"
expect_err "" "get"
[ "$(out | wc -l)" -eq 5 ] || fail "get: 5 lines expected"
# Exactly kubectl's layout: columns start where the header's do, two spaces apart.
[ "$(out | head -1)" = "NAME        READY  PHASE    RESTARTS  AGE" ] || fail "get: header"
out | tail -n +2 | awk '{print $1, $2, $3, $4}' >"$tmp/cols"
[ "$(cat "$tmp/cols")" = "hello 1/1 Running 0
ticker 1/1 Running 0
uptime-log 1/1 Running 0
web 2/2 Running 0" ] || fail "get: rows $(cat "$tmp/cols")"
out | tail -n +2 | grep -qE '^web         2/2    Running  0         [0-9]+s$' || fail "get: web's row is not aligned"
out | check_aligned "get"
run ctl get workload web -o wide
expect_out_has '^NAME  READY  PHASE    RESTARTS  AGE +IMAGE +NODES$' "get -o wide"
expect_out_has '^web   2/2    Running  0         [0-9]+s +oci-archive:/.*/build/images/busybox.tar +[^ ,]+$' "get -o wide"
out | check_aligned "get -o wide"

echo "== get -o json: exactly the stable keys"
run ctl get workloads -o json
expect_rc 0 "get -o json"
jq -e '
  (keys == ["items"]) and
  ([.items[].name] == ["hello", "ticker", "uptime-log", "web"]) and
  all(.items[];
      keys == ["desiredReplicas", "name", "phase", "readyReplicas", "replicas"] and
      .phase == "Running" and
      (.replicas | length) == .desiredReplicas and
      all(.replicas[];
          keys == ["containerId", "index", "lastExitCode", "message", "node", "phase", "pid", "ready",
                   "restarts"] and
          .phase == "Running" and .pid > 0 and .lastExitCode == -1 and .node == "ctltest" and
          (.containerId | type) == "string" and (.message | type) == "string"))' \
  "$tmp/out" >/dev/null || fail "get -o json: keys or values"
# Pretty and sorted: the keys of a workload come one per line, in order.
grep -q '^      "desiredReplicas": 2,$' "$tmp/out" || fail "get -o json is not pretty-printed"
run ctl get wl web -o json
jq -e '(.items | length) == 1 and .items[0].name == "web" and (.items[0].replicas | map(.index)) == [0, 1]' \
  "$tmp/out" >/dev/null || fail "get NAME -o json"
run ctl get workloads nope
expect_rc 1 "get a missing workload"
expect_err "petrelctl: workload nope not found" "get a missing workload"

echo "== PETREL_SOCKET is honoured, --socket wins over it"
run env PETREL_SOCKET="$sock" "$ctl" get workloads hello
expect_rc 0 "PETREL_SOCKET"
expect_out_has '^hello +1/1 +Running' "PETREL_SOCKET"
run env PETREL_SOCKET="$nosock" "$ctl" --socket "$sock" get workloads hello
expect_rc 0 "--socket over PETREL_SOCKET"
run env PETREL_SOCKET="$nosock" "$ctl" get workloads
expect_rc 1 "PETREL_SOCKET elsewhere"
err | grep -qF "cannot connect to $nosock" || fail "PETREL_SOCKET not used: $(err)"

echo "== describe"
run ctl describe workload web
expect_rc 0 "describe"
for line in '^Name: +web$' '^Image: +oci-archive:/.*/build/images/busybox.tar$' \
  '^Replicas: +2 desired \| 2 ready$' '^Restart Policy: +Always \(back-off 1s' \
  '^Resources: +memory 64Mi, cpu 500m, pids 64$' '^Command: +/bin/sh -c$' '^Env: +MODE=prod$' \
  '^Mounts: +tmpfs /www \(1Mi\)$' '^Created: +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} \(' \
  '^Replica Status:$' '^  INDEX  NODE +PHASE    READY  CONTAINER +PID +RESTARTS  LAST-EXIT  MESSAGE$' \
  '^  1      ctltest  Running ' '^Events:$' '^  TIME +REPLICA  TYPE +MESSAGE$' ' +-  +Applied +created'; do
  expect_out_has "$line" "describe"
done
out | sed -n '/^Replica Status:$/,/^Events:$/p' | sed '1d;$d' | check_aligned "describe's replicas"
out | sed -n '/^Events:$/,$p' | sed '1d' | check_aligned "describe's events"
run ctl describe workload nope
expect_rc 1 "describe a missing workload"
expect_err "petrelctl: workload nope not found" "describe a missing workload"

echo "== cluster commands on a petreld without --peer-listen: its 404, exit 1"
no_cluster="petrelctl: this node is not cluster-capable: start petreld with --peer-listen ADDR:PORT"
for cmd in "get nodes" "get nodes pi1 -o json" "describe node pi1" "cluster init" \
  "cluster init --heartbeat 100ms" "cluster token" "cluster token --rotate" "cluster status" \
  "cluster status -o json" "cluster remove pi2" "cluster set --fence-after 1s"; do
  # shellcheck disable=SC2086
  run ctl $cmd
  expect_rc 1 "$cmd"
  expect_out "" "$cmd"
  expect_err "$no_cluster" "$cmd"
done

echo "== logs: the fake runtime writes nothing"
run ctl logs hello
expect_rc 0 "logs"
expect_out "" "logs"
expect_err "" "logs"
run ctl logs web --replica 1 --tail 1Ki
expect_rc 0 "logs --replica --tail"
run ctl logs web --replica 7
expect_rc 1 "logs of a replica that does not exist"
expect_err "petrelctl: workload web has no replica 7 (replicas: 2)" "logs --replica 7"
run ctl logs web --tail lots
expect_rc 2 "logs --tail lots"

echo "== events"
run ctl events
expect_rc 0 "events"
expect_out_has '^TIME                 WORKLOAD    REPLICA  TYPE +MESSAGE$' "events: header"
out | check_aligned "events"
expect_out_has '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}  web +-  +Applied +created' "events"
expect_out_has '^[0-9-]{10} [0-9:]{8}  web +1  +Started ' "events"
run ctl events --workload hello
expect_rc 0 "events --workload"
[ "$(out | tail -n +2 | awk '{print $3}' | sort -u)" = hello ] || fail "events --workload hello"
run ctl events -o json
jq -e '(.items | length) >= 5 and all(.items[]; keys == ["message", "replica", "seq", "time", "type", "workload"])' \
  "$tmp/out" >/dev/null || fail "events -o json"

echo "== events -f and logs -f follow while workloads change"
ctl events -f >"$tmp/follow.out" 2>"$tmp/follow.err" &
follow_pids+=($!)
ctl events -f -o json --workload ticker >"$tmp/follow-json.out" 2>"$tmp/follow-json.err" &
follow_pids+=($!)
ctl logs hello -f >"$tmp/logs-follow.out" 2>"$tmp/logs-follow.err" &
follow_pids+=($!)
# Subscribed once the past events are out: what the deletes below add is live.
wait_for 10 grep -qE '  hello +-  +Applied ' "$tmp/follow.out" || fail "events -f: no past events"
wait_for 10 grep -q '"workload":"ticker"' "$tmp/follow-json.out" ||
  fail "events -f -o json: no past events"

echo "== delete"
run ctl delete workload ticker
expect_rc 0 "delete"
expect_out "workload.petrel/ticker deleted" "delete"
# Terminating until its (fake) container is gone, which takes a pass or two.
ticker_gone() { ! ctl get workloads ticker >/dev/null 2>&1; }
wait_for 5 ticker_gone || true  # checked below
run ctl get workloads ticker
expect_rc 1 "ticker is gone once its container is"
run ctl delete -f "$manifests/jobs.json"
expect_rc 1 "delete -f with one already gone"
expect_out "workload.petrel/uptime-log deleted" "delete -f"
expect_err "petrelctl: workload ticker not found" "delete -f"
run ctl delete workloads nope
expect_rc 1 "delete a missing workload"
expect_err "petrelctl: workload nope not found" "delete a missing workload"
names_are() { ctl get workloads -o json >"$tmp/out" && [ "$(jq -c '[.items[].name]' "$tmp/out")" = "$1" ]; }
wait_for 5 names_are '["hello","web"]' || fail "after delete: $(out)"

wait_for 10 grep -qE '  uptime-log +-  +Deleted ' "$tmp/follow.out" || fail "events -f: no live event"
wait_for 10 grep -q '"type":"Deleted"' "$tmp/follow-json.out" || fail "events -f -o json: no live event"
for p in "${follow_pids[@]}"; do
  kill -0 "$p" 2>/dev/null || fail "a follower (pid $p) ended early: $(cat "$tmp"/follow*.err "$tmp/logs-follow.err")"
  kill -TERM "$p"  # not INT: a script's background jobs ignore SIGINT
  wait "$p" || true
done
follow_pids=()
grep -qE '^TIME +WORKLOAD +REPLICA +TYPE +MESSAGE$' "$tmp/follow.out" || fail "events -f: header"
check_aligned "events -f" <"$tmp/follow.out"
grep -qE '  hello +-  +Applied ' "$tmp/follow.out" || fail "events -f: the past events"
grep -qE '  ticker +-  +Deleted ' "$tmp/follow.out" || fail "events -f: the new events"
grep -qE '  uptime-log +-  +Deleted ' "$tmp/follow.out" || fail "events -f: the new events"
[ ! -s "$tmp/follow.err" ] || fail "events -f: stderr $(cat "$tmp/follow.err")"
jq -e -s 'length >= 3 and all(.[]; .workload == "ticker") and any(.[]; .type == "Deleted")' \
  "$tmp/follow-json.out" >/dev/null || fail "events -f -o json: $(cat "$tmp/follow-json.out")"
[ ! -s "$tmp/logs-follow.out" ] || fail "logs -f: output from the fake runtime?"
[ ! -s "$tmp/logs-follow.err" ] || fail "logs -f: stderr $(cat "$tmp/logs-follow.err")"

echo "== stop petreld with SIGTERM"
kill -TERM "$daemon_pid"
set +e
wait "$daemon_pid"
daemon_rc=$?
set -e
daemon_pid=
[ "$daemon_rc" -eq 0 ] || fail "petreld exited with $daemon_rc after SIGTERM"
run ctl get workloads
expect_rc 1 "get after petreld stopped"

echo "PASS: petrelctl"

#!/usr/bin/env bash
# A private containerd for tests: Debian's containerd with its root, state, sockets and
# config under DIR (never /run/containerd, /var/lib/containerd or /opt/containerd, so a
# system containerd is left alone), without CRI (Kubernetes' API, the heaviest plugin)
# and without its debug socket. Its pid is kept in DIR/containerd.pid, so that another
# process (a test that restarts it) can stop it too.
#
# Sourced: containerd_start DIR, containerd_stop DIR, containerd_socket DIR.
# Run: containerd.sh start DIR (a fresh DIR: one left by an earlier run is stopped and
# emptied first; CTest's fixture containerd_daemon, shared by the suites that need a
# containerd), containerd.sh stop DIR (and the tasks left in it killed), containerd.sh
# restart DIR (stops it, starts it again on the same dirs: what a test does to
# containerd under petrel).
#
# containerd 1.6's shims keep their sockets in /run/containerd/s whatever containerd's
# state dir: that much of /run/containerd tasks use.

containerd_socket() { echo "$1/containerd.sock"; }

# containerd_start DIR: starts it (its output appended to DIR/containerd.log) and waits
# up to 10 s for its socket. Returns 1, saying why, when it does not come up.
containerd_start() {
  local dir=$1 socket
  socket=$(containerd_socket "$dir")
  command -v containerd >/dev/null || { echo "no containerd (apt-get install containerd)" >&2; return 1; }
  [ -e "$dir/config.toml" ] || cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$socket"
[ttrpc]
  address = "$socket.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
TOML
  rm -f "$socket"
  containerd --config "$dir/config.toml" --root "$dir/root" --state "$dir/state" \
    --address "$socket" >>"$dir/containerd.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/containerd.pid"
  local _
  for _ in $(seq 100); do
    [ -S "$socket" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "containerd exited: $(tail -5 "$dir/containerd.log")" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "no socket $socket after 10 s: $(tail -5 "$dir/containerd.log")" >&2
  return 1
}

# containerd_stop DIR: SIGTERM, then up to 10 s for it to end (SIGKILL after that,
# and return 1). Returns 0 when none runs.
containerd_stop() {
  local dir=$1 pid _
  pid=$(cat "$dir/containerd.pid" 2>/dev/null) || return 0
  rm -f "$dir/containerd.pid"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null
  echo "containerd $pid did not stop within 10 s of SIGTERM: killed" >&2
  return 1
}

# containerd_kill_shims DIR: kills the shims of the containerd on DIR's socket and
# their tasks (each task's init is a child of its shim; the rest of the task dies with
# it, in its pid namespace), and unmounts what its tasks left mounted below DIR: what a
# stopped containerd leaves running.
containerd_kill_shims() {
  local dir=$1 pid mnt
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $(containerd_socket "$dir")( |$)"); do
    pkill -9 -P "$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  done
  # Innermost first.
  for mnt in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start)
      dir=${2:?usage: containerd.sh start DIR}
      containerd_stop "$dir" || true
      containerd_kill_shims "$dir"
      rm -rf "$dir"
      mkdir -p "$dir"
      containerd_start "$dir"
      ;;
    stop)
      dir=${2:?usage: containerd.sh stop DIR}
      status=0
      containerd_stop "$dir" || status=1
      containerd_kill_shims "$dir"
      exit $status
      ;;
    restart)
      dir=${2:?usage: containerd.sh restart DIR}
      containerd_stop "$dir"
      containerd_start "$dir"
      ;;
    *)
      echo "usage: containerd.sh start|stop|restart DIR" >&2
      exit 2
      ;;
  esac
fi

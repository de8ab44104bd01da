#!/usr/bin/env bash
# A private dockerd for tests (issue 15): Debian's docker.io with its data root, exec
# root, socket, pid file and log under DIR (never /var/lib/docker or /var/run/docker.sock,
# so a system Docker is left alone), without iptables rules or a default bridge, driving
# the containerd on CTD_SOCK (TESTBED.md: CTest's shared one, tests/lib/containerd.sh;
# dockerd keeps its tasks in containerd's namespace "moby", apart from petrel's).
#
# Sourced: dockerd_start DIR CTD_SOCK, dockerd_stop DIR, dockerd_socket DIR.
# Run: dockerd.sh start DIR CTD_SOCK (a fresh DIR: one left by an earlier run is stopped
# and emptied first), dockerd.sh stop DIR (its containers killed first, so none is left
# running in containerd), dockerd.sh restart DIR CTD_SOCK (stops it, starts it again on
# the same dirs: what a test does to dockerd under petrel).

dockerd_socket() { echo "$1/docker.sock"; }

# dockerd_start DIR CTD_SOCK: starts it (its output appended to DIR/dockerd.log) and
# waits up to 30 s for it to answer /_ping. Returns 1, saying why, when it does not.
dockerd_start() {
  local dir=$1 ctd=$2 socket
  socket=$(dockerd_socket "$dir")
  command -v dockerd >/dev/null || { echo "no dockerd (apt-get install docker.io)" >&2; return 1; }
  [ -S "$ctd" ] || { echo "no containerd socket $ctd" >&2; return 1; }
  mkdir -p "$dir/data" "$dir/exec"
  # An empty config file: /etc/docker/daemon.json of the machine is not read.
  [ -e "$dir/daemon.json" ] || echo '{}' >"$dir/daemon.json"
  rm -f "$socket"
  dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" --exec-root "$dir/exec" \
    -H "unix://$socket" --pidfile "$dir/dockerd.pid" --containerd "$ctd" \
    --iptables=false --ip6tables=false --bridge=none >>"$dir/dockerd.log" 2>&1 </dev/null &
  local pid=$!
  local _
  for _ in $(seq 300); do
    if [ -S "$socket" ] && curl -sf --unix-socket "$socket" http://docker/_ping >/dev/null 2>&1; then
      echo "$pid" >"$dir/dockerd.pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "dockerd exited: $(tail -5 "$dir/dockerd.log")" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "dockerd on $socket does not answer after 30 s: $(tail -5 "$dir/dockerd.log")" >&2
  return 1
}

# dockerd_stop DIR: SIGTERM, then up to 20 s for it to end (SIGKILL after that, and
# return 1). Returns 0 when none runs.
dockerd_stop() {
  local dir=$1 pid _
  pid=$(cat "$dir/dockerd.pid" 2>/dev/null) || return 0
  rm -f "$dir/dockerd.pid"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null
  echo "dockerd $pid did not stop within 20 s of SIGTERM: killed" >&2
  return 1
}

# dockerd_remove_containers DIR: force-removes every container of the dockerd on DIR
# (running ones are killed), so that stopping it leaves no task in containerd.
dockerd_remove_containers() {
  local socket id
  socket=$(dockerd_socket "$1")
  [ -S "$socket" ] || return 0
  for id in $(curl -sf --unix-socket "$socket" 'http://docker/containers/json?all=1' 2>/dev/null |
    jq -r '.[].Id' 2>/dev/null); do
    curl -sf --unix-socket "$socket" -X DELETE "http://docker/containers/$id?force=1&v=1" >/dev/null || true
  done
}

# dockerd_unmount DIR: unmounts what dockerd left mounted below DIR (innermost first).
dockerd_unmount() {
  local mnt
  for mnt in $(awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start)
      dir=${2:?usage: dockerd.sh start DIR CTD_SOCK}
      ctd=${3:?usage: dockerd.sh start DIR CTD_SOCK}
      dockerd_remove_containers "$dir"
      dockerd_stop "$dir" || true
      dockerd_unmount "$dir"
      rm -rf "$dir"
      mkdir -p "$dir"
      dockerd_start "$dir" "$ctd"
      ;;
    stop)
      dir=${2:?usage: dockerd.sh stop DIR}
      status=0
      dockerd_remove_containers "$dir"
      dockerd_stop "$dir" || status=1
      dockerd_unmount "$dir"
      exit $status
      ;;
    restart)
      dir=${2:?usage: dockerd.sh restart DIR CTD_SOCK}
      ctd=${3:?usage: dockerd.sh restart DIR CTD_SOCK}
      dockerd_stop "$dir"
      dockerd_start "$dir" "$ctd"
      ;;
    *)
      echo "usage: dockerd.sh start|stop|restart DIR [CTD_SOCK]" >&2
      exit 2
      ;;
  esac
fi

# Shell helpers for the scripts that run a real petreld and drive it with petrelctl.
# Source it after setting $petreld and $ctl (the two programs) and exporting
# PETREL_SOCKET (where petreld listens and petrelctl connects).

# petreld_start LOG [FLAG...]: starts petreld in the background on $PETREL_SOCKET with
# the flags given, its stderr appended to LOG; sets $pid. Returns 0 once petrelctl gets
# an answer, 1 when none came within 10 s.
petreld_start() {
  local log=$1
  shift
  "$petreld" --socket "$PETREL_SOCKET" "$@" 2>>"$log" &
  pid=$!
  for _ in $(seq 100); do "$ctl" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# petreld_stop [WORKLOAD]: deletes WORKLOAD (when given) and waits up to 60 s until it
# is gone with its containers, then stops petreld ($pid) with SIGTERM. For cleanup
# traps: it never fails.
petreld_stop() {
  [ -n "${pid:-}" ] || return 0
  if [ -n "${1:-}" ]; then
    "$ctl" delete workload "$1" >/dev/null 2>&1 || true
    for _ in $(seq 600); do
      "$ctl" get workloads "$1" >/dev/null 2>&1 || break
      sleep 0.1
    done
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

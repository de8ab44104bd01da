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

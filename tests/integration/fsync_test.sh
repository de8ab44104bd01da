#!/usr/bin/env bash
# A file petrel replaces through "<name>.tmp" and a rename survives a power cut only if
# the data is on disk before the rename and the rename is after it (issue 9, section 4):
# runs COMMAND under strace and checks that one of its processes wrote some
# ".../NAME.tmp", fsynced that descriptor, renamed it to ".../NAME", then opened the
# directory and fsynced it. Needs strace.
# Usage: fsync_test.sh NAME COMMAND [ARG...]
set -uo pipefail

name=${1:?usage: $0 NAME COMMAND [ARG...]}
shift
command -v strace >/dev/null || {
  echo "FAIL: strace is not installed (ports/debian/install-deps)" >&2
  exit 1
}
traces=$(mktemp -d /tmp/fsync-test.XXXXXX)
log=$traces/all
trap 'rm -rf "$traces"' EXIT

# LeakSanitizer (the dev preset's ASan) cannot run under ptrace. One file per process
# (-ff): in one shared file, a call that another process interrupts is split into
# "<unfinished ...>" and "<... resumed>" lines, which the check below cannot read.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -ff -qq -o "$traces/t" -e trace=open,openat,fsync,fdatasync,rename,renameat,renameat2 "$@" \
  >/dev/null 2>&1 || {
  echo "FAIL: $* failed under strace" >&2
  exit 1
}
for f in "$traces"/t.*; do
  sed "s/^/${f##*.} /" "$f"
done >"$log"

# Per process: 1 the .tmp opened, 2 its descriptor fsynced, 3 renamed into place, 4 its
# directory fsynced after that.
awk -v name="$name" '
  function ret(line) { sub(/.*= /, "", line); return line + 0 }
  {
    pid = $1
    if ($0 ~ ("open(at)?\\(.*/" name "\\.tmp\", ") && ret($0) >= 0) {
      tmp[pid] = ret($0); state[pid] = 1; dir[pid] = ""
      path[pid] = $0; sub(/\.tmp".*/, "", path[pid]); sub(/.*"/, "", path[pid])
    } else if ($0 ~ /f(data)?sync\(/ && state[pid] == 1 && $2 ~ ("\\(" tmp[pid] "\\)")) {
      state[pid] = 2
    } else if ($0 ~ /rename(at2?)?\(/ && state[pid] == 2 && index($0, path[pid] ".tmp\"") &&
               index($0, path[pid] "\"")) {
      state[pid] = 3
      d = path[pid]; sub(/\/[^\/]*$/, "", d); want[pid] = d
    } else if ($0 ~ /O_DIRECTORY/ && state[pid] == 3 && index($0, "\"" want[pid] "\"") &&
               ret($0) >= 0) {
      dir[pid] = ret($0)
    } else if ($0 ~ /f(data)?sync\(/ && state[pid] == 3 && dir[pid] != "" &&
               $2 ~ ("\\(" dir[pid] "\\)")) {
      print "ok: " path[pid]; found = 1; exit
    }
  }
  END { exit found ? 0 : 1 }
' "$log" && exit 0
echo "FAIL: no process fsynced a $name.tmp, renamed it to $name and fsynced the directory:" >&2
grep -E "/$name(\.tmp)?\"|fsync" "$log" | head -40 >&2
exit 1

#!/usr/bin/env bash
# What petrel writes survives a power cut only if it reaches the disk in the right order
# (issue 9, section 4); and what need not survive should cost no sync. Runs COMMAND under
# strace (one trace per process) and checks one of:
#   file NAME    a process wrote some ".../NAME.tmp", fsynced that descriptor, renamed it
#                to ".../NAME", then opened the directory and fsynced it;
#   image        every rename of an unpacked "<store>/tmp-XXXXXX" into the image store
#                comes after a syncfs by the same process, and there was one at least;
#   nosync REGEX no directory whose path matches REGEX (an extended regular expression)
#                was fsynced: per-container directories are made anew after a power cut.
# Needs strace.
# Usage: sync_test.sh file NAME COMMAND [ARG...]
#        sync_test.sh image COMMAND [ARG...]
#        sync_test.sh nosync REGEX COMMAND [ARG...]
set -uo pipefail

usage="usage: $0 file NAME | image | nosync REGEX, then COMMAND [ARG...]"
mode=${1:?$usage}
shift
case "$mode" in
  file | nosync)
    arg=${1:?$usage}
    shift
    ;;
  image) arg= ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
[ $# -gt 0 ] || {
  echo "$usage" >&2
  exit 2
}
command -v strace >/dev/null || {
  echo "FAIL: strace is not installed (ports/debian/install-deps)" >&2
  exit 1
}
traces=$(mktemp -d /tmp/sync-test.XXXXXX)
log=$traces/all
trap 'rm -rf "$traces"' EXIT

# LeakSanitizer (the dev preset's ASan) cannot run under ptrace. One file per process
# (-ff): in one shared file, a call that another process interrupts is split into
# "<unfinished ...>" and "<... resumed>" lines, which the checks below cannot read.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -ff -qq -o "$traces/t" \
  -e trace=open,openat,mkdir,mkdirat,close,fsync,fdatasync,syncfs,rename,renameat,renameat2 "$@" \
  >/dev/null 2>&1 || {
  echo "FAIL: $* failed under strace" >&2
  exit 1
}
# One log, each line led by its process's pid.
for f in "$traces"/t.*; do
  sed "s/^/${f##*.} /" "$f"
done >"$log"

case "$mode" in
  file)
    # Per process: 1 the .tmp opened, 2 its descriptor fsynced, 3 renamed into place, 4
    # its directory fsynced after that.
    awk -v name="$arg" '
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
    echo "FAIL: no process fsynced a $arg.tmp, renamed it to $arg and fsynced the directory:" >&2
    grep -E "/$arg(\.tmp)?\"|fsync" "$log" | head -40 >&2
    exit 1
    ;;
  image)
    # The same process: syncfs, then the rename. (mawk, Debian's awk, has no {6}.)
    awk '
      /^[0-9]+ syncfs\(/ { if ($0 ~ /= 0$/) synced[$1] = 1; next }
      /^[0-9]+ rename(at2?)?\(.*\/tmp-[A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9]"/ {
        if (synced[$1]) good++; else { print "FAIL: renamed without a syncfs before: " $0; bad++ }
        synced[$1] = 0
      }
      END {
        if (bad) exit 1
        if (!good) { print "FAIL: no image was unpacked and renamed into place"; exit 1 }
        print "ok: " good " unpacked images synced (syncfs) before their rename into the store"
      }
    ' "$log"
    ;;
  nosync)
    # A descriptor is a directory matching REGEX from its open until its close. A
    # directory made in one matching REGEX is what a sync would follow: there must be
    # one, else the run judged nothing.
    awk -v re="$arg" '
      function ret(line) { sub(/.*= /, "", line); return line + 0 }
      {
        pid = $1
        if ($0 ~ /mkdir(at)?\(/ && $0 ~ /= 0$/) {
          p = $0; sub(/^[^"]*"/, "", p); sub(/".*/, "", p); sub(/\/[^\/]*$/, "", p)
          if (p ~ re) made++
        } else if ($0 ~ /open(at)?\(.*O_DIRECTORY/ && ret($0) >= 0) {
          p = $0; sub(/^[^"]*"/, "", p); sub(/".*/, "", p)
          if (p ~ re) open_dir[pid, ret($0)] = p
        } else if ($0 ~ /^[0-9]+ close\(/) {
          fd = $2; sub(/^close\(/, "", fd); sub(/\).*/, "", fd)
          delete open_dir[pid, fd + 0]
        } else if ($0 ~ /f(data)?sync\(/) {
          fd = $2; sub(/^f(data)?sync\(/, "", fd); sub(/\).*/, "", fd)
          if ((pid, fd + 0) in open_dir) { print "FAIL: fsynced " open_dir[pid, fd + 0]; bad++ }
        }
      }
      END {
        if (bad) exit 1
        if (!made) { print "FAIL: no directory was made in one matching " re; exit 1 }
        print "ok: " made " directories made in ones matching " re ", none of those fsynced"
      }
    ' "$log"
    ;;
esac

#!/usr/bin/env bash
# An unpacked image survives a power cut whole (issue 9, section 4): the image store
# unpacks into "<store>/tmp-XXXXXX" and renames it to "<store>/<id>". Runs COMMAND
# under strace and checks that every such rename comes after a syncfs by the same
# process (the tree's files and directories on disk before the name that says the image
# is there), and that there was at least one. Needs strace.
# Usage: image_sync_test.sh COMMAND [ARG...]
set -uo pipefail

command -v strace >/dev/null || {
  echo "FAIL: strace is not installed (ports/debian/install-deps)" >&2
  exit 1
}
traces=$(mktemp -d /tmp/image-sync-test.XXXXXX)
trap 'rm -rf "$traces"' EXIT

# LeakSanitizer cannot run under ptrace; one file per process (-ff), as fsync_test.sh.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -ff -qq -o "$traces/t" \
  -e trace=syncfs,rename,renameat,renameat2 "$@" >/dev/null 2>&1 || {
  echo "FAIL: $* failed under strace" >&2
  exit 1
}
bad=0 good=0
for f in "$traces"/t.*; do
  synced=0
  while IFS= read -r line; do
    case "$line" in
      syncfs\(*) [[ "$line" == *"= 0" ]] && synced=1 ;;
      rename*\"*/tmp-??????\"*)
        if [ "$synced" = 1 ]; then good=$((good + 1)); else
          echo "FAIL: renamed without a syncfs before: $line" >&2
          bad=$((bad + 1))
        fi
        synced=0 ;;
    esac
  done <"$f"
done
[ "$bad" = 0 ] || exit 1
[ "$good" -gt 0 ] || {
  echo "FAIL: no image was unpacked and renamed into place" >&2
  exit 1
}
echo "ok: $good unpacked images synced (syncfs) before their rename into the store"

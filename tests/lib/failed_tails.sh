#!/usr/bin/env bash
# Prints the last lines of the output of each test that failed in the last CTest run
# of a build, so that they are at the end of a long log, and its first FAIL lines.
# Usage: tests/lib/failed_tails.sh BUILD_DIR [LINES]
set -uo pipefail
build=$1
lines=${2:-30}
log="$build/Testing/Temporary/LastTest.log"
failed="$build/Testing/Temporary/LastTestsFailed.log"
[ -f "$failed" ] && [ -f "$log" ] || exit 0
echo
echo "== the end of each failed test's output"
# LastTestsFailed.log: "NUMBER:NAME" a line. LastTest.log: each test's output between
# "<N>/<M> Testing: NAME" and the "Test Passed."/"Test Failed." line after it.
while IFS= read -r entry; do
  name=${entry#*:}
  echo "-- $name"
  awk -v name="$name" '
    index($0, "Testing: " name) && $0 ~ /^[0-9]+\/[0-9]+ Testing: / { on = 1; n = 0; next }
    on && /^"?.*"? end time:|^Test (Passed|Failed)\.|^<end of output>/ { on = 0 }
    on { buf[n++ % 4096] = $0 }
    on && /^FAIL/ && nfail < 3 { fails[nfail++] = $0 }
    END {
      start = n > keep ? n - keep : 0
      for (i = start; i < n; i++) print buf[i % 4096]
      # A report after the failure may push its reason out of the tail: said again.
      for (i = 0; i < nfail; i++) print "(its failure) " fails[i]
    }
  ' keep="$lines" "$log" >"$build/Testing/Temporary/tail.txt"
  if [ -s "$build/Testing/Temporary/tail.txt" ]; then
    cat "$build/Testing/Temporary/tail.txt"
  else  # say why, so that a layout this script does not know is seen
    echo "(no output of $name found in $log; its lines there:)"
    grep -n -F -- "$name" "$log" | head -n 5
  fi
done < "$failed"

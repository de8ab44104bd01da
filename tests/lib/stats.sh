# shellcheck shell=bash
# Figures for the benchmark scripts' tables (tests/bench/*.sh).
#
#   percentile P VALUE...   the nearest-rank P-th percentile of the integers given
#                           (P 50: the median, 100: the largest); nothing when none given

percentile() {
  local p=$1
  shift
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | sort -n | awk -v p="$p" '{ v[NR] = $1 } END {
    r = int((p * NR + 99) / 100); if (r < 1) r = 1; print v[r] }'
}

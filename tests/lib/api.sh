# Shell helpers for scripts that talk to petreld's API with curl. Source it after
# setting $sock (petreld's socket) and $work (the script's scratch directory, where
# petreld logs to petreld.log).

# fail MESSAGE...: says why, shows petreld's log, and ends the script with 1.
fail() {
  echo "FAIL: $*" >&2
  if [ -f "$work/petreld.log" ]; then
    echo "--- petreld's log:" >&2
    cat "$work/petreld.log" >&2
  fi
  exit 1
}
step() { echo "== $*"; }

# api METHOD PATH [curl args...]: the body in $work/body, the status in $code.
api() {
  local method=$1 path=$2
  shift 2
  code=$(curl -sS --unix-socket "$sock" -X "$method" -o "$work/body" -w '%{http_code}' \
           "$@" "http://petrel$path") || fail "curl $method $path failed"
}
expect() {  # expect CODE SUBSTRING...: checks the last answer
  local want=$1
  shift
  [ "$code" = "$want" ] || fail "expected HTTP $want, got $code: $(cat "$work/body")"
  for s in "$@"; do
    grep -qF -- "$s" "$work/body" || fail "answer lacks $s: $(cat "$work/body")"
  done
}

#!/usr/bin/env bash
# Registry credentials and transport (issue 12), on crun, against Debian's
# docker-registry:
#  - over HTTPS with a test CA made here (petreld --registry-ca) and auth: htpasswd
#    (bcrypt, apache2-utils' htpasswd), pulled with credentials from a Docker
#    config.json (--registry-auth), inline or from a credential helper (credsStore), a
#    helper not installed failing the pull with its name; without the CA a TLS error
#    names the host; a wrong
#    password and no credentials give their clear errors and nothing runs; no password
#    is ever in petreld's log or a replica's message;
#  - a bad config.json or CA bundle: petreld refuses to start with one line naming it;
#  - a token server that wants credentials (basic auth to the realm of the registry's
#    Bearer challenge): a wrong password is refused, the right one pulls; an identity
#    token (config.json's "identitytoken", a helper's "<token>") is posted to the realm
#    as OAuth2's refresh grant and pulls, a wrong one is refused with its own message;
#  - a registry on this machine's non-loopback address over plain HTTP: refused without
#    --insecure-registry, pulled with it; credentials are not sent to it over HTTP;
#  - credentials do not follow a redirect to another host (a front of the test's own
#    wants basic auth and redirects blobs to localhost, where a request carrying an
#    Authorization header fails the test).
#   registry_auth_test.sh PETRELD PETRELCTL
set -euo pipefail
petreld=${1:?usage: registry_auth_test.sh PETRELD PETRELCTL}
ctl=${2:?}
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/petrel-registry-auth-test.XXXXXX)
chmod 0755 "$dir"
state=$dir/state
export PETREL_SOCKET=$dir/petrel.sock
pid=""
registry_pid=""
front_pid=""

fail() {
  echo "FAIL: $*" >&2
  echo "--- petreld log (last 40 lines)" >&2
  tail -n 40 "$dir"/petreld.log >&2 || true
  exit 1
}
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  runtime_cleanup crun "$state" "$dir"
  [ -n "$front_pid" ] && kill "$front_pid" 2>/dev/null || true
  registry_stop
  rm -rf "$dir"
}
trap cleanup EXIT

# shellcheck source=tests/lib/petreld.sh
. "$src/tests/lib/petreld.sh"
# shellcheck source=tests/lib/registry.sh
. "$src/tests/lib/registry.sh"

for tool in htpasswd openssl socat jq crun; do
  command -v "$tool" >/dev/null || fail "no $tool (ports/debian/install-deps)"
done

# restart_petreld FLAG...: (re)starts petreld on the same state dir with these flags.
restart_petreld() {
  echo "[${SECONDS}s] petreld $*"
  petreld_stop
  log_from=$(($(stat -c %s "$dir/petreld.log" 2>/dev/null || echo 0) + 1))
  petreld_start "$dir/petreld.log" --runtime crun --state-dir "$state" --node-name auth \
    --log-level debug "$@" || fail "petreld did not answer"
}
# says WORKLOAD TEXT: the replica's message holds TEXT.
says() { message_of "$1" | grep -qF -- "$2"; }
# logged WORKLOAD TEXT: since its last start, petreld logged a failed pull of WORKLOAD
# with TEXT in its message (the replica's message while it backs off).
logged() { tail -c "+$log_from" "$dir/petreld.log" | grep -F -- "$1 Failed: " | grep -qF -- "$2"; }
# expect_error WORKLOAD TEXT [retried]: petreld logs a failed pull with TEXT, the
# replica's message shows it (unless `retried`: such a pull takes its 3 attempts and
# shows the message only in the short back-off between pulls), and no container runs.
expect_error() {
  wait_for 60 logged "$1" "$2" || fail "$1: no \"$2\" in petreld's log: $(message_of "$1")"
  if [ -z "${3:-}" ]; then
    wait_for 30 says "$1" "$2" || fail "$1: no \"$2\" in: $(phase_of "$1") $(message_of "$1")"
  fi
  ! running "$1" || fail "$1 runs"
  [ -z "$(crun --root "$state/oci/runtime" list -q 2>/dev/null)" ] || fail "a container runs"
  echo "ok: $1: ...$2..."
}
# auth_file FILE REGISTRY USER:PASSWORD...: a Docker config.json with these entries.
auth_file() {
  local file=$1 entries=""
  shift
  while [ $# -gt 1 ]; do
    entries+="${entries:+,}\"$1\": {\"auth\": \"$(printf '%s' "$2" | base64 -w0)\"}"
    shift 2
  done
  echo "{\"auths\": {$entries}}" >"$file"
}
remove() {
  "$ctl" delete workload "$1" >/dev/null || fail "delete $1"
  wait_for 60 petreld_gone "$1" || fail "$1 not gone"
}
no_secret_anywhere() {
  ! grep -rqF -e s3cret -e wr0ng -e t0ken -e r3fresh "$dir/petreld.log" ||
    fail "a password or token in petreld's log"
}

# A non-loopback address of this machine: petrel reaches loopback registries over plain
# HTTP, so the HTTPS registry and the insecure one listen here.
addr=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n1)
[ -n "$addr" ] || fail "no non-loopback IPv4 address to bind the test registries to"

# --- Test image, CA, server certificate, htpasswd.
if [ -n "${PETREL_TEST_IMAGE:-}" ]; then
  cp "${PETREL_TEST_IMAGE#oci-archive:}" "$dir/busybox.tar"
else
  "$src/examples/images/make-busybox-image" "$dir/busybox.tar" >/dev/null
fi
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 \
  -subj /CN=petrel-test-ca -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1 || fail "openssl: no CA"
openssl req "${ec[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=$addr" \
  >/dev/null 2>&1 || fail "openssl: no server key"
printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$addr" \
  >"$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
  -CAcreateserial -out "$dir/server.pem" -days 2 -extfile "$dir/server.ext" >/dev/null 2>&1 ||
  fail "openssl: no server certificate"
htpasswd -Bbc "$dir/htpasswd" alice s3cret >/dev/null 2>&1 || fail "htpasswd failed"
grep -q '^alice:\$2y\$' "$dir/htpasswd" || fail "htpasswd wrote no bcrypt hash"

# --- HTTPS with a test CA and htpasswd (basic auth).
registry_tls="$dir/server.pem $dir/server.key"
registry_auth="auth: {htpasswd: {realm: petrel-test, path: $dir/htpasswd}}"
registry_addr=$addr registry_start "$dir/registry"
registry_tls=""
registry_auth=""
echo "registry on https://$registry (htpasswd)"
registry_push "oci-archive:$dir/busybox.tar" private:1 --dest-creds alice:s3cret
[ "$(curl -s --cacert "$dir/ca.pem" -o /dev/null -w '%{http_code}' "https://$registry/v2/private/manifests/1")" = 401 ] ||
  fail "the registry answers without credentials"
auth_file "$dir/good.json" "$registry" alice:s3cret
auth_file "$dir/wrong.json" "https://$registry/v2/" alice:wr0ng
auth_file "$dir/other.json" ghcr.io someone:else

# A bad config.json or CA bundle: petreld does not start, and says why in one line.
echo '{"auths": {"ghcr.io": {"auth": "not base64!"}}}' >"$dir/bad.json"
echo '{"auths": {"ghcr.io": {"password": "s3cret" oops}}}' >"$dir/badjson.json"
# refuses FLAG FILE TEXT: petreld with FLAG FILE does not start and prints one line
# naming FILE and holding TEXT, without the password.
refuses() {
  if timeout 20 "$petreld" --socket "$PETREL_SOCKET" --runtime crun --state-dir "$state" \
    "$1" "$2" >"$dir/refused.out" 2>&1; then
    fail "petreld started with $1 $2"
  fi
  [ "$(wc -l <"$dir/refused.out")" = 1 ] || fail "not one line for $1 $2: $(cat "$dir/refused.out")"
  grep -qF "$2" "$dir/refused.out" || fail "$2 is not named: $(cat "$dir/refused.out")"
  grep -qF "$3" "$dir/refused.out" || fail "no \"$3\" in: $(cat "$dir/refused.out")"
  ! grep -qF s3cret "$dir/refused.out" || fail "the password is shown: $(cat "$dir/refused.out")"
  echo "ok: petreld refuses $1: $(cat "$dir/refused.out")"
}
refuses --registry-auth "$dir/bad.json" 'auths["ghcr.io"]: "auth" is not base64 of USER:PASSWORD'
refuses --registry-auth "$dir/badjson.json" "invalid JSON at byte"
refuses --registry-auth "$dir/missing.json" "No such file"
refuses --registry-ca "$dir/bad.json" "no PEM certificate in it"
out=$("$petreld" --runtime crun --insecure-registry 'http://x/' 2>&1 || true)
grep -qF 'insecure-registry "http://x/" is not HOST[:PORT]' <<<"$out" || fail "--insecure-registry took a URL: $out"

# Without the CA: a TLS error naming the registry.
restart_petreld --registry-auth "$dir/good.json"
apply_sleeper priv "$registry/private:1" up
expect_error priv "https://$registry/v2/private/manifests/1: SSL certificate problem" retried
# A wrong password.
restart_petreld --registry-ca "$dir/ca.pem" --registry-auth "$dir/wrong.json"
expect_error priv "registry $registry refused the credentials of alice (401 from https://$registry/v2/private/manifests/1"
# No credentials at all, and none for this registry.
restart_petreld --registry-ca "$dir/ca.pem"
expect_error priv "registry $registry wants credentials and none are configured"
restart_petreld --registry-ca "$dir/ca.pem" --registry-auth "$dir/other.json"
expect_error priv "registry $registry wants credentials and $dir/other.json has none for it (auths[\"$registry\"])"
# The right ones.
restart_petreld --registry-ca "$dir/ca.pem" --registry-auth "$dir/good.json"
wait_for 60 running priv || fail "priv not Running: $(phase_of priv) $(message_of priv)"
echo "ok: https://$registry/private:1 pulled with basic auth, the CA from --registry-ca"
remove priv

# A credential helper, as `docker login` with a store leaves config.json: an empty entry
# and "credsStore"; docker-credential-petreltest, on petreld's PATH, answers for this
# registry only (the server it is given on stdin). Then a credHelpers helper that is
# not installed: the pull fails naming it and the file.
mkdir -p "$dir/helpers"
cat >"$dir/helpers/docker-credential-petreltest" <<HELPER
#!/bin/sh
read -r server
if [ "\$1" = get ] && [ "\$server" = "$registry" ]; then
  echo '{"ServerURL":"$registry","Username":"alice","Secret":"s3cret"}'
else
  echo "credentials not found in native keychain"
  exit 1
fi
HELPER
chmod 755 "$dir/helpers/docker-credential-petreltest"
echo "{\"auths\": {\"$registry\": {}}, \"credsStore\": \"petreltest\"}" >"$dir/store.json"
echo "{\"credHelpers\": {\"$registry\": \"missing\"}}" >"$dir/nohelper.json"
saved_path=$PATH
export PATH="$dir/helpers:$PATH"
restart_petreld --registry-ca "$dir/ca.pem" --registry-auth "$dir/store.json"
apply_sleeper viahelper "$registry/private:1" up
wait_for 60 running viahelper || fail "viahelper not Running: $(phase_of viahelper) $(message_of viahelper)"
echo "ok: https://$registry/private:1 pulled with credentials from a credsStore helper"
remove viahelper
"$ctl" delete image "$registry/private:1" >/dev/null || fail "delete image $registry/private:1"
restart_petreld --registry-ca "$dir/ca.pem" --registry-auth "$dir/nohelper.json"
apply_sleeper nohelp "$registry/private:1" up
expect_error nohelp "credential helper docker-credential-missing ($dir/nohelper.json) for $registry"
remove nohelp
export PATH=$saved_path
registry_stop

# --- A token server that wants credentials, or an identity token.
token_creds=bob:t0ken token_refresh=r3fresh registry_start_token "$dir/token-registry"
echo "token registry on $registry"
registry_push "oci-archive:$dir/busybox.tar" private:1 --dest-creds bob:t0ken
auth_file "$dir/tok-wrong.json" "$registry" bob:wr0ng
auth_file "$dir/tok-good.json" "$registry" bob:t0ken
restart_petreld --registry-auth "$dir/tok-wrong.json"
apply_sleeper tok "$registry/private:1" up
expect_error tok "registry $registry refused the credentials of bob (token: 401 from http://127.0.0.1:"
restart_petreld
expect_error tok "registry $registry wants credentials and none are configured"
restart_petreld --registry-auth "$dir/tok-good.json"
wait_for 60 running tok || fail "tok not Running: $(phase_of tok) $(message_of tok)"
echo "ok: $registry/private:1 pulled with a token its realm gave for credentials"
remove tok
# A token for the credentials that does not open the repository (the token server's
# tokens are for "private" only).
apply_sleeper other "$registry/other:1" up
expect_error other "registry $registry gives bob no access to other: it does not exist, or may not be pulled by them (401 from http://$registry/v2/other/manifests/1"
remove other
# Identity tokens, as `docker login` to an OAuth registry leaves them: "auth" of "bob:"
# and "identitytoken"; then the same from a helper that answers Username "<token>".
# Each pull is of a tag not pulled yet, so its manifest needs a token.
registry_push "oci-archive:$dir/busybox.tar" private:2 --dest-creds bob:t0ken
registry_push "oci-archive:$dir/busybox.tar" private:3 --dest-creds bob:t0ken
idtoken_file() {
  echo "{\"auths\": {\"$registry\": {\"auth\": \"$(printf 'bob:' | base64 -w0)\", \"identitytoken\": \"$2\"}}}" >"$1"
}
idtoken_file "$dir/idtok-wrong.json" wr0ng-refresh
idtoken_file "$dir/idtok-good.json" r3fresh
restart_petreld --registry-auth "$dir/idtok-wrong.json"
apply_sleeper idtok "$registry/private:2" up
expect_error idtok "registry $registry refused the identity token (from $dir/idtok-wrong.json) (token: 400 from http://127.0.0.1:"
restart_petreld --registry-auth "$dir/idtok-good.json"
wait_for 60 running idtok || fail "idtok not Running: $(phase_of idtok) $(message_of idtok)"
grep -q "^POST grant_type=refresh_token&client_id=petrel&refresh_token=r3fresh&scope=repository%3Aprivate%3Apull&service=petrel-registry$" \
  "$dir/token-registry/token-requests" || fail "no refresh grant posted: $(cat "$dir/token-registry/token-requests")"
echo "ok: $registry/private:2 pulled with a token its realm gave for an identity token"
remove idtok
cat >"$dir/helpers/docker-credential-idtoken" <<'HELPER'
#!/bin/sh
read -r server
echo '{"Username":"<token>","Secret":"r3fresh"}'
HELPER
chmod 755 "$dir/helpers/docker-credential-idtoken"
echo "{\"credsStore\": \"idtoken\"}" >"$dir/idtok-helper.json"
export PATH="$dir/helpers:$PATH"
restart_petreld --registry-auth "$dir/idtok-helper.json"
export PATH=$saved_path
apply_sleeper idhelper "$registry/private:3" up
wait_for 60 running idhelper || fail "idhelper not Running: $(phase_of idhelper) $(message_of idhelper)"
echo "ok: $registry/private:3 pulled with an identity token from a credential helper"
remove idhelper
registry_stop

# --- A registry on this machine's non-loopback address, plain HTTP.
registry_addr=$addr registry_start "$dir/far-registry"
echo "insecure registry on http://$registry"
registry_push "oci-archive:$dir/busybox.tar" busybox:1
restart_petreld
apply_sleeper far "$registry/busybox:1" up
expect_error far "https://$registry/v2/busybox/manifests/1:" retried
restart_petreld --insecure-registry "$registry"
wait_for 60 running far || fail "far not Running: $(phase_of far) $(message_of far)"
echo "ok: http://$registry/busybox:1 pulled with --insecure-registry"
remove far
registry_stop
# The same with htpasswd: the credentials are not sent over plain HTTP.
registry_addr=$addr registry_auth="auth: {htpasswd: {realm: petrel-test, path: $dir/htpasswd}}" \
  registry_start "$dir/far-auth-registry"
auth_file "$dir/far.json" "$registry" alice:s3cret
restart_petreld --insecure-registry "$registry" --registry-auth "$dir/far.json"
apply_sleeper farauth "$registry/busybox:2" up  # not the image pulled above, which is kept
expect_error farauth "the credentials for registry $registry are not sent over plain HTTP to $addr"
remove farauth
registry_stop

# --- Credentials do not follow a redirect to another host: a front on 127.0.0.1 that
# wants basic auth serves the manifest and redirects blobs to localhost (same port);
# there, a request with an Authorization header is recorded as a leak and refused.
mkdir -p "$dir/oci"
tar -C "$dir/oci" -xf "$dir/busybox.tar"
mdigest=$(jq -r '.manifests[0].digest' "$dir/oci/index.json")
mtype=$(jq -r '.manifests[0].mediaType' "$dir/oci/index.json")
for fport in $(seq $((45000 + $$ % 15000)) $((45099 + $$ % 15000))); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$fport") 2>/dev/null; then break; fi
done
cat >"$dir/front.sh" <<SH
#!/bin/sh
cr=\$(printf '\\r')
read -r method path _
auth=""
host=""
while IFS= read -r line; do
  line=\${line%\$cr}
  [ -z "\$line" ] && break
  case "\$line" in
    [Aa]uthorization:*) auth=\$line ;;
    [Hh]ost:*) host=\${line#*: } ;;
  esac
done
echo "\$host \$path \${auth:+with-auth}" >>$dir/front.log
answer() { printf 'HTTP/1.1 %s\r\nContent-Length: %s\r\nConnection: close\r\n%b\r\n' "\$1" "\$2" "\$3"; }
case "\$host\$path" in
  127.0.0.1:*/v2/*)
    if [ "\$auth" != "Authorization: Basic $(printf alice:s3cret | base64 -w0)" ]; then
      answer "401 Unauthorized" 0 'WWW-Authenticate: Basic realm="front"\r\n'
    elif [ "\${path##*/}" = 1 ]; then
      answer "200 OK" \$(stat -c %s $dir/oci/blobs/sha256/${mdigest#sha256:}) 'Content-Type: $mtype\r\n'
      cat $dir/oci/blobs/sha256/${mdigest#sha256:}
    else
      answer "307 Temporary Redirect" 0 "Location: http://localhost:$fport/storage/\${path##*:}\r\n"
    fi ;;
  localhost:*/storage/*)
    if [ -n "\$auth" ]; then
      echo "\$path" >>$dir/leaked
      answer "403 Forbidden" 0 ""
    else
      answer "200 OK" \$(stat -c %s "$dir/oci/blobs/sha256/\${path##*/}") ""
      cat "$dir/oci/blobs/sha256/\${path##*/}"
    fi ;;
  *) answer "404 Not Found" 0 "" ;;
esac
SH
socat "TCP-LISTEN:$fport,bind=127.0.0.1,reuseaddr,fork" EXEC:"sh $dir/front.sh" 2>>"$dir/front.err" &
front_pid=$!
wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$fport/" || fail "the front does not answer"
# The front sees a leak when there is one: curl told to send credentials everywhere.
curl -s -o /dev/null --location-trusted -u alice:s3cret \
  "http://127.0.0.1:$fport/v2/front/app/blobs/$(jq -r '.config.digest' "$dir/oci/blobs/sha256/${mdigest#sha256:}")" || true
[ -s "$dir/leaked" ] || fail "the front did not see credentials sent after a redirect"
rm -f "$dir/leaked" "$dir/front.log"
auth_file "$dir/front.json" "127.0.0.1:$fport" alice:s3cret
petreld_stop
state=$dir/state-front  # an empty store: its blobs are fetched, not found in the cache
restart_petreld --registry-auth "$dir/front.json"
apply_sleeper redir "127.0.0.1:$fport/front/app:1" up  # a name no registry above had
wait_for 60 running redir || fail "redir not Running: $(phase_of redir) $(message_of redir) $(cat "$dir/front.log")"
[ ! -e "$dir/leaked" ] || fail "credentials went to another host after a redirect: $(cat "$dir/leaked")"
grep -q "^localhost:$fport /storage/" "$dir/front.log" || fail "no blob came through the redirect"
echo "ok: blobs redirected to another host were fetched without the credentials"
remove redir

no_secret_anywhere
petreld_stop
echo "PASS"

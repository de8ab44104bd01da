# Shell helpers for tests that pull from a real registry: Debian's docker-registry on
# 127.0.0.1 (a free port, a storage dir and config of its own), images pushed into it
# with skopeo, no Docker. Source it after defining fail() (prints and exits).

# registry_start DIR: starts docker-registry with its storage in DIR/data, config in
# DIR/config.yml and log in DIR/registry.log; sets $registry_pid and $registry
# (127.0.0.1:PORT). Fails unless /v2/ answers within 10 s.
registry_start() {
  local rdir=$1 port
  command -v docker-registry >/dev/null || fail "no docker-registry (apt-get install docker-registry)"
  command -v skopeo >/dev/null || fail "no skopeo (apt-get install skopeo)"
  registry_dir=$rdir
  mkdir -p "$rdir/data"
  for port in $(seq $((30000 + $$ % 20000)) $((30099 + $$ % 20000))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  done
  cat >"$rdir/config.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $rdir/data}
http: {addr: "127.0.0.1:$port"}
${registry_auth:-}
YAML
  docker-registry serve "$rdir/config.yml" >>"$rdir/registry.log" 2>&1 &
  registry_pid=$!
  registry=127.0.0.1:$port
  local _
  for _ in $(seq 100); do
    # 200, or 401 from a registry that wants tokens: it answers.
    case "$(curl -s -o /dev/null -w '%{http_code}' "http://$registry/v2/")" in 200|401) return 0 ;; esac
    kill -0 "$registry_pid" 2>/dev/null || break
    sleep 0.1
  done
  fail "docker-registry on $registry did not answer: $(cat "$rdir/registry.log")"
}

# registry_stop: stops the registry registry_start started (never fails).
registry_stop() {
  [ -n "${token_pid:-}" ] && kill "$token_pid" 2>/dev/null
  token_pid=""
  [ -n "${registry_pid:-}" ] || return 0
  kill "$registry_pid" 2>/dev/null || true
  wait "$registry_pid" 2>/dev/null || true
  registry_pid=""
}

# registry_push SOURCE NAME:TAG [skopeo copy flags]: pushes SOURCE (a skopeo source:
# oci-archive:F, oci:DIR) to the registry.
registry_push() {
  local source=$1 dest=$2
  shift 2
  skopeo copy -q --dest-tls-verify=false "$@" "$source" "docker://$registry/$dest" >/dev/null ||
    fail "skopeo could not push $source to $registry/$dest"
}

# registry_blob_file DIGEST: where the registry stores the blob DIGEST (sha256:<hex>).
registry_blob_file() {
  local hex=${1#sha256:}
  echo "$registry_dir/data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
}

# registry_manifest NAME:TAG: the manifest as the registry serves it (OCI or Docker types).
registry_manifest() {
  curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "http://$registry/v2/${1%%:*}/manifests/${1#*:}"
}

# registry_start_token DIR: like registry_start, but the registry wants Bearer tokens
# (auth: token) from a small token server of the test's own on another free port: socat
# answering every request with one RS256 JWT, signed by a key made here, that lets
# anyone pull and push the repository "private" for an hour. Sets $registry_pid, $registry and
# $token_pid. REQUIRES: registry_start's variables are free (one registry at a time per
# shell), openssl and socat.
registry_start_token() {
  local rdir=$1 tport now header claims signing sig token
  mkdir -p "$rdir"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$rdir/key.pem" -out "$rdir/cert.pem" \
    -days 2 -subj /CN=petrel-test-token >/dev/null 2>&1 || fail "openssl could not make a key"
  b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
  now=$(date +%s)
  header=$(printf '{"alg":"RS256","typ":"JWT","x5c":["%s"]}' \
    "$(openssl x509 -in "$rdir/cert.pem" -outform DER | openssl base64 -A)" | b64url)
  claims=$(printf '{"iss":"petrel-test","sub":"","aud":"petrel-registry","exp":%s,"nbf":%s,"iat":%s,"jti":"%s","access":[{"type":"repository","name":"private","actions":["pull","push"]}]}' \
    $((now + 3600)) $((now - 60)) $((now - 60)) "$$" | b64url)
  signing="$header.$claims"
  sig=$(printf '%s' "$signing" | openssl dgst -sha256 -sign "$rdir/key.pem" | b64url)
  token="$signing.$sig"
  printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    $((${#token} + 12)) "{\"token\":\"$token\"}" >"$rdir/token.http"
  # Reads the request up to its blank line, then answers.
  printf '#!/bin/sh\nwhile IFS= read -r line; do [ "$line" = "$(printf "\\r")" ] && break; [ -z "$line" ] && break; done\ncat %s\n' \
    "$rdir/token.http" >"$rdir/token-server.sh"
  for tport in $(seq $((40000 + $$ % 20000)) $((40099 + $$ % 20000))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$tport") 2>/dev/null; then break; fi
  done
  socat "TCP-LISTEN:$tport,bind=127.0.0.1,reuseaddr,fork" EXEC:"sh $rdir/token-server.sh" \
    2>>"$rdir/token.log" &
  token_pid=$!
  registry_auth="auth: {token: {realm: \"http://127.0.0.1:$tport/token\", service: petrel-registry, issuer: petrel-test, rootcertbundle: $rdir/cert.pem}}"
  registry_start "$rdir"
  registry_auth=""
}

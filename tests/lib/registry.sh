# Shell helpers for tests that pull from a real registry: Debian's docker-registry on
# 127.0.0.1 (a free port, a storage dir and config of its own), images pushed into it
# with skopeo, no Docker. Source it after defining fail() (prints and exits).

# registry_start DIR: starts docker-registry with its storage in DIR/data, config in
# DIR/config.yml and log in DIR/registry.log; sets $registry_pid and $registry
# (127.0.0.1:PORT). Fails unless /v2/ answers within 10 s. Optional variables:
# $registry_addr, the address to listen on (default 127.0.0.1); $registry_tls, "CERT
# KEY" to serve HTTPS; $registry_auth, an auth: line of the registry's config.
registry_start() {
  local rdir=$1 port addr=${registry_addr:-127.0.0.1} scheme=http tls=""
  command -v docker-registry >/dev/null || fail "no docker-registry (apt-get install docker-registry)"
  command -v skopeo >/dev/null || fail "no skopeo (apt-get install skopeo)"
  registry_dir=$rdir
  mkdir -p "$rdir/data"
  for port in $(seq $((30000 + $$ % 20000)) $((30099 + $$ % 20000))); do
    if ! (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then break; fi
  done
  if [ -n "${registry_tls:-}" ]; then
    scheme=https
    tls=", tls: {certificate: ${registry_tls% *}, key: ${registry_tls#* }}"
  fi
  cat >"$rdir/config.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $rdir/data}
http: {addr: "$addr:$port"$tls}
${registry_auth:-}
YAML
  docker-registry serve "$rdir/config.yml" >>"$rdir/registry.log" 2>&1 &
  registry_pid=$!
  registry=$addr:$port
  local _
  for _ in $(seq 100); do
    # 200, or 401 from a registry that wants tokens: it answers.
    case "$(curl -sk -o /dev/null -w '%{http_code}' "$scheme://$registry/v2/")" in 200|401) return 0 ;; esac
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
# $token_pid. With $token_creds (USER:PASSWORD) set, the token server answers 401 with a
# Basic challenge unless the request has them as HTTP basic auth. With $token_refresh
# set, it also gives the token for a POST of OAuth2's refresh grant with that refresh
# (identity) token, as Docker sends it, and answers any other POST 400 invalid_grant;
# every request is logged to DIR/token-requests ("METHOD BODY"). REQUIRES:
# registry_start's variables are free (one registry at a time per shell), openssl and socat.
registry_start_token() {
  local rdir=$1 tport now header claims signing sig token want=""
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
  printf 'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="petrel-test-token"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' \
    >"$rdir/token-401.http"
  printf 'HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 25\r\nConnection: close\r\n\r\n{"error":"invalid_grant"}' \
    >"$rdir/token-400.http"
  [ -n "${token_creds:-}" ] && want="Authorization: Basic $(printf '%s' "$token_creds" | openssl base64 -A)"
  # Reads the request up to its blank line (and a POST's body), then answers.
  cat >"$rdir/token-server.sh" <<SH
#!/bin/sh
ok=${want:+no}
cr=\$(printf '\\r')
read -r method _
len=0
while IFS= read -r line; do
  line=\${line%\$cr}
  [ -z "\$line" ] && break
  [ "\$line" = "$want" ] && ok=yes
  case "\$line" in [Cc]ontent-[Ll]ength:*) len=\${line#*: } ;; esac
done
body=""
[ "\$method" = POST ] && body=\$(head -c "\$len")
echo "\$method \$body" >>$rdir/token-requests
if [ "\$method" = POST ]; then
  ok=bad
  case "&\$body&" in
    *"&grant_type=refresh_token&"*)
      case "&\$body&" in *"&refresh_token=${token_refresh:-}&"*) [ -n "${token_refresh:-}" ] && ok=yes ;; esac ;;
  esac
fi
case "\$ok" in
  no) cat $rdir/token-401.http ;;
  bad) cat $rdir/token-400.http ;;
  *) cat $rdir/token.http ;;
esac
SH
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

# registry_cutting_proxy BYTES DIR: a proxy on a free loopback port that passes each
# connection to the registry and cuts it after exactly BYTES of the registry's answer
# (its script is DIR/cut.sh). Sets $proxy_pid and $proxy (127.0.0.1:PORT); fails unless
# it listens within 10 s. head -c, not dd: dd's count counts reads, and reads from a pipe
# come short (a 5 MiB cut passed 1 MiB). stdbuf -o0, so that a small answer (a manifest)
# is passed on at once, not held in head's stdio buffer. A script: socat would take the
# colons of an inline command for its own. A port another test took between the look
# and the bind makes socat exit: the next port is tried.
registry_cutting_proxy() {
  local bytes=$1 pdir=$2 pport _
  printf '#!/bin/sh\nsocat - "TCP:%s" | stdbuf -o0 head -c %s\n' "$registry" "$bytes" >"$pdir/cut.sh"
  for pport in $(seq $((50000 + $$ % 10000)) $((50099 + $$ % 10000))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$pport") 2>/dev/null; then continue; fi
    socat "TCP-LISTEN:$pport,bind=127.0.0.1,reuseaddr,fork" EXEC:"sh $pdir/cut.sh" \
      2>"$pdir/socat.log" &
    proxy_pid=$!
    proxy=127.0.0.1:$pport
    # socat listens a moment after it forks: a request sent sooner is refused.
    for _ in $(seq 100); do
      kill -0 "$proxy_pid" 2>/dev/null || break
      (exec 3<>"/dev/tcp/127.0.0.1/$pport") 2>/dev/null && return 0
      sleep 0.1
    done
    kill -0 "$proxy_pid" 2>/dev/null || continue
    fail "the cutting proxy is not listening on $proxy: $(cat "$pdir/socat.log")"
  done
  fail "no free port for the cutting proxy: $(cat "$pdir/socat.log" 2>/dev/null)"
}

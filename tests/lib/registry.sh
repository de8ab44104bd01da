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
YAML
  docker-registry serve "$rdir/config.yml" >>"$rdir/registry.log" 2>&1 &
  registry_pid=$!
  registry=127.0.0.1:$port
  local _
  for _ in $(seq 100); do
    curl -sf "http://$registry/v2/" >/dev/null && return 0
    kill -0 "$registry_pid" 2>/dev/null || break
    sleep 0.1
  done
  fail "docker-registry on $registry did not answer: $(cat "$rdir/registry.log")"
}

# registry_stop: stops the registry registry_start started (never fails).
registry_stop() {
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

#!/usr/bin/env bash
# Builds programs against an installed petrel with nothing but pkg-config and c++, as
# the README's Embedding section tells users to: examples/embed/main.cpp through
# petrel-testing, examples/embed/cluster_main.cpp through petrel-cluster (and
# petrel-testing, for its fake runtime), and programs calling petrel::NewCrunRuntime
# through petrel-crun, petrel::NewDockerRuntime through petrel-docker and
# petrel::NewContainerdRuntime through petrel-containerd. Each is linked twice, with
# `pkg-config --cflags --libs` and with `pkg-config --static --cflags --libs`. The
# runtime programs are run (they need no root and no daemon: each checks that a
# missing state_dir is refused), and so is the cluster one: it inits a
# one-node cluster on a free port of 127.0.0.1 (raft, mutual TLS) and prints the
# token's prefix.
# Promises: prints every link line; fails on the first program that does not compile,
# link or run, naming the package and the mode; leaves nothing behind.
# Usage: tests/install/pkgconfig_link_test.sh PREFIX   (PREFIX: cmake --install's --prefix)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
prefix=${1:?usage: pkgconfig_link_test.sh PREFIX}
die() { echo "pkgconfig_link_test: $*" >&2; exit 1; }

pc=$(find "$prefix" -path '*/pkgconfig/petrel.pc' 2>/dev/null | head -n1 || true)
[ -n "$pc" ] || die "no pkgconfig/petrel.pc under $prefix (cmake --install first)"
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH

tmp=$(mktemp -d /tmp/petrel-link.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/crun.cpp" <<'CPP'
#include <petrel/crun.h>
#include <cstdio>
int main() {  // no state_dir: must be refused with a clear error
  auto r = petrel::NewCrunRuntime(petrel::CrunOptions{});
  std::puts(r.status().ToString().c_str());
  return r.ok() ? 1 : 0;
}
CPP
cat >"$tmp/docker.cpp" <<'CPP'
#include <petrel/docker.h>
#include <cstdio>
int main() {  // no state_dir: must be refused before dockerd is asked
  auto r = petrel::NewDockerRuntime(petrel::DockerOptions{});
  std::puts(r.status().ToString().c_str());
  return r.ok() ? 1 : 0;
}
CPP
cat >"$tmp/containerd.cpp" <<'CPP'
#include <petrel/containerd.h>
#include <cstdio>
int main(int argc, char** argv) {
  if (petrel::IsContainerdLoggerCall(argc, argv)) return petrel::RunContainerdLogger(argc, argv);
  auto r = petrel::NewContainerdRuntime(petrel::ContainerdOptions{});  // no state_dir
  std::puts(r.status().ToString().c_str());
  return r.ok() ? 1 : 0;
}
CPP

# link OUTPUT SOURCE PACKAGES [--static]   (PACKAGES: one, or several in one word)
link() {
  local out=$1 source=$2 pkg=$3 mode=${4:-} flags
  # shellcheck disable=SC2086  # $pkg: the packages, split
  flags=$(pkg-config ${mode:+"$mode"} --cflags --libs $pkg) || die "pkg-config ${mode:+$mode }$pkg failed"
  # shellcheck disable=SC2086
  echo "  $pkg${mode:+ $mode}: $(pkg-config ${mode:+"$mode"} --libs-only-l $pkg)"
  # shellcheck disable=SC2086
  c++ -std=c++17 -o "$tmp/$out" "$source" $flags ||
    die "the $out program does not build with pkg-config ${mode:+$mode }$pkg"
}

# A TCP port of 127.0.0.1 that nothing listens on (bash's /dev/tcp connects, or not).
free_port() {
  local port
  for port in $(seq $((20000 + $$ % 20000)) $((20099 + $$ % 20000))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  die "no free port of 127.0.0.1 in $((20000 + $$ % 20000))..+99"
}

for mode in "" --static; do
  link embed "$src/examples/embed/main.cpp" petrel-testing $mode
  link crun "$tmp/crun.cpp" petrel-crun $mode
  "$tmp/crun" >/dev/null || die "the petrel-crun program linked ${mode:-without --static} did not refuse an empty state_dir"
  link docker "$tmp/docker.cpp" petrel-docker $mode
  "$tmp/docker" >/dev/null || die "the petrel-docker program linked ${mode:-without --static} did not refuse an empty state_dir"
  link containerd "$tmp/containerd.cpp" petrel-containerd $mode
  "$tmp/containerd" >/dev/null ||
    die "the petrel-containerd program linked ${mode:-without --static} did not refuse an empty state_dir"
  link cluster "$src/examples/embed/cluster_main.cpp" "petrel-cluster petrel-testing" $mode
  rm -rf "$tmp/cluster-state"
  out=$("$tmp/cluster" "$tmp/cluster-state" "127.0.0.1:$(free_port)" 2>"$tmp/cluster.err") ||
    die "the petrel-cluster program linked ${mode:-without --static} failed: $(cat "$tmp/cluster.err")"
  [[ $out == *"join token PETREL1."* ]] ||
    die "the petrel-cluster program linked ${mode:-without --static} printed no PETREL1. token: $out"
  echo "    ran: $out"
done
echo "  linked against $prefix: petrel-testing, petrel-crun, petrel-docker, petrel-containerd and petrel-cluster, with and without --static"

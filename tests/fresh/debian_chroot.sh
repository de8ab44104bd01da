#!/usr/bin/env bash
# Proves petrel's install steps on a machine as bare as a user's: a fresh Debian 12 made
# with `debootstrap --variant=minbase`, in which tests/fresh/user_steps.sh runs what the
# README tells users (ports/debian/install-deps, the release build, cmake --install,
# pkg-config links with and without --static) and checks that every program the tests
# call is installed. A package missing from install-deps fails here, not on a user's
# machine. No test suite runs in the chroot (the host runs them).
#
# Promises: leaves no process, mount or directory behind, on success or failure: the
# chroot runs in its own PID namespace, whose processes the kernel kills when it ends
# (and a package's service is never started: policy-rc.d); its mounts (/proc, /sys,
# /dev, tmpfs /tmp and /run, apt's .deb cache) are made in a private mount namespace
# (unshare -m) and vanish with it; the chroot directory is removed on every exit. The chroot gets a copy of this source tree as it is on disk
# (uncommitted changes included, build/ and other ignored files left out), the host's
# apt sources (/etc/apt/sources.list.d/debian.sources, or /etc/apt/sources.list where
# that is missing) and /etc/resolv.conf, and nothing else.
#
# Kept between runs, in $PETREL_FRESH_CACHE (default /var/cache/petrel):
#   debian-bookworm-minbase-ARCH.tar.zst  the bootstrapped system, reused while its .key
#     (settings, sha256, date) matches and it is younger than PETREL_FRESH_MAX_AGE_DAYS
#     (default 30); otherwise (stale, corrupt, missing) it is bootstrapped again;
#   apt-archives/  the .debs apt-get downloads in the chroot (still installed every run).
# Needs root, debootstrap, zstd (ports/debian/install-deps --host-tools), unshare.
# Usage: tests/fresh/debian_chroot.sh
# Environment: PETREL_FRESH_CACHE, PETREL_FRESH_MAX_AGE_DAYS (above), PETREL_FRESH_SOURCES
#   (apt sources to bootstrap from and copy in, deb822 or one-line format).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "debian_chroot: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root: debootstrap, mount and chroot need it"
for tool in debootstrap zstd unshare chroot flock findmnt; do
  command -v "$tool" >/dev/null || die "$tool is missing (ports/debian/install-deps --host-tools)"
done
# The machine's Debian sources: deb822 on Debian 12, one-line sources.list on Raspberry
# Pi OS. The chroot is bootstrapped from their first http(s) mirror and gets a copy of
# them.
sources=${PETREL_FRESH_SOURCES:-/etc/apt/sources.list.d/debian.sources}
[ -r "$sources" ] || [ -n "${PETREL_FRESH_SOURCES:-}" ] || sources=/etc/apt/sources.list
[ -r "$sources" ] || die "cannot read $sources (set PETREL_FRESH_SOURCES to the apt sources to use)"
# The mirror is the first http(s) URI: a "deb cdrom:" line or a file: URI cannot be
# bootstrapped from (nor reached from the chroot).
if grep -q '^URIs:' "$sources"; then
  uris=$(sed -n 's/^URIs:[[:space:]]*//p' "$sources")
  sources_in_chroot=/etc/apt/sources.list.d/debian.sources
else
  uris=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\).*/\2/p' "$sources")
  sources_in_chroot=/etc/apt/sources.list
fi
# shellcheck disable=SC2086  # one URI a word: a URIs: line may hold several
mirror=$(printf '%s\n' $uris | grep -m1 -E '^https?://' || true)
[ -n "$mirror" ] || die "no http(s) mirror (URIs: or deb line) in $sources"
# An https mirror needs ca-certificates in the chroot before apt can reach it.
include=""
case "$mirror" in https://*) include=ca-certificates ;; esac

suite=bookworm
arch=$(dpkg --print-architecture)
cache=${PETREL_FRESH_CACHE:-/var/cache/petrel}
max_age_days=${PETREL_FRESH_MAX_AGE_DAYS:-30}
base=$cache/debian-$suite-minbase-$arch.tar.zst
key="petrel-fresh-base 1 suite=$suite variant=minbase arch=$arch mirror=$mirror${include:+ include=$include}"
archives=$cache/apt-archives

mkdir -p "$archives/partial"
# One run at a time per cache: they share the tarball and apt's .deb cache and its lock.
exec {lock_fd}>"$cache/lock"
flock -w 3600 "$lock_fd" || die "another run has held $cache/lock for an hour"

root=$(mktemp -d /var/tmp/petrel-fresh.XXXXXX)
chmod 0755 "$root"  # mktemp's 0700 would deny every path to apt's unprivileged _apt user
cleanup() {
  local rc=$?
  # Mounts live only in the namespace unshare made, which is gone by now; if one is
  # visible here something went wrong, and rm must not walk into it.
  if findmnt -rn -o TARGET | grep -qF "$root"; then
    echo "debian_chroot: mounts remain under $root; not removing it" >&2
  else
    [ "$rc" -eq 0 ] || echo "debian_chroot: failed or interrupted; removing $root" >&2
    rm -rf --one-file-system "$root"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

base_reusable() {
  if [ ! -f "$base" ] || [ ! -f "$base.key" ]; then
    echo "  no base tarball in $cache: bootstrapping"; return 1
  fi
  local k="" sha="" created=""
  { read -r k; read -r sha; read -r created; } <"$base.key" || true
  if [ "$k" != "$key" ]; then
    echo "  base tarball made with other settings: bootstrapping again"; return 1
  fi
  if ! [[ "$created" =~ ^[0-9]+$ ]] ||
     [ $(($(date +%s) - created)) -gt $((max_age_days * 86400)) ]; then
    echo "  base tarball older than $max_age_days days: bootstrapping again"; return 1
  fi
  if ! echo "$sha  $base" | sha256sum --quiet -c - >/dev/null 2>&1; then
    echo "  base tarball does not match its sha256: bootstrapping again"; return 1
  fi
}

start=$SECONDS
if base_reusable; then
  zstd -dcq "$base" | tar --numeric-owner -xpf - -C "$root" || die "cannot unpack $base"
  echo "  unpacked the cached minbase ($base) in $((SECONDS - start))s"
else
  rm -f "$base" "$base.key"
  debootstrap --variant=minbase ${include:+--include="$include"} "$suite" "$root" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 ||
    { tail -n 30 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  # Without the .debs debootstrap leaves in apt's cache: a user's machine has none.
  tar --numeric-owner -C "$root" --exclude='./var/cache/apt/archives/*.deb' -cf - . |
    zstd -q -T0 -10 -o "$base.tmp" ||
    die "cannot write $base.tmp"
  { echo "$key"; sha256sum "$base.tmp" | cut -d' ' -f1; date +%s; } >"$base.key.tmp"
  mv "$base.tmp" "$base"
  mv "$base.key.tmp" "$base.key"
  echo "  bootstrapped Debian $suite minbase ($arch) from $mirror and kept it as $base" \
       "in $((SECONDS - start))s"
fi

# The machine's apt sources (the mirror, updates and security) replace debootstrap's.
rm -f "$root/etc/apt/sources.list" "$root/etc/resolv.conf"
cp "$sources" "$root$sources_in_chroot"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# No service a package installs may start: it would outlive the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# The source tree as it is on disk: tracked and untracked files, not ignored ones.
mkdir -p "$root/root/petrel"
if git -c safe.directory="$src" -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" &&
   git -c safe.directory="$src" ls-files -z --cached --others --exclude-standard |
     while IFS= read -r -d '' f; do  # a deleted tracked file is not on disk
       if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
     done |
     tar --null --no-recursion -T - -cf -) | tar -xf - -C "$root/root/petrel"
else
  tar -C "$src" --exclude=./build --exclude=./.git -cf - . | tar -xf - -C "$root/root/petrel"
fi

echo "  in the chroot, tests/fresh/user_steps.sh:"
# shellcheck disable=SC2016  # the script is expanded by the bash that unshare starts
unshare --mount --propagation private --pid --kill-child -- bash -euo pipefail -c '
  root=$1 archives=$2
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount --bind "$archives" "$root/var/cache/apt/archives"
  in_chroot() {
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  }
  in_chroot /bin/bash /root/petrel/tests/fresh/user_steps.sh
  in_chroot apt-get autoclean -qq  # drop .debs the archive no longer has
' debian_chroot "$root" "$archives" || die "the install steps failed on a fresh Debian $suite (above)"
echo "  fresh Debian $suite: install-deps, the tests' programs, build, install and link passed" \
     "in $((SECONDS - start))s"

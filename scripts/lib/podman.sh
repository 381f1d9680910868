# shellcheck shell=bash
# Podman without an image registry, shared by scripts/container-build and
# scripts/container-test (shared/PEERS.md, "Containers without a registry"):
# storage, runtime state and network config under one directory; runc; bounded
# ulimits; a localhost/debian:bookworm base made with debootstrap, and the
# Dockerfile's toolchain stage built on it, both kept as image archives in a
# cache directory so later runs on the machine skip them.
#
#   source scripts/lib/podman.sh
#   trap 'podman_cleanup' EXIT    # before podman_init: the storage always goes
#   podman_init [DIR]             # DIR kept afterwards; none: a scratch directory
#   podman_build_image            # sets $image; makes (or loads) the base and
#                                 # the Dockerfile's toolchain stage first
#   podman run ...                # the wrapper below
#
# Environment: SIDEMUX_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/sidemux),
# SIDEMUX_BASE_MAX_AGE_DAYS (default 7: an older cached image is made again,
# so its packages do not fall behind bookworm's security updates).

base=localhost/debian:bookworm
toolchain=
image=
as_root=()
podman_cmd=()  # podman with this storage, for programs that run it themselves
storage=
keep_storage=1
rootfs=
cache_dir=${SIDEMUX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sidemux}

podman_init() {
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || { echo "$0: needs root (debootstrap, podman storage)" >&2; exit 1; }
    as_root=(sudo)
  fi
  storage=${1:-}
  if [[ -z "$storage" ]]; then
    keep_storage=0
    storage=$(mktemp -d "${TMPDIR:-/var/tmp}/sidemux-podman.XXXXXX")
  fi
  mkdir -p "$storage"
  storage=$(cd "$storage" && pwd)
  # runc (crun fails here: "cgroups in hybrid mode not supported"), ulimits
  # that setrlimit accepts, no systemd on the host; podman's own state and
  # network definitions live in the storage directory too, so removing it
  # leaves nothing behind.
  podman_cmd=("${as_root[@]}" env CONTAINERS_CONF="$storage/containers.conf"
    podman --root "$storage/root" --runroot "$storage/runroot" --storage-driver overlay)
  cat >"$storage/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$storage/tmp"

[network]
network_config_dir = "$storage/networks"
CONF
}

podman() {
  "${podman_cmd[@]}" "$@"
}

podman_cleanup() {
  local status=$?
  set +e
  ((${#podman_cmd[@]})) || return "$status"
  [[ -n "$rootfs" ]] && "${as_root[@]}" rm -rf "$rootfs"
  if [[ -n "$storage" ]] && ((!keep_storage)); then
    podman rm --all --force --time 0 >/dev/null 2>&1
    # Unmounts what podman mounted, then removes its storage.
    podman system reset --force >/dev/null 2>&1
    local mnt
    while read -r mnt; do
      "${as_root[@]}" umount -l "$mnt"
    done < <(awk -v dir="$storage/" 'index($2, dir) == 1 { print $2 }' /proc/self/mounts | sort -r)
    "${as_root[@]}" rm -rf "$storage"
  fi
  return "$status"
}

# The first apt mirror URI matching $1 (a grep -E pattern) in apt's sources.
apt_mirror() {
  grep -hoE '^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[a-z]+://[^[:space:]]+' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    grep -oE '[a-z]+://[^[:space:]]+' | grep -E "$1" | head -n 1 || true
}

make_base_image() {
  local mirror security log
  mirror=$(apt_mirror '/debian/?$')
  mirror=${mirror:-http://deb.debian.org/debian}
  security=$(apt_mirror 'debian-security/?$')
  security=${security:-http://deb.debian.org/debian-security}
  rootfs=$(mktemp -d "$storage/rootfs.XXXXXX")
  log=$storage/debootstrap.log
  echo "== debootstrap --variant=minbase bookworm ($mirror)"
  if ! "${as_root[@]}" debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "$0: debootstrap failed" >&2
    exit 1
  fi
  # The same apt sources as the public debian:bookworm image, on this mirror.
  "${as_root[@]}" rm -f "$rootfs/etc/apt/sources.list"
  "${as_root[@]}" tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  "${as_root[@]}" rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  echo "== podman import $base"
  "${as_root[@]}" tar -C "$rootfs" -c . | podman import --quiet \
    --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  "${as_root[@]}" rm -rf "$rootfs"
  rootfs=
}

# True if image $1 is in the storage, or was loaded from archive $2 in the
# cache (unless older than SIDEMUX_BASE_MAX_AGE_DAYS).
podman_have_image() {
  local max_age=${SIDEMUX_BASE_MAX_AGE_DAYS:-7}
  if podman image exists "$1"; then
    echo "== image $1 present"
    return 0
  fi
  if [[ -f "$2" ]] && [[ -z "$(find "$2" -mtime "+$max_age")" ]] &&
    podman load --quiet -i "$2" >/dev/null 2>&1 && podman image exists "$1"; then
    echo "== image $1 loaded from $2"
    return 0
  fi
  return 1
}

# Makes $base present in the storage: already there, else from the cache,
# else with debootstrap (then cached).
podman_base_image() {
  local archive=$cache_dir/debian-bookworm-minbase.tar
  podman_have_image "$base" "$archive" && return
  make_base_image
  podman_cache_image "$base" "$archive"
}

# --format docker keeps HEALTHCHECK (OCI images drop it); host network so
# RUN steps reach apt's mirror without a bridge.
podman_build() {
  podman build --format docker --network host --pull=never -f Dockerfile "$@" .
}

# The Dockerfile's toolchain stage (base + compilers + -dev packages, about
# 90 s of apt) as $toolchain: from the storage, else the cache, else built and
# cached. Its tag and archive carry a hash of the stage's text, so a changed
# package list builds a new one.
podman_toolchain_image() {
  local key archive
  key=$(sed -n '/^FROM .* AS toolchain$/,/^FROM /p' Dockerfile | sha256sum | cut -c1-12)
  toolchain=localhost/sidemux-toolchain:$key
  archive=$cache_dir/sidemux-toolchain-$key.tar
  podman_have_image "$toolchain" "$archive" && return
  podman_base_image
  echo "== podman build --target toolchain $toolchain"
  podman_build --target toolchain --build-arg BASE="$base" -t "$toolchain"
  podman_cache_image "$toolchain" "$archive" 'sidemux-toolchain-*.tar'
}

# Saves image $1 as $2 in the cache (replacing older files matching $3).
podman_cache_image() {
  mkdir -p "$cache_dir"
  # Written aside and renamed, so a concurrent or interrupted run never loads half a file.
  local tmp=$cache_dir/.save.$$.tar
  rm -f "$tmp"
  if podman save --quiet --format docker-archive -o "$tmp" "$1" 2>/dev/null; then
    if [[ -n "${3:-}" ]]; then
      find "$cache_dir" -maxdepth 1 -name "$3" ! -name "$(basename "$2")" -delete
    fi
    mv -f "$tmp" "$2"
    echo "== cached $1 in $2 ($(du -h "$2" | cut -f1))"
  else
    rm -f "$tmp"
    echo "(could not cache $1 in $cache_dir)" >&2
  fi
}

# Builds the Dockerfile as $image (and :latest) on the toolchain image.
podman_build_image() {
  local version
  version=$(sed -n 's/^project(sidemux VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
  image=localhost/sidemux:${version:-dev}
  podman_toolchain_image
  echo "== podman build $image (BASE=$toolchain)"
  podman_build --build-arg BASE="$toolchain" -t "$image" -t localhost/sidemux:latest
}

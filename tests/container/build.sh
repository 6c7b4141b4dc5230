#!/usr/bin/env bash
# Build and run the pipeline's container image (envs/Dockerfile) with podman, on machines without Docker Hub.
#   build.sh install            apt-get install podman, runc and mmdebstrap (Debian 12, as root)
#   build.sh build [TAG]        build envs/Dockerfile as TAG (default localhost/scbloss:ci)
#   build.sh run [TAG] -- CMD   run CMD in the image, this checkout mounted at its own path (the working directory)
#   build.sh clean [TAG]        remove TAG and the scratch folder; keep the base and the dependencies stage (below)
#   build.sh clean --all [TAG]  remove TAG, the kept base and dependencies stage, and the scratch folder
# When the Dockerfile's base image cannot be pulled, `build` makes it from the Debian archive with mmdebstrap (the
# suite named in the base's tag; Debian's python3 instead of the official image's own build) and tags it with the
# base's name. The host's CA bundle and pip configuration (with the local folders it names) are mounted into the
# build's RUN steps, read-only, so pip works behind the host's proxy or from its local index; mounts are not stored
# in the image. State lives in $SCBLOSS_CONTAINER_DIR (default /tmp/scbloss-container).
# Between builds on one machine the script keeps the base it made and the Dockerfile's `dependencies` stage (the
# pinned packages, 6 GB: most of a build's time), tagged localhost/scbloss-cache:{base,deps}: podman's layer cache
# reuses them only while the Dockerfile's steps up to there and the files they copy (the pins) are unchanged, and
# the project's own layers are built afresh each time. Kept images older than $SCBLOSS_CONTAINER_CACHE_DAYS days
# (default 7; 0: never kept) are removed before a build, so the dependencies are installed from the index anew.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${SCBLOSS_CONTAINER_DIR:-/tmp/scbloss-container}
DOCKERFILE=$REPO/envs/Dockerfile
DEFAULT_TAG=localhost/scbloss:ci
CACHE_BASE=localhost/scbloss-cache:base
CACHE_DEPS=localhost/scbloss-cache:deps
CACHE_DAYS=${SCBLOSS_CONTAINER_CACHE_DAYS:-7}

say() { echo "build.sh: $*" >&2; }

install_packages() {
  if command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null; then
    echo "podman, runc and mmdebstrap already installed"; return
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    say "not root on Debian: podman not installed, the container tests will be skipped"; return
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc mmdebstrap
}

# podman's defaults fail in this kind of unprivileged-cgroup container (crun cannot raise RLIMIT_NOFILE beyond the
# hard limit, nor use hybrid cgroups): the hard limit as the containers' limit, and runc as the runtime.
containers_conf() {
  mkdir -p "$DIR"
  local nofile
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  cat > "$DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF=$DIR/containers.conf
}

base_image() { awk 'toupper($1) == "FROM" {print $2; exit}' "$DOCKERFILE"; }

# Remove the kept images once older than CACHE_DAYS (the base too: the dependencies were installed on it).
expire_cache() {
  local created="" name age
  for name in "$CACHE_DEPS" "$CACHE_BASE"; do
    podman image exists "$name" || continue
    age=$(podman image inspect --format '{{.Created.Unix}}' "$name")
    if [ -z "$created" ] || [ "$age" -lt "$created" ]; then created=$age; fi
  done
  [ -n "$created" ] || return 0
  age=$(( $(date +%s) - created ))
  if [ "$CACHE_DAYS" -le 0 ] || [ "$age" -ge $(( CACHE_DAYS * 86400 )) ]; then
    say "kept base and dependencies are $(( age / 86400 )) days old (limit $CACHE_DAYS): building them anew"
    remove_cache
  fi
}

remove_cache() {
  local name
  for name in "$CACHE_DEPS" "$CACHE_BASE"; do
    if podman image exists "$name"; then
      podman rmi -f "$(podman image inspect --format '{{.Id}}' "$name")" >/dev/null 2>&1 || true
    fi
  done
  podman image prune -f >/dev/null 2>&1 || true
}

ensure_base() {
  local base suite
  base=$(base_image)
  if podman image exists "$base"; then return; fi
  if timeout 120 podman pull -q "docker.io/library/$base" >/dev/null 2>&1 || timeout 60 podman pull -q "$base" >/dev/null 2>&1; then
    return
  fi
  suite=$(echo "$base" | grep -o -E 'bookworm|trixie|bullseye' | head -n1 || true)
  if [ -z "$suite" ]; then
    say "cannot pull $base and its tag names no Debian suite to make it from; pull it on a machine that can"
    exit 1
  fi
  say "cannot pull $base: making it from the Debian archive ($suite, mmdebstrap) and tagging it $base"
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    "$suite" "$DIR/rootfs.tar"
  # Debian marks its Python externally managed; the official image's is not, and the Dockerfile pip-installs.
  podman import --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' --change 'CMD ["python3"]' "$DIR/rootfs.tar" "$base" >/dev/null
  rm -f "$DIR/rootfs.tar"
  podman tag "$base" "$CACHE_BASE"  # made here: `clean --all` removes it
}

# The CA bundle Python verifies with (Debian's standard path unless OpenSSL says otherwise).
ca_bundle() {
  python3 -c 'import ssl; print(ssl.get_default_verify_paths().cafile or "")' 2>/dev/null | grep . \
    || echo /etc/ssl/certs/ca-certificates.crt
}

# The host's effective pip configuration (files and PIP_* variables, as `pip config list` merges them) as one
# pip.conf for the build, and a --volume for every local file or folder it names.
pip_mounts() {
  local conf=$DIR/pip.conf
  python3 -m pip config list 2>/dev/null | python3 -c '
import os, sys
settings = {}
lines = sorted(sys.stdin, key=lambda line: line.startswith(":env:"))  # PIP_* variables win over files, as in pip
for line in lines:
    key, _, value = line.strip().partition("=")
    name = key.split(".", 1)[1]
    settings[name] = value.strip().strip("\x27\"")
with open(sys.argv[1], "w") as out:
    out.write("[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
for name, value in settings.items():
    for item in value.split():
        path = item[len("file://"):] if item.startswith("file://") else item
        if not os.path.isabs(path) or not os.path.exists(path):
            continue
        if item.startswith("file://") and name in ("index-url", "extra-index-url"):
            path = os.path.dirname(path.rstrip("/"))  # a simple index links to files beside it
        print(f"-v={path}:{path}:ro")
' "$conf"
  echo "-v=$conf:/etc/pip.conf:ro"
}

build() {
  local tag=${1:-$DEFAULT_TAG}
  command -v podman >/dev/null || { say "podman is not installed: run build.sh install"; exit 1; }
  containers_conf
  trap 'rm -f "$DIR/pip.conf" "$DIR/rootfs.tar"' EXIT  # scratch files, also when the build fails
  expire_cache
  ensure_base
  local mounts=() ca
  ca=$(ca_bundle)
  mapfile -t mounts < <({ [ -f "$ca" ] && echo "-v=$ca:/etc/ssl/certs/ca-certificates.crt:ro"; pip_mounts; } | sort -u)
  say "building $tag from envs/Dockerfile (mounted for the build only: ${mounts[*]#-v=})"
  # The dependencies stage first, tagged to be kept (from podman's layer cache when kept from an earlier build),
  # then the whole image: its first stage from the same cache, the project's layers built now.
  podman build --pull=never "${mounts[@]}" -f "$DOCKERFILE" --target dependencies -t "$CACHE_DEPS" "$REPO"
  podman build --pull=never "${mounts[@]}" -f "$DOCKERFILE" -t "$tag" "$REPO"
  podman image prune -f >/dev/null 2>&1 || true  # a dependencies stage of earlier pins, no longer tagged
}

run() {
  local tag=$DEFAULT_TAG
  if [ "${1:-}" != "--" ]; then tag=$1; shift; fi
  [ "${1:-}" = "--" ] && shift
  containers_conf
  podman run --rm --network=none -v "$REPO:$REPO" -w "$PWD" -e PYTHONDONTWRITEBYTECODE=1 \
    ${SCBLOSS_CONTAINER_MOUNTS:-} "$tag" "$@"
}

clean() {
  local all=0
  if [ "${1:-}" = "--all" ]; then all=1; shift; fi
  local tag=${1:-$DEFAULT_TAG}
  containers_conf
  # Removing the tag removes the project's layers above the kept dependencies stage (untagged, nothing else on them).
  podman rmi -f "$tag" >/dev/null 2>&1 || true
  if [ "$all" = 1 ]; then remove_cache; fi
  podman image prune -f >/dev/null 2>&1 || true
  rm -rf "$DIR"
}

case "${1:-}" in
  install) install_packages ;;
  build) shift; build "$@" ;;
  run) shift; run "$@" ;;
  clean) shift; clean "$@" ;;
  *) echo "usage: $0 install | build [TAG] | run [TAG] -- CMD... | clean [--all] [TAG]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Makes `docker compose` usable on a machine that has at most the Docker client: a running
# Docker engine, the Compose v2 plugin and the CPU image's base image. Idempotent: each step
# runs only when its check fails. Used by docker/docker_test.sh (make docker-test); on a
# workstation with Docker Desktop or a distribution's docker-ce every check already passes.
#
# Why each step is done this way (../shared/PLATFORM_NOTES.md, "Docker on this machine"):
#  * Debian bookworm packages the engine (docker.io) but only the old Python docker-compose 1.x;
#    Compose v2 is a static Go binary that Debian packages from trixie on. It is taken from
#    trixie's .deb with a private apt state (temporary lists and cache), so the machine's own
#    package sources and lists are never changed.
#  * Without a reachable container registry nothing can be pulled. The base image
#    (python:3.11-slim-bookworm) is then replaced by a stand-in: a minimal Debian bookworm with
#    python3 + venv, imported under the exact same name, so the Dockerfile builds unchanged. The
#    host's CA bundle goes into it because outgoing TLS here is re-signed by a local CA.
# Needs root for the installs and for starting dockerd (nothing is installed when all is there).
set -euo pipefail

BASE_IMAGE="${PPTSM_BASE_IMAGE:-python:3.11-slim-bookworm}"
COMPOSE_DEB_VERSION="2.26.1-4"
COMPOSE_PLUGIN_DIR="/usr/libexec/docker/cli-plugins"
STATE_DIR="${PPTSM_DOCKER_STATE:-/var/tmp/pptsm-docker}"
ENGINE_START_TIMEOUT_S=90
STAND_IN_LABEL="org.pptsm.base-image=debootstrap-stand-in"

log() { echo "[engine] $*"; }
die() { echo "[engine] error: $*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "$1 needs root (run as root, or install it yourself)"
}

apt_install() {
  need_root "installing $*"
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit)" ]; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           --no-install-recommends "$@" >/dev/null; }
}

ensure_engine() {
  if docker info >/dev/null 2>&1; then
    return
  fi
  if ! command -v dockerd >/dev/null; then
    log "installing the Docker engine (Debian docker.io)"
    apt_install docker.io
  fi
  need_root "starting dockerd"
  mkdir -p "$STATE_DIR"
  # A dockerd that was killed leaves its pid file behind and the next one refuses to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  log "starting dockerd (log: $STATE_DIR/dockerd.log)"
  setsid dockerd >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
  local waited=0
  until docker info >/dev/null 2>&1; do
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge "$ENGINE_START_TIMEOUT_S" ]; then
      tail -n 20 "$STATE_DIR/dockerd.log" >&2 || true
      die "dockerd did not answer within ${ENGINE_START_TIMEOUT_S} s"
    fi
  done
}

ensure_compose_v2() {
  if docker compose version >/dev/null 2>&1; then
    return
  fi
  need_root "installing the Compose v2 plugin"
  log "installing Compose v2 (Debian trixie docker-compose $COMPOSE_DEB_VERSION)"
  local work
  work="$(mktemp -d)"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  echo "deb http://deb.debian.org/debian trixie main" >"$work/trixie.list"
  local apt_opts=(-qq -o APT::Sandbox::User=root -o "Dir::Etc::SourceList=$work/trixie.list"
                  -o "Dir::Etc::SourceParts=-"
                  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
  apt-get "${apt_opts[@]}" update
  (cd "$work" && apt-get "${apt_opts[@]}" download "docker-compose=$COMPOSE_DEB_VERSION")
  dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
  install -D -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" \
    "$COMPOSE_PLUGIN_DIR/docker-compose"
  rm -rf "$work"
  docker compose version >/dev/null || die "docker compose still does not run"
}

build_stand_in_base() {
  need_root "building the stand-in base image"
  command -v debootstrap >/dev/null || apt_install debootstrap
  log "no registry reachable: building a stand-in for $BASE_IMAGE with debootstrap (~2 min)"
  local rootfs
  rootfs="$(mktemp -d)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >"$STATE_DIR/debootstrap.log" 2>&1 \
    || { tail -n 20 "$STATE_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change "LABEL $STAND_IN_LABEL" \
    --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    return
  fi
  log "pulling $BASE_IMAGE"
  if timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    return
  fi
  mkdir -p "$STATE_DIR"
  build_stand_in_base
}

describe_base_image() {
  if docker image inspect -f '{{index .Config.Labels "org.pptsm.base-image"}}' "$BASE_IMAGE" \
      2>/dev/null | grep -q stand-in; then
    echo "stand-in (debootstrap bookworm, Debian python3)"
  else
    echo "registry image"
  fi
}

case "${1:-all}" in
  compose) ensure_compose_v2 ;;  # enough for `docker compose config` (no engine needed)
  all)
    ensure_engine
    ensure_compose_v2
    ensure_base_image
    log "engine $(docker version -f '{{.Server.Version}}'), $(docker compose version --short | sed 's/^/compose /'), base $BASE_IMAGE: $(describe_base_image)"
    ;;
  *) die "usage: $0 [all|compose]" ;;
esac

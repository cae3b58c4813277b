#!/usr/bin/env bash
# Docker Engine and Compose v2 on a Debian/Ubuntu host that has neither, as root (or with sudo).
# Idempotent: a second run finds everything in place and returns at once.
#   - Docker Engine from the distribution's package (docker.io);
#   - dockerd started in the background when no daemon answers (these hosts have no systemd);
#   - Compose v2: the distribution's docker-compose-plugin where it exists, otherwise built from
#     the Go module proxy once and cached in $LAB_TOOLS_CACHE, then installed as the CLI plugin
#     (`docker compose`) and as `docker-compose` (the seed's spelling; the same binary serves both).
#   scripts/install-docker.sh
set -euo pipefail

COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}
CACHE=${LAB_TOOLS_CACHE:-$HOME/.cache/kafka-lab}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

say() { echo "[install-docker] $*"; }
die() { echo "install-docker: error: $*" >&2; exit 1; }

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "run as root or install sudo: the Docker Engine needs root"
  SUDO=sudo
fi

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install Docker Engine and Compose v2 by hand (https://docs.docker.com/engine/install/)"
  say "installing $* from the distribution's packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- the engine ---
if ! command -v dockerd >/dev/null 2>&1; then
  apt_install docker.io iptables
fi
command -v docker >/dev/null 2>&1 || die "docker.io installed no docker client"

# --- the daemon ---
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the daemon outlives this script and the shell that called it.
  $SUDO setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not answer within 60 s; its log is above ($DOCKERD_LOG)"
  fi
fi
say "engine: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}')"

# --- compose v2 ---
link_seed_spelling() {
  # `docker-compose up --build` (the seed's spelling): the v2 binary behaves the same under that name.
  local bin=$1
  if ! docker-compose version 2>/dev/null | grep -q 'v2\.'; then
    $SUDO ln -sf "$bin" /usr/local/bin/docker-compose
  fi
}

if docker compose version >/dev/null 2>&1; then
  say "compose: $(docker compose version --short)"
  link_seed_spelling "$(docker info --format '{{range .ClientInfo.Plugins}}{{if eq .Name "compose"}}{{.Path}}{{end}}{{end}}' 2>/dev/null || echo "$PLUGIN_DIR/docker-compose")"
  exit 0
fi

if apt-cache show docker-compose-plugin >/dev/null 2>&1; then
  apt_install docker-compose-plugin
fi

if ! docker compose version >/dev/null 2>&1; then
  built="$CACHE/docker-compose-$COMPOSE_VERSION"
  if [ ! -x "$built" ]; then
    command -v go >/dev/null 2>&1 || apt_install golang-go
    say "building Compose $COMPOSE_VERSION from the Go module proxy (first time only; about 5 minutes on 2 cores)"
    # `go install module@version` refuses compose's go.mod (it has exclude directives), so build
    # inside a copy of the downloaded module instead.
    dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cp -r "$dir/." "$work/src"
    chmod -R u+w "$work/src"
    mkdir -p "$CACHE"
    (cd "$work/src" && CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
      -o "$built.tmp" ./cmd)
    mv "$built.tmp" "$built"
  fi
  mkdir -p "$PLUGIN_DIR"
  install -m 0755 "$built" "$PLUGIN_DIR/docker-compose"
fi

docker compose version >/dev/null 2>&1 || die "docker compose still does not answer"
link_seed_spelling "$PLUGIN_DIR/docker-compose"
say "compose: $(docker compose version --short)"

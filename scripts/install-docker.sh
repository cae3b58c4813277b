#!/usr/bin/env bash
# Docker Engine and Compose v2 on a Debian/Ubuntu host that has neither, as root (or with sudo).
# Idempotent: a second run finds everything in place and returns at once.
#   - Docker Engine from the distribution's package (docker.io);
#   - dockerd started in the background when no daemon answers (these hosts have no systemd);
#   - Compose v2: the distribution's package where it exists (Ubuntu: docker-compose-v2),
#     otherwise built from the Go module proxy once (about 2 minutes on 2 cores) and cached in
#     $LAB_TOOLS_CACHE, then installed as the CLI plugin (`docker compose`) and as
#     `docker-compose` (the seed's spelling; the same binary serves both). The build needs
#     Go >= 1.24; an older or missing go is replaced by a Go toolchain from the module proxy.
#   scripts/install-docker.sh
set -euo pipefail

COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}
GO_TOOLCHAIN=${GO_TOOLCHAIN:-go1.24.9}   # compose v2.40.3's go.mod asks for 1.24.9
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
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- the engine ---
if ! command -v dockerd >/dev/null 2>&1; then
  apt_install docker.io iptables
fi
command -v docker >/dev/null 2>&1 || die "docker.io installed no docker client"

# --- the daemon ---
# $SUDO: a user outside the docker group cannot ask the daemon, which would look like none runs.
if ! $SUDO docker info >/dev/null 2>&1; then
  say "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the daemon outlives this script and the shell that called it; the log is opened as root.
  $SUDO sh -c 'exec setsid dockerd >>"$1" 2>&1 </dev/null' _ "$DOCKERD_LOG" &
  for _ in $(seq 60); do
    $SUDO docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! $SUDO docker info >/dev/null 2>&1; then
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    die "dockerd did not answer within 60 s; its log is above ($DOCKERD_LOG)"
  fi
fi
say "engine: $($SUDO docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}')"
if ! docker info >/dev/null 2>&1; then
  say "note: $(id -un) cannot reach the daemon without sudo: add yourself to the docker group (usermod -aG docker $(id -un)) and log in again"
fi

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
  plugin=$($SUDO docker info --format '{{range .ClientInfo.Plugins}}{{if eq .Name "compose"}}{{.Path}}{{end}}{{end}}' 2>/dev/null || true)
  link_seed_spelling "${plugin:-$PLUGIN_DIR/docker-compose}"
  exit 0
fi

for pkg in docker-compose-plugin docker-compose-v2; do   # Docker's own repository; Ubuntu's name
  if apt-cache show "$pkg" >/dev/null 2>&1; then
    apt_install "$pkg"
    break
  fi
done

# A go new enough for compose's go.mod: the machine's own, or the toolchain from the module proxy.
go_new_enough() {
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  [ "${v%%.*}" -gt 1 ] || { v=${v#1.}; [ "${v%%.*}" -ge 24 ]; }
}
find_go() {
  if command -v go >/dev/null 2>&1 && go_new_enough go; then command -v go; return; fi
  local dir="$CACHE/$GO_TOOLCHAIN" proxy=${GOPROXY:-https://proxy.golang.org}
  proxy=${proxy%%,*}
  if [ ! -x "$dir/bin/go" ]; then
    say "fetching the Go toolchain $GO_TOOLCHAIN from $proxy (the machine's go is missing or older than 1.24)" >&2
    mkdir -p "$dir"
    curl -fsSL "$proxy/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN.linux-$(dpkg --print-architecture 2>/dev/null || echo amd64).zip" \
      -o "$dir.zip"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$dir.zip" "$dir.unzip"
    cp -r "$dir.unzip"/golang.org/toolchain@*/. "$dir/"
    chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/* 2>/dev/null || true
    rm -rf "$dir.zip" "$dir.unzip"
  fi
  echo "$dir/bin/go"
}

if ! docker compose version >/dev/null 2>&1; then
  built="$CACHE/docker-compose-$COMPOSE_VERSION"
  if [ ! -x "$built" ]; then
    GO=$(find_go)
    say "building Compose $COMPOSE_VERSION from the Go module proxy with $("$GO" env GOVERSION) (first time only; about 2 minutes on 2 cores)"
    # `go install module@version` refuses compose's go.mod (it has exclude directives), so build
    # inside a copy of the downloaded module instead.
    dir=$(GOTOOLCHAIN=local "$GO" mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cp -r "$dir/." "$work/src"
    chmod -R u+w "$work/src"
    mkdir -p "$CACHE"
    (cd "$work/src" && GOTOOLCHAIN=local CGO_ENABLED=0 "$GO" build -trimpath \
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

#!/usr/bin/env bash
# Validate the compose files: `docker-compose config -q` on docker-compose.yml alone and with the
# GPU override. Installs Debian's docker-compose (1.29, the Python one) if no docker-compose is
# on PATH. CI calls this; it needs no container engine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose > /dev/null 2>&1; then
    echo "check-compose: installing docker-compose (Debian package)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "check-compose: docker-compose is missing and this is not root: apt-get install docker-compose" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq > /dev/null
    apt-get install -y -qq docker-compose > /dev/null
fi

echo "check-compose: $(docker-compose version --short 2>/dev/null || docker-compose --version)"
# The files interpolate only variables with defaults, so an empty environment validates too.
docker-compose -f docker-compose.yml config -q
echo "check-compose: docker-compose.yml ok"
docker-compose -f docker-compose.yml -f docker-compose.gpu.yml config -q
echo "check-compose: docker-compose.yml + docker-compose.gpu.yml ok"

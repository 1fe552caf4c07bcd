#!/bin/sh
# proofnet-agent: the compose entrypoint of every ProofNet process. Then it is plain `proofnet`.
#
#   PROOFNET_KEY_FILE  if set and the file does not exist yet: `proofnet keys new --out FILE`
#                      (the key lives in the agent's named volume, so it survives restarts).
#   PROOFNET_WAIT_FOR  space-separated http(s) URLs / tcp://HOST:PORT to wait for first
#                      (podman-compose ignores `depends_on: condition: service_healthy`).
#   PROOFNET_WAIT_S    how long to wait for them (default 300 s); the agents retry by
#                      themselves after that, and `restart: on-failure` covers the rest.
#
# Usage: proofnet-agent ARGS...   ->   exec proofnet ARGS...
set -eu

if [ -n "${PROOFNET_KEY_FILE:-}" ] && [ ! -s "$PROOFNET_KEY_FILE" ]; then
    mkdir -p "$(dirname "$PROOFNET_KEY_FILE")"
    echo "proofnet-agent: creating key $PROOFNET_KEY_FILE" >&2
    proofnet keys new --out "$PROOFNET_KEY_FILE"
fi

if [ -n "${PROOFNET_WAIT_FOR:-}" ]; then
    # shellcheck disable=SC2086  # word splitting is the point
    proofnet-probe --wait "${PROOFNET_WAIT_S:-300}" $PROOFNET_WAIT_FOR \
        || echo "proofnet-agent: still not answering; starting anyway (the agent retries)" >&2
fi

echo "proofnet-agent: proofnet $*" >&2
exec proofnet "$@"

#!/usr/bin/env bash
# Run the compose testnet (docker-compose.yml) for real with rootful podman, end to end:
# build the images locally (no registry needed), bring the testnet up, submit jobs over REST,
# wait for them to be final, print the outcome and the balances, and tear everything down
# (also on failure or Ctrl-C).
#
#   scripts/podman-testnet.sh [--rebuild] [--keep] [--jobs N] [--timeout SECONDS] [--up-only]
#
#   --rebuild    rebuild the base, PostgreSQL and ProofNet images even if they exist
#   --keep       leave the testnet running at the end (tear down with --down)
#   --down       only tear a kept testnet down
#   --up-only    build, bring the testnet up, check the chain and the agents, and leave it
#                running without submitting anything (tear down with --down)
#   --jobs N     jobs to submit (default 3: seeds 11, 12, 13, like `proofnet demo`)
#   --timeout S  seconds to wait for the jobs to be final (default 900)
#
# Needs root (rootful podman, apt-get, debootstrap) and Debian/Ubuntu. What it installs when
# missing: podman, runc, conmon, catatonit (podman's --init, which `init: true` needs),
# netavark, aardvark-dns, iptables, debootstrap, curl (apt, without Recommends: each one is
# named); podman-compose (PyPI, into .podman-venv/). It stops at once, naming what is missing,
# when it cannot install something or podman cannot start a container with --init. The
# ProofNet image is rebuilt whenever its sources changed (a content hash in an image label),
# with podman's layer cache, so a rerun with unchanged sources builds nothing.
#
# Environment: CHAIN_PORT (8000), CHEATER_STRATEGY, HONEST_SOLVER_STRATEGY, VERIFIER_STRATEGY,
# BLOCK_TIME, CHAIN_PRESET, SOLVER_STAKE (see docs/testnet.md); TORCH_WHEEL_SRC (default: the
# CPU wheel of the pinned torch in /opt/wheels); PROOFNET_CLI (the host's `proofnet`, default
# .venv/bin/proofnet; without one, the client runs inside the chain container).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

REBUILD=0 KEEP=0 DOWN_ONLY=0 UP_ONLY=0 JOBS=3 TIMEOUT=900
while [ $# -gt 0 ]; do
    case "$1" in
        --rebuild) REBUILD=1 ;;
        --keep) KEEP=1 ;;
        --down) DOWN_ONLY=1 ;;
        --up-only) UP_ONLY=1 ;;
        --jobs) JOBS="$2"; shift ;;
        --timeout) TIMEOUT="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/docker/podman-containers.conf}"
PROJECT=proofnet
BASE_IMAGE=localhost/proofnet-base:bookworm
PG_IMAGE_TAG=localhost/proofnet-postgres:15
APP_IMAGE=localhost/proofnet:latest
CHAIN_PORT="${CHAIN_PORT:-8000}"
CHAIN_URL="http://127.0.0.1:$CHAIN_PORT"
PODMAN_COMPOSE_VERSION=1.6.0
COMPOSE_BIN="$ROOT/.podman-venv/bin/podman-compose"
SOLVERS="solver-honest-1 solver-honest-2 solver-cheater"
VERIFIERS="verifier-1 verifier-2"
WORK="$(mktemp -d /tmp/proofnet-podman.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT  # replaced by the full cleanup once containers exist

# What docker-compose.yml interpolates: the locally built images, the wheel-only build.
export PROOFNET_IMAGE="$APP_IMAGE" PG_IMAGE="$PG_IMAGE_TAG" PROOFNET_PULL_POLICY=never CHAIN_PORT

T0=$(date +%s)
TIMINGS=()
STEP_T=$T0
say() { printf '\n\033[1m==> [%4ss] %s\033[0m\n' "$(( $(date +%s) - T0 ))" "$*"; }
note() { printf '    %s\n' "$*"; }
mark() {  # mark "what": record the time since the last mark
    local now; now=$(date +%s)
    TIMINGS+=("$(printf '%-34s %5ss' "$1" "$((now - STEP_T))")")
    STEP_T=$now
}
die() { printf '\n\033[1;31mFAILED: %s\033[0m\n' "$*" >&2; exit 1; }

compose() { "$COMPOSE_BIN" -p "$PROJECT" -f docker-compose.yml "$@"; }
# podman 4.3 without systemd cannot schedule healthchecks and says so on every container
# start; podman-compose says it ignores `condition: service_healthy`. Both are expected.
quiet_compose() {
    compose "$@" 2>&1 | grep -v -e 'systemd connection' -e 'condition check' \
        -e 'failed to connect to syslog' -e 'no such container' -e 'no such pod' || true
}
container() { echo "${PROJECT}_$1_1"; }

# --- 0. tear down only -------------------------------------------------------------------
if [ "$DOWN_ONLY" = 1 ]; then
    say "tearing the testnet down (down -v)"
    quiet_compose down -v
    exit 0
fi

# --- 1. tools ------------------------------------------------------------------------------
# Every host tool the run needs, as "probe package": a probe is a command on PATH, or an
# absolute path that must exist. catatonit is podman's `--init` (docker-compose.yml says
# `init: true`): podman only Recommends it, and without it no container starts at all. netavark
# is podman's network stack (the compose network and its DNS: aardvark-dns); it drives iptables,
# which podman only Suggests ("netavark: No such file or directory" without it).
REQUIRED_TOOLS=(
    "podman podman"
    "runc runc"
    "conmon conmon"
    "/usr/libexec/podman/catatonit catatonit"
    "/usr/lib/podman/netavark netavark"
    "/usr/lib/podman/aardvark-dns aardvark-dns"
    "iptables iptables"
    "debootstrap debootstrap"
    "curl curl"
)
have_tool() { case "$1" in /*) [ -e "$1" ] ;; *) command -v "$1" > /dev/null 2>&1 ;; esac; }
missing_packages() {  # the packages of the probes that fail, space-separated
    local entry probe package out=""
    for entry in "${REQUIRED_TOOLS[@]}"; do
        read -r probe package <<< "$entry"
        have_tool "$probe" || out="$out $package"
    done
    echo "${out# }"
}

say "tools: podman, runc, conmon, catatonit, netavark, iptables, debootstrap, podman-compose"
[ "$(id -u)" = 0 ] || die "run as root (rootful podman)"
for py_module in venv pip; do
    python3 -c "import $py_module" 2> /dev/null \
        || die "python3 has no $py_module module (Debian: apt-get install python3-$py_module)"
done
missing="$(missing_packages)"
if [ -n "$missing" ]; then
    command -v apt-get > /dev/null 2>&1 \
        || die "missing: $missing, and no apt-get to install them (Debian/Ubuntu only)"
    note "installing: $missing (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq > "$WORK/apt.log" 2>&1 \
        || { tail -20 "$WORK/apt.log"; die "apt-get update failed"; }
    # Recommends off and every package named: a host whose apt skips Recommends gets the same.
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >> "$WORK/apt.log" 2>&1 \
        || { tail -20 "$WORK/apt.log"; die "apt-get install $missing failed"; }
    still_missing="$(missing_packages)"
    [ -z "$still_missing" ] \
        || die "still missing after apt-get install: $still_missing (apt-get install --reinstall?)"
fi
if [ ! -x "$COMPOSE_BIN" ]; then
    note "installing podman-compose $PODMAN_COMPOSE_VERSION into .podman-venv/"
    python3 -m venv "$ROOT/.podman-venv" || die "python3 -m venv .podman-venv failed"
    "$ROOT/.podman-venv/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION" 2>&1 \
        | grep -v 'is ignored: it is neither' || true
    [ -x "$COMPOSE_BIN" ] || die "podman-compose $PODMAN_COMPOSE_VERSION did not install (PyPI unreachable?)"
fi
note "$(podman --version), $(runc --version | head -1), podman-compose $("$COMPOSE_BIN" --version 2>/dev/null | head -1 | awk '{print $3}')"
note "CONTAINERS_CONF=$CONTAINERS_CONF"
engine="$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Host.NetworkBackend}}')" \
    || die "podman does not work here (podman info failed)"
note "runtime, cgroups, network: $engine"
mark "tools"

# --- 2. images -----------------------------------------------------------------------------
image_exists() { podman image exists "$1"; }

say "base image $BASE_IMAGE (debootstrap bookworm minbase + python3)"
if [ "$REBUILD" = 1 ] || ! image_exists "$BASE_IMAGE"; then
    rootfs="$(mktemp -d /var/tmp/proofnet-rootfs.XXXXXX)"
    note "debootstrap into $rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
    note "podman import"
    tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" > /dev/null
    rm -rf "$rootfs"
    mark "base image (debootstrap + import)"
else
    note "exists (--rebuild to rebuild)"
fi

# Fail here, in seconds, rather than after the image builds: the compose services run with
# `init: true`, so a container must start with podman's --init (catatonit).
say "smoke test: podman run --init on $BASE_IMAGE"
podman run --rm --init "$BASE_IMAGE" true > "$WORK/smoke.log" 2>&1 \
    || { sed 's/^/    /' "$WORK/smoke.log"; die "podman cannot start a container with --init (see above)"; }
note "ok"
mark "smoke test"

say "PostgreSQL image $PG_IMAGE_TAG (docker/postgres.Dockerfile)"
if [ "$REBUILD" = 1 ] || ! image_exists "$PG_IMAGE_TAG"; then
    podman build -q --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$PG_IMAGE_TAG" \
        -f docker/postgres.Dockerfile docker/ > "$WORK/pg-build.log" 2>&1 \
        || { tail -30 "$WORK/pg-build.log"; die "PostgreSQL image build failed"; }
    mark "PostgreSQL image build"
else
    note "exists (--rebuild to rebuild)"
fi

# Containers here cannot verify PyPI's TLS certificate (the host's egress proxy CA is the host's
# business, not the image's), so every wheel comes from the host into the build context.
say "wheelhouse wheels/ (torch CPU wheel + every dependency, downloaded on the host)"
torch_version="$(python3 -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print(next(r for r in d["project"]["dependencies"] if r.startswith("torch")).split("==")[1])')"
TORCH_WHEEL_SRC="${TORCH_WHEEL_SRC:-$(ls /opt/wheels/torch-"$torch_version"+cpu-cp311-cp311-manylinux*_x86_64.whl 2>/dev/null | head -1)}"
[ -n "$TORCH_WHEEL_SRC" ] && [ -f "$TORCH_WHEEL_SRC" ] \
    || die "no CPU torch $torch_version wheel (set TORCH_WHEEL_SRC=/path/to/torch-...cp311...whl)"
mkdir -p wheels
torch_name="$(basename "$TORCH_WHEEL_SRC")"
[ -f "wheels/$torch_name" ] || ln -f "$TORCH_WHEEL_SRC" "wheels/$torch_name" 2>/dev/null \
    || cp "$TORCH_WHEEL_SRC" "wheels/$torch_name"
deps_stamp="$(python3 -c 'import tomllib, hashlib; d = tomllib.load(open("pyproject.toml", "rb")); print(hashlib.sha256("\n".join(d["project"]["dependencies"]).encode()).hexdigest()[:16])')"
if [ "$REBUILD" = 1 ] || [ "$(cat wheels/.stamp 2>/dev/null)" != "$deps_stamp" ]; then
    python3 -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(r for r in d["project"]["dependencies"] if not r.startswith("torch")))' \
        > "$WORK/requirements.txt"
    note "pip download (host python $(python3 -c 'import platform; print(platform.python_version())'))"
    python3 -m pip download -q --dest wheels --only-binary=:all: -r "$WORK/requirements.txt" \
        "wheels/$torch_name" "setuptools>=68" wheel 2>&1 | grep -v 'is ignored: it is neither' || true
    echo "$deps_stamp" > wheels/.stamp
    mark "wheelhouse"
fi
note "$(find wheels -name '*.whl' | wc -l) wheels, $(du -sh wheels | cut -f1)"

say "ProofNet image $APP_IMAGE (Dockerfile, BASE_IMAGE=$BASE_IMAGE, TORCH_WHEEL=wheels/$torch_name)"
src_hash="$( (find pyproject.toml README.md Dockerfile .dockerignore protocol contracts_sim services \
    examples docker -type f ! -name '*.py[co]' ! -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort \
    | xargs sha256sum; cat wheels/.stamp) | sha256sum | cut -c1-16)"
have_hash="$(podman image inspect --format '{{ index .Labels "proofnet.source" }}' "$APP_IMAGE" 2>/dev/null || true)"
if [ "$REBUILD" = 1 ] || [ "$have_hash" != "$src_hash" ]; then
    note "sources $src_hash (image has ${have_hash:-none}): building"
    podman build --layers \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg TORCH_WHEEL="wheels/$torch_name" \
        --build-arg WHEELHOUSE_ONLY=1 \
        --label proofnet.source="$src_hash" \
        -t "$APP_IMAGE" . > "$WORK/app-build.log" 2>&1 \
        || { tail -40 "$WORK/app-build.log"; die "ProofNet image build failed (log: $WORK/app-build.log)"; }
    grep -E '^torch |^torch:' "$WORK/app-build.log" | sed 's/^/    /' || true
    mark "ProofNet image build"
else
    note "up to date (sources $src_hash)"
fi
podman images --format '    {{.Repository}}:{{.Tag}}  {{.Size}}' \
    | grep -E "proofnet(-base|-postgres)?:" || true

# --- 3. the testnet ------------------------------------------------------------------------
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ "$status" != 0 ]; then
        say "failure: the last lines of every container's log"
        for svc in postgres chain $SOLVERS $VERIFIERS; do
            echo "--- $svc"
            podman logs --tail 15 "$(container "$svc")" 2>&1 | sed 's/^/    /' || true
        done
    fi
    if [ "$KEEP" = 1 ] && [ "$status" = 0 ]; then
        say "leaving the testnet running: $CHAIN_URL  (scripts/podman-testnet.sh --down)"
    else
        say "tearing down (podman-compose down -v)"
        local t; t=$(date +%s)
        quiet_compose down -v > /dev/null
        note "down in $(( $(date +%s) - t ))s"
    fi
    rm -rf "$WORK"
    say "timings"
    for line in "${TIMINGS[@]}"; do note "$line"; done
    note "$(printf '%-34s %5ss' total "$(( $(date +%s) - T0 ))")"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "clearing what an earlier run may have left (down -v)"
quiet_compose down -v > /dev/null
if curl -s -o /dev/null -m 2 "$CHAIN_URL/health"; then
    die "something else already answers on $CHAIN_URL (set CHAIN_PORT)"
fi
mark "clean slate"

say "podman-compose up -d (postgres, chain, 3 solvers, 2 verifiers)"
quiet_compose up -d | sed 's/^/    /'
podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '    {{.Names}}  {{.Status}}  {{.Ports}}'
mark "compose up"

say "waiting for the chain: $CHAIN_URL/health"
for _ in $(seq 1 180); do
    if health="$(curl -fsS -m 2 "$CHAIN_URL/health" 2>/dev/null)"; then break; fi
    health=""
    sleep 1
done
[ -n "$health" ] || die "the chain did not answer on $CHAIN_URL/health within 180 s"
note "$health"
podman exec "$(container postgres)" pg_isready -h 127.0.0.1 -U proofnet -d proofnet | sed 's/^/    postgres: /'
podman logs "$(container chain)" 2>&1 | grep -m1 'db=' | sed 's/^/    /' || true
mark "chain healthy"

say "waiting for the agents' /health (from inside the compose network)"
targets=""
for s in $SOLVERS; do targets="$targets http://$s:8601/health"; done
for v in $VERIFIERS; do targets="$targets http://$v:8701/health"; done
# shellcheck disable=SC2086
podman exec "$(container chain)" proofnet-probe --wait 300 $targets 2>&1 | sed 's/^/    /' \
    || die "some agents did not come up"
agents_json="$(podman exec "$(container chain)" python3 -c '
import json, sys, urllib.request
names = sys.argv[1:]
port = {n: (8601 if n.startswith("solver") else 8701) for n in names}
print(json.dumps({n: json.load(urllib.request.urlopen(f"http://{n}:{port[n]}/health"))["address"] for n in names}))
' $SOLVERS $VERIFIERS)"
python3 -c 'import json, sys; [print(f"    {k:16} {v}") for k, v in json.loads(sys.argv[1]).items()]' "$agents_json"
mark "agents up"

if [ "$UP_ONLY" = 1 ]; then
    say "--up-only: the testnet is up; not submitting"
    KEEP=1
    exit 0
fi

say "waiting for the agents to fund and stake themselves (dev faucet)"
python3 docker/testnet-report.py wait-agents "$CHAIN_URL" "$agents_json" 300 | sed 's/^/    /'
mark "agents staked"

# --- 4. jobs over REST ---------------------------------------------------------------------
if [ -z "${PROOFNET_CLI:-}" ] && [ -x "$ROOT/.venv/bin/proofnet" ]; then PROOFNET_CLI="$ROOT/.venv/bin/proofnet"; fi
mkdir -p "$WORK/specs"
for i in $(seq 1 "$JOBS"); do
    sed "s/^seed: .*/seed: $((10 + i))/" examples/digits-mlp.yaml > "$WORK/specs/job-$i.yaml"
done
if [ -n "${PROOFNET_CLI:-}" ]; then
    say "client: $PROOFNET_CLI on the host, over the published port $CHAIN_URL"
    pn() { "$PROOFNET_CLI" "$@"; }
    key_address() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' "$KEY"; }
    SPEC_DIR="$WORK/specs" KEY="$WORK/submitter.key" CLIENT_CHAIN="$CHAIN_URL"
else
    say "client: proofnet inside the chain container (no host venv), over http://chain:8000"
    podman cp "$WORK/specs" "$(container chain):/tmp/specs"
    pn() { podman exec "$(container chain)" proofnet "$@"; }
    key_address() { podman exec "$(container chain)" python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' "$KEY"; }
    SPEC_DIR=/tmp/specs KEY=/tmp/submitter.key CLIENT_CHAIN=http://chain:8000
fi

say "submitting $JOBS job(s) over REST: examples/digits-mlp.yaml with seeds 11..$((10 + JOBS))"
job_ids=()
for i in $(seq 1 "$JOBS"); do
    job_id="$(pn submit "$SPEC_DIR/job-$i.yaml" --chain "$CLIENT_CHAIN" --key "$KEY" | tail -1)"
    [[ "$job_id" =~ ^[0-9a-f]{64}$ ]] || die "submit printed '$job_id', not a job id"
    job_ids+=("$job_id")
    note "job $i: $job_id"
done
submitter="$(key_address)"
mark "jobs submitted"

say "following the jobs until they are final (proofnet status --watch, ${TIMEOUT}s at most)"
for job_id in "${job_ids[@]}"; do
    note "job ${job_id:0:12}…"
    pn status "$job_id" --chain "$CLIENT_CHAIN" --watch --timeout "$TIMEOUT" > /dev/null 2> "$WORK/watch.log" \
        || { sed 's/^/      /' "$WORK/watch.log"; die "job $job_id did not become final"; }
    sed 's/^/      /' "$WORK/watch.log"
done
mark "jobs final"

say "outcome"
all_json="$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); d["submitter"] = sys.argv[2]; print(json.dumps(d))' "$agents_json" "$submitter")"
set +e
python3 docker/testnet-report.py report "$CHAIN_URL" "$all_json" "${job_ids[@]}" | sed 's/^/    /'
verdict=${PIPESTATUS[0]}
set -e
echo
pn status "${job_ids[0]}" --chain "$CLIENT_CHAIN" 2>&1 | sed 's/^/    /' || true
mark "report"
[ "$verdict" = 0 ] || die "the testnet's outcome is wrong (see above)"
say "PASS"

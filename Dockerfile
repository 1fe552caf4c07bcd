# ProofNet: one image for every process (chain node, solvers, verifiers, the CLI).
#
#   docker build -t proofnet:latest .                      # CPU torch from the PyTorch CPU index
#   docker build -t proofnet:latest \
#       --build-arg TORCH_WHEEL=wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl .
#   docker build -t proofnet:cuda \
#       --build-arg TORCH_INDEX_URL=https://pypi.org/simple .   # CUDA torch, for GPU hosts
#
# Build arguments (docs/testnet.md has the full table):
#   BASE_IMAGE        a Debian-like image with python3 (>= 3.11) and the venv module.
#   TORCH_WHEEL       a torch wheel inside the build context, under wheels/ (wins over the index).
#   TORCH_INDEX_URL   where torch comes from otherwise. The default is the CPU-only index, so a
#                     CPU image never downloads the multi-GB CUDA build. PyPI's default Linux
#                     wheel is the CUDA build: use https://pypi.org/simple for a GPU image.
#   PIP_INDEX_URL     where every other Python package comes from.
#   WHEELHOUSE_ONLY   1: install everything from wheels/ and never contact an index (for
#                     build hosts whose containers cannot reach PyPI; scripts/podman-testnet.sh
#                     fills wheels/ on the host first).
#
# Torch is installed in its own layer before the project's other dependencies, and those before
# the source, so editing the code rebuilds only the last, small layer.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# deps: a virtual environment with torch and the project's other dependencies.
FROM ${BASE_IMAGE} AS deps

ARG TORCH_WHEEL=
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG WHEELHOUSE_ONLY=0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/proofnet \
    PATH=/opt/proofnet/bin:$PATH

RUN python3 -m venv /opt/proofnet

# wheel[s] is a glob so that the build works whether or not wheels/ exists; pyproject.toml makes
# sure the COPY always has a source. Everything lands flat in /tmp/build/wheels/.
COPY pyproject.toml wheel[s] /tmp/build/wheels/

# 1. torch
RUN set -eu; \
    cd /tmp/build; \
    if [ "$WHEELHOUSE_ONLY" = 1 ]; then src="--no-index --find-links /tmp/build/wheels"; \
    else src="--index-url $PIP_INDEX_URL --find-links /tmp/build/wheels"; fi; \
    torch_req="$(python3 -c 'import tomllib; d = tomllib.load(open("wheels/pyproject.toml", "rb")); print(next(r for r in d["project"]["dependencies"] if r.replace(" ", "").startswith("torch")))')"; \
    if [ -n "$TORCH_WHEEL" ]; then \
        wheel="/tmp/build/wheels/$(basename "$TORCH_WHEEL")"; \
        [ -f "$wheel" ] || { echo "TORCH_WHEEL=$TORCH_WHEEL: not in the build context (put it under wheels/)" >&2; exit 1; }; \
        echo "torch: from $TORCH_WHEEL"; \
        pip install $src "$wheel"; \
    elif [ "$WHEELHOUSE_ONLY" = 1 ]; then \
        echo "torch: $torch_req from wheels/"; \
        pip install $src "$torch_req"; \
    else \
        echo "torch: $torch_req from $TORCH_INDEX_URL"; \
        pip install --index-url "$TORCH_INDEX_URL" --extra-index-url "$PIP_INDEX_URL" "$torch_req"; \
    fi; \
    python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

# 2. the project's other dependencies (torch is already satisfied), and the wheel builder
RUN set -eu; \
    cd /tmp/build; \
    if [ "$WHEELHOUSE_ONLY" = 1 ]; then src="--no-index --find-links /tmp/build/wheels"; \
    else src="--index-url $PIP_INDEX_URL --find-links /tmp/build/wheels"; fi; \
    python3 -c 'import tomllib; d = tomllib.load(open("wheels/pyproject.toml", "rb")); print("\n".join(d["project"]["dependencies"]))' > requirements.txt; \
    pip install $src -r requirements.txt; \
    pip download $src --no-deps --dest /tmp/build/backend "setuptools>=68" wheel

# ---------------------------------------------------------------------------------------------
# app: the project itself as a wheel (no dev extras). README.m[d]: works before a README exists.
FROM deps AS app
COPY pyproject.toml README.m[d] /tmp/build/src/
COPY protocol /tmp/build/src/protocol
COPY contracts_sim /tmp/build/src/contracts_sim
COPY services /tmp/build/src/services
RUN pip wheel --no-deps --no-index --find-links /tmp/build/backend --wheel-dir /tmp/dist /tmp/build/src

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="ProofNet" \
      org.opencontainers.image.description="Verifiable decentralized training: chain node, solver and verifier agents, CLI" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV VIRTUAL_ENV=/opt/proofnet \
    PATH=/opt/proofnet/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A non-root user owns /data; a named volume mounted there starts with that ownership
# (no VOLUME line: compose names every volume, and anonymous ones would outlive `down -v`).
RUN set -eu; \
    groupadd --gid 10001 proofnet; \
    useradd --uid 10001 --gid proofnet --home-dir /home/proofnet --create-home \
        --shell /usr/sbin/nologin proofnet; \
    mkdir -p /data; chown proofnet:proofnet /data

# The dependencies first (a large layer that changes only with pyproject.toml), then the small
# things, then the project's wheel: editing the code rebuilds only the last two layers.
COPY --from=deps /opt/proofnet /opt/proofnet
COPY docker/proofnet-agent.sh /usr/local/bin/proofnet-agent
COPY docker/probe.py /usr/local/bin/proofnet-probe
COPY examples /opt/proofnet/examples
COPY --from=app /tmp/dist /tmp/dist
RUN set -eu; \
    chmod 0755 /usr/local/bin/proofnet-agent /usr/local/bin/proofnet-probe; \
    pip install --no-deps --no-index /tmp/dist/*.whl; \
    rm -rf /tmp/dist; \
    proofnet --help > /dev/null

USER proofnet
WORKDIR /data
EXPOSE 8000 8601 8701

ENTRYPOINT ["proofnet"]
CMD ["--help"]

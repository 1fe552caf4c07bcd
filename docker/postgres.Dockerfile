# PostgreSQL from Debian's packages, for hosts that cannot pull the official `postgres` image
# Build context: docker/.  (scripts/podman-testnet.sh builds it from the debootstrapped base and passes it as PG_IMAGE).
# It honours the official image's variables, so docker-compose.yml works with either:
#   POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER),
#   POSTGRES_HOST_AUTH_METHOD (default trust: the server is reachable only on the compose
#   network, nothing publishes its port), PGDATA (default /var/lib/postgresql/data).
ARG BASE_IMAGE=localhost/proofnet-base:bookworm
FROM ${BASE_IMAGE}

ARG PG_MAJOR=15
ENV PG_MAJOR=${PG_MAJOR} \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8

# create_main_cluster=false: the package must not initdb a cluster of its own at install time.
RUN set -eu; \
    mkdir -p /etc/postgresql-common; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}"; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    mkdir -p "$PGDATA" /var/run/postgresql; \
    chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql; \
    chmod 0700 "$PGDATA"

COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
RUN chmod 0755 /usr/local/bin/postgres-entrypoint

USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]

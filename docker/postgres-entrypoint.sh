#!/bin/sh
# Entry point of docker/postgres.Dockerfile: initdb on first start, then run the server on
# 0.0.0.0:5432 in the foreground.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=trust}"
BIN="/usr/lib/postgresql/${PG_MAJOR:-15}/bin"

mkdir -p /var/run/postgresql 2>/dev/null || true

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "postgres-entrypoint: initdb $PGDATA (superuser $POSTGRES_USER, host auth $POSTGRES_HOST_AUTH_METHOD)"
    "$BIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" -E UTF8 --locale=C \
        --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" > /dev/null
    {
        echo "host all all 0.0.0.0/0 $POSTGRES_HOST_AUTH_METHOD"
        echo "host all all ::/0 $POSTGRES_HOST_AUTH_METHOD"
    } >> "$PGDATA/pg_hba.conf"
    {
        echo "listen_addresses = '*'"
        echo "unix_socket_directories = '/var/run/postgresql'"
    } >> "$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # A private server on the socket only, so that nobody connects before the database exists.
        "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start > /dev/null
        "$BIN/createdb" -h /var/run/postgresql -U "$POSTGRES_USER" "$POSTGRES_DB"
        "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop > /dev/null
    fi
    echo "postgres-entrypoint: database $POSTGRES_DB ready"
fi

exec "$BIN/postgres" -D "$PGDATA" "$@"

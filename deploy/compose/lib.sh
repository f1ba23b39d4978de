# deploy/compose/lib.sh: what up, down and the compose tests share. Sourced, not run.
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../local/lib.sh"
IIIF_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COMPOSE_DIR=$IIIF_REPO/deploy/compose
OFFLINE_BASE=localhost/iiif-base:bookworm
# The published ports, as compose will see them (.env unless the environment says otherwise).
FRONT_PORT=${FRONT_PORT:-$(sed -n 's/^FRONT_PORT=//p' "$COMPOSE_DIR/.env")}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-$(sed -n 's/^PROMETHEUS_PORT=//p' "$COMPOSE_DIR/.env")}
PUBLIC_HOST_NAME=${PUBLIC_HOST_NAME:-$(sed -n 's/^PUBLIC_HOST_NAME=//p' "$COMPOSE_DIR/.env")}
# The front answers only for its public host: every request names it.
FRONT_URL=http://127.0.0.1:$FRONT_PORT
FRONT_HOST=$PUBLIC_HOST_NAME:$FRONT_PORT
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-iiif}

# docker-compose (1.29, Debian 12) or `docker compose` (v2), in the stack's directory.
compose() {
    if command -v docker-compose >/dev/null; then
        (cd "$COMPOSE_DIR" && docker-compose "$@")
    else
        (cd "$COMPOSE_DIR" && docker compose "$@")
    fi
}


# shellcheck shell=bash
# A single-node Garage (S3-compatible store) for the local stack and the tests.
# Source it after lib.sh; it defines functions and runs nothing.
#
#   garage_start DIR S3_PORT RPC_PORT ADMIN_PORT BUCKET
#       starts `garage server --single-node --default-bucket` with its config, data, log and
#       pid file in DIR (created; kept across restarts, so the bucket's objects survive), and
#       waits until it serves S3 on 127.0.0.1:S3_PORT. The access key is made once and kept in
#       DIR/access-key-id and DIR/secret-access-key (mode 600). A running one is left alone.
#   garage_stop DIR            stops it (SIGTERM, SIGKILL after 15 s).
#   garage_running DIR         true when it runs.
#   garage_put DIR BUCKET FILE KEY
#       uploads FILE as KEY (curl's SigV4 signing; no AWS CLI needed).
#   garage_endpoint DIR        prints http://127.0.0.1:S3_PORT.
#
# Needs the garage binary (deploy/local/install-deps installs it with cargo; GARAGE_BIN overrides).

GARAGE_BIN=${GARAGE_BIN:-$(command -v garage 2>/dev/null || echo "$HOME/.cargo/bin/garage")}

# garage_require: dies with a hint when garage is missing.
garage_require() {
    [[ -x $GARAGE_BIN ]] ||
        die "garage not found (looked for $GARAGE_BIN); run deploy/local/install-deps (cargo install garage --locked)"
}

garage_running() {
    pidfile_running "$1/garage.pid" garage
}

garage_endpoint() {
    printf 'http://127.0.0.1:%s\n' "$(cat "$1/s3-port")"
}

garage_start() {
    local dir=$1 s3_port=$2 rpc_port=$3 admin_port=$4 bucket=$5
    garage_require
    mkdir -p "$dir/meta" "$dir/data"
    if garage_running "$dir"; then
        info "garage already running (pid $(head -n1 "$dir/garage.pid"))"
        return 0
    fi
    local port
    for port in "$s3_port" "$rpc_port" "$admin_port"; do
        port_in_use "$port" && die "port 127.0.0.1:$port is already in use by a process we did not start"
    done
    # Credentials and the RPC secret are made once: the data written with them stays usable.
    (
        umask 077
        [[ -s $dir/rpc-secret ]] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/rpc-secret"
        [[ -s $dir/access-key-id ]] || printf 'GK%s' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$dir/access-key-id"
        [[ -s $dir/secret-access-key ]] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/secret-access-key"
    )
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret_file = "$dir/rpc-secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
EOF
    echo "$s3_port" >"$dir/s3-port"
    GARAGE_DEFAULT_ACCESS_KEY=$(cat "$dir/access-key-id") \
        GARAGE_DEFAULT_SECRET_KEY=$(cat "$dir/secret-access-key") \
        GARAGE_DEFAULT_BUCKET=$bucket RUST_LOG=${GARAGE_LOG:-garage=info} \
        setsid "$GARAGE_BIN" -c "$dir/garage.toml" server --single-node --default-bucket \
        </dev/null >>"$dir/garage.log" 2>&1 &
    echo $! >"$dir/garage.pid"
    # The S3 listener opens once the layout, the key and the bucket exist.
    local deadline=$(($(date +%s) + 30))
    until port_in_use "$s3_port"; do
        if ! garage_running "$dir" || (($(date +%s) >= deadline)); then
            dump_logs "$dir/garage.log"
            die "garage did not serve S3 on 127.0.0.1:$s3_port within 30 s"
        fi
        sleep 0.1
    done
}

garage_stop() {
    # Garage finishes its background work on SIGTERM; a few seconds is normal.
    stop_pidfile "$1/garage.pid" garage garage TERM 15
}

garage_put() {
    local dir=$1 bucket=$2 file=$3 key=$4 encoded
    # Path-style URL; the key percent-encoded except '/' (curl signs the path as sent).
    encoded=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/"))' "$key")
    curl -fsS --aws-sigv4 "aws:amz:garage:s3" \
        --user "$(cat "$dir/access-key-id"):$(cat "$dir/secret-access-key")" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        -T "$file" "$(garage_endpoint "$dir")/$bucket/$encoded" >/dev/null
}

# shellcheck shell=bash
# Shared helpers for the scripts in deploy/local/, tests/, loadtest/ and nginx/.
# Source it; it defines functions and a few variables and runs nothing else.
#
# Variables (all can be set by the caller before sourcing):
#   IIIF_REPO   the repository root (derived from this file's location)
#   IIIF_VAR    state directory for images, logs, pid files, the venv (default $IIIF_REPO/var)
#   IIPSRV_BIN  the iipsrv FastCGI binary (default: Debian's)
#   IIIF_GATEWAY_BIN  the gateway binary (default: target/release/iiif-gateway)

IIIF_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IIIF_VAR=${IIIF_VAR:-$IIIF_REPO/var}
IIPSRV_BIN=${IIPSRV_BIN:-/usr/lib/iipimage-server/iipsrv.fcgi}
IIIF_GATEWAY_BIN=${IIIF_GATEWAY_BIN:-${CARGO_TARGET_DIR:-$IIIF_REPO/target}/release/iiif-gateway}
IIIF_VENV=${IIIF_VENV:-$IIIF_VAR/venv}

# === messages ===

info() { printf '%s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# heading TEXT: a visible progress heading on stdout.
heading() { printf '\n==> %s\n' "$*"; }

# === phases with timing ===
# phase NAME COMMAND...: runs COMMAND under a heading, records its wall time and status.
# phase_summary prints every recorded phase; call it from an EXIT trap.

PHASE_NAMES=()
PHASE_TIMES=()
PHASE_RESULTS=()

phase() {
    local name=$1 started rc=0
    shift
    heading "$name"
    started=$(date +%s)
    "$@" || rc=$?
    PHASE_NAMES+=("$name")
    PHASE_TIMES+=("$(($(date +%s) - started))")
    if ((rc == 0)); then PHASE_RESULTS+=(ok); else PHASE_RESULTS+=("FAILED (exit $rc)"); fi
    printf -- '--- %s: %ss, %s\n' "$name" "${PHASE_TIMES[-1]}" "${PHASE_RESULTS[-1]}"
    return "$rc"
}

phase_summary() {
    local i
    ((${#PHASE_NAMES[@]} > 0)) || return 0
    printf '\n==> timing\n'
    for i in "${!PHASE_NAMES[@]}"; do
        printf '%6ss  %-40s %s\n' "${PHASE_TIMES[$i]}" "${PHASE_NAMES[$i]}" "${PHASE_RESULTS[$i]}"
    done
}

# === ports ===

# port_in_use PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_ports N: prints N distinct currently free loopback ports, one per line.
# The sockets are held open until all N are chosen, so the ports differ; another
# process could still take one before we bind it, which the callers accept.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# === processes and pid files ===

# pid_running PID PATTERN: true when PID exists, is not a zombie, and its command
# line contains PATTERN (guards against a recycled pid).
pid_running() {
    local pid=$1 pattern=$2 state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/stat ]] || return 1
    state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z && $state != X ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}

# pidfile_running FILE PATTERN: true when FILE names a running process matching PATTERN.
pidfile_running() {
    local file=$1 pattern=$2 pid
    [[ -s $file ]] || return 1
    pid=$(head -n1 "$file")
    pid_running "$pid" "$pattern"
}

# wait_gone PID SECONDS: waits until PID has exited (or is a zombie); false on timeout.
wait_gone() {
    local pid=$1 deadline=$(($(date +%s) + $2)) state
    while [[ -r /proc/$pid/stat ]]; do
        state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || break
        [[ $state == Z || $state == X ]] && break
        (($(date +%s) < deadline)) || return 1
        sleep 0.1
    done
    return 0
}

# stop_pid PID PATTERN NAME [SIGNAL] [SECONDS]: signals PID (if it still matches
# PATTERN) and waits for it to exit; SIGKILL after SECONDS (default 30).
stop_pid() {
    local pid=$1 pattern=$2 name=$3 sig=${4:-TERM} timeout=${5:-30}
    if ! pid_running "$pid" "$pattern"; then
        return 0
    fi
    kill "-$sig" "$pid" 2>/dev/null || return 0
    if ! wait_gone "$pid" "$timeout"; then
        warn "$name (pid $pid) did not exit within ${timeout}s after SIG$sig; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || true
    fi
    info "stopped $name (pid $pid)"
}

# stop_pidfile FILE PATTERN NAME [SIGNAL] [SECONDS]: stop_pid for the pid in FILE, then removes FILE.
stop_pidfile() {
    local file=$1 pattern=$2 name=$3 sig=${4:-TERM} timeout=${5:-30} pid
    [[ -e $file ]] || return 0
    pid=$(head -n1 "$file" 2>/dev/null || true)
    if [[ -n $pid ]]; then
        stop_pid "$pid" "$pattern" "$name" "$sig" "$timeout"
    fi
    rm -f "$file"
}

# === HTTP ===

# wait_http URL SECONDS [PID PATTERN]: polls URL until it answers 200. Gives up
# early when PID (if given) is no longer running. False on timeout or death.
wait_http() {
    local url=$1 timeout=$2 pid=${3:-} pattern=${4:-} deadline
    deadline=$(($(date +%s) + timeout))
    while (($(date +%s) < deadline)); do
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            return 0
        fi
        if [[ -n $pid ]] && ! pid_running "$pid" "$pattern"; then
            warn "process $pid exited while waiting for $url"
            return 1
        fi
        sleep 0.2
    done
    warn "timed out after ${timeout}s waiting for $url"
    return 1
}

# === iipsrv pool ===

# start_iipsrv_pool RUN_DIR LOG_DIR IMAGES PORT...: starts one supervised iipsrv per
# PORT (deploy/local/iipsrv-supervise) in its own session. Pid files:
# RUN_DIR/iipsrv-PORT.pid (supervisor) and RUN_DIR/iipsrv-PORT.child.pid (iipsrv).
# Extra iipsrv settings are taken from the IIPSRV_* variables the supervisor reads.
# A supervisor whose pid file names a running supervisor is left alone.
start_iipsrv_pool() {
    local run_dir=$1 log_dir=$2 images=$3 port
    shift 3
    mkdir -p "$run_dir" "$log_dir"
    for port in "$@"; do
        if pidfile_running "$run_dir/iipsrv-$port.pid" iipsrv-supervise; then
            info "iipsrv :$port already running (supervisor pid $(head -n1 "$run_dir/iipsrv-$port.pid"))"
            continue
        fi
        if port_in_use "$port"; then
            die "port 127.0.0.1:$port is already in use by a process we did not start"
        fi
        IIPSRV_RUN_DIR=$run_dir IIPSRV_LOG_DIR=$log_dir IIPSRV_IMAGES=$images \
            setsid "$IIIF_REPO/deploy/local/iipsrv-supervise" "$port" \
            </dev/null >>"$log_dir/iipsrv-$port.supervise.log" 2>&1 &
    done
    # Wait until every process accepts connections.
    local deadline=$(($(date +%s) + 15))
    for port in "$@"; do
        until port_in_use "$port"; do
            if (($(date +%s) >= deadline)); then
                tail -n 20 "$log_dir/iipsrv-$port.supervise.log" "$log_dir/iipsrv-$port.log" 2>/dev/null >&2 || true
                die "iipsrv on 127.0.0.1:$port did not start listening within 15s"
            fi
            sleep 0.1
        done
    done
}

# stop_iipsrv_pool RUN_DIR PORT...: stops the supervisors (which stop their iipsrv).
stop_iipsrv_pool() {
    local run_dir=$1 port
    shift
    for port in "$@"; do
        stop_pidfile "$run_dir/iipsrv-$port.pid" iipsrv-supervise "iipsrv supervisor :$port" TERM 15
        # Normally the supervisor has stopped its iipsrv and removed this file; an iipsrv
        # left behind by a supervisor that was killed with SIGKILL is stopped here.
        stop_pidfile "$run_dir/iipsrv-$port.child.pid" iipsrv.fcgi "iipsrv :$port" TERM 10
    done
}

# === redis (the ID archive) ===

# start_redis RUN_DIR LOG_DIR PORT: a private redis-server on 127.0.0.1:PORT, no persistence
# (the local stack's archive is example data), unless the pid file names a running one.
start_redis() {
    local run_dir=$1 log_dir=$2 port=$3
    mkdir -p "$run_dir" "$log_dir"
    if pidfile_running "$run_dir/redis.pid" redis-server; then
        info "redis :$port already running (pid $(head -n1 "$run_dir/redis.pid"))"
        return
    fi
    port_in_use "$port" && die "port 127.0.0.1:$port is already in use by a process we did not start"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --daemonize yes --pidfile "$run_dir/redis.pid" --logfile "$log_dir/redis.log" >/dev/null
    local deadline=$(($(date +%s) + 10))
    until port_in_use "$port"; do
        (($(date +%s) < deadline)) || die "redis-server on 127.0.0.1:$port did not start within 10s"
        sleep 0.1
    done
}

# === gateway ===

# render_gateway_config OUT VAR_DIR LISTEN ADMIN_LISTEN PUBLIC_BASE_URL BACKEND_PORTS...
# writes OUT from deploy/local/gateway.yaml.in with absolute paths substituted; with
# GATEWAY_REDIS_URL set it adds the redirects (ID archive) and admin sections, the admin
# token being read from VAR_DIR/admin-token.
render_gateway_config() {
    local out=$1 var_dir=$2 listen=$3 admin=$4 base=$5 backends="" port
    shift 5
    for port in "$@"; do
        backends+="${backends:+, }127.0.0.1:$port"
    done
    mkdir -p "$(dirname "$out")" "$var_dir/run" "$var_dir/log"
    sed -e "s|@VAR_DIR@|$var_dir|g" \
        -e "s|@LISTEN@|$listen|g" \
        -e "s|@ADMIN_LISTEN@|$admin|g" \
        -e "s|@PUBLIC_BASE_URL@|$base|g" \
        -e "s|@BACKENDS@|$backends|g" \
        -e "s|@THREADS@|${GATEWAY_THREADS:-2}|g" \
        -e "s|@MAX_CVT@|${IIPSRV_MAX_CVT:-5000}|g" \
        -e "s|@JPEG_QUALITY@|${IIPSRV_JPEG_QUALITY:-90}|g" \
        "$IIIF_REPO/deploy/local/gateway.yaml.in" >"$out.part"
    # The ID archive and the admin API, only where a Redis is given (the local stack).
    if [[ -n ${GATEWAY_REDIS_URL:-} ]]; then
        cat >>"$out.part" <<EOF
  redirects:
    redis_url: $GATEWAY_REDIS_URL
    key_prefix: "iiif:"
  admin:
    token_file: $var_dir/admin-token
EOF
    fi
    # A derivative cache, where a cache root is given (the hot-cache benchmark, the local stack).
    if [[ -n ${GATEWAY_CACHE_ROOT:-} ]]; then
        cat >>"$out.part" <<EOF
  cache:
    root: $GATEWAY_CACHE_ROOT
    budget: ${GATEWAY_CACHE_BUDGET:-10GiB}
EOF
    fi
    # Masters from S3, where an endpoint is given (the local stack's Garage): every identifier
    # is the object key of its master in GATEWAY_S3_BUCKET.
    if [[ -n ${GATEWAY_S3_ENDPOINT:-} ]]; then
        cat >>"$out.part" <<EOF
  masters:
    s3:
      endpoint: $GATEWAY_S3_ENDPOINT
      region: garage
      force_path_style: true
      access_key_id: $GATEWAY_S3_ACCESS_KEY_ID
      secret_access_key_file: $GATEWAY_S3_SECRET_FILE
    rules:
      - match: '^(.+)\$'
        bucket: $GATEWAY_S3_BUCKET
        key: '\${1}'
EOF
    fi
    if grep -n '@[A-Z_]*@' "$out.part" >&2; then
        rm -f "$out.part"
        die "unsubstituted placeholders left in $out"
    fi
    mv "$out.part" "$out"
}

# require_gateway_bin: dies with a hint when the gateway binary is missing.
require_gateway_bin() {
    [[ -x $IIIF_GATEWAY_BIN ]] ||
        die "gateway binary $IIIF_GATEWAY_BIN not found; run: cargo build --release -p gateway"
}

# dump_logs FILE...: prints the last lines of each existing FILE to stderr.
dump_logs() {
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        printf '\n----- last lines of %s -----\n' "$f" >&2
        tail -n "${DUMP_LINES:-30}" "$f" >&2
    done
}

# === load tests (loadtest/run) ===

# raise_open_files N: raises this shell's soft open-file limit to at least N (never lowers it), so
# that processes started afterwards (load generator, nginx, gateway) inherit it; dies when the
# hard limit is below N. 1,000 connections need two descriptors each on a proxy, plus spares.
raise_open_files() {
    local wanted=$1 soft hard
    soft=$(ulimit -Sn)
    hard=$(ulimit -Hn)
    [[ $soft == unlimited ]] && return 0
    ((soft >= wanted)) && return 0
    if [[ $hard != unlimited ]] && ((hard < wanted)); then
        die "need $wanted open files but the hard limit is $hard (raise it in /etc/security/limits.conf)"
    fi
    ulimit -Sn "$wanted" || die "cannot raise the open-file limit to $wanted"
}

# child_pids PID: the direct children of PID, one per line (nginx's workers of its master).
child_pids() {
    ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true
}

# iipsrv_restarts LOG_DIR PORT...: how many times the supervisors restarted iipsrv (crashes), from
# LOG_DIR/iipsrv-PORT.supervise.log.
iipsrv_restarts() {
    local log_dir=$1 port total=0 n
    shift
    for port in "$@"; do
        n=$(grep -c 'restart #' "$log_dir/iipsrv-$port.supervise.log" 2>/dev/null || true)
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

# shellcheck shell=bash
# Shared helpers for the scripts in deploy/local/, tests/, loadtest/ and nginx/.
# Source it; it defines functions and a few variables and runs nothing else.
#
# Starting and stopping services is the launcher's job (`stack`, stack/): these helpers only
# find it, and do what is left to shell scripts (messages, timing, limits).
#
# Variables (all can be set by the caller before sourcing):
#   IIIF_REPO   the repository root (derived from this file's location)
#   IIIF_VAR    state directory for images, logs, the venv (default $IIIF_REPO/var)
#   STACK_BIN   the launcher (default: the release build, ${CARGO_TARGET_DIR:-target}/release/stack);
#               it knows every other binary's path (`stack which NAME`, `stack binaries`)

IIIF_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IIIF_VAR=${IIIF_VAR:-$IIIF_REPO/var}
IIIF_VENV=${IIIF_VENV:-$IIIF_VAR/venv}
STACK_BIN=${STACK_BIN:-${CARGO_TARGET_DIR:-$IIIF_REPO/target}/release/stack}

# === messages ===

info() { printf '%s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# heading TEXT: a visible progress heading on stdout.
heading() { printf '\n==> %s\n' "$*"; }

# expect_pixels FILE WIDTH HEIGHT LABEL: dies unless the image FILE decodes to WIDTHxHEIGHT.
expect_pixels() {
    local file=$1 width=$2 height=$3 label=$4 w h
    w=$(vipsheader -f width "$file") h=$(vipsheader -f height "$file")
    [[ $w == "$width" && $h == "$height" ]] || die "$label: ${w}x$h, expected ${width}x$height"
    info "$label: ${w}x$h, $(stat -c %s "$file") bytes"
}

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

# === the launcher ===

# require_stack_bin: dies with a hint when the launcher is not built.
require_stack_bin() {
    [[ -x $STACK_BIN ]] || die "the launcher $STACK_BIN is not built; run: cargo build --release -p stack"
}

# stack_which NAME: the path of an external program as the launcher finds it (dies with the
# launcher's hint when it is missing).
stack_which() {
    "$STACK_BIN" which "$1"
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

# Docker's daemon: started in the background when installed but not running (machines
# without systemd, as CI).
ensure_docker() {
    command -v docker >/dev/null || { echo "docker is not installed (deploy/local/install-deps)" >&2; return 1; }
    docker info >/dev/null 2>&1 && return 0
    command -v dockerd >/dev/null || { echo "the Docker daemon is not running and dockerd is not installed" >&2; return 1; }
    echo "starting dockerd (log: /var/log/dockerd.log)"
    nohup dockerd >/var/log/dockerd.log 2>&1 &
    local deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "dockerd did not answer within 60 s (/var/log/dockerd.log)" >&2; return 1; }
        sleep 1
    done
}

# podman with runc and the limits this kind of machine allows (crun fails here).
ensure_podman() {
    command -v podman >/dev/null || { echo "podman is not installed (deploy/local/install-deps)" >&2; return 1; }
    local conf=/etc/containers/containers.conf.d/iiif.conf
    if [[ ! -s $conf ]]; then
        mkdir -p "$(dirname "$conf")"
        printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' >"$conf"
    fi
}

# requests_and_failures RESULT: "REQUESTS FAILED" from the RESULT line that
# loadtest/wrk/urls.lua prints (failed: non-2xx/3xx answers and every socket error).
requests_and_failures() {
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["requests"], r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"])' "$1"
}

# free_ports N: N free TCP ports on 127.0.0.1, space-separated.
free_ports() {
    python3 -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' "$1"
}

# to_podman IMAGE: copies Docker's IMAGE into podman's own store unless it holds the same one.
to_podman() {
    local image=$1 name=$1
    [[ $name == */* ]] || name=localhost/$name
    if [[ $(podman image inspect -f '{{.Id}}' "$name" 2>/dev/null) != "$(docker image inspect -f '{{.Id}}' "$image" | sed 's/^sha256://')" ]]; then
        docker save "$image" | podman load -q >/dev/null
        info "copied $image into podman's store"
    fi
}

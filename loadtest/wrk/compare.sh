#!/usr/bin/env bash
# loadtest/wrk/compare.sh: the gateway against the nginx -> iipsrv baseline, both in
# front of the SAME iipsrv processes, with identical request lists (iipsrv-baseline.md §5).
#
# Scenarios (each: a 3 s warm-up that is not recorded, then wrk -t2 -c10 -d20s --latency):
#   tiles   random OpenSeadragon-style tiles of the 100 Mpx image `large`
#           baseline /iiif/large/x,y,w,h/w',/0/default.jpg    gateway /iiif/2/large/... (same)
#           and the v3 form on the gateway: /iiif/3/large/x,y,w,h/w',h'/0/default.jpg
#   thumbs  {id}/full/!128,128/0/default.jpg over all sample images (v2 on both, v3 on the gateway)
#   hot     the derivative cache (docs/caching.md): the first HOT_URLS tiles and all thumbnails
#           are fetched once through a second gateway with a cache ("cached"), the bytes saved as
#           files that nginx serves statically ("static", nginx/static-files.conf), then both are
#           measured with the same lists, and the uncached gateway too ("gateway")
# Prints a Markdown table (req/s, p50, p99, errors/non-2xx, CPU per request of the front
# process and of iipsrv) and the gateway/baseline ratios; also saved under var/loadtest/.
#
# Everything listens on 127.0.0.1 only; every wrk run is bounded by -d and `timeout`.
#
# Environment (defaults in brackets):
#   DURATION [20]  WARMUP [3]  THREADS [2]  CONNECTIONS [10]  SEED [20240601]
#   SCENARIOS ["tiles thumbs"]
#   TARGETS ["baseline gateway"]: "baseline" alone needs no gateway binary; the hot scenario
#     adds "cached" and "static" by itself
#   HOT_URLS [2000]: distinct tiles in the hot scenario
#   IIPSRV_PORTS: reuse these running iipsrv processes (they must have URI_MAP='iiif=>IIIF')
#     instead of starting two; the nginx/gateway/admin ports are always free random ones
#   IIPSRV_JPEG_QUALITY [90]: JPEG quality of the iipsrv pool it starts (the baseline doc
#     measured iipsrv's default, 75)
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../deploy/local/lib.sh"

duration=${DURATION:-20}
warmup=${WARMUP:-3}
threads=${THREADS:-2}
connections=${CONNECTIONS:-10}
seed=${SEED:-20240601}
read -r -a scenarios <<<"${SCENARIOS:-tiles thumbs}"
read -r -a targets <<<"${TARGETS:-baseline gateway}"
hot_urls=${HOT_URLS:-2000}
if [[ " ${scenarios[*]} " == *" hot "* ]]; then
    for t in gateway cached static; do
        [[ " ${targets[*]} " == *" $t "* ]] || targets+=("$t")
    done
fi
here=$IIIF_REPO/loadtest/wrk
images=$IIIF_VAR/images
stamp=$(date '+%Y%m%d-%H%M%S')
out_dir=$IIIF_VAR/loadtest/$stamp
work=$out_dir/work
mkdir -p "$work"/{run,log}

want_gateway=
[[ " ${targets[*]} " == *" gateway "* ]] && want_gateway=1
command -v wrk >/dev/null || die "wrk not found (run deploy/local/install-deps)"
[[ -n $want_gateway ]] && require_gateway_bin

heading "sample images (with the 100 Mpx 'large')"
"$IIIF_REPO/deploy/local/install-deps"
"$IIIF_REPO/deploy/local/make-samples" --bench "$images"

# === the stack ===

own_iipsrv_ports=()
gateway_pid=
cached_pid=
cleanup() {
    local rc=$?
    set +e
    [[ -n $gateway_pid ]] && stop_pid "$gateway_pid" iiif-gateway gateway TERM 20
    [[ -n $cached_pid ]] && stop_pid "$cached_pid" iiif-gateway "cached gateway" TERM 20
    NGINX_PREFIX=$work/nginx "$IIIF_REPO/nginx/baseline" stop
    NGINX_PREFIX=$work/nginx-static "$IIIF_REPO/nginx/baseline" stop
    if ((${#own_iipsrv_ports[@]} > 0)); then
        stop_iipsrv_pool "$work/run" "${own_iipsrv_ports[@]}"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mapfile -t ports < <(free_ports 8)
if [[ -n ${IIPSRV_PORTS:-} ]]; then
    read -r -a iipsrv_ports <<<"$IIPSRV_PORTS"
    for p in "${iipsrv_ports[@]}"; do
        port_in_use "$p" || die "IIPSRV_PORTS: nothing listens on 127.0.0.1:$p"
    done
    heading "reusing iipsrv on ${iipsrv_ports[*]}"
else
    iipsrv_ports=("${ports[0]}" "${ports[1]}")
    own_iipsrv_ports=("${iipsrv_ports[@]}")
    heading "starting iipsrv on ${iipsrv_ports[*]} (URI_MAP='iiif=>IIIF', CORS='*', as the baseline)"
    IIPSRV_URI_MAP='iiif=>IIIF' IIPSRV_CORS='*' \
        start_iipsrv_pool "$work/run" "$work/log" "$images" "${iipsrv_ports[@]}"
fi
nginx_port=${ports[2]}
gw_port=${ports[3]}
admin_port=${ports[4]}
cached_port=${ports[5]}
cached_admin_port=${ports[6]}
static_port=${ports[7]}

declare -A base_url
if [[ " ${targets[*]} " == *" baseline "* ]]; then
    heading "nginx baseline on $nginx_port"
    NGINX_PORT=$nginx_port IIPSRV_PORTS="${iipsrv_ports[*]}" NGINX_PREFIX=$work/nginx \
        "$IIIF_REPO/nginx/baseline" start
    base_url[baseline]=http://127.0.0.1:$nginx_port
fi
# start_gateway NAME PORT ADMIN_PORT: a gateway on the shared iipsrv processes, its config and
# state in $work/NAME (GATEWAY_CACHE_ROOT in the environment adds a derivative cache), its log
# in $work/log/NAME.log; sets started_pid once it is ready.
start_gateway() {
    local name=$1 port=$2 admin=$3 pid
    render_gateway_config "$work/$name/gateway.yaml" "$work/$name" "127.0.0.1:$port" \
        "127.0.0.1:$admin" "http://127.0.0.1:$port" "${iipsrv_ports[@]}"
    RUST_LOG=${RUST_LOG:-warn} "$IIIF_GATEWAY_BIN" -c "$work/$name/gateway.yaml" </dev/null \
        >"$work/log/$name.log" 2>&1 &
    pid=$!
    wait_http "http://127.0.0.1:$admin/readyz" 60 "$pid" iiif-gateway || {
        dump_logs "$work/log/$name.log"
        die "the $name gateway did not become ready"
    }
    started_pid=$pid
    base_url[$name]=http://127.0.0.1:$port
}

if [[ -n $want_gateway ]]; then
    heading "gateway on $gw_port"
    start_gateway gateway "$gw_port" "$admin_port"
    gateway_pid=$started_pid
fi
if [[ " ${targets[*]} " == *" cached "* ]]; then
    heading "gateway with a derivative cache on $cached_port"
    GATEWAY_CACHE_ROOT=$work/cache start_gateway cached "$cached_port" "$cached_admin_port"
    cached_pid=$started_pid
fi
if [[ " ${targets[*]} " == *" static "* ]]; then
    heading "nginx serving static files on $static_port"
    mkdir -p "$work/static"
    NGINX_PORT=$static_port NGINX_PREFIX=$work/nginx-static NGINX_STATIC_ROOT=$work/static \
        "$IIIF_REPO/nginx/baseline" start
    base_url[static]=http://127.0.0.1:$static_port
fi

# === request lists (same seed -> same requests for every target) ===

large_w=$(vipsheader -f width "$images/large")
large_h=$(vipsheader -f height "$images/large")
python3 "$here/gen-urls.py" tiles --id large --width "$large_w" --height "$large_h" --form v2 \
    --seed "$seed" >"$work/tiles-v2.txt"
python3 "$here/gen-urls.py" tiles --id large --width "$large_w" --height "$large_h" --form v3 \
    --seed "$seed" >"$work/tiles-v3.txt"
thumb_ids=(astronaut hubble odd-1001x777 67352ccc-d1b0-11e1-89ae-279075081939 large
    'Zo%C3%AB%20caf%C3%A9' collection%2Fastronaut)
python3 "$here/gen-urls.py" thumbs "${thumb_ids[@]/#/--id=}" --seed "$seed" >"$work/thumbs.txt"

# Every URL kind must work on every target before anything is measured.
check_urls() {
    local url=$1 list=$2 path code
    for path in $(head -n 3 "$list") $(tail -n 2 "$list"); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url$path")
        [[ $code == 200 ]] || die "GET $url$path answered $code"
    done
}

# === measuring ===

clk_tck=$(getconf CLK_TCK)

# cpu_ticks PID...: utime+stime of the processes (threads included).
cpu_ticks() {
    local pid total=0 t
    for pid in "$@"; do
        t=$(sed -E 's/^.*\) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# children_of PID: direct children (nginx workers of the master).
children_of() {
    local stat
    for stat in /proc/[0-9]*/stat; do
        [[ $(sed -E 's/^.*\) //' "$stat" 2>/dev/null | awk '{ print $2 }') == "$1" ]] && basename "$(dirname "$stat")"
    done
    return 0
}

front_pids() {
    # shellcheck disable=SC2046 # the list of worker pids is split on purpose
    case $1 in
    baseline)
        local master
        master=$(cat "$work/nginx/run/nginx.pid")
        echo "$master" $(children_of "$master")
        ;;
    gateway) echo "$gateway_pid" ;;
    cached) echo "$cached_pid" ;;
    static)
        local master
        master=$(cat "$work/nginx-static/run/nginx.pid")
        echo "$master" $(children_of "$master")
        ;;
    esac
}

iipsrv_pids() {
    local p
    for p in "${iipsrv_ports[@]}"; do
        [[ -s $work/run/iipsrv-$p.child.pid ]] && cat "$work/run/iipsrv-$p.child.pid"
        [[ -s $IIIF_VAR/run/iipsrv-$p.child.pid ]] && cat "$IIIF_VAR/run/iipsrv-$p.child.pid"
    done
    return 0
}

# run_wrk NAME TARGET PREFIX LIST
run_wrk() {
    local name=$1 target=$2 prefix=$3 list=$4 url=${base_url[$2]} log json front iip f0 i0 f1 i1
    log=$out_dir/$name-$target.txt
    check_urls "$url$prefix" "$list"
    timeout $((warmup + 30)) wrk -t"$threads" -c"$connections" -d"${warmup}s" --timeout 5s \
        -s "$here/urls.lua" "$url" -- "$list" "$prefix" >/dev/null
    read -r -a front <<<"$(front_pids "$target")"
    read -r -a iip <<<"$(iipsrv_pids | tr '\n' ' ')"
    f0=$(cpu_ticks "${front[@]}")
    i0=$(cpu_ticks "${iip[@]}")
    timeout $((duration + 30)) wrk -t"$threads" -c"$connections" -d"${duration}s" --timeout 5s --latency \
        -s "$here/urls.lua" "$url" -- "$list" "$prefix" >"$log"
    f1=$(cpu_ticks "${front[@]}")
    i1=$(cpu_ticks "${iip[@]}")
    json=$(sed -n 's/^RESULT //p' "$log")
    [[ -n $json ]] || die "no RESULT line in $log"
    python3 - "$json" "$name" "$target" "$((f1 - f0))" "$((i1 - i0))" "$clk_tck" >>"$work/rows.tsv" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
name, target, front, iip, tck = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
n = max(r["requests"], 1)
rps = r["requests"] / (r["duration_us"] / 1e6)
socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
ms_per = lambda ticks: ticks * 1000.0 / tck / n
print("\t".join([name, target, f"{rps:.0f}", f"{r['p50_us'] / 1000:.2f}", f"{r['p99_us'] / 1000:.2f}",
                 f"{socket_errors}/{r['status']}", f"{ms_per(front):.3f}", f"{ms_per(iip):.3f}"]))
EOF
    tail -n 1 "$work/rows.tsv" | awk -F'\t' '{ printf "%-10s %-9s %7s req/s  p50 %6s ms  p99 %6s ms  errors/non-2xx %s\n", $1, $2, $3, $4, $5, $6 }'
}

# fill_hot_copies PREFIX LIST...: every path once through the cached gateway (which stores
# it), and its bytes as a file at the same URL path under the static root. Paths are the
# percent-encoded URL paths; nginx decodes them, so the files get decoded names.
fill_hot_copies() {
    local prefix=$1
    shift
    python3 - "${base_url[cached]}" "$prefix" "$work/static" "$@" <<'EOF'
import os, sys, urllib.parse, urllib.request
base, prefix, root, lists = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
count = 0
seen = set()
for name in lists:
    for line in open(name):
        path = line.strip()
        if not path or path in seen:
            continue
        seen.add(path)
        with urllib.request.urlopen(base + prefix + path, timeout=30) as response:
            body = response.read()
        target = os.path.join(root, urllib.parse.unquote(prefix + path).lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(body)
        count += 1
print(f"filled {count} derivatives", file=sys.stderr)
EOF
}

: >"$work/rows.tsv"
for scenario in "${scenarios[@]}"; do
    case $scenario in
    tiles)
        if [[ -n ${base_url[baseline]:-} ]]; then
            heading "tiles: baseline"
            run_wrk tiles-v2 baseline /iiif/ "$work/tiles-v2.txt"
        fi
        if [[ -n $want_gateway ]]; then
            heading "tiles: gateway v2 and v3"
            run_wrk tiles-v2 gateway /iiif/2/ "$work/tiles-v2.txt"
            run_wrk tiles-v3 gateway /iiif/3/ "$work/tiles-v3.txt"
        fi
        ;;
    thumbs)
        if [[ -n ${base_url[baseline]:-} ]]; then
            heading "thumbs: baseline"
            run_wrk thumbs-v2 baseline /iiif/ "$work/thumbs.txt"
        fi
        if [[ -n $want_gateway ]]; then
            heading "thumbs: gateway v2 and v3"
            run_wrk thumbs-v2 gateway /iiif/2/ "$work/thumbs.txt"
            run_wrk thumbs-v3 gateway /iiif/3/ "$work/thumbs.txt"
        fi
        ;;
    hot)
        head -n "$hot_urls" "$work/tiles-v2.txt" >"$work/hot-tiles.txt"
        heading "hot: filling the cache and the static copy ($(sort -u "$work/hot-tiles.txt" | wc -l) tiles, $(sort -u "$work/thumbs.txt" | wc -l) thumbnails)"
        # The other scenarios may have kept the shared iipsrv processes too busy for this
        # gateway's health probes; start once it is ready again.
        wait_http "http://127.0.0.1:$cached_admin_port/readyz" 30 "$cached_pid" iiif-gateway ||
            die "the cached gateway is not ready"
        fill_hot_copies /iiif/2/ "$work/hot-tiles.txt" "$work/thumbs.txt"
        for target in static cached gateway; do
            heading "hot: $target"
            run_wrk hot-tiles "$target" /iiif/2/ "$work/hot-tiles.txt"
            run_wrk hot-thumbs "$target" /iiif/2/ "$work/thumbs.txt"
        done
        ;;
    *) die "unknown scenario $scenario" ;;
    esac
done

# === report ===

report=$out_dir/compare.md
python3 - "$work/rows.tsv" "$threads" "$connections" "$duration" "$warmup" "$seed" >"$report" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
threads, conns, duration, warmup, seed = sys.argv[2:7]
print(f"wrk -t{threads} -c{conns} -d{duration}s --latency after a {warmup}s warm-up; seed {seed}; "
      "same iipsrv processes for every target.\n")
print("| scenario | target | req/s | p50 ms | p99 ms | errors/non-2xx | front CPU ms/req | iipsrv CPU ms/req |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
# Each scenario's reference: the nginx -> iipsrv baseline, or for the hot cache the static
# files; the cached gateway is also compared with the uncached one.
def reference(scenario):
    return "static" if scenario.startswith("hot") else "baseline"
by_key = {(r[0], r[1]): r for r in rows}
def family(scenario):
    return scenario if scenario.startswith("hot") else scenario.split("-")[0]
refs = {}
for r in rows:
    if r[1] == reference(r[0]):
        refs[family(r[0])] = r
ratios = []
def ratio_row(r, b, label):
    f = lambda i: float(r[i]) / float(b[i]) if float(b[i]) else float("nan")
    return f"| {r[0]} | {label} | {f(2):.2f} | {f(3):.2f} | {f(4):.2f} |"
for r in rows:
    b = refs.get(family(r[0]))
    if r[1] == reference(r[0]) or b is None:
        continue
    ratios.append(ratio_row(r, b, f"{r[1]} / {b[1]}"))
    if r[1] == "cached" and (r[0], "gateway") in by_key:
        ratios.append(ratio_row(r, by_key[(r[0], "gateway")], "cached / gateway"))
if ratios:
    print("\nRatios (req/s: higher is better; latency: lower is better):\n")
    print("| scenario | comparison | req/s | p50 | p99 |")
    print("|---|---|---|---|---|")
    print("\n".join(ratios))
EOF
heading "results ($report)"
cat "$report"

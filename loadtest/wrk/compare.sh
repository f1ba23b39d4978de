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
#   contention  the gateway alone, masters from Garage through its cache mount, derivative
#           cache off: the tiles list alone, then while 50 clients loop over worst-case renders
#           (upscaled, odd angles, costly formats), then while 100 clients ask for 300
#           identifiers S3 does not have; a scenario of its own (no baseline: nginx -> iipsrv
#           cannot read masters from S3)
# Prints a Markdown table (req/s, p50, p99, errors/non-2xx, CPU per request of the front
# process and of iipsrv) and the gateway/baseline ratios; also saved under var/loadtest/.
# The launcher (`stack up --detach`, stack/) starts and stops the servers; `loadtest wrk …`
# (loadtest/src/wrk.rs) measures each run and writes the report.
#
# Everything listens on 127.0.0.1 only; every wrk run is bounded by -d and `timeout`.
#
# Environment (defaults in brackets):
#   DURATION [20]  WARMUP [3]  THREADS [2]  CONNECTIONS [10]  SEED [20240601]
#   SCENARIOS ["tiles thumbs"]
#   TARGETS ["baseline gateway"]: "baseline" alone needs no gateway binary; the hot scenario
#     adds "cached" and "static" by itself
#   HOT_URLS [2000]: distinct tiles in the hot scenario
#   IIPSRV_PORTS: reuse these running iipsrv processes (they must have URI_MAP='iiif=>IIIF', e.g.
#     IIPSRV_URI_MAP=1 deploy/local/up) instead of starting two; the nginx/gateway/admin ports
#     are always free random ones
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
if [[ " ${scenarios[*]} " == *" contention "* ]]; then
    ((${#scenarios[@]} == 1)) || die "the contention scenario runs alone (SCENARIOS=contention)"
    targets=(gateway)
fi
here=$IIIF_REPO/loadtest/wrk
images=$IIIF_VAR/images
stamp=$(date '+%Y%m%d-%H%M%S')
out_dir=$IIIF_VAR/loadtest/$stamp
work=$out_dir/work
mkdir -p "$work"

has_target() { [[ " ${targets[*]} " == *" $1 "* ]]; }
command -v wrk >/dev/null || die "wrk not found (run deploy/local/install-deps)"
require_stack_bin
loadtest_bin=$(stack_which loadtest)

heading "sample images (with the 100 Mpx 'large')"
"$IIIF_REPO/deploy/local/install-deps"
"$IIIF_REPO/deploy/local/make-samples" --bench "$images"

# === the stack ===

stack_started=
cleanup() {
    local rc=$?
    set +e
    [[ -n $stack_started ]] && "$STACK_BIN" down --dir "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stack_args=(--dir "$work" --images "$images" --uri-map --log-filter "${RUST_LOG:-warn}")
if [[ -n ${IIPSRV_PORTS:-} ]]; then
    read -r -a iipsrv_ports <<<"$IIPSRV_PORTS"
    stack_args+=(--iipsrv-addresses "${iipsrv_ports[*]/#/127.0.0.1:}")
    heading "reusing iipsrv on ${iipsrv_ports[*]}"
else
    stack_args+=(--iipsrv 2)
fi
has_target baseline && stack_args+=(--baseline)
[[ ${scenarios[*]} == contention ]] && stack_args+=(--garage --no-derivatives)
gateways=()
has_target gateway && gateways+=(--gateway gateway)
has_target cached && gateways+=(--gateway cached:cache)
((${#gateways[@]} > 0)) || gateways=(--no-gateway)
stack_args+=("${gateways[@]}")
if has_target static; then
    mkdir -p "$work/static"
    stack_args+=(--static "$work/static")
fi
heading "the stack: ${targets[*]} in front of the same iipsrv processes (URI_MAP='iiif=>IIIF', CORS='*')"
stack_started=1
"$STACK_BIN" up --detach "${stack_args[@]}" >/dev/null || die "the stack did not start (logs in $work/log)"
eval "$("$STACK_BIN" env --dir "$work")"
[[ -n ${iipsrv_ports[*]:-} ]] || read -r -a iipsrv_ports <<<"$STACK_IIPSRV_PORTS"

declare -A base_url
has_target baseline && base_url[baseline]=$STACK_BASELINE_URL
has_target gateway && base_url[gateway]=$STACK_GATEWAY_URL
has_target cached && base_url[cached]=$STACK_CACHED_URL
has_target static && base_url[static]=$STACK_STATIC_URL
for target in "${targets[@]}"; do
    info "$target: ${base_url[$target]}"
done

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

# === measuring (loadtest wrk measure: the servers' CPU around each run, one row each) ===

# front_args TARGET: the processes whose CPU is the front's (nginx: master and workers).
front_args() {
    case $1 in
    baseline) echo "--front-tree $STACK_BASELINE_PID" ;;
    gateway) echo "--front $STACK_GATEWAY_PID" ;;
    cached) echo "--front $STACK_CACHED_PID" ;;
    static) echo "--front-tree $STACK_STATIC_PID" ;;
    esac
}

# iipsrv_args: the iipsrv processes as they are now (run/iipsrv-PORT.pid follows restarts; a
# reused pool is deploy/local/up's, in var/run).
iipsrv_args() {
    local p file
    for p in "${iipsrv_ports[@]}"; do
        for file in "$work/run/iipsrv-$p.pid" "$IIIF_VAR/run/iipsrv-$p.pid"; do
            [[ -s $file ]] && echo "--iipsrv $(cat "$file")"
        done
    done
    return 0
}

# run_wrk NAME TARGET PREFIX LIST
run_wrk() {
    local name=$1 target=$2 prefix=$3 list=$4 url=${base_url[$2]}
    check_urls "$url$prefix" "$list"
    timeout $((warmup + 30)) wrk -t"$threads" -c"$connections" -d"${warmup}s" --timeout 5s \
        -s "$here/urls.lua" "$url" -- "$list" "$prefix" >/dev/null
    # shellcheck disable=SC2046 # the pid options are split on purpose
    "$loadtest_bin" wrk measure --scenario "$name" --target "$target" --rows "$work/rows.jsonl" \
        --log "$out_dir/$name-$target.txt" $(front_args "$target") $(iipsrv_args) -- \
        timeout $((duration + 30)) wrk -t"$threads" -c"$connections" -d"${duration}s" --timeout 5s \
        --latency -s "$here/urls.lua" "$url" -- "$list" "$prefix"
}

# with_background CONNECTIONS LIST COMMAND...: COMMAND while wrk keeps CONNECTIONS clients busy
# with the v3 paths of LIST on the gateway (their own answers, 4xx and 503 included, are
# summed up in $out_dir/background-*.txt, not in the table).
with_background() {
    local clients=$1 list=$2 bg
    shift 2
    # Stopped with SIGINT once COMMAND is done (wrk then prints its summary). With job control
    # on, the background job does not start with SIGINT ignored; `timeout` passes it on.
    set -m
    timeout $((warmup + duration + 120)) wrk -t1 -c"$clients" -d$((warmup + duration + 100))s \
        --timeout 10s -s "$here/urls.lua" "${base_url[gateway]}" -- "$list" /iiif/3/ \
        >"$out_dir/background-$(basename "$list" .txt).txt" 2>&1 &
    bg=$!
    set +m
    sleep 1
    "$@"
    kill -INT "$bg" 2>/dev/null || true
    wait "$bg" || true
}

: >"$work/rows.jsonl"
for scenario in "${scenarios[@]}"; do
    case $scenario in
    tiles)
        if [[ -n ${base_url[baseline]:-} ]]; then
            heading "tiles: baseline"
            run_wrk tiles-v2 baseline /iiif/ "$work/tiles-v2.txt"
        fi
        if has_target gateway; then
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
        if has_target gateway; then
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
        deadline=$((SECONDS + 30))
        until curl -fsS -o /dev/null --max-time 2 "$STACK_CACHED_ADMIN_URL/readyz"; do
            ((SECONDS < deadline)) || die "the cached gateway is not ready"
            sleep 0.2
        done
        "$loadtest_bin" wrk fill --base "$STACK_CACHED_URL" --prefix /iiif/2/ --root "$work/static" \
            "$work/hot-tiles.txt" "$work/thumbs.txt"
        for target in static cached gateway; do
            heading "hot: $target"
            run_wrk hot-tiles "$target" /iiif/2/ "$work/hot-tiles.txt"
            run_wrk hot-thumbs "$target" /iiif/2/ "$work/thumbs.txt"
        done
        ;;
    contention)
        formats=(tif gif png webp jpg)
        for i in $(seq 0 49); do
            printf 'astronaut/full/^%d,/%d.5/default.%s\n' $((1200 + 40 * i)) $((11 + i)) "${formats[i % 5]}"
        done >"$work/worst-case.txt"
        for i in $(seq 0 299); do
            printf 'missing-%d/full/128,/0/default.jpg\n' "$i"
        done >"$work/unknown-ids.txt"
        heading "contention: tiles alone"
        run_wrk tiles-alone gateway /iiif/2/ "$work/tiles-v2.txt"
        heading "contention: tiles while 50 clients ask for worst-case renders"
        with_background 50 "$work/worst-case.txt" run_wrk tiles-during-renders gateway /iiif/2/ "$work/tiles-v2.txt"
        heading "contention: tiles while 100 clients ask for unknown identifiers"
        with_background 100 "$work/unknown-ids.txt" run_wrk tiles-during-flood gateway /iiif/2/ "$work/tiles-v2.txt"
        ;;
    *) die "unknown scenario $scenario" ;;
    esac
done

# === report ===

report=$out_dir/compare.md
"$loadtest_bin" wrk report --rows "$work/rows.jsonl" --threads "$threads" --connections "$connections" \
    --duration "$duration" --warmup "$warmup" --seed "$seed" >"$report"
heading "results ($report)"
cat "$report"

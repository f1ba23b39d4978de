#!/usr/bin/env bash
# loadtest/first-tile.sh [ROUNDS]: what a viewer waits for when it opens an image whose access
# master is only in S3 (docs/masters.md), and how fast lazyfetch downloads compared with a plain
# S3 GET of the same object, in the same run (docs/benchmarks.md).
#
# Starts its own single-node Garage, two iipsrv processes reading an empty cache mount and a
# gateway with masters from Garage (all on free loopback ports, under var/loadtest/<time>/),
# uploads the 100 Mpx sample `large` (deploy/local/make-samples --bench), then for each round
# (default 3), alternating the order of the two measurements:
#   s3 GET        curl of the object from Garage straight to /dev/null (SigV4, same credentials)
#   first tile    purge the image (admin API), then GET its info.json and one 256-px tile as a
#                 viewer does: time to info.json, time to the tile, total
#                 and lazyfetch's own download time inside the gateway (the growth of
#                 iiif_masters_fetch_duration_seconds_sum: GET, write, fsync, rename)
# Prints a Markdown table (median of the rounds) and writes it to the results directory.
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../deploy/local/lib.sh"
# shellcheck source=deploy/local/garage.sh
. "$IIIF_REPO/deploy/local/garage.sh"

rounds=${1:-3}
images=$IIIF_VAR/images
out_dir=$IIIF_VAR/loadtest/first-tile-$(date '+%Y%m%d-%H%M%S')
work=$out_dir/work
mkdir -p "$work"/{run,log}
bucket=masters

require_gateway_bin
"$IIIF_REPO/deploy/local/make-samples" --bench "$images" >/dev/null
[[ -s $images/large ]] || die "$images/large missing (deploy/local/make-samples --bench)"

mapfile -t ports < <(free_ports 7)
iipsrv_ports=("${ports[0]}" "${ports[1]}")
gw_port=${ports[2]}
admin_port=${ports[3]}
gateway_pid=
cleanup() {
    local rc=$?
    set +e
    [[ -n $gateway_pid ]] && stop_pid "$gateway_pid" iiif-gateway gateway TERM 20
    stop_iipsrv_pool "$work/run" "${iipsrv_ports[@]}"
    garage_stop "$work/garage"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

heading "garage, the 100 Mpx master ($(du -h "$images/large" | cut -f1)) in bucket $bucket"
garage_start "$work/garage" "${ports[4]}" "${ports[5]}" "${ports[6]}" "$bucket"
garage_put "$work/garage" "$bucket" "$images/large" large
endpoint=$(garage_endpoint "$work/garage")
credentials="$(cat "$work/garage/access-key-id"):$(cat "$work/garage/secret-access-key")"

heading "iipsrv and the gateway (cache mount $work/cache, empty)"
mkdir -p "$work/cache"
start_iipsrv_pool "$work/run" "$work/log" "$work/cache" "${iipsrv_ports[@]}"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/admin-token"
GATEWAY_CACHE_ROOT=$work/cache GATEWAY_S3_ENDPOINT=$endpoint GATEWAY_S3_BUCKET=$bucket \
    GATEWAY_S3_ACCESS_KEY_ID=$(cat "$work/garage/access-key-id") \
    GATEWAY_S3_SECRET_FILE=$work/garage/secret-access-key \
    render_gateway_config "$work/gateway.yaml" "$work" "127.0.0.1:$gw_port" "127.0.0.1:$admin_port" \
    "http://127.0.0.1:$gw_port" "${iipsrv_ports[@]}"
printf '  admin:\n    token_file: %s\n' "$work/admin-token" >>"$work/gateway.yaml"
RUST_LOG=${RUST_LOG:-warn} "$IIIF_GATEWAY_BIN" -c "$work/gateway.yaml" </dev/null >"$work/log/gateway.log" 2>&1 &
gateway_pid=$!
wait_http "http://127.0.0.1:$admin_port/readyz" 60 "$gateway_pid" iiif-gateway || {
    dump_logs "$work/log/gateway.log"
    die "the gateway did not become ready"
}
gw=http://127.0.0.1:$gw_port/iiif/3/large

purge() {
    curl -sS -o /dev/null -X DELETE -H "Authorization: Bearer $(cat "$work/admin-token")" \
        "http://127.0.0.1:$admin_port/admin/images/large" || true
    [[ -z $(find "$work/cache/masters" -type f 2>/dev/null) ]] || die "purge left the master in place"
}

s3_get() {
    curl -fsS -o /dev/null -w '%{time_total} %{speed_download}\n' --aws-sigv4 "aws:amz:garage:s3" \
        --user "$credentials" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$endpoint/$bucket/large"
}

viewer_open() {
    local info tile
    info=$(curl -fsS -o /dev/null -w '%{time_total}' "$gw/info.json")
    tile=$(curl -fsS -o /dev/null -w '%{time_total}' "$gw/4096,4096,256,256/256,256/0/default.jpg")
    echo "$info $tile"
}

fetch_seconds() {
    curl -fsS "http://127.0.0.1:$admin_port/metrics" |
        awk '$1 == "iiif_masters_fetch_duration_seconds_sum" { s = $2 } END { print s + 0 }'
}

size=$(stat -c %s "$images/large")
: >"$work/rounds.tsv"
for ((round = 1; round <= rounds; round++)); do
    heading "round $round of $rounds"
    if ((round % 2)); then
        read -r s3_time s3_speed < <(s3_get)
    fi
    purge
    f0=$(fetch_seconds)
    read -r info_time tile_time < <(viewer_open)
    f1=$(fetch_seconds)
    if ((round % 2 == 0)); then
        read -r s3_time s3_speed < <(s3_get)
    fi
    warm_time=$(python3 -c "print($f1 - $f0)")
    printf '%s\t%s\t%s\t%s\t%s\n' "$s3_time" "$s3_speed" "$info_time" "$tile_time" "$warm_time" | tee -a "$work/rounds.tsv"
done

report=$out_dir/first-tile.md
python3 - "$work/rounds.tsv" "$size" "$rounds" >"$report" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split("\t"))) for l in open(sys.argv[1]) if l.strip()]
size, rounds = int(sys.argv[2]), sys.argv[3]
med = lambda i: statistics.median(r[i] for r in rows)
mb = size / 1e6
s3, info, tile, warm = med(0), med(2), med(3), med(4)
print(f"100 Mpx master `large`: {mb:.1f} MB; Garage on loopback; median of {rounds} rounds.\n")
print("| measurement | median s | MB/s |")
print("|---|---|---|")
print(f"| plain S3 GET (curl, to /dev/null) | {s3:.3f} | {mb / s3:.0f} |")
print(f"| lazyfetch download inside the gateway (GET, write, fsync, rename) | {warm:.3f} | {mb / warm:.0f} |")
print(f"| viewer: info.json of the uncached image (download + iipsrv facts) | {info:.3f} | |")
print(f"| viewer: then one 256-px tile | {tile:.3f} | |")
print(f"| **time to first tile** (info.json + tile) | **{info + tile:.3f}** | |")
print(f"\nlazyfetch / plain S3 GET throughput: **{s3 / warm:.2f}**")
EOF
heading "results ($report)"
cat "$report"

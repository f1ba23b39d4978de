#!/usr/bin/env bash
# loadtest/first-tile.sh [ROUNDS]: what a viewer waits for when it opens an image whose access
# master is only in S3 (docs/masters.md), and how fast lazyfetch downloads compared with a plain
# S3 GET of the same object, in the same run (docs/benchmarks.md).
#
# The launcher (`stack up --detach`, stack/) starts a single-node Garage holding the 100 Mpx
# sample `large` (deploy/local/make-samples --bench), two iipsrv processes reading an empty cache
# mount and a gateway with masters from Garage (all on free loopback ports, under
# var/loadtest/<time>/), then for each round
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

rounds=${1:-3}
images=$IIIF_VAR/images
out_dir=$IIIF_VAR/loadtest/first-tile-$(date '+%Y%m%d-%H%M%S')
work=$out_dir/work
mkdir -p "$work"

require_stack_bin
"$IIIF_REPO/deploy/local/make-samples" --bench "$images" >/dev/null
[[ -s $images/large ]] || die "$images/large missing (deploy/local/make-samples --bench)"

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

heading "garage with the 100 Mpx master ($(du -h "$images/large" | cut -f1)), iipsrv and the gateway (cache mount $work/cache, empty)"
stack_started=1
"$STACK_BIN" up --detach --dir "$work" --garage --bucket masters --upload "$images/large" \
    --cache-root "$work/cache" --log-filter "${RUST_LOG:-warn}" >/dev/null ||
    die "the stack did not start (logs in $work/log)"
eval "$("$STACK_BIN" env --dir "$work")"
endpoint=$STACK_S3_ENDPOINT
bucket=$STACK_S3_BUCKET
credentials="$STACK_S3_ACCESS_KEY_ID:$(cat "$STACK_S3_SECRET_FILE")"
admin=$STACK_GATEWAY_ADMIN_URL
gw=$STACK_GATEWAY_URL/iiif/3/large

purge() {
    curl -sS -o /dev/null -X DELETE -H "Authorization: Bearer $(cat "$STACK_ADMIN_TOKEN_FILE")" \
        "$admin/admin/images/large" || true
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
    curl -fsS "$admin/metrics" |
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

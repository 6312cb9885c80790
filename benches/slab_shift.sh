#!/usr/bin/env bash
# Slab shift: how much of a new data set memcached keeps after the value sizes
# shift, directly (slab_automove 0, 1, 2) and through rend (plain and
# --chunked). Writes results/slab_shift.csv.
#
#   bash benches/slab_shift.sh            # the full sweep (~55 min)
#   SIZES="100 4000" bash benches/slab_shift.sh   # fewer sizes
#
# The experiment (issue 13): a fresh memcached -m $MB (default 64). Data set
# A, of one value size, is written until 1.5x memcached's memory has been
# written (1.5 * MB MiB of values); then data set B, of another size, totalling
# 80% of memory (0.8 * MB MiB of values), is written and read back. Every
# ordered pair of SIZES (default 100 1000 4000 20000 100000 500000 bytes),
# both ways. The control of a B size is the same B written into an empty
# memcached (no A), for every target. B starts 1.1 s after A ends, since
# memcached's clock counts whole seconds.
#
# A is written by blast (sets only, one connection, pipeline 32, each key
# once: --key-dist sequential over exactly the A keys); B by setget (one
# connection, pipeline 32: every key set, then every key read back and
# verified). A keys are 13 bytes and B keys 12, so the sets share no key.
# Every set of A or B that gets an error reply is counted (a failed B set is
# also a miss).
#
# Targets, each in front of its own fresh memcached (memcached [-u root]
# -l 127.0.0.1 -p PORT -U 0 -m MB -c 4096 -o slab_reassign,slab_automove=N):
#   memcached_am0, _am1, _am2   blast and setget straight at memcached, with
#                               slab_automove 0, 1 (memcached 1.6's default)
#                               and 2 (aggressive: a page moves on evictions)
#   rend_am1, rend_am2          rend --orca l1-only, no chunking, over
#                               memcached with automove 1 and 2
#   rend_chunked_am1, _am2      rend --orca l1-only --chunked (Rend's layout:
#                               a 40-byte metadata item and ~1.1 KB chunks)
#                               over automove 1 and 2
#   rend_bal_am1                rend --slab-balancer --slab-pacing 0 (rend
#                               moves pages itself; stores never wait), over
#                               memcached's default automove 1
#   rend_paced_am1              rend --slab-balancer with its default pacing
#                               (a store waits up to 20 ms for the page its
#                               class needs): what rend does for its
#                               embedded memcached by default
#   rend_chunked_bal_am1        rend --chunked --slab-balancer (no pacing:
#                               chunked stores are not paced)
#
# Columns:
#   target, a_size, b_size   a_size is 0 on control rows
#   a_keys, a_set_errors, b_keys, b_set_errors, b_hits, b_mismatches
#   hit_rate                 b_hits / b_keys
#   control_hit_rate         the same target's control for this b_size
#   over_control             hit_rate / control_hit_rate
#   mem_per_user_byte        memcached's total_malloced (slab memory handed
#                            out) over the B bytes it held (b_hits * b_size):
#                            on control rows, what one byte of user data costs
#                            in memcached memory at that size
#   evictions, slabs_moved   memcached's counters after the reads
#   b_set_p99_us, b_set_max_us
#                            B's stores as setget saw them (service time,
#                            microseconds; with 32 in flight, so a store's
#                            time includes those queued before it): what
#                            pacing costs a writer
#   seconds                  wall time of the row
source "$(dirname "$0")/common.sh"

MB=${MB:-64}
SIZES=${SIZES:-"100 1000 4000 20000 100000 500000"}
TARGETS=${TARGETS:-"memcached_am0 memcached_am1 memcached_am2 rend_am1 rend_am2 rend_bal_am1 rend_paced_am1 rend_chunked_am1 rend_chunked_am2 rend_chunked_bal_am1"}
out=${OUT:-results/slab_shift.csv}
mem=$((MB * 1024 * 1024))

stats() { # stats PORT [GROUP]
    timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1; printf "stats %s\r\nquit\r\n" "$2" >&3; cat <&3' _ "$1" "${2:-}" | tr -d '\r'
}
stat() { stats "$1" "${3:-}" | awk -v k="$2" '$1 == "STAT" && $2 == k {print $3}'; } # stat PORT NAME [GROUP]
count() { # count SUMMARY COMMAND OUTCOME: responses of blast/setget's summary.csv
    awk -F, -v c="$2" -v o="$3" '$1 == c && $2 == o && $3 == "service" {n += $4} END {print n + 0}' "$1"
}

raw="$work/raw.csv"
echo "target,a_size,b_size,a_keys,a_set_errors,b_keys,b_set_errors,b_hits,b_mismatches,total_malloced,evictions,slabs_moved,b_set_p99_us,b_set_max_us,seconds" >"$raw"

run() { # run TARGET A_SIZE B_SIZE (A_SIZE 0: control)
    local target=$1 a=$2 b=$3 t0=$SECONDS
    local automove=${target##*_am}
    local mport; mport=$(free_port); local rport=$((mport + 1))
    memcached "${user[@]}" -l 127.0.0.1 -p "$mport" -U 0 -m "$MB" -c 4096 -o "slab_reassign,slab_automove=$automove" &
    local mc=$!; pids+=("$mc")
    wait_port "$mport"
    local rend="" server="127.0.0.1:$mport"
    case $target in
        rend_*)
            local flags=()
            [[ $target == rend_chunked_* ]] && flags+=(--chunked)
            [[ $target == *_bal_* ]] && flags+=(--slab-balancer --slab-pacing 0)
            [[ $target == *_paced_* ]] && flags+=(--slab-balancer)
            RUST_LOG=warn "$bin/rend" --listen "127.0.0.1:$rport" --orca l1-only --l1 "127.0.0.1:$mport" \
                --metrics-listen off "${flags[@]}" 2>>"$work/rend.log" &
            rend=$!; pids+=("$rend")
            wait_port "$rport"
            server="127.0.0.1:$rport" ;;
    esac
    local a_keys=0 a_err=0
    if [ "$a" -gt 0 ]; then
        a_keys=$((mem * 3 / 2 / a))
        "$bin/blast" -s "$server" -w 1 --pipeline 32 --key-dist sequential --mix set=1 -n "$a_keys" \
            --key-space "$a_keys" --key-length 13 --value-size "$a" --csv-dir "$work/a" >/dev/null 2>&1 || true
        a_err=$(count "$work/a/summary.csv" set error)
        # memcached's clock counts whole seconds: without a pause, A's
        # newest items and B's would look the same age (a shift in
        # production spans minutes, not milliseconds).
        sleep 1.1
    fi
    local b_keys=$((mem * 4 / 5 / b)) txt
    rm -rf "$work/b"
    txt=$("$bin/setget" -s "$server" -w 1 --pipeline 32 --key-space "$b_keys" --key-length 12 \
        --value-size "$b" --csv-dir "$work/b" 2>/dev/null || true)
    [ -f "$work/b/summary.csv" ] || { echo "setget made no summary: $txt" >&2; exit 1; }
    local b_err hits mism
    b_err=$(count "$work/b/summary.csv" set error)
    hits=$(count "$work/b/summary.csv" get hit)
    mism=$(echo "$txt" | awk '/^checked/ {print $4}')
    local lat # B's stores: service latency p99 and max (pipeline 32, so queueing counts)
    lat=$(awk -F, '$1 == "set" && $2 == "stored" && $3 == "service" {print $8 "," $11}' "$work/b/summary.csv")
    echo "$target,$a,$b,$a_keys,$a_err,$b_keys,$b_err,$hits,${mism:-NA},$(stat "$mport" total_malloced slabs),$(stat "$mport" evictions),$(stat "$mport" slabs_moved),${lat:-NA,NA},$((SECONDS - t0))" | tee -a "$raw"
    [ -n "$rend" ] && stop "$rend"
    stop "$mc"
}

for target in $TARGETS; do
    for b in $SIZES; do
        run "$target" 0 "$b"
        for a in $SIZES; do
            [ "$a" = "$b" ] || run "$target" "$a" "$b"
        done
    done
done

# Join each row with its target's control for the same B size.
python3 - "$raw" "$out" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
control = {(r["target"], r["b_size"]): int(r["b_hits"]) / int(r["b_keys"])
           for r in rows if r["a_size"] == "0"}
cols = ["target", "a_size", "b_size", "a_keys", "a_set_errors", "b_keys", "b_set_errors",
        "b_hits", "b_mismatches", "hit_rate", "control_hit_rate", "over_control",
        "mem_per_user_byte", "evictions", "slabs_moved", "b_set_p99_us", "b_set_max_us", "seconds"]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        hit = int(r["b_hits"]) / int(r["b_keys"])
        ctl = control[(r["target"], r["b_size"])]
        held = int(r["b_hits"]) * int(r["b_size"])
        r["hit_rate"] = f"{hit:.4f}"
        r["control_hit_rate"] = f"{ctl:.4f}"
        r["over_control"] = f"{hit / ctl:.4f}" if ctl else "NA"
        r["mem_per_user_byte"] = f"{int(r['total_malloced']) / held:.3f}" if held else "NA"
        w.writerow(r)
EOF
if grep -qiE "error|panic" "$work/rend.log"; then echo "rend logged:" >&2; grep -iE "error|panic" "$work/rend.log" | head >&2; fi
echo "wrote $out"

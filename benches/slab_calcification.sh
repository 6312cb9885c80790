#!/usr/bin/env bash
# Slab calcification: why rend stores values as chunks. Writes
# results/slab_calcification.csv.
#
#   bash benches/slab_calcification.sh
#
# memcached -m 64 is filled with 100-byte values (phase 1: 400,000 keys,
# 40 MB of values; memcached needs ~77 MB for them, so it evicts), then a
# second data set of the same value bytes (40 MB) in a larger size class is
# written and read back (phase 2: 10,000 x 4000 B, or 1,953 x 20 KiB). On an
# empty memcached phase 2 fits (the `control` rows); after phase 1, plain
# memcached has given every page to the 100-byte class and the new class gets
# only the one page memcached always grants. Through `rend --chunked` every
# value of either size is stored as ~1.1 KB chunks plus a 40-byte metadata
# item, so both data sets use the same two slab classes and the old data is
# simply evicted by LRU.
#
# Targets: memcached directly, rend without chunking (the proxy alone), and
# rend --chunked; each in front of its own fresh memcached with slab automove
# on (memcached 1.6's default, slab_automove=1) and off (slab_automove=0).
# Phase 1 is written by blast (sets only, one connection walking the key space
# once); phase 2 by setget with one connection, so every get comes after every
# set. Phase 1 keys are 13 bytes and phase 2 keys 12, so the two sets do not
# share keys (and with rend --chunked both land in the same classes).
#
# Rows per configuration (column `when`):
#   immediate       what a client reads right after writing phase 2;
#   idle10s_rewrite after 10 s without traffic, phase 2 written again, read back;
#   sustained30s_rewrite (automove on only) after 30 s of open-loop phase-2
#                   writes at 20 MB/s (the pressure automove reacts to),
#                   phase 2 written again, read back.
# Counters (evictions, outofmemory: stores memcached refused for want of
# memory, slabs_moved, slab pages) are memcached's, cumulative, read after
# the row's reads; slab_pages lists chunk_size:total_pages of each class used.
# phase2_set_errors counts sets that got an error reply (a failed set leaves
# the key absent, so it is also a miss); setget's first ten go to stderr.
# rend_backend_errors is rend's backend_errors counter (memcached unavailable
# or timing out), cumulative, for the rend targets.
source "$(dirname "$0")/common.sh"

total_bytes=40000000
p1_size=100
p1_keys=$((total_bytes / p1_size))
p1_keylen=13
p2_keylen=12
sustain_secs=30
sustain_bytes_per_s=20000000

stats() { # stats [group] from memcached on port $1
    timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1; printf "stats %s\r\nquit\r\n" "$2" >&3; cat <&3' _ "$1" "${2:-}" | tr -d '\r'
}
stat() { stats "$1" "${3:-}" | awk -v k="$2" '$1 == "STAT" && $2 == k {print $3}'; } # stat PORT NAME [GROUP]
slab_pages() { # "chunk_size:pages ..." for every class with pages
    stats "$1" slabs | awk '$1 == "STAT" { split($2, a, ":"); if (a[2] == "chunk_size") cs[a[1]] = $3; if (a[2] == "total_pages") tp[a[1]] = $3 }
        END { s = ""; for (c in tp) if (tp[c] > 0) s = s (s == "" ? "" : " ") cs[c] ":" tp[c]; print s }' | tr ' ' '\n' | sort -n | paste -sd' '
}
outofmemory() { stats "$1" items | awk '$1 == "STAT" && $2 ~ /:outofmemory$/ {n += $3} END {print n + 0}'; }

out=results/slab_calcification.csv
echo "target,automove,phase1_value_size,phase1_keys,phase1_evictions,phase2_value_size,phase2_keys,when,phase2_set_errors,phase2_hits,phase2_mismatches,phase2_hit_rate,evictions,outofmemory,slabs_moved,slab_pages,rend_backend_errors" >"$out"

# Writes phase 2 (set every key, then get every key) through $server; prints
# "set_errors hits mismatches".
phase2() {
    local size=$1 keys=$2 dir="$work/p2.$RANDOM"
    local txt
    txt=$("$bin/setget" -s "$server" -w 1 --pipeline 32 --key-space "$keys" --key-length $p2_keylen \
        --value-size "$size" --csv-dir "$dir" 2>/dev/null || true)
    [ -f "$dir/summary.csv" ] || { echo "setget made no summary: $txt" >&2; return 1; }
    local set_err hits mism
    set_err=$(awk -F, '$1 == "set" && $2 == "error" && $3 == "service" {n += $4} END {print n + 0}' "$dir/summary.csv")
    hits=$(awk -F, '$1 == "get" && $2 == "hit" && $3 == "service" {n += $4} END {print n + 0}' "$dir/summary.csv")
    mism=$(echo "$txt" | awk '/^checked/ {print $4}')
    echo "$set_err $hits ${mism:-NA}"
    if [ "${mism:-0}" != 0 ] || [ "$set_err" != 0 ]; then
        echo "setget through $server ($size B): $set_err set errors:" >&2; echo "$txt" | grep -A10 '^checked' >&2
    fi
}

run() { # run TARGET AUTOMOVE P2_SIZE WITH_PHASE1
    local target=$1 automove=$2 size=$3 with_p1=$4
    local keys=$((total_bytes / size))
    local mport; mport=$(free_port); local rport=$((mport + 1))
    memcached "${user[@]}" -l 127.0.0.1 -p "$mport" -U 0 -m 64 -c 4096 -o "slab_reassign,slab_automove=$automove" &
    local mc=$!; pids+=("$mc")
    wait_port "$mport"
    [ "$(stat "$mport" slab_automove settings)" = "$automove" ] || { echo "slab_automove is not $automove" >&2; exit 1; }
    local rend=""
    case $target in
        memcached) server="127.0.0.1:$mport" ;;
        rend|rend_chunked)
            local flags=(); [ "$target" = rend_chunked ] && flags=(--chunked)
            RUST_LOG=warn "$bin/rend" --listen "127.0.0.1:$rport" --orca l1-only --l1 "127.0.0.1:$mport" "${flags[@]}" 2>>"$work/rend.log" &
            rend=$!; pids+=("$rend")
            wait_port "$rport"
            server="127.0.0.1:$rport" ;;
    esac
    local p1_ev=0 p1_keys_row=0 p1_size_row=0
    if [ "$with_p1" = 1 ]; then
        "$bin/blast" -s "$server" -w 1 --pipeline 32 --key-dist sequential --mix set=1 -n $p1_keys \
            --key-space $p1_keys --key-length $p1_keylen --value-size $p1_size --csv-dir "$work/p1" >/dev/null 2>&1
        local p1_err
        p1_err=$(awk -F, '$1 == "set" && $2 == "error" {n += $4} END {print n + 0}' "$work/p1/summary.csv")
        [ "$p1_err" = 0 ] || echo "phase 1 through $target: $p1_err set errors" >&2
        p1_ev=$(stat "$mport" evictions); p1_keys_row=$p1_keys; p1_size_row=$p1_size
    fi
    local whens=(immediate)
    [ "$with_p1" = 1 ] && whens+=(idle10s_rewrite)
    [ "$with_p1" = 1 ] && [ "$automove" = 1 ] && whens+=(sustained30s_rewrite)
    for when in "${whens[@]}"; do
        case $when in
            idle10s_rewrite) sleep 10 ;;
            sustained30s_rewrite)
                "$bin/blast" -s "$server" -w 2 --pipeline 8 --key-dist sequential --mix set=1 \
                    --rate $((sustain_bytes_per_s / size)) --duration $sustain_secs --key-space "$keys" \
                    --key-length $p2_keylen --value-size "$size" >/dev/null 2>&1 ;;
        esac
        local set_err hits mism
        read -r set_err hits mism < <(phase2 "$size" "$keys")
        local be=""; [ -n "$rend" ] && be=$(rend_stat "$rport" backend_errors)
        local rate; rate=$(awk -v h="$hits" -v n="$keys" 'BEGIN {printf "%.4f", h / n}')
        local label=$target; [ "$with_p1" = 1 ] || label="$target (control: no phase 1)"
        echo "$label,$automove,$p1_size_row,$p1_keys_row,$p1_ev,$size,$keys,$when,$set_err,$hits,$mism,$rate,$(stat "$mport" evictions),$(outofmemory "$mport"),$(stat "$mport" slabs_moved),$(slab_pages "$mport"),$be" | tee -a "$out"
    done
    [ -n "$rend" ] && stop "$rend"
    stop "$mc"
}

for size in 4000 20480; do
    for target in memcached rend rend_chunked; do
        run "$target" 1 "$size" 0
    done
    for automove in 1 0; do
        for target in memcached rend rend_chunked; do
            run "$target" "$automove" "$size" 1
        done
    done
done
if grep -qiE "error|panic" "$work/rend.log"; then echo "rend logged:" >&2; grep -iE "error|panic" "$work/rend.log" | head >&2; fi
cat "$out"

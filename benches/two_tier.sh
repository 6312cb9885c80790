#!/usr/bin/env bash
# rend --orca l1-l2 (memcached L1 + RocksDB L2) measured three ways; writes
# results/two_tier.csv.
#
#   bash benches/two_tier.sh
#
# (a) hot: every key in L1. Two stacks side by side, each its own memcached
#     (-m 1024): rend l1-only and rend l1-l2. 20,000 keys of 1 KiB are
#     written through each (for l1-l2 a set fills both tiers), then blast
#     --mix get=1, pipeline 1, 4 s, at 4 and 50 connections, two rounds in
#     the order l1-only, l1-l2, l1-l2, l1-only. ratio: l1-l2 over l1-only of
#     the same round. l2_gets counts the gets L2 had to serve (0 when L1
#     served them all).
# (b) cold: every get misses L1 and reads L2. memcached -m 64 behind rend
#     l1-l2; 400,000 keys of 1 KiB (about 420 MB, six times L1) are loaded,
#     then gets of uniformly random keys: nearly all miss L1, are served from
#     RocksDB and back-filled with add (which evicts other keys). Rows give
#     throughput, p99 and the fraction of gets L2 served (l2_gets over gets).
# (c) sustained sets: rend l1-l2 with memcached -m 1024, blast --mix set=1,
#     1 KiB values, 5,000,000 distinct keys (most sets insert), 50
#     connections, 60 s. Reported with RocksDB's write-stall time over the
#     run (l2_write_stall_micros, from RocksDB's STALL_MICROS ticker), the
#     pending compaction bytes at the end, and the L2 size.
# Columns as in chunked_vs_plain.sh: CPU per request of blast, rend and
# memcached, and other_busy_pct (machine time not charged to them).
source "$(dirname "$0")/common.sh"
# Knobs for a quick trial of the script itself; the committed results use the
# defaults.
dur=${BENCH_SECONDS:-4}
cold_keys=${COLD_KEYS:-400000}
set_seconds=${SET_SECONDS:-60}

out=results/two_tier.csv
echo "experiment,mode,connections,round,value_size,keys,preload_check,requests,requests_per_s,p50_us,p99_us,misses,errors,l2_gets,l2_share,l2_write_stall_ms,l2_pending_compaction_bytes,l2_sst_bytes,blast_cpu_us_per_request,rend_cpu_us_per_request,memcached_cpu_us_per_request,other_busy_pct,ratio" >"$out"

two_tier() { echo --orca l1-l2 --batch-listen off --l2-path "$work/l2-$1"; }

preload() { # preload PORT KEYS: write every key through rend and verify it
    local txt line
    txt=$("$bin/setget" -s "127.0.0.1:$1" -w 8 --pipeline 8 --key-space "$2" --key-length 16 --value-size 1024 2>/dev/null || true)
    line=$(echo "$txt" | grep '^checked' || echo "setget failed")
    if echo "$line" | grep -q 'mismatches 0  misses 0  errors 0'; then echo ok; else echo "$line" | tr -s ' ' | tr ' ' '_'; fi
}

# measure NAME EXPERIMENT CONNS ROUND KEYS CHECK BLAST_ARGS...: one blast run
# against stack NAME; prints a CSV row without the ratio.
measure() {
    local name=$1 exp=$2 conns=$3 round=$4 keys=$5 check=$6; shift 6
    local p="port_$name" r="rend_$name" m="mc_$name" dir="$work/$exp.$name.$conns.$round"
    wait_quiet >/dev/null
    local l2g0 st0 rend0 mc0 busy0 total0
    l2g0=$(rend_stat "${!p}" l2_gets); st0=$(rend_stat "${!p}" l2_write_stall_micros)
    rend0=$(cpu_ticks "${!r}"); mc0=$(cpu_ticks "${!m}"); read -r busy0 total0 < <(machine_ticks)
    /usr/bin/time -f "%U %S" -o "$work/time" "$bin/blast" -s "127.0.0.1:${!p}" -w "$conns" --pipeline 1 \
        --key-length 16 --value-size 1024 --csv-dir "$dir" "$@" >/dev/null 2>&1 \
        || { echo "blast failed: $name $exp" >&2; exit 1; }
    local rend1 mc1 busy1 total1
    rend1=$(cpu_ticks "${!r}"); mc1=$(cpu_ticks "${!m}"); read -r busy1 total1 < <(machine_ticks)
    local l2g1 st1 pend sst
    l2g1=$(rend_stat "${!p}" l2_gets); st1=$(rend_stat "${!p}" l2_write_stall_micros)
    pend=$(rend_stat "${!p}" l2_pending_compaction_bytes); sst=$(rend_stat "${!p}" l2_sst_bytes)
    local blast_ticks other s="$dir/summary.csv"
    blast_ticks=$(awk -v hz="$hz" '{printf "%.0f", ($1 + $2) * hz}' "$work/time")
    other=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v ours=$((rend1 - rend0 + mc1 - mc0 + blast_ticks)) \
        'BEGIN {o = (b - ours) * 100 / t; printf "%.0f", o < 0 ? 0 : o}')
    local n errors gets l2g share
    n=$(col "$s" all all count)
    errors=$(awk -F, '$2 == "error" && $3 == "service" {n += $4} END {print n + 0}' "$s")
    gets=$(( $(col "$s" get hit count) + $(col "$s" get miss count) ))
    l2g=$(( ${l2g1:-0} - ${l2g0:-0} ))
    share=$(awk -v a="$l2g" -v b="$gets" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print ""}')
    local cmd=get; [ "$exp" = sets ] && cmd=set
    local outcome=hit; [ "$cmd" = set ] && outcome=stored
    echo "$exp,$name,$conns,$round,1024,$keys,$check,$n,$(printf '%.0f' "$(col "$s" all all rate_per_s)"),$(col "$s" "$cmd" "$outcome" p50_us),$(col "$s" "$cmd" "$outcome" p99_us),$(col "$s" get miss count),$errors,$l2g,$share,$(( (${st1:-0} - ${st0:-0}) / 1000 )),${pend:-},${sst:-},$(cpu_us 0 "$blast_ticks" "$s"),$(cpu_us "$rend0" "$rend1" "$s"),$(cpu_us "$mc0" "$mc1" "$s"),$other"
}

# (a) hot
keys=20000
start_stack l1only --orca l1-only
start_stack l1l2 $(two_tier hot)
check_l1only=$(preload "$port_l1only" $keys)
check_l1l2=$(preload "$port_l1l2" $keys)
for conns in 4 50; do
    declare -A row=() rate=()
    for step in "1 l1only" "1 l1l2" "2 l1l2" "2 l1only"; do
        read -r round mode <<<"$step"
        c="check_$mode"
        row[$round.$mode]=$(measure "$mode" hot "$conns" "$round" $keys "${!c}" --mix get=1 --key-space $keys --duration $dur)
        rate[$round.$mode]=$(echo "${row[$round.$mode]}" | cut -d, -f9)
    done
    for round in 1 2; do
        ratio=$(awk -v a="${rate[$round.l1l2]}" -v b="${rate[$round.l1only]}" 'BEGIN {printf "%.2f", a / b}')
        echo "${row[$round.l1only]},1.00" | tee -a "$out"
        echo "${row[$round.l1l2]},$ratio" | tee -a "$out"
    done
done
stop_stack l1only
stop_stack l1l2

# (b) cold: L1 holds about a sixth of the data
keys=$cold_keys
mc_mb=64 start_stack cold $(two_tier cold)
check=$(preload "$port_cold" $keys)
for conns in 4 50; do
    for round in 1 2; do
        echo "$(measure cold cold "$conns" "$round" $keys "$check" --mix get=1 --key-space $keys --duration $dur)," | tee -a "$out"
    done
done
stop_stack cold

# (c) sustained sets
keys=5000000
start_stack sets $(two_tier sets)
echo "$(measure sets sets 50 1 $keys - --mix set=1 --key-space $keys --duration $set_seconds)," | tee -a "$out"
stop_stack sets

if grep -qiE "error|panic" "$work/rend.log"; then echo "rend logged:" >&2; grep -iE "error|panic" "$work/rend.log" | head >&2; fi
cat "$out"

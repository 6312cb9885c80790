#!/usr/bin/env bash
# What slab pacing costs when no value sizes shift: rend l1-only over its own
# memcached (-m 1024, -t 1, nothing evicted, so no class is ever paced), with
# the slab balancer and pacing (--slab-pacing 20, the default), with the
# balancer alone (--slab-pacing 0), and with neither (--slab-balancer
# false). Writes results/slab_pacing.csv.
#
#   bash benches/slab_pacing.sh      # ~6 min
#
# Two measures, each system in the same run:
# - idle: rend's and memcached's CPU over $IDLE seconds (default 30) with no
#   client: what the balancer's polls cost (with pacing it reads `stats
#   slabs` on every poll, not only after evictions);
# - stores: blast --mix set=1, 100-byte values under 12-byte keys over 10,000
#   keys, 50 connections, pipeline 1 and 16, $BENCH_SECONDS (default 5) per
#   point, $ROUNDS rounds (default 3) with the order of the systems reversed
#   every other round. rend_cpu_us_per_op is rend's CPU per request;
#   server_cpu_us_per_op adds memcached's. Client on core 0, servers on core 1.
source "$(dirname "$0")/common.sh"

dur=${BENCH_SECONDS:-5}
rounds=${ROUNDS:-3}
idle=${IDLE:-30}
keys=10000
out=results/slab_pacing.csv
client=(taskset -c 0)
server=(taskset -c 1)

systems=(paced balancer none)
declare -A port mc proxy
start() { # start SYSTEM REND_FLAGS...
    local sys=$1; shift
    local mport rport; mport=$(free_port)
    "${server[@]}" memcached "${user[@]}" -l 127.0.0.1 -p "$mport" -U 0 -m 1024 -c 4096 -t 1 &
    mc[$sys]=$!; pids+=("$!"); wait_port "$mport"
    rport=$(free_port)
    RUST_LOG=warn "${server[@]}" "$bin/rend" --listen "127.0.0.1:$rport" --l1 "127.0.0.1:$mport" \
        --orca l1-only --metrics-listen off "$@" 2>>"$work/rend.log" &
    proxy[$sys]=$!; pids+=("$!"); wait_port "$rport"
    port[$sys]=$rport
}
start paced --slab-balancer --slab-pacing 20
start balancer --slab-balancer --slab-pacing 0
start none --slab-balancer false

echo "measure,round,system,connections,pipeline,requests,errors,ops_per_s,p50_us,p99_us,seconds,memcached_cpu_us_per_op,rend_cpu_us_per_op,server_cpu_us_per_op,rend_cpu_pct,memcached_cpu_pct,pacing_waits" >"$out"

# Idle: every system at once, nothing else running.
wait_quiet >/dev/null
declare -A m0 x0
for sys in "${systems[@]}"; do m0[$sys]=$(cpu_ticks "${mc[$sys]}"); x0[$sys]=$(cpu_ticks "${proxy[$sys]}"); done
sleep "$idle"
for sys in "${systems[@]}"; do
    awk -v m=$(($(cpu_ticks "${mc[$sys]}") - m0[$sys])) -v x=$(($(cpu_ticks "${proxy[$sys]}") - x0[$sys])) \
        -v hz="$hz" -v s="$idle" -v pre="idle,1,$sys,0,0,0,0,0,0,0,$idle,,,," -v w="$(rend_stat "${port[$sys]}" slab_pacing_waits)" \
        'BEGIN {printf "%s%.3f,%.3f,%s\n", pre, x * 100 / hz / s, m * 100 / hz / s, w}' >>"$out"
done

point() { # point ROUND SYSTEM PIPELINE
    local round=$1 sys=$2 pipe=$3 dir="$work/$1.$2.$3"
    wait_quiet >/dev/null
    local mc0 mc1 x0 x1
    mc0=$(cpu_ticks "${mc[$sys]}"); x0=$(cpu_ticks "${proxy[$sys]}")
    "${client[@]}" "$bin/blast" -s "127.0.0.1:${port[$sys]}" --mix set=1 -w 50 --pipeline "$pipe" \
        --key-space $keys --key-length 12 --value-size 100 --duration "$dur" --csv-dir "$dir" >"$dir.out" 2>&1 \
        || { echo "blast failed: $sys" >&2; tail -5 "$dir.out" >&2; exit 1; }
    mc1=$(cpu_ticks "${mc[$sys]}"); x1=$(cpu_ticks "${proxy[$sys]}")
    local s="$dir/summary.csv" n errors
    n=$(col "$s" all all count)
    errors=$(awk -F, '$2 == "error" && $3 == "service" {n += $4} END {print n + 0}' "$s")
    awk -v n="$n" -v mc=$((mc1 - mc0)) -v x=$((x1 - x0)) -v hz="$hz" -v w="$(rend_stat "${port[$sys]}" slab_pacing_waits)" \
        -v pre="stores,$round,$sys,50,$pipe,$n,$errors,$(printf '%.0f' "$(col "$s" all all rate_per_s)"),$(col "$s" all all p50_us),$(col "$s" all all p99_us),$dur" \
        'BEGIN {printf "%s,%.2f,%.2f,%.2f,,,%s\n", pre, mc * 1e6 / hz / n, x * 1e6 / hz / n, (mc + x) * 1e6 / hz / n, w}' >>"$out"
}

for round in $(seq "$rounds"); do
    order=(paced balancer none)
    [ $((round % 2)) -eq 0 ] && order=(none balancer paced)
    for pipe in 1 16; do
        for sys in "${order[@]}"; do point "$round" "$sys" "$pipe"; done
    done
done
if grep -Ei 'error|panic' "$work/rend.log" | head -20; then echo "(rend logged the above)" >&2; fi
column -s, -t "$out"

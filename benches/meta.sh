#!/usr/bin/env bash
# The meta get against the classic get, through rend l1-only (plain and
# --chunked), through rend l1-l2 and straight at memcached, in one run: `mg <key> v f t` (value, flags
# and TTL) beside `get <key>`, closed loop. Writes results/meta.csv.
#
#   bash benches/meta.sh
#
# Pinning (2 cores): blast runs under taskset -c 0; memcached (-t 1) and rend
# (one worker thread, as it runs on one core) under taskset -c 1.
#
# Systems, each with its own fresh memcached
# (memcached [-u root] -l 127.0.0.1 -p PORT -U 0 -m 1024 -c 4096 -t 1):
#   direct        blast straight at memcached
#   rend-l1-only  rend --listen 127.0.0.1:RPORT --l1 127.0.0.1:MPORT
#                 --orca l1-only --metrics-listen off (classic gets go on
#                 its binary connection, meta gets on its text meta
#                 connection)
#   rend-l1-l2    rend --listen 127.0.0.1:RPORT --l1 127.0.0.1:MPORT
#                 --orca l1-l2 --l2-path TMP --batch-listen off
#                 --metrics-listen off (classic gets from L1, meta gets from
#                 L2, which keeps the item state they see)
#   rend-chunked  rend --listen 127.0.0.1:RPORT --l1 127.0.0.1:MPORT
#                 --orca l1-only --chunked --metrics-listen off (both read the
#                 chunked value: metadata, then chunks; meta gets run
#                 memcached's rules over it)
# Loads: 10,000 keys of 12 bytes with 100 B values, written first through
# each system and read back (setget -w 4 --pipeline 4); then for each mix, get
# (--mix get=1) and mg (--mix mg=1), at 50 connections, pipeline 1 and 16,
# BENCH_SECONDS (default 5) each, text protocol. ROUNDS rounds (default 2),
# interleaved: odd rounds direct first, even rounds rend first.
#
# Columns of results/meta.csv:
#   round, system, mix, connections, pipeline
#   requests           responses blast counted
#   misses             gets or mgs that missed (0 expected)
#   errors             error replies (0 expected)
#   ops_per_s          requests per second of blast's measured time
#   p50_us, p99_us     service latency percentiles
#   memcached_cpu_us_per_op, rend_cpu_us_per_op
#                      CPU (user + system, /proc/PID/stat) per request
#   server_cpu_us_per_op  the two together: what a request costs the server core
source "$(dirname "$0")/common.sh"

dur=${BENCH_SECONDS:-5}
rounds=${ROUNDS:-2}
keys=10000
out=results/meta.csv
client=(taskset -c 0)
server=(taskset -c 1)

systems=(direct rend-l1-only rend-l1-l2 rend-chunked)
declare -A port mc proxy
# start SYSTEM [REND FLAGS...]: a fresh memcached, and with flags a rend in
# front of it; sets port[SYSTEM] (where blast goes), mc[SYSTEM], proxy[SYSTEM].
start() {
    local sys=$1; shift
    local mport; mport=$(free_port)
    "${server[@]}" memcached "${user[@]}" -l 127.0.0.1 -p "$mport" -U 0 -m 1024 -c 4096 -t 1 &
    mc[$sys]=$!; pids+=("$!"); wait_port "$mport"
    port[$sys]=$mport; proxy[$sys]=""
    [ $# -eq 0 ] && return
    local rport; rport=$(free_port)
    RUST_LOG=warn "${server[@]}" "$bin/rend" --listen "127.0.0.1:$rport" --l1 "127.0.0.1:$mport" \
        --metrics-listen off "$@" 2>>"$work/rend.log" &
    proxy[$sys]=$!; pids+=("$!"); wait_port "$rport"
    port[$sys]=$rport
}
start direct
start rend-l1-only --orca l1-only
start rend-l1-l2 --orca l1-l2 --l2-path "$work/l2" --batch-listen off
start rend-chunked --orca l1-only --chunked

blast() { "${client[@]}" "$bin/blast" --key-space $keys --key-length 12 --value-size 100 "$@"; }

for sys in "${systems[@]}"; do
    # Every key written and read back byte for byte.
    "${client[@]}" "$bin/setget" -s "127.0.0.1:${port[$sys]}" --key-space $keys --key-length 12 \
        --value-size 100 -w 4 --pipeline 4 >"$work/preload.$sys.out" 2>&1 \
        || { echo "preload failed: $sys" >&2; tail -5 "$work/preload.$sys.out" >&2; exit 1; }
done

echo "round,system,mix,connections,pipeline,requests,misses,errors,ops_per_s,p50_us,p99_us,memcached_cpu_us_per_op,rend_cpu_us_per_op,server_cpu_us_per_op" >"$out"
point() { # point ROUND SYSTEM MIX CONNS PIPELINE
    local round=$1 sys=$2 mix=$3 conns=$4 pipe=$5
    local dir="$work/$round.$sys.$mix.$conns.$pipe" m=${mc[$sys]} x=${proxy[$sys]}
    wait_quiet >/dev/null
    local mc0 mc1 x0=0 x1=0
    mc0=$(cpu_ticks "$m"); [ -n "$x" ] && x0=$(cpu_ticks "$x")
    blast -s "127.0.0.1:${port[$sys]}" --mix "$mix=1" -w "$conns" --pipeline "$pipe" \
        --duration "$dur" --csv-dir "$dir" >"$dir.out" 2>&1 \
        || { echo "blast failed: $sys $mix" >&2; tail -5 "$dir.out" >&2; exit 1; }
    mc1=$(cpu_ticks "$m"); [ -n "$x" ] && x1=$(cpu_ticks "$x")
    local s="$dir/summary.csv" n misses errors
    n=$(col "$s" all all count)
    misses=$(col "$s" "$mix" miss count)
    errors=$(awk -F, '$2 == "error" && $3 == "service" {n += $4} END {print n + 0}' "$s")
    awk -v n="$n" -v mc=$((mc1 - mc0)) -v x=$((x1 - x0)) -v hz="$hz" -v hasx="${x:+1}" \
        -v pre="$round,$sys,$mix,$conns,$pipe,$n,$misses,$errors,$(printf '%.0f' "$(col "$s" all all rate_per_s)"),$(col "$s" all all p50_us),$(col "$s" all all p99_us)" \
        'BEGIN {
            printf "%s,%.2f,", pre, mc * 1e6 / hz / n
            if (hasx) printf "%.2f", x * 1e6 / hz / n
            printf ",%.2f\n", (mc + x) * 1e6 / hz / n
        }' >>"$out"
}

for round in $(seq "$rounds"); do
    order=(direct rend-l1-only rend-l1-l2 rend-chunked)
    [ $((round % 2)) -eq 0 ] && order=(rend-chunked rend-l1-l2 rend-l1-only direct)
    for pipe in 1 16; do
        for mix in get mg; do
            for sys in "${order[@]}"; do point "$round" "$sys" "$mix" 50 "$pipe"; done
        done
    done
done
if grep -Ei 'error|panic' "$work/rend.log" | head -20; then echo "(rend logged the above)" >&2; fi
column -s, -t "$out"

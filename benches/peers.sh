#!/usr/bin/env bash
# rend beside its peers in one run: memcached alone, twemproxy (Debian's
# nutcracker) in front of memcached, and rend in front of memcached in three
# modes; closed-loop throughput, latency and the server CPU each request
# costs. Writes results/peers.csv (one row per system, load, mix and round)
# and results/peers_summary.csv (the mean over rounds, per load and mix).
#
#   bash benches/peers.sh
#
# Pinning (the machine has 2 cores): the client, blast (and setget for the
# preload), runs under taskset -c 0; every server process runs under
# taskset -c 1: memcached with -t 1 (one worker thread), and beside it on the
# same core nutcracker or rend. rend gets no --threads flag: it runs as many
# worker threads as the cores it may run on, one here. So each system has one
# core for all its server work, and ops_per_server_core_s compares how much
# each gets out of it.
#
# Systems, each with its own fresh memcached
# (memcached [-u root] -l 127.0.0.1 -p PORT -U 0 -m 1024 -c 4096 -t 1); all
# five run side by side for the whole script and are loaded one at a time:
#   direct         blast straight at memcached
#   nutcracker     twemproxy 0.5.0: nutcracker -c CONF -s STATSPORT
#                  -a 127.0.0.1 -p PIDFILE -o LOGFILE (not daemonized, so
#                  0.5.0 writes no pid file; the script keeps $! instead), CONF
#                  one pool: listen 127.0.0.1:PORT, hash fnv1a_64,
#                  distribution ketama, auto_eject_hosts false,
#                  server_connections 1, servers - 127.0.0.1:MPORT:1; default
#                  16 KiB mbufs. server_connections 1 is twemproxy's default
#                  and the way it is meant to run: its one thread multiplexes
#                  every client's requests onto one pipelined connection per
#                  server, which costs the fewest syscalls on the shared
#                  server core, and more connections to a memcached with one
#                  worker thread buy no parallelism on one core. rend keeps
#                  its own default (--l1-conns 1 per worker thread: 1 here),
#                  the same shape: each proxy as shipped.
#                  nutcracker speaks text only: no binary rows.
#   rend-l1-only   rend --listen 127.0.0.1:RPORT --l1 127.0.0.1:MPORT
#                  --orca l1-only --metrics-listen off
#   rend-l1-l2     the same with --orca l1-l2 --l2-path SCRATCH/l2-MPORT
#                  --batch-listen off (RocksDB L2; every key hot in L1, as
#                  the preload writes both tiers)
#   rend-chunked   --orca l1-only --chunked (default chunk size: 1085 B for
#                  the 12-byte keys, so a 100 B value takes one chunk, a
#                  20 KiB one 19)
# rend runs with RUST_LOG=warn, its stderr in the scratch directory; at the
# end the script prints every line of it that says error or panic (the
# first 100 per log, with the count), and of nutcracker's log, error or fail.
#
# Loads (blast, closed loop, uniform keys of 12 bytes, BENCH_SECONDS each, no
# warmup: the preload has warmed every stack):
#   text, values of 100 B (10,000 keys) and 20 KiB = 20480 B (5,000 keys), at
#   4 and 50 connections (-w), pipeline 1 and 16 (--pipeline);
#   binary (--protocol binary), 100 B, 50 connections, pipeline 1;
# each with two mixes: get (--mix get=1: hot gets, every key was written
# before) and mixed (--mix get=10,set=1); plus a set mix (--mix set=1), text,
# 100 B, 50 connections, pipeline 1, so the CPU a set costs shows. Before the
# loads of one value size every key of that size is written through every
# system and read back byte for byte by setget (-w 4 --pipeline 4;
# preload_check). The two key spaces overlap (blast and setget name keys by
# index), so the 100 B loads, binary and set rows included, all run before
# the 20 KiB preload.
# Every load and mix is measured in ROUNDS rounds (default 2), interleaved:
# round 1 runs the systems in the order direct, nutcracker, rend-l1-only,
# rend-l1-l2, rend-chunked, round 2 in the reverse order (odd rounds forward,
# even ones reversed), so drift on this shared machine shows as a difference
# between rounds. Before each point the script waits (up to 30 s) for the
# machine to be under 25% busy for a second.
#
# Columns of peers.csv:
#   round                    1, 2, ... (order above)
#   system                   direct, nutcracker, rend-l1-only, rend-l1-l2, rend-chunked
#   protocol                 text or binary
#   value_size               bytes per value
#   connections, pipeline    blast -w and --pipeline
#   mix                      get (get=1), mixed (get=10,set=1) or set (set=1)
#   preload_check            ok when setget read back every key it wrote
#                            through that system at that size, else its
#                            `checked` line
#   requests                 responses blast counted (summary.csv, all rows)
#   ops_per_s                requests per second of blast's measured time
#   p50_us, p99_us           latency over all commands, microseconds
#                            (blast's `all,all,service` row)
#   errors                   requests with outcome error: error replies, and
#                            requests in flight on a connection that broke
#   server_cpu_s             CPU seconds (user + system, /proc/PID/stat,
#                            10 ms ticks) of every server process of the
#                            system over the point: memcached, plus nutcracker
#                            or rend (all its threads, RocksDB's included)
#   server_cpu_pct           server_cpu_s over the point's wall time (blast's
#                            whole run), in % of one core (the one core they
#                            share: at most ~100)
#   ops_per_server_core_s    requests / server_cpu_s: requests served per
#                            second of server CPU
#   rend_cpu_us_per_op       rend's CPU per request, microseconds (rend rows
#                            only; the same as proxy_cpu_us_per_op)
#   memcached_cpu_us_per_op  memcached's CPU per request, microseconds
#   proxy_cpu_us_per_op      the proxy's (nutcracker's or rend's) CPU per
#                            request, microseconds; empty for direct
#   vs_nutcracker            ops_per_server_core_s over nutcracker's in the
#                            same round, load and mix (empty for binary)
#   vs_direct                ops_per_s over direct's in the same round, load and mix
#   other_busy_pct           the machine's busy time during the point not
#                            charged to blast or the system's servers (other
#                            processes, the idle stacks, kernel work charged
#                            to none), in % of both cores: a point with a
#                            high figure was disturbed
#   quiet_wait_s             seconds waited for the machine to be quiet
#                            before the point
#   attempts                 a point with other_busy_pct over 15 is measured
#                            again, up to 3 attempts; the row is the last
# Columns of peers_summary.csv, one row per load, mix and system:
# protocol, value_size, connections, pipeline, mix, system; rounds (how many
# were averaged); ops_per_s, ops_per_server_core_s, server_cpu_pct,
# memcached_cpu_us_per_op and proxy_cpu_us_per_op: means over the rounds;
# vs_nutcracker and vs_direct: the same ratios of those means; *_min and
# *_max: the smallest and largest per-round ratio in peers.csv;
# ops_vs_nutcracker and ops_vs_l1_only: the mean ops_per_s over
# nutcracker's and over rend-l1-only's (rend-chunked against rend-l1-only is
# chunked against unchunked).
#
# Knobs: BENCH_SECONDS (default 4) per point; ROUNDS (default 2); OUT_DIR
# (default results) for the two CSVs, so a trial can write elsewhere;
# QUICK=1 for a trial of the script itself: only text, 100 B, 4 and 50
# connections, pipeline 1 and 16, mix get, one round. The committed results
# use the defaults.
source "$(dirname "$0")/common.sh"

dur=${BENCH_SECONDS:-4}
quick=${QUICK:-0}
rounds=${ROUNDS:-2}
[ "$quick" = 1 ] && rounds=1
out_dir=${OUT_DIR:-results}
mkdir -p "$out_dir"
out=$out_dir/peers.csv
summary=$out_dir/peers_summary.csv
keylen=12
client=(taskset -c 0)
server=(taskset -c 1)
systems=(direct nutcracker rend-l1-only rend-l1-l2 rend-chunked)
declare -A mixes=([get]=get=1 [mixed]=get=10,set=1 [set]=set=1)

# take_ports VAR: two consecutive free ports that no system here has taken
# (a system's second port may not be listening yet when the next one asks).
taken=" "
take_ports() {
    local p
    while :; do
        p=$(free_port)
        case $taken in *" $((p - 1)) "* | *" $p "* | *" $((p + 1)) "* | *" $((p + 2)) "*) continue ;; esac
        break
    done
    taken+="$p $((p + 1)) "
    printf -v "$1" '%s' "$p"
}

show_logs() { # every rend log line saying error or panic, and nutcracker's errors
    local f n
    for f in "$work"/rend-*.log; do
        [ -e "$f" ] || continue
        n=$(grep -ciE 'error|panic' "$f" || true)
        [ "$n" -gt 0 ] || continue
        echo "$(basename "$f" .log) logged ($n lines):" >&2
        grep -iE 'error|panic' "$f" | head -100 >&2
    done
    f=$work/nutcracker.log
    if [ -e "$f" ] && grep -qiE 'error|fail' "$f"; then
        echo "nutcracker logged ($(grep -ciE 'error|fail' "$f") lines):" >&2
        grep -iE 'error|fail' "$f" | head -100 >&2
    fi
}

declare -A port=() mc=() proxy=()
# start_system NAME: its memcached, and its proxy if it has one, pinned to core 1.
start_system() {
    local name=$1 mp sp p flags=()
    take_ports mp
    "${server[@]}" memcached "${user[@]}" -l 127.0.0.1 -p "$mp" -U 0 -m 1024 -c 4096 -t 1 &
    mc[$name]=$!; pids+=("$!")
    wait_port "$mp"
    p=$((mp + 1))
    case $name in
        direct) port[$name]=$mp; return ;;
        nutcracker)
            take_ports sp
            cat >"$work/nutcracker.yml" <<EOF
peers:
  listen: 127.0.0.1:$p
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  server_connections: 1
  servers:
    - 127.0.0.1:$mp:1
EOF
            nutcracker -t -c "$work/nutcracker.yml" >"$work/nutcracker.test" 2>&1 \
                || { cat "$work/nutcracker.test" >&2; exit 1; }
            "${server[@]}" nutcracker -c "$work/nutcracker.yml" -s "$sp" -a 127.0.0.1 \
                -p "$work/nutcracker.pid" -o "$work/nutcracker.log" &
            ;;
        rend-*)
            case $name in
                rend-l1-only) flags=(--orca l1-only) ;;
                rend-l1-l2) flags=(--orca l1-l2 --l2-path "$work/l2-$mp" --batch-listen off) ;;
                rend-chunked) flags=(--orca l1-only --chunked) ;;
            esac
            RUST_LOG=warn "${server[@]}" "$bin/rend" --listen "127.0.0.1:$p" --l1 "127.0.0.1:$mp" \
                "${flags[@]}" --metrics-listen off 2>>"$work/$name.log" &
            ;;
    esac
    proxy[$name]=$!; pids+=("$!")
    port[$name]=$p
    wait_port "$p"
}

alive() { # alive SYSTEM: stop the script if one of its processes is gone
    local p
    for p in ${mc[$1]} ${proxy[$1]:-}; do
        [ -e "/proc/$p/stat" ] && [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ] && continue
        echo "$1: process $p is gone" >&2; show_logs; exit 1
    done
}

declare -A check=()
preload() { # preload SIZE KEYS: write and verify every key through every system
    local sys txt line
    for sys in "${systems[@]}"; do
        txt=$("${client[@]}" "$bin/setget" -s "127.0.0.1:${port[$sys]}" -w 4 --pipeline 4 --key-space "$2" \
            --key-length $keylen --value-size "$1" 2>/dev/null || true)
        line=$(echo "$txt" | grep '^checked' || echo "setget failed")
        if echo "$line" | grep -q 'mismatches 0  misses 0  errors 0'; then check[$sys.$1]=ok; else
            check[$sys.$1]=$(echo "$line" | tr -s ' ' | tr ' ' '_')
            echo "preload through $sys ($1 B): $line" >&2; echo "$txt" | grep -A10 '^checked' >&2 || true
        fi
    done
}

# point SYSTEM ROUND PROTOCOL SIZE CONNS PIPELINE MIX KEYS: one blast run;
# leaves the row in row[ROUND.SYSTEM] (up to proxy_cpu_us_per_op), the rest
# in rest[...], ops_per_s and ops_per_server_core_s in rate[...] and core[...].
declare -A row=() rest=() rate=() core=()
point() {
    local sys=$1 round=$2 proto=$3 size=$4 conns=$5 pipe=$6 mix=$7 keys=$8
    local dir="$work/$proto.$size.$conns.$pipe.$mix.$round.$sys"
    local m=${mc[$sys]} x=${proxy[$sys]:-} waited attempt
    alive "$sys"
    # A point disturbed by other work on this shared machine (other_busy_pct
    # over 15: mostly CPU the hypervisor gave to other guests) is measured
    # again, up to three times in all; the row keeps the last attempt.
    for attempt in 1 2 3; do
    waited=$(wait_quiet)
    local mc0 x0=0 busy0 total0 t0 mc1 x1=0 busy1 total1 t1
    mc0=$(cpu_ticks "$m"); [ -n "$x" ] && x0=$(cpu_ticks "$x")
    read -r busy0 total0 < <(machine_ticks); t0=$(date +%s%N)
    /usr/bin/time -f "%U %S" -o "$work/time" "${client[@]}" "$bin/blast" -s "127.0.0.1:${port[$sys]}" \
        --protocol "$proto" -w "$conns" --pipeline "$pipe" --mix "${mixes[$mix]}" --key-space "$keys" \
        --key-length $keylen --value-size "$size" --duration "$dur" --csv-dir "$dir" >"$dir.out" 2>&1 \
        || { echo "blast failed: $sys $proto $size B, $conns x $pipe, $mix" >&2; tail -5 "$dir.out" >&2; show_logs; exit 1; }
    t1=$(date +%s%N); read -r busy1 total1 < <(machine_ticks)
    mc1=$(cpu_ticks "$m"); [ -n "$x" ] && x1=$(cpu_ticks "$x")
    local s="$dir/summary.csv" n errors misses blast_ticks figures
    n=$(col "$s" all all count)
    errors=$(awk -F, '$2 == "error" && $3 == "service" {n += $4} END {print n + 0}' "$s")
    misses=$(col "$s" get miss count)
    [ "$errors" = 0 ] || echo "$sys $proto $size B, $conns x $pipe, $mix, round $round: $errors errors" >&2
    grep -h 'broke' "$dir.out" >&2 || true
    [ "$misses" = 0 ] || echo "$sys $proto $size B, $conns x $pipe, $mix, round $round: $misses get misses" >&2
    blast_ticks=$(awk -v hz="$hz" '{printf "%.0f", ($1 + $2) * hz}' "$work/time")
    # server_cpu_s, server_cpu_pct, ops_per_server_core_s, memcached and proxy
    # CPU per request, other_busy_pct
    figures=$(awk -v n="$n" -v mc=$((mc1 - mc0)) -v x=$((x1 - x0)) -v hasx="${x:+1}" -v ns=$((t1 - t0)) \
        -v hz="$hz" -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v bl="$blast_ticks" 'BEGIN {
            s = (mc + x) / hz
            printf "%.2f,%.1f,", s, s * 100 / (ns / 1e9)
            if (s > 0) printf "%.0f", n / s
            printf ","
            if (n > 0) printf "%.2f", mc * 1e6 / hz / n
            printf ","
            if (n > 0 && hasx) printf "%.2f", x * 1e6 / hz / n
            o = (b - mc - x - bl) * 100 / t
            printf ",%.0f\n", o < 0 ? 0 : o
        }')
    local cpu pct percore mcu xu other rendu=""
    IFS=, read -r cpu pct percore mcu xu other <<<"$figures"
    [ "$other" -le 15 ] && break
    echo "$sys $proto $size B, $conns x $pipe, $mix, round $round: disturbed (other_busy_pct $other), attempt $attempt" >&2
    done
    case $sys in rend-*) rendu=$xu ;; esac
    rate[$round.$sys]=$(printf '%.0f' "$(col "$s" all all rate_per_s)")
    core[$round.$sys]=$percore
    row[$round.$sys]="$round,$sys,$proto,$size,$conns,$pipe,$mix,${check[$sys.$size]},$n,${rate[$round.$sys]},$(col "$s" all all p50_us),$(col "$s" all all p99_us),$errors,$cpu,$pct,$percore,$rendu,$mcu,$xu"
    rest[$round.$sys]="$other,$waited,$attempt"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "" && b != "" && b > 0) printf "%.2f", a / b}'; }

# load PROTOCOL SIZE CONNS PIPELINE MIX KEYS: every system, every round; appends the rows
load() {
    local proto=$1 size=$2 conns=$3 pipe=$4 mix=$5 keys=$6 round sys i order=()
    local these=("${systems[@]}")
    [ "$proto" = binary ] && these=(direct rend-l1-only rend-l1-l2 rend-chunked)
    row=(); rest=(); rate=(); core=()
    for round in $(seq "$rounds"); do
        order=("${these[@]}")
        if [ $((round % 2)) = 0 ]; then
            order=(); for ((i = ${#these[@]} - 1; i >= 0; i--)); do order+=("${these[$i]}"); done
        fi
        for sys in "${order[@]}"; do point "$sys" "$round" "$proto" "$size" "$conns" "$pipe" "$mix" "$keys"; done
    done
    for round in $(seq "$rounds"); do
        for sys in "${these[@]}"; do
            echo "${row[$round.$sys]},$(ratio "${core[$round.$sys]}" "${core[$round.nutcracker]:-}"),$(ratio "${rate[$round.$sys]}" "${rate[$round.direct]}"),${rest[$round.$sys]}" \
                | tee -a "$out"
        done
    done
}

echo "round,system,protocol,value_size,connections,pipeline,mix,preload_check,requests,ops_per_s,p50_us,p99_us,errors,server_cpu_s,server_cpu_pct,ops_per_server_core_s,rend_cpu_us_per_op,memcached_cpu_us_per_op,proxy_cpu_us_per_op,vs_nutcracker,vs_direct,other_busy_pct,quiet_wait_s,attempts" >"$out"

for sys in "${systems[@]}"; do start_system "$sys"; done

sizes=(100 20480); conns_list=(4 50); pipes=(1 16); mix_list=(get mixed)
if [ "$quick" = 1 ]; then sizes=(100); mix_list=(get); fi
for size in "${sizes[@]}"; do
    keys=10000; [ "$size" = 20480 ] && keys=5000
    preload "$size" "$keys"
    for conns in "${conns_list[@]}"; do
        for pipe in "${pipes[@]}"; do
            for mix in "${mix_list[@]}"; do load text "$size" "$conns" "$pipe" "$mix" "$keys"; done
        done
    done
    if [ "$size" = 100 ] && [ "$quick" != 1 ]; then
        for mix in "${mix_list[@]}"; do load binary 100 50 1 "$mix" "$keys"; done
        load text 100 50 1 set "$keys"
    fi
done

# The summary: means over rounds per load, mix and system, and the ratios.
awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) h[$i] = i; next}
    {
        l = $h["protocol"] "," $h["value_size"] "," $h["connections"] "," $h["pipeline"] "," $h["mix"]; s = $h["system"]
        if (!(l in seenl)) {seenl[l] = 1; loads[++nl] = l}
        if (!(s in seens)) {seens[s] = 1; syss[++ns] = s}
        k = l SUBSEP s; n[k]++
        ops[k] += $h["ops_per_s"]; core[k] += $h["ops_per_server_core_s"]; pct[k] += $h["server_cpu_pct"]
        mcu[k] += $h["memcached_cpu_us_per_op"]; xu[k] += $h["proxy_cpu_us_per_op"]; hasx[k] = $h["proxy_cpu_us_per_op"] != ""
        for (r = 1; r <= 2; r++) {
            f = r == 1 ? "vs_nutcracker" : "vs_direct"; v = $h[f]
            if (v == "") continue
            if (!((k, r) in lo) || v + 0 < lo[k, r]) lo[k, r] = v + 0
            if (!((k, r) in hi) || v + 0 > hi[k, r]) hi[k, r] = v + 0
        }
    }
    function rat(a, b) {return b > 0 ? sprintf("%.2f", a / b) : ""}
    function mm(k, r) {return (k, r) in lo ? sprintf("%.2f,%.2f", lo[k, r], hi[k, r]) : ","}
    END {
        print "protocol,value_size,connections,pipeline,mix,system,rounds,ops_per_s,ops_per_server_core_s,server_cpu_pct,memcached_cpu_us_per_op,proxy_cpu_us_per_op,vs_nutcracker,vs_direct,vs_nutcracker_min,vs_nutcracker_max,vs_direct_min,vs_direct_max,ops_vs_nutcracker,ops_vs_l1_only"
        for (i = 1; i <= nl; i++) for (j = 1; j <= ns; j++) {
            l = loads[i]; k = l SUBSEP syss[j]; if (!(k in n)) continue
            c = n[k]; kn = l SUBSEP "nutcracker"; kd = l SUBSEP "direct"; kl = l SUBSEP "rend-l1-only"
            printf "%s,%s,%d,%.0f,%.0f,%.1f,%.2f,%s,%s,%s,%s,%s,%s,%s\n", l, syss[j], c, ops[k] / c, core[k] / c, pct[k] / c, mcu[k] / c,
                hasx[k] ? sprintf("%.2f", xu[k] / c) : "",
                kn in n ? rat(core[k] / c, core[kn] / n[kn]) : "", kd in n ? rat(ops[k] / c, ops[kd] / n[kd]) : "",
                mm(k, 1), mm(k, 2),
                kn in n ? rat(ops[k] / c, ops[kn] / n[kn]) : "", kl in n ? rat(ops[k] / c, ops[kl] / n[kl]) : ""
        }
    }' "$out" >"$summary"

for sys in "${systems[@]}"; do [ -n "${proxy[$sys]:-}" ] && stop "${proxy[$sys]}"; stop "${mc[$sys]}"; done
show_logs
cat "$summary"
echo "took ${SECONDS}s" >&2

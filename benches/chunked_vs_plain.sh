#!/usr/bin/env bash
# rend --chunked against rend without chunking, in the same run: closed-loop
# throughput and p99 of get and set for 4 KiB, 20 KiB and 500 KiB values at
# 4 and 50 connections. Writes results/chunked_vs_plain.csv, and the round
# trips rend makes to memcached per request in results/chunked_round_trips.csv.
#
#   bash benches/chunked_vs_plain.sh
#
# The mix is the issue's "get and set (1:10)" read as one set to ten gets:
# blast --mix get=10,set=1, pipeline 1, uniform keys, 4 s (no warmup: the
# preload below has warmed both stacks, and blast's whole life is then the
# window the CPU columns cover). Each mode has its own fresh memcached
# (-m 1024, default threads; the key space, at most ~220 MB chunked, fits,
# so nothing is evicted) and
# rend with its default 4 memcached connections; both stacks run side by side
# and are loaded one at a time. Before measuring, setget writes every key
# through the stack and verifies every byte (column preload_check).
# Every point is measured twice, in the order plain, chunked, chunked, plain
# (rounds 1 and 2), so drift on this shared machine shows as a difference
# between rounds. Latencies are blast's p99 of get hits and of stored sets;
# chunked_vs_plain is the chunked rate over the plain rate of the same round.
# blast_, rend_ and memcached_cpu_us_per_request: CPU time (user + system;
# /proc/PID/stat and /usr/bin/time, 10 ms ticks) each process spent while
# blast ran, over the requests measured. The machine has 2 cores shared by
# blast, rend and memcached, so throughput is CPU-bound and the CPU per
# request says where the time goes. The machine is shared with other work:
# before each point the script waits (up to 30 s, quiet_wait_s) for it to be
# under 25% busy, and other_busy_pct is the machine's busy time during the
# point not charged to blast, rend or memcached (other processes, and kernel
# work charged to none), in % of both cores: a point with a high figure was
# disturbed. rend_backend_errors: rend's backend_errors counter (memcached
# unavailable or timing out) over the point.
#
# Round trips (chunked_round_trips.csv): one client connection, pipeline 1,
# rend with one memcached connection, strace -f on rend counting its send and
# receive syscalls on that connection. A round trip is a run of sends to
# memcached ended by a receive from it; divided by the requests sent. 20 KiB
# values with chunk sizes 1024 (20 chunks), the default (1085 for the 12-byte
# keys used here: 19 chunks) and 8192 (3 chunks), and without chunking. The
# p50 latencies there come from a separate run without strace. Without
# strace installed this part is skipped.
source "$(dirname "$0")/common.sh"
duration=4
keylen=12


out=results/chunked_vs_plain.csv
echo "value_size,connections,round,mode,preload_check,requests,requests_per_s,get_p99_us,set_p99_us,get_misses,errors,rend_backend_errors,blast_cpu_us_per_request,rend_cpu_us_per_request,memcached_cpu_us_per_request,other_busy_pct,quiet_wait_s,chunked_vs_plain" >"$out"

for size in 4096 20480 512000; do
    case $size in
        4096) keys=10000 ;;
        20480) keys=5000 ;;
        512000) keys=400 ;;
    esac
    start_stack plain --orca l1-only
    start_stack chunked --orca l1-only --chunked
    declare -A check=()
    for mode in plain chunked; do
        p="port_$mode"
        txt=$("$bin/setget" -s "127.0.0.1:${!p}" -w 4 --pipeline 4 --key-space $keys --key-length $keylen \
            --value-size $size 2>/dev/null || true)
        line=$(echo "$txt" | grep '^checked' || echo "setget failed")
        if echo "$line" | grep -q 'mismatches 0  misses 0  errors 0'; then check[$mode]=ok; else
            check[$mode]=$(echo "$line" | tr -s ' ' | tr ' ' '_')
            echo "preload through $mode ($size B): $line" >&2; echo "$txt" | grep -A10 '^checked' >&2
        fi
    done
    for conns in 4 50; do
        declare -A rate=()
        for step in "1 plain" "1 chunked" "2 chunked" "2 plain"; do
            read -r round mode <<<"$step"
            p="port_$mode"
            dir="$work/$size.$conns.$round.$mode"
            waited=$(wait_quiet)
            r="rend_$mode"; m="mc_$mode"
            be0=$(rend_stat "${!p}" backend_errors)
            rend0=$(cpu_ticks "${!r}"); mc0=$(cpu_ticks "${!m}"); read -r busy0 total0 < <(machine_ticks)
            /usr/bin/time -f "%U %S" -o "$work/time" "$bin/blast" -s "127.0.0.1:${!p}" -w $conns --pipeline 1 \
                --mix get=10,set=1 --key-space $keys --key-length $keylen --value-size $size \
                --duration $duration --csv-dir "$dir" >/dev/null 2>&1 \
                || { echo "blast failed: $mode $size $conns" >&2; exit 1; }
            rend1=$(cpu_ticks "${!r}"); mc1=$(cpu_ticks "${!m}"); read -r busy1 total1 < <(machine_ticks)
            be1=$(rend_stat "${!p}" backend_errors)
            blast_ticks=$(awk -v hz="$hz" '{printf "%.0f", ($1 + $2) * hz}' "$work/time")
            other=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v ours=$((rend1 - rend0 + mc1 - mc0 + blast_ticks)) \
                'BEGIN {o = (b - ours) * 100 / t; printf "%.0f", o < 0 ? 0 : o}')
            s="$dir/summary.csv"
            rate[$round.$mode]=$(col "$s" all all rate_per_s)
            errors=$(awk -F, '$2 == "error" && $3 == "service" {n += $4} END {print n + 0}' "$s")
            printf -v "row_${round}_$mode" '%s' "$size,$conns,$round,$mode,${check[$mode]},$(col "$s" all all count),$(printf '%.0f' "${rate[$round.$mode]}"),$(col "$s" get hit p99_us),$(col "$s" set stored p99_us),$(col "$s" get miss count),$errors,$((be1 - be0)),$(cpu_us 0 "$blast_ticks" "$s"),$(cpu_us "$rend0" "$rend1" "$s"),$(cpu_us "$mc0" "$mc1" "$s"),$other,$waited"
        done
        for round in 1 2; do
            ratio=$(awk -v a="${rate[$round.chunked]}" -v b="${rate[$round.plain]}" 'BEGIN {printf "%.2f", a / b}')
            r="row_${round}_plain"; echo "${!r},1.00" | tee -a "$out"
            r="row_${round}_chunked"; echo "${!r},$ratio" | tee -a "$out"
        done
    done
    stop_stack plain
    stop_stack chunked
done

# Round trips per request.
if ! command -v strace >/dev/null; then echo "strace not installed: no round trip counts" >&2; cat "$out"; exit 0; fi
rt=results/chunked_round_trips.csv
echo "mode,chunk_size,chunks_per_value,value_size,command,requests,l1_round_trips_per_request,l1_sends_per_request,l1_bytes_sent_per_request,p50_us_without_strace" >"$rt"
size=20480
n=500
count_l1() { # count_l1 TRACE MPORT REQUESTS: "round_trips sends bytes" per request
    awk -v l1="->127.0.0.1:$2]" -v n="$3" '
        {
            pid = $1; line = $0; sub(/^[0-9]+ +/, "", line)
            if (line ~ /<unfinished \.\.\.>$/) { pend[pid] = line; next }
            if (line ~ /^<\.\.\. [a-z0-9]+ resumed>/) { line = pend[pid] line; delete pend[pid] }
            if (index(line, l1) == 0) next
            name = substr(line, 1, index(line, "(") - 1)
            if (!match(line, /\) = -?[0-9]+/)) next
            ret = substr(line, RSTART + 4, RLENGTH - 4) + 0
            if (ret <= 0) next
            if (name ~ /^(write|writev|sendto|sendmsg)$/) { sends++; bytes += ret; if (!run) { rounds++; run = 1 } }
            else if (name ~ /^(read|readv|recvfrom|recvmsg)$/) run = 0
        }
        END { printf "%.2f %.2f %.0f\n", rounds / n, sends / n, bytes / n }' "$1"
}
for cfg in "plain -" "chunked 1024" "chunked default" "chunked 8192"; do
    read -r mode cs <<<"$cfg"
    flags=(--orca l1-only --l1-conns 1)
    [ "$mode" = chunked ] && flags+=(--chunked)
    [ "$mode" = chunked ] && [ "$cs" != default ] && flags+=(--chunk-size "$cs")
    start_stack rt "${flags[@]}"
    server="127.0.0.1:$port_rt"
    chunks=1
    if [ "$mode" = chunked ]; then
        eff=$cs; [ "$cs" = default ] && eff=$((1097 - keylen))
        chunks=$(( (size + eff - 1) / eff ))
    fi
    for cmd in set get; do
        # latency without strace (the sets also load the keys the gets read)
        "$bin/blast" -s "$server" -w 1 --pipeline 1 --mix "$cmd=1" -n $n --key-dist sequential --key-space 100 --key-length $keylen \
            --value-size $size --csv-dir "$work/rt.$cmd" >/dev/null 2>&1
        outcome=stored; [ "$cmd" = get ] && outcome=hit
        p50=$(col "$work/rt.$cmd/summary.csv" "$cmd" "$outcome" p50_us)
        timeout 120 strace -f -qq -yy -e trace=write,writev,sendto,sendmsg,read,readv,recvfrom,recvmsg \
            -o "$work/trace" -p "$rend_rt" 2>/dev/null &
        st=$!
        sleep 1
        "$bin/blast" -s "$server" -w 1 --pipeline 1 --mix "$cmd=1" -n $n --key-dist sequential --key-space 100 --key-length $keylen \
            --value-size $size >/dev/null 2>&1
        sleep 0.5
        kill -INT $st 2>/dev/null || true; wait $st 2>/dev/null || true
        read -r rounds sends bytes < <(count_l1 "$work/trace" "$mport_rt" $n)
        echo "$mode,$cs,$chunks,$size,$cmd,$n,$rounds,$sends,$bytes,$p50" | tee -a "$rt"
    done
    stop_stack rt
done
if grep -qiE "error|panic" "$work/rend.log"; then echo "rend logged:" >&2; grep -iE "error|panic" "$work/rend.log" | head >&2; fi
cat "$out" "$rt"

#!/usr/bin/env bash
# blast's closed-loop throughput against memcached (-t 1) beside memcslap's,
# in the same run, at 4 and 50 connections, pipeline 1 and 16; with the CPU
# each tool spends per request. Writes results/blast_vs_memcslap.csv.
#
#   bash benches/blast_vs_memcslap.sh
#
# memcslap (libmemcached's memslap 1.1) cannot pipeline: its row is the same
# at both depths, and blast's pipeline-16 rows show what pipelining buys.
# Its get test loads 100-byte keys with 400-byte values first; blast reads
# the same shape of data, loaded by setget beforehand.
source "$(dirname "$0")/common.sh"
port=$(free_port)
memcached "${user[@]}" -l 127.0.0.1 -p "$port" -U 0 -t 1 -m 1024 -c 4096 &
pids+=($!)
wait_port "$port"
server="127.0.0.1:$port"
keys=10000
"$bin/setget" -s "$server" -w 4 --pipeline 16 --key-space $keys --key-length 100 --value-size 400 >/dev/null 2>&1

out=results/blast_vs_memcslap.csv
echo "tool,connections,pipeline,requests,seconds,requests_per_s,cpu_us_per_request,blast_vs_memcslap" >"$out"
measure() { # prints: seconds cpu_seconds, from the tool's own timing and /usr/bin/time
    local tf; tf=$(mktemp)
    /usr/bin/time -f "%U %S" -o "$tf" "$@" >"$tf.out" 2>&1
    local cpu; cpu=$(awk '{print $1 + $2}' "$tf")
    local secs
    if grep -q "Time to get" "$tf.out"; then
        secs=$(grep "Time to get" "$tf.out" | awk '{print $(NF-1)}')
    else
        secs=$(grep -E "^[0-9]+ requests in" "$tf.out" | awk '{print $4}')
    fi
    echo "$secs $cpu"
    rm -f "$tf" "$tf.out"
}
for conns in 4 50; do
    per=$((200000 / conns))
    total=$((per * conns))
    read -r ms_secs ms_cpu < <(measure memcslap --servers="$server" --test=get --concurrency=$conns --execute-number=$per --initial-load=$keys)
    ms_rate=$(awk -v n=$total -v s="$ms_secs" 'BEGIN{printf "%.0f", n/s}')
    ms_cpu_req=$(awk -v n=$total -v c="$ms_cpu" 'BEGIN{printf "%.2f", c*1e6/n}')
    for pipeline in 1 16; do
        echo "memcslap,$conns,$pipeline,$total,$ms_secs,$ms_rate,$ms_cpu_req,1.00" >>"$out"
        read -r b_secs b_cpu < <(measure "$bin/blast" -s "$server" -w $conns --pipeline $pipeline -n $total \
            --mix get=1 --key-space $keys --key-length 100 --value-size 400)
        b_rate=$(awk -v n=$total -v s="$b_secs" 'BEGIN{printf "%.0f", n/s}')
        b_cpu_req=$(awk -v n=$total -v c="$b_cpu" 'BEGIN{printf "%.2f", c*1e6/n}')
        ratio=$(awk -v a="$b_rate" -v b="$ms_rate" 'BEGIN{printf "%.2f", a/b}')
        echo "blast,$conns,$pipeline,$total,$b_secs,$b_rate,$b_cpu_req,$ratio" >>"$out"
    done
done
cat "$out"

#!/usr/bin/env bash
# What Prometheus metrics cost: get/set throughput of one rend (l1-l2, its
# own memcached -m 1024, RocksDB in a scratch directory) while /metrics is
# scraped every second, against the same rend not scraped, in the same run.
# Writes results/metrics_overhead.csv.
#
#   bash benches/metrics_overhead.sh
#
# blast --mix get=9,set=1, 1 KiB values, 20,000 keys (written and verified
# through rend first, so gets hit L1), pipeline 1, 5 s per point, at 4 and 50
# connections; four rounds per connection count, alternating which of the
# two goes first (unscraped, scraped; scraped, unscraped; ...) so drift on
# this shared machine falls on both. ratio: scraped over unscraped in the
# same round. Requests are recorded in either case (the recording is always
# on); what scraping adds is the encoding of every metric once a second.
# scrapes: how many scrapes completed during the point, scrape_bytes the
# size of the last one (HTTP headers included). results/metrics_scrape_cost.csv:
# rend's CPU per scrape, measured over 200 scrapes back to back with no load.
source "$(dirname "$0")/common.sh"
dur=${BENCH_SECONDS:-5}
keys=20000

mport=$(free_port); mport=$((mport + 1))
start_stack m --orca l1-l2 --batch-listen off --l2-path "$work/l2" --metrics-listen "127.0.0.1:$mport"
wait_port "$mport"
"$bin/setget" -s "127.0.0.1:$port_m" -w 8 --pipeline 8 --key-space $keys --key-length 16 --value-size 1024 \
    | grep '^checked' | grep -q 'mismatches 0  misses 0  errors 0' || { echo "preload failed" >&2; exit 1; }

scrape() { # one GET /metrics into $work/last_scrape (few processes: the scraper must not be the load)
    exec 3<>"/dev/tcp/127.0.0.1/$mport"
    printf 'GET /metrics HTTP/1.1\r\nHost: rend\r\n\r\n' >&3
    cat <&3 >"$work/last_scrape"
    exec 3<&-
}
scrape

# The cost of one scrape in rend's CPU, measured alone: 200 scrapes back to back.
wait_quiet >/dev/null
t0=$(cpu_ticks "$rend_m"); s0=$(date +%s%N)
for _ in $(seq 200); do scrape; done
t1=$(cpu_ticks "$rend_m"); s1=$(date +%s%N)
echo "scrapes,rend_cpu_ms_per_scrape,wall_ms_per_scrape,scrape_bytes" >results/metrics_scrape_cost.csv
echo "200,$(awk -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN {printf "%.3f", t * 1000 / hz / 200}'),$(awk -v d=$((s1 - s0)) 'BEGIN {printf "%.3f", d / 1e6 / 200}'),$(wc -c <"$work/last_scrape")" \
    | tee -a results/metrics_scrape_cost.csv

out=results/metrics_overhead.csv
echo "connections,round,mode,requests,requests_per_s,get_p99_us,set_p99_us,errors,scrapes,scrape_bytes,rend_cpu_us_per_request,other_busy_pct,ratio" >"$out"

point() { # point CONNS ROUND MODE: one blast run; prints a row without the ratio
    local conns=$1 round=$2 mode=$3 dir="$work/$1.$2.$3" scraper="" n=0 bytes=""
    wait_quiet >/dev/null
    if [ "$mode" = scraped ]; then
        ( while true; do scrape; echo >>"$work/scrapes"; sleep 1; done ) &
        scraper=$!
    fi
    : >"$work/scrapes"
    local r0 busy0 total0 r1 busy1 total1
    r0=$(cpu_ticks "$rend_m"); read -r busy0 total0 < <(machine_ticks)
    /usr/bin/time -f "%U %S" -o "$work/time" "$bin/blast" -s "127.0.0.1:$port_m" -w "$conns" --pipeline 1 \
        --mix get=9,set=1 --key-space $keys --key-length 16 --value-size 1024 --duration "$dur" \
        --csv-dir "$dir" >/dev/null 2>&1
    r1=$(cpu_ticks "$rend_m"); read -r busy1 total1 < <(machine_ticks)
    if [ -n "$scraper" ]; then
        kill "$scraper" 2>/dev/null; wait "$scraper" 2>/dev/null || true
        n=$(wc -l <"$work/scrapes"); bytes=$(wc -c <"$work/last_scrape")
    fi
    local s="$dir/summary.csv" blast_ticks other
    blast_ticks=$(awk -v hz="$hz" '{printf "%.0f", ($1 + $2) * hz}' "$work/time")
    other=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v ours=$((r1 - r0 + blast_ticks)) \
        'BEGIN {o = (b - ours) * 100 / t; printf "%.0f", o < 0 ? 0 : o}')
    local errors
    errors=$(awk -F, '$2 == "error" && $3 == "service" {n += $4} END {print n + 0}' "$s")
    echo "$conns,$round,$mode,$(col "$s" all all count),$(printf '%.0f' "$(col "$s" all all rate_per_s)"),$(col "$s" get hit p99_us),$(col "$s" set stored p99_us),$errors,$n,$bytes,$(cpu_us "$r0" "$r1" "$s"),$other"
}

for conns in 4 50; do
    for round in 1 2 3 4; do
        if [ $((round % 2)) -eq 1 ]; then order="unscraped scraped"; else order="scraped unscraped"; fi
        declare -A row=()
        for mode in $order; do row[$mode]=$(point "$conns" "$round" "$mode"); done
        ratio=$(awk -v a="$(echo "${row[scraped]}" | cut -d, -f5)" -v b="$(echo "${row[unscraped]}" | cut -d, -f5)" \
            'BEGIN {printf "%.3f", a / b}')
        echo "${row[unscraped]},1.000" | tee -a "$out"
        echo "${row[scraped]},$ratio" | tee -a "$out"
    done
done
stop_stack m
cat "$out"

#!/usr/bin/env bash
# Soak: one rend in l1-l2 (--orca l1-l2 --chunked --l2-durability wal) under
# mixed load, self-verifying traffic and malformed requests for SOAK_MINUTES
# (default 30), with a fault every few minutes; one row a minute in
# results/soak.csv, then a verdict. A benchmark-style script, not a CI test.
#
#   bash benches/soak.sh                       # 30 minutes
#   SOAK_MINUTES=4 SOAK_FIRST_FAULT=60 SOAK_FAULT_EVERY=30 SOAK_QUIET_TAIL=60 \
#       SOAK_OUT=/tmp/soak-short.csv bash benches/soak.sh   # a short trial
#
# Every SOAK_* variable also has a flag: --minutes N, --fault-every SECS,
# --first-fault SECS, --quiet-tail SECS, --out FILE, --seed N,
# --blast-rate R, --verify-rate R, --fuzz-rate R.
#
# Setup, all in a scratch directory removed at exit, all on 127.0.0.1:
#   memcached [-u root] -l 127.0.0.1 -p MPORT -U 0 -m 64 -c 4096 (Debian's,
#     fresh, the L1; 64 MB is less than the data, so L1 evicts and L2 serves)
#   rend --listen 127.0.0.1:RPORT --l1 127.0.0.1:MPORT --orca l1-l2 --chunked
#     --l2-durability wal --l2-path SCRATCH/l2 --batch-listen off
#     --metrics-listen off, RUST_LOG=info, stderr appended to one log over
#     restarts.
# Load, all started at once and running to the end:
#   blast -w 16 --rate SOAK_BLAST_RATE (default 3000 requests/s, open loop)
#     --mix get=55,multiget=5,set=20,delete=5,incr=5,append=5,touch=5
#     --key-space 10000 --key-length 16 --value-size 100:70,1500:20,6000:8,40000:2
#     (text), run as one blast per minute (--duration up to the minute's end,
#     seed SOAK_SEED*1000+minute); when rend is killed blast's connections
#     break and it ends, and a new blast runs for the rest of the minute.
#   benches/soak.py verify: 4 writers and 4 readers (even ones binary, odd
#     ones text), SOAK_VERIFY_RATE requests/s in all (default 1000), 20,000
#     keys of 16 B to 40 KB (70% under 1 KB, 5% over 6 KB) whose values
#     encode key, version and a CRC-32; per key the latest acknowledged
#     version and the writes in flight or of unknown outcome are tracked,
#     and every read is judged (see soak.py). It re-reads every key it wrote
#     after each restart of rend or memcached (a sweep, signalled with
#     SIGUSR1) and once more at the end with no write in flight (the final
#     sweep).
#   benches/soak.py fuzz: 4 connections, SOAK_FUZZ_RATE requests/s in all
#     (default 200), seed SOAK_SEED: valid text and binary requests, half of
#     them mutated (byte flips, truncations, 2-70 KB lines, bad <bytes>,
#     flags and exptime fields, bad binary body/key/extras lengths, magic and
#     data type, garbage), 1-60 requests a connection, reconnecting whenever
#     rend closes one; never flush_all.
# Faults, the first at SOAK_FIRST_FAULT seconds (default 300), then every
# SOAK_FAULT_EVERY (default 180), none in the last SOAK_QUIET_TAIL (default
# 120), rotating in this order:
#   memcached-kill   memcached SIGKILLed and started again on the same port
#   memcached-stop   memcached SIGSTOPped for 5 s, then SIGCONT
#   client-resets    soak.py resets: 500 clients connect, send half a request
#                    (text or binary set or get) and close with SO_LINGER 0 (RST)
#   rend-kill        rend SIGKILLed and started again on the same L2
#                    directory and port; the verifier then sweeps
# If rend or memcached dies without being killed, the minute's fault says
# rend-died or memcached-died, it is started again, and for rend the
# verdict fails.
#
# Columns of soak.csv (one row per minute; counts are of that minute):
#   minute                  1, 2, ...: seconds (minute-1)*60 to minute*60
#   blast_ops_per_s         blast's replies in the minute / 60
#   blast_p99_us            blast's p99 latency, all commands, service clock
#                           (from the write of a request); when the minute
#                           has several blast runs (rend was restarted), the
#                           largest of their p99s
#   blast_p99_intended_us   the same from the open-loop schedule's intended
#                           send time (coordinated omission corrected)
#   blast_errors            blast replies that were errors, plus requests in
#                           flight when a connection broke
#   blast_runs              blast runs in the minute that produced a summary
#   verifier_ops_per_s      verifier requests in the minute / 60 (a multi-get
#                           is one request)
#   verifier_errors         verifier requests with no usable reply (connection
#                           lost, timeout, error reply)
#   rend_rss_mib            VmRSS of rend at the minute's end (/proc/PID/status)
#   rend_fds                open descriptors of rend at the minute's end
#                           (entries of /proc/PID/fd)
#   l2_memtable_mib         RocksDB's memtables (rend's `stats`
#                           l2_memtable_bytes) at the minute's end, MiB
#   l2_block_cache_mib      RocksDB's block cache in use (l2_block_cache_bytes)
#   l1_write_failures       rend's `stats` l1_write_failures, counted since
#                           that rend started (L1 writes that failed; the key
#                           is then served from L2)
#   fault                   the fault(s) injected in the minute, "+"-joined
#   reads                   keys the verifier read (sweeps included)
#   correct                 reads that saw the acknowledged version, or a
#                           version in flight or of unknown outcome
#   corrupted_or_foreign    reads of a value that failed its check (checksum,
#                           key, length, payload, flags) or of a version never
#                           written
#   missing_acknowledged    misses where only a value was possible (also a
#                           delete answered NOT_FOUND in that case)
#   stale                   reads of a version older than the one acknowledged
#                           when the read was sent (also a delete answered
#                           DELETED when the key was acknowledged absent)
#   unacked_seen            of correct, reads that saw a version not yet
#                           acknowledged when the read was sent
#   sweep_reads             of reads, those of sweeps after restarts
#   fuzz_requests           requests the fuzzer sent (mutated or not)
#   fuzz_server_closes      fuzzer connections rend closed
#   fuzz_panic_replies      fuzzer sessions whose replies contained "panic"
#
# Verdict (printed at the end; exit 1 if any line fails): no corrupted or
# foreign value; no acknowledged write missing, in reads, in the sweeps after
# restarts or in the final sweep; no stale read; no "panicked" in rend's log,
# no panic reply to the fuzzer and rend never died unkilled; RSS and FDs back
# to their plateau after every fault. The plateau is the median of rend_rss_mib,
# of rend_fds and of rend_rss_mib - l2_memtable_mib - l2_block_cache_mib over
# the last three minutes (fewer if there are fewer) before
# the first fault's minute, so that the first minutes, while RocksDB's
# memtables and block cache fill, do not set it; "back"
# means the sample at the end of the minute after the fault's minute, or of
# the one after that, has at most plateau + 50 FDs and an RSS at most plateau
# + 64 MiB, or, since RocksDB's block cache (256 MiB by default) and memtables
# (up to 3 x 64 MiB) fill over many minutes, an RSS less those two (rend's
# stats) at most 64 MiB above the same figure's plateau. On a
# failing verdict the logs are copied to /var/tmp/rend-soak-logs.TIMESTAMP.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${SOAK_MINUTES:-30}
every=${SOAK_FAULT_EVERY:-180}
first=${SOAK_FIRST_FAULT:-300}
quiet_tail=${SOAK_QUIET_TAIL:-120}
out=${SOAK_OUT:-results/soak.csv}
seed=${SOAK_SEED:-1}
blast_rate=${SOAK_BLAST_RATE:-3000}
verify_rate=${SOAK_VERIFY_RATE:-1000}
fuzz_rate=${SOAK_FUZZ_RATE:-200}
while [ $# -gt 0 ]; do
    case $1 in
        --minutes) minutes=$2 ;;
        --fault-every) every=$2 ;;
        --first-fault) first=$2 ;;
        --quiet-tail) quiet_tail=$2 ;;
        --out) out=$2 ;;
        --seed) seed=$2 ;;
        --blast-rate) blast_rate=$2 ;;
        --verify-rate) verify_rate=$2 ;;
        --fuzz-rate) fuzz_rate=$2 ;;
        *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
    shift 2
done
for n in "$minutes" "$every" "$first" "$quiet_tail" "$seed"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "not a whole number: $n" >&2; exit 2; }
done
[ "$minutes" -ge 1 ] && [ "$every" -ge 10 ] || { echo "need minutes >= 1, fault interval >= 10 s" >&2; exit 2; }

source benches/common.sh
mkdir -p "$work/blast" "$work/samples"

mport=$(free_port); rport=$((mport + 1))
total=$((minutes * 60))
mc=""; rend=""; blaster=""; verifier=""; fuzzer=""; stopped_mc=""

keep_logs() {
    keep=/var/tmp/rend-soak-logs.$(date +%Y%m%d-%H%M%S)
    mkdir -p "$keep"; cp "$work"/*.log "$work"/*.out "$work"/*.status "$out" "$keep"/ 2>/dev/null || true
    echo "logs kept in $keep" >&2
}
soak_cleanup() {
    local rc=$?
    [ "$rc" = 0 ] || [ -n "${keep:-}" ] || keep_logs
    [ -n "$stopped_mc" ] && kill -CONT "$stopped_mc" 2>/dev/null
    [ -n "$blaster" ] && kill "$blaster" 2>/dev/null
    cleanup
}
trap soak_cleanup EXIT

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
alive() { [ -n "$1" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
forget() { local keep=() q; for q in "${pids[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done; pids=("${keep[@]}"); }
listening() { # listening PORT SECS
    local i; for ((i = 0; i < $2 * 20; i++)); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "nothing listening on port $1 after $2 s" >&2; return 1
}

start_mc() {
    memcached "${user[@]}" -l 127.0.0.1 -p "$mport" -U 0 -m 64 -c 4096 &
    mc=$!; pids+=("$mc")
    listening "$mport" 10
}
start_rend() {
    echo "=== $(date +%T) starting rend" >>"$work/rend.log"
    RUST_LOG=${RUST_LOG:-info} "$bin/rend" --listen "127.0.0.1:$rport" --l1 "127.0.0.1:$mport" \
        --orca l1-l2 --chunked --l2-durability wal --l2-path "$work/l2" \
        --batch-listen off --metrics-listen off 2>>"$work/rend.log" &
    rend=$!; pids+=("$rend")
    listening "$rport" 60
}
kill9() { kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; forget "$1"; }

# One blast per minute, cut short and run again when rend restarts.
blast_loop() {
    trap - EXIT
    local bp="" m k left
    trap '[ -n "$bp" ] && kill "$bp" 2>/dev/null; exit 0' TERM
    for ((m = 1; m <= minutes; m++)); do
        k=0
        while left=$((t0 + m * 60000 - $(now_ms))); [ "$left" -gt 1000 ]; do
            "$bin/blast" -s "127.0.0.1:$rport" -w 16 --rate "$blast_rate" \
                --mix get=55,multiget=5,set=20,delete=5,incr=5,append=5,touch=5 \
                --key-space 10000 --key-length 16 --value-size 100:70,1500:20,6000:8,40000:2 \
                --seed $((seed * 1000 + m)) --duration "$(awk -v l="$left" 'BEGIN {printf "%.3f", l / 1000}')" \
                --csv-dir "$work/blast/$m.$k" >"$work/blast/$m.$k.out" 2>&1 &
            bp=$!; wait "$bp" || true; bp=""
            [ -f "$work/blast/$m.$k/summary.csv" ] || sleep 0.3
            k=$((k + 1))
        done
        : >"$work/blast/$m.done"
    done
}

# blast_figures MINUTE: ops/s,p99,p99_intended,errors,runs over the minute's runs
blast_figures() {
    local files=("$work/blast/$1".*/summary.csv)
    [ -f "${files[0]}" ] || { echo "0,,,0,0"; return; }
    awk -F, 'FNR == 1 {for (i = 1; i <= NF; i++) h[$i] = i; next}
        $1 == "all" && $2 == "all" && $3 == "service" {n += $h["count"]; runs++; if ($h["count"] > 0 && $h["p99_us"] + 0 > p) p = $h["p99_us"] + 0}
        $1 == "all" && $2 == "all" && $3 == "intended" {if ($h["count"] > 0 && $h["p99_us"] + 0 > pi) pi = $h["p99_us"] + 0}
        $1 != "all" && $2 == "error" && $3 == "service" {e += $h["count"]}
        END {printf "%.0f,%d,%d,%d,%d\n", n / 60, p, pi, e, runs}' "${files[@]}"
}
# delta PREV CUR KEY...: differences of key=value status files, comma-separated
delta() {
    local prev=$1 cur=$2; shift 2
    awk -F= -v keys="$*" 'FILENAME == ARGV[1] {p[$1] = $2; next} {c[$1] = $2}
        END {n = split(keys, k, " "); for (i = 1; i <= n; i++) printf "%s%d", (i > 1 ? "," : ""), c[k[i]] - p[k[i]]}' "$prev" "$cur"
}
status_of() { awk -F= -v k="$2" '$1 == k {v = $2} END {print v + 0}' "$1" 2>/dev/null || echo 0; }

# rend_stats: l2_memtable_bytes and l2_block_cache_bytes in MiB and
# l1_write_failures from rend's `stats`, comma-separated (empty if no answer).
rend_stats() {
    python3 - "$rport" 2>/dev/null <<'EOF' || echo ",,"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
s.sendall(b"stats\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    d = s.recv(65536)
    if not d:
        break
    buf += d
st = {}
for line in buf.split(b"\r\n"):
    f = line.split(b" ")
    if len(f) >= 3 and f[0] == b"STAT":
        st[f[1]] = f[2]
g = lambda k: int(st[k])
print("%.1f,%.1f,%d" % (g(b"l2_memtable_bytes") / 2**20, g(b"l2_block_cache_bytes") / 2**20, g(b"l1_write_failures")))
EOF
}

declare -A rss=() fds=() l2mem=() fault=()
sample() { # sample MINUTE: rend's RSS, FDs and stats, the verifier's and fuzzer's counters
    if alive "$rend"; then
        rss[$1]=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$rend/status")
        fds[$1]=$(ls "/proc/$rend/fd" | wc -l)
    else rss[$1]=""; fds[$1]=""; fi
    l2mem[$1]=$(rend_stats)
    cp "$work/verify.status" "$work/samples/$1.verify" 2>/dev/null || : >"$work/samples/$1.verify"
    cp "$work/fuzz.status" "$work/samples/$1.fuzz" 2>/dev/null || : >"$work/samples/$1.fuzz"
}
row() { # row MINUTE: the CSV row (after the minute's blast runs ended)
    local m=$1 p=$(($1 - 1)) v f
    v=$(delta "$work/samples/$p.verify" "$work/samples/$m.verify" requests errors reads correct \
        corrupted_or_foreign missing_acknowledged stale unacked_seen sweep_reads)
    f=$(delta "$work/samples/$p.fuzz" "$work/samples/$m.fuzz" requests server_closes panic_replies)
    local requests errors rest
    IFS=, read -r requests errors rest <<<"$v"
    echo "$m,$(blast_figures "$m"),$(awk -v n="$requests" 'BEGIN {printf "%.0f", n / 60}'),$errors,${rss[$m]},${fds[$m]},${l2mem[$m]},${fault[$m]:-},$rest,$f" | tee -a "$out"
}

inject() { # inject KIND MINUTE
    local kind=$1 m=$2
    fault[$m]=${fault[$m]:+${fault[$m]}+}$kind
    echo "$(date +%T) minute $m: $kind" >&2
    case $kind in
        memcached-kill) kill9 "$mc"; start_mc; kill -USR1 "$verifier" 2>/dev/null || true ;;
        memcached-stop) kill -STOP "$mc"; stopped_mc=$mc; cont_at=$((e + 5)) ;;
        client-resets)
            python3 benches/soak.py resets --port "$rport" --count 500 --seed $((seed * 1000 + m)) >>"$work/resets.log" 2>&1 &
            pids+=("$!") ;;
        rend-kill) kill9 "$rend"; start_rend; kill -USR1 "$verifier" 2>/dev/null || true ;;
    esac
}

echo "minute,blast_ops_per_s,blast_p99_us,blast_p99_intended_us,blast_errors,blast_runs,verifier_ops_per_s,verifier_errors,rend_rss_mib,rend_fds,l2_memtable_mib,l2_block_cache_mib,l1_write_failures,fault,reads,correct,corrupted_or_foreign,missing_acknowledged,stale,unacked_seen,sweep_reads,fuzz_requests,fuzz_server_closes,fuzz_panic_replies" >"$out"
: >"$work/samples/0.verify"; : >"$work/samples/0.fuzz"

start_mc
start_rend
t0=$(now_ms)
python3 benches/soak.py verify --port "$rport" --rate "$verify_rate" --duration "$total" --seed "$seed" \
    --status "$work/verify.status" >"$work/verify.out" 2>"$work/verify.log" &
verifier=$!; pids+=("$verifier")
python3 benches/soak.py fuzz --port "$rport" --rate "$fuzz_rate" --duration "$total" --seed "$seed" \
    --status "$work/fuzz.status" >"$work/fuzz.out" 2>"$work/fuzz.log" &
fuzzer=$!; pids+=("$fuzzer")
blast_loop &
blaster=$!
echo "soak: $minutes min, rend on 127.0.0.1:$rport, memcached on 127.0.0.1:$mport, scratch $work" >&2

kinds=(memcached-kill memcached-stop client-resets rend-kill)
next_fault=$first; nfault=0; cont_at=-1; minute=1; written=0; died=0
[ $((next_fault + quiet_tail)) -le "$total" ] || next_fault=-1
while :; do
    e_ms=$(($(now_ms) - t0)); e=$((e_ms / 1000))
    # Deaths nobody caused.
    if ! alive "$rend"; then
        wait "$rend" 2>/dev/null && st=0 || st=$?
        forget "$rend"; died=$((died + 1))
        m=$((e / 60 + 1)); fault[$m]=${fault[$m]:+${fault[$m]}+}rend-died
        echo "$(date +%T) rend died (status $st); starting it again" >&2
        start_rend; kill -USR1 "$verifier" 2>/dev/null || true
    fi
    if ! alive "$mc"; then
        forget "$mc"; m=$((e / 60 + 1)); fault[$m]=${fault[$m]:+${fault[$m]}+}memcached-died
        echo "$(date +%T) memcached died; starting it again" >&2
        stopped_mc=""; start_mc; kill -USR1 "$verifier" 2>/dev/null || true
    fi
    while [ "$minute" -le "$minutes" ] && [ "$e_ms" -ge $((minute * 60000)) ]; do
        sample "$minute"; minute=$((minute + 1))
    done
    if [ "$cont_at" -ge 0 ] && [ "$e" -ge "$cont_at" ]; then
        kill -CONT "$mc" 2>/dev/null || true; stopped_mc=""; cont_at=-1
    fi
    if [ "$next_fault" -ge 0 ] && [ "$e" -ge "$next_fault" ]; then
        inject "${kinds[$((nfault % 4))]}" $((e / 60 + 1))
        nfault=$((nfault + 1)); next_fault=$((next_fault + every))
        [ $((next_fault + quiet_tail)) -le "$total" ] || next_fault=-1
    fi
    while [ "$written" -lt $((minute - 1)) ] && [ -f "$work/blast/$((written + 1)).done" ]; do
        written=$((written + 1)); row "$written"
    done
    [ "$written" -ge "$minutes" ] && break
    sleep "$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN {printf "%.3f", 1 - (ms % 1000) / 1000}')"
done

# The end: the verifier stops its writers and sweeps once more; the fuzzer
# stops; rend must still be the process last started.
wait "$blaster" 2>/dev/null || true; blaster=""
kill -TERM "$verifier" "$fuzzer" 2>/dev/null || true
wait "$verifier" 2>/dev/null || true; wait "$fuzzer" 2>/dev/null || true
forget "$verifier"; forget "$fuzzer"
alive "$rend" || died=$((died + 1))

V=$work/verify.status F=$work/fuzz.status
fails=0
holds() { "$@" && echo 1 || echo 0; }
verdict() { # verdict 1|0 TEXT
    if [ "$1" = 1 ]; then echo "PASS  $2"; else echo "FAIL  $2"; fails=$((fails + 1)); fi
}
echo
echo "verdict ($minutes minutes, $nfault faults):"
cof=$(status_of "$V" corrupted_or_foreign); mis=$(status_of "$V" missing_acknowledged); stale=$(status_of "$V" stale)
reads=$(status_of "$V" reads); sweeps=$(status_of "$V" sweeps); sweep_reads=$(status_of "$V" sweep_reads)
sweep_bad=$(status_of "$V" sweep_bad); final_reads=$(status_of "$V" final_sweep_reads); final_bad=$(status_of "$V" final_sweep_bad)
final_done=$(status_of "$V" final_sweep_done)
verdict "$(holds [ "$cof" = 0 ])" "corrupted or foreign values: $cof of $reads reads"
verdict "$(holds [ "$mis$final_done" = 01 ])" "acknowledged writes missing: $mis (sweeps after restarts: $sweeps, $sweep_reads reads, $sweep_bad wrong; final sweep: $final_reads keys, $final_bad wrong$([ "$final_done" = 1 ] || echo ', NOT DONE'))"
verdict "$(holds [ "$stale" = 0 ])" "stale reads (acknowledged version overwritten): $stale"
panics=$(grep -c panicked "$work/rend.log" || true); fpanics=$(status_of "$F" panic_replies)
verdict "$(holds [ "$panics$fpanics$died" = 000 ])" \
    "panics: $panics 'panicked' in rend's log, $fpanics fuzzer sessions with a panic reply, rend died unkilled $died times ($(status_of "$F" requests) fuzz requests, $(status_of "$F" server_closes) connections closed by rend)"
plateau=$(awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) h[$i] = i; next}
    {m = $h["minute"]; r[m] = $h["rend_rss_mib"]; f[m] = $h["rend_fds"]; k[m] = $h["fault"]; last = m
     # RSS less what RocksDB holds in memtables and block cache (both bounded
     # by configuration, and filling for many minutes); empty if unknown.
     x[m] = (r[m] != "" && $h["l2_memtable_mib"] != "") ? r[m] - $h["l2_memtable_mib"] - $h["l2_block_cache_mib"] : ""
     if (k[m] != "" && !first) first = m}
    function median(a, n,   i, j, t) {for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2}
    END {
        if (!first) {print "1 RSS and FDs: no fault injected"; exit}
        from = first > 3 ? first - 3 : 1
        n = 0; nx = 0
        for (m = from; m < first; m++) {
            if (r[m] != "") {n++; rr[n] = r[m] + 0; ff[n] = f[m] + 0}
            if (x[m] != "") {nx++; xx[nx] = x[m] + 0}
        }
        if (!n) {print "0 RSS and FDs: no fault-free minute before the first fault, no plateau"; exit}
        pr = median(rr, n); pf = median(ff, n); px = nx ? median(xx, nx) : ""; ok = 1
        s = sprintf("plateau %.0f MiB (%s MiB without RocksDB memtables and block cache), %d FDs (median of minutes %d-%d)",
            pr, px == "" ? "?" : sprintf("%.0f", px), pf, from, first - 1)
        for (m = first; m <= last; m++) {
            if (k[m] == "") continue
            back = ""; how = ""
            for (j = m + 1; j <= m + 2 && j <= last && back == ""; j++) {
                if (r[j] == "" || f[j] > pf + 50) continue
                if (r[j] <= pr + 64) {back = j; how = "RSS"}
                else if (px != "" && x[j] != "" && x[j] <= px + 64) {back = j; how = "RSS less RocksDB caches"}
            }
            if (m + 1 > last) s = s sprintf("; minute %d %s: not checked (last minute)", m, k[m])
            else if (back == "") {ok = 0; s = s sprintf("; minute %d %s: NOT back (minute %d: %s MiB, %s without RocksDB caches, %s FDs)", m, k[m], m + 1, r[m + 1], x[m + 1], f[m + 1])}
            else s = s sprintf("; minute %d %s: back by minute %d (%s MiB, %s without RocksDB caches, %s FDs; by %s)", m, k[m], back, r[back], x[back], f[back], how)
        }
        print ok " RSS and FDs: " s
    }' "$out")
verdict "${plateau%% *}" "${plateau#* }"
echo "(rend's RSS peaked at $(cut -d, -f9 "$out" | sort -n | tail -1) MiB, FDs at $(cut -d, -f10 "$out" | sort -n | tail -1))"
if [ "$fails" -gt 0 ]; then
    keep_logs
    echo "verdict: FAIL"; exit 1
fi
echo "verdict: PASS"

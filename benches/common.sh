# Shared by the benchmark scripts, which source it first
# (source "$(dirname "$0")/common.sh"): strict mode, the repository root as the
# working directory, the Debian packages, a release build of the binaries in
# $bin (CARGO_TARGET_DIR defaults to /var/tmp/rend-target, as in CI), $user
# (memcached's -u root when run as root), a scratch directory and the
# processes a script starts, both cleaned up on exit; free ports; waiting for
# a port to listen; stats helpers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rend-target}"
cargo build --release --bins >/dev/null
# REND_BIN: run binaries copied elsewhere, so a long run is not disturbed by
# a rebuild while it runs.
bin="${REND_BIN:-$CARGO_TARGET_DIR/release}"
user=(); [ "$(id -u)" -eq 0 ] && user=(-u root)

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Two consecutive ports nothing listens on, below the ephemeral range.
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/$((p + 1))) 2>/dev/null \
            || { echo $p; return 0; }
    done
    echo "no free port" >&2; return 1
}
wait_port() {
    for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "nothing listening on port $1" >&2; return 1
}
stop() { # stop PID: end a process this script started, and forget it
    kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true
    local keep=() q; for q in "${pids[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done; pids=("${keep[@]}")
}

# start_stack NAME REND_FLAGS...: a fresh memcached (-m $mc_mb, default 1024)
# and a rend in front of it (REND_FLAGS must name --orca); sets port_NAME (rend), mc_NAME and rend_NAME
# (pids), mport_NAME. Needs $bin and $user.
start_stack() {
    local name=$1; shift
    local mport; mport=$(free_port); local rport=$((mport + 1))
    memcached "${user[@]}" -l 127.0.0.1 -p "$mport" -U 0 -m "${mc_mb:-1024}" -c 4096 &
    local mc=$!; pids+=("$mc")
    wait_port "$mport"
    RUST_LOG=warn "$bin/rend" --listen "127.0.0.1:$rport" --l1 "127.0.0.1:$mport" "$@" 2>>"$work/rend.log" &
    local rend=$!; pids+=("$rend")
    wait_port "$rport"
    printf -v "port_$name" '%s' "$rport"
    printf -v "mport_$name" '%s' "$mport"
    printf -v "mc_$name" '%s' "$mc"
    printf -v "rend_$name" '%s' "$rend"
}
stop_stack() {
    local r="rend_$1" m="mc_$1"
    stop "${!r}"; stop "${!m}"
}

# col CSV COMMAND OUTCOME FIELD: a field of blast's summary.csv (service clock).
col() {
    awk -F, -v c="$2" -v o="$3" -v f="$4" 'NR == 1 {for (i = 1; i <= NF; i++) h[$i] = i; next}
        $1 == c && $2 == o && $3 == "service" {print $h[f]; found = 1} END {if (!found) print 0}' "$1"
}

# CPU time (user + system) of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
cpu_us() { # cpu_us TICKS0 TICKS1 SUMMARY: microseconds of CPU per request measured
    awk -v a="$1" -v b="$2" -v hz="$hz" -v n="$(col "$3" all all count)" 'BEGIN {printf "%.1f", (b - a) * 1e6 / hz / n}'
}

# Busy and total ticks of the whole machine (user nice system idle iowait irq
# softirq steal; idle and iowait are not busy).
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
# Wait (at most 30 s) until the machine was under 25% busy for a second;
# prints the seconds waited.
wait_quiet() {
    local waited=0 b0 t0 b1 t1
    while [ $waited -lt 30 ]; do
        read -r b0 t0 < <(machine_ticks); sleep 1; read -r b1 t1 < <(machine_ticks)
        awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN {exit !(b * 4 <= t)}' && break
        waited=$((waited + 1))
    done
    echo $waited
}
rend_stat() { # rend_stat PORT NAME: a counter from rend's stats
    timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1; printf "stats\r\nquit\r\n" >&3; cat <&3' _ "$1" \
        | tr -d '\r' | awk -v k="$2" '$1 == "STAT" && $2 == k {print $3}'
}


# Shared by the benchmark scripts (sourced): a scratch directory and the
# processes a script starts, both cleaned up on exit; free ports; waiting for
# a port to listen.
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

#!/usr/bin/env bash
# What read-your-writes costs and what it buys: pgbench through pgroute with
# consistency.read_your_writes = "off", "lsn" and "lsn" with max_wait, on one demo cluster,
# interleaved round by round.
#
#   1. The read/write pgbench script (tpcb-like): tps per mode, and the ratio lsn / off.
#   2. A write-then-read script (UPDATE a row, then SELECT it): tps per mode and the share of the
#      SELECTs that ran on a replica (counted from the nodes' own index-scan statistics).
#
# Usage: scripts/bench_ryw.sh [--no-build]
# Environment: ROUNDS (3), CLIENTS (8), DURATION (8 s per run), SCALE (10), MAX_WAIT (50ms).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
DURATION=${DURATION:-8}
SCALE=${SCALE:-10}
MAX_WAIT=${MAX_WAIT:-50ms}
BIN=target/release/pgroute
export PGUSER=app PGPASSWORD=app-secret PGDATABASE=postgres

[ "${1:-}" = "--no-build" ] || cargo build --release --quiet
work=$(mktemp -d "${TMPDIR:-/tmp}/pgroute-ryw.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

demo_port=$(free_port)
"$BIN" demo --listen "127.0.0.1:$demo_port" >"$work/demo.out" 2>"$work/demo.err" &
pids+=($!)
for _ in $(seq 1 120); do grep -q "demo ready" "$work/demo.out" 2>/dev/null && break; sleep 0.5; done
grep -q "demo ready" "$work/demo.out" || { cat "$work/demo.err" >&2; exit 1; }
primary=$(sed -n 's/.*primary=127.0.0.1:\([0-9]*\).*/\1/p' "$work/demo.out")
replicas=$(sed -n 's/.*replicas=\([^ ]*\).*/\1/p' "$work/demo.out")
r1=${replicas%%,*}; r1=${r1##*:}
r2=${replicas##*,}; r2=${r2##*:}

# One more pgroute per mode, in front of the same cluster.
start_proxy() { # name, extra toml
    local port; port=$(free_port)
    {
        printf 'listen = "127.0.0.1:%s"\n[[users]]\nname = "app"\npassword = "app-secret"\n' "$port"
        printf '[[nodes]]\nname = "n0"\naddr = "127.0.0.1:%s"\nrole = "primary"\n' "$primary"
        printf '[[nodes]]\nname = "n1"\naddr = "127.0.0.1:%s"\nrole = "replica"\n' "$r1"
        printf '[[nodes]]\nname = "n2"\naddr = "127.0.0.1:%s"\nrole = "replica"\n' "$r2"
        printf '%b' "$2"
    } >"$work/$1.toml"
    PGROUTE_LOG=warn "$BIN" --config "$work/$1.toml" >"$work/$1.log" 2>"$work/$1.err" &
    echo $! >"$work/$1.pid" # runs in $(…): the caller collects the pid from the file
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 0.2; done
    echo "$port"
}
lag='[lag]\ncheck_interval = "10ms"\n'
declare -A port
port[off]=$(start_proxy off "${lag}[consistency]\nread_your_writes = \"off\"\n")
port[lsn]=$(start_proxy lsn "${lag}[consistency]\nread_your_writes = \"lsn\"\n")
port[wait]=$(start_proxy wait "${lag}[consistency]\nread_your_writes = \"lsn\"\nmax_wait = \"$MAX_WAIT\"\n")
for mode in off lsn wait; do pids+=("$(cat "$work/$mode.pid")"); done

pgbench -q -i -s "$SCALE" -h 127.0.0.1 -p "$primary" >/dev/null 2>&1
sleep 2
cat >"$work/write_then_read.sql" <<'EOF'
\set aid random(1, 100000 * :scale)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
EOF

idx_scans() { # port → index scans on pgbench_accounts there
    psql -X -A -t -q -h 127.0.0.1 -p "$1" -U postgres -c \
        "SELECT coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'pgbench_accounts'"
}
tps_of() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "n/a")}'; }

declare -A tpcb wtr share
for round in $(seq 1 "$ROUNDS"); do
    for mode in off lsn wait; do
        pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" -h 127.0.0.1 -p "${port[$mode]}" \
            >"$work/tpcb-$mode-$round.out" 2>&1
        tpcb[$mode]+="$(tps_of "$work/tpcb-$mode-$round.out") "
        sleep 1 # let the statistics collector catch up
        before=$(($(idx_scans "$r1") + $(idx_scans "$r2")))
        pbefore=$(idx_scans "$primary")
        pgbench -n -M prepared -f "$work/write_then_read.sql" -c "$CLIENTS" -j 2 -T "$DURATION" \
            -h 127.0.0.1 -p "${port[$mode]}" >"$work/wtr-$mode-$round.out" 2>&1
        sleep 1
        on_replicas=$(($(idx_scans "$r1") + $(idx_scans "$r2") - before))
        on_primary=$(($(idx_scans "$primary") - pbefore))
        # Every transaction's UPDATE scans the index on the primary too.
        txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/wtr-$mode-$round.out")
        reads_on_primary=$((on_primary - txns))
        wtr[$mode]+="$(tps_of "$work/wtr-$mode-$round.out") "
        share[$mode]+="$(awk -v r="$on_replicas" -v p="$reads_on_primary" 'BEGIN { printf "%.2f", (r + p) ? r / (r + p) : 0 }') "
        echo "round $round $mode: tpcb $(tps_of "$work/tpcb-$mode-$round.out") tps, write-then-read $(tps_of "$work/wtr-$mode-$round.out") tps, reads on replicas $on_replicas / on primary $reads_on_primary"
    done
done

echo
echo "# read-your-writes bench: $CLIENTS clients, ${DURATION}s x $ROUNDS rounds, scale $SCALE, $(nproc) cores; medians"
printf '%-22s %10s %10s %10s\n' "" off lsn "lsn+wait"
row() { printf '%-22s %10s %10s %10s\n' "$1" "$2" "$3" "$4"; }
m() { tr ' ' '\n' <<<"$1" | grep . | median; }
row "tpcb tps" "$(m "${tpcb[off]}")" "$(m "${tpcb[lsn]}")" "$(m "${tpcb[wait]}")"
row "write-then-read tps" "$(m "${wtr[off]}")" "$(m "${wtr[lsn]}")" "$(m "${wtr[wait]}")"
row "reads on replicas" "$(m "${share[off]}")" "$(m "${share[lsn]}")" "$(m "${share[wait]}")"
awk -v a="$(m "${tpcb[lsn]}")" -v b="$(m "${tpcb[off]}")" 'BEGIN { printf "tpcb lsn/off ratio: %.2f\n", a / b }'
echo "(off may read stale; lsn never does; max_wait = $MAX_WAIT)"

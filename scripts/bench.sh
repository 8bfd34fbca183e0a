#!/usr/bin/env bash
# Benchmark: pgbench straight to the primary vs through pgroute (and through pgbouncer, when
# present), interleaved within each round, on the throwaway cluster of `pgroute demo`.
#
# Usage: scripts/bench.sh [--with-pgbouncer] [--no-build]
#   --with-pgbouncer  install pgbouncer (apt-get) if missing; an installed one is always used
#   --no-build        skip `cargo build --release`
# Environment: ROUNDS (3), CLIENTS (8), JOBS (2), DURATION (10 s per run), SCALE (10),
#   PGROUTE_BIN (target/release/pgroute), READY_TIMEOUT (60 s).
# Writes the table to target/bench-results.txt; raw pgbench output stays in the printed work dir.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
JOBS=${JOBS:-2}
DURATION=${DURATION:-10}
SCALE=${SCALE:-10}
READY_TIMEOUT=${READY_TIMEOUT:-60}
PGROUTE_BIN=${PGROUTE_BIN:-target/release/pgroute}
RESULTS=target/bench-results.txt
DB=postgres
export PGUSER=app PGPASSWORD=app-secret PGDATABASE=$DB

with_pgbouncer=false
build=true
for arg in "$@"; do
    case "$arg" in
        --with-pgbouncer) with_pgbouncer=true ;;
        --no-build) build=false ;;
        -h | --help)
            sed -n '2,11p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
die() {
    echo "error: $*" >&2
    exit 1
}

# Runs a command as the postgres OS user when we are root (pgbouncer refuses to run as root).
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/pgroute-bench.XXXXXX")
chmod 755 "$work"
demo_pid=""
solo_pid=""
bench_pid=""
bouncer_pidfile="$work/pgbouncer/pgbouncer.pid"

cleanup() {
    local status=$? i
    if [ -n "$bench_pid" ]; then kill -TERM "$bench_pid" 2>/dev/null || true; fi
    if [ -n "$solo_pid" ]; then kill -TERM "$solo_pid" 2>/dev/null || true; fi
    if [ -f "$bouncer_pidfile" ]; then
        kill -TERM "$(cat "$bouncer_pidfile")" 2>/dev/null || true
    fi
    if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
        echo "stopping the demo (pid $demo_pid)"
        kill -TERM "$demo_pid" 2>/dev/null || true
        for i in $(seq 1 60); do
            kill -0 "$demo_pid" 2>/dev/null || break
            [ "$i" -eq 60 ] && kill -KILL "$demo_pid" 2>/dev/null
            sleep 0.5
        done
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing listens on.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# host:port -> "host port"
split_addr() { echo "${1%:*} ${1##*:}"; }

start_demo() {
    local port line="" waited=0
    port=$(free_port)
    step "Starting $PGROUTE_BIN demo --listen 127.0.0.1:$port"
    "$PGROUTE_BIN" demo --listen "127.0.0.1:$port" >"$work/demo.out" 2>"$work/demo.log" &
    demo_pid=$!
    while [ -z "$line" ]; do
        line=$(grep -m 1 '^pgroute demo ready:' "$work/demo.out" || true)
        [ -n "$line" ] && break
        if ! kill -0 "$demo_pid" 2>/dev/null; then
            tail -n 30 "$work/demo.log" >&2 || true
            die "the demo exited before it was ready"
        fi
        if [ "$waited" -ge $((READY_TIMEOUT * 10)) ]; then
            tail -n 30 "$work/demo.log" >&2 || true
            die "the demo was not ready within ${READY_TIMEOUT}s"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "$line"
    [[ $line =~ proxy=([^ ]+) ]] || die "no proxy= in the ready line"
    proxy_addr=${BASH_REMATCH[1]}
    [[ $line =~ primary=([^ ]+) ]] || die "no primary= in the ready line"
    primary_addr=${BASH_REMATCH[1]}
    [[ $line =~ replicas=([^ ]+) ]] || die "no replicas= in the ready line"
    replica_addrs=${BASH_REMATCH[1]}
}

init_data() {
    local host port replica count waited
    read -r host port <<<"$(split_addr "$primary_addr")"
    step "pgbench -i -s $SCALE on the primary ($primary_addr)"
    pgbench -i -q -s "$SCALE" -h "$host" -p "$port" "$DB"
    step "Waiting for the replicas to have the pgbench tables"
    for replica in ${replica_addrs//,/ }; do
        read -r host port <<<"$(split_addr "$replica")"
        waited=0
        while :; do
            count=$(psql -X -A -t -h "$host" -p "$port" -c \
                "SELECT count(*) FROM pgbench_branches" 2>/dev/null || true)
            [ "$count" = "$SCALE" ] && break
            [ "$waited" -ge 300 ] && die "replica $replica did not catch up within 30s"
            sleep 0.1
            waited=$((waited + 1))
        done
        echo "replica $replica: ok"
    done
}

start_pgbouncer() {
    local dir=$work/pgbouncer host port version extra=""
    if ! command -v pgbouncer >/dev/null; then
        $with_pgbouncer || return 0
        step "Installing pgbouncer"
        DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer; }
        # The package may start its own instance on 6432; ours runs separately.
        service pgbouncer stop >/dev/null 2>&1 || true
    fi
    read -r host port <<<"$(split_addr "$primary_addr")"
    bouncer_port=$(free_port)
    mkdir -p "$dir"
    # Protocol-level prepared statements in transaction mode need pgbouncer >= 1.21.
    version=$(pgbouncer --version | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1)
    if [ "$(printf '1.21\n%s\n' "$version" | sort -V | head -n 1)" = 1.21 ]; then
        extra="max_prepared_statements = 200"
    fi
    printf '"app" "app-secret"\n' >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
$DB = host=$host port=$port dbname=$DB
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = $((CLIENTS + 2))
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $bouncer_pidfile
$extra
EOF
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$dir"; fi
    step "Starting pgbouncer $(pgbouncer --version | head -n 1) on 127.0.0.1:$bouncer_port (transaction pooling)"
    as_postgres pgbouncer -d "$dir/pgbouncer.ini" || die "pgbouncer did not start: see $dir/pgbouncer.log"
    psql -X -A -t -h 127.0.0.1 -p "$bouncer_port" -c "SELECT 1" >/dev/null ||
        die "cannot query through pgbouncer: see $dir/pgbouncer.log"
}

# A second pgroute in front of the primary alone: the proxy's own overhead, on the same terms as
# pgbouncer (the demo's pgroute sends reads to the replicas, which here share the same cores).
start_solo() {
    local port waited=0
    port=$(free_port)
    printf 'listen = "127.0.0.1:%s"\n[[users]]\nname = "app"\npassword = "app-secret"\n' "$port" \
        >"$work/solo.toml"
    printf '[[nodes]]\nname = "primary"\naddr = "%s"\nrole = "primary"\n' "$primary_addr" \
        >>"$work/solo.toml"
    step "Starting a second pgroute on 127.0.0.1:$port in front of the primary only"
    "$PGROUTE_BIN" --config "$work/solo.toml" >"$work/solo.log" 2>&1 &
    solo_pid=$!
    until psql -X -A -t -h 127.0.0.1 -p "$port" -c "SELECT 1" >/dev/null 2>&1; do
        kill -0 "$solo_pid" 2>/dev/null || die "pgroute (primary only) exited: see $work/solo.log"
        [ "$waited" -ge 100 ] && die "pgroute (primary only) not ready within 10s"
        sleep 0.1
        waited=$((waited + 1))
    done
    solo_addr=127.0.0.1:$port
}

modes=("select-only simple" "select-only extended" "select-only prepared" "tpcb-like simple" "tpcb-like prepared")

mode_args() {
    local script=${1% *} protocol=${1#* }
    [ "$script" = select-only ] && printf -- '-S '
    printf -- '-M %s' "$protocol"
}

# Runs one pgbench and records "tps failed" (failed: failed transactions + aborted clients;
# tps "-" when pgbench reported none, which leaves the run out of the median).
run_pgbench() {
    local round=$1 mode=$2 target=$3 addr=$4 host port out tps failed aborted args
    read -r host port <<<"$(split_addr "$addr")"
    out="$work/runs/r$round-${mode// /-}-$target.txt"
    read -r -a args <<<"$(mode_args "$mode")"
    printf '  round %s  %-22s %-10s ' "$round" "$mode" "$target"
    # In the background, so that a signal to this script is handled at once.
    pgbench -c "$CLIENTS" -j "$JOBS" -T "$DURATION" --no-vacuum "${args[@]}" \
        -h "$host" -p "$port" "$DB" >"$out" 2>&1 &
    bench_pid=$!
    wait "$bench_pid" || true
    bench_pid=""
    tps=$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\).*/\1/p' "$out")
    failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$out")
    aborted=$(grep -c 'aborted in command' "$out" || true)
    failed=$((${failed:-0} + ${aborted:-0}))
    if grep -q 'Run was aborted' "$out"; then failed=$((failed > 0 ? failed : 1)); fi
    echo "${tps:--} $failed" >"$out.result"
    printf 'tps=%-12s failed=%s\n' "${tps:-none}" "$failed"
}

median() { grep -v '^-$' | sort -g | awk '{v[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) printf "%.1f", v[(NR+1)/2]; else printf "%.1f", (v[NR/2]+v[NR/2+1])/2}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a=="-" || b=="-" || b==0) print "-"; else printf "%.2f", a/b}'; }

# Prints "median-tps total-failed" of one target and mode over all rounds.
summarize() {
    local mode=$1 target=$2 files
    files=$(ls "$work/runs/"r*"-${mode// /-}-$target.txt.result" 2>/dev/null || true)
    [ -z "$files" ] && { echo "- -"; return; }
    # shellcheck disable=SC2086 # one file name per word
    echo "$(awk '{print $1}' $files | median) $(awk '{s+=$2} END {print s+0}' $files)"
}

print_table() {
    local mode d p s b df pf sf bf failures
    printf '%-22s %11s %11s %6s %11s %6s %11s %6s  %s\n' mode direct-tps pgroute-tps ratio \
        pg-solo-tps ratio bouncer-tps ratio failures
    for mode in "${modes[@]}"; do
        read -r d df <<<"$(summarize "$mode" direct)"
        read -r p pf <<<"$(summarize "$mode" pgroute)"
        read -r s sf <<<"$(summarize "$mode" solo)"
        read -r b bf <<<"$(summarize "$mode" pgbouncer)"
        failures=""
        [ "$df" != "-" ] && [ "$df" -gt 0 ] && failures+=" direct:$df"
        [ "$pf" != "-" ] && [ "$pf" -gt 0 ] && failures+=" pgroute:$pf"
        [ "$sf" != "-" ] && [ "$sf" -gt 0 ] && failures+=" solo:$sf"
        [ "$bf" != "-" ] && [ "$bf" -gt 0 ] && failures+=" pgbouncer:$bf"
        printf '%-22s %11s %11s %6s %11s %6s %11s %6s  %s\n' "$mode" "$d" "$p" "$(ratio "$p" "$d")" \
            "$s" "$(ratio "$s" "$d")" "$b" "$(ratio "$b" "$d")" "${failures:+!! FAILED}${failures:-0}"
    done
    echo "# pgroute: the demo's, reads on the replicas; pg-solo: pgroute in front of the primary"
    echo "# only (the proxy's own cost, on pgbouncer's terms); ratios are to direct."
    echo "# tps: median over the rounds that reported one; failures: failed transactions +"
    echo "# aborted clients, summed over the rounds (pgbouncer < 1.21 cannot run -M prepared in"
    echo "# transaction pooling)."
}

main() {
    local round mode i t targets=()
    if $build; then
        step "cargo build --release"
        cargo build --release
    fi
    [ -x "$PGROUTE_BIN" ] || die "$PGROUTE_BIN is not built"
    command -v pgbench >/dev/null || die "pgbench not found"
    echo "work dir: $work"
    mkdir -p "$work/runs" target
    start_demo
    init_data
    bouncer_port=""
    start_pgbouncer
    start_solo
    targets=("direct $primary_addr" "pgroute $proxy_addr" "solo $solo_addr")
    [ -n "$bouncer_port" ] && targets+=("pgbouncer 127.0.0.1:$bouncer_port")
    step "Benchmark: $ROUNDS rounds x ${#modes[@]} modes x ${#targets[@]} targets, ${DURATION}s each, $CLIENTS clients"
    for round in $(seq 1 "$ROUNDS"); do
        for mode in "${modes[@]}"; do
            # Rotate the order each round so that no target always runs first.
            for i in "${!targets[@]}"; do
                read -r -a t <<<"${targets[$(((i + round) % ${#targets[@]}))]}"
                run_pgbench "$round" "$mode" "${t[0]}" "${t[1]}"
            done
        done
    done
    step "Results (median over $ROUNDS rounds)"
    {
        echo "# pgroute bench $(date -u +%Y-%m-%dT%H:%M:%SZ): $(pgbench --version), scale $SCALE," \
            "$CLIENTS clients, $JOBS threads, ${DURATION}s x $ROUNDS rounds, $(nproc) cores"
        print_table
    } | tee "$RESULTS"
    echo "written to $RESULTS; raw output in $work/runs"
}

main

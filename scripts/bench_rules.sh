#!/usr/bin/env bash
# What routing rules cost per statement (issue #10: "per-statement CPU with ten rules configured
# stays within 5% of no rules"): two pgroute processes side by side in front of the same
# throwaway cluster of `pgroute demo` (a primary and 2 streaming replicas), A with no rules and
# no groups, B with ten rules and a replica group, plus pgbouncer in front of the primary as the
# baseline. The figure is the proxy process's CPU time per pgbench -S transaction
# (scripts/cpu-per-txn.sh, from /proc): it holds on a shared, busy machine where tps does not.
# Then tps straight to the primary vs through A, B (and pgbouncer), for the ratios to direct.
#
# Usage: scripts/bench_rules.sh [--no-build]
# Environment: N (30000 transactions per CPU run), C (8 clients), R (5 rounds of CPU runs),
#   MODES ("simple prepared"), TPS_ROUNDS (3), DURATION (10 s per tps run), SCALE (10),
#   PGROUTE_BIN (target/release/pgroute), CPU_PER_TXN (scripts/cpu-per-txn.sh),
#   READY_TIMEOUT (60 s), PROFILE (unset; "B" runs perf record -g on B during one pgbench),
#   CONTROL (unset; 1 adds A2, a second pgroute configured as A: A2/A is the noise floor),
#   ORDER (the order of the CPU runs within a round: "A B", "A B A2" with CONTROL).
# Writes the tables to target/bench-rules-results.txt; configs, logs and raw output stay in
# the printed work dir.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-30000}
C=${C:-8}
R=${R:-5}
MODES=${MODES:-simple prepared}
TPS_ROUNDS=${TPS_ROUNDS:-3}
DURATION=${DURATION:-10}
SCALE=${SCALE:-10}
READY_TIMEOUT=${READY_TIMEOUT:-60}
PGROUTE_BIN=${PGROUTE_BIN:-target/release/pgroute}
CPU_PER_TXN=${CPU_PER_TXN:-scripts/cpu-per-txn.sh}
PROFILE=${PROFILE:-}
CONTROL=${CONTROL:-}
RESULTS=target/bench-rules-results.txt
DB=postgres
export PGUSER=app PGPASSWORD=app-secret PGDATABASE=$DB

build=true
for arg in "$@"; do
    case "$arg" in
        --no-build) build=false ;;
        -h | --help)
            sed -n '2,19p' "$0"
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

work=$(mktemp -d "${TMPDIR:-/tmp}/pgroute-bench-rules.XXXXXX")
chmod 755 "$work"
demo_pid=""
bench_pid=""
proxy_pids=()
bouncer_pidfiles=()

cleanup() {
    local status=$? i pid file
    if [ -n "$bench_pid" ]; then kill -TERM "$bench_pid" 2>/dev/null || true; fi
    for pid in "${proxy_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for file in "${bouncer_pidfiles[@]}"; do
        [ -f "$file" ] && { kill -TERM "$(cat "$file")" 2>/dev/null || true; }
    done
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
    [[ $line =~ primary=([^ ]+) ]] || die "no primary= in the ready line"
    primary_addr=${BASH_REMATCH[1]}
    [[ $line =~ replicas=([^ ]+) ]] || die "no replicas= in the ready line"
    replica_addrs=${BASH_REMATCH[1]}
    read -r replica1 replica2 <<<"${replica_addrs//,/ }"
    [ -n "${replica2:-}" ] || die "the demo has fewer than 2 replicas: $replica_addrs"
}

init_data() {
    local host port replica count waited
    read -r host port <<<"$(split_addr "$primary_addr")"
    step "pgbench -i -s $SCALE on the primary ($primary_addr)"
    pgbench -i -q -s "$SCALE" -h "$host" -p "$port" "$DB"
    step "Waiting for the replicas to have the pgbench tables"
    for replica in "$replica1" "$replica2"; do
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

# pgbouncer NAME POOL_MODE: in front of the primary, as the postgres OS user; sets bouncer_port.
start_pgbouncer() {
    local name=$1 pool_mode=$2 dir=$work/$1 host port version extra=""
    if ! command -v pgbouncer >/dev/null; then
        step "Installing pgbouncer"
        DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer ||
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer; }
        # The package may start its own instance on 6432; ours runs separately.
        service pgbouncer stop >/dev/null 2>&1 || true
    fi
    read -r host port <<<"$(split_addr "$primary_addr")"
    bouncer_port=$(free_port)
    mkdir -p "$dir"
    version=$(pgbouncer --version | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1)
    if bouncer_prepares "$version"; then extra="max_prepared_statements = 200"; fi
    printf '"app" "app-secret"\n' >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
$DB = host=$host port=$port dbname=$DB
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = $pool_mode
max_client_conn = 500
default_pool_size = $((C + 2))
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
$extra
INI
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$dir"; fi
    step "Starting $name: $(pgbouncer --version | head -n 1) on 127.0.0.1:$bouncer_port ($pool_mode pooling)"
    bouncer_pidfiles+=("$dir/pgbouncer.pid")
    as_postgres pgbouncer -d "$dir/pgbouncer.ini" || die "pgbouncer did not start: see $dir/pgbouncer.log"
    psql -X -A -t -h 127.0.0.1 -p "$bouncer_port" -c "SELECT 1" >/dev/null ||
        die "cannot query through pgbouncer: see $dir/pgbouncer.log"
}

# Protocol-level prepared statements in transaction pooling need pgbouncer >= 1.21.
bouncer_prepares() { [ "$(printf '1.21\n%s\n' "$1" | sort -V | head -n 1)" = 1.21 ]; }

# The part of both configs that is the same: the cluster, no read-your-writes, lag limits no
# pgbench -S run comes near, so that every read goes to a replica.
common_toml() { # port, groups of replica 2 (toml array)
    cat <<TOML
listen = "127.0.0.1:$1"
[[users]]
name = "app"
password = "app-secret"
[[nodes]]
name = "primary"
addr = "$primary_addr"
role = "primary"
[[nodes]]
name = "replica1"
addr = "$replica1"
role = "replica"
[[nodes]]
name = "replica2"
addr = "$replica2"
role = "replica"
groups = $2
[lag]
max_bytes = "1GB"
max_time = "1m"
[consistency]
read_your_writes = "off"
TOML
}

# B's groups and rules. pgbench's session (user app, database postgres, application_name
# pgbench, from 127.0.0.1) passes the session matchers of all ten rules, so none is left out
# when the session's candidates are computed and every statement runs the statement matchers
# of all ten. Rules 1-9 do not match pgbench's `SELECT abalance FROM pgbench_accounts WHERE
# aid = $1` (wrong kind, tables or text); rule 10, "reads-to-replicas", is the catch-all that
# does, and sends it where the defaults would have (the replicas), so B routes as A does.
# A rule whose session matchers exclude a session costs that session nothing per statement:
# this is the worst case for ten rules.
rules_toml() {
    cat <<'TOML'
[groups.analytics]
# replica2 only; not exclusive, so it still takes the other reads and they spread over both.
exclusive = false
max_bytes = "1GB"
max_time = "1m"
when_empty = "replicas"

[[rules]] # 1: the application never runs DDL (kind)
name = "no-ddl-from-app"
user = "app*"
kind = "ddl"
route = "block"
message = "schema changes go through migrations, not the application"

[[rules]] # 2: truncating from a client is refused (query regex)
name = "no-truncate"
query = "(?i)\\btruncate\\b"
route = "block"
message = "TRUNCATE is not allowed through pgroute"

[[rules]] # 3: reads of the event tables go to the analytics group (tables, schema-aware)
name = "events-to-analytics"
database = "post*"
tables = ["events_*", "public.audit_log", "analytics.*"]
route = "group:analytics"

[[rules]] # 4: the issue's example, by text (query regex)
name = "events-by-text"
query = "(?i)\\bfrom\\s+events_"
route = "group:analytics"

[[rules]] # 5: pgbench's history table is read on the primary (application_name, tables)
name = "history-on-primary"
application_name = "pgbench*"
tables = ["pgbench_history"]
route = "primary"

[[rules]] # 6: local batch jobs' transactions run on the primary (client_addr, kind)
name = "local-transactions"
client_addr = "127.0.0.0/8"
kind = "transaction"
route = "primary"

[[rules]] # 7: writes to the audit log are refused (user, kind, tables)
name = "audit-log-append-only"
user = "app"
kind = "write"
tables = ["*.audit_log", "audit_log"]
route = "block"
message = "the audit log is written by triggers only"

[[rules]] # 8: reports by text go to the analytics group (application_name, query regex)
name = "count-reports"
application_name = "*"
query = "(?i)^\\s*select\\s+count\\s*\\("
route = "group:analytics"

[[rules]] # 9: reads of branches and tellers go to the analytics group (client_addr, tables)
name = "branch-reports"
client_addr = "127.0.0.1/32"
tables = ["pgbench_branches", "pgbench_tellers"]
route = "group:analytics"

[[rules]] # 10: catch-all: every other read to the replicas (kind); pgbench's SELECT matches
name = "reads-to-replicas"
kind = "read"
route = "replica"
TOML
}

# proxy NAME TOML: starts pgroute with the config; sets proxy_port.
start_proxy() {
    local name=$1 waited=0 pid
    printf '%s\n' "$2" >"$work/$name.toml"
    step "Starting pgroute $name on 127.0.0.1:$proxy_port ($work/$name.toml)"
    PGROUTE_LOG=warn "$PGROUTE_BIN" --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
    pid=$!
    proxy_pids+=("$pid")
    until psql -X -A -t -h 127.0.0.1 -p "$proxy_port" -c "SELECT 1" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || die "pgroute $name exited: see $work/$name.log"
        [ "$waited" -ge 100 ] && die "pgroute $name not ready within 10s"
        sleep 0.1
        waited=$((waited + 1))
    done
}

# Checks that B routes pgbench's statement by the catch-all and A by the defaults.
check_routes() {
    local port=$1 want=$2 got
    got=$(psql -X -A -t -h 127.0.0.1 -p "$port" \
        -c "SELECT abalance FROM pgbench_accounts WHERE aid = 1" -c "SHOW pgroute.last_route")
    echo "$got" | tail -n 1
    grep -q -- "$want" <<<"$got" || die "expected $want in SHOW pgroute.last_route on $port"
}

# CPU per transaction, one run of the tool per mode; keeps its tables in $work/cpu-MODE.txt.
cpu_runs() {
    local mode name targets
    for mode in $MODES; do
        targets=""
        for name in $ORDER; do targets+="$name:${port[$name]} "; done
        if [ "$mode" = prepared ] && [ -n "${port[pgbouncer-s]:-}" ]; then
            # This pgbouncer cannot prepare in transaction pooling: its session pooling instead.
            targets+="pgbouncer-s:${port[pgbouncer-s]}"
        else
            targets+="pgbouncer:${port[pgbouncer]}"
        fi
        step "CPU per transaction, -M $mode: N=$N C=$C R=$R ($targets)"
        TARGETS=$targets MODE=$mode N=$N C=$C R=$R DB=$DB "$CPU_PER_TXN" | tee "$work/cpu-$mode.txt"
    done
}

# The median µs of one target in a tool table.
cpu_of() { awk -v t="$2" '$1 == t {print $3}' "$work/cpu-$1.txt"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a=="" || b=="" || b==0) print "-"; else printf "%.3f", a/b}'; }

median() { grep -v '^-$' | sort -g | awk '{v[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) printf "%.1f", v[(NR+1)/2]; else printf "%.1f", (v[NR/2]+v[NR/2+1])/2}'; }

# One pgbench -S -T; appends its tps (or "-") to $work/tps-MODE-NAME.
run_tps() {
    local mode=$1 name=$2 port=$3 out tps
    out="$work/tps-$mode-$name-$round.txt"
    pgbench -n -S -M "$mode" -c "$C" -j 2 -T "$DURATION" -h 127.0.0.1 -p "$port" "$DB" \
        >"$out" 2>&1 &
    bench_pid=$!
    wait "$bench_pid" || true
    bench_pid=""
    tps=$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\).*/\1/p' "$out")
    echo "${tps:--}" >>"$work/tps-$mode-$name"
    printf '  round %s  %-9s %-12s tps=%s\n' "$round" "$mode" "$name" "${tps:-none}"
}

tps_runs() {
    local mode i t targets
    step "tps: pgbench -S -T $DURATION -c $C, $TPS_ROUNDS rounds, interleaved"
    for round in $(seq 1 "$TPS_ROUNDS"); do
        for mode in $MODES; do
            targets=("direct $primary_port" "A ${port[A]}" "B ${port[B]}")
            if [ "$mode" = simple ] || [ -z "${port[pgbouncer-s]:-}" ]; then
                targets+=("pgbouncer ${port[pgbouncer]}")
            else
                targets+=("pgbouncer-s ${port[pgbouncer-s]}")
            fi
            for i in "${!targets[@]}"; do
                read -r -a t <<<"${targets[$(((i + round) % ${#targets[@]}))]}"
                run_tps "$mode" "${t[0]}" "${t[1]}"
            done
        done
    done
}

# perf record -g on B during one pgbench run (PROFILE=B); the report goes to $work/perf-B.txt.
profile_b() {
    local pid=${proxy_pids[1]} perf_pid
    step "perf record -g on B (pid $pid) during pgbench -S -M simple -T $DURATION"
    perf record -g -F 999 -p "$pid" -o "$work/perf-B.data" -- sleep "$DURATION" 2>"$work/perf.err" &
    perf_pid=$!
    pgbench -n -S -c "$C" -j 2 -T "$DURATION" -h 127.0.0.1 -p "${port[B]}" "$DB" >/dev/null 2>&1 || true
    wait "$perf_pid" || true
    perf report -i "$work/perf-B.data" --no-children --percent-limit 0.5 --stdio \
        >"$work/perf-B.txt" 2>/dev/null || true
    echo "perf report: $work/perf-B.txt"
}

print_tables() {
    local mode a b a2 p pname d ta tb tp
    echo "# µs of proxy CPU (user+sys) per pgbench -S transaction, median of $R rounds of $N," \
        "$C clients (per-round figures above)"
    printf '%-9s %9s %9s %7s %-12s %9s %11s\n' mode A B B/A baseline µs baseline/A
    for mode in $MODES; do
        pname=pgbouncer
        [ "$mode" = prepared ] && [ -n "${port[pgbouncer-s]:-}" ] && pname=pgbouncer-s
        a=$(cpu_of "$mode" A)
        b=$(cpu_of "$mode" B)
        p=$(cpu_of "$mode" "$pname")
        printf '%-9s %9s %9s %7s %-12s %9s %11s\n' "$mode" "${a:--}" "${b:--}" "$(ratio "$b" "$a")" \
            "$pname" "${p:--}" "$(ratio "$p" "$a")"
        if [ -n "$CONTROL" ]; then
            a2=$(cpu_of "$mode" A2)
            printf '%-9s %9s %9s %7s   (control: A2 = %s, A2/A = %s)\n' "" "" "" "" "${a2:--}" \
                "$(ratio "$a2" "$a")"
        fi
    done
    echo "# A: pgroute, no rules; B: pgroute, ten rules + a group; baseline: pgbouncer $bouncer_version"
    echo "# (pgbouncer-s: session pooling, as this pgbouncer cannot prepare in transaction pooling)"
    echo
    echo "# tps, pgbench -S -T $DURATION -c $C, median of $TPS_ROUNDS rounds (noisy on a shared box)"
    printf '%-9s %9s %9s %6s %9s %6s %-12s %9s %6s %6s\n' mode direct A A/dir B B/dir baseline tps b/dir B/A
    for mode in $MODES; do
        pname=pgbouncer
        [ "$mode" = prepared ] && [ -n "${port[pgbouncer-s]:-}" ] && pname=pgbouncer-s
        d=$(median <"$work/tps-$mode-direct")
        ta=$(median <"$work/tps-$mode-A")
        tb=$(median <"$work/tps-$mode-B")
        tp=$(median <"$work/tps-$mode-$pname")
        printf '%-9s %9s %9s %6s %9s %6s %-12s %9s %6s %6s\n' "$mode" "$d" "$ta" "$(ratio "$ta" "$d")" \
            "$tb" "$(ratio "$tb" "$d")" "$pname" "$tp" "$(ratio "$tp" "$d")" "$(ratio "$tb" "$ta")"
    done
    echo "# direct: the primary alone; A and B spread reads over the 2 replicas on the same cores"
}

main() {
    if $build; then
        step "cargo build --release"
        cargo build --release
    fi
    [ -x "$PGROUTE_BIN" ] || die "$PGROUTE_BIN is not built"
    [ -x "$CPU_PER_TXN" ] || die "$CPU_PER_TXN not found (set CPU_PER_TXN)"
    command -v pgbench >/dev/null || die "pgbench not found"
    echo "work dir: $work"
    mkdir -p target
    start_demo
    primary_port=${primary_addr##*:}
    init_data
    proxy_port=$(free_port)
    port[A]=$proxy_port
    start_proxy A "$(common_toml "${port[A]}" '[]')"
    proxy_port=$(free_port)
    port[B]=$proxy_port
    start_proxy B "$(common_toml "${port[B]}" '["analytics"]')
$(rules_toml)"
    if [ -n "$CONTROL" ]; then
        proxy_port=$(free_port)
        port[A2]=$proxy_port
        start_proxy A2 "$(common_toml "${port[A2]}" '[]')"
    fi
    check_routes "${port[A]}" "replica"
    check_routes "${port[B]}" "reads-to-replicas"
    start_pgbouncer pgbouncer transaction
    port[pgbouncer]=$bouncer_port
    bouncer_version=$(pgbouncer --version | head -n 1)
    if ! bouncer_prepares "$(grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' <<<"$bouncer_version" | head -n 1)"; then
        start_pgbouncer pgbouncer-s session
        port[pgbouncer-s]=$bouncer_port
    fi
    [ "$PROFILE" = B ] && profile_b
    cpu_runs
    tps_runs
    step "Results"
    {
        echo "# pgroute bench_rules $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD):" \
            "$(pgbench --version), scale $SCALE, $(nproc) cores"
        print_tables
    } | tee "$RESULTS"
    echo "written to $RESULTS; raw output in $work"
}

# Listening port by target name: A, B, A2, pgbouncer, pgbouncer-s.
declare -A port
ORDER=${ORDER:-A B${CONTROL:+ A2}}
main

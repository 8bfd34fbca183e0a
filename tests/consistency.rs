//! End-to-end read-your-writes: pgroute in front of a real primary (node 0) and two streaming
//! replicas that apply WAL only after a delay (`recovery_min_apply_delay`), so that a replica
//! that has not caught up really does return stale rows.
//!
//! Every test proves where a read ran with `inet_server_port()` and whether it saw a write with
//! `count(*)` of the row just written. Most tests share one cluster whose replicas lag 300 ms
//! (each uses its own table); the staleness-budget test starts its own, with one replica 1 s
//! behind and the other fresh. The lag limits are set out of reach in every config, so that
//! only consistency (not `[lag]`) decides whether a replica may serve a read.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::raw::RawConn;
use common::{own_cluster, simple_rows, start_proxy, TestProxy, PASSWORD, USER};
use pgroute::testbed::Cluster;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// How far behind the primary both replicas of the shared cluster apply WAL.
const DELAY: &str = "300ms";

/// How long writes may take to reach the replicas (beyond their delay) before a test starts.
const CATCH_UP: Duration = Duration::from_secs(20);

/// The shared cluster: both replicas apply WAL [`DELAY`] after the primary wrote it.
fn delayed_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        common::init_tracing();
        let cluster = own_cluster();
        for node in [1, 2] {
            cluster
                .set_apply_delay(node, DELAY)
                .expect("set apply delay");
            assert_eq!(
                cluster
                    .psql(node, "SHOW recovery_min_apply_delay")
                    .expect("SHOW recovery_min_apply_delay"),
                DELAY,
                "node {node} applies the delay"
            );
        }
        cluster
    })
}

/// A pgroute config: the given `[consistency]` keys, a 20 ms monitor, lag limits out of reach.
fn config(consistency: &str) -> String {
    format!(
        "[consistency]\n{consistency}\n\n\
         [lag]\ncheck_interval = \"20ms\"\nmax_time = \"1h\"\nmax_bytes = \"1GB\"\n"
    )
}

/// Creates `table (id bigint primary key)` for the application role, and waits until the
/// replicas have it.
fn create_table(cluster: &Cluster, table: &str) {
    cluster
        .psql(
            0,
            &format!(
                "DROP TABLE IF EXISTS {table};\n\
                 CREATE TABLE {table} (id bigint PRIMARY KEY);\n\
                 GRANT ALL ON {table} TO {USER};"
            ),
        )
        .unwrap_or_else(|e| panic!("create {table}: {e}"));
    cluster
        .wait_replicas_caught_up(CATCH_UP)
        .expect("replicas caught up");
}

fn port(cluster: &Cluster, node: usize) -> i32 {
    i32::from(cluster.port(node))
}

fn replica_ports(cluster: &Cluster) -> BTreeSet<i32> {
    [1, 2].into_iter().map(|n| port(cluster, n)).collect()
}

async fn simple_exec(client: &Client, sql: &str) {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A read's answer: how many rows matched, and the port of the server that ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    count: i64,
    port: i32,
}

impl Seen {
    fn from_text(rows: &[Vec<Option<String>>]) -> Seen {
        let row = rows.first().expect("one row");
        let int = |i: usize| row[i].as_deref().expect("not null").to_owned();
        Seen {
            count: int(0).parse().expect("count"),
            port: int(1).parse().expect("port"),
        }
    }
}

fn count_sql(table: &str, id: i64) -> String {
    format!("SELECT count(*), inet_server_port() FROM {table} WHERE id = {id}")
}

/// Reads row `id` of `table` with one simple Query, prefixed with `prefix` (a hint comment).
async fn read_simple(client: &Client, prefix: &str, table: &str, id: i64) -> Seen {
    Seen::from_text(&simple_rows(client, &format!("{prefix}{}", count_sql(table, id))).await)
}

/// Reads row `id` of `table` through the extended protocol (prepare, then bind and execute).
async fn read_extended(client: &Client, prefix: &str, table: &str, id: i64) -> Seen {
    let sql = format!("{prefix}SELECT count(*), inet_server_port() FROM {table} WHERE id = $1");
    let row = client
        .query_one(&sql, &[&id])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    Seen {
        count: row.get(0),
        port: row.get(1),
    }
}

/// Where a read with no consistency requirement runs.
async fn server_port(client: &Client, prefix: &str) -> i32 {
    let rows = simple_rows(client, &format!("{prefix}SELECT inet_server_port()")).await;
    rows[0][0].as_deref().expect("port").parse().expect("port")
}

async fn insert(client: &Client, table: &str, id: i64) {
    simple_exec(client, &format!("INSERT INTO {table} VALUES ({id})")).await;
}

/// The session's read-your-writes token, as pgroute answers `SHOW pgroute.lsn`.
async fn token_of(client: &Client) -> String {
    let rows = simple_rows(client, "SHOW pgroute.lsn").await;
    rows[0][0].clone().expect("pgroute.lsn")
}

/// `0/16B3748` → a byte position, to compare tokens with the server's own LSNs.
fn lsn(text: &str) -> u64 {
    let (hi, lo) = text
        .trim()
        .split_once('/')
        .unwrap_or_else(|| panic!("not an LSN: {text:?}"));
    let hi = u64::from_str_radix(hi, 16).expect("LSN high half");
    let lo = u64::from_str_radix(lo, 16).expect("LSN low half");
    (hi << 32) | lo
}

/// A session that never writes, reading `SELECT inet_server_port()` until told to stop (at most
/// `max_reads` times). Returns the ports its reads ran on.
fn spawn_observer(
    proxy: &TestProxy,
    stop: Arc<AtomicBool>,
    max_reads: usize,
) -> tokio::task::JoinHandle<Vec<i32>> {
    let conn_str = proxy.conn_str();
    tokio::spawn(async move {
        let client = common::connect(&conn_str).await;
        let mut ports = Vec::new();
        while !stop.load(Ordering::Relaxed) && ports.len() < max_reads {
            ports.push(server_port(&client, "").await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ports
    })
}

/// A session that inserts into `table` every few milliseconds until told to stop (at most
/// `max_rows` rows, ids from `first_id`), so that delayed replicas show a time lag.
fn spawn_writer(
    proxy: &TestProxy,
    table: &'static str,
    first_id: i64,
    max_rows: i64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    let conn_str = proxy.conn_str();
    tokio::spawn(async move {
        let client = common::connect(&conn_str).await;
        let mut id = first_id;
        while !stop.load(Ordering::Relaxed) && id < first_id + max_rows {
            insert(&client, table, id).await;
            id += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        id - first_id
    })
}

// ---------------------------------------------------------------------------------------------
// 1. A session reads its own writes; sessions that did not write keep using the replicas.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_always_reads_its_own_writes_and_others_stay_on_replicas() {
    const ROUNDS: i64 = 500;
    let cluster = delayed_cluster();
    let table = "ryw_own_writes";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let observer = spawn_observer(&proxy, stop.clone(), 20_000);

    let writer = proxy.connect().await;
    let mut stale = Vec::new();
    for id in 0..ROUNDS {
        insert(&writer, table, id).await;
        let seen = read_simple(&writer, "", table, id).await;
        if seen.count != 1 {
            stale.push(("simple", id, seen));
        }
    }
    let insert_stmt = writer
        .prepare(&format!("INSERT INTO {table} VALUES ($1)"))
        .await
        .expect("prepare INSERT");
    let select_stmt = writer
        .prepare(&format!(
            "SELECT count(*), inet_server_port() FROM {table} WHERE id = $1"
        ))
        .await
        .expect("prepare SELECT");
    for id in ROUNDS..2 * ROUNDS {
        writer.execute(&insert_stmt, &[&id]).await.expect("INSERT");
        let row = writer
            .query_one(&select_stmt, &[&id])
            .await
            .expect("SELECT");
        let seen = Seen {
            count: row.get(0),
            port: row.get(1),
        };
        if seen.count != 1 {
            stale.push(("extended", id, seen));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let observed = observer.await.expect("observer");

    assert!(
        stale.is_empty(),
        "{} of {} reads right after the session's own INSERT missed it (protocol, id, read): {:?}",
        stale.len(),
        2 * ROUNDS,
        &stale[..stale.len().min(10)]
    );
    let replicas = replica_ports(cluster);
    let elsewhere: Vec<_> = observed.iter().filter(|p| !replicas.contains(p)).collect();
    assert!(
        observed.len() >= 20,
        "the observer made only {} reads",
        observed.len()
    );
    assert!(
        elsewhere.is_empty(),
        "a session that never wrote must keep reading from the replicas {replicas:?}; \
         {} of its {} reads ran elsewhere: {:?}",
        elsewhere.len(),
        observed.len(),
        &elsewhere[..elsewhere.len().min(10)]
    );
}

/// Writes committed by an explicit transaction, however it is sent, are read back too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_explicit_transactions_are_read_back() {
    const ROUNDS: i64 = 40;
    let cluster = delayed_cluster();
    let table = "ryw_transactions";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let mut client = proxy.connect().await;
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        let id = round * 3;
        // One statement at a time.
        simple_exec(&client, "BEGIN").await;
        insert(&client, table, id).await;
        simple_exec(&client, "COMMIT").await;
        let seen = read_simple(&client, "", table, id).await;
        stale.extend((seen.count != 1).then_some(("BEGIN, INSERT, COMMIT", id, seen)));
        // One Query message holding the whole transaction.
        let sql = format!("BEGIN; INSERT INTO {table} VALUES ({}); COMMIT", id + 1);
        simple_exec(&client, &sql).await;
        let seen = read_extended(&client, "", table, id + 1).await;
        stale.extend((seen.count != 1).then_some(("one Query", id + 1, seen)));
        // The extended protocol, through tokio-postgres' transaction API.
        let txn = client.transaction().await.expect("BEGIN");
        txn.execute(&format!("INSERT INTO {table} VALUES ($1)"), &[&(id + 2)])
            .await
            .expect("INSERT");
        txn.commit().await.expect("COMMIT");
        let seen = read_simple(&client, "", table, id + 2).await;
        stale.extend((seen.count != 1).then_some(("transaction()", id + 2, seen)));
    }
    assert!(
        stale.is_empty(),
        "{} of {} reads right after a committed transaction missed its write (how, id, read): \
         {stale:?}",
        stale.len(),
        3 * ROUNDS
    );
}

// ---------------------------------------------------------------------------------------------
// 2. With max_wait, reads after writes wait for a replica to catch up instead of using the primary.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_wait_reads_after_writes_wait_for_a_replica() {
    const ROUNDS: i64 = 40;
    let cluster = delayed_cluster();
    let table = "ryw_max_wait";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"1s\""),
    );
    let client = proxy.connect().await;
    let replicas = replica_ports(cluster);
    let mut reads = Vec::new();
    for id in 0..ROUNDS {
        insert(&client, table, id).await;
        let began = Instant::now();
        let (protocol, seen) = if id % 2 == 0 {
            ("simple", read_simple(&client, "", table, id).await)
        } else {
            ("extended", read_extended(&client, "", table, id).await)
        };
        reads.push((protocol, id, seen, began.elapsed()));
    }
    let stale: Vec<_> = reads.iter().filter(|r| r.2.count != 1).collect();
    assert!(
        stale.is_empty(),
        "reads right after the session's INSERT missed it (protocol, id, read, took): {stale:?}"
    );
    let on_primary: Vec<_> = reads
        .iter()
        .filter(|r| !replicas.contains(&r.2.port))
        .collect();
    for protocol in ["simple", "extended"] {
        let total = reads.iter().filter(|r| r.0 == protocol).count();
        let primary = on_primary.iter().filter(|r| r.0 == protocol).count();
        assert!(
            (total - primary) * 100 >= total * 80,
            "with max_wait = 1s and replicas {DELAY} behind, at least 80% of the reads right \
             after a write should wait for a replica; {primary} of {total} {protocol}-protocol \
             reads ran on the primary instead (protocol, id, read, took): {on_primary:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The token: handed to other connections (SET, hint comment, startup parameter) and to
//    another pgroute.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_handed_to_other_connections_and_proxies_shows_them_the_write() {
    const ROUNDS: i64 = 8;
    let cluster = delayed_cluster();
    let table = "ryw_token";
    create_table(cluster, table);
    let cfg = config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\"");
    let proxy = start_proxy(cluster, &cfg);
    let other_proxy = start_proxy(cluster, &cfg);
    let a = proxy.connect().await;

    let mut reads = Vec::new();
    for round in 0..ROUNDS {
        let id = round;
        // Connections that never wrote, opened before the write so that they read right after it.
        let by_set = proxy.connect().await;
        let by_hint = proxy.connect().await;
        let by_set_elsewhere = other_proxy.connect().await;
        let by_hint_elsewhere = other_proxy.connect().await;

        insert(&a, table, id).await;
        let token = token_of(&a).await;
        let hint = format!("/* pgroute.min_lsn={token} */ ");

        simple_exec(&by_set, &format!("SET pgroute.min_lsn = '{token}'")).await;
        let seen = read_simple(&by_set, "", table, id).await;
        reads.push(("SET, simple", seen));
        let seen = read_extended(&by_set, "", table, id).await;
        reads.push(("SET, extended", seen));
        let seen = read_simple(&by_hint, &hint, table, id).await;
        reads.push(("hint, simple", seen));
        simple_exec(
            &by_set_elsewhere,
            &format!("SET pgroute.min_lsn = '{token}'"),
        )
        .await;
        let seen = read_simple(&by_set_elsewhere, "", table, id).await;
        reads.push(("second pgroute, SET", seen));
        let seen = read_simple(&by_hint_elsewhere, &hint, table, id).await;
        reads.push(("second pgroute, hint", seen));

        // The startup parameter, on a connection made after the write.
        let mut raw = RawConn::connect_with(
            other_proxy.port,
            USER,
            Some(PASSWORD),
            "postgres",
            &[("pgroute.min_lsn", &token)],
        )
        .await
        .expect("connect with pgroute.min_lsn as a startup parameter");
        let rows = raw.simple_query(&count_sql(table, id)).await.expect("read");
        reads.push(("second pgroute, startup parameter", Seen::from_text(&rows)));
    }
    let total = reads.len();
    let stale: Vec<_> = reads.iter().filter(|(_, seen)| seen.count != 1).collect();
    assert!(
        stale.is_empty(),
        "{} of {total} reads given connection A's token missed A's write (how, read): {stale:?}",
        stale.len()
    );
}

/// The control for the test above: without the token, a connection that did not write reads
/// from a replica that has not applied the write yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_another_connection_can_read_stale() {
    const TRIES: i64 = 20;
    let cluster = delayed_cluster();
    let table = "ryw_no_token";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let mut stale = 0;
    for id in 0..TRIES {
        insert(&a, table, id).await;
        if read_simple(&b, "", table, id).await.count == 0 {
            stale += 1;
        }
    }
    assert!(
        stale > 0,
        "with replicas {DELAY} behind, a connection without the token should miss a write just \
         made on another connection at least once in {TRIES} tries (else the token tests prove \
         nothing)"
    );
}

/// The token is also sent as ParameterStatus `pgroute.lsn` after each write, equal to what
/// `SHOW pgroute.lsn` answers, and covers the write on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_reported_as_parameter_status_and_by_show() {
    let cluster = delayed_cluster();
    let table = "ryw_parameter_status";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("connect");
    let mut tokens = Vec::new();
    for id in 0..3 {
        raw.simple_query(&format!("INSERT INTO {table} VALUES ({id})"))
            .await
            .expect("INSERT");
        // The token follows the write's ReadyForQuery; SHOW waits for it.
        let shown = raw.simple_query("SHOW pgroute.lsn").await.expect("SHOW");
        let shown = shown[0][0].clone().expect("token");
        let reported = raw
            .parameter("pgroute.lsn")
            .unwrap_or_else(|| panic!("no ParameterStatus pgroute.lsn after write {id}"));
        assert_eq!(reported, shown, "ParameterStatus and SHOW disagree");
        tokens.push(lsn(&shown));
    }
    let now = lsn(&cluster
        .psql(0, "SELECT pg_current_wal_insert_lsn()")
        .expect("LSN"));
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]) && tokens[0] > 0 && *tokens.last().unwrap() <= now,
        "tokens must grow with each write and not pass the primary's WAL ({now:X}): {tokens:X?}"
    );
}

/// Hints must work whatever protocol carries the statement: tokio-postgres (like most drivers)
/// prepares a statement in one round trip (Parse/Describe/Sync) and runs it in another
/// (Bind/Execute/Sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_apply_to_statements_run_through_the_extended_protocol() {
    const ROUNDS: i64 = 8;
    let cluster = delayed_cluster();
    let table = "ryw_extended_hint";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let a = proxy.connect().await;
    let mut results = Vec::new();
    for id in 0..ROUNDS {
        let prepared = proxy.connect().await;
        let typed = proxy.connect().await;
        insert(&a, table, id).await;
        let hint = format!("/* pgroute.min_lsn={} */ ", token_of(&a).await);
        // Parse + Describe + Sync, then Bind + Execute + Sync.
        results.push(("prepared", read_extended(&prepared, &hint, table, id).await));
        // Parse + Bind + Execute + Sync in one batch.
        let sql = format!("{hint}SELECT count(*), inet_server_port() FROM {table} WHERE id = $1");
        let row = typed
            .query_typed(&sql, &[(&id, Type::INT8)])
            .await
            .expect("query_typed");
        let seen = Seen {
            count: row[0].get(0),
            port: row[0].get(1),
        };
        results.push(("one batch", seen));
    }
    let stale: Vec<_> = results.iter().filter(|(_, s)| s.count != 1).collect();
    assert!(
        stale.is_empty(),
        "{} of {} extended-protocol reads with /* pgroute.min_lsn=<token> */ missed the write \
         (how, read): {stale:?}",
        stale.len(),
        results.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The other read-your-writes modes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_mode_keeps_reads_on_the_primary_for_stick_for_after_a_write() {
    const ROUNDS: i64 = 4;
    let cluster = delayed_cluster();
    let table = "ryw_time";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"time\"\nstick_for = \"500ms\""),
    );
    let primary = port(cluster, 0);
    let replicas = replica_ports(cluster);
    let client = proxy.connect().await;
    let before = server_port(&client, "").await;
    assert!(
        replicas.contains(&before),
        "before any write, reads go to a replica; ran on {before}"
    );
    for id in 0..ROUNDS {
        insert(&client, table, id).await;
        let wrote = Instant::now();
        let seen = read_simple(&client, "", table, id).await;
        assert_eq!(
            (seen.port, seen.count),
            (primary, 1),
            "a read right after a write runs on the primary {primary} and sees the write"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = wrote.elapsed();
        let within = read_extended(&client, "", table, id).await;
        if sent < Duration::from_millis(400) {
            assert_eq!(
                within.port, primary,
                "a read {sent:?} after a write (stick_for = 500ms) runs on the primary"
            );
        }
        tokio::time::sleep(Duration::from_millis(700).saturating_sub(wrote.elapsed())).await;
        let after = server_port(&client, "").await;
        assert!(
            replicas.contains(&after),
            "a read {:?} after a write (stick_for = 500ms) goes to a replica {replicas:?}; ran on {after}",
            wrote.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_a_writer_on_the_primary_and_others_on_replicas() {
    const READS: usize = 20;
    let cluster = delayed_cluster();
    let table = "ryw_session";
    create_table(cluster, table);
    let proxy = start_proxy(cluster, &config("read_your_writes = \"session\""));
    let primary = port(cluster, 0);
    let replicas = replica_ports(cluster);
    let writer = proxy.connect().await;
    let other = proxy.connect().await;
    let before = server_port(&writer, "").await;
    assert!(
        replicas.contains(&before),
        "before its first write, a session reads from a replica; ran on {before}"
    );
    insert(&writer, table, 1).await;
    let mut writer_reads = Vec::new();
    let mut other_reads = Vec::new();
    for i in 0..READS {
        let seen = if i % 2 == 0 {
            read_simple(&writer, "", table, 1).await
        } else {
            read_extended(&writer, "", table, 1).await
        };
        writer_reads.push(seen);
        other_reads.push(server_port(&other, "").await);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(
        writer_reads
            .iter()
            .all(|s| s.port == primary && s.count == 1),
        "after its write, every read of the session runs on the primary {primary} (over {READS} \
         reads, ~1.2 s): {writer_reads:?}"
    );
    assert!(
        other_reads.iter().all(|p| replicas.contains(p)),
        "a session that did not write keeps reading from replicas {replicas:?}: {other_reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_mode_can_read_stale_right_after_a_write() {
    const TRIES: i64 = 50;
    let cluster = delayed_cluster();
    let table = "ryw_off";
    create_table(cluster, table);
    let proxy = start_proxy(cluster, &config("read_your_writes = \"off\""));
    let client = proxy.connect().await;
    let mut reads = Vec::new();
    for id in 0..TRIES {
        insert(&client, table, id).await;
        reads.push(read_simple(&client, "", table, id).await);
    }
    let stale = reads.iter().filter(|s| s.count == 0).count();
    assert!(
        stale > 0,
        "with read_your_writes = \"off\" and replicas {DELAY} behind, a read right after a write \
         should miss it at least once in {TRIES} tries: {reads:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A staleness budget per statement or per session.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staleness_budget_keeps_reads_off_a_replica_that_lags_more() {
    const READS: usize = 60;
    common::init_tracing();
    let cluster = own_cluster();
    let table = "ryw_budget";
    create_table(&cluster, table);
    cluster.set_apply_delay(1, "1s").expect("delay node 1");
    let proxy = start_proxy(&cluster, &config("read_your_writes = \"lsn\""));
    let slow = port(&cluster, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&proxy, table, 0, 100_000, stop.clone());
    // Node 1 now falls further behind with every write; give the monitor time to see it.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let client = proxy.connect().await;
    let mut unhinted = Vec::new();
    for _ in 0..READS {
        unhinted.push(server_port(&client, "").await);
    }
    let mut hinted = Vec::new();
    for _ in 0..READS {
        hinted.push(server_port(&client, "/* pgroute.max_lag=100ms */ ").await);
    }
    let session = proxy.connect().await;
    simple_exec(&session, "SET pgroute.max_lag = '100ms'").await;
    let mut set = Vec::new();
    for _ in 0..READS {
        set.push(server_port(&session, "").await);
    }
    simple_exec(&session, "RESET pgroute.max_lag").await;
    let mut reset = Vec::new();
    for _ in 0..READS {
        reset.push(server_port(&session, "").await);
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer");

    assert!(written > 50, "the writer made only {written} writes");
    assert!(
        unhinted.contains(&slow) && reset.contains(&slow),
        "control: without a budget, reads also land on node 1 ({slow}, 1 s behind): \
         {unhinted:?} / after RESET: {reset:?}"
    );
    assert!(
        !hinted.contains(&slow),
        "/* pgroute.max_lag=100ms */ reads must not run on node 1 ({slow}, 1 s behind): {hinted:?}"
    );
    assert!(
        !set.contains(&slow),
        "after SET pgroute.max_lag = '100ms', reads must not run on node 1 ({slow}): {set:?}"
    );
}

/// `/* pgroute.max_lag=… */` through the extended protocol: with both replicas of the shared
/// cluster 300 ms behind a stream of writes, a 100 ms budget leaves only the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staleness_budget_hint_applies_through_the_extended_protocol() {
    const READS: usize = 20;
    let cluster = delayed_cluster();
    let table = "ryw_budget_extended";
    create_table(cluster, table);
    let proxy = start_proxy(cluster, &config("read_your_writes = \"lsn\""));
    let primary = port(cluster, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&proxy, table, 0, 100_000, stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;

    let sql = "/* pgroute.max_lag=100ms */ SELECT inet_server_port()";
    let client = proxy.connect().await;
    let mut simple = Vec::new();
    for _ in 0..READS {
        simple.push(server_port(&client, "/* pgroute.max_lag=100ms */ ").await);
    }
    // A connection of its own: see the pipelining test below for why.
    let client = proxy.connect().await;
    let mut extended = Vec::new();
    for _ in 0..READS {
        let row = client.query_one(sql, &[]).await.expect(sql);
        extended.push(row.get::<_, i32>(0));
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(
        simple.iter().all(|p| *p == primary),
        "control (simple protocol): with both replicas {DELAY} behind, a 100ms budget leaves \
         only the primary {primary}: {simple:?}"
    );
    assert!(
        extended.iter().all(|p| *p == primary),
        "the same hinted statement through the extended protocol must also run on the primary \
         {primary}: {extended:?}"
    );
}

/// tokio-postgres pipelines: a request is sent before the previous one is answered. A read that
/// carries a token must honour it even when it is queued behind a plain read that pgroute sent
/// to a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_read_honours_its_token() {
    const ROUNDS: i64 = 5;
    let cluster = delayed_cluster();
    let table = "ryw_pipelined";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let writer = proxy.connect().await;
    let mut reads = Vec::new();
    for id in 0..ROUNDS {
        let reader = proxy.connect().await;
        insert(&writer, table, id).await;
        let hint = format!("/* pgroute.min_lsn={} */ ", token_of(&writer).await);
        // Both requests go out at once; the first runs on a replica for 100 ms.
        let (slow, hinted) = futures::join!(
            simple_rows(&reader, "SELECT inet_server_port() FROM pg_sleep(0.1)"),
            read_simple(&reader, &hint, table, id),
        );
        let slow = slow[0][0].clone().expect("port");
        reads.push((slow, hinted));
    }
    let stale: Vec<_> = reads.iter().filter(|(_, seen)| seen.count != 1).collect();
    assert!(
        stale.is_empty(),
        "{} of {ROUNDS} token-hinted reads pipelined behind a plain read missed the write \
         (port of the plain read, hinted read): {stale:?}",
        stale.len()
    );
}

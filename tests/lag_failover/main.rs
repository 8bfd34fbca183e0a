//! End-to-end lag routing and failover: pgroute in front of a real primary (node 0) and two
//! streaming replicas (nodes 1, 2), while replicas fall behind, nodes stop, and replicas are
//! promoted.
//!
//! Each test changes its cluster, so each starts its own ([`common::own_cluster`]). Routing is
//! proved by asking the server where a statement ran (`inet_server_port()`,
//! `pg_is_in_recovery()`); lag is produced by writing straight to the primary as the superuser,
//! bypassing pgroute, while a replica's replay is paused or delayed. Read-your-writes is off
//! throughout, so that only the lag limits and node health decide where a read goes.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod failover;
mod lag;
mod replica_failures;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{own_cluster, start_proxy};
use pgroute::testbed::Cluster;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The monitor samples every node this often in every test here.
const CHECK_INTERVAL: &str = "50ms";

/// How long a test waits for something that should take a few monitor ticks.
const SETTLE: Duration = Duration::from_secs(5);

/// A new cluster for one test.
fn new_cluster() -> Cluster {
    common::init_tracing();
    own_cluster()
}

/// pgroute config for these tests: read-your-writes off, a fast monitor, then `extra`.
fn config(extra: &str) -> String {
    format!(
        "[consistency]\nread_your_writes = \"off\"\n\n\
         [lag]\ncheck_interval = \"{CHECK_INTERVAL}\"\n{extra}\n"
    )
}

/// Runs a blocking cluster operation (psql, pg_ctl) without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn port(cluster: &Cluster, node: usize) -> u16 {
    cluster.port(node)
}

/// Runs `sql` on `node` as the superuser, bypassing pgroute.
fn on_node(cluster: &Cluster, node: usize, sql: &str) -> String {
    blocking(|| cluster.psql(node, sql)).unwrap_or_else(|e| panic!("node {node}: {sql}: {e}"))
}

fn stop(cluster: &Cluster, node: usize) {
    blocking(|| cluster.stop(node, "immediate"))
        .unwrap_or_else(|e| panic!("stop node {node}: {e}"));
}

fn caught_up(cluster: &Cluster) {
    blocking(|| cluster.wait_replicas_caught_up(Duration::from_secs(15)))
        .expect("replicas caught up");
}

/// A superuser connection straight to `node`.
async fn direct(cluster: &Cluster, node: usize) -> Client {
    common::connect(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster.port(node)
    ))
    .await
}

/// The first row of a simple Query, as text values.
async fn first_row(
    client: &Client,
    sql: &str,
) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    let row = messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"));
    Ok(row)
}

/// Where one read through pgroute ran: (server port, in recovery).
async fn try_read(client: &Client) -> Result<(u16, bool), tokio_postgres::Error> {
    let row = first_row(client, "SELECT inet_server_port(), pg_is_in_recovery()").await?;
    let port = row[0]
        .as_deref()
        .and_then(|p| p.parse().ok())
        .expect("port");
    Ok((port, row[1].as_deref() == Some("t")))
}

async fn read(client: &Client) -> (u16, bool) {
    try_read(client)
        .await
        .unwrap_or_else(|e| panic!("read through pgroute failed: {e:?}"))
}

/// `n` reads one after the other: how many ran on each server port. A read on a port that is
/// out of recovery is counted under that port too, so callers see a primary fallback.
async fn tally(client: &Client, n: usize) -> BTreeMap<u16, usize> {
    let mut ran_on = BTreeMap::new();
    for _ in 0..n {
        let (port, _) = read(client).await;
        *ran_on.entry(port).or_insert(0) += 1;
    }
    ran_on
}

/// Polls `probe` every 50 ms until it returns `Ok`, for at most `timeout`; panics with `what`
/// and the last observation (the last `Err`) otherwise. Returns the value and how long it took.
async fn poll_until<T, O: std::fmt::Debug, F>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> F,
) -> (T, Duration)
where
    F: Future<Output = Result<T, O>>,
{
    let began = Instant::now();
    let mut last = None;
    // Bounded in count too, whatever the clock does.
    let max_polls = timeout.as_millis() / 50 + 2;
    for _ in 0..max_polls {
        match probe().await {
            Ok(v) => return (v, began.elapsed()),
            Err(o) => last = Some(o),
        }
        if began.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out after {:?} waiting for {what}; last observation: {last:?}",
        began.elapsed()
    );
}

/// Polls batches of 10 reads until one batch lands only on `ports` (and on each of them when
/// `all_of`). Returns how long that took.
async fn wait_reads_on(
    client: &Client,
    what: &str,
    ports: &[u16],
    all_of: bool,
    timeout: Duration,
) -> Duration {
    let (_, took) = poll_until(what, timeout, || async {
        let ran_on = tally(client, 10).await;
        let only_those = ran_on.keys().all(|p| ports.contains(p));
        let each = ports.iter().all(|p| ran_on.contains_key(p));
        if only_those && (each || !all_of) {
            Ok(())
        } else {
            Err(ran_on)
        }
    })
    .await;
    took
}

/// Waits (up to [`SETTLE`]) until a batch of reads lands on both replicas, `p1` and `p2`, and
/// nowhere else.
async fn wait_reads_on_both(client: &Client, what: &str, p1: u16, p2: u16) {
    wait_reads_on(client, what, &[p1, p2], true, SETTLE).await;
}

/// Writes one small row into `lag_writes` on the primary every 10 ms, straight to the server,
/// until stopped (at most 60 s): the primary's WAL keeps moving, so a replica that does not
/// replay falls behind in time.
struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Writer {
    async fn start(cluster: &Cluster) -> Writer {
        let client = direct(cluster, 0).await;
        let create = "CREATE TABLE IF NOT EXISTS lag_writes \
                      (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())";
        client
            .batch_execute(create)
            .await
            .expect("create lag_writes");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let began = Instant::now();
            let mut rows = 0;
            while !flag.load(Ordering::SeqCst) && began.elapsed() < Duration::from_secs(60) {
                client
                    .batch_execute("INSERT INTO lag_writes DEFAULT VALUES")
                    .await
                    .expect("insert on the primary");
                rows += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            rows
        });
        Writer { stop, task }
    }

    /// Stops writing; returns how many rows were written.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("writer task")
    }
}

/// `pg_last_wal_replay_lsn()` of a replica, as text.
fn replay_lsn(cluster: &Cluster, node: usize) -> String {
    on_node(cluster, node, "SELECT pg_last_wal_replay_lsn()")
}

/// Whether LSN `a` < LSN `b`, as PostgreSQL compares them.
fn lsn_before(cluster: &Cluster, a: &str, b: &str) -> bool {
    on_node(cluster, 0, &format!("SELECT '{a}'::pg_lsn < '{b}'::pg_lsn")) == "t"
}

/// Primary's current WAL position is past `node`'s replay position.
fn behind_primary(cluster: &Cluster, node: usize) -> bool {
    let replay = replay_lsn(cluster, node);
    let current = on_node(cluster, 0, "SELECT pg_current_wal_lsn()");
    lsn_before(cluster, &replay, &current)
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(SqlState::code)
}

/// One write through pgroute that reports the server it ran on.
async fn try_write(client: &Client) -> Result<u16, tokio_postgres::Error> {
    let row = first_row(
        client,
        "INSERT INTO routed_writes (v) VALUES (1) RETURNING inet_server_port()",
    )
    .await?;
    Ok(row[0]
        .as_deref()
        .and_then(|p| p.parse().ok())
        .expect("port"))
}

/// Creates `routed_writes` through pgroute (owned by the app role) and checks a write runs on
/// node 0; then waits until the replicas have the table.
async fn prepare_writes(cluster: &Cluster, client: &Client) {
    client
        .batch_execute("CREATE TABLE routed_writes (id serial PRIMARY KEY, v int)")
        .await
        .expect("create routed_writes through pgroute");
    let ran_on = try_write(client).await.expect("first write");
    assert_eq!(
        ran_on,
        port(cluster, 0),
        "a write before any fault runs on node 0"
    );
    caught_up(cluster);
}

/// `SHOW pgroute.nodes`, one map of column → value per node.
async fn show_nodes(client: &Client) -> Vec<BTreeMap<String, String>> {
    client
        .simple_query("SHOW pgroute.nodes")
        .await
        .expect("SHOW pgroute.nodes")
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_owned(), row.get(i).unwrap_or("").to_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

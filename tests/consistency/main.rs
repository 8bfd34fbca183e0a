//! End-to-end read-your-writes: pgroute in front of a real primary (node 0) and two streaming
//! replicas that apply WAL only after a delay (`recovery_min_apply_delay`), so that a replica
//! that has not caught up really does return stale rows.
//!
//! Every test proves where a read ran with `inet_server_port()` and whether it saw a write with
//! `count(*)` of the row just written. Most tests share one cluster whose replicas lag 300 ms
//! (each uses its own table); the staleness-budget test starts its own, with one replica 1 s
//! behind and the other fresh. The lag limits are set out of reach in every config, so that
//! only consistency (not `[lag]`) decides whether a replica may serve a read.

#[path = "../common/mod.rs"]
mod common;

mod modes;
mod own_writes;
mod staleness;
mod token;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{own_cluster, simple_rows, start_proxy, TestProxy, USER};
use pgroute::testbed::Cluster;
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

//! End-to-end protocol behaviour through pgroute: session state that follows a client across
//! pooled server connections, prepared statements, pinning, COPY, CancelRequest, extended-protocol
//! details, `BEGIN READ ONLY` routing, and real clients (psql, pgbench).
//!
//! Where a statement ran is proved by the server (`inet_server_port()`, `pg_backend_pid()`);
//! effects are checked on the primary directly, as the superuser, bypassing pgroute. Tests share
//! one cluster and run in parallel, so each uses its own tables, names and lock keys (`proto_`).

#[path = "../common/mod.rs"]
mod common;

mod binary_values;
mod cancel;
mod clients;
mod copy;
mod extended;
mod pinning;
mod prepared;
mod read_only;
mod session_state;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::raw;
use common::{
    caught_up, cluster, on_primary, primary_port, replica_ports, simple_rows, start_proxy,
    TestProxy, PASSWORD, USER,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

/// The monitor marks a node down when a probe takes longer than 10 check intervals (at least
/// 1 s). On two shared cores, with pgbench and a dozen proxies (each probing in a debug build)
/// running at once, 1 s is not always enough, and a primary marked down fails writes with 57P03.
const LAG: &str = "[lag]\ncheck_interval = \"250ms\"\n";

/// For tests that assert reads spread over both replicas, however busy the shared cluster is:
/// even a `SET` makes read-your-writes wait for the replicas to replay the primary's position.
const REPLICA_READS: &str = "[consistency]\nread_your_writes = \"off\"\n\n\
                             [lag]\ncheck_interval = \"250ms\"\n\
                             max_bytes = \"1GB\"\nmax_time = \"1h\"\n";

/// pgroute with the default configuration (but see [`LAG`]) plus `extra` sections.
fn start(extra: &str) -> TestProxy {
    start_proxy(cluster(), &format!("{LAG}\n{extra}"))
}

/// pgroute for tests that count replicas (see [`REPLICA_READS`]), plus `extra` sections.
fn start_replica_reads(extra: &str) -> TestProxy {
    start_proxy(cluster(), &format!("{REPLICA_READS}\n{extra}"))
}
/// Upper bound for any single wait in these tests.
const PATIENCE: Duration = Duration::from_secs(10);

fn config_for(proxy: &TestProxy) -> Config {
    let mut cfg = Config::new();
    cfg.host("127.0.0.1")
        .port(proxy.port)
        .user(USER)
        .password(PASSWORD)
        .dbname("postgres")
        .connect_timeout(PATIENCE);
    cfg
}

/// A client whose StartupMessage carries `application_name`.
async fn connect_as(proxy: &TestProxy, application_name: &str) -> Client {
    let (client, conn) = config_for(proxy)
        .application_name(application_name)
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect as {application_name}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The single value a simple Query returned.
async fn simple_value(client: &Client, sql: &str) -> String {
    let rows = simple_rows(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone().unwrap_or_default()
}

fn code_of(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.code()
}

/// What one read reports about where it ran and the session settings it saw there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    port: i32,
    pid: i32,
    settings: Vec<String>,
}

/// Reads `current_setting(name)` for each name, with where it ran, through the simple protocol
/// (`simple`) or the extended one.
async fn settings_read(client: &Client, names: &[&str], simple: bool) -> Seen {
    let list: Vec<String> = names
        .iter()
        .map(|n| format!("current_setting('{n}')"))
        .collect();
    let sql = format!(
        "SELECT inet_server_port(), pg_backend_pid(), {}",
        list.join(", ")
    );
    if simple {
        let rows = simple_rows(client, &sql).await;
        let row = &rows[0];
        let num = |i: usize| row[i].as_deref().unwrap_or("").parse::<i32>().expect("int");
        Seen {
            port: num(0),
            pid: num(1),
            settings: row[2..]
                .iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect(),
        }
    } else {
        let row = client.query_one(&sql, &[]).await.expect(&sql);
        Seen {
            port: row.get(0),
            pid: row.get(1),
            settings: (2..row.len()).map(|i| row.get::<_, String>(i)).collect(),
        }
    }
}

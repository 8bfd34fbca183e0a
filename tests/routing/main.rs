//! End-to-end routing: pgroute in front of a real primary (node 0) and two streaming replicas.
//!
//! Every test proves where a statement ran with the server's own answers (`inet_server_port()`,
//! `pg_is_in_recovery()`, `pg_backend_pid()`) or by looking at its effect on the primary
//! directly, as the superuser, bypassing pgroute. Tests share one cluster and run in parallel,
//! so each uses its own tables, sequences, roles and advisory lock keys.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod client_gone;
mod client_limit;
mod errors;
mod functions;
mod limits;
mod metrics;
mod prepared;
mod psql;
mod reads;
mod replicas_down;
mod rules;
mod transactions;
mod writes;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::raw::{self, RawConn, Reply};
use common::{
    caught_up, cluster, on_primary, primary_port, psql, replica_ports, simple_rows, start_proxy,
    start_proxy_toml, TestProxy, PASSWORD, USER,
};
use tokio_postgres::error::{DbError, ErrorPosition, SqlState};
use tokio_postgres::{Client, NoTls};

/// The monitor gives up on a probe after ten check intervals (at least 1 s), and one late probe
/// of the primary has every write refused until the next probe succeeds (see
/// `one_slow_probe_does_not_refuse_writes`). Probes do take that long on a busy two-core
/// machine, so the tests that are not about the monitor give it 5 s.
const PATIENT_MONITOR: &str = "[lag]\ncheck_interval = \"500ms\"\n";

/// For tests that assert reads run on the replicas: whatever the session wrote before, and
/// however busy the shared cluster is. Read-your-writes and lag limits have tests of their own.
const REPLICA_READS: &str = "[consistency]\nread_your_writes = \"off\"\n\n\
                             [lag]\ncheck_interval = \"500ms\"\nmax_bytes = \"1GB\"\n\
                             max_time = \"1h\"\n";

/// Creates (or updates) a LOGIN role on the servers and waits until the replicas have it.
fn ensure_role(name: &str, password: &str) {
    on_primary(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN \
         CREATE ROLE {name} LOGIN; END IF; END $$;\n\
         ALTER ROLE {name} LOGIN PASSWORD '{password}';"
    ));
    caught_up();
}

/// A superuser connection straight to `node` of the shared cluster.
async fn direct(node: usize) -> Client {
    let port = cluster().port(node);
    common::connect(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres"
    ))
    .await
}

fn conn_str(proxy_port: u16, user: &str, password: Option<&str>, db: &str) -> String {
    let password = password
        .map(|p| format!(" password={p}"))
        .unwrap_or_default();
    format!("host=127.0.0.1 port={proxy_port} user={user}{password} dbname={db}")
}

/// Where a read ran, as (port, in recovery), through the extended protocol.
async fn server_of(client: &Client) -> (i32, bool) {
    let row = client
        .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
        .await
        .expect("SELECT inet_server_port(), pg_is_in_recovery()");
    (row.get(0), row.get(1))
}

/// Where a read ran, as (port, in recovery), through one simple Query.
async fn server_of_simple(client: &Client) -> (i32, bool) {
    let rows = simple_rows(client, "SELECT inet_server_port(), pg_is_in_recovery()").await;
    let row = &rows[0];
    let port = row[0]
        .as_deref()
        .expect("port")
        .parse()
        .expect("port number");
    (port, row[1].as_deref() == Some("t"))
}

fn db_error(e: &tokio_postgres::Error) -> &DbError {
    e.as_db_error()
        .unwrap_or_else(|| panic!("expected an error from the server, got: {e}"))
}

/// The error a connection attempt ended with; panics if it succeeded.
async fn connect_error(conn_str: &str) -> tokio_postgres::Error {
    match tokio_postgres::connect(conn_str, NoTls).await {
        Ok(_) => panic!("connecting with {conn_str} should fail"),
        Err(e) => e,
    }
}

/// Every field PostgreSQL put in the error, so that two errors can be compared whole. `file`,
/// `line` and `routine` name the server's source location: equal only if the same server code
/// raised both.
#[allow(clippy::type_complexity)]
fn error_fields(
    e: &DbError,
) -> (
    &str,
    &SqlState,
    &str,
    Option<&str>,
    Option<&str>,
    Option<&ErrorPosition>,
    [Option<&str>; 6],
    Option<u32>,
) {
    (
        e.severity(),
        e.code(),
        e.message(),
        e.detail(),
        e.hint(),
        e.position(),
        [
            e.schema(),
            e.table(),
            e.column(),
            e.constraint(),
            e.file(),
            e.routine(),
        ],
        e.line(),
    )
}

/// Runs psql against `url` with the harness's flags and no password from the environment.
fn psql_url(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("psql")
        .arg(url)
        .args(["-X", "-A", "-t", "-q", "-w"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .output()
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

//! End-to-end routing: pgroute in front of a real primary (node 0) and two streaming replicas.
//!
//! Every test proves where a statement ran with the server's own answers (`inet_server_port()`,
//! `pg_is_in_recovery()`, `pg_backend_pid()`) or by looking at its effect on the primary
//! directly, as the superuser, bypassing pgroute. Tests share one cluster and run in parallel,
//! so each uses its own tables, sequences, roles and advisory lock keys.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::raw::{self, RawConn, Reply};
use common::{
    caught_up, cluster, on_primary, primary_port, psql, replica_ports, simple_rows, start_proxy,
    TestProxy, PASSWORD, USER,
};
use futures::StreamExt;
use pgroute::testbed::Cluster;
use tokio_postgres::error::{DbError, ErrorPosition, SqlState};
use tokio_postgres::{AsyncMessage, Client, NoTls};

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

// ---------------------------------------------------------------------------------------------
// 1. Reads land on the replicas.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_separate_connections_land_on_both_replicas() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    assert_reads_spread("a read on a new connection", async || {
        server_of_simple(&proxy.connect().await).await
    })
    .await;
}

/// 40 reads, one after the other: each must run on a replica, and they must spread over both
/// (transaction pooling routes every statement anew): at least a quarter on each.
async fn assert_reads_spread(what: &str, mut read: impl AsyncFnMut() -> (i32, bool)) {
    let mut ran_on = Vec::new();
    for _ in 0..40 {
        let (port, in_recovery) = read().await;
        assert!(
            replica_ports().contains(&port) && in_recovery,
            "{what} ran on port {port} (in recovery: {in_recovery}); the replicas are {:?}",
            replica_ports()
        );
        ran_on.push(port);
    }
    for replica in replica_ports() {
        let count = ran_on.iter().filter(|p| **p == replica).count();
        assert!(
            count >= 10,
            "40 consecutive reads ({what}) should spread over both replicas, but {count} ran on \
             replica {replica}; ports: {ran_on:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_reads_in_one_connection_spread_over_both_replicas() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let client = proxy.connect().await;
    assert_reads_spread("simple Query", async || server_of_simple(&client).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_reads_in_one_connection_spread_over_both_replicas() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let client = proxy.connect().await;
    let stmt = client
        .prepare("SELECT inet_server_port(), pg_is_in_recovery()")
        .await
        .expect("prepare");
    assert_reads_spread("execution of one prepared statement", async || {
        let row = client.query_one(&stmt, &[]).await.expect("execute");
        (row.get(0), row.get(1))
    })
    .await;
}

/// tokio-postgres's `query(&str)`: Parse/Describe/Sync, then Bind/Execute/Sync, then (when the
/// statement is dropped) Close/Sync — the way many applications read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprepared_extended_reads_in_one_connection_spread_over_both_replicas() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let client = proxy.connect().await;
    assert_reads_spread("extended-protocol query", async || server_of(&client).await).await;
}

/// The describe-then-execute pattern of drivers that do not keep prepared statements (pgx's
/// "describe exec" mode, tokio-postgres's `query(&str)`): Parse/Describe/Sync, then
/// Bind/Execute/Sync, with nothing else in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn described_then_executed_reads_spread_over_both_replicas() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    assert_reads_spread("Parse/Describe/Sync then Bind/Execute/Sync", async || {
        let mut out = BytesMut::new();
        raw::parse(
            &mut out,
            "",
            "SELECT inet_server_port(), pg_is_in_recovery()",
        );
        raw::describe(&mut out, "");
        raw::sync(&mut out);
        let replies = raw.exchange(&out).await;
        assert_eq!(replies, [Reply::ParseComplete, Reply::Ready(b'I')]);
        let mut out = BytesMut::new();
        raw::bind_execute(&mut out, "");
        raw::sync(&mut out);
        let replies = raw.exchange(&out).await;
        let row = &raw::rows(&replies)[0];
        let port = row[0]
            .as_deref()
            .expect("port")
            .parse()
            .expect("port number");
        (port, row[1].as_deref() == Some("t"))
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Every kind of write lands on the primary.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_update_delete_returning_run_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_dml (id int PRIMARY KEY, v text)")
        .await
        .expect("CREATE TABLE");
    let primary = (primary_port(), false);
    for (what, sql) in [
        (
            "INSERT",
            "INSERT INTO rt_dml VALUES (1, 'a'), (2, 'b') RETURNING inet_server_port(), pg_is_in_recovery()",
        ),
        (
            "UPDATE",
            "UPDATE rt_dml SET v = 'c' WHERE id = 2 RETURNING inet_server_port(), pg_is_in_recovery()",
        ),
        (
            "DELETE",
            "DELETE FROM rt_dml WHERE id = 1 RETURNING inet_server_port(), pg_is_in_recovery()",
        ),
    ] {
        let rows = c.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!rows.is_empty(), "{what} returned no row");
        for row in rows {
            let ran_on: (i32, bool) = (row.get(0), row.get(1));
            assert_eq!(ran_on, primary, "{what} … RETURNING ran on the wrong node");
        }
    }
    // The same through the simple protocol.
    let rows = simple_rows(
        &c,
        "INSERT INTO rt_dml VALUES (3, 'd') RETURNING inet_server_port()",
    )
    .await;
    assert_eq!(rows, vec![vec![Some(primary_port().to_string())]]);
    assert_eq!(
        on_primary("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM rt_dml"),
        "2=c,3=d"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_runs_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    // A replica refuses every one of these with 25006 (read-only transaction).
    for sql in [
        "CREATE TABLE rt_ddl (id int)",
        "ALTER TABLE rt_ddl ADD COLUMN v text",
        "CREATE INDEX rt_ddl_v ON rt_ddl (v)",
        "CREATE VIEW rt_ddl_view AS SELECT id FROM rt_ddl",
        "COMMENT ON TABLE rt_ddl IS 'made through pgroute'",
    ] {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Extended protocol too.
    c.execute("CREATE TABLE rt_ddl_extended (id int)", &[])
        .await
        .expect("CREATE TABLE through the extended protocol");
    assert_eq!(
        on_primary(
            "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = 'rt_ddl'::regclass \
             AND attname = 'v'), to_regclass('rt_ddl_v') IS NOT NULL, \
             to_regclass('rt_ddl_view') IS NOT NULL, obj_description('rt_ddl'::regclass), \
             to_regclass('rt_ddl_extended') IS NOT NULL"
        ),
        "1|t|t|made through pgroute|t"
    );
    c.batch_execute("DROP VIEW rt_ddl_view; DROP TABLE rt_ddl, rt_ddl_extended")
        .await
        .expect("DROP");
    assert_eq!(
        on_primary(
            "SELECT to_regclass('rt_ddl') IS NULL AND to_regclass('rt_ddl_extended') IS NULL"
        ),
        "t"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_and_advisory_lock_calls_run_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute("CREATE SEQUENCE rt_seq")
        .await
        .expect("CREATE SEQUENCE");
    caught_up();
    for expected in 1..=3i64 {
        let row = c
            .query_one("SELECT nextval('rt_seq'), inet_server_port()", &[])
            .await
            .expect("nextval");
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i32>(1)),
            (expected, primary_port())
        );
    }
    let row = c
        .query_one("SELECT setval('rt_seq', 10), inet_server_port()", &[])
        .await
        .expect("setval");
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i32>(1)),
        (10, primary_port())
    );
    assert_eq!(on_primary("SELECT last_value FROM rt_seq"), "10");

    let advisory_locks = |key: u32| {
        on_primary(&format!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {key} AND granted"))
    };
    let primary = Some(primary_port().to_string());

    // A transaction-level advisory lock, inside a transaction.
    c.batch_execute("BEGIN").await.expect("BEGIN");
    let rows = simple_rows(&c, "SELECT pg_advisory_xact_lock(7301), inet_server_port()").await;
    assert_eq!(
        rows[0][1], primary,
        "pg_advisory_xact_lock in a transaction"
    );
    assert_eq!(
        advisory_locks(7301),
        "1",
        "the xact lock should be held on the primary"
    );
    c.batch_execute("COMMIT").await.expect("COMMIT");
    assert_eq!(
        advisory_locks(7301),
        "0",
        "COMMIT should release the xact lock"
    );

    // The same outside a transaction, where nothing but the classifier sends it to the primary.
    let rows = simple_rows(&c, "SELECT pg_advisory_xact_lock(7302), inet_server_port()").await;
    assert_eq!(
        rows[0][1], primary,
        "pg_advisory_xact_lock outside a transaction"
    );

    // A session-level lock, then its unlock on the same server connection.
    let rows = simple_rows(&c, "SELECT pg_try_advisory_lock(7303), inet_server_port()").await;
    assert_eq!(
        rows[0],
        vec![Some("t".into()), primary.clone()],
        "pg_try_advisory_lock"
    );
    assert_eq!(
        advisory_locks(7303),
        "1",
        "the session lock should be held on the primary"
    );
    let rows = simple_rows(&c, "SELECT pg_advisory_unlock(7303), inet_server_port()").await;
    assert_eq!(
        rows[0],
        vec![Some("t".into()), primary],
        "pg_advisory_unlock must run where the lock was taken"
    );
    assert_eq!(
        advisory_locks(7303),
        "0",
        "the session lock should be released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_selects_and_writing_ctes_run_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_lock (id int PRIMARY KEY); INSERT INTO rt_lock VALUES (1)")
        .await
        .expect("setup");
    // Wrongly sent to a caught-up replica, these would fail with 25006 instead of finding no row.
    caught_up();
    for clause in [
        "FOR UPDATE",
        "FOR NO KEY UPDATE",
        "FOR SHARE",
        "FOR KEY SHARE",
        "FOR UPDATE NOWAIT",
        "FOR UPDATE SKIP LOCKED",
    ] {
        let sql = format!("SELECT id, inet_server_port() FROM rt_lock WHERE id = 1 {clause}");
        let row = c
            .query_one(sql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(row.get::<_, i32>(1), primary_port(), "{sql}");
    }
    let row = c
        .query_one(
            "WITH x AS (INSERT INTO rt_lock VALUES (2) RETURNING id) \
             SELECT inet_server_port(), id FROM x",
            &[],
        )
        .await
        .expect("writing CTE");
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, i32>(1)),
        (primary_port(), 2)
    );
    assert_eq!(on_primary("SELECT count(*) FROM rt_lock WHERE id = 2"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_into_creates_its_table_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute(
        "SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery INTO rt_select_into",
    )
    .await
    .expect("SELECT … INTO (simple protocol)");
    c.execute(
        "SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery \
         INTO rt_select_into_extended",
        &[],
    )
    .await
    .expect("SELECT … INTO (extended protocol)");
    let expected = format!("{}|f", primary_port());
    assert_eq!(
        on_primary("SELECT port, in_recovery FROM rt_select_into"),
        expected
    );
    assert_eq!(
        on_primary("SELECT port, in_recovery FROM rt_select_into_extended"),
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_do_run_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute(
        "CREATE TABLE rt_proc (id int PRIMARY KEY, port int);
         CREATE PROCEDURE rt_proc_insert(i int) LANGUAGE sql
             AS $$ INSERT INTO rt_proc VALUES (i, inet_server_port()) $$",
    )
    .await
    .expect("setup");
    c.batch_execute("CALL rt_proc_insert(1)")
        .await
        .expect("CALL (simple)");
    c.execute("CALL rt_proc_insert(2)", &[])
        .await
        .expect("CALL (extended)");
    c.batch_execute("DO $$ BEGIN INSERT INTO rt_proc VALUES (3, inet_server_port()); END $$")
        .await
        .expect("DO");
    let p = primary_port();
    assert_eq!(
        on_primary("SELECT string_agg(id || ':' || port, ',' ORDER BY id) FROM rt_proc"),
        format!("1:{p},2:{p},3:{p}")
    );
}

#[test]
fn psql_multi_statement_with_a_write_runs_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let (ok, _, err) = psql(
        &proxy,
        &["-c", "CREATE TABLE rt_psql_multi (id int, port int)"],
    );
    assert!(ok, "CREATE TABLE: {err}");
    let (ok, out, err) = psql(
        &proxy,
        &[
            "-c",
            "SELECT inet_server_port(); \
             INSERT INTO rt_psql_multi VALUES (1, inet_server_port()) RETURNING port",
        ],
    );
    assert!(ok, "multi-statement -c: {err}");
    let p = primary_port();
    assert_eq!(
        out,
        format!("{p}\n{p}"),
        "both statements should run on the primary"
    );
    assert_eq!(
        on_primary("SELECT port FROM rt_psql_multi WHERE id = 1"),
        p.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_the_servers_own_syntax_error() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let c = proxy.connect().await;
    let own = direct(0).await;
    for sql in [
        "SELEKT inet_server_port()",
        "SELECT 'unterminated",
        "SELECT FROM WHERE ;;(",
    ] {
        let via = c.simple_query(sql).await.expect_err("garbage must fail");
        let via = db_error(&via);
        assert_eq!(via.code(), &SqlState::SYNTAX_ERROR, "{sql}: {via}");
        let theirs = own
            .simple_query(sql)
            .await
            .expect_err("garbage fails on the server");
        assert_eq!(
            error_fields(via),
            error_fields(db_error(&theirs)),
            "{sql}: the error should be PostgreSQL's own"
        );
        // Extended protocol: the Parse fails on the server.
        let via = c.query(sql, &[]).await.expect_err("garbage must fail");
        assert_eq!(
            db_error(&via).code(),
            &SqlState::SYNTAX_ERROR,
            "{sql} (extended)"
        );
        // The session goes on.
        assert!(replica_ports().contains(&server_of(&c).await.0));
    }
    let via = c
        .simple_query("SELEKT 1")
        .await
        .expect_err("garbage must fail");
    assert_eq!(
        db_error(&via).message(),
        "syntax error at or near \"SELEKT\""
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Transactions stay on the primary.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_transactions_stay_on_primary() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let mut c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_txn (id int PRIMARY KEY)")
        .await
        .expect("CREATE TABLE");
    let where_sql = "SELECT inet_server_port(), pg_is_in_recovery(), pg_backend_pid()";
    for (i, begin) in [
        "BEGIN",
        "START TRANSACTION",
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "begin transaction",
    ]
    .into_iter()
    .enumerate()
    {
        c.batch_execute(begin)
            .await
            .unwrap_or_else(|e| panic!("{begin}: {e}"));
        let first = c
            .query_one(where_sql, &[])
            .await
            .expect("read in transaction");
        let (port, in_recovery, pid): (i32, bool, i32) = (first.get(0), first.get(1), first.get(2));
        assert_eq!(
            (port, in_recovery),
            (primary_port(), false),
            "a read after {begin}"
        );
        c.execute("INSERT INTO rt_txn VALUES ($1)", &[&(i as i32)])
            .await
            .expect("INSERT in transaction");
        for _ in 0..5 {
            let row = c
                .query_one(where_sql, &[])
                .await
                .expect("read in transaction");
            assert_eq!(
                row.get::<_, i32>(2),
                pid,
                "every statement after {begin} on one connection"
            );
        }
        let rows = simple_rows(&c, "SELECT pg_backend_pid()").await;
        assert_eq!(
            rows[0][0],
            Some(pid.to_string()),
            "simple Query after {begin}"
        );
        c.batch_execute("COMMIT").await.expect("COMMIT");
    }
    // tokio-postgres's own transaction API (BEGIN, extended-protocol statements, COMMIT).
    let tx = c.transaction().await.expect("BEGIN");
    let row = tx
        .query_one(where_sql, &[])
        .await
        .expect("read in transaction");
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, bool>(1)),
        (primary_port(), false)
    );
    tx.execute("INSERT INTO rt_txn VALUES (100)", &[])
        .await
        .expect("INSERT");
    tx.commit().await.expect("COMMIT");
    assert_eq!(
        on_primary("SELECT string_agg(id::text, ',' ORDER BY id) FROM rt_txn"),
        "0,1,2,3,100"
    );
    // Once the transaction is over, reads go to the replicas again.
    caught_up();
    let (port, in_recovery) = server_of(&c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "a read after COMMIT ran on {port}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_batch_is_one_implicit_transaction_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_implicit (id int PRIMARY KEY)")
        .await
        .expect("CREATE TABLE");
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");

    // A read, a write and a read before one Sync: "the extended-query messages … up to Sync
    // form an implicit transaction", so all three must run on the primary, on one connection.
    let mut out = BytesMut::new();
    raw::statement(&mut out, "SELECT inet_server_port(), pg_backend_pid()");
    raw::statement(&mut out, "INSERT INTO rt_implicit VALUES (1)");
    raw::statement(
        &mut out,
        "SELECT inet_server_port(), pg_backend_pid(), pg_current_xact_id_if_assigned() IS NOT NULL",
    );
    raw::sync(&mut out);
    let replies = raw.exchange(&out).await;
    let rows = raw::rows(&replies);
    assert!(raw::errors(&replies).is_empty(), "{replies:?}");
    assert_eq!(rows.len(), 2, "{replies:?}");
    let p = Some(primary_port().to_string());
    assert_eq!(rows[0][0], p, "the read before the write: {replies:?}");
    assert_eq!(
        rows[1],
        vec![p, rows[0][1].clone(), Some("t".into())],
        "the read after the write should share its connection and transaction: {replies:?}"
    );
    assert_eq!(replies.last(), Some(&Reply::Ready(b'I')));

    // A failure later in the batch rolls back the whole implicit transaction.
    let mut out = BytesMut::new();
    raw::statement(&mut out, "INSERT INTO rt_implicit VALUES (2)");
    raw::statement(&mut out, "SELECT 1/0");
    raw::statement(&mut out, "INSERT INTO rt_implicit VALUES (3)");
    raw::sync(&mut out);
    let replies = raw.exchange(&out).await;
    assert_eq!(
        raw::errors(&replies),
        vec![("22012".to_owned(), "division by zero".to_owned())],
        "{replies:?}"
    );
    assert_eq!(replies.last(), Some(&Reply::Ready(b'I')));
    assert_eq!(
        on_primary("SELECT string_agg(id::text, ',' ORDER BY id) FROM rt_implicit"),
        "1",
        "the failed batch must leave nothing behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_transaction_reports_25p02_until_rollback() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let c = proxy.connect().await;

    // Extended protocol inside the transaction.
    c.batch_execute("BEGIN").await.expect("BEGIN");
    let e = c.query("SELECT 1/0", &[]).await.expect_err("1/0");
    assert_eq!(db_error(&e).code(), &SqlState::DIVISION_BY_ZERO, "{e}");
    let e = c
        .query("SELECT 1", &[])
        .await
        .expect_err("in a failed transaction");
    assert_eq!(
        db_error(&e).code(),
        &SqlState::IN_FAILED_SQL_TRANSACTION,
        "{e}"
    );
    let e = c
        .simple_query("SELECT 1")
        .await
        .expect_err("in a failed transaction");
    assert_eq!(
        db_error(&e).code(),
        &SqlState::IN_FAILED_SQL_TRANSACTION,
        "{e}"
    );
    c.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    let row = c
        .query_one("SELECT 41 + 1", &[])
        .await
        .expect("after ROLLBACK");
    assert_eq!(row.get::<_, i32>(0), 42);
    let (port, in_recovery) = server_of(&c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "a read after ROLLBACK ran on {port}"
    );

    // Simple protocol only, the error in the same Query as the BEGIN.
    let e = c.simple_query("BEGIN; SELECT 1/0").await.expect_err("1/0");
    assert_eq!(db_error(&e).code(), &SqlState::DIVISION_BY_ZERO, "{e}");
    let e = c
        .simple_query("SELECT inet_server_port()")
        .await
        .expect_err("failed transaction");
    assert_eq!(
        db_error(&e).code(),
        &SqlState::IN_FAILED_SQL_TRANSACTION,
        "{e}"
    );
    assert_eq!(
        db_error(&e).message(),
        "current transaction is aborted, commands ignored until end of transaction block"
    );
    c.simple_query("ROLLBACK").await.expect("ROLLBACK");
    let (port, in_recovery) = server_of_simple(&c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "a read after ROLLBACK ran on {port}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Prepared statements.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_read_is_reused_across_transactions_and_writes() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_prep_mix (id int PRIMARY KEY, port int)")
        .await
        .expect("CREATE TABLE");
    caught_up();
    let read = c
        .prepare("SELECT $1::int + 1, inet_server_port()")
        .await
        .expect("prepare read");
    let write = c
        .prepare("INSERT INTO rt_prep_mix VALUES ($1, inet_server_port()) RETURNING port")
        .await
        .expect("prepare write");
    let mut seen = BTreeSet::new();
    for i in 0..200i32 {
        let row = c
            .query_one(&read, &[&i])
            .await
            .unwrap_or_else(|e| panic!("execution {i} of the prepared read: {e}"));
        assert_eq!(row.get::<_, i32>(0), i + 1, "execution {i}");
        let port: i32 = row.get(1);
        assert!(
            replica_ports().contains(&port),
            "execution {i} ran on {port}"
        );
        seen.insert(port);
        if i % 10 == 0 {
            let row = c
                .query_one(&write, &[&i])
                .await
                .unwrap_or_else(|e| panic!("prepared write {i}: {e}"));
            assert_eq!(row.get::<_, i32>(0), primary_port(), "prepared write {i}");
        }
        if i % 50 == 25 {
            // The same statement inside a transaction runs on the primary.
            c.batch_execute("BEGIN").await.expect("BEGIN");
            let row = c
                .query_one(&read, &[&i])
                .await
                .expect("prepared read in a transaction");
            assert_eq!(
                (row.get::<_, i32>(0), row.get::<_, i32>(1)),
                (i + 1, primary_port())
            );
            c.batch_execute("COMMIT").await.expect("COMMIT");
        }
    }
    assert_eq!(
        seen,
        replica_ports(),
        "200 executions should reach both replicas"
    );
    assert_eq!(
        on_primary("SELECT count(*), sum(id) FROM rt_prep_mix"),
        "20|1900"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_insert_executed_100_times() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_prep_insert (id int PRIMARY KEY, v text)")
        .await
        .expect("CREATE TABLE");
    let insert = c
        .prepare("INSERT INTO rt_prep_insert VALUES ($1, $2)")
        .await
        .expect("prepare");
    for i in 0..100i32 {
        let n = c
            .execute(&insert, &[&i, &format!("v{i}")])
            .await
            .unwrap_or_else(|e| panic!("execution {i}: {e}"));
        assert_eq!(n, 1, "execution {i}");
    }
    assert_eq!(
        on_primary("SELECT count(*), sum(id), count(DISTINCT v) FROM rt_prep_insert"),
        "100|4950|100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_share_statement_text_concurrently() {
    const SQL: &str = "SELECT $1::int + 1, inet_server_port(), pg_is_in_recovery()";
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let tasks: Vec<_> = (0..8i32)
        .map(|client_no| {
            let conn_str = proxy.conn_str();
            tokio::spawn(async move {
                let c = common::connect(&conn_str).await;
                let stmt = c.prepare(SQL).await.expect("prepare");
                let mut seen = BTreeSet::new();
                for i in 0..100i32 {
                    let v = client_no * 1000 + i;
                    let row = c
                        .query_one(&stmt, &[&v])
                        .await
                        .unwrap_or_else(|e| panic!("client {client_no}, execution {i}: {e}"));
                    assert_eq!(
                        row.get::<_, i32>(0),
                        v + 1,
                        "client {client_no}, execution {i}"
                    );
                    assert!(
                        row.get::<_, bool>(2),
                        "client {client_no}: a read left the replicas"
                    );
                    seen.insert(row.get::<_, i32>(1));
                }
                seen
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        seen.extend(task.await.expect("client task"));
    }
    assert_eq!(seen, replica_ports());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_names_can_be_reused_after_close() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);

    // tokio-postgres closes a dropped Statement and names the next one afresh.
    let c = proxy.connect().await;
    for round in 0..20i32 {
        let stmt = c
            .prepare("SELECT $1::int * 2, inet_server_port()")
            .await
            .expect("prepare");
        for i in 0..3i32 {
            let row = c.query_one(&stmt, &[&(round + i)]).await.expect("execute");
            assert_eq!(row.get::<_, i32>(0), (round + i) * 2);
        }
        drop(stmt);
    }

    // The very same name for different statements, through the raw protocol.
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    let run_s1 = |n: usize| {
        let mut out = BytesMut::new();
        for _ in 0..n {
            raw::bind_execute(&mut out, "s1");
            raw::sync(&mut out);
        }
        out
    };
    let mut out = BytesMut::new();
    raw::parse(&mut out, "s1", "SELECT 1");
    raw::sync(&mut out);
    assert_eq!(
        raw.exchange(&out).await,
        vec![Reply::ParseComplete, Reply::Ready(b'I')]
    );
    for _ in 0..3 {
        let replies = raw.exchange(&run_s1(1)).await;
        assert_eq!(
            raw::rows(&replies),
            vec![vec![Some("1".to_owned())]],
            "{replies:?}"
        );
    }
    let mut out = BytesMut::new();
    raw::close(&mut out, "s1");
    raw::sync(&mut out);
    assert_eq!(
        raw.exchange(&out).await,
        vec![Reply::CloseComplete, Reply::Ready(b'I')]
    );
    let mut out = BytesMut::new();
    raw::parse(&mut out, "s1", "SELECT 2");
    raw::sync(&mut out);
    assert_eq!(
        raw.exchange(&out).await,
        vec![Reply::ParseComplete, Reply::Ready(b'I')]
    );
    for _ in 0..3 {
        let replies = raw.exchange(&run_s1(1)).await;
        assert_eq!(
            raw::rows(&replies),
            vec![vec![Some("2".to_owned())]],
            "s1 re-prepared after Close must run the new text: {replies:?}"
        );
    }
    // Until it is closed, the name is taken…
    let mut out = BytesMut::new();
    raw::parse(&mut out, "s1", "SELECT 3");
    raw::sync(&mut out);
    let replies = raw.exchange(&out).await;
    assert_eq!(error_codes(&replies), ["42P05"], "{replies:?}");
    let replies = raw.exchange(&run_s1(1)).await;
    assert_eq!(
        raw::rows(&replies),
        vec![vec![Some("2".to_owned())]],
        "{replies:?}"
    );
    // …and once closed, it is gone.
    let mut out = BytesMut::new();
    raw::close(&mut out, "s1");
    raw::sync(&mut out);
    raw.exchange(&out).await;
    let replies = raw.exchange(&run_s1(1)).await;
    assert_eq!(error_codes(&replies), ["26000"], "{replies:?}");
}

fn error_codes(replies: &[Reply]) -> Vec<String> {
    raw::errors(replies)
        .into_iter()
        .map(|(code, _)| code)
        .collect()
}

/// PostgreSQL names the client's statement in these errors; the names pgroute gives statements
/// on the servers are its own business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_errors_name_the_clients_statement() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    let mut out = BytesMut::new();
    raw::parse(&mut out, "dup", "SELECT 1");
    raw::sync(&mut out);
    raw::parse(&mut out, "dup", "SELECT 2");
    raw::sync(&mut out);
    raw::bind_execute(&mut out, "never_prepared");
    raw::sync(&mut out);
    let replies = raw.exchange(&out).await;
    assert_eq!(
        raw::errors(&replies),
        [
            ("42P05", "prepared statement \"dup\" already exists"),
            (
                "26000",
                "prepared statement \"never_prepared\" does not exist"
            ),
        ]
        .map(|(code, message)| (code.to_owned(), message.to_owned())),
        "{replies:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Errors and notices pass through.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_pass_through_whole() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let c = proxy.connect().await;
    let own = direct(0).await;
    c.batch_execute(
        "CREATE TABLE rt_errors (id int CONSTRAINT rt_errors_pkey PRIMARY KEY);
         INSERT INTO rt_errors VALUES (1)",
    )
    .await
    .expect("setup");
    caught_up();

    let insert = "INSERT INTO rt_errors VALUES (1)";
    let via = c.execute(insert, &[]).await.expect_err("duplicate key");
    let via = db_error(&via);
    assert_eq!(via.code(), &SqlState::UNIQUE_VIOLATION);
    assert_eq!(
        via.message(),
        "duplicate key value violates unique constraint \"rt_errors_pkey\""
    );
    assert_eq!(via.detail(), Some("Key (id)=(1) already exists."));
    assert_eq!(
        (via.table(), via.constraint()),
        (Some("rt_errors"), Some("rt_errors_pkey"))
    );
    let theirs = own.execute(insert, &[]).await.expect_err("duplicate key");
    assert_eq!(error_fields(via), error_fields(db_error(&theirs)));
    let via = c
        .simple_query(insert)
        .await
        .expect_err("duplicate key (simple)");
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
    assert!(
        server_of(&c).await.1,
        "the session should go on after 23505"
    );

    let via = c.query("SELECT 1/0", &[]).await.expect_err("1/0");
    let theirs = own.query("SELECT 1/0", &[]).await.expect_err("1/0");
    assert_eq!(db_error(&via).code(), &SqlState::DIVISION_BY_ZERO);
    assert_eq!(db_error(&via).message(), "division by zero");
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
    assert!(
        server_of(&c).await.1,
        "the session should go on after 22012"
    );

    let missing = "SELECT * FROM rt_no_such_table";
    let via = c.query(missing, &[]).await.expect_err("undefined table");
    let theirs = own.query(missing, &[]).await.expect_err("undefined table");
    assert_eq!(db_error(&via).code(), &SqlState::UNDEFINED_TABLE);
    assert_eq!(
        db_error(&via).message(),
        "relation \"rt_no_such_table\" does not exist"
    );
    assert_eq!(
        db_error(&via).position(),
        Some(&ErrorPosition::Original(15))
    );
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
    let via = c
        .simple_query(missing)
        .await
        .expect_err("undefined table (simple)");
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
    assert!(
        server_of(&c).await.1,
        "the session should go on after 42P01"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_reach_the_client() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let (client, mut connection) = tokio_postgres::connect(&proxy.conn_str(), NoTls)
        .await
        .expect("connect");
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(notice) = message {
                let _ = tx.send(notice);
            }
        }
    });
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
        .await
        .expect("DO");
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a notice within 5 s")
        .expect("the connection is still open");
    assert_eq!(
        (notice.severity(), notice.code(), notice.message()),
        ("NOTICE", &SqlState::SUCCESSFUL_COMPLETION, "hello")
    );
    assert!(server_of(&client).await.1, "the session goes on");

    let (ok, _, stderr) = psql(
        &proxy,
        &["-c", "DO $$ BEGIN RAISE NOTICE 'hello from psql'; END $$"],
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("NOTICE:  hello from psql"),
        "psql stderr: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Authentication.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_refused() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let e = connect_error(&conn_str(proxy.port, USER, Some("wrong"), "postgres")).await;
    assert_eq!(db_error(&e).code(), &SqlState::INVALID_PASSWORD, "{e}");
    assert_eq!(
        db_error(&e).message(),
        "password authentication failed for user \"app\""
    );

    let e = connect_error(&conn_str(proxy.port, "rt_nobody", Some("x"), "postgres")).await;
    assert_eq!(
        db_error(&e).code(),
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        "{e}"
    );

    let url = format!("postgres://{USER}:wrong@127.0.0.1:{}/postgres", proxy.port);
    let (ok, _, stderr) = psql_url(&url, &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(
        stderr.contains("password authentication failed for user \"app\""),
        "{stderr}"
    );

    // Refusals leave pgroute serving.
    let c = proxy.connect().await;
    assert!(replica_ports().contains(&server_of(&c).await.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_user_logs_in() {
    ensure_role("rt_md5user", "md5-pw");
    let proxy = start_proxy(
        cluster(),
        &format!("{REPLICA_READS}[[users]]\nname = \"rt_md5user\"\npassword = \"md5-pw\"\nauth = \"md5\"\n"),
    );
    let c = common::connect(&conn_str(
        proxy.port,
        "rt_md5user",
        Some("md5-pw"),
        "postgres",
    ))
    .await;
    let row = c
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "rt_md5user");
    let (port, in_recovery) = server_of(&c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "read ran on {port}"
    );

    let e = connect_error(&conn_str(
        proxy.port,
        "rt_md5user",
        Some("wrong"),
        "postgres",
    ))
    .await;
    assert_eq!(db_error(&e).code(), &SqlState::INVALID_PASSWORD, "{e}");

    let url = format!(
        "postgres://rt_md5user:md5-pw@127.0.0.1:{}/postgres",
        proxy.port
    );
    let (ok, out, stderr) = psql_url(&url, &["-c", "SELECT current_user"]);
    assert!(ok, "psql as the md5 user: {stderr}");
    assert_eq!(out, "rt_md5user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_user_logs_in_without_a_password() {
    ensure_role("rt_trustuser", "trust-server-pw");
    let proxy = start_proxy(
        cluster(),
        &format!("{REPLICA_READS}[[users]]\nname = \"rt_trustuser\"\npassword = \"trust-server-pw\"\nauth = \"trust\"\n"),
    );
    let c = common::connect(&conn_str(proxy.port, "rt_trustuser", None, "postgres")).await;
    let row = c
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "rt_trustuser");
    let (port, in_recovery) = server_of(&c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "read ran on {port}"
    );

    let url = format!("postgres://rt_trustuser@127.0.0.1:{}/postgres", proxy.port);
    let (ok, out, stderr) = psql_url(&url, &["-c", "SELECT current_user"]);
    assert!(ok, "psql as the trust user: {stderr}");
    assert_eq!(out, "rt_trustuser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_gets_the_servers_3d000() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let via = connect_error(&conn_str(proxy.port, USER, Some(PASSWORD), "rt_no_such_db")).await;
    let direct_str = format!(
        "host=127.0.0.1 port={} user=postgres dbname=rt_no_such_db",
        cluster().port(0)
    );
    let theirs = connect_error(&direct_str).await;
    assert_eq!(
        db_error(&via).code(),
        &SqlState::INVALID_CATALOG_NAME,
        "{via}"
    );
    assert_eq!(
        db_error(&via).message(),
        "database \"rt_no_such_db\" does not exist"
    );
    assert_eq!(
        error_fields(db_error(&via)),
        error_fields(db_error(&theirs))
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A client that goes away mid-transaction.

/// Checks that backend `pid` on the primary is inside a transaction that has written (holds
/// its transaction id lock), so that the rollback checks that follow can fail.
async fn assert_transaction_open(table: &str, pid: i32) {
    let locks = on_primary(&format!(
        "SELECT count(*) FROM pg_locks WHERE pid = {pid} AND locktype = 'transactionid'"
    ));
    assert_eq!(
        locks, "1",
        "the doomed transaction should hold its xid lock on the primary ({table})"
    );
}

/// After the client of a transaction (backend `pid`) vanished: within a few seconds the row it
/// inserted (`new_id`) does not exist and row 1 it locked can be locked again, both on the
/// primary directly and through pgroute.
async fn assert_rolled_back(proxy: &TestProxy, table: &str, new_id: i32, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let lock_row_1 =
        format!("BEGIN;\nSELECT id FROM {table} WHERE id = 1 FOR UPDATE NOWAIT;\nROLLBACK;");
    loop {
        let state = on_primary(&format!(
            "SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = {pid}), 'gone')"
        ));
        let lockable = cluster().psql(0, &lock_row_1);
        if lockable.is_ok() && (state == "gone" || state == "idle") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "5 s after the client left, backend {pid} is {state:?} and locking row 1 gives {lockable:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        on_primary(&format!("SELECT count(*) FROM {table} WHERE id = {new_id}")),
        "0",
        "the uncommitted insert must be gone"
    );
    // Through pgroute, on the primary: a dirty server connection handed to this session would
    // show the uncommitted row and already have a transaction id.
    let mut c = proxy.connect().await;
    let tx = c.transaction().await.expect("BEGIN");
    let sql = format!(
        "SELECT count(*), pg_current_xact_id_if_assigned() IS NULL FROM {table} WHERE id = {new_id}"
    );
    let row = tx.query_one(sql.as_str(), &[]).await.expect("count");
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, bool>(1)),
        (0, true),
        "a fresh transaction must not see the vanished client's work (row, transaction id)"
    );
    let sql = format!("SELECT id, inet_server_port() FROM {table} WHERE id = 1 FOR UPDATE NOWAIT");
    let row = tx
        .query_one(sql.as_str(), &[])
        .await
        .expect("row 1 lockable through pgroute");
    assert_eq!(row.get::<_, i32>(1), primary_port());
    tx.rollback().await.expect("ROLLBACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_transaction_is_rolled_back() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute(
        "CREATE TABLE rt_gone (id int PRIMARY KEY, v int); INSERT INTO rt_gone VALUES (1, 0)",
    )
    .await
    .expect("setup");

    // tokio-postgres: the client is dropped (its connection sends Terminate).
    let doomed = proxy.connect().await;
    doomed
        .batch_execute(
            "BEGIN; INSERT INTO rt_gone VALUES (2, 0); UPDATE rt_gone SET v = 1 WHERE id = 1",
        )
        .await
        .expect("open the transaction");
    let pid: i32 = doomed
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    assert_transaction_open("rt_gone", pid).await;
    drop(doomed);
    assert_rolled_back(&proxy, "rt_gone", 2, pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_socket_reset_mid_transaction_is_rolled_back() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute(
        "CREATE TABLE rt_reset (id int PRIMARY KEY, v int); INSERT INTO rt_reset VALUES (1, 0)",
    )
    .await
    .expect("setup");

    // Raw socket: no Terminate, the TCP connection is reset.
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    let mut out = BytesMut::new();
    raw::query(
        &mut out,
        "BEGIN; INSERT INTO rt_reset VALUES (3, 0); UPDATE rt_reset SET v = 1 WHERE id = 1; \
         SELECT pg_backend_pid()",
    );
    let replies = raw.exchange(&out).await;
    assert_eq!(replies.last(), Some(&Reply::Ready(b'T')), "{replies:?}");
    let pid: i32 = raw::rows(&replies)[0][0]
        .as_deref()
        .expect("pid")
        .parse()
        .expect("pid number");
    assert_transaction_open("rt_reset", pid).await;
    raw.reset();
    assert_rolled_back(&proxy, "rt_reset", 3, pid).await;
}

// ---------------------------------------------------------------------------------------------
// 8. The client connection limit.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_max_client_conn_gets_53300() {
    let toml = format!(
        "max_client_conn = 1\n{}",
        pgroute::demo::config_toml(cluster(), "127.0.0.1:0", USER, PASSWORD, PATIENT_MONITOR)
    );
    let proxy = common::start_proxy_toml(&toml);
    let conn = conn_str(proxy.port, USER, Some(PASSWORD), "postgres");
    let first = common::connect(&conn).await;
    first
        .simple_query("SELECT 1")
        .await
        .expect("the first client works");
    // Several times: the refusal must arrive whole, not as a reset connection.
    for attempt in 0..10 {
        let e = connect_error(&conn).await;
        let Some(db) = e.as_db_error() else {
            panic!("attempt {attempt}: expected SQLSTATE 53300, got: {e:?}");
        };
        assert_eq!(
            db.code(),
            &SqlState::TOO_MANY_CONNECTIONS,
            "attempt {attempt}"
        );
        assert_eq!(db.message(), "sorry, too many clients already");
    }
    first
        .simple_query("SELECT 1")
        .await
        .expect("the first client is unaffected");

    // The slot is freed when the first client leaves.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio_postgres::connect(&conn, NoTls).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "5 s after the first client left, a new one still gets: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// libpq (psql) asks for SSL first by default (`sslmode=prefer`) and, since CVE-2024-10977, shows
/// no error the server sends before that negotiation is over: PostgreSQL answers the SSLRequest
/// ("N") and reads the StartupMessage before it says "too many clients".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_over_max_client_conn_sees_too_many_clients() {
    let toml = format!(
        "max_client_conn = 1\n{}",
        pgroute::demo::config_toml(cluster(), "127.0.0.1:0", USER, PASSWORD, PATIENT_MONITOR)
    );
    let proxy = common::start_proxy_toml(&toml);
    let first = common::connect(&conn_str(proxy.port, USER, Some(PASSWORD), "postgres")).await;
    first
        .simple_query("SELECT 1")
        .await
        .expect("the first client works");
    let url = format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres",
        proxy.port
    );
    let (ok, _, stderr) = psql_url(&url, &["-c", "SELECT 1"]);
    assert!(!ok, "psql should be refused");
    assert!(
        stderr.contains("sorry, too many clients already"),
        "psql: {stderr}"
    );
}

/// The monitor marks a node down when one probe takes longer than ten check intervals (at
/// least 1 s). A primary that answers one probe late but serves sessions fine must not have
/// its writes refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_probe_does_not_refuse_writes() {
    // The monitor logs in as its own role, whose search_path finds this pg_is_in_recovery()
    // before pg_catalog's: on the primary, it sleeps once when told to.
    ensure_role("rt_probe", "probe-pw");
    on_primary(
        "CREATE SCHEMA rt_probe;
         CREATE TABLE rt_probe.stall (seconds float8 NOT NULL);
         INSERT INTO rt_probe.stall VALUES (0);
         CREATE FUNCTION rt_probe.pg_is_in_recovery() RETURNS boolean
             LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
             DECLARE pause float8;
             BEGIN
                 IF pg_is_in_recovery() THEN RETURN true; END IF;
                 WITH old AS (SELECT seconds FROM rt_probe.stall)
                 UPDATE rt_probe.stall SET seconds = 0 FROM old WHERE old.seconds > 0
                 RETURNING old.seconds INTO pause;
                 IF pause > 0 THEN PERFORM pg_sleep(pause); END IF;
                 RETURN false;
             END $$;
         GRANT USAGE ON SCHEMA rt_probe TO rt_probe;
         ALTER ROLE rt_probe SET search_path = rt_probe, pg_catalog;",
    );
    caught_up();
    let proxy = start_proxy(
        cluster(),
        "[monitor]\nuser = \"rt_probe\"\npassword = \"probe-pw\"\n",
    );
    let c = proxy.connect().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = c
        .batch_execute("CREATE TABLE IF NOT EXISTS rt_probe_writes (id int)")
        .await
    {
        assert!(Instant::now() < deadline, "no write works at all: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One probe of the primary takes 1.5 s; the sessions' own connections are unaffected.
    on_primary("UPDATE rt_probe.stall SET seconds = 1.5");
    let mut refused = Vec::new();
    let started = Instant::now();
    let mut id = 0;
    while started.elapsed() < Duration::from_secs(3) {
        id += 1;
        if let Err(e) = c
            .execute("INSERT INTO rt_probe_writes VALUES ($1)", &[&id])
            .await
        {
            let why = e.as_db_error().map_or(e.to_string(), |d| {
                format!("{} {}", d.code().code(), d.message())
            });
            refused.push(format!("{:?}: {why}", started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        on_primary("SELECT seconds FROM rt_probe.stall"),
        "0",
        "the monitor should have run into the slow probe"
    );
    assert!(
        refused.is_empty(),
        "{} of {id} writes refused while the primary served: {refused:?}",
        refused.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 9. psql.

#[test]
fn psql_runs_multi_statement_commands_and_scripts() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let (ok, out, err) = psql(&proxy, &["-c", "SELECT 1; SELECT 2"]);
    assert!(ok, "{err}");
    assert_eq!(out, "1\n2");
    let (ok, out, err) = psql(
        &proxy,
        &["-c", "SELECT 1 AS a, 'x' AS b; SELECT pg_is_in_recovery()"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "1|x\nt");

    let dir = std::env::temp_dir();
    let script = |name: &str, body: &str| {
        let path = dir.join(format!("{name}-{}.sql", std::process::id()));
        std::fs::write(&path, body).expect("write script");
        path
    };
    let p = primary_port();
    let writes = script(
        "rt_psql_writes",
        &format!(
            "CREATE TABLE rt_psql_script (id int PRIMARY KEY, v text);
BEGIN;
INSERT INTO rt_psql_script VALUES (1, 'a'), (2, 'b');
SELECT count(*), inet_server_port() = {p} FROM rt_psql_script;
UPDATE rt_psql_script SET v = 'c' WHERE id = 2;
COMMIT;
SELECT 'committed';
"
        ),
    );
    let (ok, out, err) = psql(
        &proxy,
        &["-v", "ON_ERROR_STOP=1", "-f", writes.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "2|t\ncommitted");
    caught_up();

    let reads = script(
        "rt_psql_reads",
        "SELECT string_agg(v, ',' ORDER BY id) FROM rt_psql_script;\nSELECT pg_is_in_recovery();\n",
    );
    let (ok, out, err) = psql(
        &proxy,
        &["-v", "ON_ERROR_STOP=1", "-f", reads.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "a,c\nt");

    // A script whose transaction fails goes on after its ROLLBACK.
    let failing = script(
        "rt_psql_failing",
        "BEGIN;
INSERT INTO rt_psql_script VALUES (3, 'd');
SELECT 1/0;
SELECT 'not run';
ROLLBACK;
SELECT count(*) FROM rt_psql_script WHERE id = 3;
",
    );
    let (ok, out, err) = psql(&proxy, &["-f", failing.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out, "0");
    assert!(err.contains("division by zero"), "{err}");
    assert!(err.contains("current transaction is aborted"), "{err}");
    assert_eq!(
        on_primary("SELECT count(*) FROM rt_psql_script WHERE id = 3"),
        "0"
    );

    for path in [writes, reads, failing] {
        let _ = std::fs::remove_file(path);
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Replicas going down.

/// `n` reads, in turn on a new connection, on `long`, and by `prepared` (prepared on `long`
/// while every node was up, so it must follow to whichever node is left); every one must
/// succeed. Returns the (port, in recovery) each ran on.
async fn reads(
    proxy: &TestProxy,
    long: &Client,
    prepared: &tokio_postgres::Statement,
    n: usize,
) -> Vec<(i32, bool)> {
    let mut ran_on = Vec::with_capacity(n);
    for i in 0..n {
        let at = match i % 3 {
            0 => server_of_simple(&proxy.connect().await).await,
            1 => server_of_simple(long).await,
            _ => {
                let row = long
                    .query_one(prepared, &[])
                    .await
                    .unwrap_or_else(|e| panic!("prepared read {i}: {e}"));
                (row.get(0), row.get(1))
            }
        };
        ran_on.push(at);
    }
    ran_on
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_replicas_going_down() {
    let own: Cluster = tokio::task::spawn_blocking(common::own_cluster)
        .await
        .expect("start own cluster");
    let port = |n: usize| i32::from(own.port(n));
    let proxy = start_proxy(&own, PATIENT_MONITOR);
    let long = proxy.connect().await;
    let prepared = long
        .prepare("SELECT inet_server_port(), pg_is_in_recovery()")
        .await
        .expect("prepare");

    let ran_on: BTreeSet<_> = reads(&proxy, &long, &prepared, 20)
        .await
        .into_iter()
        .collect();
    assert_eq!(
        ran_on,
        [(port(1), true), (port(2), true)].into(),
        "all nodes up"
    );

    own.stop(1, "immediate").expect("stop replica 1");
    let ran_on: BTreeSet<_> = reads(&proxy, &long, &prepared, 20)
        .await
        .into_iter()
        .collect();
    assert_eq!(ran_on, [(port(2), true)].into(), "replica 1 down");

    own.stop(2, "immediate").expect("stop replica 2");
    let ran_on: BTreeSet<_> = reads(&proxy, &long, &prepared, 20)
        .await
        .into_iter()
        .collect();
    assert_eq!(ran_on, [(port(0), false)].into(), "both replicas down");

    // A replica that comes back takes reads again once its backoff has passed.
    own.start_node(1).expect("start replica 1");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ran_on = reads(&proxy, &long, &prepared, 4).await;
        if ran_on.contains(&(port(1), true)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "15 s after replica 1 restarted, reads still run on {ran_on:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

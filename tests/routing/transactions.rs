//! Transactions stay on the primary: explicit ones, an extended batch's implicit one, and a failed
//! one until its ROLLBACK.

use super::*;

/// Where a statement ran: port, in recovery, backend.
const WHERE_SQL: &str = "SELECT inet_server_port(), pg_is_in_recovery(), pg_backend_pid()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_transactions_stay_on_primary() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let mut c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_txn (id int PRIMARY KEY)")
        .await
        .expect("CREATE TABLE");
    for (i, begin) in [
        "BEGIN",
        "START TRANSACTION",
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "begin transaction",
    ]
    .into_iter()
    .enumerate()
    {
        one_explicit_transaction(&c, i, begin).await;
    }
    // tokio-postgres's own transaction API (BEGIN, extended-protocol statements, COMMIT).
    let tx = c.transaction().await.expect("BEGIN");
    let row = tx
        .query_one(WHERE_SQL, &[])
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

/// Transaction `i`, opened by `begin`: a read on the primary, an insert of `i`, and every
/// statement after them (extended or simple) on the same server connection; committed.
async fn one_explicit_transaction(c: &Client, i: usize, begin: &str) {
    c.batch_execute(begin)
        .await
        .unwrap_or_else(|e| panic!("{begin}: {e}"));
    let first = c
        .query_one(WHERE_SQL, &[])
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
            .query_one(WHERE_SQL, &[])
            .await
            .expect("read in transaction");
        assert_eq!(
            row.get::<_, i32>(2),
            pid,
            "every statement after {begin} on one connection"
        );
    }
    let rows = simple_rows(c, "SELECT pg_backend_pid()").await;
    assert_eq!(
        rows[0][0],
        Some(pid.to_string()),
        "simple Query after {begin}"
    );
    c.batch_execute("COMMIT").await.expect("COMMIT");
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

    failed_transaction_through_the_extended_protocol(&c).await;
    failed_transaction_in_simple_queries(&c).await;
}

/// An error inside the transaction, then 25P02 for extended and simple statements until the
/// ROLLBACK, after which reads go to the replicas again.
async fn failed_transaction_through_the_extended_protocol(c: &Client) {
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
    let (port, in_recovery) = server_of(c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "a read after ROLLBACK ran on {port}"
    );
}

/// Simple protocol only, the error in the same Query as the BEGIN: 25P02 with PostgreSQL's
/// message until the ROLLBACK, after which reads go to the replicas again.
async fn failed_transaction_in_simple_queries(c: &Client) {
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
    let (port, in_recovery) = server_of_simple(c).await;
    assert!(
        replica_ports().contains(&port) && in_recovery,
        "a read after ROLLBACK ran on {port}"
    );
}

//! A client that goes away mid-transaction: its transaction is rolled back on the primary.

use super::*;

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

//! Reads land on the replicas, spread over both, whichever protocol and connection they come
//! through.

use super::*;

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

//! CancelRequest: reaches the server connection running the statement, on a replica or the primary,
//! and is harmless for an idle session.

use super::*;

/// Which node (0 primary, 1, 2 replicas) runs a statement containing `marker` right now.
fn running_on(marker: &str) -> Vec<usize> {
    (0..3)
        .filter(|&n| {
            let sql = format!(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
            );
            cluster().psql(n, &sql).map(|c| c != "0").unwrap_or(false)
        })
        .collect()
}

/// Starts `run` (a sleep marked with `marker`), cancels it once it has run for 300 ms and shows
/// in `pg_stat_activity`, and returns (its error, time from cancel to error, nodes it ran on).
async fn cancel_after_300ms(
    token: tokio_postgres::CancelToken,
    run: impl std::future::Future<Output = Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>>,
    marker: &str,
) -> (tokio_postgres::Error, Duration, Vec<usize>) {
    let marker = marker.to_owned();
    let canceller = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let nodes = loop {
            let m = marker.clone();
            let nodes = tokio::task::spawn_blocking(move || running_on(&m))
                .await
                .expect("pg_stat_activity");
            if !nodes.is_empty() || Instant::now() > deadline {
                break nodes;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let at = Instant::now();
        token.cancel_query(NoTls).await.expect("send CancelRequest");
        (at, nodes)
    };
    let started = Instant::now();
    let (result, (cancelled_at, nodes)) = tokio::join!(
        async { tokio::time::timeout(Duration::from_secs(12), run).await },
        canceller
    );
    let err = result
        .expect("the query ended")
        .expect_err("the query should be cancelled");
    let took = cancelled_at.elapsed();
    assert!(started.elapsed() < Duration::from_secs(9), "it slept on");
    (err, took, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_read_on_a_replica() {
    let proxy = start("");
    let client = proxy.connect().await;
    let sql = "SELECT pg_sleep(10) /* proto-cancel-replica */";
    let (err, took, nodes) = cancel_after_300ms(
        client.cancel_token(),
        client.simple_query(sql),
        "proto-cancel-replica",
    )
    .await;
    assert_eq!(code_of(&err), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        took < Duration::from_millis(1500),
        "cancelled after {took:?}"
    );
    assert!(
        nodes.len() == 1 && nodes[0] != 0,
        "the sleep ran on a replica: {nodes:?}"
    );
    let one = simple_value(&client, "SELECT 1").await;
    assert_eq!(one, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_statement_in_a_transaction_on_the_primary() {
    let proxy = start("");
    let mut client = proxy.connect().await;
    let tx = client.transaction().await.expect("BEGIN");
    let sql = "SELECT pg_sleep(10) /* proto-cancel-primary */";
    let (err, took, nodes) = cancel_after_300ms(
        tx.cancel_token(),
        tx.simple_query(sql),
        "proto-cancel-primary",
    )
    .await;
    assert_eq!(code_of(&err), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        took < Duration::from_millis(1500),
        "cancelled after {took:?}"
    );
    assert_eq!(nodes, [0], "the sleep ran on the primary");
    let err = tx
        .query_one("SELECT 1", &[])
        .await
        .expect_err("transaction failed");
    assert_eq!(code_of(&err), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    tx.rollback().await.expect("ROLLBACK");
    assert_eq!(simple_value(&client, "SELECT 2").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_for_an_idle_session_is_harmless() {
    let proxy = start("");
    let client = proxy.connect().await;
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    for _ in 0..3 {
        client
            .cancel_token()
            .cancel_query(NoTls)
            .await
            .expect("cancel");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    let rows = simple_rows(&client, "SELECT pg_sleep(0.5), 'slept'").await;
    assert_eq!(rows[0][1].as_deref(), Some("slept"));
    assert!(began.elapsed() >= Duration::from_millis(450));
    let row = client.query_one("SELECT 3", &[]).await.expect("extended");
    assert_eq!(row.get::<_, i32>(0), 3);
    // A cancel with a wrong key is ignored too.
    let other = proxy.connect().await;
    let token = other.cancel_token();
    drop(other);
    token
        .cancel_query(NoTls)
        .await
        .expect("cancel with a stale key");
    assert_eq!(simple_value(&client, "SELECT 4").await, "4");
}

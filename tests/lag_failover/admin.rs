//! The `[admin]` endpoint while the cluster changes: lag and the "replicas lagging" reason in
//! `/metrics` while both replicas' replay is paused, and `/ready` turning 503 while the primary
//! is stopped and 200 once it is back.

use super::lag::pause_both_replicas;
use super::*;
use common::scrape::{self, Metrics};

const ADMIN: &str = "max_time = \"300ms\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n";

/// Polls `/ready` until it answers `status`, at most `within`; returns the body.
async fn ready_becomes(proxy: &common::TestProxy, status: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (got, _, body) = scrape::get(proxy, "/ready").await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready stayed {got} ({body:?}), not {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replicas_show_in_the_metrics_and_their_reads_reason() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(ADMIN));
    let client = proxy.connect().await;
    wait_reads_on_both(
        &client,
        "reads on both replicas at first",
        port(&cluster, 1),
        port(&cluster, 2),
    )
    .await;
    let writer = pause_both_replicas(&cluster).await;
    let lagging = |m: &Metrics, node: &str| m.value("pgroute_node_lagging", &[("node", node)]);
    let m = scrape::scrape_until(&proxy, "both replicas lagging", SETTLE, |m| {
        lagging(m, "node1") == 1.0 && lagging(m, "node2") == 1.0
    })
    .await;
    for node in ["node1", "node2"] {
        let bytes = m.value("pgroute_node_lag_bytes", &[("node", node)]);
        let secs = m.value("pgroute_node_lag_seconds", &[("node", node)]);
        assert!(bytes > 0.0, "{node} is behind in bytes: {bytes}");
        assert!(secs >= 0.3, "{node} is behind over max_time: {secs}");
    }
    assert_eq!(m.value("pgroute_node_lag_bytes", &[("node", "node0")]), 0.0);
    let before = m.routed("node0", "replicas lagging");
    for _ in 0..3 {
        let (ran_on, in_recovery) = read(&client).await;
        assert_eq!(
            (ran_on, in_recovery),
            (port(&cluster, 0), false),
            "reads on the primary"
        );
    }
    let after = scrape::scrape(&proxy).await;
    assert_eq!(after.routed("node0", "replicas lagging") - before, 3.0);
    writer.stop().await;
    for node in [1, 2] {
        on_node(&cluster, node, "SELECT pg_wal_replay_resume()");
    }
    scrape::scrape_until(&proxy, "replicas caught up", SETTLE, |m| {
        lagging(m, "node1") == 0.0 && lagging(m, "node2") == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_the_primary_is_stopped_and_health_stays_200() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(ADMIN));
    ready_becomes(&proxy, 200, SETTLE).await;

    stop(&cluster, 0);
    let why = ready_becomes(&proxy, 503, SETTLE).await;
    assert!(why.starts_with("not ready: "), "{why}");
    let (status, _, _) = scrape::get(&proxy, "/health").await;
    assert_eq!(status, 200, "the process still runs");
    let m = scrape::scrape(&proxy).await;
    assert_eq!(m.value("pgroute_node_up", &[("node", "node0")]), 0.0);

    blocking(|| cluster.start_node(0)).expect("start the primary again");
    ready_becomes(&proxy, 200, Duration::from_secs(15)).await;
    let client = proxy.connect().await;
    // Writes go through again, to the primary.
    prepare_writes(&cluster, &client).await;
}

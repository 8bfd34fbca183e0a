//! Replicas going down: reads go on, on whatever is left.

use pgroute::testbed::Cluster;

use super::*;

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

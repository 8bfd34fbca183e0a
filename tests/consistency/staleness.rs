//! A staleness budget per statement or per session keeps reads off a replica that lags more.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staleness_budget_keeps_reads_off_a_replica_that_lags_more() {
    const READS: usize = 60;
    common::init_tracing();
    let cluster = own_cluster();
    let table = "ryw_budget";
    create_table(&cluster, table);
    cluster.set_apply_delay(1, "1s").expect("delay node 1");
    let proxy = start_proxy(&cluster, &config("read_your_writes = \"lsn\""));
    let slow = port(&cluster, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&proxy, table, 0, 100_000, stop.clone());
    // Node 1 now falls further behind with every write; give the monitor time to see it.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let client = proxy.connect().await;
    let mut unhinted = Vec::new();
    for _ in 0..READS {
        unhinted.push(server_port(&client, "").await);
    }
    let mut hinted = Vec::new();
    for _ in 0..READS {
        hinted.push(server_port(&client, "/* pgroute.max_lag=100ms */ ").await);
    }
    let session = proxy.connect().await;
    simple_exec(&session, "SET pgroute.max_lag = '100ms'").await;
    let mut set = Vec::new();
    for _ in 0..READS {
        set.push(server_port(&session, "").await);
    }
    simple_exec(&session, "RESET pgroute.max_lag").await;
    let mut reset = Vec::new();
    for _ in 0..READS {
        reset.push(server_port(&session, "").await);
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer");

    assert!(written > 50, "the writer made only {written} writes");
    assert!(
        unhinted.contains(&slow) && reset.contains(&slow),
        "control: without a budget, reads also land on node 1 ({slow}, 1 s behind): \
         {unhinted:?} / after RESET: {reset:?}"
    );
    assert!(
        !hinted.contains(&slow),
        "/* pgroute.max_lag=100ms */ reads must not run on node 1 ({slow}, 1 s behind): {hinted:?}"
    );
    assert!(
        !set.contains(&slow),
        "after SET pgroute.max_lag = '100ms', reads must not run on node 1 ({slow}): {set:?}"
    );
}

/// `/* pgroute.max_lag=… */` through the extended protocol: with both replicas of the shared
/// cluster 300 ms behind a stream of writes, a 100 ms budget leaves only the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staleness_budget_hint_applies_through_the_extended_protocol() {
    const READS: usize = 20;
    let cluster = delayed_cluster();
    let table = "ryw_budget_extended";
    create_table(cluster, table);
    let proxy = start_proxy(cluster, &config("read_your_writes = \"lsn\""));
    let primary = port(cluster, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&proxy, table, 0, 100_000, stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;

    let sql = "/* pgroute.max_lag=100ms */ SELECT inet_server_port()";
    let client = proxy.connect().await;
    let mut simple = Vec::new();
    for _ in 0..READS {
        simple.push(server_port(&client, "/* pgroute.max_lag=100ms */ ").await);
    }
    // A connection of its own: see the pipelining test below for why.
    let client = proxy.connect().await;
    let mut extended = Vec::new();
    for _ in 0..READS {
        let row = client.query_one(sql, &[]).await.expect(sql);
        extended.push(row.get::<_, i32>(0));
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(
        simple.iter().all(|p| *p == primary),
        "control (simple protocol): with both replicas {DELAY} behind, a 100ms budget leaves \
         only the primary {primary}: {simple:?}"
    );
    assert!(
        extended.iter().all(|p| *p == primary),
        "the same hinted statement through the extended protocol must also run on the primary \
         {primary}: {extended:?}"
    );
}

//! The primary changes: writes follow a promoted replica and fail fast while there is none, a
//! primary on an older timeline is fenced, and `auto_promote` promotes a replica.

use super::*;
use pgroute::testbed::ClusterOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promoted_replica_and_fail_fast_while_there_is_no_primary() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(""));
    let client = proxy.connect().await;
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    prepare_writes(&cluster, &client).await;

    stop(&cluster, 0);
    // At once, and after the monitor has seen the primary go: each write fails fast with a
    // connection (08) or "cannot connect now" (57) error, on the same client connection.
    for attempt in 0..6 {
        let began = Instant::now();
        let e = try_write(&client)
            .await
            .expect_err("a write without a primary must fail");
        let took = began.elapsed();
        let code = sqlstate(&e).unwrap_or("").to_owned();
        assert!(
            code.starts_with("08") || code.starts_with("57"),
            "attempt {attempt}: SQLSTATE {code:?}: {e:?}"
        );
        assert!(
            took < Duration::from_secs(1),
            "attempt {attempt}: failed after {took:?}"
        );
        // Reads keep working on the replicas.
        let (ran_on, in_recovery) = read(&client).await;
        assert!(
            in_recovery && [p1, p2].contains(&ran_on),
            "read on {ran_on}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    blocking(|| cluster.promote(1)).expect("promote node 1");
    let (ran_on, took) = poll_until("a write to succeed after the promotion", SETTLE, || async {
        try_write(&client).await.map_err(|e| format!("{e:?}"))
    })
    .await;
    assert_eq!(ran_on, p1, "writes run on the promoted node 1");
    assert!(
        took < Duration::from_secs(3),
        "writes resumed after {took:?}"
    );
    for _ in 0..5 {
        assert_eq!(try_write(&client).await.expect("write"), p1);
    }
}

/// `SHOW pgroute.nodes`' row for `node` (named `node<i>` by the test config).
async fn node_row(client: &Client, node: usize) -> BTreeMap<String, String> {
    let name = format!("node{node}");
    show_nodes(client)
        .await
        .into_iter()
        .find(|n| n["node"] == name)
        .unwrap_or_else(|| panic!("{name} not in SHOW pgroute.nodes"))
}

fn rows_on(cluster: &Cluster, node: usize) -> u64 {
    on_node(cluster, node, "SELECT count(*) FROM routed_writes")
        .parse()
        .expect("count")
}

/// Issue 13: the primary stops, a replica is promoted (and the other replica repointed to it,
/// as a manager does), and the old primary is started again as a primary, on its old
/// timeline. pgroute fences it: every write goes to the promoted node, none to the old one,
/// reads go on on the healthy replica, and the new timeline is reported at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_started_again_as_a_primary_is_fenced() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(""));
    let client = proxy.connect().await;
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    prepare_writes(&cluster, &client).await;
    assert_eq!(node_row(&client, 0).await["timeline"], "1");
    let on_old_primary = rows_on(&cluster, 0);

    stop(&cluster, 0);
    blocking(|| cluster.promote(1)).expect("promote node 1");
    blocking(|| cluster.follow(2, 1)).expect("repoint node 2 at node 1");
    let (ran_on, _) = poll_until("a write on the promoted node", SETTLE, || async {
        try_write(&client).await.map_err(|e| format!("{e:?}"))
    })
    .await;
    assert_eq!(ran_on, p1);
    // The current timeline at once: not the one of the last checkpoint (which the promotion
    // only requests, and which pgroute does not force).
    let checkpoint_tli = on_node(
        &cluster,
        1,
        "SELECT timeline_id FROM pg_control_checkpoint()",
    );
    let row = node_row(&client, 1).await;
    assert_eq!(
        (row["role"].as_str(), row["timeline"].as_str()),
        ("primary", "2"),
        "right after the promotion (last checkpoint's timeline: {checkpoint_tli}): {row:?}"
    );
    follows_timeline(&client, 2, "2").await;

    blocking(|| cluster.start_node(0)).expect("start the old primary again");
    assert_eq!(
        on_node(&cluster, 0, "SELECT pg_is_in_recovery()"),
        "f",
        "the old primary is back as a primary"
    );
    poll_until("node 0 to be shown fenced", SETTLE, || async {
        let row = node_row(&client, 0).await;
        (row["role"] == "fenced" && row["timeline"] == "1" && row["takes_reads"] == "false")
            .then_some(())
            .ok_or(row)
    })
    .await;
    let on_new_primary = rows_on(&cluster, 1);
    for i in 0..30 {
        assert_eq!(try_write(&client).await.expect("write"), p1, "write {i}");
        // Reads never fail meanwhile, and run on the healthy replica.
        assert_eq!(read(&client).await, (p2, true), "read {i}");
    }
    assert_eq!(rows_on(&cluster, 1), on_new_primary + 30);
    assert_eq!(
        rows_on(&cluster, 0),
        on_old_primary,
        "not one write landed on the fenced node"
    );
    let row = node_row(&client, 1).await;
    assert_eq!(
        (row["role"].as_str(), row["timeline"].as_str()),
        ("primary", "2")
    );
}

/// A replica promoted while the primary still runs starts a newer timeline: it takes the
/// writes, the old primary is fenced (a transaction open there gets FATAL 57P03 at its next
/// statement, and its session ends), and the replica still streaming the old timeline (from the fenced node)
/// takes no reads, which go to the new primary instead of failing. The fenced node does not
/// take the writes back when the new primary goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_promoted_beside_a_running_primary_takes_the_writes() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(""));
    let client = proxy.connect().await;
    let p2 = port(&cluster, 2);
    prepare_writes(&cluster, &client).await;
    let on_old_primary = rows_on(&cluster, 0);
    // A transaction open on node 0 when it is fenced.
    let in_txn = proxy.connect().await;
    in_txn
        .batch_execute("BEGIN; INSERT INTO routed_writes (v) VALUES (2)")
        .await
        .expect("a transaction on node 0");

    blocking(|| cluster.promote(2)).expect("promote node 2");
    let (ran_on, _) = poll_until("writes to move to node 2", SETTLE, || async {
        match try_write(&client).await {
            Ok(p) if p == p2 => Ok(p),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(ran_on, p2);
    let rows = show_nodes(&client).await;
    assert_eq!(rows[0]["role"], "fenced", "{rows:?}");
    assert_eq!(
        (
            rows[1]["role"].as_str(),
            rows[1]["timeline"].as_str(),
            rows[1]["takes_reads"].as_str()
        ),
        ("replica", "1", "false"),
        "node 1 still follows node 0: {rows:?}"
    );
    assert_eq!(rows[2]["timeline"], "2", "{rows:?}");
    for i in 0..10 {
        assert_eq!(try_write(&client).await.expect("write"), p2, "write {i}");
        assert_eq!(
            read(&client).await,
            (p2, false),
            "read {i}: on the new primary"
        );
    }
    assert_eq!(
        rows_on(&cluster, 0),
        on_old_primary,
        "nothing on the fenced node"
    );
    // The transaction's next statement gets FATAL 57P03 and the session ends (as when its
    // server connection is lost): the client is not left holding a transaction it can
    // neither use nor end.
    let e = in_txn
        .batch_execute("INSERT INTO routed_writes (v) VALUES (3)")
        .await
        .expect_err("nothing more goes to the fenced node, in a transaction either");
    assert_eq!(sqlstate(&e), Some("57P03"), "{e:?}");
    assert!(format!("{e:?}").contains("Fatal"), "{e:?}");
    let e = in_txn
        .batch_execute("COMMIT")
        .await
        .expect_err("session ended");
    assert!(e.is_closed() || sqlstate(&e).is_none(), "{e:?}");
    drop(in_txn);
    assert_eq!(
        rows_on(&cluster, 0),
        on_old_primary,
        "the transaction never committed"
    );

    stop(&cluster, 2);
    let (e, _) = poll_until("writes to be refused", SETTLE, || async {
        match try_write(&client).await {
            Err(e) => Ok(e),
            Ok(ran_on) => Err(ran_on),
        }
    })
    .await;
    assert_eq!(sqlstate(&e), Some("57P03"), "{e:?}");
    for _ in 0..3 {
        let e = try_write(&client)
            .await
            .expect_err("no write goes to the fenced node");
        assert_eq!(sqlstate(&e), Some("57P03"), "{e:?}");
    }
    assert_eq!(
        rows_on(&cluster, 0),
        on_old_primary,
        "nothing on the fenced node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_promote_promotes_a_replica_after_promote_after() {
    let cluster = new_cluster();
    let proxy = start_proxy(
        &cluster,
        &config("\n[failover]\nauto_promote = true\npromote_after = \"1s\""),
    );
    let client = proxy.connect().await;
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    prepare_writes(&cluster, &client).await;

    let stopping = Instant::now();
    stop(&cluster, 0);
    let (ran_on, _) = poll_until(
        "a write to succeed after auto-promotion",
        Duration::from_secs(10),
        || async { try_write(&client).await.map_err(|e| format!("{e:?}")) },
    )
    .await;
    let after = stopping.elapsed();
    assert!(
        after >= Duration::from_secs(1),
        "promoted {after:?} after the primary stopped, before promote_after"
    );
    assert!(
        after < Duration::from_secs(5),
        "promoted only {after:?} after the primary stopped"
    );
    let promoted = if ran_on == p1 {
        1
    } else {
        assert_eq!(ran_on, p2, "the write ran on a replica that was promoted");
        2
    };
    let other = 3 - promoted;
    assert_eq!(
        on_node(&cluster, promoted, "SELECT pg_is_in_recovery()"),
        "f"
    );
    assert_eq!(
        on_node(&cluster, other, "SELECT pg_is_in_recovery()"),
        "t",
        "only one replica is promoted"
    );
    for _ in 0..5 {
        assert_eq!(try_write(&client).await.expect("write"), ran_on);
    }
}

/// Two replicas promoted at once both start timeline 2: pgroute cannot tell which one is
/// current, so it refuses writes, naming both, while reads go on on the replica that follows
/// one of them, for longer than `lag.max_time`; once one is gone, the other takes the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_primaries_on_the_same_timeline_refuse_writes_and_reads_go_on() {
    common::init_tracing();
    let cluster = Cluster::start(ClusterOptions {
        replicas: 3,
        ..ClusterOptions::default()
    })
    .expect("start a cluster with three replicas");
    let proxy = start_proxy(&cluster, &config("max_time = \"300ms\""));
    let client = proxy.connect().await;
    let (p1, p3) = (port(&cluster, 1), port(&cluster, 3));
    prepare_writes(&cluster, &client).await;

    stop(&cluster, 0);
    blocking(|| cluster.promote(1)).expect("promote node 1");
    blocking(|| cluster.promote(2)).expect("promote node 2");
    blocking(|| cluster.follow(3, 1)).expect("repoint node 3 at node 1");
    let (e, _) = poll_until("writes to be refused", SETTLE, || async {
        match try_write(&client).await {
            Err(e) => Ok(e),
            Ok(ran_on) => Err(ran_on),
        }
    })
    .await;
    assert_eq!(sqlstate(&e), Some("57P03"), "{e:?}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("node1") && message.contains("node2"),
        "the error names both primaries: {message:?}"
    );
    let rows = show_nodes(&client).await;
    for node in [1, 2] {
        assert_eq!(
            (rows[node]["role"].as_str(), rows[node]["timeline"].as_str()),
            ("primary", "2"),
            "{rows:?}"
        );
    }
    follows_timeline(&client, 3, "2").await;
    // Reads go on on node 3 for well over lag.max_time, and writes stay refused.
    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            read(&client).await,
            (p3, true),
            "a read during the conflict"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = try_write(&client).await.expect_err("writes stay refused");
    assert_eq!(sqlstate(&e), Some("57P03"), "{e:?}");

    stop(&cluster, 2);
    let (ran_on, _) = poll_until("writes to work again", SETTLE, || async {
        try_write(&client).await.map_err(|e| format!("{e:?}"))
    })
    .await;
    assert_eq!(ran_on, p1, "writes run on node 1 once node 2 is gone");
}

/// Waits until replica `node` reports `timeline` in `SHOW pgroute.nodes` and takes reads.
async fn follows_timeline(client: &Client, node: usize, timeline: &str) {
    poll_until(
        &format!("node {node} to follow timeline {timeline}"),
        SETTLE,
        || async {
            let row = node_row(client, node).await;
            (row["timeline"] == timeline && row["takes_reads"] == "true")
                .then_some(())
                .ok_or(row)
        },
    )
    .await;
}

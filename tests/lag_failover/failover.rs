//! The primary changes: writes follow a promoted replica and fail fast while there is none, two
//! primaries refuse writes, and `auto_promote` promotes a replica.

use super::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_primaries_refuse_writes_until_one_is_gone() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(""));
    let client = proxy.connect().await;
    let (p0, p1) = (port(&cluster, 0), port(&cluster, 1));
    prepare_writes(&cluster, &client).await;

    blocking(|| cluster.promote(2)).expect("promote node 2");
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
        message.contains("node0") && message.contains("node2"),
        "the error names both primaries: {message:?}"
    );
    for _ in 0..3 {
        let e = try_write(&client).await.expect_err("writes stay refused");
        assert_eq!(sqlstate(&e), Some("57P03"), "{e:?}");
    }
    // Reads go on, to the one remaining replica.
    for _ in 0..10 {
        assert_eq!(read(&client).await, (p1, true), "a read during split brain");
    }

    stop(&cluster, 2);
    let (ran_on, _) = poll_until("writes to work again", SETTLE, || async {
        try_write(&client).await.map_err(|e| format!("{e:?}"))
    })
    .await;
    assert_eq!(ran_on, p0, "writes run on node 0 once node 2 is gone");
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

//! Lag limits: a replica behind in bytes or time takes no reads until it catches up, each
//! `when_all_lagging` policy routes reads its way, and replicas that keep up with a lightly written
//! primary keep taking reads.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replica_takes_no_reads_until_replay_resumes() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config("max_time = \"300ms\""));
    let client = proxy.connect().await;
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    wait_reads_on_both(&client, "reads on both replicas at first", p1, p2).await;

    on_node(&cluster, 1, "SELECT pg_wal_replay_pause()");
    let writer = Writer::start(&cluster).await;
    let writes_began = Instant::now();
    // The replica's time lag crosses 300 ms about 300 ms after the first unreplayed write; the
    // monitor ticks every 50 ms.
    let took = wait_reads_on(
        &client,
        "reads to leave the paused replica 1",
        &[p2],
        false,
        Duration::from_secs(3),
    )
    .await;
    let since_writes = writes_began.elapsed();
    assert!(
        since_writes < Duration::from_millis(300 + 1200),
        "replica 1 was still taking reads {since_writes:?} after the writes began (polled {took:?})"
    );
    assert!(behind_primary(&cluster, 1), "replica 1 really is behind");
    // While writes go on, replica 1 stays out and replica 2 (not the primary) takes every read.
    for _ in 0..5 {
        let ran_on = tally(&client, 10).await;
        assert_eq!(
            ran_on,
            BTreeMap::from([(p2, 10)]),
            "all reads on replica 2 ({p2}) while replica 1 ({p1}) is paused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The monitor's view, as pgroute shows it: replica 1 lags and takes no reads.
    let nodes = show_nodes(&client).await;
    assert_eq!(nodes[0]["role"], "primary", "{nodes:?}");
    assert_eq!(nodes[1]["role"], "replica", "{nodes:?}");
    assert_eq!(nodes[1]["takes_reads"], "false", "{nodes:?}");
    let lag_ms: u64 = nodes[1]["lag_ms"].parse().expect("lag_ms");
    assert!(lag_ms >= 300, "replica 1 lags over max_time: {nodes:?}");
    assert_eq!(nodes[2]["takes_reads"], "true", "{nodes:?}");
    let rows = writer.stop().await;
    assert!(rows > 10, "the writer wrote {rows} rows");

    on_node(&cluster, 1, "SELECT pg_wal_replay_resume()");
    wait_reads_on_both(
        &client,
        "reads on both replicas after replay resumed",
        p1,
        p2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_delay_is_time_lag_and_an_idle_caught_up_replica_has_none() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config("max_time = \"500ms\""));
    let client = proxy.connect().await;
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    wait_reads_on_both(&client, "reads on both replicas at first", p1, p2).await;

    blocking(|| cluster.set_apply_delay(1, "2s")).expect("set apply delay");
    let writer = Writer::start(&cluster).await;
    wait_reads_on(
        &client,
        "reads to leave replica 1, which applies commits 2 s late",
        &[p2],
        false,
        Duration::from_secs(3),
    )
    .await;
    // A second and a half of continuous writes: replica 2 keeps every read.
    for _ in 0..10 {
        let ran_on = tally(&client, 10).await;
        assert_eq!(
            ran_on,
            BTreeMap::from([(p2, 10)]),
            "all reads on replica 2 ({p2}) while replica 1 ({p1}) applies 2 s late"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    writer.stop().await;
    let last_write = Instant::now();

    // Once replica 1 has applied the last commit (2 s after it), it takes reads again.
    caught_up(&cluster);
    wait_reads_on_both(&client, "reads back on replica 1 once it caught up", p1, p2).await;
    // Idle for longer: the last commit is now many times max_time old, but a replica that has
    // replayed everything has no lag.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_for = last_write.elapsed();
    assert!(idle_for > Duration::from_secs(3), "idle for {idle_for:?}");
    let ran_on = tally(&client, 20).await;
    assert_eq!(
        ran_on.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([p1, p2]),
        "reads on both replicas after {idle_for:?} without a write: {ran_on:?}"
    );
    let delay = on_node(&cluster, 1, "SHOW recovery_min_apply_delay");
    assert_eq!(delay, "2s", "replica 1 still applies late");
}

/// Pauses replica 1, writes for a while, pauses replica 2, and keeps writing: both replicas lag,
/// replica 1 further. Returns the writer, still running.
pub(super) async fn pause_both_replicas(cluster: &Cluster) -> Writer {
    on_node(cluster, 1, "SELECT pg_wal_replay_pause()");
    let writer = Writer::start(cluster).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    on_node(cluster, 2, "SELECT pg_wal_replay_pause()");
    // Both pauses take effect before the next record: wait for the state to say so.
    let paused = "SELECT pg_get_wal_replay_pause_state()";
    for node in [1, 2] {
        poll_until("replay paused", SETTLE, || async {
            let state = on_node(cluster, node, paused);
            if state == "paused" {
                Ok(())
            } else {
                Err((node, state))
            }
        })
        .await;
    }
    let (lsn1, lsn2) = (replay_lsn(cluster, 1), replay_lsn(cluster, 2));
    assert!(
        lsn_before(cluster, &lsn1, &lsn2),
        "replica 1 ({lsn1}) is further behind than replica 2 ({lsn2})"
    );
    writer
}

/// The three `lag.when_all_lagging` policies, side by side: three pgroutes in front of the same
/// cluster while both replicas lag, replica 1 further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_all_replicas_lag_each_policy_routes_reads_its_way() {
    let cluster = new_cluster();
    let policy = |name: &str| {
        config(&format!(
            "max_time = \"300ms\"\nwhen_all_lagging = \"{name}\""
        ))
    };
    let default_proxy = start_proxy(&cluster, &config("max_time = \"300ms\""));
    let error_proxy = start_proxy(&cluster, &policy("error"));
    let least_lagged_proxy = start_proxy(&cluster, &policy("least_lagged"));
    let (p0, p2) = (port(&cluster, 0), port(&cluster, 2));
    let to_primary = default_proxy.connect().await;
    let refusing = error_proxy.connect().await;
    let least_lagged = least_lagged_proxy.connect().await;
    let writer = pause_both_replicas(&cluster).await;

    error_policy_refuses_reads(&refusing, p0).await;
    // "least_lagged": every read on replica 2, which was paused later.
    for _ in 0..20 {
        let ran_on = read(&least_lagged).await;
        assert_eq!(
            ran_on,
            (p2, true),
            "\"least_lagged\": a read goes to the less lagging replica 2"
        );
    }
    primary_policy_reads_on_the_primary(&to_primary, p0).await;

    let still = try_read(&refusing).await;
    assert!(
        still.is_err(),
        "both replicas still lag at the end: {still:?}"
    );
    writer.stop().await;
}

/// "error": once both replicas count as lagging, reads are refused at once with 57P03, and the
/// session survives the refusals.
async fn error_policy_refuses_reads(refusing: &Client, p0: u16) {
    poll_until("\"error\": reads to be refused", SETTLE, || async {
        match try_read(refusing).await {
            Err(e) if sqlstate(&e) == Some("57P03") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    for _ in 0..5 {
        let began = Instant::now();
        let e = try_read(refusing)
            .await
            .expect_err("\"error\": a read while both replicas lag must be refused");
        let took = began.elapsed();
        assert_eq!(sqlstate(&e), Some("57P03"), "\"error\": {e:?}");
        assert!(
            took < Duration::from_millis(500),
            "\"error\": refused after {took:?}"
        );
    }
    // The session survives the refusals: a primary statement still runs.
    let row = first_row(
        refusing,
        "SELECT inet_server_port() FROM pg_advisory_xact_lock(1)",
    )
    .await
    .expect("\"error\": a primary statement after refused reads");
    assert_eq!(row[0].as_deref(), Some(p0.to_string().as_str()));
}

/// "primary" (the default): every read on the primary, once this pgroute's own monitor has
/// seen replica 2 lag too (each pgroute samples on its own clock, and the "error" one was only
/// waited for).
async fn primary_policy_reads_on_the_primary(to_primary: &Client, p0: u16) {
    poll_until("\"primary\": reads on the primary", SETTLE, || async {
        match try_read(to_primary).await {
            Ok(ran_on) if ran_on == (p0, false) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    for _ in 0..20 {
        let ran_on = read(to_primary).await;
        assert_eq!(
            ran_on,
            (p0, false),
            "\"primary\": a read goes to the primary"
        );
    }
}

/// Issue 9 item 16: on a lightly written cluster (one small row every 300 ms, written through
/// pgroute) replicas that keep up must keep taking reads under a tight `max_time`, whatever the
/// phase of the writes against the monitor's samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lightly_written_caught_up_replicas_keep_taking_reads() {
    let cluster = new_cluster();
    let proxy = start_proxy(
        &cluster,
        "[consistency]\nread_your_writes = \"off\"\n\n\
         [lag]\ncheck_interval = \"100ms\"\nmax_time = \"1s\"\n",
    );
    let client = proxy.connect().await;
    let writer = proxy.connect().await;
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    writer
        .batch_execute("CREATE TABLE light_writes (id serial PRIMARY KEY, v int)")
        .await
        .expect("create light_writes through pgroute");
    caught_up(&cluster);
    wait_reads_on_both(&client, "reads on both replicas at first", p1, p2).await;

    let began = Instant::now();
    let mut next_write = began;
    let mut writes = 0;
    let mut reads = BTreeMap::new();
    let mut lagging = Vec::new();
    while began.elapsed() < Duration::from_secs(5) {
        if Instant::now() >= next_write {
            writer
                .batch_execute("INSERT INTO light_writes (v) VALUES (1)")
                .await
                .expect("write through pgroute");
            writes += 1;
            next_write += Duration::from_millis(300);
        }
        let (ran_on, _) = read(&client).await;
        *reads.entry(ran_on).or_insert(0) += 1;
        let nodes = show_nodes(&client).await;
        let out = nodes.iter().skip(1).any(|n| n["takes_reads"] != "true");
        if out || !lagging.is_empty() && lagging.len() < 20 {
            // The view when a replica went out, and a few after it.
            lagging.push((began.elapsed(), nodes));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(writes >= 15, "{writes} writes");
    assert!(
        lagging.is_empty(),
        "a caught-up replica of a lightly written cluster was taken out of reads \
         (SHOW pgroute.nodes then): {lagging:#?}"
    );
    assert!(
        reads.keys().all(|p| [p1, p2].contains(p)),
        "every read on a replica ({p1}, {p2}), none on the primary: {reads:?}"
    );
    assert_eq!(reads.len(), 2, "reads on both replicas: {reads:?}");
}

//! The other read-your-writes modes: `time`, `session` and `off`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_mode_keeps_reads_on_the_primary_for_stick_for_after_a_write() {
    const ROUNDS: i64 = 4;
    let cluster = delayed_cluster();
    let table = "ryw_time";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"time\"\nstick_for = \"500ms\""),
    );
    let primary = port(cluster, 0);
    let replicas = replica_ports(cluster);
    let client = proxy.connect().await;
    let before = server_port(&client, "").await;
    assert!(
        replicas.contains(&before),
        "before any write, reads go to a replica; ran on {before}"
    );
    for id in 0..ROUNDS {
        insert(&client, table, id).await;
        let wrote = Instant::now();
        let seen = read_simple(&client, "", table, id).await;
        assert_eq!(
            (seen.port, seen.count),
            (primary, 1),
            "a read right after a write runs on the primary {primary} and sees the write"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = wrote.elapsed();
        let within = read_extended(&client, "", table, id).await;
        if sent < Duration::from_millis(400) {
            assert_eq!(
                within.port, primary,
                "a read {sent:?} after a write (stick_for = 500ms) runs on the primary"
            );
        }
        tokio::time::sleep(Duration::from_millis(700).saturating_sub(wrote.elapsed())).await;
        let after = server_port(&client, "").await;
        assert!(
            replicas.contains(&after),
            "a read {:?} after a write (stick_for = 500ms) goes to a replica {replicas:?}; ran on {after}",
            wrote.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_a_writer_on_the_primary_and_others_on_replicas() {
    const READS: usize = 20;
    let cluster = delayed_cluster();
    let table = "ryw_session";
    create_table(cluster, table);
    let proxy = start_proxy(cluster, &config("read_your_writes = \"session\""));
    let primary = port(cluster, 0);
    let replicas = replica_ports(cluster);
    let writer = proxy.connect().await;
    let other = proxy.connect().await;
    let before = server_port(&writer, "").await;
    assert!(
        replicas.contains(&before),
        "before its first write, a session reads from a replica; ran on {before}"
    );
    insert(&writer, table, 1).await;
    let mut writer_reads = Vec::new();
    let mut other_reads = Vec::new();
    for i in 0..READS {
        let seen = if i % 2 == 0 {
            read_simple(&writer, "", table, 1).await
        } else {
            read_extended(&writer, "", table, 1).await
        };
        writer_reads.push(seen);
        other_reads.push(server_port(&other, "").await);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(
        writer_reads
            .iter()
            .all(|s| s.port == primary && s.count == 1),
        "after its write, every read of the session runs on the primary {primary} (over {READS} \
         reads, ~1.2 s): {writer_reads:?}"
    );
    assert!(
        other_reads.iter().all(|p| replicas.contains(p)),
        "a session that did not write keeps reading from replicas {replicas:?}: {other_reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_mode_can_read_stale_right_after_a_write() {
    const TRIES: i64 = 50;
    let cluster = delayed_cluster();
    let table = "ryw_off";
    create_table(cluster, table);
    let proxy = start_proxy(cluster, &config("read_your_writes = \"off\""));
    let client = proxy.connect().await;
    let mut reads = Vec::new();
    for id in 0..TRIES {
        insert(&client, table, id).await;
        reads.push(read_simple(&client, "", table, id).await);
    }
    let stale = reads.iter().filter(|s| s.count == 0).count();
    assert!(
        stale > 0,
        "with read_your_writes = \"off\" and replicas {DELAY} behind, a read right after a write \
         should miss it at least once in {TRIES} tries: {reads:?}"
    );
}

//! A session reads its own writes while sessions that did not write keep using the replicas; with
//! `max_wait`, reads after writes wait for a replica to catch up instead of using the primary.

use std::ops::Range;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_always_reads_its_own_writes_and_others_stay_on_replicas() {
    const ROUNDS: i64 = 500;
    let cluster = delayed_cluster();
    let table = "ryw_own_writes";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let observer = spawn_observer(&proxy, stop.clone(), 20_000);

    let writer = proxy.connect().await;
    let mut stale = write_then_read_simple(&writer, table, 0..ROUNDS).await;
    stale.extend(write_then_read_prepared(&writer, table, ROUNDS..2 * ROUNDS).await);
    stop.store(true, Ordering::Relaxed);
    let observed = observer.await.expect("observer");

    assert!(
        stale.is_empty(),
        "{} of {} reads right after the session's own INSERT missed it (protocol, id, read): {:?}",
        stale.len(),
        2 * ROUNDS,
        &stale[..stale.len().min(10)]
    );
    let replicas = replica_ports(cluster);
    let elsewhere: Vec<_> = observed.iter().filter(|p| !replicas.contains(p)).collect();
    assert!(
        observed.len() >= 20,
        "the observer made only {} reads",
        observed.len()
    );
    assert!(
        elsewhere.is_empty(),
        "a session that never wrote must keep reading from the replicas {replicas:?}; \
         {} of its {} reads ran elsewhere: {:?}",
        elsewhere.len(),
        observed.len(),
        &elsewhere[..elsewhere.len().min(10)]
    );
}

/// A read that missed the session's own write: the protocol, the id written, what it saw.
type Missed = (&'static str, i64, Seen);

/// Inserts each id and reads it right back, in simple Queries; the reads that missed it.
async fn write_then_read_simple(writer: &Client, table: &str, ids: Range<i64>) -> Vec<Missed> {
    let mut stale = Vec::new();
    for id in ids {
        insert(writer, table, id).await;
        let seen = read_simple(writer, "", table, id).await;
        if seen.count != 1 {
            stale.push(("simple", id, seen));
        }
    }
    stale
}

/// Inserts each id and reads it right back, with prepared statements; the reads that missed it.
async fn write_then_read_prepared(writer: &Client, table: &str, ids: Range<i64>) -> Vec<Missed> {
    let insert_stmt = writer
        .prepare(&format!("INSERT INTO {table} VALUES ($1)"))
        .await
        .expect("prepare INSERT");
    let select_stmt = writer
        .prepare(&format!(
            "SELECT count(*), inet_server_port() FROM {table} WHERE id = $1"
        ))
        .await
        .expect("prepare SELECT");
    let mut stale = Vec::new();
    for id in ids {
        writer.execute(&insert_stmt, &[&id]).await.expect("INSERT");
        let row = writer
            .query_one(&select_stmt, &[&id])
            .await
            .expect("SELECT");
        let seen = Seen {
            count: row.get(0),
            port: row.get(1),
        };
        if seen.count != 1 {
            stale.push(("extended", id, seen));
        }
    }
    stale
}

/// Writes committed by an explicit transaction, however it is sent, are read back too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_explicit_transactions_are_read_back() {
    const ROUNDS: i64 = 40;
    let cluster = delayed_cluster();
    let table = "ryw_transactions";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let mut client = proxy.connect().await;
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        let id = round * 3;
        // One statement at a time.
        simple_exec(&client, "BEGIN").await;
        insert(&client, table, id).await;
        simple_exec(&client, "COMMIT").await;
        let seen = read_simple(&client, "", table, id).await;
        stale.extend((seen.count != 1).then_some(("BEGIN, INSERT, COMMIT", id, seen)));
        // One Query message holding the whole transaction.
        let sql = format!("BEGIN; INSERT INTO {table} VALUES ({}); COMMIT", id + 1);
        simple_exec(&client, &sql).await;
        let seen = read_extended(&client, "", table, id + 1).await;
        stale.extend((seen.count != 1).then_some(("one Query", id + 1, seen)));
        // The extended protocol, through tokio-postgres' transaction API.
        let txn = client.transaction().await.expect("BEGIN");
        txn.execute(&format!("INSERT INTO {table} VALUES ($1)"), &[&(id + 2)])
            .await
            .expect("INSERT");
        txn.commit().await.expect("COMMIT");
        let seen = read_simple(&client, "", table, id + 2).await;
        stale.extend((seen.count != 1).then_some(("transaction()", id + 2, seen)));
    }
    assert!(
        stale.is_empty(),
        "{} of {} reads right after a committed transaction missed its write (how, id, read): \
         {stale:?}",
        stale.len(),
        3 * ROUNDS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_wait_reads_after_writes_wait_for_a_replica() {
    const ROUNDS: i64 = 40;
    let cluster = delayed_cluster();
    let table = "ryw_max_wait";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"1s\""),
    );
    let client = proxy.connect().await;
    let replicas = replica_ports(cluster);
    let mut reads = Vec::new();
    for id in 0..ROUNDS {
        insert(&client, table, id).await;
        let began = Instant::now();
        let (protocol, seen) = if id % 2 == 0 {
            ("simple", read_simple(&client, "", table, id).await)
        } else {
            ("extended", read_extended(&client, "", table, id).await)
        };
        reads.push((protocol, id, seen, began.elapsed()));
    }
    let stale: Vec<_> = reads.iter().filter(|r| r.2.count != 1).collect();
    assert!(
        stale.is_empty(),
        "reads right after the session's INSERT missed it (protocol, id, read, took): {stale:?}"
    );
    let on_primary: Vec<_> = reads
        .iter()
        .filter(|r| !replicas.contains(&r.2.port))
        .collect();
    for protocol in ["simple", "extended"] {
        let total = reads.iter().filter(|r| r.0 == protocol).count();
        let primary = on_primary.iter().filter(|r| r.0 == protocol).count();
        assert!(
            (total - primary) * 100 >= total * 80,
            "with max_wait = 1s and replicas {DELAY} behind, at least 80% of the reads right \
             after a write should wait for a replica; {primary} of {total} {protocol}-protocol \
             reads ran on the primary instead (protocol, id, read, took): {on_primary:?}"
        );
    }
}

//! Replicas that stop, or refuse new sessions while shutting down: reads go on elsewhere and none
//! is lost.

use std::sync::atomic::AtomicUsize;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_stopped_under_read_load_loses_no_read_and_returns_after_restart() {
    const TASKS: usize = 4;
    /// Each task reads at least this many times, and goes on until it has read this many more
    /// after the stop returned (at most 20,000 reads or 20 s in all).
    const READS: usize = 300;
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(""));
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    let done = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..TASKS {
        let client = proxy.connect().await;
        readers.push(spawn_reader(client, READS, done.clone(), stopped.clone()));
    }
    reads_under_way(&done, 100).await;
    stop(&cluster, 1);
    stopped.store(true, Ordering::SeqCst);
    let results = join_readers(readers, READS).await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let distinct: BTreeSet<&String> = failed.iter().copied().collect();
    assert!(
        failed.is_empty(),
        "{} of {} reads failed while replica 1 stopped; distinct errors: {distinct:#?}",
        failed.len(),
        results.len(),
    );
    let on_p1 = results.iter().filter(|r| **r == Ok(p1)).count();
    assert!(on_p1 > 0, "replica 1 took reads before it stopped");

    let client = proxy.connect().await;
    assert_eq!(
        tally(&client, 20).await,
        BTreeMap::from([(p2, 20)]),
        "replica 1 is down"
    );

    blocking(|| cluster.start_node(1)).expect("restart replica 1");
    let (_, took) = poll_until(
        "reads back on replica 1 after its restart",
        SETTLE,
        || async {
            let ran_on = tally(&client, 10).await;
            if ran_on.contains_key(&p1) {
                Ok(())
            } else {
                Err(ran_on)
            }
        },
    )
    .await;
    assert!(
        took < Duration::from_secs(3),
        "replica 1 back after {took:?}"
    );
}

/// Where each read of a reader ran, or why it failed; and how many it made after the stop.
type ReaderResults = (Vec<Result<u16, String>>, usize);

/// A task that reads on `client` at least `reads` times and until it has read `reads` more
/// times after `stopped` is set (at most 5,000 reads or 20 s), counting every read in `done`.
fn spawn_reader(
    client: Client,
    reads: usize,
    done: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<ReaderResults> {
    tokio::spawn(async move {
        let began = Instant::now();
        let mut results = Vec::new();
        let mut after_stop = 0;
        while (results.len() < reads || after_stop < reads)
            && results.len() < 5_000
            && began.elapsed() < Duration::from_secs(20)
        {
            let r = try_read(&client).await.map(|(p, _)| p);
            results.push(r.map_err(|e| format!("{e:?}")));
            done.fetch_add(1, Ordering::SeqCst);
            if stopped.load(Ordering::SeqCst) {
                after_stop += 1;
            }
        }
        (results, after_stop)
    })
}

/// Waits until the readers have made `n` reads between them.
async fn reads_under_way(done: &AtomicUsize, n: usize) {
    poll_until("reads under way", SETTLE, || async {
        let made = done.load(Ordering::SeqCst);
        if made >= n {
            Ok(())
        } else {
            Err(made)
        }
    })
    .await;
}

/// Every reader's results, once each has made its `reads` reads after the stop.
async fn join_readers(
    readers: Vec<tokio::task::JoinHandle<ReaderResults>>,
    reads: usize,
) -> Vec<Result<u16, String>> {
    let mut results = Vec::new();
    for r in readers {
        let (task_results, after_stop) = r.await.expect("reader task");
        assert!(
            after_stop >= reads,
            "a reader stopped early: {after_stop} reads after the stop"
        );
        results.extend(task_results);
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_replicas_stopped_sends_reads_to_the_primary() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(""));
    let client = proxy.connect().await;
    let (p0, p1, p2) = (port(&cluster, 0), port(&cluster, 1), port(&cluster, 2));
    // Leave idle pooled connections to both replicas behind.
    wait_reads_on_both(&client, "reads on both replicas at first", p1, p2).await;
    stop(&cluster, 1);
    stop(&cluster, 2);
    // At once (the monitor may not have noticed yet), and again once it has.
    for round in 0..2 {
        for _ in 0..10 {
            let ran_on = try_read(&client).await;
            assert_eq!(
                ran_on.as_ref().map_err(|e| format!("{e:?}")),
                Ok(&(p0, false)),
                "round {round}: a read with both replicas down runs on the primary"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The failure the load test above can only hit by chance, made certain: a read waiting on a
/// replica (here for a lock the primary holds) has had no reply at all when that replica stops,
/// so it is retried on the other replica. The server's dying words, a WARNING notice
/// "terminating connection due to immediate shutdown command", are no reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_waiting_on_a_replica_that_stops_is_retried_on_the_other() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(""));
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    on_node(
        &cluster,
        0,
        "CREATE TABLE locked_t (v int); GRANT SELECT ON locked_t TO app;",
    );
    // An ACCESS EXCLUSIVE lock taken on the primary is held on the replicas by their startup
    // process, so reads of the table wait there, before the server has sent them anything.
    let locker = direct(&cluster, 0).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE;")
        .await
        .expect("lock on the primary");
    // The lock's WAL record goes out with the next flush: commit something else.
    on_node(&cluster, 0, "SELECT txid_current()");
    let held = "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' \
                AND relation = (SELECT oid FROM pg_class WHERE relname = 'locked_t')";
    each_replica_counts_one(&cluster, "the lock to reach the replica", held).await;
    let blocked_read = "SELECT inet_server_port(), count(*) FROM locked_t";
    // Two reads at once: least-outstanding balancing puts one on each replica.
    let mut reads = Vec::new();
    for _ in 0..2 {
        let client = proxy.connect().await;
        reads.push(tokio::spawn(async move {
            let row = first_row(&client, blocked_read)
                .await
                .map_err(|e| format!("{e:?}"))?;
            Ok::<u16, String>(
                row[0]
                    .as_deref()
                    .and_then(|p| p.parse().ok())
                    .expect("port"),
            )
        }));
    }
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query = '{}'",
        blocked_read.replace('\'', "''")
    );
    each_replica_counts_one(&cluster, "a read waiting on each replica", &waiting).await;
    stop(&cluster, 1);
    // Give a retried read time to reach replica 2 (where it waits too), then let both go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    let mut ran_on = Vec::new();
    for r in reads {
        let r = tokio::time::timeout(SETTLE, r)
            .await
            .expect("read finished");
        ran_on.push(r.expect("reader task"));
    }
    assert_eq!(
        ran_on,
        vec![Ok(p2), Ok(p2)],
        "both reads complete on replica 2 ({p2}); replica 1 ({p1}) stopped under one of them"
    );
}

/// Waits, on replica 1 and then replica 2, until the count `sql` returns there is 1.
async fn each_replica_counts_one(cluster: &Cluster, what: &str, sql: &str) {
    for node in [1, 2] {
        poll_until(what, SETTLE, || async {
            match on_node(cluster, node, sql).as_str() {
                "1" => Ok(()),
                n => Err((node, n.to_owned())),
            }
        })
        .await;
    }
}

/// A replica in a smart shutdown refuses new sessions with FATAL 57P03 ("the database system is
/// shutting down") while its existing sessions, pgroute's monitor among them, carry on. Reads
/// must skip it like a node that refuses connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_refusing_new_sessions_while_shutting_down_is_skipped() {
    let cluster = new_cluster();
    let proxy = start_proxy(&cluster, &config(""));
    let (p1, p2) = (port(&cluster, 1), port(&cluster, 2));
    // Let the monitor connect to every node; no client has read yet, so pgroute holds no
    // connection of its own to replica 1.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runtime = tokio::runtime::Handle::current();
    let direct_login =
        format!("host=127.0.0.1 port={p1} user=postgres dbname=postgres connect_timeout=5");
    let (refusing, ran_on, stopped) = blocking(|| {
        std::thread::scope(|scope| {
            // Waits until every session on replica 1 has ended: pgroute's monitor keeps one.
            let stopping = scope.spawn(|| cluster.stop(1, "smart"));
            let (refusing, ran_on) = runtime.block_on(async {
                let began = Instant::now();
                let mut refusing = Err(String::from("not tried"));
                while began.elapsed() < SETTLE {
                    match tokio_postgres::connect(&direct_login, tokio_postgres::NoTls).await {
                        Err(e) if sqlstate(&e) == Some("57P03") => {
                            refusing = Ok(());
                            break;
                        }
                        other => refusing = Err(format!("{:?}", other.map(|_| "connected"))),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let client = proxy.connect().await;
                let mut ran_on = Vec::new();
                for _ in 0..10 {
                    let r = try_read(&client).await;
                    ran_on.push(r.map(|(p, _)| p).map_err(|e| format!("{e:?}")));
                }
                (refusing, ran_on)
            });
            // The smart shutdown ends once pgroute and its monitor let go of replica 1.
            drop(proxy);
            (refusing, ran_on, stopping.join().expect("stop thread"))
        })
    });
    refusing.expect("replica 1 refuses new sessions during its smart shutdown");
    stopped.expect("smart stop of replica 1");
    assert!(
        ran_on.iter().all(|r| *r == Ok(p2)),
        "every read runs on replica 2 ({p2}) while replica 1 ({p1}) refuses new sessions: \
         {ran_on:#?}"
    );
}

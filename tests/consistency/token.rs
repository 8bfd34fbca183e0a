//! The consistency token: handed to other connections (SET, hint comment, startup parameter) and to
//! another pgroute, reported as ParameterStatus and by SHOW, and honoured through the extended
//! protocol and in a pipeline.

use tokio_postgres::types::Type;

use super::*;
use crate::common::raw::RawConn;
use crate::common::PASSWORD;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_handed_to_other_connections_and_proxies_shows_them_the_write() {
    const ROUNDS: i64 = 8;
    let cluster = delayed_cluster();
    let table = "ryw_token";
    create_table(cluster, table);
    let cfg = config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\"");
    let proxy = start_proxy(cluster, &cfg);
    let other_proxy = start_proxy(cluster, &cfg);
    let a = proxy.connect().await;

    let mut reads = Vec::new();
    for round in 0..ROUNDS {
        let id = round;
        // Connections that never wrote, opened before the write so that they read right after it.
        let by_set = proxy.connect().await;
        let by_hint = proxy.connect().await;
        let by_set_elsewhere = other_proxy.connect().await;
        let by_hint_elsewhere = other_proxy.connect().await;

        insert(&a, table, id).await;
        let token = token_of(&a).await;
        let hint = format!("/* pgroute.min_lsn={token} */ ");

        simple_exec(&by_set, &format!("SET pgroute.min_lsn = '{token}'")).await;
        let seen = read_simple(&by_set, "", table, id).await;
        reads.push(("SET, simple", seen));
        let seen = read_extended(&by_set, "", table, id).await;
        reads.push(("SET, extended", seen));
        let seen = read_simple(&by_hint, &hint, table, id).await;
        reads.push(("hint, simple", seen));
        simple_exec(
            &by_set_elsewhere,
            &format!("SET pgroute.min_lsn = '{token}'"),
        )
        .await;
        let seen = read_simple(&by_set_elsewhere, "", table, id).await;
        reads.push(("second pgroute, SET", seen));
        let seen = read_simple(&by_hint_elsewhere, &hint, table, id).await;
        reads.push(("second pgroute, hint", seen));

        // The startup parameter, on a connection made after the write.
        let seen = read_with_startup_token(&other_proxy, &token, table, id).await;
        reads.push(("second pgroute, startup parameter", seen));
    }
    let total = reads.len();
    let stale: Vec<_> = reads.iter().filter(|(_, seen)| seen.count != 1).collect();
    assert!(
        stale.is_empty(),
        "{} of {total} reads given connection A's token missed A's write (how, read): {stale:?}",
        stale.len()
    );
}

/// Reads row `id` on a new connection whose startup packet carries `pgroute.min_lsn = token`.
async fn read_with_startup_token(proxy: &TestProxy, token: &str, table: &str, id: i64) -> Seen {
    let mut raw = RawConn::connect_with(
        proxy.port,
        USER,
        Some(PASSWORD),
        "postgres",
        &[("pgroute.min_lsn", token)],
    )
    .await
    .expect("connect with pgroute.min_lsn as a startup parameter");
    let rows = raw.simple_query(&count_sql(table, id)).await.expect("read");
    Seen::from_text(&rows)
}

/// The control for the test above: without the token, a connection that did not write reads
/// from a replica that has not applied the write yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_another_connection_can_read_stale() {
    const TRIES: i64 = 20;
    let cluster = delayed_cluster();
    let table = "ryw_no_token";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    let mut stale = 0;
    for id in 0..TRIES {
        insert(&a, table, id).await;
        if read_simple(&b, "", table, id).await.count == 0 {
            stale += 1;
        }
    }
    assert!(
        stale > 0,
        "with replicas {DELAY} behind, a connection without the token should miss a write just \
         made on another connection at least once in {TRIES} tries (else the token tests prove \
         nothing)"
    );
}

/// The token is also sent as ParameterStatus `pgroute.lsn` after each write, equal to what
/// `SHOW pgroute.lsn` answers, and covers the write on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_reported_as_parameter_status_and_by_show() {
    let cluster = delayed_cluster();
    let table = "ryw_parameter_status";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("connect");
    let mut tokens = Vec::new();
    for id in 0..3 {
        raw.simple_query(&format!("INSERT INTO {table} VALUES ({id})"))
            .await
            .expect("INSERT");
        // The token follows the write's ReadyForQuery; SHOW waits for it.
        let shown = raw.simple_query("SHOW pgroute.lsn").await.expect("SHOW");
        let shown = shown[0][0].clone().expect("token");
        let reported = raw
            .parameter("pgroute.lsn")
            .unwrap_or_else(|| panic!("no ParameterStatus pgroute.lsn after write {id}"));
        assert_eq!(reported, shown, "ParameterStatus and SHOW disagree");
        tokens.push(lsn(&shown));
    }
    let now = lsn(&cluster
        .psql(0, "SELECT pg_current_wal_insert_lsn()")
        .expect("LSN"));
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]) && tokens[0] > 0 && *tokens.last().unwrap() <= now,
        "tokens must grow with each write and not pass the primary's WAL ({now:X}): {tokens:X?}"
    );
}

/// Hints must work whatever protocol carries the statement: tokio-postgres (like most drivers)
/// prepares a statement in one round trip (Parse/Describe/Sync) and runs it in another
/// (Bind/Execute/Sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_apply_to_statements_run_through_the_extended_protocol() {
    const ROUNDS: i64 = 8;
    let cluster = delayed_cluster();
    let table = "ryw_extended_hint";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let a = proxy.connect().await;
    let mut results = Vec::new();
    for id in 0..ROUNDS {
        let prepared = proxy.connect().await;
        let typed = proxy.connect().await;
        insert(&a, table, id).await;
        let hint = format!("/* pgroute.min_lsn={} */ ", token_of(&a).await);
        // Parse + Describe + Sync, then Bind + Execute + Sync.
        results.push(("prepared", read_extended(&prepared, &hint, table, id).await));
        // Parse + Bind + Execute + Sync in one batch.
        let sql = format!("{hint}SELECT count(*), inet_server_port() FROM {table} WHERE id = $1");
        let row = typed
            .query_typed(&sql, &[(&id, Type::INT8)])
            .await
            .expect("query_typed");
        let seen = Seen {
            count: row[0].get(0),
            port: row[0].get(1),
        };
        results.push(("one batch", seen));
    }
    let stale: Vec<_> = results.iter().filter(|(_, s)| s.count != 1).collect();
    assert!(
        stale.is_empty(),
        "{} of {} extended-protocol reads with /* pgroute.min_lsn=<token> */ missed the write \
         (how, read): {stale:?}",
        stale.len(),
        results.len()
    );
}

/// tokio-postgres pipelines: a request is sent before the previous one is answered. A read that
/// carries a token must honour it even when it is queued behind a plain read that pgroute sent
/// to a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_read_honours_its_token() {
    const ROUNDS: i64 = 5;
    let cluster = delayed_cluster();
    let table = "ryw_pipelined";
    create_table(cluster, table);
    let proxy = start_proxy(
        cluster,
        &config("read_your_writes = \"lsn\"\nmax_wait = \"0ms\""),
    );
    let writer = proxy.connect().await;
    let mut reads = Vec::new();
    for id in 0..ROUNDS {
        let reader = proxy.connect().await;
        insert(&writer, table, id).await;
        let hint = format!("/* pgroute.min_lsn={} */ ", token_of(&writer).await);
        // Both requests go out at once; the first runs on a replica for 100 ms.
        let (slow, hinted) = futures::join!(
            simple_rows(&reader, "SELECT inet_server_port() FROM pg_sleep(0.1)"),
            read_simple(&reader, &hint, table, id),
        );
        let slow = slow[0][0].clone().expect("port");
        reads.push((slow, hinted));
    }
    let stale: Vec<_> = reads.iter().filter(|(_, seen)| seen.count != 1).collect();
    assert!(
        stale.is_empty(),
        "{} of {ROUNDS} token-hinted reads pipelined behind a plain read missed the write \
         (port of the plain read, hinted read): {stale:?}",
        stale.len()
    );
}

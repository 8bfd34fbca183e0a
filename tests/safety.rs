//! Unusual but valid message sequences, sent to PostgreSQL directly and through pgroute: COPY
//! with its data pipelined or with a stray Sync, pgroute's own statements during COPY, pipelines
//! with errors, FunctionCall, notifications, FATAL errors. The reference is PostgreSQL's own
//! reply to the same bytes; nothing may be lost, no reply may belong to someone else, and a
//! client that goes away must always free its server connection.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::raw::{self, RawConn, Reply};
use common::{cluster, on_primary, start_proxy, TestProxy, PASSWORD, USER};

/// Upper bound for any single wait in these tests.
const PATIENCE: Duration = Duration::from_secs(10);

/// pgroute in front of the shared cluster, reads and writes on the primary alone unless a test
/// says otherwise, with one server connection per node: a connection that is not given back
/// shows at once as the next client's timeout.
fn start_single() -> TestProxy {
    start_proxy(
        cluster(),
        "[lag]\ncheck_interval = \"250ms\"\n\n[pool]\nmax_size = 1\ncheckout_timeout = \"5s\"\n",
    )
}

/// A table owned by the test user, created afresh.
fn table(name: &str) {
    on_primary(&format!(
        "DROP TABLE IF EXISTS {name};\nCREATE TABLE {name}(v text);\nALTER TABLE {name} OWNER TO app;"
    ));
}

async fn raw_conn(port: u16) -> RawConn {
    RawConn::connect(port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect")
}

/// PostgreSQL's port, then pgroute's, with a name for messages.
fn targets(proxy: &TestProxy) -> [(&'static str, u16); 2] {
    [("PostgreSQL", cluster().port(0)), ("pgroute", proxy.port)]
}

/// Another client's write through pgroute goes through promptly: the pool (of one) is free.
async fn pool_is_free(proxy: &TestProxy, table: &str) {
    let client = proxy.connect().await;
    let sql = format!("INSERT INTO {table} VALUES ('other')");
    let insert = client.simple_query(&sql);
    let done = tokio::time::timeout(PATIENCE, insert).await;
    assert!(
        matches!(done, Ok(Ok(_))),
        "another client's write after the first one left: {done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copy_with_its_data_pipelined_before_the_sync_loses_nothing() {
    let proxy = start_single();
    for (target, port) in targets(&proxy) {
        let name = format!("safe_copy_pipelined_{}", target.to_lowercase());
        table(&name);
        let mut conn = raw_conn(port).await;
        let mut out = BytesMut::new();
        raw::statement(&mut out, &format!("COPY {name} FROM STDIN"));
        raw::copy_data(&mut out, b"a\n");
        raw::copy_data(&mut out, b"b\n");
        raw::copy_done(&mut out);
        raw::sync(&mut out);
        let replies = tokio::time::timeout(PATIENCE, conn.exchange(&out))
            .await
            .unwrap_or_else(|_| panic!("{target}: no ReadyForQuery"));
        assert_eq!(
            replies,
            vec![
                Reply::ParseComplete,
                Reply::BindComplete,
                Reply::CopyIn,
                Reply::Complete("COPY 2".into()),
                Reply::Ready(b'I')
            ],
            "{target}"
        );
        assert_eq!(on_primary(&format!("SELECT count(*) FROM {name}")), "2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_during_simple_copy_in_is_ignored_and_the_next_reply_is_the_clients_own() {
    let proxy = start_single();
    for (target, port) in targets(&proxy) {
        let name = format!("safe_copy_sync_{}", target.to_lowercase());
        table(&name);
        let mut conn = raw_conn(port).await;
        let mut out = BytesMut::new();
        raw::query(&mut out, &format!("COPY {name} FROM STDIN"));
        raw::sync(&mut out);
        raw::copy_data(&mut out, b"x\n");
        raw::copy_done(&mut out);
        conn.send(&out).await;
        let replies = conn.read_until(|r| matches!(r, Reply::Ready(_))).await;
        assert_eq!(
            replies,
            vec![
                Reply::CopyIn,
                Reply::Complete("COPY 1".into()),
                Reply::Ready(b'I')
            ],
            "{target}"
        );
        for i in 0..3 {
            let mut out = BytesMut::new();
            raw::query(&mut out, &format!("SELECT 'mine {i}'"));
            let replies = conn.exchange(&out).await;
            assert_eq!(
                replies,
                vec![
                    Reply::Row(vec![Some(format!("mine {i}"))]),
                    Reply::Complete("SELECT 1".into()),
                    Reply::Ready(b'I')
                ],
                "{target}: query {i} after the COPY gets its own reply"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgroute_statement_during_copy_gets_postgresqls_reply() {
    let proxy = start_single();
    for (target, port) in targets(&proxy) {
        let name = format!("safe_copy_show_{}", target.to_lowercase());
        table(&name);
        let mut conn = raw_conn(port).await;
        let mut out = BytesMut::new();
        raw::query(&mut out, &format!("COPY {name} FROM STDIN"));
        conn.send(&out).await;
        assert_eq!(
            conn.read_until(|r| *r == Reply::CopyIn).await,
            vec![Reply::CopyIn]
        );
        // In COPY IN, PostgreSQL fails the COPY on any other message, then ends the session
        // ("terminating connection because protocol synchronization was lost").
        let mut out = BytesMut::new();
        raw::query(&mut out, "SHOW pgroute.lsn");
        conn.send(&out).await;
        let codes = tokio::time::timeout(PATIENCE, conn.until_closed())
            .await
            .unwrap_or_else(|_| panic!("{target}: the connection stays open"))
            .expect("closed");
        assert_eq!(
            codes,
            vec!["08P01".to_owned(), "08P01".to_owned()],
            "{target}"
        );
    }
    pool_is_free(&proxy, "safe_copy_show_pgroute").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_during_copy_frees_its_server_connection() {
    let name = "safe_copy_gone";
    table(name);
    let proxy = start_single();
    for pseudo in [
        "SHOW pgroute.lsn",
        "SHOW pgroute.nodes",
        "SET pgroute.max_lag = '1s'",
    ] {
        // The pseudo-statement is pipelined right behind the COPY, before CopyInResponse.
        let mut conn = raw_conn(proxy.port).await;
        let mut out = BytesMut::new();
        raw::query(&mut out, &format!("COPY {name} FROM STDIN"));
        raw::query(&mut out, pseudo);
        conn.send(&out).await;
        assert_eq!(
            conn.read_until(|r| *r == Reply::CopyIn).await,
            vec![Reply::CopyIn]
        );
        drop(conn);
        pool_is_free(&proxy, name).await;
        // And a client that vanishes in the middle of its COPY data, without a word.
        let mut conn = raw_conn(proxy.port).await;
        let mut out = BytesMut::new();
        raw::query(&mut out, &format!("COPY {name} FROM STDIN"));
        raw::copy_data(&mut out, b"half a ro");
        conn.send(&out).await;
        assert_eq!(
            conn.read_until(|r| *r == Reply::CopyIn).await,
            vec![Reply::CopyIn]
        );
        conn.reset();
        pool_is_free(&proxy, name).await;
    }
    assert_eq!(
        on_primary(&format!("SELECT count(*) FROM {name} WHERE v <> 'other'")),
        "0",
        "nothing of the abandoned COPYs was committed"
    );
}

/// Three Sync-terminated groups in one write, the middle one failing: PostgreSQL discards
/// the failed group up to its Sync and runs the others.
async fn pipeline_with_an_error(
    conn: &mut RawConn,
    name: &str,
    in_transaction: bool,
) -> Vec<Reply> {
    let mut out = BytesMut::new();
    if in_transaction {
        raw::query(&mut out, "BEGIN");
    }
    raw::statement(&mut out, &format!("INSERT INTO {name} VALUES ('one')"));
    raw::sync(&mut out);
    raw::statement(&mut out, "SELECT 1/0");
    raw::statement(&mut out, &format!("INSERT INTO {name} VALUES ('lost')"));
    raw::sync(&mut out);
    raw::statement(&mut out, &format!("INSERT INTO {name} VALUES ('three')"));
    raw::sync(&mut out);
    if in_transaction {
        raw::query(&mut out, "ROLLBACK");
    }
    raw::codes_only(
        tokio::time::timeout(PATIENCE, conn.exchange(&out))
            .await
            .expect("replies"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_a_pipeline_fails_its_group_and_the_others_run() {
    let proxy = start_single();
    for in_transaction in [false, true] {
        let mut seen = Vec::new();
        for (target, port) in targets(&proxy) {
            let name = format!("safe_pipe_{}_{in_transaction}", target.to_lowercase());
            table(&name);
            let mut conn = raw_conn(port).await;
            let replies = pipeline_with_an_error(&mut conn, &name, in_transaction).await;
            let rows = on_primary(&format!("SELECT string_agg(v, ',' ORDER BY v) FROM {name}"));
            let after = conn.simple_query("SELECT 'after'").await;
            seen.push((replies, rows, after));
        }
        assert_eq!(
            seen[0], seen[1],
            "PostgreSQL, then pgroute (in a transaction: {in_transaction})"
        );
    }
    assert_eq!(
        on_primary("SELECT string_agg(v, ',' ORDER BY v) FROM safe_pipe_pgroute_false"),
        "one,three"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_call_is_forwarded_to_the_primary() {
    let proxy = start_proxy(cluster(), "[lag]\ncheck_interval = \"250ms\"\n");
    let int4pl: u32 = on_primary("SELECT 'int4pl'::regproc::oid")
        .parse()
        .expect("oid");
    let lo_creat: u32 = on_primary("SELECT 'lo_creat'::regproc::oid")
        .parse()
        .expect("oid");
    for (target, port) in targets(&proxy) {
        let mut conn = raw_conn(port).await;
        let mut out = BytesMut::new();
        raw::function_call(&mut out, int4pl, &["2", "40"]);
        let replies = conn.exchange(&out).await;
        assert_eq!(
            replies,
            vec![Reply::FunctionResult(Some("42".into())), Reply::Ready(b'I')],
            "{target}"
        );
        // lo_creat writes: on a replica it would fail (read-only transaction).
        let mut out = BytesMut::new();
        raw::function_call(&mut out, lo_creat, &["-1"]);
        let replies = conn.exchange(&out).await;
        let [Reply::FunctionResult(Some(oid)), Reply::Ready(b'I')] = &replies[..] else {
            panic!("{target}: {replies:?}");
        };
        let exists = on_primary(&format!(
            "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {oid}"
        ));
        assert_eq!(
            exists, "1",
            "{target}: the large object exists on the primary"
        );
        on_primary(&format!("SELECT lo_unlink({oid})"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_large_object_import_and_export_work() {
    let proxy = start_proxy(cluster(), "[lag]\ncheck_interval = \"250ms\"\n");
    let dir = std::env::temp_dir().join(format!("pgroute-lo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = dir.join("in.bin");
    let dst = dir.join("out.bin");
    let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).expect("write");
    let import = format!("\\lo_import {}", src.display());
    let (ok, oid, err) = common::psql(&proxy, &["-c", &import, "-c", "\\echo :LASTOID"]);
    assert!(ok && !oid.is_empty(), "lo_import: {err}");
    let (ok, _, err) = common::psql(
        &proxy,
        &["-c", &format!("\\lo_export {oid} {}", dst.display())],
    );
    assert!(ok, "lo_export of {oid}: {err}");
    assert_eq!(std::fs::read(&dst).expect("read back"), data);
    let (ok, _, err) = common::psql(&proxy, &["-c", &format!("\\lo_unlink {oid}")]);
    assert!(ok, "lo_unlink: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_from_the_sessions_own_connection_carries_its_pid() {
    let proxy = start_proxy(cluster(), "[lag]\ncheck_interval = \"250ms\"\n");
    for (target, port) in targets(&proxy) {
        let mut conn = raw_conn(port).await;
        let mut out = BytesMut::new();
        raw::query(&mut out, "LISTEN safe_chan");
        raw::query(&mut out, "NOTIFY safe_chan");
        let replies = conn.exchange(&out).await;
        let pids: Vec<i32> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Notify { pid, channel } if channel == "safe_chan" => Some(*pid),
                _ => None,
            })
            .collect();
        assert_eq!(pids, vec![conn.backend_pid], "{target}: {replies:?}");
    }
}

/// A FATAL from the server (here `idle_in_transaction_session_timeout`, while nothing is
/// outstanding) reaches the client, and then the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_fatal_while_idle_in_a_transaction_reaches_the_client_which_is_closed() {
    let proxy = start_proxy(cluster(), "[lag]\ncheck_interval = \"250ms\"\n");
    for (target, port) in targets(&proxy) {
        let mut conn = raw_conn(port).await;
        let mut out = BytesMut::new();
        raw::query(
            &mut out,
            "SET idle_in_transaction_session_timeout = '300ms'",
        );
        raw::query(&mut out, "BEGIN");
        raw::query(&mut out, "SELECT 1");
        conn.exchange(&out).await;
        let codes = tokio::time::timeout(PATIENCE, conn.until_closed())
            .await
            .unwrap_or_else(|_| panic!("{target}: the connection stays open"))
            .expect("closed");
        assert_eq!(codes, vec!["25P03".to_owned()], "{target}");
    }
}

/// An administrator's `pg_terminate_backend` of the session's server connection in the middle
/// of a transaction: the client gets PostgreSQL's FATAL 57P01 and is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backend_in_a_transaction_ends_the_client_with_its_fatal() {
    let proxy = start_proxy(cluster(), "[lag]\ncheck_interval = \"250ms\"\n");
    for (target, port) in targets(&proxy) {
        let mut conn = raw_conn(port).await;
        let rows = conn
            .simple_query("BEGIN; SELECT pg_backend_pid()")
            .await
            .expect("begin");
        let pid = rows[0][0].clone().expect("pid");
        on_primary(&format!("SELECT pg_terminate_backend({pid})"));
        let codes = tokio::time::timeout(PATIENCE, conn.until_closed())
            .await
            .unwrap_or_else(|_| panic!("{target}: the connection stays open"))
            .expect("closed");
        assert_eq!(codes, vec!["57P01".to_owned()], "{target}");
    }
}

/// Drivers evict prepared statements with SQL `DEALLOCATE <the name they gave in Parse>`; on
/// the servers the statement has pgroute's name, so pgroute answers it from the session's own
/// statements, exactly as PostgreSQL would: the name can be prepared again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_of_a_protocol_level_statement_frees_its_name() {
    let proxy = start_proxy(cluster(), "[lag]\ncheck_interval = \"250ms\"\n");
    let mut seen = Vec::new();
    for (_, port) in targets(&proxy) {
        let mut conn = raw_conn(port).await;
        let mut replies = Vec::new();
        for round in 0..2 {
            let mut out = BytesMut::new();
            raw::parse(&mut out, "_pg3_0", &format!("SELECT {round}"));
            raw::bind_execute(&mut out, "_pg3_0");
            raw::sync(&mut out);
            raw::query(&mut out, "DEALLOCATE _pg3_0");
            replies.extend(raw::codes_only(conn.exchange(&out).await));
        }
        // Inside a transaction too, and a second DEALLOCATE of the name is PostgreSQL's 26000.
        let mut out = BytesMut::new();
        raw::query(&mut out, "BEGIN");
        raw::parse(&mut out, "s2", "SELECT 2");
        raw::sync(&mut out);
        raw::query(&mut out, "DEALLOCATE s2");
        raw::query(&mut out, "DEALLOCATE s2");
        raw::query(&mut out, "ROLLBACK");
        replies.extend(raw::codes_only(conn.exchange(&out).await));
        seen.push(replies);
    }
    assert!(seen[0].contains(&Reply::Complete("DEALLOCATE".into())));
    assert!(seen[0].contains(&Reply::error("26000")));
    assert_eq!(seen[0], seen[1], "PostgreSQL, then pgroute");
}

/// pgroute's own `SET`/`SHOW pgroute.*` inside a transaction are answered at once (the held
/// connection is no reason to wait), in order with the server's replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgroute_settings_inside_a_transaction_are_answered() {
    let proxy = start_single();
    let mut conn = raw_conn(proxy.port).await;
    let mut out = BytesMut::new();
    raw::query(&mut out, "BEGIN");
    raw::query(&mut out, "SELECT 1");
    raw::query(&mut out, "SET pgroute.max_lag = '2s'");
    raw::query(&mut out, "SHOW pgroute.max_lag");
    raw::query(&mut out, "COMMIT");
    let replies = tokio::time::timeout(PATIENCE, conn.exchange(&out))
        .await
        .expect("answered within the patience");
    assert_eq!(
        replies,
        vec![
            Reply::Complete("BEGIN".into()),
            Reply::Ready(b'T'),
            Reply::Row(vec![Some("1".into())]),
            Reply::Complete("SELECT 1".into()),
            Reply::Ready(b'T'),
            Reply::Complete("SET".into()),
            Reply::Ready(b'T'),
            Reply::Row(vec![Some("2s".into())]),
            Reply::Complete("SHOW".into()),
            Reply::Ready(b'T'),
            Reply::Complete("COMMIT".into()),
            Reply::Ready(b'I'),
        ]
    );
}

/// The router's reason for each unit is what `SHOW pgroute.last_route` reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_last_route_reports_the_routers_reason() {
    let proxy = start_proxy(
        cluster(),
        "[consistency]\nread_your_writes = \"off\"\n\n[lag]\ncheck_interval = \"250ms\"\n\
         max_bytes = \"1GB\"\nmax_time = \"1h\"\n",
    );
    let client = proxy.connect().await;
    let last = |rows: Vec<Vec<Option<String>>>| rows[0][0].clone().unwrap_or_default();
    common::simple_rows(&client, "SELECT 1").await;
    let after_read = last(common::simple_rows(&client, "SHOW pgroute.last_route").await);
    assert!(after_read.ends_with("(replica): replica"), "{after_read}");
    table("safe_last_route");
    common::simple_rows(&client, "INSERT INTO safe_last_route VALUES ('x')").await;
    let after_write = last(common::simple_rows(&client, "SHOW pgroute.last_route").await);
    assert_eq!(after_write, "node0 (primary): write");
    common::simple_rows(&client, "BEGIN").await;
    common::simple_rows(&client, "SELECT 1").await;
    let in_txn = last(common::simple_rows(&client, "SHOW pgroute.last_route").await);
    assert_eq!(in_txn, "node0 (primary): transaction");
    common::simple_rows(&client, "COMMIT").await;
}

/// A read whose replicas are all busy waits one `pool.checkout_timeout` in all, not one per
/// node it tries, and is then served by the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reads_wait_for_a_connection_is_bounded_by_one_checkout_timeout() {
    let proxy = start_proxy(
        cluster(),
        "[consistency]\nread_your_writes = \"off\"\n\n[lag]\ncheck_interval = \"250ms\"\n\
         max_bytes = \"1GB\"\nmax_time = \"1h\"\n\n[pool]\nmax_size = 1\ncheckout_timeout = \"2s\"\n",
    );
    // One long read on each replica holds its only connection.
    let mut sleepers = Vec::new();
    let mut ports = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let client = proxy.connect().await;
        let rows = common::simple_rows(&client, "SELECT inet_server_port()").await;
        ports.insert(rows[0][0].clone());
        sleepers.push(tokio::spawn(async move {
            let _ = client.simple_query("SELECT pg_sleep(6)").await;
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = proxy.connect().await;
    let started = std::time::Instant::now();
    let rows = common::simple_rows(&client, "SELECT inet_server_port()").await;
    let waited = started.elapsed();
    assert_eq!(
        rows[0][0].as_deref().map(str::to_owned),
        Some(common::primary_port().to_string()),
        "served by the primary once the replicas had no room"
    );
    assert!(
        waited < Duration::from_millis(3500),
        "waited {waited:?}: more than one checkout_timeout (2 s)"
    );
    for s in sleepers {
        s.abort();
    }
}

/// `SHOW pgroute.*` through the extended protocol (drivers that prepare every statement) is
/// answered like the simple query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pgroute_settings_through_the_extended_protocol() {
    let proxy = start_proxy(cluster(), "[lag]\ncheck_interval = \"250ms\"\n");
    let client = proxy.connect().await;
    common::simple_rows(&client, "SET pgroute.max_lag = '3s'").await;
    for _ in 0..2 {
        let rows = client
            .query("SHOW pgroute.max_lag", &[])
            .await
            .expect("prepared SHOW");
        let value: String = rows[0].get(0);
        assert_eq!(value, "3s");
        let rows = client
            .query("SHOW pgroute.lsn", &[])
            .await
            .expect("prepared SHOW");
        let lsn: String = rows[0].get(0);
        assert!(lsn.contains('/'), "{lsn}");
    }
    let err = client
        .query("SHOW pgroute.nothing", &[])
        .await
        .expect_err("unknown setting");
    assert_eq!(err.code().map(|c| c.code()), Some("42704"));
    let rows = client
        .query("SELECT 1::int4", &[])
        .await
        .expect("session goes on");
    assert_eq!(rows[0].get::<_, i32>(0), 1);
}

//! Prepared statements: reused across transactions and writes, shared text across clients, names
//! reused after Close, errors that name the client's statement.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_read_is_reused_across_transactions_and_writes() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_prep_mix (id int PRIMARY KEY, port int)")
        .await
        .expect("CREATE TABLE");
    caught_up();
    let read = c
        .prepare("SELECT $1::int + 1, inet_server_port()")
        .await
        .expect("prepare read");
    let write = c
        .prepare("INSERT INTO rt_prep_mix VALUES ($1, inet_server_port()) RETURNING port")
        .await
        .expect("prepare write");
    let mut seen = BTreeSet::new();
    for i in 0..200i32 {
        let row = c
            .query_one(&read, &[&i])
            .await
            .unwrap_or_else(|e| panic!("execution {i} of the prepared read: {e}"));
        assert_eq!(row.get::<_, i32>(0), i + 1, "execution {i}");
        let port: i32 = row.get(1);
        assert!(
            replica_ports().contains(&port),
            "execution {i} ran on {port}"
        );
        seen.insert(port);
        if i % 10 == 0 {
            let row = c
                .query_one(&write, &[&i])
                .await
                .unwrap_or_else(|e| panic!("prepared write {i}: {e}"));
            assert_eq!(row.get::<_, i32>(0), primary_port(), "prepared write {i}");
        }
        if i % 50 == 25 {
            // The same statement inside a transaction runs on the primary.
            c.batch_execute("BEGIN").await.expect("BEGIN");
            let row = c
                .query_one(&read, &[&i])
                .await
                .expect("prepared read in a transaction");
            assert_eq!(
                (row.get::<_, i32>(0), row.get::<_, i32>(1)),
                (i + 1, primary_port())
            );
            c.batch_execute("COMMIT").await.expect("COMMIT");
        }
    }
    assert_eq!(
        seen,
        replica_ports(),
        "200 executions should reach both replicas"
    );
    assert_eq!(
        on_primary("SELECT count(*), sum(id) FROM rt_prep_mix"),
        "20|1900"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_insert_executed_100_times() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_prep_insert (id int PRIMARY KEY, v text)")
        .await
        .expect("CREATE TABLE");
    let insert = c
        .prepare("INSERT INTO rt_prep_insert VALUES ($1, $2)")
        .await
        .expect("prepare");
    for i in 0..100i32 {
        let n = c
            .execute(&insert, &[&i, &format!("v{i}")])
            .await
            .unwrap_or_else(|e| panic!("execution {i}: {e}"));
        assert_eq!(n, 1, "execution {i}");
    }
    assert_eq!(
        on_primary("SELECT count(*), sum(id), count(DISTINCT v) FROM rt_prep_insert"),
        "100|4950|100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_share_statement_text_concurrently() {
    const SQL: &str = "SELECT $1::int + 1, inet_server_port(), pg_is_in_recovery()";
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let tasks: Vec<_> = (0..8i32)
        .map(|client_no| {
            let conn_str = proxy.conn_str();
            tokio::spawn(async move {
                let c = common::connect(&conn_str).await;
                let stmt = c.prepare(SQL).await.expect("prepare");
                let mut seen = BTreeSet::new();
                for i in 0..100i32 {
                    let v = client_no * 1000 + i;
                    let row = c
                        .query_one(&stmt, &[&v])
                        .await
                        .unwrap_or_else(|e| panic!("client {client_no}, execution {i}: {e}"));
                    assert_eq!(
                        row.get::<_, i32>(0),
                        v + 1,
                        "client {client_no}, execution {i}"
                    );
                    assert!(
                        row.get::<_, bool>(2),
                        "client {client_no}: a read left the replicas"
                    );
                    seen.insert(row.get::<_, i32>(1));
                }
                seen
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        seen.extend(task.await.expect("client task"));
    }
    assert_eq!(seen, replica_ports());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_names_can_be_reused_after_close() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);

    prepare_run_and_drop_20_statements(&proxy.connect().await).await;

    // The very same name for different statements, through the raw protocol.
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    assert_eq!(
        parse_s1(&mut raw, "SELECT 1").await,
        vec![Reply::ParseComplete, Reply::Ready(b'I')]
    );
    for _ in 0..3 {
        let replies = run_s1(&mut raw).await;
        assert_eq!(
            raw::rows(&replies),
            vec![vec![Some("1".to_owned())]],
            "{replies:?}"
        );
    }
    assert_eq!(
        close_s1(&mut raw).await,
        vec![Reply::CloseComplete, Reply::Ready(b'I')]
    );
    assert_eq!(
        parse_s1(&mut raw, "SELECT 2").await,
        vec![Reply::ParseComplete, Reply::Ready(b'I')]
    );
    for _ in 0..3 {
        let replies = run_s1(&mut raw).await;
        assert_eq!(
            raw::rows(&replies),
            vec![vec![Some("2".to_owned())]],
            "s1 re-prepared after Close must run the new text: {replies:?}"
        );
    }
    // Until it is closed, the name is taken…
    let replies = parse_s1(&mut raw, "SELECT 3").await;
    assert_eq!(error_codes(&replies), ["42P05"], "{replies:?}");
    let replies = run_s1(&mut raw).await;
    assert_eq!(
        raw::rows(&replies),
        vec![vec![Some("2".to_owned())]],
        "{replies:?}"
    );
    // …and once closed, it is gone.
    close_s1(&mut raw).await;
    let replies = run_s1(&mut raw).await;
    assert_eq!(error_codes(&replies), ["26000"], "{replies:?}");
}

/// tokio-postgres closes a dropped Statement and names the next one afresh.
async fn prepare_run_and_drop_20_statements(c: &Client) {
    for round in 0..20i32 {
        let stmt = c
            .prepare("SELECT $1::int * 2, inet_server_port()")
            .await
            .expect("prepare");
        for i in 0..3i32 {
            let row = c.query_one(&stmt, &[&(round + i)]).await.expect("execute");
            assert_eq!(row.get::<_, i32>(0), (round + i) * 2);
        }
        drop(stmt);
    }
}

/// Parse of `sql` as statement `s1`, and Sync: the replies.
async fn parse_s1(raw: &mut RawConn, sql: &str) -> Vec<Reply> {
    let mut out = BytesMut::new();
    raw::parse(&mut out, "s1", sql);
    raw::sync(&mut out);
    raw.exchange(&out).await
}

/// Bind and Execute of statement `s1`, and Sync: the replies.
async fn run_s1(raw: &mut RawConn) -> Vec<Reply> {
    let mut out = BytesMut::new();
    raw::bind_execute(&mut out, "s1");
    raw::sync(&mut out);
    raw.exchange(&out).await
}

/// Close of statement `s1`, and Sync: the replies.
async fn close_s1(raw: &mut RawConn) -> Vec<Reply> {
    let mut out = BytesMut::new();
    raw::close(&mut out, "s1");
    raw::sync(&mut out);
    raw.exchange(&out).await
}

fn error_codes(replies: &[Reply]) -> Vec<String> {
    raw::errors(replies)
        .into_iter()
        .map(|(code, _)| code)
        .collect()
}

/// PostgreSQL names the client's statement in these errors; the names pgroute gives statements
/// on the servers are its own business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_errors_name_the_clients_statement() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let mut raw = RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    let mut out = BytesMut::new();
    raw::parse(&mut out, "dup", "SELECT 1");
    raw::sync(&mut out);
    raw::parse(&mut out, "dup", "SELECT 2");
    raw::sync(&mut out);
    raw::bind_execute(&mut out, "never_prepared");
    raw::sync(&mut out);
    let replies = raw.exchange(&out).await;
    assert_eq!(
        raw::errors(&replies),
        [
            ("42P05", "prepared statement \"dup\" already exists"),
            (
                "26000",
                "prepared statement \"never_prepared\" does not exist"
            ),
        ]
        .map(|(code, message)| (code.to_owned(), message.to_owned())),
        "{replies:?}"
    );
}

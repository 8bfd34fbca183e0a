//! Extended protocol details: pipelines, errors that discard the rest of a batch up to Sync, Close
//! after an error, COPY through the extended protocol and portals with row limits.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mixed_queries_from_one_client_are_all_answered() {
    let proxy = start("");
    let client = proxy.connect().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS proto_pipe; CREATE TABLE proto_pipe(id int PRIMARY KEY)",
        )
        .await
        .expect("create");
    for round in 0..3 {
        let futures = (0..20i32).map(|i| pipelined_query(&client, round * 100 + i, i));
        let results = tokio::time::timeout(PATIENCE, futures::future::join_all(futures))
            .await
            .expect("every pipelined query answered within 10 s");
        for (i, delta) in results {
            assert_eq!(delta, 0, "round {round}, query {i}");
        }
    }
    assert_eq!(on_primary("SELECT count(*) FROM proto_pipe"), "15");
    assert_eq!(
        simple_value(&client, "SELECT count(*) FROM proto_pipe").await,
        "15"
    );
}

/// Query `i` of a round of 20 sent without waiting: an insert, a simple Query or an extended
/// read, by `i % 4`. Returns `i` and how far the answer is from what it should be (0).
async fn pipelined_query(client: &Client, id: i32, i: i32) -> (i32, i32) {
    match i % 4 {
        0 => {
            let row = client
                .query_one("INSERT INTO proto_pipe VALUES ($1) RETURNING id", &[&id])
                .await
                .unwrap_or_else(|e| panic!("insert {id}: {e}"));
            (i, row.get::<_, i32>(0) - id)
        }
        1 => {
            let rows = client
                .simple_query(&format!("SELECT {id} + 1"))
                .await
                .unwrap_or_else(|e| panic!("simple {id}: {e}"));
            let v = rows
                .iter()
                .find_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0),
                    _ => None,
                })
                .expect("a row")
                .parse::<i32>()
                .unwrap();
            (i, v - id - 1)
        }
        _ => {
            let row = client
                .query_one("SELECT $1::int * 2", &[&id])
                .await
                .unwrap_or_else(|e| panic!("read {id}: {e}"));
            (i, row.get::<_, i32>(0) - id * 2)
        }
    }
}

/// A query parameter, for arrays of them built ahead of a `join!`.
type Param<'a> = &'a (dyn ToSql + Sync);

/// Pipelined requests where the first fails: only that one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_a_pipeline_fails_only_its_own_request() {
    let proxy = start("");
    let client = proxy.connect().await;
    for round in 0..5 {
        let (zero, after): (i32, &str) = (0, "after");
        let (p_zero, p_round, p_after): ([Param; 1], [Param; 1], [Param; 1]) =
            ([&zero], [&round], [&after]);
        let (bad, second, simple, fourth) = tokio::time::timeout(PATIENCE, async {
            tokio::join!(
                client.query_one("SELECT 1 / $1::int", &p_zero),
                client.query_one("SELECT $1::int + 1", &p_round),
                client.simple_query("SELECT 1/0; SELECT 2"),
                client.query_one("SELECT $1::text", &p_after),
            )
        })
        .await
        .expect("answered within 10 s");
        let bad = bad.expect_err("division by zero");
        assert_eq!(code_of(&bad), Some(&SqlState::DIVISION_BY_ZERO));
        assert_eq!(second.expect("second").get::<_, i32>(0), round + 1);
        let simple = simple.expect_err("a failing statement stops its simple Query");
        assert_eq!(code_of(&simple), Some(&SqlState::DIVISION_BY_ZERO));
        assert_eq!(fourth.expect("fourth").get::<_, String>(0), "after");
    }
}

/// One extended batch (a single Sync) whose first statement fails: the server skips the rest up
/// to Sync, and the next batch works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_discards_the_rest_of_the_batch_until_sync() {
    let proxy = start("");
    let mut raw = raw::RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    for round in 0..5 {
        let mut out = BytesMut::new();
        raw::statement(&mut out, "SELECT 1/0");
        raw::statement(&mut out, "SELECT 2");
        raw::sync(&mut out);
        raw::statement(&mut out, &format!("SELECT {round}"));
        raw::sync(&mut out);
        let replies = raw::codes_only(raw.exchange(&out).await);
        use raw::Reply::*;
        assert_eq!(
            replies,
            vec![
                // `1/0` is folded when the statement is planned, at Bind.
                ParseComplete,
                raw::Reply::error("22012"),
                Ready(b'I'),
                ParseComplete,
                BindComplete,
                Row(vec![Some(round.to_string())]),
                Complete("SELECT 1".into()),
                Ready(b'I'),
            ],
            "round {round}"
        );
    }
}

/// A Close after an error in the same batch is skipped by PostgreSQL, so the statement it names
/// still exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_skipped_after_an_error_leaves_the_statement() {
    let proxy = start("");
    // What PostgreSQL does, straight to the primary; then the same through pgroute.
    for (target, port) in [("PostgreSQL", cluster().port(0)), ("pgroute", proxy.port)] {
        close_skipped_after_an_error(target, port).await;
    }
}

async fn close_skipped_after_an_error(target: &str, port: u16) {
    let mut raw = raw::RawConn::connect(port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    use raw::Reply::*;
    let mut out = BytesMut::new();
    raw::parse(&mut out, "proto_kept", "SELECT 'kept'");
    raw::sync(&mut out);
    assert_eq!(raw.exchange(&out).await, vec![ParseComplete, Ready(b'I')]);
    let mut out = BytesMut::new();
    raw::statement(&mut out, "SELECT 1/0");
    raw::close(&mut out, "proto_kept");
    raw::sync(&mut out);
    assert_eq!(
        raw::codes_only(raw.exchange(&out).await),
        vec![ParseComplete, raw::Reply::error("22012"), Ready(b'I')],
        "{target}: the Close is discarded with the rest of the batch"
    );
    let mut out = BytesMut::new();
    raw::bind_execute(&mut out, "proto_kept");
    raw::sync(&mut out);
    assert_eq!(
        raw.exchange(&out).await,
        vec![
            BindComplete,
            Row(vec![Some("kept".into())]),
            Complete("SELECT 1".into()),
            Ready(b'I')
        ],
        "{target}: the skipped Close must leave proto_kept prepared"
    );
}

/// COPY FROM STDIN through the extended protocol, as libpq and tokio-postgres send it: Bind,
/// Execute, Sync, CopyData…, CopyDone, Sync. PostgreSQL ignores a Sync received in copy-in
/// mode, so the two Syncs get one ReadyForQuery; the next statement must get exactly its own
/// replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copy_in_gets_one_ready_for_query_and_the_next_statement_its_own_replies() {
    on_primary(
        "DROP TABLE IF EXISTS proto_raw_copy;\n\
         CREATE TABLE proto_raw_copy(id int);\n\
         ALTER TABLE proto_raw_copy OWNER TO app;",
    );
    let proxy = start("");
    for (target, port) in [("PostgreSQL", cluster().port(0)), ("pgroute", proxy.port)] {
        use raw::Reply::*;
        let mut raw = raw::RawConn::connect(port, USER, Some(PASSWORD), "postgres")
            .await
            .expect("raw connect");
        let mut out = BytesMut::new();
        raw::statement(&mut out, "COPY proto_raw_copy FROM STDIN");
        raw::sync(&mut out);
        raw.send(&out).await;
        let replies = raw.read_until(|r| *r == CopyIn).await;
        assert_eq!(
            replies,
            vec![ParseComplete, BindComplete, CopyIn],
            "{target}"
        );
        let mut out = BytesMut::new();
        raw::copy_data(&mut out, b"1\n2\n3\n");
        raw::copy_done(&mut out);
        raw::sync(&mut out);
        raw.send(&out).await;
        let replies = raw.read_until(|r| matches!(r, Ready(_))).await;
        assert_eq!(
            replies,
            vec![Complete("COPY 3".into()), Ready(b'I')],
            "{target}"
        );
        for i in 0..3 {
            let mut out = BytesMut::new();
            raw::query(&mut out, &format!("SELECT 'next {i}'"));
            raw.send(&out).await;
            let replies = raw.read_until(|r| matches!(r, Ready(_))).await;
            assert_eq!(
                replies,
                vec![
                    Row(vec![Some(format!("next {i}"))]),
                    Complete("SELECT 1".into()),
                    Ready(b'I')
                ],
                "{target}: the replies to query {i} after an extended-protocol COPY"
            );
        }
    }
    assert_eq!(on_primary("SELECT count(*) FROM proto_raw_copy"), "6");
}

/// After an error in an extended-protocol COPY the server discards everything up to the
/// client's next Sync: until that Sync the connection is the client's, not the pool's. With
/// one primary connection, another client's write waits for it and then runs normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_extended_copy_keeps_its_connection_until_the_clients_sync() {
    use raw::Reply::*;
    on_primary(
        "DROP TABLE IF EXISTS proto_raw_copy_fail;\n\
         CREATE TABLE proto_raw_copy_fail(id int);\n\
         ALTER TABLE proto_raw_copy_fail OWNER TO app;",
    );
    let proxy = start("[pool]\nmax_size = 1\ncheckout_timeout = \"8s\"\n");
    let mut copier = raw::RawConn::connect(proxy.port, USER, Some(PASSWORD), "postgres")
        .await
        .expect("raw connect");
    let mut out = BytesMut::new();
    raw::statement(&mut out, "COPY proto_raw_copy_fail FROM STDIN");
    raw::sync(&mut out);
    copier.send(&out).await;
    let replies = copier.read_until(|r| *r == CopyIn).await;
    assert_eq!(replies, vec![ParseComplete, BindComplete, CopyIn]);
    let mut out = BytesMut::new();
    raw::copy_data(&mut out, b"1\nnot-a-number\n");
    copier.send(&out).await;
    let replies = raw::codes_only(copier.read_until(|r| matches!(r, Error { .. })).await);
    assert_eq!(replies, vec![raw::Reply::error("22P02")]);

    // The copier has its error but has not sent its Sync yet: another client's write.
    let other = proxy.connect().await;
    let write = tokio::spawn(async move {
        tokio::time::timeout(
            PATIENCE,
            other.simple_query("INSERT INTO proto_raw_copy_fail VALUES (7)"),
        )
        .await
        .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = BytesMut::new();
    raw::copy_data(&mut out, b"2\n");
    raw::copy_fail(&mut out, "client gives up");
    raw::sync(&mut out);
    copier.send(&out).await;
    let replies = copier.read_until(|r| matches!(r, Ready(_))).await;
    assert_eq!(replies, vec![Ready(b'I')], "the copier's Sync is answered");
    assert_eq!(
        write.await.expect("join"),
        Ok(Ok(())),
        "the other client's write ran once the copier had synced"
    );
    // The copier's session goes on. (Its read may go to a replica that has not replayed the
    // other client's write yet: that write is not the copier's own, so the count is read on
    // the primary.)
    let replies = copier
        .exchange(&{
            let mut out = BytesMut::new();
            raw::query(&mut out, "SELECT 'goes on'");
            out
        })
        .await;
    assert_eq!(raw::rows(&replies), vec![vec![Some("goes on".to_owned())]]);
    assert_eq!(on_primary("SELECT count(*) FROM proto_raw_copy_fail"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_with_row_limits_inside_a_transaction() {
    let proxy = start("");
    let mut client = proxy.connect().await;
    for round in 0..3 {
        let tx = client.transaction().await.expect("BEGIN");
        let stmt = tx
            .prepare("SELECT n, inet_server_port() FROM generate_series(1, $1::int) AS n")
            .await
            .expect("prepare");
        let total = 10 + round;
        let portal = tx.bind(&stmt, &[&total]).await.expect("bind");
        let other = tx
            .bind(&stmt, &[&2i32])
            .await
            .expect("bind a second portal");
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..20 {
            let rows = tx.query_portal(&portal, 3).await.expect("execute portal");
            sizes.push(rows.len());
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                got.push(r.get::<_, i32>(0));
                assert_eq!(r.get::<_, i32>(1), primary_port());
            }
            // Interleaved with the other portal.
            let o = tx.query_portal(&other, 1).await.expect("other portal");
            assert!(o.len() <= 1);
        }
        assert_eq!(got, (1..=total).collect::<Vec<_>>(), "sizes {sizes:?}");
        tx.commit().await.expect("COMMIT");
    }
}

//! Prepared statements: SQL-level PREPARE, EXECUTE and DEALLOCATE, and protocol-level statements
//! closed and prepared again.

use super::*;

/// SQL-level PREPARE / EXECUTE / DEALLOCATE, in one Query and across Queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_execute_deallocate_work_repeatedly() {
    let proxy = start("");
    let client = proxy.connect().await;
    for round in 0..10 {
        let rows = simple_rows(
            &client,
            "PREPARE proto_p AS SELECT $1::int * 2; EXECUTE proto_p(21); DEALLOCATE proto_p;",
        )
        .await;
        assert_eq!(rows, vec![vec![Some("42".to_owned())]], "round {round}");
    }
    for round in 0..10 {
        client
            .simple_query("PREPARE proto_q(int) AS SELECT $1 + 1, pg_backend_pid()")
            .await
            .unwrap_or_else(|e| panic!("PREPARE, round {round}: {e}"));
        let mut pids = BTreeSet::new();
        for i in 0..5 {
            let rows = simple_rows(&client, &format!("EXECUTE proto_q({i})")).await;
            assert_eq!(rows[0][0].as_deref(), Some((i + 1).to_string().as_str()));
            pids.insert(rows[0][1].clone().unwrap());
            // A read in between must not take the session off the connection holding proto_q.
            client.query_one("SELECT 1", &[]).await.expect("read");
        }
        assert_eq!(pids.len(), 1, "EXECUTE ran on one backend: {pids:?}");
        client
            .simple_query("DEALLOCATE proto_q")
            .await
            .unwrap_or_else(|e| panic!("DEALLOCATE, round {round}: {e}"));
    }
    let err = client
        .simple_query("EXECUTE proto_q(1)")
        .await
        .expect_err("deallocated");
    assert_eq!(
        code_of(&err),
        Some(&SqlState::UNDEFINED_PSTATEMENT),
        "{err}"
    );
}

/// tokio-postgres closes dropped statements; preparing (the same text) again works, also from
/// other sessions that share the server-side statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_statements_can_be_prepared_again() {
    let proxy = start("");
    let a = proxy.connect().await;
    let b = proxy.connect().await;
    for round in 0..30i32 {
        let sa = a.prepare("SELECT $1::int * 3").await.expect("prepare a");
        let sb = b.prepare("SELECT $1::int * 3").await.expect("prepare b");
        assert_eq!(
            a.query_one(&sa, &[&round])
                .await
                .expect("a")
                .get::<_, i32>(0),
            round * 3
        );
        drop(sa);
        // b's statement lives on after a closed its own.
        assert_eq!(
            b.query_one(&sb, &[&round])
                .await
                .expect("b")
                .get::<_, i32>(0),
            round * 3
        );
        if round % 2 == 0 {
            drop(sb);
        } else {
            std::mem::forget(sb);
        }
    }
}

/// After `DEALLOCATE ALL` (and `DISCARD ALL`), a statement prepared before is gone, as in
/// PostgreSQL: 26000. Preparing again works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deallocate_all_forgets_protocol_level_statements() {
    let proxy = start("");
    let client = proxy.connect().await;
    for reset in ["DEALLOCATE ALL", "DISCARD ALL"] {
        let stmt = client
            .prepare("SELECT $1::int + 5, inet_server_port()")
            .await
            .expect("prepare");
        for i in 0..4i32 {
            let row = client.query_one(&stmt, &[&i]).await.expect("execute");
            assert_eq!(row.get::<_, i32>(0), i + 5);
        }
        client.simple_query(reset).await.expect(reset);
        for i in 0..4i32 {
            let err = client
                .query_one(&stmt, &[&i])
                .await
                .expect_err("statement deallocated");
            assert_eq!(
                code_of(&err),
                Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
                "after {reset}, execution {i}: {err}"
            );
        }
        let again = client
            .prepare("SELECT $1::int + 5, inet_server_port()")
            .await
            .expect("prepare again");
        for i in 0..6i32 {
            let row = client
                .query_one(&again, &[&i])
                .await
                .expect("execute again");
            assert_eq!(row.get::<_, i32>(0), i + 5);
        }
    }
}

//! Every kind of write lands on the primary: DML, DDL, side-effect functions, locking reads,
//! writing CTEs, SELECT INTO, CALL and DO, and text the server cannot parse.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_update_delete_returning_run_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_dml (id int PRIMARY KEY, v text)")
        .await
        .expect("CREATE TABLE");
    let primary = (primary_port(), false);
    for (what, sql) in [
        (
            "INSERT",
            "INSERT INTO rt_dml VALUES (1, 'a'), (2, 'b') RETURNING inet_server_port(), pg_is_in_recovery()",
        ),
        (
            "UPDATE",
            "UPDATE rt_dml SET v = 'c' WHERE id = 2 RETURNING inet_server_port(), pg_is_in_recovery()",
        ),
        (
            "DELETE",
            "DELETE FROM rt_dml WHERE id = 1 RETURNING inet_server_port(), pg_is_in_recovery()",
        ),
    ] {
        let rows = c.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!rows.is_empty(), "{what} returned no row");
        for row in rows {
            let ran_on: (i32, bool) = (row.get(0), row.get(1));
            assert_eq!(ran_on, primary, "{what} … RETURNING ran on the wrong node");
        }
    }
    // The same through the simple protocol.
    let rows = simple_rows(
        &c,
        "INSERT INTO rt_dml VALUES (3, 'd') RETURNING inet_server_port()",
    )
    .await;
    assert_eq!(rows, vec![vec![Some(primary_port().to_string())]]);
    assert_eq!(
        on_primary("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM rt_dml"),
        "2=c,3=d"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_runs_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    // A replica refuses every one of these with 25006 (read-only transaction).
    for sql in [
        "CREATE TABLE rt_ddl (id int)",
        "ALTER TABLE rt_ddl ADD COLUMN v text",
        "CREATE INDEX rt_ddl_v ON rt_ddl (v)",
        "CREATE VIEW rt_ddl_view AS SELECT id FROM rt_ddl",
        "COMMENT ON TABLE rt_ddl IS 'made through pgroute'",
    ] {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Extended protocol too.
    c.execute("CREATE TABLE rt_ddl_extended (id int)", &[])
        .await
        .expect("CREATE TABLE through the extended protocol");
    assert_eq!(
        on_primary(
            "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = 'rt_ddl'::regclass \
             AND attname = 'v'), to_regclass('rt_ddl_v') IS NOT NULL, \
             to_regclass('rt_ddl_view') IS NOT NULL, obj_description('rt_ddl'::regclass), \
             to_regclass('rt_ddl_extended') IS NOT NULL"
        ),
        "1|t|t|made through pgroute|t"
    );
    c.batch_execute("DROP VIEW rt_ddl_view; DROP TABLE rt_ddl, rt_ddl_extended")
        .await
        .expect("DROP");
    assert_eq!(
        on_primary(
            "SELECT to_regclass('rt_ddl') IS NULL AND to_regclass('rt_ddl_extended') IS NULL"
        ),
        "t"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_and_advisory_lock_calls_run_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    sequence_calls_run_on_primary(&c).await;
    advisory_lock_calls_run_on_primary(&c).await;
}

/// nextval and setval run on the primary, where the sequence moves.
async fn sequence_calls_run_on_primary(c: &Client) {
    c.batch_execute("CREATE SEQUENCE rt_seq")
        .await
        .expect("CREATE SEQUENCE");
    caught_up();
    for expected in 1..=3i64 {
        let row = c
            .query_one("SELECT nextval('rt_seq'), inet_server_port()", &[])
            .await
            .expect("nextval");
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i32>(1)),
            (expected, primary_port())
        );
    }
    let row = c
        .query_one("SELECT setval('rt_seq', 10), inet_server_port()", &[])
        .await
        .expect("setval");
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i32>(1)),
        (10, primary_port())
    );
    assert_eq!(on_primary("SELECT last_value FROM rt_seq"), "10");
}

/// Transaction- and session-level advisory locks are taken (and released) on the primary.
async fn advisory_lock_calls_run_on_primary(c: &Client) {
    let advisory_locks = |key: u32| {
        on_primary(&format!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {key} AND granted"))
    };
    let primary = Some(primary_port().to_string());

    // A transaction-level advisory lock, inside a transaction.
    c.batch_execute("BEGIN").await.expect("BEGIN");
    let rows = simple_rows(c, "SELECT pg_advisory_xact_lock(7301), inet_server_port()").await;
    assert_eq!(
        rows[0][1], primary,
        "pg_advisory_xact_lock in a transaction"
    );
    assert_eq!(
        advisory_locks(7301),
        "1",
        "the xact lock should be held on the primary"
    );
    c.batch_execute("COMMIT").await.expect("COMMIT");
    assert_eq!(
        advisory_locks(7301),
        "0",
        "COMMIT should release the xact lock"
    );

    // The same outside a transaction, where nothing but the classifier sends it to the primary.
    let rows = simple_rows(c, "SELECT pg_advisory_xact_lock(7302), inet_server_port()").await;
    assert_eq!(
        rows[0][1], primary,
        "pg_advisory_xact_lock outside a transaction"
    );

    // A session-level lock, then its unlock on the same server connection.
    let rows = simple_rows(c, "SELECT pg_try_advisory_lock(7303), inet_server_port()").await;
    assert_eq!(
        rows[0],
        vec![Some("t".into()), primary.clone()],
        "pg_try_advisory_lock"
    );
    assert_eq!(
        advisory_locks(7303),
        "1",
        "the session lock should be held on the primary"
    );
    let rows = simple_rows(c, "SELECT pg_advisory_unlock(7303), inet_server_port()").await;
    assert_eq!(
        rows[0],
        vec![Some("t".into()), primary],
        "pg_advisory_unlock must run where the lock was taken"
    );
    assert_eq!(
        advisory_locks(7303),
        "0",
        "the session lock should be released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_selects_and_writing_ctes_run_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute("CREATE TABLE rt_lock (id int PRIMARY KEY); INSERT INTO rt_lock VALUES (1)")
        .await
        .expect("setup");
    // Wrongly sent to a caught-up replica, these would fail with 25006 instead of finding no row.
    caught_up();
    for clause in [
        "FOR UPDATE",
        "FOR NO KEY UPDATE",
        "FOR SHARE",
        "FOR KEY SHARE",
        "FOR UPDATE NOWAIT",
        "FOR UPDATE SKIP LOCKED",
    ] {
        let sql = format!("SELECT id, inet_server_port() FROM rt_lock WHERE id = 1 {clause}");
        let row = c
            .query_one(sql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(row.get::<_, i32>(1), primary_port(), "{sql}");
    }
    let row = c
        .query_one(
            "WITH x AS (INSERT INTO rt_lock VALUES (2) RETURNING id) \
             SELECT inet_server_port(), id FROM x",
            &[],
        )
        .await
        .expect("writing CTE");
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, i32>(1)),
        (primary_port(), 2)
    );
    assert_eq!(on_primary("SELECT count(*) FROM rt_lock WHERE id = 2"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_into_creates_its_table_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute(
        "SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery INTO rt_select_into",
    )
    .await
    .expect("SELECT … INTO (simple protocol)");
    c.execute(
        "SELECT inet_server_port() AS port, pg_is_in_recovery() AS in_recovery \
         INTO rt_select_into_extended",
        &[],
    )
    .await
    .expect("SELECT … INTO (extended protocol)");
    let expected = format!("{}|f", primary_port());
    assert_eq!(
        on_primary("SELECT port, in_recovery FROM rt_select_into"),
        expected
    );
    assert_eq!(
        on_primary("SELECT port, in_recovery FROM rt_select_into_extended"),
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_do_run_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let c = proxy.connect().await;
    c.batch_execute(
        "CREATE TABLE rt_proc (id int PRIMARY KEY, port int);
         CREATE PROCEDURE rt_proc_insert(i int) LANGUAGE sql
             AS $$ INSERT INTO rt_proc VALUES (i, inet_server_port()) $$",
    )
    .await
    .expect("setup");
    c.batch_execute("CALL rt_proc_insert(1)")
        .await
        .expect("CALL (simple)");
    c.execute("CALL rt_proc_insert(2)", &[])
        .await
        .expect("CALL (extended)");
    c.batch_execute("DO $$ BEGIN INSERT INTO rt_proc VALUES (3, inet_server_port()); END $$")
        .await
        .expect("DO");
    let p = primary_port();
    assert_eq!(
        on_primary("SELECT string_agg(id || ':' || port, ',' ORDER BY id) FROM rt_proc"),
        format!("1:{p},2:{p},3:{p}")
    );
}

#[test]
fn psql_multi_statement_with_a_write_runs_on_primary() {
    let proxy = start_proxy(cluster(), PATIENT_MONITOR);
    let (ok, _, err) = psql(
        &proxy,
        &["-c", "CREATE TABLE rt_psql_multi (id int, port int)"],
    );
    assert!(ok, "CREATE TABLE: {err}");
    let (ok, out, err) = psql(
        &proxy,
        &[
            "-c",
            "SELECT inet_server_port(); \
             INSERT INTO rt_psql_multi VALUES (1, inet_server_port()) RETURNING port",
        ],
    );
    assert!(ok, "multi-statement -c: {err}");
    let p = primary_port();
    assert_eq!(
        out,
        format!("{p}\n{p}"),
        "both statements should run on the primary"
    );
    assert_eq!(
        on_primary("SELECT port FROM rt_psql_multi WHERE id = 1"),
        p.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_the_servers_own_syntax_error() {
    let proxy = start_proxy(cluster(), REPLICA_READS);
    let c = proxy.connect().await;
    let own = direct(0).await;
    for sql in [
        "SELEKT inet_server_port()",
        "SELECT 'unterminated",
        "SELECT FROM WHERE ;;(",
    ] {
        let via = c.simple_query(sql).await.expect_err("garbage must fail");
        let via = db_error(&via);
        assert_eq!(via.code(), &SqlState::SYNTAX_ERROR, "{sql}: {via}");
        let theirs = own
            .simple_query(sql)
            .await
            .expect_err("garbage fails on the server");
        assert_eq!(
            error_fields(via),
            error_fields(db_error(&theirs)),
            "{sql}: the error should be PostgreSQL's own"
        );
        // Extended protocol: the Parse fails on the server.
        let via = c.query(sql, &[]).await.expect_err("garbage must fail");
        assert_eq!(
            db_error(&via).code(),
            &SqlState::SYNTAX_ERROR,
            "{sql} (extended)"
        );
        // The session goes on.
        assert!(replica_ports().contains(&server_of(&c).await.0));
    }
    let via = c
        .simple_query("SELEKT 1")
        .await
        .expect_err("garbage must fail");
    assert_eq!(
        db_error(&via).message(),
        "syntax error at or near \"SELEKT\""
    );
}

//! Statements that are provably reads.

use super::*;

#[test]
fn selects_are_read() {
    assert_all_read(&[
        "SELECT 1",
        "SELECT * FROM t",
        "SELECT a, b FROM t WHERE c = 1 ORDER BY a LIMIT 10 OFFSET 5",
        "SELECT * FROM t1 JOIN t2 USING (a) LEFT JOIN t3 ON t3.id = t1.id",
        "SELECT * FROM t WHERE a IN (SELECT b FROM u) AND EXISTS (SELECT 1 FROM v)",
        "SELECT * FROM (SELECT a FROM t) s",
        "SELECT 1 UNION SELECT 2 UNION ALL SELECT 3",
        "SELECT a FROM t GROUP BY a HAVING count(*) > 1 INTERSECT SELECT a FROM u EXCEPT SELECT 3",
        "SELECT rank() OVER (PARTITION BY a ORDER BY b) FROM t",
        "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b",
        "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id) s",
        "SELECT x::text, CASE WHEN a THEN 1 ELSE 2 END FROM t",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM t WHERE id = $1",
    ]);
}

#[test]
fn server_probe_selects_are_read() {
    assert_all_read(&[
        "SELECT pg_is_in_recovery()",
        "SELECT inet_server_port()",
        "SELECT now()",
        "SELECT pg_sleep(1)",
        "SELECT pg_last_wal_replay_lsn()",
        "SELECT txid_current_if_assigned()",
        "SELECT lo_get(1)",
        "SELECT * FROM pg_listening_channels()",
        "SELECT pg_notification_queue_usage()",
    ]);
}

#[test]
fn ctes_without_writes_are_read() {
    assert_all_read(&[
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "WITH x AS (SELECT 1), y AS (SELECT * FROM x) SELECT * FROM y",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
        "WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x",
    ]);
}

#[test]
fn values_table_and_show_are_read() {
    assert_all_read(&[
        "VALUES (1), (2)",
        "TABLE t",
        "TABLE ONLY s.t *",
        "SHOW search_path",
        "SHOW ALL",
        "SHOW TIME ZONE",
        "SHOW TRANSACTION ISOLATION LEVEL",
        "SHOW SESSION AUTHORIZATION",
        "SHOW pgroute.lsn",
        "SHOW \"pgroute.lsn\"",
    ]);
}

#[test]
fn table_with_other_clauses_is_an_unknown_write() {
    // The TABLE fallback only knows `TABLE [ONLY] name [*]`.
    let c = classify("TABLE t ORDER BY 1");
    assert_eq!((c.target, c.parsed), (Target::Write, false));
}

#[test]
fn explain_of_read_is_read() {
    assert_all_read(&[
        "EXPLAIN SELECT 1",
        "EXPLAIN ANALYZE SELECT * FROM t",
        "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
        "EXPLAIN VALUES (1)",
    ]);
}

#[test]
fn explain_of_write_is_write() {
    assert_all_write(&[
        "EXPLAIN INSERT INTO t VALUES (1)",
        "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
        "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t",
        "EXPLAIN (ANALYZE) UPDATE t SET a = 1",
        "EXPLAIN ANALYZE SELECT nextval('s')",
        "EXPLAIN SELECT * FROM t FOR UPDATE",
    ]);
    // EXPLAIN ANALYZE executes CREATE TABLE AS, so the temp table is real.
    assert_pin(
        "EXPLAIN ANALYZE CREATE TEMP TABLE x AS SELECT 1",
        Some(PinReason::TempTable),
    );
}

#[test]
fn empty_and_comment_only_text_is_read_with_no_statements() {
    for sql in [
        "",
        "   ",
        "\n\t ",
        "-- x",
        "/* x */",
        ";",
        " ; ; ",
        "-- a\n/* b */ ;",
    ] {
        let c = classify(sql);
        assert_eq!(c.target, Target::Read, "{sql:?}");
        assert_eq!(c.statements, 0, "{sql:?}");
        assert!(c.parsed, "{sql:?}");
        assert_eq!((c.txn, c.pin, c.params.len()), (None, None, 0), "{sql:?}");
    }
}

//! Statements that write, or may: DML, DDL, COPY, locking, cursors, session and transaction
//! statements, and whatever is not known to be a read.

use super::*;

#[test]
fn cursors_are_write() {
    assert_all_write(&[
        "DECLARE c CURSOR FOR SELECT 1",
        "FETCH 10 FROM c",
        "MOVE NEXT IN c",
        "CLOSE c",
        "CLOSE ALL",
    ]);
    assert_all_read(&[
        "SELECT \"fetch\", \"close\" FROM cursors",
        "SELECT * FROM pg_cursors",
    ]);
}

#[test]
fn dml_is_write() {
    assert_all_write(&[
        "INSERT INTO t VALUES (1)",
        "INSERT INTO t SELECT * FROM u",
        "INSERT INTO t VALUES (1) RETURNING id",
        "UPDATE t SET a = 1 WHERE b = 2",
        "DELETE FROM t WHERE a = 1",
        "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
        "TRUNCATE t",
        "insert into t values (1)",
    ]);
    assert_all_read(&[
        "SELECT inserted, updated FROM audit",
        "SELECT * FROM \"delete\"",
        "SELECT 'INSERT INTO t VALUES (1)'",
    ]);
}

#[test]
fn ddl_is_write() {
    assert_all_write(&[
        "CREATE TABLE t (a int)",
        "CREATE UNLOGGED TABLE t (a int)",
        "CREATE TABLE t AS SELECT 1",
        "CREATE INDEX i ON t (a)",
        "CREATE VIEW v AS SELECT 1",
        "CREATE MATERIALIZED VIEW mv AS SELECT 1",
        "CREATE SCHEMA s",
        "CREATE EXTENSION hstore",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        "ALTER TABLE t ADD COLUMN b int",
        "DROP TABLE t",
        "COMMENT ON TABLE t IS 'x'",
        "GRANT SELECT ON t TO bob",
        "REVOKE SELECT ON t FROM bob",
        "SECURITY LABEL ON TABLE t IS 'x'",
    ]);
    assert_all_read(&[
        "SELECT * FROM pg_tables",
        "SELECT 'CREATE TABLE x (a int)'",
        "SELECT \"create\", \"drop\" FROM t",
    ]);
}

#[test]
fn copy_is_write_in_both_directions() {
    assert_all_write(&[
        "COPY t TO STDOUT",
        "COPY t FROM STDIN",
        "COPY (SELECT 1) TO STDOUT WITH (FORMAT csv)",
    ]);
    assert_read("SELECT 'COPY t TO STDOUT'");
}

#[test]
fn call_and_do_are_write() {
    assert_all_write(&[
        "CALL p()",
        "DO $$ BEGIN PERFORM 1; END $$",
        "DO LANGUAGE plpgsql $$ BEGIN END $$",
    ]);
    assert_read("SELECT $$CALL p(); DO $$");
}

#[test]
fn maintenance_is_write() {
    assert_all_write(&[
        "VACUUM t",
        "VACUUM FULL t",
        "VACUUM (ANALYZE) t",
        "ANALYZE t",
        "CLUSTER t",
        "REINDEX TABLE t",
        "REFRESH MATERIALIZED VIEW v",
        "CHECKPOINT",
    ]);
    assert_read("SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NULL");
}

#[test]
fn lock_table_is_write() {
    assert_all_write(&[
        "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        "LOCK t IN SHARE MODE",
    ]);
    assert_read("SELECT * FROM pg_locks");
}

#[test]
fn row_locking_clauses_are_write() {
    assert_all_write(&[
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE",
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t FOR KEY SHARE SKIP LOCKED",
        "SELECT * FROM t FOR UPDATE SKIP LOCKED",
        "SELECT * FROM t FOR SHARE NOWAIT",
        "SELECT 1 FOR UPDATE OF t NOWAIT",
        "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
        "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x",
        "select * from t for update",
    ]);
    assert_all_read(&[
        "SELECT substring('abc' FROM 1 FOR 2)",
        "SELECT * FROM updates",
        "SELECT \"for\", \"update\" FROM t",
        "SELECT for_update FROM t",
        "SELECT 'FOR UPDATE'",
    ]);
}

#[test]
fn select_into_is_write() {
    assert_all_write(&["SELECT 1 INTO t", "SELECT * INTO new_table FROM t"]);
    assert_all_read(&["SELECT 'INTO t'", "SELECT a AS into_col FROM t"]);
    assert_pin("SELECT 1 INTO t", None);
}

#[test]
fn writable_ctes_are_write() {
    assert_all_write(&[
        "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
        "WITH x AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM x",
        "WITH x AS (DELETE FROM t RETURNING a) SELECT * FROM x",
        "WITH x AS (SELECT 1), y AS (INSERT INTO t SELECT * FROM x RETURNING *) SELECT * FROM y",
    ]);
    assert_read("WITH inserts AS (SELECT * FROM insert_log) SELECT * FROM inserts");
}

#[test]
fn notify_listen_unlisten_are_write() {
    assert_all_write(&[
        "NOTIFY chan, 'x'",
        "NOTIFY chan",
        "LISTEN chan",
        "UNLISTEN chan",
        "UNLISTEN *",
    ]);
    assert_read("SELECT * FROM pg_listening_channels()");
}

#[test]
fn sql_level_prepared_statements_are_write() {
    assert_all_write(&[
        "PREPARE s1 AS SELECT 1",
        "EXECUTE s1",
        "EXECUTE s2(1)",
        "DEALLOCATE s1",
        "DEALLOCATE PREPARE s1",
        "DEALLOCATE ALL",
    ]);
    assert_read("SELECT * FROM pg_prepared_statements");
}

#[test]
fn session_statements_are_write() {
    assert_all_write(&[
        "SET search_path TO public",
        "SET LOCAL statement_timeout = 100",
        "RESET ALL",
        "RESET statement_timeout",
        "DISCARD ALL",
        "DISCARD PLANS",
        "SET pgroute.min_lsn = '0/16B3748'",
    ]);
    assert_read("SELECT current_setting('search_path')");
}

#[test]
fn transaction_control_is_write() {
    assert_all_write(&[
        "BEGIN",
        "BEGIN READ ONLY",
        "START TRANSACTION",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT a",
        "RELEASE a",
        "SET TRANSACTION READ ONLY",
    ]);
    assert_all_read(&["SELECT 'BEGIN'", "SELECT * FROM commits"]);
}

#[test]
fn unparseable_text_is_write_and_not_parsed() {
    for sql in [
        "SELEC 1",
        "SELECT * FROM",
        "FOO BAR",
        "SELECT 'abc",
        "SELECT $$x",
        "/* open",
        ")(",
    ] {
        let c = classify(sql);
        assert_eq!(c.target, Target::Write, "{sql:?}");
        assert!(!c.parsed, "{sql:?}");
        assert_eq!(c.statements, 1, "{sql:?}");
    }
}

#[test]
fn statement_kinds_not_listed_as_read_are_write() {
    assert_all_write(&[
        "LOAD 'auto_explain'",
        "IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y",
    ]);
}

use proptest::prelude::*;

use super::functions::{is_side_effect_function, SIDE_EFFECT_FUNCTIONS};
use super::*;

// ---------------------------------------------------------------- helpers

#[track_caller]
fn assert_read(sql: &str) {
    let c = classify(sql);
    assert_eq!(c.target, Target::Read, "expected Read: {sql:?} -> {c:?}");
    assert!(c.parsed, "expected parsed: {sql:?} -> {c:?}");
}

#[track_caller]
fn assert_write(sql: &str) {
    let c = classify(sql);
    assert_eq!(c.target, Target::Write, "expected Write: {sql:?} -> {c:?}");
}

#[track_caller]
fn assert_all_read(sqls: &[&str]) {
    sqls.iter().for_each(|sql| assert_read(sql));
}

#[track_caller]
fn assert_all_write(sqls: &[&str]) {
    sqls.iter().for_each(|sql| assert_write(sql));
}

#[track_caller]
fn assert_txn(sql: &str, txn: Option<TxnControl>) {
    let c = classify(sql);
    assert_eq!(c.txn, txn, "{sql:?} -> {c:?}");
    assert!(c.parsed, "expected parsed: {sql:?} -> {c:?}");
}

#[track_caller]
fn assert_params(sql: &str, params: &[ParamChange]) {
    let c = classify(sql);
    assert_eq!(c.params, params, "{sql:?} -> {c:?}");
    assert!(c.parsed, "expected parsed: {sql:?} -> {c:?}");
}

#[track_caller]
fn assert_pin(sql: &str, pin: Option<PinReason>) {
    let c = classify(sql);
    assert_eq!(c.pin, pin, "{sql:?} -> {c:?}");
}

fn set(name: &str, value: &str) -> ParamChange {
    ParamChange::Set {
        name: name.to_string(),
        value: value.to_string(),
    }
}

fn reset(name: &str) -> ParamChange {
    ParamChange::Reset {
        name: name.to_string(),
    }
}

// ---------------------------------------------------------------- reads

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

// ---------------------------------------------------------------- writes

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

// ---------------------------------------------------------------- functions

/// One concrete name for every pattern in the list.
fn side_effect_examples() -> Vec<String> {
    SIDE_EFFECT_FUNCTIONS
        .iter()
        .map(|pattern| pattern.replace('*', "logical"))
        .collect()
}

#[test]
fn every_listed_function_makes_a_select_write() {
    for name in side_effect_examples() {
        assert_write(&format!("SELECT {name}(1)"));
        assert_write(&format!("SELECT pg_catalog.{name}(1)"));
        assert_write(&format!("SELECT {}(1)", name.to_uppercase()));
    }
    assert_all_write(&[
        "SELECT pg_advisory_unlock(1)",
        "SELECT pg_try_advisory_xact_lock_shared(1)",
        "SELECT pg_stat_reset()",
        "SELECT pg_stat_reset_shared('bgwriter')",
        "SELECT dblink_exec('x')",
        "SELECT pg_create_physical_replication_slot('a')",
        "SELECT pg_create_logical_replication_slot('a', 'b')",
        "SELECT pg_replication_origin_create('x')",
    ]);
}

#[test]
fn side_effect_functions_are_found_in_every_position() {
    assert_all_write(&[
        "SELECT nextval('s')",
        "SELECT * FROM t WHERE id = nextval('s')",
        "SELECT * FROM nextval('s')",
        "SELECT * FROM generate_series(1, 3), nextval('s')",
        "SELECT * FROM ROWS FROM (nextval('s'))",
        "SELECT coalesce(abs(nextval('s')), 0)",
        "SELECT count(*) FROM t WHERE x IN (SELECT currval('s'))",
        "SELECT * FROM (SELECT lastval()) s",
        "WITH a AS (SELECT setval('s', 1)) SELECT * FROM a",
        "SELECT * FROM t GROUP BY a HAVING max(setval('s', 1)) > 0",
        "SELECT * FROM t ORDER BY nextval('s')",
        "SELECT * FROM t JOIN u ON u.id = nextval('s')",
        "SELECT CASE WHEN a THEN pg_notify('c', 'x') END FROM t",
        "SELECT * FROM t, LATERAL (SELECT nextval('s')) s",
        "VALUES (nextval('s'))",
        "SELECT 1 UNION SELECT nextval('s')",
    ]);
}

#[test]
fn function_names_match_case_insensitively_and_qualified() {
    assert_all_write(&[
        "SELECT NEXTVAL('s')",
        "SELECT NextVal('s')",
        "SELECT pg_catalog.nextval('s')",
        "SELECT \"pg_catalog\".\"nextval\"('s')",
        "SELECT pg_catalog . nextval ( 's' )",
        "SELECT nextval\n('s')",
        "SELECT nextval /* c */ ('s')",
    ]);
}

#[test]
fn names_that_only_look_like_side_effect_calls_are_read() {
    assert_all_read(&[
        "SELECT nextval FROM t",
        "SELECT t.nextval FROM t",
        "SELECT 'nextval(1)'",
        "SELECT $$nextval('s')$$",
        "SELECT * FROM t -- nextval('s')",
        "SELECT /* setval('s', 1) */ 1",
        "SELECT my_nextval(1)",
        "SELECT set_config_value(1)",
        "SELECT mydblink(1)",
        "SELECT current_setting('x')",
        "SELECT txid_current_snapshot()",
        "SELECT pg_current_xact_id_if_assigned()",
    ]);
}

#[test]
fn wal_position_functions_are_write_because_they_fail_in_recovery() {
    assert_all_write(&[
        "SELECT pg_current_wal_lsn()",
        "SELECT pg_current_wal_insert_lsn()",
        "SELECT pg_current_wal_flush_lsn()",
    ]);
    assert_all_read(&[
        "SELECT pg_last_wal_replay_lsn()",
        "SELECT pg_last_wal_receive_lsn()",
    ]);
}

#[test]
fn side_effect_list_patterns_are_well_formed() {
    for pattern in SIDE_EFFECT_FUNCTIONS {
        assert_eq!(*pattern, pattern.to_ascii_lowercase(), "{pattern}");
        assert!(pattern.matches('*').count() <= 1, "{pattern}");
    }
    assert!(is_side_effect_function(
        "pg_create_logical_replication_slot"
    ));
    assert!(is_side_effect_function("pg_stat_reset"));
    assert!(!is_side_effect_function("pg_create_replication_slot_x"));
    assert!(!is_side_effect_function("pg_sleep"));
    assert!(
        !is_side_effect_function("NEXTVAL"),
        "callers lower-case first"
    );
}

// ---------------------------------------------------------------- several statements

#[test]
fn several_reads_are_read() {
    let c = classify("SELECT 1; SELECT 2; VALUES (3)");
    assert_eq!((c.target, c.statements, c.parsed), (Target::Read, 3, true));
}

#[test]
fn one_write_among_reads_makes_all_write() {
    assert_all_write(&[
        "SELECT 1; INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (1); SELECT 1",
        "SELECT 1; SELECT nextval('s'); SELECT 2",
    ]);
}

#[test]
fn first_pin_wins() {
    assert_pin(
        "LISTEN a; CREATE TEMP TABLE t (a int)",
        Some(PinReason::Listen),
    );
    assert_pin(
        "CREATE TEMP TABLE t (a int); LISTEN a",
        Some(PinReason::TempTable),
    );
    assert_pin(
        "SELECT 1; SELECT pg_advisory_lock(1)",
        Some(PinReason::AdvisoryLock),
    );
}

#[test]
fn params_are_collected_in_statement_order() {
    assert_params(
        "SET a = 1; SELECT 1; SET b TO 'x'; RESET c; SET LOCAL d = 2",
        &[set("a", "1"), set("b", "'x'"), reset("c")],
    );
}

#[test]
fn first_transaction_control_wins() {
    assert_txn(
        "SELECT 1; BEGIN; COMMIT",
        Some(TxnControl::Begin { read_only: false }),
    );
    assert_txn("COMMIT; BEGIN", Some(TxnControl::Commit));
    let c = classify("BEGIN; SELECT 1; COMMIT");
    assert_eq!((c.target, c.statements), (Target::Write, 3));
}

#[test]
fn an_unparseable_statement_does_not_hide_the_others() {
    let c = classify("SELECT 1; FOO BAR; SET x = 1; BEGIN");
    assert_eq!(
        (c.target, c.statements, c.parsed),
        (Target::Write, 4, false)
    );
    assert_eq!(c.params, [set("x", "1")]);
    assert_eq!(c.txn, Some(TxnControl::Begin { read_only: false }));
}

#[test]
fn mixed_string_reports_everything() {
    let c = classify("SET x = 1; SELECT 1; BEGIN READ ONLY; LISTEN a; DISCARD ALL");
    assert_eq!(c.target, Target::Write);
    assert_eq!(c.txn, Some(TxnControl::Begin { read_only: true }));
    assert_eq!(c.params, [set("x", "1"), ParamChange::ResetAll]);
    assert_eq!(c.pin, Some(PinReason::Listen));
    assert!(!c.releases.is_empty() && c.discard_all && c.parsed);
    assert_eq!(c.statements, 5);
}

#[test]
fn a_function_body_with_semicolons_is_one_statement() {
    let c = classify(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
    );
    assert_eq!((c.target, c.statements, c.txn), (Target::Write, 1, None));
}

// ---------------------------------------------------------------- comments, case, whitespace

#[test]
fn comments_do_not_change_the_result() {
    let pairs = [
        ("/* pgroute.min_lsn=0/16B3748 */ SELECT 1", "SELECT 1"),
        ("-- x\nSELECT 1", "SELECT 1"),
        ("SELECT 1 -- x", "SELECT 1"),
        ("SELECT 1; -- x", "SELECT 1"),
        ("SELECT /* in */ 1", "SELECT 1"),
        ("/* nested /* comment */ still */ SELECT 1", "SELECT 1"),
        (
            "/* SELECT */ INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (1)",
        ),
        ("-- SELECT 1\nDELETE FROM t", "DELETE FROM t"),
        ("/* x */ SET a = 1 -- y", "SET a = 1"),
        ("/* x */ BEGIN -- y", "BEGIN"),
    ];
    for (commented, plain) in pairs {
        assert_eq!(classify(commented), classify(plain), "{commented:?}");
    }
}

#[test]
fn keywords_are_case_insensitive_and_whitespace_is_ignored() {
    assert_all_read(&[
        "select 1",
        "SeLeCt 1",
        "  SELECT 1  ;  ",
        "\n\tSELECT\n1\n;",
        "select 1;;",
    ]);
    assert_all_write(&["InSeRt INTO t VALUES (1)", "\n delete from t ;"]);
    assert_eq!(classify("select 1;;").statements, 1);
    assert_txn(
        "begin read only",
        Some(TxnControl::Begin { read_only: true }),
    );
}

// ---------------------------------------------------------------- session parameters

#[test]
fn set_reports_name_and_verbatim_value() {
    assert_params(
        "SET search_path TO public, \"$user\"",
        &[set("search_path", "public, \"$user\"")],
    );
    assert_params(
        "SET search_path = \"$user\", public",
        &[set("search_path", "\"$user\", public")],
    );
    assert_params(
        "SET application_name = 'x'",
        &[set("application_name", "'x'")],
    );
    assert_params(
        "SET statement_timeout = 5000",
        &[set("statement_timeout", "5000")],
    );
    assert_params(
        "SET SESSION statement_timeout TO 5000",
        &[set("statement_timeout", "5000")],
    );
    assert_params("SET datestyle TO ISO, DMY", &[set("datestyle", "ISO, DMY")]);
    assert_params("SET enable_seqscan = off", &[set("enable_seqscan", "off")]);
    assert_params("SET x = -1.5", &[set("x", "-1.5")]);
    assert_params("SET x.y TO on", &[set("x.y", "on")]);
}

#[test]
fn set_names_are_lower_cased() {
    assert_params("SET Search_Path TO x", &[set("search_path", "x")]);
    assert_params("SET \"Foo\" TO 1", &[set("foo", "1")]);
    assert_params("SET TIMEZONE TO 'UTC'", &[set("timezone", "'UTC'")]);
}

#[test]
fn set_values_keep_the_clients_quoting() {
    assert_params("SET x TO 'it''s'", &[set("x", "'it''s'")]);
    assert_params("SET x TO E'it\\'s\\\\x'", &[set("x", "E'it\\'s\\\\x'")]);
    assert_params("SET x TO U&'d\\0061t\\+000061'", &[set("x", "E'data'")]);
    assert_params("SET x TO \"a\"\"b\"", &[set("x", "\"a\"\"b\"")]);
    assert_params("SET x TO $$a'b$$", &[set("x", "$$a'b$$")]);
    assert_params("SET x TO 'a' -- trailing", &[set("x", "'a'")]);
    assert_params(
        "SET x TO /* c */ 'a' /* d */ , 'b'",
        &[set("x", "'a' , 'b'")],
    );
}

#[test]
fn set_special_forms_map_to_their_parameter() {
    assert_params("SET TIME ZONE 'UTC'", &[set("timezone", "'UTC'")]);
    assert_params("SET SESSION TIME ZONE -7", &[set("timezone", "-7")]);
    assert_params("SET NAMES 'UTF8'", &[set("client_encoding", "'UTF8'")]);
    assert_params("SET SCHEMA 'x'", &[set("search_path", "'x'")]);
    assert_params("SET XML OPTION DOCUMENT", &[set("xmloption", "DOCUMENT")]);
}

#[test]
fn set_to_default_is_a_reset() {
    assert_params(
        "SET statement_timeout TO DEFAULT",
        &[reset("statement_timeout")],
    );
    assert_params("SET search_path = default", &[reset("search_path")]);
    assert_params("SET TIME ZONE DEFAULT", &[reset("timezone")]);
    assert_params("SET TIME ZONE LOCAL", &[reset("timezone")]);
    assert_params("SET NAMES DEFAULT", &[reset("client_encoding")]);
    assert_params("SET SCHEMA DEFAULT", &[reset("search_path")]);
    // A quoted "DEFAULT" is a value, not the keyword.
    assert_params("SET x TO \"DEFAULT\"", &[set("x", "\"DEFAULT\"")]);
}

#[test]
fn reset_forms() {
    assert_params("RESET statement_timeout", &[reset("statement_timeout")]);
    assert_params("RESET pgroute.min_lsn", &[reset("pgroute.min_lsn")]);
    assert_params("RESET TIME ZONE", &[reset("timezone")]);
    assert_params("RESET ALL", &[ParamChange::ResetAll]);
    assert_params("RESET ROLE", &[]);
    assert_params("RESET SESSION AUTHORIZATION", &[]);
}

#[test]
fn set_local_is_not_a_param_change() {
    for sql in [
        "SET LOCAL statement_timeout = 100",
        "SET LOCAL search_path TO x",
        "SET LOCAL TIME ZONE 'UTC'",
        "SET LOCAL pgroute.min_lsn = '0/1'",
        "SET LOCAL SCHEMA 'x'",
        "SET CONSTRAINTS ALL DEFERRED",
    ] {
        assert_params(sql, &[]);
        assert_write(sql);
    }
}

#[test]
fn pgroute_parameters_are_ordinary_param_changes() {
    assert_params(
        "SET pgroute.min_lsn = '0/16B3748'",
        &[set("pgroute.min_lsn", "'0/16B3748'")],
    );
    assert_params(
        "SET pgroute.max_lag = '200ms'",
        &[set("pgroute.max_lag", "'200ms'")],
    );
    assert_params(
        "set PGROUTE.MAX_LAG to '1s'",
        &[set("pgroute.max_lag", "'1s'")],
    );
    assert_read("SHOW pgroute.lsn");
}

#[test]
fn session_characteristics_set_the_default_transaction_params() {
    let c = classify(
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
    );
    assert_eq!(c.txn, None);
    assert!(c.only_session_settings());
    assert_eq!(
        c.params,
        [
            set("default_transaction_isolation", "'serializable'"),
            set("default_transaction_read_only", "on"),
        ]
    );
    assert_params(
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE NOT DEFERRABLE",
        &[
            set("default_transaction_read_only", "off"),
            set("default_transaction_deferrable", "off"),
        ],
    );
    // Plain SET TRANSACTION only affects the current transaction.
    assert_params("SET TRANSACTION READ ONLY", &[]);
}

#[test]
fn discard_all_resets_everything_and_may_unpin() {
    let c = classify("DISCARD ALL");
    assert_eq!(c.params, [ParamChange::ResetAll]);
    assert!(c.discard_all && !c.releases.is_empty() && c.parsed);
    for sql in ["DISCARD PLANS", "DISCARD TEMP", "DISCARD SEQUENCES"] {
        let c = classify(sql);
        assert!(
            !c.discard_all && c.releases.is_empty() && c.params.is_empty(),
            "{sql}"
        );
    }
}

// ---------------------------------------------------------------- transaction control

#[test]
fn begin_forms() {
    let begin = |read_only| Some(TxnControl::Begin { read_only });
    for sql in [
        "BEGIN",
        "BEGIN WORK",
        "BEGIN TRANSACTION",
        "START TRANSACTION",
        "START TRANSACTION READ WRITE",
    ] {
        assert_txn(sql, begin(false));
    }
    for sql in [
        "BEGIN READ ONLY",
        "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
        "BEGIN TRANSACTION READ ONLY, ISOLATION LEVEL SERIALIZABLE",
        "START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY",
        "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
    ] {
        assert_txn(sql, begin(true));
    }
    // "READ" in an isolation level is not an access mode; the last access mode wins.
    assert_txn("BEGIN ISOLATION LEVEL READ COMMITTED", begin(false));
    assert_txn("BEGIN ISOLATION LEVEL READ UNCOMMITTED", begin(false));
    assert_txn("BEGIN READ ONLY, READ WRITE", begin(false));
    assert_txn("BEGIN TRANSACTION DEFERRABLE", begin(false));
    assert_txn("BEGIN NOT DEFERRABLE READ ONLY", begin(true));
}

#[test]
fn commit_forms() {
    for sql in [
        "COMMIT",
        "COMMIT WORK",
        "COMMIT AND CHAIN",
        "COMMIT AND NO CHAIN",
        "END",
        "END TRANSACTION",
        "COMMIT PREPARED 'gid'",
        "PREPARE TRANSACTION 'gid'",
    ] {
        assert_txn(sql, Some(TxnControl::Commit));
    }
}

#[test]
fn rollback_forms() {
    for sql in [
        "ROLLBACK",
        "ROLLBACK WORK",
        "ROLLBACK AND CHAIN",
        "ABORT",
        "ABORT WORK",
        "ROLLBACK PREPARED 'gid'",
    ] {
        assert_txn(sql, Some(TxnControl::Rollback));
    }
}

#[test]
fn savepoint_forms() {
    for sql in [
        "SAVEPOINT a",
        "RELEASE a",
        "RELEASE SAVEPOINT a",
        "RELEASE SAVEPOINT \"x\"",
        "ROLLBACK TO a",
        "ROLLBACK TO SAVEPOINT a",
        "ROLLBACK WORK TO SAVEPOINT a",
    ] {
        assert_txn(sql, Some(TxnControl::Savepoint));
    }
}

#[test]
fn lone_begin_and_set_transaction_read_only_are_recognised() {
    assert_eq!(classify("BEGIN").lone_begin(), Some(false));
    assert_eq!(
        classify("START TRANSACTION READ ONLY").lone_begin(),
        Some(true)
    );
    assert_eq!(classify("BEGIN; SELECT 1").lone_begin(), None);
    assert_eq!(classify("COMMIT").lone_begin(), None);
    assert!(classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY").sets_read_only());
    assert!(!classify("SET TRANSACTION READ WRITE").sets_read_only());
    assert!(!classify("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").sets_read_only());
}

#[test]
fn set_transaction_forms() {
    let set_txn = |read_only| Some(TxnControl::SetTransaction { read_only });
    assert_txn("SET TRANSACTION READ ONLY", set_txn(true));
    assert_txn(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        set_txn(false),
    );
    assert_txn(
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE",
        set_txn(true),
    );
    assert_txn("SET TRANSACTION SNAPSHOT '000003A1-1'", set_txn(false));
    // The session form changes parameters and controls no transaction.
    assert_txn("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", None);
    assert_txn(
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY DEFERRABLE",
        None,
    );
}

#[test]
fn statements_without_transaction_control_report_none() {
    for sql in [
        "SELECT 'BEGIN'",
        "SELECT * FROM commits",
        "SET x = 1",
        "SHOW transaction_read_only",
    ] {
        assert_txn(sql, None);
    }
}

// ---------------------------------------------------------------- pins

#[test]
fn temporary_objects_pin() {
    for sql in [
        "CREATE TEMP TABLE t (a int)",
        "CREATE TEMPORARY TABLE t (a int)",
        "CREATE LOCAL TEMP TABLE t (a int)",
        "CREATE GLOBAL TEMPORARY TABLE t (a int)",
        "CREATE TEMPORARY TABLE t AS SELECT 1",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
        "CREATE TEMP SEQUENCE s",
        "SELECT 1 INTO TEMP t",
        "SELECT 1 INTO TEMPORARY TABLE t",
        // sqlparser rejects these; the fallback still pins.
        "CREATE TEMP TABLE t (LIKE x INCLUDING ALL) ON COMMIT DROP",
        "SELECT * INTO TEMP t FROM x FOR NO KEY UPDATE",
    ] {
        assert_pin(sql, Some(PinReason::TempTable));
        assert_write(sql);
    }
    for sql in [
        "CREATE TABLE t (a int)",
        "CREATE UNLOGGED TABLE t (a int)",
        "CREATE VIEW v AS SELECT 1",
        "CREATE SEQUENCE s",
        "CREATE TABLE temp (a int)",
        "INSERT INTO temp VALUES (1)",
        "SELECT 1 INTO t",
        "SELECT * FROM temp",
    ] {
        assert_pin(sql, None);
    }
}

#[test]
fn listen_pins() {
    assert_pin("LISTEN chan", Some(PinReason::Listen));
    assert_pin("LISTEN \"Chan\"", Some(PinReason::Listen));
    for sql in [
        "NOTIFY chan",
        "UNLISTEN chan",
        "SELECT pg_notify('chan', 'x')",
    ] {
        assert_pin(sql, None);
    }
}

#[test]
fn session_advisory_locks_pin() {
    for sql in [
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_advisory_lock_shared(1, 2)",
        "SELECT pg_try_advisory_lock(1)",
        "SELECT pg_try_advisory_lock_shared(1)",
        "SELECT pg_catalog.pg_advisory_lock(1)",
        "SELECT * FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1",
        "SELECT PG_ADVISORY_LOCK(1)",
    ] {
        assert_pin(sql, Some(PinReason::AdvisoryLock));
        assert_write(sql);
    }
    for sql in [
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT pg_advisory_xact_lock_shared(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT pg_try_advisory_xact_lock_shared(1)",
        "SELECT pg_advisory_unlock(1)",
        "SELECT pg_advisory_unlock_shared(1)",
    ] {
        assert_pin(sql, None);
        assert_write(sql);
    }
}

#[test]
fn hold_cursors_pin() {
    assert_pin(
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        Some(PinReason::HoldCursor),
    );
    assert_pin(
        "DECLARE c BINARY INSENSITIVE SCROLL CURSOR WITH HOLD FOR SELECT 1",
        Some(PinReason::HoldCursor),
    );
    assert_pin(
        "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t FOR NO KEY UPDATE",
        Some(PinReason::HoldCursor),
    );
    assert_pin("DECLARE c CURSOR FOR SELECT 1", None);
    assert_pin("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", None);
}

#[test]
fn identity_changes_pin() {
    for sql in [
        "SET SESSION AUTHORIZATION bob",
        "SET SESSION SESSION AUTHORIZATION bob",
        "SET ROLE bob",
        "SET SESSION ROLE bob",
        "SET role TO bob",
        "SET session_authorization = bob",
    ] {
        assert_pin(sql, Some(PinReason::SessionAuthorization));
        assert_params(sql, &[]);
    }
    for sql in [
        "SET LOCAL ROLE bob",
        "SET LOCAL SESSION AUTHORIZATION bob",
        "SET ROLE NONE",
        "SET SESSION AUTHORIZATION DEFAULT",
        "RESET ROLE",
        "SHOW role",
    ] {
        assert_pin(sql, None);
    }
}

#[test]
fn sql_prepare_pins() {
    assert_pin("PREPARE s1 AS SELECT 1", Some(PinReason::SqlPrepare));
    assert_pin("PREPARE s2 (int) AS SELECT $1", Some(PinReason::SqlPrepare));
    assert_pin(
        "PREPARE p AS SELECT * FROM t FOR NO KEY UPDATE",
        Some(PinReason::SqlPrepare),
    );
    for sql in ["EXECUTE s1", "DEALLOCATE s1", "PREPARE TRANSACTION 'x'"] {
        assert_pin(sql, None);
    }
}

#[test]
fn unpin_statements() {
    for sql in [
        "UNLISTEN *",
        "SELECT pg_advisory_unlock_all()",
        "DISCARD ALL",
        "DEALLOCATE ALL",
        "DEALLOCATE PREPARE ALL",
    ] {
        assert!(!classify(sql).releases.is_empty(), "{sql}");
    }
    for sql in [
        "UNLISTEN chan",
        "UNLISTEN \"*\"",
        "SELECT pg_advisory_unlock(1)",
        "DISCARD PLANS",
        "DEALLOCATE s1",
        "DEALLOCATE \"ALL\"",
        "SELECT 'pg_advisory_unlock_all()'",
    ] {
        assert!(classify(sql).releases.is_empty(), "{sql}");
    }
}

// ---------------------------------------------------------------- fallback

#[test]
fn forms_sqlparser_rejects_are_handled_by_the_fallback() {
    for sql in [
        "SET SCHEMA 'x'",
        "SET XML OPTION DOCUMENT",
        "SET CONSTRAINTS ALL DEFERRED",
        "SET LOCAL SESSION AUTHORIZATION bob",
        "RESET TIME ZONE",
        "BEGIN TRANSACTION DEFERRABLE",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE",
        "COMMIT PREPARED 'gid'",
        "ROLLBACK PREPARED 'gid'",
        "PREPARE TRANSACTION 'gid'",
        "TABLE t",
    ] {
        assert!(classify(sql).parsed, "{sql}");
    }
}

#[test]
fn the_briefs_session_forms_all_classify() {
    for sql in [
        "SET search_path TO public, \"$user\"",
        "SET TIME ZONE 'UTC'",
        "SET application_name = 'x'",
        "SET statement_timeout = 5000",
        "RESET ALL",
        "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
        "START TRANSACTION READ WRITE",
        "BEGIN; SELECT 1; COMMIT",
        "SHOW pgroute.lsn",
        "SET pgroute.min_lsn = '0/16B3748'",
        "SET pgroute.max_lag = '200ms'",
        "SET LOCAL statement_timeout = 100",
        "DISCARD ALL",
        "LISTEN chan",
        "UNLISTEN *",
        "DEALLOCATE ALL",
        "DEALLOCATE PREPARE s1",
        "PREPARE s1 AS SELECT 1",
        "EXECUTE s1",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "SET SESSION AUTHORIZATION bob",
        "SET ROLE bob",
    ] {
        assert!(classify(sql).parsed, "{sql}");
    }
}

#[test]
fn malformed_session_forms_stay_unknown_writes() {
    for sql in [
        "SET",
        "SET x",
        "SET x TO",
        "RESET",
        "RESET a b",
        "SHOW",
        "SHOW 1",
        "BEGIN BANANA",
        "START",
        "COMMIT PREPARED",
        "COMMIT NOW",
        "TABLE",
        "TABLE 1",
    ] {
        let c = classify(sql);
        assert_eq!((c.target, c.parsed), (Target::Write, false), "{sql}");
        assert_eq!((c.txn, c.params.len()), (None, 0), "{sql}");
    }
}

// ---------------------------------------------------------------- properties

/// Statements of every kind, for the properties that take "any statement".
const CORPUS: &[&str] = &[
    "SELECT 1",
    "SELECT * FROM t WHERE a = 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "VALUES (1)",
    "TABLE t",
    "SHOW search_path",
    "EXPLAIN ANALYZE SELECT 1",
    "INSERT INTO t VALUES (1)",
    "SELECT nextval('s')",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SET search_path TO public, \"$user\"",
    "SET LOCAL statement_timeout = 100",
    "SET SCHEMA 'x'",
    "RESET ALL",
    "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
    "COMMIT PREPARED 'x'",
    "ROLLBACK TO SAVEPOINT a",
    "LISTEN chan",
    "UNLISTEN *",
    "DISCARD ALL",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "CREATE TEMP TABLE t (a int)",
    "SELECT pg_advisory_lock(1)",
    "PREPARE s1 AS SELECT 1",
    "SELEC 1",
    "DO $$ BEGIN END $$",
];

const READ_CORPUS: &[&str] = &[
    "SELECT 1",
    "SELECT * FROM t WHERE a = 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "VALUES (1)",
    "TABLE t",
    "SHOW search_path",
    "EXPLAIN ANALYZE SELECT 1",
    "SELECT 1 UNION SELECT 2",
    "",
    "-- nothing\n",
];

/// Identifiers that are not keywords, so they need no quoting.
fn identifier() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,8}".prop_filter("keyword", |s| {
            !sqlparser::keywords::ALL_KEYWORDS.contains(&s.to_uppercase().as_str())
        }),
        "[A-Za-z0-9 _$]{1,10}".prop_map(|s| format!("\"{s}\"")),
    ]
}

prop_compose! {
    fn simple_select()(
        columns in prop::collection::vec(identifier(), 1..4),
        table in identifier(),
        filter in prop::option::of((identifier(), any::<i32>())),
        function in prop::option::of(("[a-z]{1,8}", identifier())),
        order in prop::option::of(identifier()),
        limit in prop::option::of(0u16..1000),
        distinct in any::<bool>(),
        cte in any::<bool>(),
    ) -> String {
        let mut select = format!(
            "SELECT {}{}",
            if distinct { "DISTINCT " } else { "" },
            columns.join(", "),
        );
        if let Some((prefix, arg)) = function {
            select += &format!(", fn_{prefix}({arg})");
        }
        select += &format!(" FROM {table}");
        if let Some((column, value)) = filter {
            select += &format!(" WHERE {column} = {value}");
        }
        if let Some(column) = order {
            select += &format!(" ORDER BY {column}");
        }
        if let Some(n) = limit {
            select += &format!(" LIMIT {n}");
        }
        if cte {
            select = format!("WITH q AS ({select}) SELECT * FROM q");
        }
        select
    }
}

/// Text built from SQL fragments, more likely than random characters to
/// reach deep into the tokenizer, parser and fallback.
fn sql_soup() -> impl Strategy<Value = String> {
    const FRAGMENTS: &[&str] = &[
        "SELECT",
        "INSERT",
        "SET",
        "RESET",
        "SHOW",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "TABLE",
        "PREPARE",
        "DECLARE",
        "CREATE",
        "TEMP",
        "INTO",
        "FOR",
        "UPDATE",
        "WITH",
        "HOLD",
        "TO",
        "=",
        "(",
        ")",
        ";",
        ",",
        ".",
        "*",
        "'",
        "''",
        "\"",
        "$$",
        "$1",
        "E'",
        "--",
        "/*",
        "*/",
        "\n",
        "nextval",
        "pg_advisory_lock",
        "1",
        "x",
        "LOCAL",
        "SESSION",
        "TIME",
        "ZONE",
        "READ",
        "ONLY",
        "TRANSACTION",
        "ISOLATION",
        "LEVEL",
        "ALL",
        "DEFAULT",
        "EXPLAIN",
    ];
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24).prop_map(|parts| parts.join(" "))
}

/// Comment text that cannot open or close a comment or end a line.
fn comment_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 =./:_,]{0,30}"
}

proptest! {
    #[test]
    fn classify_never_panics_on_arbitrary_text(sql in any::<String>()) {
        let c = classify(&sql);
        prop_assert!(c.parsed || c.target == Target::Write);
    }

    #[test]
    fn classify_never_panics_on_sql_fragments(sql in sql_soup()) {
        let c = classify(&sql);
        prop_assert!(c.parsed || c.target == Target::Write);
        prop_assert!(c.statements > 0 || c.target == Target::Read);
    }

    #[test]
    fn simple_selects_are_read(sql in simple_select()) {
        let c = classify(&sql);
        prop_assert_eq!(c.target, Target::Read, "{} -> {:?}", sql, c);
        prop_assert_eq!(c.statements, 1);
    }

    #[test]
    fn comments_around_a_statement_change_nothing(
        sql in prop_oneof![prop::sample::select(CORPUS).prop_map(String::from), simple_select()],
        before in comment_text(),
        after in comment_text(),
        line_comment in any::<bool>(),
    ) {
        let wrapped = if line_comment {
            format!("-- {before}\n{sql} -- {after}")
        } else {
            format!("/* {before} */ {sql} /* {after} */")
        };
        prop_assert_eq!(classify(&wrapped), classify(&sql), "{}", wrapped);
    }

    #[test]
    fn appending_an_insert_to_a_read_makes_it_write(
        sql in prop_oneof![prop::sample::select(READ_CORPUS).prop_map(String::from), simple_select()],
    ) {
        let read = classify(&sql);
        prop_assert_eq!(read.target, Target::Read, "{}", sql);
        let write = classify(&format!("{sql}; INSERT INTO t VALUES (1)"));
        prop_assert_eq!(write.target, Target::Write, "{}", sql);
        prop_assert_eq!(write.statements, read.statements + 1);
    }
}

#[test]
fn many_rejected_statements_are_each_counted() {
    let sql = format!("{}SELECT 1", "FOO BAR; ".repeat(2000));
    let c = classify(&sql);
    assert_eq!(
        (c.target, c.statements, c.parsed),
        (Target::Write, 2001, false)
    );
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let sql = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let c = classify(&sql);
    assert_eq!((c.target, c.parsed), (Target::Write, false));
}

#[test]
fn a_rejected_statement_that_swallowed_a_semicolon_does_not_stop_classification() {
    // sqlparser reads into the function body past the first `;` before
    // rejecting `FOO BAR`; classification restarts after that `;`.
    let c = classify(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; FOO BAR; END",
    );
    assert_eq!(
        (c.target, c.statements, c.parsed),
        (Target::Write, 3, false)
    );
}

#[test]
fn semicolons_inside_literals_do_not_split_statements() {
    let c = classify("DO $$ BEGIN PERFORM 1; END $$; SELECT 'a;b', E'c;d', \"e;f\" FROM t");
    assert_eq!((c.target, c.statements), (Target::Write, 2));
    assert_eq!(classify("SELECT 'a;b', $x$;$x$").statements, 1);
}

#[test]
fn only_session_settings_are_not_data_writes() {
    for sql in [
        "SET extra_float_digits = 3",
        "SET application_name = 'x'; RESET work_mem",
    ] {
        assert!(classify(sql).only_session_settings(), "{sql}");
    }
    for sql in [
        "SET work_mem = '1MB'; INSERT INTO t VALUES (1)",
        "BEGIN",
        "DISCARD ALL",
        "SELECT 1",
        "SET ROLE bob",
    ] {
        assert!(!classify(sql).only_session_settings(), "{sql}");
    }
}

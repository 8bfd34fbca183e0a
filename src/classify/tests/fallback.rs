//! Forms sqlparser rejects, classified by the fallback.

use super::*;

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

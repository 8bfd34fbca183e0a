//! Statements that pin a session to its server connection, and those that unpin it.

use super::*;

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

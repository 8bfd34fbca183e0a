//! Transaction control: BEGIN, COMMIT, ROLLBACK, SAVEPOINT and SET TRANSACTION.

use super::*;

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

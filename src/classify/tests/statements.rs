//! Several statements in one text: where one ends and how their results combine; and what
//! comments, case and whitespace change (nothing).

use super::*;

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

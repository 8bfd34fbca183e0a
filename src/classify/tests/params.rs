//! Session parameters: SET, RESET, DISCARD and the transaction characteristics.

use super::*;

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

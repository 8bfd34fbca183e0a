//! Functions with side effects make a read a write, wherever they are called.

use super::*;
use crate::classify::functions::{is_side_effect_function, SIDE_EFFECT_FUNCTIONS};

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

//! The functions a read calls that the catalog must judge, and the DDL that changes them.

use super::*;
use crate::classify::calls::is_read_only_builtin;

/// The names `sql` reports, as `schema.name` or `name`.
#[track_caller]
fn functions(sql: &str) -> Vec<String> {
    let c = classify(sql);
    assert!(c.parsed, "expected parsed: {sql:?} -> {c:?}");
    c.functions.iter().map(ToString::to_string).collect()
}

#[track_caller]
fn assert_functions(sql: &str, expected: &[&str]) {
    assert_eq!(functions(sql), expected, "{sql:?}");
}

#[test]
fn calls_are_named_with_the_schema_they_are_written_with() {
    assert_functions("SELECT my_fn()", &["my_fn"]);
    assert_functions("SELECT audit.log_it(1, 'x')", &["audit.log_it"]);
    assert_functions("SELECT shop.public.touch()", &["public.touch"]);
}

#[test]
fn names_are_folded_unless_quoted() {
    assert_functions("SELECT My_Fn(), Audit.Log_It()", &["my_fn", "audit.log_it"]);
    assert_functions(
        r#"SELECT "MyFn"(), "Audit"."Log It"()"#,
        &["MyFn", "Audit.Log It"],
    );
    // Two spellings of one function, reported once.
    assert_functions("SELECT my_fn(1), MY_FN(2), \"my_fn\"(3)", &["my_fn"]);
}

#[test]
fn calls_are_found_in_every_position() {
    assert_functions("SELECT a FROM t WHERE b = f_where(a)", &["f_where"]);
    assert_functions(
        "SELECT coalesce(f_inner(g_outer(1)), 0)",
        &["f_inner", "g_outer"],
    );
    assert_functions("SELECT * FROM t ORDER BY f_order(a)", &["f_order"]);
    assert_functions(
        "SELECT count(*) FROM t GROUP BY f_group(a) HAVING f_having(1)",
        &["f_group", "f_having"],
    );
    assert_functions("SELECT * FROM f_table(1) AS x", &["f_table"]);
    assert_functions("SELECT * FROM t, LATERAL f_lateral(t.a)", &["f_lateral"]);
    assert_functions("SELECT * FROM t JOIN u ON f_join(t.a, u.b)", &["f_join"]);
    assert_functions("SELECT CASE WHEN f_case(1) THEN 1 END", &["f_case"]);
    assert_functions("SELECT a::text FROM t WHERE a = ANY(f_any())", &["f_any"]);
}

#[test]
fn calls_are_found_in_subqueries_and_ctes() {
    assert_functions("SELECT (SELECT f_scalar())", &["f_scalar"]);
    assert_functions("SELECT * FROM (SELECT f_derived() AS x) s", &["f_derived"]);
    assert_functions("SELECT 1 WHERE EXISTS (SELECT f_exists())", &["f_exists"]);
    assert_functions("SELECT 1 WHERE 1 IN (SELECT f_in())", &["f_in"]);
    assert_functions(
        "WITH c AS (SELECT f_cte() AS x), d (y) AS (SELECT 1) SELECT * FROM c, d",
        &["f_cte"],
    );
    assert_functions(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT f_rec(n) FROM r) \
                      SELECT * FROM r",
        &["f_rec"],
    );
    assert_functions(
        "SELECT f_left() UNION SELECT f_right()",
        &["f_left", "f_right"],
    );
    // EXPLAIN ANALYZE runs the statement.
    assert_functions("EXPLAIN ANALYZE SELECT f_explained()", &["f_explained"]);
}

#[test]
fn text_that_only_looks_like_a_call_is_not_one() {
    assert_functions("SELECT 'my_fn()', $$other_fn(1)$$, \"col(x)\" FROM t", &[]);
    assert_functions("SELECT 1 -- my_fn()\n", &[]);
    assert_functions("SELECT /* my_fn() */ 1", &[]);
    assert_functions(
        "SELECT 1::numeric(10, 2), CAST(a AS varchar(20)) FROM t",
        &[],
    );
    assert_functions("SELECT * FROM t AS alias(a, b)", &[]);
    assert_functions("SELECT * FROM t WHERE (a, b) IN ((1, 2))", &[]);
    assert_functions("SELECT a FROM t WHERE a IN (1, 2) AND (b OR c)", &[]);
}

#[test]
fn known_built_ins_are_not_reported() {
    assert_functions(
        "SELECT count(*), sum(a), max(a), now(), coalesce(a, 0), lower(b), length(b), \
         jsonb_build_object('a', 1), json_agg(a), inet_server_port(), pg_is_in_recovery(), \
         row_number() OVER (ORDER BY a), current_setting('x'), pg_catalog.upper(b) FROM t",
        &[],
    );
    assert_functions(
        "SELECT EXTRACT(YEAR FROM now()), SUBSTRING(b FROM 1), TRIM(b) FROM t",
        &[],
    );
    // In another schema, a built-in's name is a user function.
    assert_functions("SELECT app.lower(b) FROM t", &["app.lower"]);
    // Quoted in capitals, it is not the built-in either.
    assert_functions("SELECT \"COUNT\"(a) FROM t", &["COUNT"]);
}

#[test]
fn the_built_in_list_matches_names_and_patterns() {
    let f = |schema: Option<&str>, name: &str| FnName::new(schema, name);
    assert!(is_read_only_builtin(&f(None, "count")));
    assert!(is_read_only_builtin(&f(Some("pg_catalog"), "count")));
    assert!(is_read_only_builtin(&f(None, "jsonb_set")));
    assert!(is_read_only_builtin(&f(None, "has_table_privilege")));
    assert!(is_read_only_builtin(&f(None, "pg_get_viewdef")));
    assert!(!is_read_only_builtin(&f(Some("public"), "count")));
    assert!(!is_read_only_builtin(&f(None, "my_fn")));
    // Side-effecting built-ins are never in it.
    for name in [
        "nextval",
        "setval",
        "pg_advisory_lock",
        "set_config",
        "pg_notify",
        "lo_create",
    ] {
        assert!(!is_read_only_builtin(&f(None, name)), "{name}");
    }
}

#[test]
fn side_effecting_built_ins_make_a_write_and_report_nothing() {
    let c = classify("SELECT nextval('s'), my_fn()");
    assert_eq!(c.target, Target::Write);
    assert!(c.functions.is_empty(), "{c:?}");
}

#[test]
fn writes_report_no_functions() {
    for sql in [
        "INSERT INTO t VALUES (my_fn())",
        "UPDATE t SET a = my_fn()",
        "SELECT my_fn() FOR UPDATE",
        "SELECT my_fn() INTO t2",
        "WITH x AS (DELETE FROM t RETURNING a) SELECT my_fn(a) FROM x",
        "SELECT my_fn(); INSERT INTO t VALUES (1)",
        "CALL my_proc()",
    ] {
        let c = classify(sql);
        assert_eq!(c.target, Target::Write, "{sql:?}");
        assert!(c.functions.is_empty(), "{sql:?} -> {c:?}");
    }
}

#[test]
fn every_read_of_a_query_string_reports_its_functions() {
    assert_functions(
        "SELECT f_one(); SELECT f_two(), f_one()",
        &["f_one", "f_two"],
    );
}

#[test]
fn ddl_on_functions_is_recognised() {
    for sql in [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql VOLATILE AS $$SELECT 1$$",
        "create or replace procedure p() language plpgsql as $$begin end$$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
        "ALTER FUNCTION f() STABLE",
        "ALTER PROCEDURE p() RENAME TO q",
        "ALTER ROUTINE f() VOLATILE",
        "DROP FUNCTION IF EXISTS f(int)",
        "DROP PROCEDURE p",
        "DROP ROUTINE f",
        "CREATE EXTENSION pgcrypto",
        "DROP EXTENSION pgcrypto",
        "ALTER EXTENSION pgcrypto UPDATE",
        "DROP SCHEMA audit CASCADE",
        "ALTER SCHEMA audit RENAME TO audit2",
        "CREATE AGGREGATE my_sum(int) (sfunc = int4pl, stype = int)",
        "DROP OWNED BY someone",
        "SELECT 1; CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ] {
        assert!(classify(sql).changes_functions, "{sql:?}");
    }
    for sql in [
        "SELECT create_function()",
        "CREATE TABLE function (a int)",
        "CREATE SCHEMA audit",
        "DROP TABLE f",
        "SELECT 'CREATE FUNCTION f()'",
        "COMMENT ON FUNCTION f() IS 'x'",
    ] {
        assert!(!classify(sql).changes_functions, "{sql:?}");
    }
}

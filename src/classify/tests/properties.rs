//! Properties over generated SQL: classification never panics, and comments or an appended
//! write change the result as they should.

use proptest::prelude::*;

use super::*;

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

//! The functions a read calls that pgroute cannot judge by name: what the function catalog
//! ([`crate::catalog`]) asks the primary about.
//!
//! Names come from the AST (sqlparser's visitor), so they are real calls in every position —
//! select list, `WHERE`, `FROM` (table functions), nested arguments, sub-selects, CTEs — and
//! never text in a string literal, a column list of an alias or a type modifier
//! (`numeric(10, 2)`). A function a read calls only indirectly (from a view, an operator, a
//! column default, a trigger) is invisible here.

use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Statement, TableFactor, Visit, Visitor,
};

use super::functions::is_side_effect_function;
use super::tokens::StatementTokens;

/// A function name as written in a call: lower-cased unless quoted, as PostgreSQL folds
/// identifiers; `schema` only when the call names one (`audit.log_it()`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FnName {
    /// The schema written before the name, if any.
    pub schema: Option<String>,
    /// The function's name.
    pub name: String,
}

impl FnName {
    /// A name with an optional schema, taken as given (already folded).
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        FnName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for FnName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Built-in functions (in `pg_catalog`) that only read, and the SQL words sqlparser reports as
/// calls: a call to one of them needs no catalog lookup. `pg_catalog` is searched first when a
/// name is not qualified (unless a search_path names it later on purpose), so an unqualified
/// call of one of these names is the built-in. `*` matches any run of characters. The list only
/// saves lookups: a built-in missing from it is looked up once and found in `pg_catalog`.
pub const READ_ONLY_BUILTINS: &[&str] = &[
    // Aggregates and window functions.
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_*",
    "any_value",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    "grouping",
    // Conditionals and SQL forms.
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "array",
    "row",
    "exists",
    // Date and time.
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "date_trunc",
    "date_part",
    "date_bin",
    "extract",
    "age",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    // Strings.
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "substring",
    "substr",
    "position",
    "strpos",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "lpad",
    "rpad",
    "left",
    "right",
    "replace",
    "reverse",
    "repeat",
    "concat",
    "concat_ws",
    "format",
    "initcap",
    "split_part",
    "regexp_*",
    "starts_with",
    "translate",
    "ascii",
    "chr",
    "md5",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "encode",
    "decode",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "to_hex",
    "string_to_array",
    "string_to_table",
    "array_to_string",
    "overlay",
    "normalize",
    "unistr",
    // Numbers.
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "sqrt",
    "cbrt",
    "power",
    "pow",
    "exp",
    "ln",
    "log",
    "log10",
    "mod",
    "sign",
    "pi",
    "random",
    "degrees",
    "radians",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "div",
    "gcd",
    "lcm",
    "width_bucket",
    "factorial",
    "scale",
    // Arrays, ranges, series.
    "array_length",
    "array_lower",
    "array_upper",
    "array_dims",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_append",
    "array_prepend",
    "array_cat",
    "array_remove",
    "array_replace",
    "cardinality",
    "unnest",
    "generate_series",
    "generate_subscripts",
    "lower_inf",
    "upper_inf",
    "isempty",
    "range_merge",
    // JSON.
    "json_*",
    "jsonb_*",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "array_to_json",
    // Text search.
    "to_tsvector",
    "to_tsquery",
    "plainto_tsquery",
    "phraseto_tsquery",
    "websearch_to_tsquery",
    "ts_rank",
    "ts_rank_cd",
    "ts_headline",
    "setweight",
    // Session and server information.
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_schema",
    "current_schemas",
    "current_database",
    "current_catalog",
    "current_setting",
    "version",
    "inet_server_port",
    "inet_server_addr",
    "inet_client_port",
    "inet_client_addr",
    "pg_backend_pid",
    "pg_is_in_recovery",
    "pg_typeof",
    "format_type",
    "has_*_privilege",
    "pg_has_role",
    "pg_get_*",
    "pg_size_pretty",
    "pg_size_bytes",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_column_size",
    "pg_postmaster_start_time",
    "pg_last_wal_replay_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_wal_lsn_diff",
    "pg_sleep",
    "obj_description",
    "col_description",
    "gen_random_uuid",
    // Function-style casts.
    "int2",
    "int4",
    "int8",
    "integer",
    "bigint",
    "smallint",
    "float4",
    "float8",
    "numeric",
    "decimal",
    "text",
    "varchar",
    "bool",
    "boolean",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "bytea",
    "inet",
    "cidr",
];

/// Whether a call of `f` is a read-only built-in: an unqualified or `pg_catalog.` name in
/// [`READ_ONLY_BUILTINS`].
#[must_use]
pub fn is_read_only_builtin(f: &FnName) -> bool {
    f.schema.as_deref().is_none_or(|s| s == "pg_catalog")
        && READ_ONLY_BUILTINS
            .iter()
            .any(|pattern| super::functions::matches_pattern(pattern, &f.name))
}

/// The functions `statement` calls that are neither read-only built-ins nor in
/// [`super::functions::SIDE_EFFECT_FUNCTIONS`] (those make the statement a write already), each
/// once, in the order first called.
pub(super) fn called_functions(statement: &Statement) -> Vec<FnName> {
    let mut calls = Calls(Vec::new());
    let _ = statement.visit(&mut calls);
    calls.0
}

/// Collects function names while sqlparser's visitor walks a statement.
struct Calls(Vec<FnName>);

impl Calls {
    fn add(&mut self, name: &ObjectName) {
        let Some(f) = fn_name(name) else {
            return;
        };
        if is_read_only_builtin(&f) || is_side_effect_function(&f.name) || self.0.contains(&f) {
            return;
        }
        self.0.push(f);
    }
}

impl Visitor for Calls {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            self.add(&function.name);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            // `FROM generate_series(1, 3)`: a relation with arguments is a table function.
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.add(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// The name a call is written with: its last two parts (`db.schema.fn` may name only the
/// current database), folded as PostgreSQL folds identifiers.
fn fn_name(name: &ObjectName) -> Option<FnName> {
    let mut parts = name.0.iter().rev().map(ObjectNamePart::as_ident);
    let function = parts.next()??;
    let schema = match parts.next() {
        Some(part) => Some(fold(part?)),
        None => None,
    };
    Some(FnName {
        schema,
        name: fold(function),
    })
}

/// An identifier as PostgreSQL stores it: lower-cased (ASCII) unless quoted.
fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// Statements after which cached answers about functions may be wrong: they create, replace,
/// alter or drop functions, or the schemas and extensions that hold them.
const CREATES: &[&str] = &["function", "procedure", "aggregate", "extension"];
const ALTERS_OR_DROPS: &[&str] = &[
    "function",
    "procedure",
    "routine",
    "aggregate",
    "extension",
    "schema",
];

/// Whether the statement changes which functions exist or what they are (`CREATE [OR REPLACE]
/// FUNCTION|PROCEDURE|AGGREGATE|EXTENSION`, `ALTER`/`DROP` of those, of a `ROUTINE` or a
/// `SCHEMA`, and `DROP OWNED`). Read from tokens, so also for statements sqlparser rejects.
pub(super) fn changes_functions(tokens: &StatementTokens<'_>) -> bool {
    if tokens.is_word(0, "create") {
        let at = if tokens.are_words(1, &["or", "replace"]) {
            3
        } else {
            1
        };
        return tokens.is_any_word(at, CREATES);
    }
    if tokens.is_word(0, "drop") && tokens.is_word(1, "owned") {
        return true;
    }
    tokens.is_any_word(0, &["alter", "drop"]) && tokens.is_any_word(1, ALTERS_OR_DROPS)
}

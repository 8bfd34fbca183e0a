//! The tables a statement reads or writes, for routing rules on `tables`.

use std::ops::ControlFlow;

use sqlparser::ast::{visit_relations, Ident, ObjectNamePart, Statement};

use super::tokens::StatementTokens;

/// Statements whose first word makes them DDL for `rules[].kind = "ddl"`.
const DDL_WORDS: &[&str] = &[
    "create", "alter", "drop", "truncate", "grant", "revoke", "comment", "reindex", "security",
    "import", "refresh", "cluster",
];

/// Whether the statement is DDL (or another schema or privilege change).
pub(super) fn is_ddl(tokens: &StatementTokens<'_>) -> bool {
    tokens.is_any_word(0, DDL_WORDS)
}

/// Every relation the statement names (in `FROM`, joins, subqueries, CTEs, and as the target
/// of `INSERT`/`UPDATE`/`DELETE`/DDL), as `schema.name` or `name` the way PostgreSQL folds
/// them: unquoted identifiers lower-cased, quoted ones kept. A CTE's own name is listed too
/// where it is referenced. Catalog-qualified names keep their last two parts.
pub(super) fn relations(statement: &Statement, into: &mut Vec<String>) {
    let _ = visit_relations(statement, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| match p {
                ObjectNamePart::Identifier(ident) => Some(fold(ident)),
                ObjectNamePart::Function(_) => None,
            })
            .collect();
        let start = parts.len().saturating_sub(2);
        let joined = parts[start..].join(".");
        if !joined.is_empty() && !into.contains(&joined) {
            into.push(joined);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// An identifier as PostgreSQL folds it.
fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

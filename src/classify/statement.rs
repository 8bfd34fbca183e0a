//! Classification of one statement that sqlparser has parsed.

use sqlparser::ast::{DiscardObject, Ident, Query, SelectInto, SetExpr, Statement};

use super::tokens::StatementTokens;
use super::{session, ParamChange, PinReason, PinSet, StatementClass, TxnControl};

/// Classify a parsed statement. Function calls and locking clauses are
/// checked separately, on tokens, for every statement.
pub(super) fn classify_statement(
    statement: &Statement,
    tokens: &StatementTokens<'_>,
) -> StatementClass {
    match statement {
        Statement::Query(query) => classify_query(query),
        Statement::Explain { statement, .. } => {
            // EXPLAIN ANALYZE executes its statement, so it must run where the
            // statement would. Plain EXPLAIN of a write only plans it and
            // could run on a replica, but it goes to the primary too: one
            // rule, no need to tell the two apart.
            let inner = classify_statement(statement, tokens);
            StatementClass {
                read: inner.read,
                pin: inner.pin,
                ..StatementClass::write()
            }
        }
        // sqlparser accepts a bare `SHOW`; PostgreSQL does not.
        Statement::ShowVariable { variable } if variable.is_empty() => StatementClass::unknown(),
        Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => StatementClass::read(),
        Statement::Set(set) => session::classify_set(set, tokens),
        Statement::Reset(reset) => session::classify_reset(reset),
        _ => transaction_control(statement)
            .map(StatementClass::txn)
            .or_else(|| session_state(statement))
            .unwrap_or_else(StatementClass::write),
    }
}

/// `BEGIN`, `COMMIT`, `ROLLBACK` and savepoints. (`SET TRANSACTION` is a
/// `SET` and handled with the other `SET` forms.)
fn transaction_control(statement: &Statement) -> Option<TxnControl> {
    let txn = match statement {
        Statement::StartTransaction { modes, .. } => TxnControl::Begin {
            read_only: session::read_only(&session::ast_modes(modes)),
        },
        Statement::Commit { .. } => TxnControl::Commit,
        Statement::Rollback {
            savepoint: None, ..
        } => TxnControl::Rollback,
        Statement::Rollback {
            savepoint: Some(_), ..
        }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => TxnControl::Savepoint,
        _ => return None,
    };
    Some(txn)
}

fn release_if(cond: bool, reason: PinReason) -> PinSet {
    if cond {
        PinSet::of(reason)
    } else {
        PinSet::EMPTY
    }
}

/// Writes that create or release state bound to the server connection.
fn session_state(statement: &Statement) -> Option<StatementClass> {
    let class = match statement {
        Statement::Discard {
            object_type: DiscardObject::ALL,
        } => StatementClass {
            params: vec![ParamChange::ResetAll],
            discard_all: true,
            releases: PinSet::ALL,
            ..StatementClass::write()
        },
        Statement::LISTEN { .. } => StatementClass::pinned(PinReason::Listen),
        Statement::UNLISTEN { channel } => StatementClass {
            releases: release_if(is_bare(channel, "*"), PinReason::Listen),
            ..StatementClass::write()
        },
        Statement::Deallocate { name, .. } => StatementClass {
            releases: release_if(is_bare(name, "all"), PinReason::SqlPrepare),
            deallocate: (!is_bare(name, "all")).then(|| match name.quote_style {
                Some(_) => name.value.clone(),
                None => name.value.to_lowercase(),
            }),
            ..StatementClass::write()
        },
        Statement::Prepare { .. } => StatementClass::pinned(PinReason::SqlPrepare),
        Statement::Declare { stmts, .. } if stmts.iter().any(|d| d.hold == Some(true)) => {
            StatementClass::pinned(PinReason::HoldCursor)
        }
        Statement::CreateTable(table) if table.temporary => temp_table(),
        Statement::CreateView(view) if view.temporary => temp_table(),
        Statement::CreateSequence {
            temporary: true, ..
        } => temp_table(),
        _ => return None,
    };
    Some(class)
}

fn temp_table() -> StatementClass {
    StatementClass::pinned(PinReason::TempTable)
}

/// Whether `ident` is the unquoted word `word` (`UNLISTEN *`, `DEALLOCATE ALL`;
/// `"ALL"` in quotes names a prepared statement).
fn is_bare(ident: &Ident, word: &str) -> bool {
    ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case(word)
}

/// A query is a read unless it has a data-modifying CTE, `SELECT … INTO`, or
/// a top-level locking clause (locking clauses in sub-selects are found on
/// tokens).
fn classify_query(query: &Query) -> StatementClass {
    let mut class = if query_is_read(query) {
        StatementClass::read()
    } else {
        StatementClass::write()
    };
    if select_into(&query.body).is_some_and(|into| into.temporary) {
        class.pin = Some(PinReason::TempTable);
    }
    class
}

fn query_is_read(query: &Query) -> bool {
    let ctes_read = query
        .with
        .as_ref()
        .is_none_or(|with| with.cte_tables.iter().all(|cte| query_is_read(&cte.query)));
    ctes_read && query.locks.is_empty() && set_expr_is_read(&query.body)
}

fn set_expr_is_read(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_none(),
        SetExpr::Query(query) => query_is_read(query),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_is_read(left) && set_expr_is_read(right)
        }
        SetExpr::Values(_) | SetExpr::Table(_) => true,
        // INSERT/UPDATE/DELETE/MERGE (… RETURNING) in a CTE, or anything new.
        _ => false,
    }
}

/// The `INTO` clause of the query's first `SELECT` (the only place
/// PostgreSQL accepts one).
fn select_into(body: &SetExpr) -> Option<&SelectInto> {
    match body {
        SetExpr::Select(select) => select.into.as_ref(),
        SetExpr::Query(query) => select_into(&query.body),
        SetExpr::SetOperation { left, .. } => select_into(left),
        _ => None,
    }
}

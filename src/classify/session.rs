//! `SET`, `RESET` and transaction characteristics: which session parameters
//! change, and how to re-issue them on another server connection.
//!
//! sqlparser tells which form of `SET` a statement is; the value to re-issue
//! is always cut from the statement's own tokens, so it is the client's text
//! (quoting and escapes untouched), not sqlparser's re-rendering of it.

use sqlparser::ast::{
    ContextModifier, ObjectName, Reset, ResetStatement, Set, SetSessionAuthorizationParamKind,
    TransactionAccessMode, TransactionIsolationLevel, TransactionMode,
};
use sqlparser::tokenizer::Token;

use super::tokens::StatementTokens;
use super::{ParamChange, PinReason, StatementClass, TxnControl};

/// Parameters that carry the session's identity. They are not replayed: a
/// change to them pins the session instead.
const IDENTITY_PARAMS: &[&str] = &["role", "session_authorization"];

/// One transaction characteristic, as written in `BEGIN`, `SET TRANSACTION`
/// or `SET SESSION CHARACTERISTICS AS TRANSACTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnMode {
    /// `READ ONLY` (true) or `READ WRITE` (false).
    ReadOnly(bool),
    /// `ISOLATION LEVEL …`, as PostgreSQL spells the level in lower case.
    Isolation(&'static str),
    /// `DEFERRABLE` (true) or `NOT DEFERRABLE` (false).
    Deferrable(bool),
}

/// Whether the modes make the transaction read-only (the last access mode
/// wins, as in PostgreSQL; none given means read-write).
pub(super) fn read_only(modes: &[TxnMode]) -> bool {
    modes
        .iter()
        .rev()
        .find_map(|mode| match mode {
            TxnMode::ReadOnly(read_only) => Some(*read_only),
            _ => None,
        })
        .unwrap_or(false)
}

/// Convert sqlparser's transaction modes.
pub(super) fn ast_modes(modes: &[TransactionMode]) -> Vec<TxnMode> {
    modes
        .iter()
        .filter_map(|mode| match mode {
            TransactionMode::AccessMode(access) => Some(TxnMode::ReadOnly(matches!(
                access,
                TransactionAccessMode::ReadOnly
            ))),
            TransactionMode::IsolationLevel(level) => {
                isolation_name(*level).map(TxnMode::Isolation)
            }
        })
        .collect()
}

fn isolation_name(level: TransactionIsolationLevel) -> Option<&'static str> {
    match level {
        TransactionIsolationLevel::ReadUncommitted => Some("read uncommitted"),
        TransactionIsolationLevel::ReadCommitted => Some("read committed"),
        TransactionIsolationLevel::RepeatableRead => Some("repeatable read"),
        TransactionIsolationLevel::Serializable => Some("serializable"),
        // SQL Server only; PostgreSQL rejects it.
        TransactionIsolationLevel::Snapshot => None,
    }
}

/// Parse a PostgreSQL transaction mode list from tokens (for the forms
/// sqlparser rejects, such as `DEFERRABLE`). Commas between modes are
/// optional, as in PostgreSQL. `None` when anything else is found.
pub(super) fn token_modes(tokens: &StatementTokens<'_>, mut i: usize) -> Option<Vec<TxnMode>> {
    const LEVELS: &[(&[&str], &str)] = &[
        (&["serializable"], "serializable"),
        (&["repeatable", "read"], "repeatable read"),
        (&["read", "committed"], "read committed"),
        (&["read", "uncommitted"], "read uncommitted"),
    ];
    let mut modes = Vec::new();
    while i < tokens.len() {
        let (mode, width) = if tokens.get(i) == Some(&Token::Comma) {
            i += 1;
            continue;
        } else if tokens.are_words(i, &["isolation", "level"]) {
            let (words, name) = LEVELS
                .iter()
                .find(|(words, _)| tokens.are_words(i + 2, words))?;
            (TxnMode::Isolation(name), 2 + words.len())
        } else if tokens.are_words(i, &["read", "only"]) {
            (TxnMode::ReadOnly(true), 2)
        } else if tokens.are_words(i, &["read", "write"]) {
            (TxnMode::ReadOnly(false), 2)
        } else if tokens.are_words(i, &["not", "deferrable"]) {
            (TxnMode::Deferrable(false), 2)
        } else if tokens.is_word(i, "deferrable") {
            (TxnMode::Deferrable(true), 1)
        } else {
            return None;
        };
        modes.push(mode);
        i += width;
    }
    Some(modes)
}

/// `SET TRANSACTION …` (`session` false) or `SET SESSION CHARACTERISTICS AS
/// TRANSACTION …` (`session` true). The session form only changes the
/// `default_transaction_*` parameters, tracked like any `SET`.
pub(super) fn set_transaction(modes: &[TxnMode], session: bool) -> StatementClass {
    if session {
        return StatementClass {
            params: modes.iter().map(characteristic_param).collect(),
            ..StatementClass::write()
        };
    }
    StatementClass::txn(TxnControl::SetTransaction {
        read_only: read_only(modes),
    })
}

fn characteristic_param(mode: &TxnMode) -> ParamChange {
    let on_off = |on: bool| if on { "on" } else { "off" }.to_string();
    let (name, value) = match mode {
        TxnMode::ReadOnly(read_only) => ("default_transaction_read_only", on_off(*read_only)),
        TxnMode::Isolation(level) => ("default_transaction_isolation", format!("'{level}'")),
        TxnMode::Deferrable(deferrable) => ("default_transaction_deferrable", on_off(*deferrable)),
    };
    ParamChange::Set {
        name: name.to_string(),
        value,
    }
}

/// Classify a `SET` statement sqlparser has parsed.
pub(super) fn classify_set(set: &Set, tokens: &StatementTokens<'_>) -> StatementClass {
    match set {
        Set::SingleAssignment {
            scope, variable, ..
        } => assignment(
            &object_name(variable),
            *scope == Some(ContextModifier::Local),
            &value_after_assignment(tokens),
        ),
        Set::SetTimeZone { local, .. } => {
            let value = value_after_words(tokens, &[&["time", "zone"], &["timezone"]]);
            time_zone(*local, &value)
        }
        Set::SetNames { .. } => assignment(
            "client_encoding",
            false,
            &value_after_words(tokens, &[&["names"]]),
        ),
        Set::SetNamesDefault {} => StatementClass::param(ParamChange::Reset {
            name: "client_encoding".to_string(),
        }),
        Set::SetRole {
            context_modifier,
            role_name,
        } => identity(*context_modifier == Some(ContextModifier::Local) || role_name.is_none()),
        Set::SetSessionAuthorization(param) => identity(
            param.scope == ContextModifier::Local
                || param.kind == SetSessionAuthorizationParamKind::Default,
        ),
        Set::SetTransaction { modes, session, .. } => set_transaction(&ast_modes(modes), *session),
        // MySQL, Snowflake and SQL Server forms that PostgreSQL rejects.
        _ => StatementClass::write(),
    }
}

/// `SET ROLE` / `SET SESSION AUTHORIZATION`: the session's identity cannot
/// be replayed safely, so it pins, unless the change is transaction-local or
/// back to the login identity (`NONE`, `DEFAULT`).
pub(super) fn identity(harmless: bool) -> StatementClass {
    if harmless {
        StatementClass::write()
    } else {
        StatementClass::pinned(PinReason::SessionAuthorization)
    }
}

/// `SET [LOCAL] name TO value`, with `value` as the client wrote it.
/// `SET LOCAL` ends with the transaction and is not tracked; `TO DEFAULT`
/// becomes a [`ParamChange::Reset`].
pub(super) fn assignment(name: &str, local: bool, value: &str) -> StatementClass {
    if IDENTITY_PARAMS.contains(&name) {
        return identity(local);
    }
    if value.is_empty() {
        return StatementClass::unknown();
    }
    if local {
        return StatementClass::write();
    }
    let change = if value.eq_ignore_ascii_case("default") {
        ParamChange::Reset {
            name: name.to_string(),
        }
    } else {
        ParamChange::Set {
            name: name.to_string(),
            value: value.to_string(),
        }
    };
    StatementClass::param(change)
}

/// `SET TIME ZONE value`: tracked as the `timezone` parameter. `LOCAL` and
/// `DEFAULT` both mean the server default.
pub(super) fn time_zone(local: bool, value: &str) -> StatementClass {
    let value = if value.eq_ignore_ascii_case("local") {
        "DEFAULT"
    } else {
        value
    };
    assignment("timezone", local, value)
}

/// Classify a `RESET` statement sqlparser has parsed.
pub(super) fn classify_reset(reset: &ResetStatement) -> StatementClass {
    match &reset.reset {
        Reset::ALL => StatementClass::param(ParamChange::ResetAll),
        Reset::SessionAuthorization => StatementClass::write(),
        Reset::ConfigurationParameter(name) => reset_param(&object_name(name)),
    }
}

/// `RESET name`. Identity parameters are not tracked (see [`identity`]).
pub(super) fn reset_param(name: &str) -> StatementClass {
    if IDENTITY_PARAMS.contains(&name) {
        return StatementClass::write();
    }
    StatementClass::param(ParamChange::Reset {
        name: name.to_string(),
    })
}

/// A parameter name as PostgreSQL compares it: lower-case, parts joined by `.`.
fn object_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.to_ascii_lowercase(),
            None => part.to_string().to_ascii_lowercase(),
        })
        .collect();
    parts.join(".")
}

/// The text after the first unquoted `TO` or `=` (the value of `SET name TO value`).
pub(super) fn value_after_assignment(tokens: &StatementTokens<'_>) -> String {
    tokens
        .position_from(1, |i| {
            tokens.is_word(i, "to") || tokens.get(i) == Some(&Token::Eq)
        })
        .map(|i| tokens.text_from(i + 1))
        .unwrap_or_default()
}

/// The text after the first occurrence of any of the word sequences.
pub(super) fn value_after_words(tokens: &StatementTokens<'_>, sequences: &[&[&str]]) -> String {
    (1..tokens.len())
        .find_map(|i| {
            sequences
                .iter()
                .find(|words| tokens.are_words(i, words))
                .map(|words| tokens.text_from(i + words.len()))
        })
        .unwrap_or_default()
}

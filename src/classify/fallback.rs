//! Keyword-level classification of statements sqlparser 0.64 cannot parse.
//!
//! PostgreSQL accepts some session and transaction statements that sqlparser
//! rejects, for example `SET SCHEMA 'x'`, `RESET TIME ZONE`, `BEGIN …
//! DEFERRABLE`, `COMMIT PREPARED 'x'`, `PREPARE TRANSACTION 'x'` and `TABLE
//! t`. The proxy must still see their transaction and session effects, so
//! this module recognises them from their leading keywords, token by token
//! (never with regexes over the raw text). It only knows those leading
//! keywords; everything else it cannot vouch for stays an unknown write. For
//! a few statements it cannot understand fully (`CREATE TEMP …`, `SELECT …
//! INTO TEMP …`, `DECLARE … WITH HOLD`, `PREPARE`) it still salvages the pin,
//! because losing a pin breaks the client while an extra one is only slower.

use sqlparser::tokenizer::Token;

use super::session::{self, TxnMode};
use super::tokens::StatementTokens;
use super::{PinReason, StatementClass, TxnControl};

/// Classify a statement sqlparser rejected, from its tokens.
pub(super) fn classify_unparsed(tokens: &StatementTokens<'_>) -> StatementClass {
    let leading = match tokens.get(0) {
        Some(Token::Word(word)) if word.quote_style.is_none() => word.value.to_ascii_lowercase(),
        _ => return StatementClass::unknown(),
    };
    match leading.as_str() {
        "set" => set(tokens),
        "reset" => reset(tokens),
        "show" => show(tokens),
        "table" => table(tokens),
        "begin" | "start" => begin(tokens),
        "commit" | "end" | "rollback" | "abort" => finish(tokens),
        "prepare" => prepare(tokens),
        "listen" => listen(tokens),
        "create" => salvage_pin(create_is_temporary(tokens), PinReason::TempTable),
        "select" => salvage_pin(select_into_temporary(tokens), PinReason::TempTable),
        "declare" => salvage_pin(declare_with_hold(tokens), PinReason::HoldCursor),
        _ => StatementClass::unknown(),
    }
}

/// `SET [SESSION | LOCAL] …` in the forms sqlparser rejects (`SET SCHEMA`,
/// `SET XML OPTION`, `SET CONSTRAINTS`, `… DEFERRABLE`), plus the common
/// forms, should a value trip the parser.
fn set(tokens: &StatementTokens<'_>) -> StatementClass {
    let mut i = 1;
    let mut local = false;
    // `SESSION` is a scope unless it starts `SESSION AUTHORIZATION` or
    // `SESSION CHARACTERISTICS`.
    if tokens.is_any_word(i, &["session", "local"])
        && !tokens.is_any_word(i + 1, &["authorization", "characteristics"])
    {
        local = tokens.is_word(i, "local");
        i += 1;
    }
    if tokens.are_words(i, &["session", "authorization"]) || tokens.is_word(i, "role") {
        session::identity(local)
    } else if tokens.are_words(i, &["session", "characteristics", "as", "transaction"]) {
        with_modes(tokens, i + 4, |modes| session::set_transaction(modes, true))
    } else if tokens.is_word(i, "transaction") {
        with_modes(tokens, i + 1, |modes| {
            session::set_transaction(modes, false)
        })
    } else if tokens.is_word(i, "constraints") {
        // Constraint timing lasts for the current transaction only.
        StatementClass::write()
    } else if tokens.are_words(i, &["time", "zone"]) {
        session::time_zone(local, &tokens.text_from(i + 2))
    } else if tokens.is_word(i, "schema") {
        session::assignment("search_path", local, &tokens.text_from(i + 1))
    } else if tokens.is_word(i, "names") {
        session::assignment("client_encoding", local, &tokens.text_from(i + 1))
    } else if tokens.are_words(i, &["xml", "option"]) {
        session::assignment("xmloption", local, &tokens.text_from(i + 2))
    } else {
        generic_set(tokens, i, local)
    }
}

/// `SET name[.name…] {TO | =} value`.
fn generic_set(tokens: &StatementTokens<'_>, start: usize, local: bool) -> StatementClass {
    let Some((name, next)) = dotted_name(tokens, start) else {
        return StatementClass::unknown();
    };
    if !(tokens.is_word(next, "to") || tokens.get(next) == Some(&Token::Eq)) {
        return StatementClass::unknown();
    }
    session::assignment(&name, local, &tokens.text_from(next + 1))
}

/// A lower-cased `word[.word…]` starting at `start`, and the index after it.
fn dotted_name(tokens: &StatementTokens<'_>, start: usize) -> Option<(String, usize)> {
    let mut parts = vec![tokens.word_text(start)?];
    let mut next = start + 1;
    while tokens.get(next) == Some(&Token::Period) {
        parts.push(tokens.word_text(next + 1)?);
        next += 2;
    }
    Some((parts.join("."), next))
}

/// `RESET name`, `RESET TIME ZONE`, `RESET ALL`, `RESET SESSION AUTHORIZATION`.
fn reset(tokens: &StatementTokens<'_>) -> StatementClass {
    if tokens.are_words(1, &["time", "zone"]) && tokens.len() == 3 {
        return session::reset_param("timezone");
    }
    if tokens.are_words(1, &["session", "authorization"]) && tokens.len() == 3 {
        return StatementClass::write();
    }
    if tokens.is_word(1, "all") && tokens.len() == 2 {
        return StatementClass::param(super::ParamChange::ResetAll);
    }
    match dotted_name(tokens, 1) {
        Some((name, next)) if next == tokens.len() => session::reset_param(&name),
        _ => StatementClass::unknown(),
    }
}

/// `SHOW name`, `SHOW ALL`, `SHOW TIME ZONE`, …: every `SHOW` only reads a
/// setting, so any list of names is a read.
fn show(tokens: &StatementTokens<'_>) -> StatementClass {
    let names_only =
        (1..tokens.len()).all(|i| matches!(tokens.get(i), Some(Token::Word(_) | Token::Period)));
    if tokens.len() > 1 && names_only {
        StatementClass::read()
    } else {
        StatementClass::unknown()
    }
}

/// `TABLE [ONLY] name [*]`, shorthand for `SELECT * FROM name`. Other
/// clauses after it (`ORDER BY`, `UNION`, …) are not recognised and leave the
/// statement an unknown write.
fn table(tokens: &StatementTokens<'_>) -> StatementClass {
    let start = if tokens.is_word(1, "only") { 2 } else { 1 };
    let Some((_, mut next)) = dotted_name(tokens, start) else {
        return StatementClass::unknown();
    };
    if tokens.get(next) == Some(&Token::Mul) {
        next += 1;
    }
    if next == tokens.len() {
        StatementClass::read()
    } else {
        StatementClass::unknown()
    }
}

/// `BEGIN [WORK | TRANSACTION] [modes]` and `START TRANSACTION [modes]`.
fn begin(tokens: &StatementTokens<'_>) -> StatementClass {
    let modes_at = if tokens.is_word(0, "start") {
        if !tokens.is_word(1, "transaction") {
            return StatementClass::unknown();
        }
        2
    } else if tokens.is_any_word(1, &["work", "transaction"]) {
        2
    } else {
        1
    };
    with_modes(tokens, modes_at, |modes| {
        StatementClass::txn(TxnControl::Begin {
            read_only: session::read_only(modes),
        })
    })
}

fn with_modes(
    tokens: &StatementTokens<'_>,
    at: usize,
    classify: impl FnOnce(&[TxnMode]) -> StatementClass,
) -> StatementClass {
    match session::token_modes(tokens, at) {
        Some(modes) => classify(&modes),
        None => StatementClass::unknown(),
    }
}

/// `COMMIT`/`END`/`ROLLBACK`/`ABORT` with `PREPARED 'gid'` (two-phase
/// commit) or `AND [NO] CHAIN`, and `ROLLBACK … TO [SAVEPOINT] name`.
/// `COMMIT PREPARED` and `ROLLBACK PREPARED` finish a transaction prepared
/// earlier, not the session's own; they are reported as `Commit` and
/// `Rollback` all the same, which is harmless when the session is idle.
fn finish(tokens: &StatementTokens<'_>) -> StatementClass {
    let commit = tokens.is_any_word(0, &["commit", "end"]);
    let txn = if commit {
        TxnControl::Commit
    } else {
        TxnControl::Rollback
    };
    if tokens.is_word(1, "prepared") && is_single_string(tokens, 2) {
        return StatementClass::txn(txn);
    }
    if !commit
        && tokens
            .position_from(1, |i| tokens.is_word(i, "to"))
            .is_some()
    {
        return StatementClass::txn(TxnControl::Savepoint);
    }
    let plain = (1..tokens.len())
        .all(|i| tokens.is_any_word(i, &["work", "transaction", "and", "no", "chain"]));
    if plain {
        StatementClass::txn(txn)
    } else {
        StatementClass::unknown()
    }
}

/// `PREPARE TRANSACTION 'gid'` ends the session's transaction (PostgreSQL
/// dissociates it from the session), so the session leaves its transaction
/// as after `COMMIT`. Any other `PREPARE` sqlparser rejected still pins.
fn prepare(tokens: &StatementTokens<'_>) -> StatementClass {
    if tokens.is_word(1, "transaction") && is_single_string(tokens, 2) {
        StatementClass::txn(TxnControl::Commit)
    } else {
        salvage_pin(true, PinReason::SqlPrepare)
    }
}

/// `LISTEN channel`.
fn listen(tokens: &StatementTokens<'_>) -> StatementClass {
    let mut class = StatementClass::pinned(PinReason::Listen);
    class.understood = tokens.len() == 2 && matches!(tokens.get(1), Some(Token::Word(_)));
    class
}

/// Whether the only token from `i` on is one string literal.
fn is_single_string(tokens: &StatementTokens<'_>, i: usize) -> bool {
    tokens.len() == i + 1 && matches!(tokens.get(i), Some(Token::SingleQuotedString(_)))
}

/// An unknown write that still carries the pin it evidently needs.
fn salvage_pin(needed: bool, pin: PinReason) -> StatementClass {
    StatementClass {
        pin: needed.then_some(pin),
        ..StatementClass::unknown()
    }
}

/// `CREATE [OR REPLACE] [GLOBAL | LOCAL] {TEMP | TEMPORARY} …`.
fn create_is_temporary(tokens: &StatementTokens<'_>) -> bool {
    let mut i = 1;
    if tokens.are_words(i, &["or", "replace"]) {
        i += 2;
    }
    if tokens.is_any_word(i, &["global", "local"]) {
        i += 1;
    }
    tokens.is_any_word(i, &["temp", "temporary"])
}

/// `SELECT … INTO [TEMP | TEMPORARY] …`.
fn select_into_temporary(tokens: &StatementTokens<'_>) -> bool {
    tokens
        .position_from(1, |i| {
            tokens.is_word(i, "into") && tokens.is_any_word(i + 1, &["temp", "temporary"])
        })
        .is_some()
}

/// `DECLARE name … WITH HOLD … FOR query`: look only before the `FOR`.
fn declare_with_hold(tokens: &StatementTokens<'_>) -> bool {
    let query_at = tokens
        .position_from(1, |i| tokens.is_word(i, "for"))
        .unwrap_or(tokens.len());
    (1..query_at).any(|i| tokens.are_words(i, &["with", "hold"]))
}

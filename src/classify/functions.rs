//! Functions whose call makes an otherwise read-only statement a write.

use sqlparser::tokenizer::Token;

use super::tokens::StatementTokens;

/// Functions that change state, need the primary, or keep per-connection
/// state, so a statement calling any of them goes to the primary.
///
/// The list is deliberately conservative: when in doubt a function is listed,
/// because a needless trip to the primary costs latency while a write sent to
/// a replica fails (or, for `currval`, silently reads another connection's
/// state). Names are matched ASCII case-insensitively, with or without a
/// schema (`pg_catalog.nextval`); `*` matches any run of characters.
/// User-defined functions are judged by the primary's catalog instead (see
/// [`super::calls`] and [`crate::catalog`]).
pub const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    // Sequences: nextval/setval write; currval/lastval read this connection's state.
    "nextval",
    "setval",
    "currval",
    "lastval",
    // Advisory locks, session and transaction level, lock and unlock.
    "pg_advisory_*",
    "pg_try_advisory_*",
    "pg_notify",
    // Assign a transaction id, which a replica cannot do.
    "txid_current",
    "pg_current_xact_id",
    // Read-only, but they fail during recovery.
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    // WAL, backup and server control.
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "set_config",
    "pg_stat_reset*",
    // Large objects.
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    "lo_truncate64",
    "lowrite",
    // Other connections and logical replication.
    "dblink*",
    "pg_logical_emit_message",
    "pg_logical_slot_*",
    "pg_create_*_replication_slot",
    "pg_copy_*_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_replication_origin_*",
];

/// Session-level advisory locks: they outlive the transaction, so the session
/// must stay on the connection that holds them. The `_xact_` variants end
/// with the transaction and do not pin.
const SESSION_ADVISORY_LOCKS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Releases every session-level advisory lock.
const ADVISORY_UNLOCK_ALL: &str = "pg_advisory_unlock_all";

/// What the function calls of one statement imply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct CallEffects {
    /// A function from [`SIDE_EFFECT_FUNCTIONS`] is called.
    pub(super) side_effect: bool,
    /// A session-level advisory lock is taken.
    pub(super) session_advisory_lock: bool,
    /// `pg_advisory_unlock_all()` is called.
    pub(super) unlock_all: bool,
}

/// Find every function call in the statement: a word (quoted or not,
/// possibly the last part of a qualified name) followed by `(`.
///
/// Working on tokens rather than the AST sees calls in every position — select
/// list, `WHERE`, `FROM`, nested arguments, sub-selects, CTEs — without
/// walking each of sqlparser's expression kinds, and also in statements
/// sqlparser cannot parse. A table alias with a column list named like a
/// listed function (`AS nextval(a)`) is a false positive that only costs a
/// trip to the primary. String literals and dollar-quoted bodies are single
/// tokens, so text inside them is never mistaken for a call.
pub(super) fn scan_calls(tokens: &StatementTokens<'_>) -> CallEffects {
    let mut effects = CallEffects::default();
    for i in 0..tokens.len() {
        let Some(Token::Word(word)) = tokens.get(i) else {
            continue;
        };
        if tokens.get(i + 1) != Some(&Token::LParen) {
            continue;
        }
        let name = word.value.to_ascii_lowercase();
        effects.side_effect |= is_side_effect_function(&name);
        effects.session_advisory_lock |= SESSION_ADVISORY_LOCKS.contains(&name.as_str());
        effects.unlock_all |= name == ADVISORY_UNLOCK_ALL;
    }
    effects
}

/// Whether `name` (lower-case, unqualified) matches [`SIDE_EFFECT_FUNCTIONS`].
#[must_use]
pub fn is_side_effect_function(name: &str) -> bool {
    SIDE_EFFECT_FUNCTIONS
        .iter()
        .any(|pattern| matches_pattern(pattern, name))
}

/// Match `name` against a pattern with at most one `*`.
pub(super) fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
    }
}

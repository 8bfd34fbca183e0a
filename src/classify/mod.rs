//! Statement classification: SQL text in, [`Classification`] out.
//!
//! [`classify`] is a pure function — no I/O, no caches, no state between
//! calls — and it is conservative: anything not provably a read goes to the
//! primary. A statement is [`Target::Read`] only when it is a kind known to
//! be read-only (`SELECT`, `VALUES`, `TABLE`, `SHOW`, `EXPLAIN` of those) and
//! nothing in it writes, locks rows or needs the primary (see
//! [`functions::SIDE_EFFECT_FUNCTIONS`]); everything else, including text
//! that cannot be parsed, is [`Target::Write`]. Alongside the target it
//! reports what the session layer must track: transaction control, session
//! parameter changes, state that pins the session to one server
//! connection, and the functions a read calls that are not known built-ins
//! ([`calls`]), which the function catalog ([`crate::catalog`]) judges.
//!
//! The text is tokenized and parsed with sqlparser's PostgreSQL dialect one
//! statement at a time, so a statement sqlparser rejects does not hide the
//! others; a small keyword-level fallback covers the session and
//! transaction forms PostgreSQL accepts but sqlparser 0.64 does not.

pub mod calls;
mod fallback;
pub mod fingerprint;
pub mod functions;
mod session;
mod statement;
mod tables;
mod tokens;

#[cfg(test)]
mod tests;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

pub use calls::FnName;
use tokens::StatementTokens;

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Provably read-only: may go to a replica.
    Read,
    /// Everything else: must go to the primary.
    Write,
}

/// Transaction control found in the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnControl {
    /// `BEGIN` / `START TRANSACTION`; `read_only` when `READ ONLY` is given.
    Begin {
        /// The transaction was opened `READ ONLY`.
        read_only: bool,
    },
    /// `COMMIT`, `END`, `COMMIT PREPARED`, `PREPARE TRANSACTION`.
    Commit,
    /// `ROLLBACK`, `ABORT`, `ROLLBACK PREPARED` (not `ROLLBACK TO SAVEPOINT`).
    Rollback,
    /// `SAVEPOINT`, `RELEASE [SAVEPOINT]`, `ROLLBACK TO [SAVEPOINT]`.
    Savepoint,
    /// `SET TRANSACTION …` (the session form, `SET SESSION CHARACTERISTICS AS TRANSACTION …`,
    /// is a change of the `default_transaction_*` parameters).
    SetTransaction {
        /// `READ ONLY` was given.
        read_only: bool,
    },
}

/// A change to a session parameter that the proxy tracks and replays on
/// other server connections. It describes what the statement asks for: apply
/// it only once the server has accepted the statement (and remember that
/// PostgreSQL undoes a `SET` made in a transaction that rolls back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamChange {
    /// `SET [SESSION] name {TO | =} value`. `name` is lower-case (`SET TIME
    /// ZONE` → `timezone`, `SET NAMES` → `client_encoding`, `SET SCHEMA` →
    /// `search_path`); `value` is the client's SQL text, to re-issue as
    /// `SET name TO value`, e.g. `'UTC'` or `public, "$user"`.
    Set {
        /// Lower-case parameter name, possibly dotted (`pgroute.min_lsn`).
        name: String,
        /// The value as SQL text.
        value: String,
    },
    /// `RESET name`, and `SET name TO DEFAULT`.
    Reset {
        /// Lower-case parameter name.
        name: String,
    },
    /// `RESET ALL`, and `DISCARD ALL`.
    ResetAll,
}

/// Why a statement pins the client session to one server connection: it
/// creates state that cannot move to another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinReason {
    /// `CREATE TEMP TABLE/VIEW/SEQUENCE`, `SELECT … INTO TEMP`.
    TempTable,
    /// `LISTEN channel`.
    Listen,
    /// A session-level advisory lock (`pg_advisory_lock`, `pg_try_advisory_lock`, `…_shared`).
    AdvisoryLock,
    /// `DECLARE … WITH HOLD`.
    HoldCursor,
    /// `SET SESSION AUTHORIZATION`, `SET ROLE`.
    SessionAuthorization,
    /// SQL-level `PREPARE`.
    SqlPrepare,
}

/// A set of [`PinReason`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinSet(u8);

impl PinSet {
    pub const EMPTY: PinSet = PinSet(0);
    pub const ALL: PinSet = PinSet(u8::MAX);

    pub fn of(reason: PinReason) -> Self {
        PinSet(1 << reason as u8)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, reason: PinReason) -> bool {
        self.0 & (1 << reason as u8) != 0
    }

    pub fn union(self, other: PinSet) -> PinSet {
        PinSet(self.0 | other.0)
    }

    pub fn without(self, other: PinSet) -> PinSet {
        PinSet(self.0 & !other.0)
    }
}

/// Everything the proxy needs to know about one query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Where it may run: `Read` only if every statement is a read.
    pub target: Target,
    /// The first transaction-control statement.
    pub txn: Option<TxnControl>,
    /// Session parameter changes, in statement order.
    pub params: Vec<ParamChange>,
    /// The first pin found.
    pub pin: Option<PinReason>,
    /// Pins this releases: `DISCARD ALL` (all), `UNLISTEN *`, `pg_advisory_unlock_all()`,
    /// `DEALLOCATE ALL`.
    pub releases: PinSet,
    /// A `DISCARD ALL` was found.
    pub discard_all: bool,
    /// Number of statements (0 for empty, whitespace- or comment-only text),
    /// counting those that could not be parsed.
    pub statements: usize,
    /// Every statement was understood, by sqlparser or by the keyword
    /// fallback. When false, `target` is `Write`.
    pub parsed: bool,
    /// The text is one `DEALLOCATE [PREPARE] name` (not `ALL`): that name, case-folded as
    /// PostgreSQL folds identifiers.
    pub deallocate: Option<String>,
    /// A statement is DDL or another schema or privilege change (`CREATE`, `ALTER`, `DROP`,
    /// `TRUNCATE`, `GRANT`, `REVOKE`, `COMMENT`, …).
    pub ddl: bool,
    /// The tables the statements name, as `schema.name` or `name` (unquoted identifiers
    /// lower-cased), each once; empty for statements sqlparser could not parse.
    pub tables: Vec<String>,
    /// When `target` is `Read`: the functions it calls that are not known built-ins (see
    /// [`calls::READ_ONLY_BUILTINS`]), each once. The function catalog decides whether one of
    /// them makes it a write. Empty for a write.
    pub functions: Vec<FnName>,
    /// A statement creates, replaces, alters or drops functions (see
    /// [`calls::changes_functions`]): answers cached about functions may be stale after it.
    pub changes_functions: bool,
}

/// Classify one query string (one or more `;`-separated statements).
/// Never panics, whatever the input.
#[must_use]
pub fn classify(sql: &str) -> Classification {
    let dialect = PostgreSqlDialect {};
    // Keep escapes as written, so `ParamChange::Set` values are the client's text.
    let tokenized = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize_with_location();
    let Ok(tokens) = tokenized else {
        // Unterminated quote or comment: PostgreSQL will reject it too.
        return Classification::unreadable();
    };
    let mut classification = Classification::empty();
    for piece in split_statements(&dialect, &tokens) {
        classification.absorb(classify_piece(&piece));
    }
    if classification.target == Target::Write {
        // Only a read may go to a replica: a write's functions do not matter.
        classification.functions = Vec::new();
    }
    classification
}

impl Classification {
    /// Only `SET`/`RESET` statements: session settings, no data written (read-your-writes does
    /// not count them as writes).
    pub fn only_session_settings(&self) -> bool {
        self.statements > 0
            && self.params.len() >= self.statements
            && self.txn.is_none()
            && self.pin.is_none()
            && self.releases.is_empty()
            && !self.discard_all
    }

    /// A lone `BEGIN` / `START TRANSACTION`: `Some(read_only)`, else None.
    pub fn lone_begin(&self) -> Option<bool> {
        match self.txn {
            Some(TxnControl::Begin { read_only }) if self.statements == 1 => Some(read_only),
            _ => None,
        }
    }

    /// A lone `SET TRANSACTION … READ ONLY`.
    pub fn sets_read_only(&self) -> bool {
        self.statements == 1 && self.txn == Some(TxnControl::SetTransaction { read_only: true })
    }

    /// Whether running it changes session state the proxy tracks (parameters, pinning,
    /// prepared statements).
    pub fn has_session_effects(&self) -> bool {
        !self.params.is_empty()
            || self.pin.is_some()
            || !self.releases.is_empty()
            || self.discard_all
    }

    /// No statements: nothing to run anywhere, so a read.
    fn empty() -> Self {
        Self {
            target: Target::Read,
            txn: None,
            params: Vec::new(),
            pin: None,
            releases: PinSet::EMPTY,
            discard_all: false,
            statements: 0,
            parsed: true,
            deallocate: None,
            ddl: false,
            tables: Vec::new(),
            functions: Vec::new(),
            changes_functions: false,
        }
    }

    /// Text that cannot even be tokenized.
    fn unreadable() -> Self {
        Self {
            target: Target::Write,
            statements: 1,
            parsed: false,
            ..Self::empty()
        }
    }

    /// Fold in the next statement.
    fn absorb(&mut self, class: StatementClass) {
        if !(class.read && class.understood) {
            self.target = Target::Write;
        }
        self.txn = self.txn.or(class.txn);
        self.params.extend(class.params);
        self.pin = self.pin.or(class.pin);
        self.releases = self.releases.union(class.releases);
        self.discard_all |= class.discard_all;
        self.deallocate = if self.statements == 0 {
            class.deallocate
        } else {
            None
        };
        self.statements += 1;
        self.parsed &= class.understood;
        self.ddl |= class.ddl;
        for table in class.tables {
            if !self.tables.contains(&table) {
                self.tables.push(table);
            }
        }
        self.changes_functions |= class.changes_functions;
        if self.target == Target::Read {
            for f in class.functions {
                if !self.functions.contains(&f) {
                    self.functions.push(f);
                }
            }
        }
    }
}

/// What one statement contributes to a [`Classification`].
#[derive(Debug, Default)]
struct StatementClass {
    read: bool,
    /// Recognised by sqlparser or the fallback.
    understood: bool,
    txn: Option<TxnControl>,
    params: Vec<ParamChange>,
    pin: Option<PinReason>,
    releases: PinSet,
    discard_all: bool,
    /// `DEALLOCATE name` (not `ALL`): the statement name, case-folded as PostgreSQL does.
    deallocate: Option<String>,
    ddl: bool,
    tables: Vec<String>,
    /// For a read: the functions it calls that are not known built-ins.
    functions: Vec<FnName>,
    /// It creates, replaces, alters or drops functions.
    changes_functions: bool,
}

impl StatementClass {
    fn read() -> Self {
        Self {
            read: true,
            understood: true,
            ..Self::default()
        }
    }

    fn write() -> Self {
        Self {
            understood: true,
            ..Self::default()
        }
    }

    /// Not understood: a write, by default.
    fn unknown() -> Self {
        Self::default()
    }

    fn pinned(pin: PinReason) -> Self {
        Self {
            pin: Some(pin),
            ..Self::write()
        }
    }

    fn txn(txn: TxnControl) -> Self {
        Self {
            txn: Some(txn),
            ..Self::write()
        }
    }

    fn param(change: ParamChange) -> Self {
        Self {
            params: vec![change],
            ..Self::write()
        }
    }
}

/// One statement's tokens and, when sqlparser could parse it, its AST.
struct Piece<'a> {
    tokens: StatementTokens<'a>,
    statement: Option<Statement>,
}

/// Split the tokens into statements, parsing each. A statement sqlparser
/// rejects runs to the next `;` and parsing resumes after it, so one
/// unsupported statement does not hide the rest. (A `;` inside a `BEGIN
/// ATOMIC` body of a function sqlparser rejects would split it wrongly; the
/// pieces are all writes, so routing stays safe.)
fn split_statements<'a>(
    dialect: &PostgreSqlDialect,
    tokens: &'a [TokenWithSpan],
) -> Vec<Piece<'a>> {
    let mut pieces = Vec::new();
    // Index in `tokens` of the parser's first token.
    let mut base = 0;
    let mut parser = Parser::new(dialect).with_tokens_with_locations(tokens.to_vec());
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            return pieces;
        }
        let start = base + parser.index();
        let statement = parse_one(&mut parser);
        let position = base + parser.index();
        if statement.is_some() {
            let statement_tokens = tokens.get(start..position.min(tokens.len()));
            pieces.push(Piece::new(statement_tokens.unwrap_or_default(), statement));
            continue;
        }
        let end = next_semicolon(tokens, start);
        pieces.push(Piece::new(tokens.get(start..end).unwrap_or_default(), None));
        if end >= tokens.len() {
            return pieces;
        }
        if position <= end {
            // Skip the rest of the rejected statement, up to and including its `;`.
            while base + parser.index() <= end {
                parser.advance_token();
            }
        } else {
            // The parser read past the `;` before giving up (rare): restart
            // there rather than walk back, which sqlparser only does by assert.
            base = end;
            parser = Parser::new(dialect).with_tokens_with_locations(tokens[end..].to_vec());
        }
    }
}

/// Parse one statement; `None` unless it ends at `;` or the end of the text.
fn parse_one(parser: &mut Parser<'_>) -> Option<Statement> {
    let statement = parser.parse_statement().ok()?;
    matches!(parser.peek_token_ref().token, Token::SemiColon | Token::EOF).then_some(statement)
}

fn next_semicolon(tokens: &[TokenWithSpan], from: usize) -> usize {
    tokens
        .iter()
        .skip(from)
        .position(|t| t.token == Token::SemiColon)
        .map_or(tokens.len(), |i| from + i)
}

impl<'a> Piece<'a> {
    fn new(tokens: &'a [TokenWithSpan], statement: Option<Statement>) -> Self {
        Self {
            tokens: StatementTokens::new(tokens),
            statement,
        }
    }
}

/// Classify one statement: by its AST or the keyword fallback, then by the
/// functions it calls and any row-locking clause.
fn classify_piece(piece: &Piece<'_>) -> StatementClass {
    let mut class = match &piece.statement {
        Some(statement) => statement::classify_statement(statement, &piece.tokens),
        None => fallback::classify_unparsed(&piece.tokens),
    };
    let effects = functions::scan_calls(&piece.tokens);
    if effects.side_effect || tokens::has_locking_clause(&piece.tokens) {
        class.read = false;
    }
    if effects.session_advisory_lock {
        class.pin = class.pin.or(Some(PinReason::AdvisoryLock));
    }
    if effects.unlock_all {
        class.releases = class.releases.union(PinSet::of(PinReason::AdvisoryLock));
    }
    class.ddl = tables::is_ddl(&piece.tokens);
    if let Some(statement) = &piece.statement {
        tables::relations(statement, &mut class.tables);
    }
    if let (true, Some(statement)) = (class.read && class.understood, &piece.statement) {
        class.functions = calls::called_functions(statement);
    }
    class.changes_functions = calls::changes_functions(&piece.tokens);
    class
}

//! What pgroute expects from a server connection for each message it sent, and what the
//! session must act on as replies come.

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::view::Lsn;
use crate::classify::Classification;
use crate::protocol::tag;
use crate::session::extended::Unnamed;
use crate::session::statements::Statement;

/// What one frontend message will be answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectKind {
    /// ParseComplete.
    Parse,
    /// BindComplete.
    Bind,
    /// ParameterDescription (statements only), then RowDescription or NoData.
    Describe,
    /// Rows, then CommandComplete, EmptyQueryResponse or PortalSuspended (COPY in between).
    Execute,
    /// CloseComplete.
    Close,
    /// ReadyForQuery.
    Sync,
    /// A simple Query: any number of results, then ReadyForQuery.
    Query,
    /// pgroute's own `SELECT current_setting(…)` of these parameters after a transaction that
    /// changed them; nothing reaches the client.
    ReadParams(Vec<String>),
    /// pgroute's own `SELECT pg_current_wal_insert_lsn()` after a write (read-your-writes):
    /// its DataRow carries the LSN; nothing reaches the client.
    CaptureLsn,
    /// Nothing from the server: pgroute sends these bytes itself when their turn comes.
    Synthetic(Bytes),
    /// Nothing from the server: marks where the client's CopyDone/CopyFail went, so that the
    /// Syncs sent between a COPY FROM STDIN and its end are known to be ignored.
    CopyEnd,
}

/// One expected reply.
#[derive(Debug, Clone)]
pub struct Expect {
    pub kind: ExpectKind,
    /// False for replies to messages pgroute injected: the client never sees them.
    pub visible: bool,
    /// If this message does not succeed, the client's statement of this name was never created.
    pub forget_client: Option<(String, Arc<Statement>)>,
    /// If this message does not succeed, the statement with this registry id is not on the
    /// connection.
    pub forget_server: Option<u64>,
    /// The statement being executed (Execute, Query), for the session parameters it sets.
    pub class: Option<Arc<Classification>>,
    /// An ErrorResponse was seen within this reply (Query).
    pub failed: bool,
    /// Statement results (CommandComplete, EmptyQueryResponse) seen within this reply (Query).
    pub results: usize,
    /// An error about this message names pgroute's statement (first); the client knows it by
    /// the second name.
    pub rename: Option<(String, String)>,
    /// A Close of this client statement, undone if an earlier error makes the server skip it.
    pub restore: Option<(String, Arc<Statement>)>,
    /// A Sync sent after COPY data: if it turns out to have been sent during a COPY that then
    /// fails, the server may or may not answer it (it answers only if it read it after the
    /// error).
    pub after_copy_data: bool,
    /// A Sync that may get no ReadyForQuery (see `after_copy_data`).
    pub optional: bool,
    /// The client sent Terminate without Sync: the server would flush its replies only with
    /// an error or notice (which PostgreSQL flushes at once, with what came before them).
    pub quiet: bool,
    /// pgroute answers this Query itself with these replies (its own statement, sent during
    /// COPY IN as an empty query that fails the COPY like the original would): the server's
    /// reply is swallowed up to its ReadyForQuery, which these bytes precede.
    pub replace: Option<Bytes>,
    /// A Parse of the unnamed statement: what the session's unnamed statement is if it fails
    /// or is discarded.
    pub unnamed: Option<UnnamedChange>,
}

/// The unnamed statement a Parse of the unnamed statement replaces. PostgreSQL drops the old
/// one when it runs the Parse (so a Parse that fails leaves none); a Parse it discards after an
/// earlier error leaves the old one in place.
#[derive(Debug, Clone)]
pub struct UnnamedChange {
    pub replaces: Option<Unnamed>,
    /// The connection had the session's unnamed statement before this Parse.
    pub was_on_conn: bool,
}

impl Expect {
    pub fn new(kind: ExpectKind) -> Self {
        Expect {
            kind,
            visible: true,
            forget_client: None,
            forget_server: None,
            class: None,
            failed: false,
            results: 0,
            rename: None,
            restore: None,
            after_copy_data: false,
            optional: false,
            quiet: false,
            replace: None,
            unnamed: None,
        }
    }

    pub fn hidden(kind: ExpectKind) -> Self {
        Expect {
            visible: false,
            ..Expect::new(kind)
        }
    }

    pub fn synthetic(bytes: Bytes) -> Self {
        Expect::new(ExpectKind::Synthetic(bytes))
    }

    /// Does `tag` end this reply?
    pub(super) fn completed_by(&self, t: u8) -> bool {
        match self.kind {
            ExpectKind::Parse => t == tag::PARSE_COMPLETE,
            ExpectKind::Bind => t == tag::BIND_COMPLETE,
            ExpectKind::Close => t == tag::CLOSE_COMPLETE,
            ExpectKind::Describe => t == tag::ROW_DESCRIPTION || t == tag::NO_DATA,
            ExpectKind::Execute => matches!(
                t,
                tag::COMMAND_COMPLETE | tag::EMPTY_QUERY | tag::PORTAL_SUSPENDED
            ),
            ExpectKind::Sync
            | ExpectKind::Query
            | ExpectKind::CaptureLsn
            | ExpectKind::ReadParams(_) => t == tag::READY_FOR_QUERY,
            ExpectKind::Synthetic(_) | ExpectKind::CopyEnd => true,
        }
    }

    /// Could a message of type `t` be (part of) the reply to this one? Errors aside: any
    /// message may fail.
    pub(super) fn may_answer(&self, t: u8) -> bool {
        match self.kind {
            ExpectKind::Parse => t == tag::PARSE_COMPLETE,
            ExpectKind::Bind => t == tag::BIND_COMPLETE,
            ExpectKind::Close => t == tag::CLOSE_COMPLETE,
            ExpectKind::Describe => matches!(
                t,
                tag::PARAMETER_DESCRIPTION | tag::ROW_DESCRIPTION | tag::NO_DATA
            ),
            ExpectKind::Sync => t == tag::READY_FOR_QUERY,
            ExpectKind::Execute => !matches!(
                t,
                tag::PARSE_COMPLETE
                    | tag::BIND_COMPLETE
                    | tag::CLOSE_COMPLETE
                    | tag::PARAMETER_DESCRIPTION
                    | tag::NO_DATA
                    | tag::READY_FOR_QUERY
            ),
            ExpectKind::Query
            | ExpectKind::CaptureLsn
            | ExpectKind::ReadParams(_)
            | ExpectKind::Synthetic(_)
            | ExpectKind::CopyEnd => true,
        }
    }

    /// Answered by ReadyForQuery.
    pub(super) fn is_sync_like(&self) -> bool {
        matches!(
            self.kind,
            ExpectKind::Sync
                | ExpectKind::Query
                | ExpectKind::CaptureLsn
                | ExpectKind::ReadParams(_)
        )
    }
}

/// Something the session must act on, found while relaying.
#[derive(Debug)]
pub enum Event {
    /// ReadyForQuery for the client with this transaction status.
    Ready(u8),
    /// A statement completed; apply the session parameters it set.
    Completed(Arc<Classification>),
    /// The statement with this registry id is not on the connection (pgroute's Parse of it
    /// failed or was discarded).
    Forget(u64),
    /// What the client's statement name means on the server after all (None: no statement)
    /// once a Parse of it failed or was discarded, or a Close of it was skipped.
    Named(String, Option<Arc<Statement>>),
    /// The session's unnamed statement is this one after all, and the connection has it (or
    /// not): a Parse of the unnamed statement failed (None, true) or was discarded.
    Unnamed(Option<Unnamed>, bool),
    /// The server entered COPY IN: client CopyData goes straight to it. `extended`: the COPY
    /// was started by an Execute, whose Sync the server ignored, so the connection belongs to
    /// this client until it sends the Sync that follows CopyDone/CopyFail (after an error the
    /// server discards everything up to that Sync).
    CopyIn { extended: bool },
    /// The server left COPY IN (the COPY completed or failed).
    CopyInEnded,
    /// Session parameters as the server reports them after a transaction (None: not set).
    ParamValues(Vec<(String, Option<String>)>),
    /// The primary's WAL insert position after the session's last write.
    Lsn(Lsn),
    /// The server sent a FATAL (or PANIC) error: it is closing the connection. The client
    /// has been sent the error and must be disconnected, as PostgreSQL would.
    Fatal,
    /// A server's ErrorResponse was passed to the client, with this SQLSTATE (for metrics;
    /// zeros when the server sent none).
    ServerError([u8; 5]),
}

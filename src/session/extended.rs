//! The extended query protocol: a client's Parse/Bind/Describe/Execute/Close messages up to Sync
//! (or Flush) form a batch that is routed as a unit, then rewritten for the chosen connection:
//! named statements get pgroute's server-side names, and a Parse is injected where the
//! connection lacks the statement a Bind or Describe refers to.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::relay::{Expect, ExpectKind, UnnamedChange};
use super::statements::Statement;
use super::Session;
use crate::backend::ServerConn;
use crate::classify::{Classification, Target, TxnControl};
use crate::consistency::{parse_hints, Hints};
use crate::error::{Error, Violation};
use crate::protocol::{messages, Body};

mod rebind;

/// The statement a Bind or Describe refers to.
#[derive(Debug, Clone)]
pub enum StmtRef {
    Named(Arc<Statement>),
    /// The unnamed statement as it was when the message came (None: the client has none,
    /// and PostgreSQL answers 26000).
    Unnamed(Option<Unnamed>),
    /// A name the client never prepared: the server is asked for a name it cannot have, so it
    /// answers with PostgreSQL's own 26000 error and transaction semantics.
    Unknown(String),
}

/// A statement name no server connection has (pgroute only creates `pgr_<id>`).
const MISSING_NAME: &str = "pgr_missing";

/// The session's unnamed prepared statement, remembered so it can be re-parsed on another
/// server connection.
#[derive(Debug, Clone)]
pub struct Unnamed {
    pub after_name: Bytes,
    pub class: Arc<Classification>,
    pub hints: Hints,
}

/// One client message of a batch, decoded as far as routing and rewriting need.
#[derive(Debug)]
pub enum ExtMsg {
    ParseNamed {
        client_name: String,
        stmt: Arc<Statement>,
    },
    /// A Parse reusing a name the client already prepared: PostgreSQL answers 42P05, so the
    /// server is made to give that error itself (keeping the batch's transaction semantics).
    ParseDuplicate {
        stmt: Arc<Statement>,
        client_name: String,
        /// The new Parse's text and parameter types.
        after_name: Bytes,
    },
    ParseUnnamed {
        frame: BytesMut,
        /// The unnamed statement this Parse replaces: the session's again if the server
        /// discards this Parse (an earlier error in its sequence).
        replaces: Option<Unnamed>,
    },
    Bind {
        frame: BytesMut,
        stmt: StmtRef,
    },
    DescribeStmt {
        frame: BytesMut,
        stmt: StmtRef,
    },
    /// Sent unchanged; the server answers with one reply of `kind` (Flush: no reply).
    Forward {
        frame: BytesMut,
        kind: Option<ExpectKind>,
    },
    Execute {
        frame: BytesMut,
        class: Option<Arc<Classification>>,
    },
    /// Close of a named statement: only the client's name goes; the server keeps pgroute's.
    CloseNamed {
        client_name: String,
        closed: Option<Arc<Statement>>,
    },
}

/// The messages received since the last dispatch.
#[derive(Debug, Default)]
pub struct Batch {
    pub msgs: Vec<ExtMsg>,
    /// Write if any statement in the batch is not provably a read.
    pub target: Option<Target>,
    /// Ends with Sync (or Flush): ready to dispatch.
    pub complete: bool,
    /// The batch has a lone `BEGIN` (`Some(true)`: `READ ONLY`, not counted in `target`).
    pub begin: Option<bool>,
    /// The batch's first statement is `SET TRANSACTION … READ ONLY` (it may open a deferred
    /// `BEGIN` on a replica).
    pub starts_read_only: bool,
    /// Every statement in the batch only changes session settings (no data written).
    pub only_settings: bool,
    /// A statement has been noted.
    noted: bool,
    /// Read hints from the comments of statements parsed in this batch.
    pub hints: Hints,
    /// The classification of the statement bound by the batch's last Bind (for Execute).
    last_bound: Option<Arc<Classification>>,
    /// The client sent Terminate after these messages: only errors (which the server flushes
    /// at once) reach it.
    pub closing: bool,
    /// The batch's reads that call functions the catalog must judge.
    pub calls: Vec<Arc<Classification>>,
    /// A statement in the batch creates, replaces, alters or drops functions.
    pub changes_functions: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// A statement's hints apply to the batch that runs (or parses) it.
    fn add_hints(&mut self, hints: &Hints) {
        self.hints.min_lsn = self.hints.min_lsn.max(hints.min_lsn);
        self.hints.max_lag = match (self.hints.max_lag, hints.max_lag) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.hints.route = self.hints.route.or(hints.route);
        self.hints.malformed |= hints.malformed;
    }

    fn note(&mut self, class: &Arc<Classification>) {
        self.changes_functions |= class.changes_functions;
        if !class.functions.is_empty() && !self.calls.iter().any(|c| Arc::ptr_eq(c, class)) {
            self.calls.push(class.clone());
        }
        let settings = class.only_session_settings();
        if !self.noted {
            self.starts_read_only = class.sets_read_only();
        }
        self.only_settings = if self.noted {
            self.only_settings && settings
        } else {
            settings
        };
        self.noted = true;
        if let Some(read_only) = class.lone_begin() {
            self.begin = Some(read_only || self.begin == Some(true));
            if read_only {
                // Routed by `routing.read_only_transactions` when the batch is dispatched.
                return;
            }
        }
        if self.target != Some(Target::Write) {
            self.target = Some(class.target);
        }
    }
}

fn malformed(e: crate::protocol::BodyError) -> Error {
    Violation::Body(e).into()
}

impl Session {
    /// Adds one extended-protocol frame to the pending batch.
    pub(super) fn push_extended(&mut self, frame: BytesMut) -> Result<(), Error> {
        let tag = frame[0];
        let msg = match tag {
            b'P' => self.decode_parse(frame)?,
            b'B' => {
                let mut body = Body::of_frame(&frame);
                body.cstr("Bind").map_err(malformed)?;
                let name = body.cstr("Bind").map_err(malformed)?.to_owned();
                let stmt = self.resolve(&name);
                ExtMsg::Bind { frame, stmt }
            }
            b'D' | b'C' => self.decode_describe_close(frame)?,
            b'E' => ExtMsg::Execute {
                frame,
                class: self.batch.last_bound.clone(),
            },
            b'H' => {
                self.batch.complete = true;
                ExtMsg::Forward { frame, kind: None }
            }
            _ => {
                self.batch.complete = true;
                ExtMsg::Forward {
                    frame,
                    kind: Some(ExpectKind::Sync),
                }
            }
        };
        self.batch.msgs.push(msg);
        Ok(())
    }

    fn decode_parse(&mut self, frame: BytesMut) -> Result<ExtMsg, Error> {
        let mut body = Body::of_frame(&frame);
        let name = body.cstr("Parse").map_err(malformed)?.to_owned();
        let after = body.rest();
        let query = std::str::from_utf8(body.cbytes("Parse").map_err(malformed)?).ok();
        let after_name = Bytes::copy_from_slice(after);
        if name.is_empty() {
            let class = self.proxy.classes.classify_text(query);
            let hints = query.map(parse_hints).unwrap_or_default();
            self.batch.note(&class);
            self.batch.add_hints(&hints);
            let replaces = self.unnamed.replace(Unnamed {
                after_name,
                class,
                hints,
            });
            return Ok(ExtMsg::ParseUnnamed { frame, replaces });
        }
        if let Some(stmt) = self.statements.get(&name) {
            return Ok(ExtMsg::ParseDuplicate {
                stmt: stmt.clone(),
                client_name: name,
                after_name,
            });
        }
        let stmt = self
            .proxy
            .registry
            .intern(after_name, query, &self.proxy.classes);
        self.batch.note(&stmt.class);
        self.batch.add_hints(&stmt.hints);
        self.statements.insert(name.clone(), stmt.clone());
        Ok(ExtMsg::ParseNamed {
            client_name: name,
            stmt,
        })
    }

    fn decode_describe_close(&mut self, frame: BytesMut) -> Result<ExtMsg, Error> {
        let tag = frame[0];
        let mut body = Body::of_frame(&frame);
        let kind = body.u8("Describe/Close").map_err(malformed)?;
        let name = body.cstr("Describe/Close").map_err(malformed)?.to_owned();
        let reply = if tag == b'D' {
            ExpectKind::Describe
        } else {
            ExpectKind::Close
        };
        Ok(match (tag, kind) {
            (b'D', b'S') => {
                let stmt = self.resolve(&name);
                ExtMsg::DescribeStmt { frame, stmt }
            }
            // "It is not an error to issue Close against a nonexistent statement or portal."
            (b'C', b'S') if !name.is_empty() => {
                let closed = self.statements.remove(&name);
                ExtMsg::CloseNamed {
                    client_name: name,
                    closed,
                }
            }
            _ => ExtMsg::Forward {
                frame,
                kind: Some(reply),
            },
        })
    }

    /// The statement a Bind/Describe names.
    fn resolve(&mut self, name: &str) -> StmtRef {
        if name.is_empty() {
            if let Some(u) = &self.unnamed {
                let (class, hints) = (u.class.clone(), u.hints);
                self.batch.note(&class);
                self.batch.add_hints(&hints);
                self.batch.last_bound = Some(class);
            }
            return StmtRef::Unnamed(self.unnamed.clone());
        }
        match self.statements.get(name) {
            Some(stmt) => {
                let stmt = stmt.clone();
                self.batch.note(&stmt.class);
                self.batch.add_hints(&stmt.hints);
                self.batch.last_bound = Some(stmt.class.clone());
                StmtRef::Named(stmt)
            }
            None => StmtRef::Unknown(name.to_owned()),
        }
    }
}

/// The statement name a text already prepared on the connection is parsed again under, to
/// learn whether the server accepts a Parse now (see [`Encoder::txn_may_have_failed`]).
const REPARSE_NAME: &str = "pgroute_reparse";

/// `COMMIT`/`ROLLBACK` (and `ROLLBACK TO`, filed with savepoints): the statements PostgreSQL
/// still parses in a failed transaction.
fn ends_transaction(stmt: &Statement) -> bool {
    matches!(
        stmt.class.txn,
        Some(TxnControl::Commit | TxnControl::Rollback | TxnControl::Savepoint)
    )
}

/// Rewrites a batch for `conn`: the bytes to send and the replies to expect, in order.
pub struct Encoder<'a> {
    pub conn: &'a mut ServerConn,
    pub out: &'a mut BytesMut,
    pub expects: &'a mut VecDeque<Expect>,
    /// The connection has the session's unnamed statement (no re-parse needed before a use).
    pub unnamed_on_conn: bool,
    /// COPY data was written since the last Execute (a Sync after it may be ambiguous).
    pub copy_data: bool,
    /// The server may be in a failed transaction when the batch reaches it (it is, or replies
    /// are still due): PostgreSQL refuses a Parse there (25P02), so pgroute may not answer one.
    pub txn_may_have_failed: bool,
}

impl Encoder<'_> {
    pub fn encode(&mut self, msg: &ExtMsg) {
        match msg {
            ExtMsg::ParseNamed { client_name, stmt } => self.parse_named(client_name, stmt),
            ExtMsg::ParseUnnamed { frame, replaces } => {
                self.out.extend_from_slice(frame);
                let mut e = Expect::new(ExpectKind::Parse);
                e.unnamed = Some(UnnamedChange {
                    replaces: replaces.clone(),
                    was_on_conn: self.unnamed_on_conn,
                });
                self.expects.push_back(e);
                self.unnamed_on_conn = true;
            }
            ExtMsg::Bind { frame, stmt } => {
                let mut e = Expect::new(ExpectKind::Bind);
                e.rename = self.rewrite(frame, stmt, true);
                self.expects.push_back(e);
            }
            ExtMsg::DescribeStmt { frame, stmt } => {
                let mut e = Expect::new(ExpectKind::Describe);
                e.rename = self.rewrite(frame, stmt, false);
                self.expects.push_back(e);
            }
            ExtMsg::Forward { frame, kind } => self.forward_unchanged(frame, kind),
            ExtMsg::Execute { frame, class } => {
                self.copy_data = false;
                self.out.extend_from_slice(frame);
                let mut e = Expect::new(ExpectKind::Execute);
                e.class = class.clone();
                self.expects.push_back(e);
            }
            ExtMsg::CloseNamed {
                client_name,
                closed,
            } => {
                let mut e = Expect::synthetic(messages::empty(b'3'));
                e.restore = closed.clone().map(|stmt| (client_name.clone(), stmt));
                self.expects.push_back(e);
            }
            ExtMsg::ParseDuplicate {
                stmt,
                client_name,
                after_name,
            } => self.parse_duplicate(stmt, client_name, after_name),
        }
    }

    /// A Parse of a named statement: sent under pgroute's name unless the connection has the
    /// statement already, in which case pgroute answers ParseComplete itself.
    fn parse_named(&mut self, client_name: &str, stmt: &Arc<Statement>) {
        let mut e = if self.conn.prepared.contains(&stmt.id) {
            if self.txn_may_have_failed && !ends_transaction(stmt) {
                // Parsed again under a name closed at once: ParseComplete in a good
                // transaction, 25P02 (and the rest discarded) in a failed one.
                messages::parse(self.out, REPARSE_NAME, &stmt.after_name);
                messages::with_statement_name(self.out, b'C', b"S", REPARSE_NAME, b"");
                let mut e = Expect::new(ExpectKind::Parse);
                e.forget_client = Some((client_name.to_owned(), stmt.clone()));
                self.expects.push_back(e);
                self.expects.push_back(Expect::hidden(ExpectKind::Close));
                return;
            }
            Expect::synthetic(messages::empty(b'1'))
        } else {
            self.conn.prepared.insert(stmt.id);
            messages::parse(self.out, &stmt.server_name, &stmt.after_name);
            let mut e = Expect::new(ExpectKind::Parse);
            e.forget_server = Some(stmt.id);
            e
        };
        e.forget_client = Some((client_name.to_owned(), stmt.clone()));
        self.expects.push_back(e);
    }

    /// The new text under the name the connection already has: the server analyses it first
    /// (its own errors come first, as PostgreSQL's would), then says 42P05.
    fn parse_duplicate(&mut self, stmt: &Statement, client_name: &str, after_name: &[u8]) {
        self.ensure_prepared(stmt);
        messages::parse(self.out, &stmt.server_name, after_name);
        let mut e = Expect::new(ExpectKind::Parse);
        e.rename = Some((stmt.server_name.clone(), client_name.to_owned()));
        self.expects.push_back(e);
    }

    /// A message sent as the client wrote it; a Sync remembers whether COPY data preceded it.
    fn forward_unchanged(&mut self, frame: &[u8], kind: &Option<ExpectKind>) {
        self.copy_data |= frame.first() == Some(&b'd');
        self.forward(frame, kind.clone());
        if let (Some(ExpectKind::Sync), Some(e)) = (kind, self.expects.back_mut()) {
            e.after_copy_data = self.copy_data;
        }
    }

    fn forward(&mut self, frame: &[u8], kind: Option<ExpectKind>) {
        self.out.extend_from_slice(frame);
        if let Some(kind) = kind {
            self.expects.push_back(Expect::new(kind));
        }
    }

    /// Prepares `stmt` on this connection (hidden from the client) unless it is there already.
    fn ensure_prepared(&mut self, stmt: &Statement) {
        if self.conn.prepared.insert(stmt.id) {
            messages::parse(self.out, &stmt.server_name, &stmt.after_name);
            let mut e = Expect::hidden(ExpectKind::Parse);
            e.forget_server = Some(stmt.id);
            self.expects.push_back(e);
        }
    }

    /// Writes a Bind (`bind`) or Describe of a statement under the connection's name for it,
    /// preparing the statement first when this connection lacks it. Returns the (server name,
    /// client name) pair an error about it must be reworded with.
    fn rewrite(&mut self, frame: &[u8], stmt: &StmtRef, bind: bool) -> Option<(String, String)> {
        let mut body = Body::of_frame(frame);
        // Both were checked when the batch was decoded.
        let prefix_len = if bind {
            body.cstr("Bind").map(|p| p.len() + 1).unwrap_or(0)
        } else {
            body.u8("Describe").map(|_| 1).unwrap_or(0)
        };
        let prefix = &frame[5..5 + prefix_len];
        let _ = body.cstr("name");
        let tag = frame[0];
        match stmt {
            StmtRef::Named(stmt) => {
                self.ensure_prepared(stmt);
                messages::with_statement_name(
                    self.out,
                    tag,
                    prefix,
                    &stmt.server_name,
                    body.rest(),
                );
                None
            }
            StmtRef::Unknown(name) => {
                messages::with_statement_name(self.out, tag, prefix, MISSING_NAME, body.rest());
                Some((MISSING_NAME.to_owned(), name.clone()))
            }
            StmtRef::Unnamed(_) if self.unnamed_on_conn => {
                self.out.extend_from_slice(frame);
                None
            }
            StmtRef::Unnamed(Some(u)) => {
                messages::parse(self.out, "", &u.after_name);
                let mut e = Expect::hidden(ExpectKind::Parse);
                // Discarded (an earlier error in the group), it leaves the connection without
                // the session's unnamed statement.
                e.unnamed = Some(UnnamedChange {
                    replaces: Some(u.clone()),
                    was_on_conn: false,
                });
                self.expects.push_back(e);
                self.unnamed_on_conn = true;
                self.out.extend_from_slice(frame);
                None
            }
            // The client never prepared an unnamed statement (or a Query destroyed it): the
            // server must say so, not run another client's unnamed statement.
            StmtRef::Unnamed(None) => {
                messages::with_statement_name(self.out, tag, prefix, MISSING_NAME, body.rest());
                Some((MISSING_NAME.to_owned(), String::new()))
            }
        }
    }
}

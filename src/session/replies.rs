//! Server → client side of the session loop: relaying replies, acting on what they say
//! (transaction status, parameters, pins, the commit LSN), giving the connection back, and
//! what happens when a server connection fails.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::dispatch::Retry;
use super::extended::{ExtMsg, StmtRef};
use super::local;
use super::params;
use super::relay::{Event, Expect, ExpectKind, Relay, RelayError};
use super::state::{Copy, TxnStatus};
use super::statements::Statement;
use super::Session;
use crate::backend::BackendError;
use crate::classify::{Classification, PinReason};
use crate::config::RywMode;
use crate::error::Error;
use crate::protocol::messages;

impl Session {
    /// Relays what the held server connection sent.
    pub(super) async fn on_server_data(&mut self) -> Result<(), Error> {
        let Some(h) = self.held.as_mut() else {
            return Ok(());
        };
        let mut events = std::mem::take(&mut self.events);
        let conn = &mut *h.conn;
        match h.relay.process(
            conn.frames(),
            self.client.out(),
            &mut events,
            &mut self.reported,
        ) {
            Err(RelayError::FatalBeforeReply) => {
                self.events = events;
                return self.lost(BackendError::Closed).await;
            }
            Err(e) => {
                // Not retried elsewhere: the error says so.
                tracing::warn!(error = %e, "server connection out of step");
                return self.server_lost(BackendError::OutOfStep).map(|_| ());
            }
            // The client has seen part of the reply: the unit can no longer be retried. (A
            // notice alone, such as the server's "terminating connection" warning, is not.)
            Ok(true) => h.retry = None,
            Ok(false) => {}
        }
        let mut to_server = BytesMut::new();
        for event in events.drain(..) {
            self.on_event(event);
        }
        self.events = events;
        self.on_drained(&mut to_server);
        if !to_server.is_empty() {
            if let Some(h) = self.held.as_mut() {
                if let Err(e) = h.conn.write(&to_server).await {
                    return self.server_lost(e).map(|_| ());
                }
            }
        }
        self.release_if_done();
        Ok(())
    }

    /// pgroute's own statements on the held connection go out only once the server has
    /// answered everything sent to it: sent earlier, they would land behind the client's
    /// pipelined messages (inside its COPY, or its unsynced extended messages). Then: the
    /// client's parameters put back (after a RESET), and once no transaction is open, the
    /// commit's LSN asked for and parameters a transaction touched read back.
    fn on_drained(&mut self, to_server: &mut BytesMut) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        // After a Flush the server is in the client's sequence: a Query there would end it
        // (or be discarded after an error).
        if !h.relay.expects.is_empty() || self.state.awaiting_sync || self.state.copy != Copy::None
        {
            return;
        }
        let before = to_server.len();
        self.send_own_statements(to_server);
        if to_server.len() > before {
            // "the unnamed prepared statement … is destroyed by a simple Query": pgroute's own
            // too, so the session's is parsed again before its next use.
            self.unnamed_on_held = false;
        }
    }

    /// pgroute's own statements due once the server has answered everything (see
    /// [`Session::on_drained`]).
    fn send_own_statements(&mut self, to_server: &mut BytesMut) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        replay_params(
            &self.params,
            &mut h.conn.session_params,
            &mut h.relay,
            to_server,
        );
        if self.state.txn != TxnStatus::Idle {
            return;
        }
        if std::mem::take(&mut h.wrote) {
            self.after_commit(to_server);
        }
        if !self.touched.is_empty() {
            self.read_back_params(to_server);
        }
    }

    /// A transaction that changed session parameters ended: ask the server what they are now
    /// (a rollback, even to a savepoint, may have undone some), on the same connection.
    fn read_back_params(&mut self, to_server: &mut BytesMut) {
        let names: Vec<String> = std::mem::take(&mut self.touched).into_iter().collect();
        let Some(h) = self.held.as_mut() else {
            return;
        };
        let columns: Vec<String> = names
            .iter()
            .map(|n| format!("current_setting({}, true)", params::literal(n)))
            .collect();
        messages::query(to_server, &format!("SELECT {}", columns.join(", ")));
        h.relay
            .expects
            .push_back(Expect::hidden(ExpectKind::ReadParams(names)));
    }

    /// After a write committed: note it, and in `lsn` mode ask the primary, on the same
    /// connection, for its WAL insert position. The client already has its ReadyForQuery; the
    /// connection returns to the pool once the answer is in. Any position read after the
    /// commit is at or past its end, so it is a safe requirement for later reads.
    pub(super) fn after_commit(&mut self, to_server: &mut BytesMut) {
        self.ryw.on_commit(Instant::now());
        if self.ryw.mode() != RywMode::Lsn {
            return;
        }
        if let Some(h) = self.held.as_mut() {
            messages::query(to_server, "SELECT pg_current_wal_insert_lsn()");
            h.relay
                .expects
                .push_back(Expect::hidden(ExpectKind::CaptureLsn));
        }
    }

    pub(super) fn on_event(&mut self, event: Event) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        match event {
            Event::Ready(status) => {
                self.unit_done();
                self.state.on_ready(status);
                self.functions_on_ready(status);
            }
            Event::Completed(class) => self.on_completed(&class),
            Event::Forget(id) => {
                h.conn.prepared.remove(&id);
            }
            Event::Named(name, stmt) => self.rebind_statement(&name, stmt),
            Event::Lsn(lsn) => {
                let token = self.ryw.on_lsn(lsn);
                messages::parameter_status(self.client.out(), "pgroute.lsn", &token.to_string());
            }
            Event::Unnamed(unnamed, on_conn) => self.on_unnamed(unnamed, on_conn),
            Event::CopyIn { extended } => self.state.on_copy_in(extended),
            // Later CopyData/CopyDone/CopyFail from the client are dropped, as the server would.
            Event::CopyInEnded => self.state.on_copy_end(),
            Event::Fatal => self.fatal = true,
            Event::ServerError(code) => self.proxy.metrics.client_error(&code),
            Event::ParamValues(values) => self.on_param_values(values),
        }
    }

    /// The server has `meaning` under the client's statement `name` after all (a Parse of it
    /// was discarded or failed, or a Close of it was skipped). Nothing sent since uses
    /// the name (see [`Session::statement_in_doubt`]), but the pending batch may: it is matched
    /// by the client's name, since statements with the same text share one [`Statement`].
    fn rebind_statement(&mut self, name: &str, meaning: Option<Arc<Statement>>) {
        let proxy = self.proxy.clone();
        let intern = |after_name: &bytes::Bytes| {
            let text = after_name.split(|b| *b == 0).next().unwrap_or_default();
            let query = std::str::from_utf8(text).ok();
            proxy
                .registry
                .intern(after_name.clone(), query, &proxy.classes)
        };
        match self.batch.rebind(name, meaning, intern) {
            Some(stmt) => self.statements.insert(name.to_owned(), stmt),
            None => self.statements.remove(name),
        };
    }

    /// Acts on what became of messages just sent to a server that discards them (see
    /// [`Relay::skip_unsynced_discarded`]).
    pub(super) fn skip_discarded_now(&mut self) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        let mut events = std::mem::take(&mut self.events);
        h.relay.skip_unsynced_discarded(&mut events);
        for event in events.drain(..) {
            self.on_event(event);
        }
        self.events = events;
    }

    /// A statement with session effects completed: parameters, pgroute's own settings,
    /// prepared statements dropped, pins.
    fn on_completed(&mut self, class: &Classification) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        if self.state.txn != TxnStatus::Idle || class.txn.is_some() {
            // A transaction may still undo this (ROLLBACK, ROLLBACK TO SAVEPOINT): the values
            // are read back from the server when it ends.
            let touched = params::names(&class.params, &self.params, &h.conn.session_params);
            self.touched.extend(touched);
        }
        local::apply_own_settings(&mut self.ryw, &class.params);
        params::apply(&mut self.params, &class.params, &self.startup_params);
        // The server resets to *its* connection defaults (pgroute's startup values), not the
        // client's: follow it, then put the client's values back if they differ.
        params::apply_on_server(&mut h.conn.session_params, &class.params);
        if class.releases.contains(PinReason::SqlPrepare) {
            // DISCARD ALL and DEALLOCATE ALL drop every prepared statement of the server
            // session: pgroute's, and so (as PostgreSQL would) the client's.
            h.conn.prepared.clear();
            self.statements.clear();
            self.unnamed = None;
        }
        if self.state.on_pins(class.pin, class.releases) {
            tracing::debug!(pin = ?class.pin, pins = ?self.state.pins, "session pinning changed");
        }
    }

    /// The session's unnamed statement is `unnamed` after all (see [`Event::Unnamed`]), unless
    /// a Parse of it still waits to be sent: that one replaces this instead.
    fn on_unnamed(&mut self, unnamed: Option<super::extended::Unnamed>, on_conn: bool) {
        let query_in_flight = self
            .held
            .as_ref()
            .is_some_and(|h| h.relay.expects.iter().any(|e| e.kind == ExpectKind::Query));
        if query_in_flight {
            // A simple Query sent since destroys the unnamed statement anyway.
            return;
        }
        self.unnamed_on_held = on_conn;
        // Messages not sent yet that refer to the unnamed statement took it as it was then.
        for msg in self.batch.msgs.iter_mut() {
            match msg {
                ExtMsg::ParseUnnamed { replaces, .. } => {
                    *replaces = unnamed;
                    return;
                }
                ExtMsg::Bind { stmt, .. } | ExtMsg::DescribeStmt { stmt, .. } => {
                    if let StmtRef::Unnamed(u) = stmt {
                        u.clone_from(&unnamed);
                    }
                }
                _ => {}
            }
        }
        self.unnamed = unnamed;
    }

    /// Session parameters as the server reports them after a transaction that changed some.
    fn on_param_values(&mut self, values: Vec<(String, Option<String>)>) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        for (name, value) in values {
            match value {
                Some(v) => {
                    let sql = params::sql_for_setting(&name, &v);
                    h.conn.session_params.insert(name.clone(), sql.clone());
                    self.params.insert(name, sql);
                }
                None => {
                    h.conn.session_params.remove(&name);
                    self.params.remove(&name);
                }
            }
        }
    }

    /// Gives the held connection back once nothing is pending and no transaction is open.
    pub(super) fn release_if_done(&mut self) {
        let done = self
            .held
            .as_ref()
            // A write not yet followed by its LSN capture (see `on_drained`) keeps it too.
            .is_some_and(|h| self.state.may_release(h.relay.is_idle() && !h.wrote));
        if let (false, Some(h)) = (done, &self.held) {
            tracing::trace!(state = ?self.state, pending = h.relay.expects.len(), "connection kept");
        }
        if done {
            if let Some(h) = self.held.take() {
                // Kept for the next connection's replies: no allocation per transaction.
                self.spare_relay = h.relay;
                h.conn.release();
            }
            self.state.on_connection_gone();
            self.unnamed_on_held = false;
            self.cancel.set_target(None);
        }
    }

    /// The held server connection failed. Outside a transaction the client gets an error for
    /// each unit still waiting and the session goes on; inside one (or when pinned) the
    /// session's server state is gone, so the session ends with that error, as PostgreSQL's
    /// own would. A read that nothing of reached the client yet is handed back for a retry
    /// when the error allows one.
    pub(super) fn server_lost(&mut self, err: BackendError) -> Result<Option<Retry>, Error> {
        let Some(mut h) = self.held.take() else {
            return Ok(None);
        };
        let node = h.conn.node().clone();
        let lost = Error::ServerLost {
            node: node.name.clone(),
            source: err,
            in_transaction: self.state.loses_state_with_server(),
        };
        // No server will finish the unit that was timed: a retry is timed afresh.
        self.unit_started = None;
        if let Some((unit, traits)) = h.retry.take().filter(|_| lost.retry()) {
            self.proxy.metrics.read_retry();
            tracing::info!(error = %lost, "server failed before replying: retrying the read elsewhere");
            node.mark_down(&lost);
            self.forget_held(h);
            return Ok(Some(Retry {
                unit,
                traits,
                failed: node.id,
            }));
        }
        // A read on a replica whose whole result already reached the client, and that only
        // misses its ReadyForQuery: nothing was lost, so finish it as the server would have.
        let read_done = matches!(h.route, crate::router::Route::Replica(_))
            && self.state.retry_allowed()
            && h.relay.only_ready_missing();
        if read_done {
            tracing::info!(error = %lost, "server failed after the read's result: completing it");
            node.mark_down(&lost);
            self.forget_held(h);
            messages::ready_for_query(self.client.out(), b'I');
            return Ok(None);
        }
        tracing::warn!(error = %lost, "server connection lost");
        let pending = h.relay.pending_syncs();
        self.forget_held(h);
        self.state.on_connection_gone();
        if self.state.loses_state_with_server() {
            return Err(lost);
        }
        self.send_error(&lost);
        for _ in 0..pending {
            messages::ready_for_query(self.client.out(), b'I');
        }
        Ok(None)
    }

    /// Drops a failed server connection (closing it) and what pointed at it.
    fn forget_held(&mut self, held: super::Held) {
        drop(held);
        self.unnamed_on_held = false;
        self.cancel.set_target(None);
    }

    /// Handles a failed server connection, retrying its read once on another node when that
    /// is safe (see [`Session::server_lost`]).
    pub(super) async fn lost(&mut self, err: BackendError) -> Result<(), Error> {
        match self.server_lost(err)? {
            Some(retry) => self.retry(retry).await,
            None => Ok(()),
        }
    }

    /// Sends a read again on another node.
    async fn retry(&mut self, retry: super::dispatch::Retry) -> Result<(), Error> {
        self.unit_starts();
        let mut to_server = BytesMut::new();
        let decision = self.retry_decision(&retry.traits, retry.failed);
        if let Err(e) = self
            .acquire(&retry.traits, decision, vec![retry.failed], &mut to_server)
            .await
        {
            self.refuse_unit(&e, retry.unit.awaits_ready());
            return Ok(());
        }
        self.encode_unit(&retry.unit, &mut to_server);
        if let Some(h) = self.held.as_mut() {
            // Still retryable on the next node should this one fail before replying too (a
            // stale pooled connection to a second replica that went down with the first):
            // every failure marks its node down, so the retries end with the nodes.
            if retry.unit.awaits_ready() {
                h.relay.hold_prelude();
                h.retry = Some((retry.unit, retry.traits));
            }
            if let Err(e) = h.conn.write(&to_server).await {
                if let Some(next) = self.server_lost(e)? {
                    return Box::pin(self.retry(next)).await;
                }
            }
        }
        Ok(())
    }
}

/// Brings a server connection's session parameters (`have`) to the client's (`want`), with a
/// hidden Query, when they differ.
pub(super) fn replay_params(
    want: &params::Params,
    have: &mut params::Params,
    relay: &mut Relay,
    to_server: &mut BytesMut,
) {
    if let Some(sql) = params::sync_sql(want, have) {
        messages::query(to_server, &sql);
        relay.expects.push_back(Expect::hidden(ExpectKind::Query));
        *have = want.clone();
    }
}

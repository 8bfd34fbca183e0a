//! The session loop: client messages in, units of work routed and dispatched, server replies
//! relayed, and the server connection given back as soon as the transaction is over.

use bytes::BytesMut;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cancel;
use super::extended::{Encoder, ExtMsg};
use super::local;
use super::params;
use super::relay::{Expect, ExpectKind};
use super::{Held, Session, SessionError};
use crate::backend::view::{Lsn, NodeView};
use crate::backend::BackendError;
use crate::classify::{Classification, Target};
use crate::config::ReadOnlyTxnRoute;
use crate::consistency::{parse_hints, Hints, ReadPolicy};
use crate::protocol::messages::{self, Severity};
use crate::protocol::{frame_len, split_frame, Body};
use crate::router::{Route, RouteError};
use tokio_postgres::error::SqlState;

/// What to do with the next unit of work.
pub(super) enum Decision {
    /// Send it on the connection the session holds.
    Held,
    /// Take a connection for it.
    Acquire,
    /// The held connection is busy elsewhere: wait for its replies first.
    Wait,
    /// The held connection's extended sequence must be closed (hidden Sync) first, then wait.
    Resync,
}

/// Why a unit of work got no server connection.
#[derive(Debug)]
pub(super) enum Refusal {
    Backend(BackendError),
    Route(RouteError),
}

impl Refusal {
    fn sqlstate(&self) -> SqlState {
        match self {
            Refusal::Backend(e) => e.sqlstate(),
            Refusal::Route(e) => e.sqlstate(),
        }
    }

    /// What the client is told. A server's refusal (a FATAL ending pgroute's login, not this
    /// session) is reported by its own message, as an ERROR.
    fn message(&self) -> String {
        match self {
            Refusal::Backend(BackendError::Refused(frame) | BackendError::Unavailable(frame)) => {
                messages::error_message(frame)
                    .unwrap_or("server refused the login")
                    .to_owned()
            }
            Refusal::Backend(e) => e.to_string(),
            Refusal::Route(e) => e.to_string(),
        }
    }
}

/// Outcome of reading from whichever side spoke first.
enum Input {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
}

impl Session {
    pub(super) async fn run(&mut self) -> Result<(), SessionError> {
        loop {
            let (blocked, terminate) = self.process_client().await?;
            self.flush_client().await?;
            if terminate {
                return Ok(());
            }
            let input = match self.held.as_mut() {
                None => Input::Client(self.client.read_buf(&mut self.cbuf).await),
                Some(h) => {
                    let server = &mut *h.conn;
                    // Biased (no random start per poll): the server's replies first.
                    tokio::select! {
                        biased;
                        r = server.stream.read_buf(&mut server.buf) => Input::Server(r),
                        r = self.client.read_buf(&mut self.cbuf), if !blocked => Input::Client(r),
                    }
                }
            };
            match input {
                Input::Client(Ok(0)) => return Err(SessionError::ClientGone),
                Input::Client(Ok(_)) => {}
                Input::Client(Err(e)) => return Err(SessionError::Client(e)),
                Input::Server(Ok(0)) => self.lost(BackendError::Closed).await?,
                Input::Server(Err(e)) => self.lost(BackendError::Io(e)).await?,
                Input::Server(Ok(_)) => self.on_server_data().await?,
            }
        }
    }

    pub(super) async fn flush_client(&mut self) -> Result<(), SessionError> {
        if !self.out.is_empty() {
            self.client
                .write_all(&self.out)
                .await
                .map_err(SessionError::Client)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Handles every complete client message that can be handled now. Returns (blocked,
    /// terminate): blocked when a unit waits for the held connection to finish.
    pub(super) async fn process_client(&mut self) -> Result<(bool, bool), SessionError> {
        // One buffer, kept across calls, collects everything for the server: one write.
        let mut to_server = std::mem::take(&mut self.to_server);
        let result = self.process_client_into(&mut to_server).await;
        if !to_server.is_empty() {
            if let Some(h) = self.held.as_mut() {
                if let Err(e) = h.conn.write(&to_server).await {
                    to_server.clear();
                    self.to_server = to_server;
                    self.lost(e).await?;
                    return result;
                }
            }
            to_server.clear();
        }
        self.to_server = to_server;
        result
    }

    pub(super) async fn process_client_into(
        &mut self,
        to_server: &mut BytesMut,
    ) -> Result<(bool, bool), SessionError> {
        loop {
            if self.batch.complete {
                if !self.dispatch_batch(to_server).await? {
                    return Ok((true, false));
                }
                continue;
            }
            let Some(_) =
                frame_len(&self.cbuf).map_err(|e| SessionError::Protocol(e.to_string()))?
            else {
                return Ok((false, false));
            };
            match self.cbuf[0] {
                b'Q' => {
                    if !self.batch.is_empty() {
                        // A Query after extended messages without Sync: send those first.
                        self.batch.complete = true;
                        continue;
                    }
                    if !self.dispatch_query(to_server).await? {
                        return Ok((true, false));
                    }
                }
                // Ignored by the server during copy-in, so no reply is expected for them.
                b'S' | b'H' if self.copy_in && self.held.is_some() => {
                    let frame = self.split_client()?;
                    to_server.extend_from_slice(&frame);
                }
                b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'H' => {
                    let frame = self.split_client()?;
                    self.push_extended(frame)?;
                }
                b'd' | b'c' | b'f' => {
                    let frame = self.split_client()?;
                    // A client may send COPY data right behind its COPY statement, before the
                    // server's CopyInResponse: it goes to the connection running that statement.
                    // Outside COPY the server ignores these ("Accept but ignore these messages,
                    // per protocol spec"); with no statement in flight they are dropped here.
                    let busy = self
                        .held
                        .as_ref()
                        .is_some_and(|h| self.copy_in || !h.relay.is_idle());
                    if busy {
                        to_server.extend_from_slice(&frame);
                        if frame[0] != b'd' {
                            self.copy_in = false;
                        }
                    }
                }
                b'X' => return Ok((false, true)),
                t => {
                    return Err(SessionError::Protocol(format!(
                        "unexpected message type {:?}",
                        t as char
                    )))
                }
            }
        }
    }

    pub(super) fn split_client(&mut self) -> Result<BytesMut, SessionError> {
        split_frame(&mut self.cbuf)
            .map_err(|e| SessionError::Protocol(e.to_string()))?
            .ok_or_else(|| SessionError::Protocol("incomplete message".into()))
    }

    /// True when the unit has to wait; for `Resync`, sends the hidden Sync that ends the wait.
    fn must_wait(&mut self, decision: &Decision, to_server: &mut BytesMut) -> bool {
        match decision {
            Decision::Wait => true,
            Decision::Resync => {
                if let Some(h) = self.held.as_mut() {
                    postgres_protocol::message::frontend::sync(to_server);
                    h.relay.expects.push_back(Expect::hidden(ExpectKind::Sync));
                    h.unsynced = false;
                }
                true
            }
            Decision::Held | Decision::Acquire => false,
        }
    }

    /// Whether a unit can go on the held connection now, must wait for it, or needs its own.
    pub(super) fn decide(&self, target: Target, hints: &Hints) -> Decision {
        let Some(h) = &self.held else {
            return Decision::Acquire;
        };
        if h.unsynced && target == Target::Write && matches!(h.route, Route::Replica(_)) {
            // A write after a Flush-ended batch on a replica: close that sequence with a Sync
            // of pgroute's own, then route the write afresh.
            return Decision::Resync;
        }
        if self.txn != b'I' || !self.pins.is_empty() || self.session_mode || h.unsynced {
            return Decision::Held;
        }
        // Pipelined behind unfinished work outside a transaction.
        match (target, h.route) {
            (Target::Write, Route::Primary(_)) => Decision::Held,
            (Target::Write, Route::Replica(_)) => Decision::Wait,
            // The primary is always fresh enough. But if all that is pending is pgroute's own
            // LSN capture and reads may wait for a replica, let this read be routed once the
            // capture is in: it may then go to a replica that has caught up.
            // When all that is pending is pgroute's own work (parameter replay, read-back), the
            // read waits for it and is then routed like any other. For the LSN capture that only
            // pays when reads may wait for a replica to catch up (without it, a read right after
            // a write goes to the primary anyway).
            (Target::Read, Route::Primary(_)) => {
                let may_wait = !self.proxy.config.consistency.max_wait.is_zero();
                let waits =
                    h.relay.only_hidden_pending() && (may_wait || !h.relay.only_capture_pending());
                if waits {
                    Decision::Wait
                } else {
                    Decision::Held
                }
            }
            // A replica may serve the read only if it meets the read's own requirements.
            (Target::Read, Route::Replica(node)) => {
                match self.ryw.read_policy(hints, Instant::now()) {
                    ReadPolicy::Replica { min_lsn, max_lag } => {
                        let view = self.proxy.cluster.view();
                        let fresh = view.nodes.get(node).is_some_and(|nv| {
                            nv.replay_lsn.unwrap_or_default() >= min_lsn
                                && max_lag.is_none_or(|m| nv.lag_time <= m)
                        });
                        if fresh {
                            Decision::Held
                        } else {
                            Decision::Wait
                        }
                    }
                    ReadPolicy::Primary => Decision::Wait,
                }
            }
        }
    }

    /// Routes and sends a simple Query. Returns false when it has to wait.
    pub(super) async fn dispatch_query(
        &mut self,
        to_server: &mut BytesMut,
    ) -> Result<bool, SessionError> {
        let frame_end = frame_len(&self.cbuf).ok().flatten().unwrap_or(0);
        let text = Body::of_frame(&self.cbuf[..frame_end])
            .cbytes("Query")
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        // Text in a client encoding other than UTF-8 is forwarded to the primary unread.
        let readable = std::str::from_utf8(text).ok();
        let class = self.proxy.classes.classify_text(readable);
        let sql = readable.unwrap_or_default();
        let hints = if sql.starts_with("/*") {
            parse_hints(sql)
        } else {
            Hints::default()
        };
        if local::answers(sql, &class) {
            // SET/SHOW of pgroute's own settings: answered here, in order with other replies.
            if self.held.is_some() {
                return Ok(false);
            }
            let sql = sql.to_owned();
            self.split_client()?;
            local::answer(self, &sql, &class);
            return Ok(true);
        }
        if self.may_defer_begin(&class) {
            let frame = self.split_client()?;
            messages::command_complete(&mut self.out, "BEGIN");
            messages::ready_for_query(&mut self.out, b'T');
            self.txn = b'T';
            self.deferred_begin = Some(frame);
            return Ok(true);
        }
        let target =
            self.transaction_target(class.target, class.lone_begin(), class.sets_read_only());
        let decision = self.decide(target, &hints);
        if self.must_wait(&decision, to_server) {
            return Ok(false);
        }
        let frame = self.split_client()?;
        let traits = Traits {
            target,
            writes_data: target == Target::Write && !class.only_session_settings(),
            executes: true,
            hints,
        };
        let unit = Unit::Query { frame, class };
        self.dispatch(unit, traits, decision, to_server).await;
        Ok(true)
    }

    /// Routes and sends a complete extended batch. Returns false when it has to wait.
    pub(super) async fn dispatch_batch(
        &mut self,
        to_server: &mut BytesMut,
    ) -> Result<bool, SessionError> {
        let target = self.batch.target.unwrap_or(Target::Read);
        let target = self.transaction_target(target, self.batch.begin, self.batch.starts_read_only);
        let decision = self.decide(target, &self.batch.hints);
        if self.must_wait(&decision, to_server) {
            return Ok(false);
        }
        let batch = std::mem::take(&mut self.batch);
        let executes = batch
            .msgs
            .iter()
            .any(|m| matches!(m, ExtMsg::Execute { .. }));
        let traits = Traits {
            target,
            writes_data: target == Target::Write && !batch.only_settings,
            executes,
            hints: batch.hints,
        };
        self.dispatch(Unit::Batch(batch.msgs), traits, decision, to_server)
            .await;
        Ok(true)
    }

    /// A read-only transaction (`BEGIN READ ONLY`, a `BEGIN` under
    /// `default_transaction_read_only`, or `BEGIN` then `SET TRANSACTION READ ONLY`) may open on
    /// a replica when configured so; otherwise every transaction is the primary's. `begin`: the
    /// unit has a lone `BEGIN`, `Some(true)` when it says `READ ONLY`.
    pub(super) fn transaction_target(
        &self,
        target: Target,
        begin: Option<bool>,
        sets_read_only: bool,
    ) -> Target {
        let to_replica =
            self.proxy.config.routing.read_only_transactions == ReadOnlyTxnRoute::Replica;
        if self.deferred_begin.is_some() {
            return if sets_read_only && to_replica {
                Target::Read
            } else {
                Target::Write
            };
        }
        let read_only_begin =
            begin.is_some_and(|read_only| read_only || params::read_only_by_default(&self.params));
        match (read_only_begin, to_replica) {
            (true, false) => Target::Write,
            (true, true) => Target::Read,
            _ => target,
        }
    }

    /// A lone `BEGIN` with nothing in flight, when read-only transactions may use replicas:
    /// pgroute answers it and sends it with the transaction's first statement, so that a
    /// `SET TRANSACTION READ ONLY` there can still choose a replica.
    fn may_defer_begin(&self, class: &Classification) -> bool {
        self.proxy.config.routing.read_only_transactions == ReadOnlyTxnRoute::Replica
            && class.lone_begin() == Some(false)
            && !params::read_only_by_default(&self.params)
            && self.held.is_none()
            && self.txn == b'I'
            && self.pins.is_empty()
            && !self.session_mode
            && self.batch.is_empty()
    }

    /// Sends a routed unit, taking a server connection first if the decision says so. A read
    /// sent on a fresh connection outside a transaction is kept until its first reply, so that
    /// it can be retried elsewhere if that server fails first.
    pub(super) async fn dispatch(
        &mut self,
        unit: Unit,
        traits: Traits,
        decision: Decision,
        to_server: &mut BytesMut,
    ) {
        let fresh = matches!(decision, Decision::Acquire);
        if fresh {
            let acquired = self.acquire(&traits, Vec::new(), to_server).await;
            if let Err(e) = acquired {
                self.refuse_unit(&e, unit.awaits_ready());
                return;
            }
        }
        if let (Some(begin), Some(h)) = (self.deferred_begin.take(), self.held.as_mut()) {
            // The client already has this BEGIN's replies.
            to_server.extend_from_slice(&begin);
            h.relay.expects.push_back(Expect::hidden(ExpectKind::Query));
        }
        self.encode_unit(&unit, to_server);
        let retryable =
            fresh && traits.target == Target::Read && self.txn == b'I' && self.pins.is_empty();
        let synced = unit.awaits_ready();
        if let Some(h) = self.held.as_mut() {
            // Until its Sync, an extended-query sequence belongs to this connection.
            h.unsynced = !synced;
            h.wrote |= traits.writes_data && matches!(h.route, Route::Primary(_));
            // Only a unit ending in Sync: after a Flush the client waits for exactly the replies
            // that would be held back.
            h.retry = None;
            if retryable && unit.awaits_ready() {
                h.relay.hold_prelude();
                h.retry = Some((unit, traits));
            }
        }
    }

    /// Writes a unit for the held connection: names rewritten, missing statements prepared.
    pub(super) fn encode_unit(&mut self, unit: &Unit, to_server: &mut BytesMut) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        match unit {
            Unit::Query { frame, class } => {
                to_server.extend_from_slice(frame);
                let mut expect = Expect::new(ExpectKind::Query);
                expect.class = Some(class.clone());
                h.relay.expects.push_back(expect);
                // "the unnamed prepared statement … is destroyed by a simple Query"
                self.unnamed_on_held = false;
            }
            Unit::Batch(msgs) => {
                let unnamed = if self.unnamed_on_held {
                    None
                } else {
                    self.unnamed.as_ref()
                };
                let had_unnamed = unnamed.is_some();
                let mut enc = Encoder {
                    conn: &mut h.conn,
                    out: to_server,
                    expects: &mut h.relay.expects,
                    unnamed,
                };
                let mut parsed_unnamed = false;
                for msg in msgs {
                    parsed_unnamed |= matches!(msg, ExtMsg::ParseUnnamed { .. });
                    enc.encode(msg);
                }
                let injected = had_unnamed && enc.unnamed.is_none();
                self.unnamed_on_held |= parsed_unnamed || injected;
            }
        }
    }

    /// Takes a server connection for a unit of work of class `target`. A replica that cannot be
    /// reached is skipped (nothing was sent yet, so this is safe); the primary's failure is the
    /// unit's error.
    pub(super) async fn acquire(
        &mut self,
        traits: &Traits,
        mut excluded: Vec<usize>,
        to_server: &mut BytesMut,
    ) -> Result<(), Refusal> {
        let target = traits.target;
        loop {
            let route = self
                .choose_route(traits, &excluded)
                .await
                .map_err(Refusal::Route)?;
            let node = route.node();
            match self.pools[node].acquire().await {
                Ok(mut conn) => {
                    let mut relay = std::mem::take(&mut self.spare_relay).reset();
                    if let Some(sql) = params::sync_sql(&self.params, &conn.session_params) {
                        messages::query(to_server, &sql);
                        relay.expects.push_back(Expect::hidden(ExpectKind::Query));
                        conn.session_params = self.params.clone();
                    }
                    self.cancel.set_target(Some(cancel::Target {
                        addr: conn.node().addr.clone(),
                        pid: conn.backend_pid,
                        secret: conn.backend_secret,
                    }));
                    tracing::trace!(node = %conn.node().name, ?target, "routed");
                    self.held = Some(Held {
                        conn,
                        route,
                        relay,
                        retry: None,
                        wrote: false,
                        unsynced: false,
                    });
                    return Ok(());
                }
                Err(e @ BackendError::Refused(_)) => return Err(Refusal::Backend(e)),
                Err(e) if matches!(route, Route::Replica(_)) => {
                    tracing::debug!(node, error = %e, "replica unavailable, rerouting read");
                    excluded.push(node);
                }
                Err(e) => return Err(Refusal::Backend(e)),
            }
        }
    }

    /// Where a unit goes: the primary for writes (and reads that consistency keeps there), else
    /// a replica the session's read-your-writes requirement allows, waiting up to
    /// `consistency.max_wait` for one to catch up before falling back to the primary.
    pub(super) async fn choose_route(
        &self,
        traits: &Traits,
        excluded: &[usize],
    ) -> Result<Route, RouteError> {
        let router = &self.proxy.router;
        let hints = &traits.hints;
        if self.session_mode || traits.target == Target::Write {
            return router.primary().map(Route::Primary);
        }
        let (min_lsn, max_lag) = match self.ryw.read_policy(hints, Instant::now()) {
            ReadPolicy::Primary => {
                tracing::debug!(reason = "primary:ryw", "read routed");
                return router.primary().map(Route::Primary);
            }
            ReadPolicy::Replica { min_lsn, max_lag } => (min_lsn, max_lag),
        };
        let usable = |nv: &NodeView| {
            nv.replay_lsn.unwrap_or_default() >= min_lsn && max_lag.is_none_or(|m| nv.lag_time <= m)
        };
        let max_wait = self.proxy.config.consistency.max_wait;
        // Read only once waiting could help: most reads never look at the clock here.
        let mut deadline = None;
        loop {
            // Register for the next view before looking at this one, so no update is missed.
            let changed = self.proxy.cluster.changed();
            let route = router.route(Target::Read, excluded, &usable, traits.executes)?;
            let waiting_helps = min_lsn > Lsn::ZERO && matches!(route, Route::Primary(_));
            if !waiting_helps {
                return Ok(route);
            }
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + max_wait);
            if now >= deadline {
                tracing::debug!(reason = "primary:ryw", %min_lsn, "read routed");
                return Ok(route);
            }
            let _ = tokio::time::timeout(deadline - now, changed).await;
        }
    }

    /// Answers a unit that could not get a server connection: its error, then ReadyForQuery.
    pub(super) fn refuse_unit(&mut self, e: &Refusal, ready: bool) {
        let msg = format!("pgroute: {}", e.message());
        messages::error_response(&mut self.out, Severity::Error, &e.sqlstate(), &msg);
        if ready {
            messages::ready_for_query(&mut self.out, self.txn);
        }
    }
}

/// What routing needs to know about a unit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Traits {
    target: Target,
    /// Not just session settings: a write read-your-writes must account for.
    writes_data: bool,
    /// The unit runs a statement (a batch of only Parse/Describe does not).
    executes: bool,
    hints: Hints,
}

/// A read to send again after its server failed before answering.
pub(super) struct Retry {
    pub(super) unit: Unit,
    pub(super) traits: Traits,
    pub(super) failed: usize,
}

/// A unit of work as the client sent it: a simple Query, or an extended batch.
pub(super) enum Unit {
    Query {
        frame: BytesMut,
        class: Arc<Classification>,
    },
    Batch(Vec<ExtMsg>),
}

impl Unit {
    /// Whether the client waits for a ReadyForQuery for this unit.
    pub(super) fn awaits_ready(&self) -> bool {
        match self {
            Unit::Query { .. } => true,
            Unit::Batch(msgs) => msgs.iter().any(|m| {
                matches!(
                    m,
                    ExtMsg::Forward {
                        kind: Some(ExpectKind::Sync),
                        ..
                    }
                )
            }),
        }
    }
}

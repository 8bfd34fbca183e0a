//! Units of work from the client to a server: each is routed by the router's one decision
//! ([`crate::router::decision::decide`]) and the session carries that decision out: it sends
//! the unit on the connection it holds, waits, or takes a connection to the chosen node.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::cancel;
use super::extended::{Encoder, ExtMsg, StmtRef};
use super::local;
use super::params;
use super::relay::{Expect, ExpectKind};
use super::state::TxnStatus;
use super::{Held, Session};
use crate::backend::BackendError;
use crate::classify::{Classification, Target};
use crate::config::ReadOnlyTxnRoute;
use crate::consistency::{parse_hints, Hints};
use crate::error::{Error, Violation};
use crate::protocol::messages;
use crate::protocol::Body;
use crate::router::decision::{self, Decision, HeldFacts, Reason, SessionFacts, UnitFacts};
use crate::router::rules::RuleOutcome;
use crate::router::{Question, Route};

/// The session's [`steer::Ctx`], borrowed field by field.
macro_rules! steer_ctx {
    ($s:expr) => {
        super::steer::Ctx {
            rules: &mut $s.rules,
            reported: &$s.reported,
            in_transaction: $s.state.txn != TxnStatus::Idle,
            session_route: $s.ryw.route(),
        }
    };
}

/// What routing needs to know about a unit, kept with it (for a retry).
#[derive(Debug, Clone, Copy)]
pub(super) struct Traits {
    pub(super) unit: UnitFacts,
    /// The target once transaction rules apply.
    pub(super) target: Target,
    /// Not just session settings: a write read-your-writes must account for.
    pub(super) writes_data: bool,
    pub(super) hints: Hints,
}

/// A read to send again after its server failed before answering.
pub(super) struct Retry {
    pub(super) unit: Unit,
    pub(super) traits: Traits,
    pub(super) failed: usize,
}

/// A unit of work as the client sent it: a simple Query (or FunctionCall), or an extended
/// batch.
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
            Unit::Batch(msgs) => has_sync(msgs),
        }
    }
}

impl Session {
    /// What the router needs to know about the session for a unit with these hints.
    pub(super) fn session_facts(&self, hints: &Hints) -> SessionFacts {
        SessionFacts {
            deferred_begin: self.state.has_deferred_begin(),
            read_only_default: params::read_only_by_default(&self.params),
            session_mode: self.state.session_mode,
            read: self.ryw.read_policy(hints, Instant::now()),
        }
    }

    /// What the router needs to know about the connection the session holds.
    fn held_facts(&self) -> Option<HeldFacts> {
        self.held.as_ref().map(|h| HeldFacts {
            route: h.route,
            kept_for: self.state.kept_for(),
            awaiting_sync: self.state.awaiting_sync,
            only_hidden_pending: h.relay.only_hidden_pending(),
            only_capture_pending: h.relay.only_capture_pending(),
            node_groups: h.conn.node().groups(),
            node_drain: h.conn.node().drained(),
        })
    }

    /// The router's decision for a unit, given what the session holds now.
    fn decide(&mut self, unit: UnitFacts, session: SessionFacts) -> Decision {
        let question = Question {
            unit,
            session,
            held: self.held_facts(),
            exclude: &[],
            waited: false,
        };
        self.proxy.router.decide(&question, &mut self.route_scratch)
    }

    /// The unit's traits once transaction rules apply.
    pub(super) fn traits(
        &self,
        unit: UnitFacts,
        session: &SessionFacts,
        only_settings: bool,
        hints: Hints,
    ) -> Traits {
        let policy = self.proxy.router.policy();
        let (target, _) = decision::transaction_target(&unit, session, &policy);
        Traits {
            unit,
            target,
            writes_data: target == Target::Write && !only_settings,
            hints,
        }
    }

    /// True when the unit has to wait for the held connection; for `CloseSequence`, sends the
    /// hidden Sync that ends the wait.
    fn must_wait(&mut self, decision: &Decision, to_server: &mut BytesMut) -> bool {
        match decision {
            Decision::WaitForHeld => true,
            Decision::CloseSequence => {
                if let Some(h) = self.held.as_mut() {
                    postgres_protocol::message::frontend::sync(to_server);
                    h.relay.expects.push_back(Expect::hidden(ExpectKind::Sync));
                    self.state.awaiting_sync = false;
                }
                true
            }
            _ => false,
        }
    }

    /// Routes and sends a simple Query. Returns false when it has to wait.
    pub(super) async fn dispatch_query(&mut self, to_server: &mut BytesMut) -> Result<bool, Error> {
        let frame = self.client.peek_frame().ok().flatten().unwrap_or_default();
        let text = Body::of_frame(frame)
            .cbytes("Query")
            .map_err(Violation::from)?;
        // Text in a client encoding other than UTF-8 is forwarded to the primary unread.
        let readable = std::str::from_utf8(text).ok();
        let class = self.proxy.classes.classify_text(readable);
        let sql = readable.unwrap_or_default();
        let hints = if sql.starts_with("/*") {
            parse_hints(sql)
        } else {
            Hints::default()
        };
        if local::answers(sql, &class) || self.deallocates_own(&class) {
            // Answered here, in order with other replies: wait for those still due.
            if self.held.as_ref().is_some_and(|h| !h.relay.is_idle()) {
                return Ok(false);
            }
            let sql = sql.to_owned();
            self.split_client()?;
            local::answer(self, &sql, &class);
            return Ok(true);
        }
        if self.may_defer_begin(&class) {
            let frame = self.split_client()?;
            messages::command_complete(self.client.out(), "BEGIN");
            messages::ready_for_query(self.client.out(), b'T');
            self.state.defer_begin(frame);
            return Ok(true);
        }
        let outcome = {
            let policy = self.proxy.router.policy();
            steer_ctx!(self).query(&policy.rules, &class, sql, &hints)
        };
        let steer = match outcome {
            RuleOutcome::Steer(steer) => steer,
            RuleOutcome::Block(rule) => return self.block_query(rule, hints, to_server).await,
        };
        self.notice_malformed_hints(&hints);
        if class.changes_functions {
            self.on_function_ddl();
        }
        let unit = UnitFacts {
            target: self
                .judge_functions(class.target, std::slice::from_ref(&class))
                .await,
            begin: class.lone_begin(),
            sets_read_only: class.sets_read_only(),
            executes: true,
            steer,
        };
        let session = self.session_facts(&hints);
        let decision = self.decide(unit, session);
        if self.must_wait(&decision, to_server) {
            return Ok(false);
        }
        let frame = self.split_client()?;
        let traits = self.traits(unit, &session, class.only_session_settings(), hints);
        self.dispatch(Unit::Query { frame, class }, traits, decision, to_server)
            .await;
        Ok(true)
    }

    /// Routes and sends a complete extended batch. Returns false when it has to wait.
    pub(super) async fn dispatch_batch(&mut self, to_server: &mut BytesMut) -> Result<bool, Error> {
        if self.statement_in_doubt() || self.unnamed_in_doubt() {
            return Ok(false);
        }
        if let Some(name) = self.local_batch_name() {
            // Answered here, in order with other replies: wait for those still due.
            if self.held.as_ref().is_some_and(|h| !h.relay.is_idle()) {
                return Ok(false);
            }
            self.answer_local_batch(&name);
            return Ok(true);
        }
        let executes = self
            .batch
            .msgs
            .iter()
            .any(|m| matches!(m, ExtMsg::Execute { .. }));
        let outcome = {
            let policy = self.proxy.router.policy();
            steer_ctx!(self).batch(&policy.rules, &self.batch.msgs, &self.batch.hints)
        };
        let steer = match outcome {
            RuleOutcome::Steer(steer) => steer,
            RuleOutcome::Block(rule) => return Ok(self.block_batch(rule)),
        };
        let hints = self.batch.hints;
        self.notice_malformed_hints(&hints);
        if self.batch.changes_functions {
            self.on_function_ddl();
        }
        let target = self.batch.target.unwrap_or(Target::Read);
        let unit = UnitFacts {
            target: self.judge_functions(target, &self.batch.calls).await,
            begin: self.batch.begin,
            sets_read_only: self.batch.starts_read_only,
            executes,
            steer,
        };
        let session = self.session_facts(&hints);
        let decision = self.decide(unit, session);
        if self.must_wait(&decision, to_server) {
            return Ok(false);
        }
        let batch = std::mem::take(&mut self.batch);
        let traits = self.traits(unit, &session, batch.only_settings, hints);
        let before = self.held.as_ref().map_or(0, |h| h.relay.expects.len());
        let fresh = self.held.is_none();
        self.dispatch(Unit::Batch(batch.msgs), traits, decision, to_server)
            .await;
        if let (true, Some(h)) = (batch.closing, self.held.as_mut()) {
            // The session ends after Terminate: make the server send what it has, and pass
            // on only its errors, as it would have flushed those alone.
            let from = if fresh { 0 } else { before };
            for e in h.relay.expects.iter_mut().skip(from) {
                e.quiet = true;
            }
            postgres_protocol::message::frontend::flush(to_server);
        }
        Ok(true)
    }

    /// A FunctionCall (`F`, libpq's fast path, used by the large-object API): it can write, so it
    /// goes to the primary; the server answers FunctionCallResponse or an error, then
    /// ReadyForQuery, as for a simple Query. Returns false when it has to wait.
    pub(super) async fn dispatch_call(&mut self, to_server: &mut BytesMut) -> Result<bool, Error> {
        let unit = UnitFacts::write();
        let hints = Hints::default();
        let session = self.session_facts(&hints);
        let decision = self.decide(unit, session);
        if self.must_wait(&decision, to_server) {
            return Ok(false);
        }
        let frame = self.split_client()?;
        let traits = self.traits(unit, &session, false, hints);
        // Unread: classified as a write with no session effects.
        let class = self.proxy.classes.classify_text(None);
        self.dispatch(Unit::Query { frame, class }, traits, decision, to_server)
            .await;
        Ok(true)
    }

    /// A Parse or Close of a named statement is still unanswered on the held connection: if
    /// it fails or the server skips it (an earlier error in its group), the statement is not
    /// there (or still is), so a batch that may use it waits until that is known, and the
    /// pending batch's messages are then matched to what the server has (see
    /// [`Session::rebind_statement`]). Not while the server discards everything sent so far up
    /// to a Sync not yet sent: nothing will come until this batch's Sync.
    fn statement_in_doubt(&self) -> bool {
        self.held.as_ref().is_some_and(|h| {
            h.relay.answers_without_more()
                && h.relay.expects.iter().enumerate().any(|(i, e)| {
                    // pgroute's own ParseComplete/CloseComplete at the front: nothing can skip it.
                    let settled = i == 0 && matches!(e.kind, ExpectKind::Synthetic(_));
                    let uncertain = e.forget_server.is_some()
                        || e.forget_client.is_some()
                        || e.restore.is_some();
                    uncertain && !settled
                })
        })
    }

    /// The pending batch uses the session's unnamed statement as it is before the batch (a Bind
    /// or Describe of it before any Parse of it), while a Parse of it is unanswered on the held
    /// connection: if that Parse fails or is discarded, the unnamed statement is another (or
    /// none, or not on the connection), so the batch waits until that is known (see
    /// [`Session::on_unnamed`]).
    fn unnamed_in_doubt(&self) -> bool {
        let uses_prior = self
            .batch
            .msgs
            .iter()
            .take_while(|m| !matches!(m, ExtMsg::ParseUnnamed { .. }))
            .any(|m| {
                matches!(
                    m,
                    ExtMsg::Bind {
                        stmt: StmtRef::Unnamed(_),
                        ..
                    } | ExtMsg::DescribeStmt {
                        stmt: StmtRef::Unnamed(_),
                        ..
                    }
                )
            });
        uses_prior
            && self.held.as_ref().is_some_and(|h| {
                h.relay.answers_without_more()
                    && h.relay.expects.iter().any(|e| e.unnamed.is_some())
            })
    }

    /// A lone `BEGIN` with nothing in flight, when read-only transactions may use replicas:
    /// pgroute answers it and sends it with the transaction's first statement, so that a
    /// `SET TRANSACTION READ ONLY` there can still choose a replica.
    fn may_defer_begin(&self, class: &Classification) -> bool {
        self.proxy.router.policy().read_only_transactions == ReadOnlyTxnRoute::Replica
            && class.lone_begin() == Some(false)
            && !params::read_only_by_default(&self.params)
            && self
                .state
                .may_defer_begin(self.held.is_some(), self.batch.is_empty())
    }

    /// Carries out a decision for a unit: sends it on the held connection, or takes one first.
    /// A read sent on a fresh connection outside a transaction is kept until its first reply,
    /// so that it can be retried elsewhere if that server fails first.
    pub(super) async fn dispatch(
        &mut self,
        unit: Unit,
        traits: Traits,
        decision: Decision,
        to_server: &mut BytesMut,
    ) {
        self.unit_starts();
        let fresh = match decision {
            Decision::Held(reason) => {
                if let Some(h) = &self.held {
                    self.note_route(h.route, reason, traits.unit);
                }
                false
            }
            decision => {
                if let Err(e) = self.acquire(&traits, decision, Vec::new(), to_server).await {
                    self.refuse_unit(&e, unit.awaits_ready());
                    return;
                }
                true
            }
        };
        if let (true, Some(h)) = (self.state.has_deferred_begin(), self.held.as_mut()) {
            let begin = self.state.take_deferred_begin().unwrap_or_default();
            // The client already has this BEGIN's replies.
            to_server.extend_from_slice(&begin);
            h.relay.expects.push_back(Expect::hidden(ExpectKind::Query));
            // A simple Query: it destroys the server's unnamed statement.
            self.unnamed_on_held = false;
        }
        self.encode_unit(&unit, to_server);
        let retryable = fresh && traits.target == Target::Read && self.state.retry_allowed();
        let synced = unit.awaits_ready();
        if let Some(h) = self.held.as_mut() {
            // Until its Sync, an extended-query sequence belongs to this connection.
            self.state.on_unit_sent(synced);
            h.wrote |= traits.writes_data && matches!(h.route, Route::Primary(_));
            // Only a unit ending in Sync: after a Flush the client waits for exactly the replies
            // that would be held back.
            h.retry = None;
            if retryable && synced {
                h.relay.hold_prelude();
                h.retry = Some((unit, traits));
            }
        }
        self.skip_discarded_now();
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
                if frame.first() == Some(&b'Q') {
                    self.unnamed = None;
                }
                self.state.copy_data_sent = false;
            }
            Unit::Batch(msgs) => {
                let txn_may_have_failed =
                    self.state.txn == TxnStatus::Failed || !h.relay.expects.is_empty();
                let mut enc = Encoder {
                    conn: &mut h.conn,
                    out: to_server,
                    expects: &mut h.relay.expects,
                    unnamed_on_conn: self.unnamed_on_held,
                    copy_data: self.state.copy_data_sent,
                    txn_may_have_failed,
                };
                for msg in msgs {
                    enc.encode(msg);
                }
                self.state.copy_data_sent = enc.copy_data;
                self.unnamed_on_held = enc.unnamed_on_conn;
            }
        }
    }

    /// Takes a server connection where `decision` says. A replica that cannot be reached is
    /// skipped and the unit routed again (nothing was sent yet, so this is safe); the primary's
    /// failure is the unit's error. A read waiting for a replica to catch up waits for the
    /// monitor's next views, up to `consistency.max_wait`.
    pub(super) async fn acquire(
        &mut self,
        traits: &Traits,
        mut decision: Decision,
        mut excluded: Vec<usize>,
        to_server: &mut BytesMut,
    ) -> Result<(), Error> {
        let proxy = self.proxy.clone();
        let mut deadline = None;
        // The unit's whole wait for a free server connection is one `checkout_timeout`, over
        // every node it tries: once a pool has made it wait that long, the others are taken
        // only if they have room at once.
        let mut waited_out = false;
        let mut ryw_wait = false;
        loop {
            // Registered before the view is read, so no update is missed.
            let changed = proxy.cluster.changed();
            let (route, reason) = match decision {
                Decision::Node(route, reason) => (route, reason),
                Decision::Refuse(e) => {
                    self.note_ryw_wait(ryw_wait, None);
                    return Err(e.into());
                }
                Decision::WaitForReplica(why) => {
                    ryw_wait |= why == Reason::ReadYourWrites;
                    let now = Instant::now();
                    let until = *deadline.get_or_insert(now + proxy.router.policy().max_wait);
                    if now < until {
                        let _ = tokio::time::timeout(until - now, changed).await;
                    }
                    decision = self.reroute(traits, &excluded, Instant::now() >= until);
                    continue;
                }
                // Only decisions about a held connection; none is held here.
                Decision::Held(_) | Decision::WaitForHeld | Decision::CloseSequence => {
                    decision = self.reroute(traits, &excluded, deadline.is_some());
                    continue;
                }
            };
            let node = route.node();
            let Some(pool) = self.pools.get(&proxy.pools, &proxy.cluster, node) else {
                return Err(Error::NoNode);
            };
            let wait = if waited_out {
                std::time::Duration::ZERO
            } else {
                pool.checkout_timeout()
            };
            let asked = Instant::now();
            let acquired = pool.acquire_within(wait).await;
            proxy.metrics.checkout_wait.observe(asked.elapsed());
            match acquired {
                Ok(conn) => {
                    self.note_ryw_wait(ryw_wait, Some(route));
                    self.hold(conn, route, to_server);
                    self.note_route(route, reason, traits.unit);
                    return Ok(());
                }
                Err(e) => {
                    waited_out |= matches!(e, BackendError::PoolTimeout(_));
                    let e = Error::from(e);
                    if !e.retry() || matches!(route, Route::Primary(_)) {
                        return Err(e);
                    }
                    tracing::debug!(node, error = %e, "replica unavailable, rerouting read");
                    excluded.push(node);
                    decision = self.reroute(traits, &excluded, deadline.is_some());
                }
            }
        }
    }

    /// The decision for a unit that needs a connection of its own.
    fn reroute(&mut self, traits: &Traits, excluded: &[usize], waited: bool) -> Decision {
        let question = Question {
            unit: traits.unit,
            session: self.session_facts(&traits.hints),
            held: None,
            exclude: excluded,
            waited,
        };
        self.proxy.router.decide(&question, &mut self.route_scratch)
    }

    /// The decision for a read to retry after `failed` failed it.
    pub(super) fn retry_decision(&mut self, traits: &Traits, failed: usize) -> Decision {
        self.reroute(traits, &[failed], false)
    }

    /// Makes a freshly acquired connection the session's: session parameters brought up to
    /// date (hidden), cancel target and NOTIFY pids set.
    fn hold(
        &mut self,
        mut conn: crate::backend::PooledConn,
        route: Route,
        to_server: &mut BytesMut,
    ) {
        let mut relay = std::mem::take(&mut self.spare_relay).reset();
        super::replies::replay_params(
            &self.params,
            &mut conn.session_params,
            &mut relay,
            to_server,
        );
        self.cancel.set_target(Some(cancel::Target {
            addr: conn.node().addr.clone(),
            pid: conn.backend_pid,
            secret: conn.backend_secret,
        }));
        relay.set_pids(conn.backend_pid, self.cancel.key().0);
        self.held = Some(Held {
            conn,
            route,
            relay,
            retry: None,
            wrote: false,
        });
    }
}

/// Whether an extended batch ends with a Sync (the client then waits for a ReadyForQuery).
pub(super) fn has_sync(msgs: &[ExtMsg]) -> bool {
    msgs.iter().any(|m| {
        matches!(
            m,
            ExtMsg::Forward {
                kind: Some(ExpectKind::Sync),
                ..
            }
        )
    })
}

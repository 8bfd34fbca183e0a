//! What a session tells the operator about its work: where the last unit went and why (`SHOW
//! pgroute.last_route`), and the metrics ([`crate::admin::Metrics`]) it counts on the way —
//! one routing decision recorded in one place, [`Session::note_route`].

use std::sync::Arc;
use std::time::Instant;

use super::{LastRoute, Session};
use crate::admin::metrics::WaitOutcome;
use crate::error::Error;
use crate::protocol::messages;
use crate::protocol::messages::Severity;
use crate::router::decision::{Reason, UnitFacts};
use crate::router::rules::By;
use crate::router::Route;

impl Session {
    /// Remembers where the last unit that runs a statement went and why (`SHOW
    /// pgroute.last_route`) and counts it in `pgroute_units_routed_total`; batches that only
    /// prepare, describe or close do not count.
    pub(super) fn note_route(&mut self, route: Route, reason: Reason, unit: UnitFacts) {
        if !unit.executes {
            return;
        }
        let proxy = &self.proxy;
        proxy.metrics.routed(
            route.node(),
            reason,
            || proxy.cluster.members().names.clone(),
            || proxy.router.policy().rules.clone(),
        );
        let by = match unit.steer.by() {
            Some(By::Rule(id)) => proxy.router.policy().rules.rule(id).map(|r| r.name.clone()),
            Some(By::Hint) => Some(Arc::from("hint")),
            None => None,
        };
        tracing::trace!(node = route.node(), %reason, by = by.as_deref(), "routed");
        self.last_route = Some(LastRoute { route, reason, by });
    }

    /// A unit is about to be routed: its duration runs from here to its ReadyForQuery (a unit
    /// pipelined behind another that has not finished counts with that one).
    pub(super) fn unit_starts(&mut self) {
        if self.unit_started.is_none() {
            self.unit_started = Some(Instant::now());
        }
    }

    /// The client got a ReadyForQuery: the unit that started first is done.
    pub(super) fn unit_done(&mut self) {
        if let Some(started) = self.unit_started.take() {
            self.proxy.metrics.unit_duration.observe(started.elapsed());
        }
    }

    /// A read waited (or not) for a replica to replay the session's writes, then went to
    /// `route` (or was refused).
    pub(super) fn note_ryw_wait(&self, waited: bool, route: Option<Route>) {
        if !waited {
            return;
        }
        self.proxy.metrics.ryw_wait(match route {
            Some(Route::Replica(_)) => WaitOutcome::Replica,
            Some(Route::Primary(_)) => WaitOutcome::Primary,
            None => WaitOutcome::Refused,
        });
    }

    /// Sends pgroute's own error to the client, counted by SQLSTATE class.
    pub(super) fn send_error(&mut self, e: &Error) {
        self.proxy.metrics.error_sent(e);
        e.write_response(self.client.out());
    }

    /// Answers a unit that could not get a server connection: its error, then ReadyForQuery.
    pub(super) fn refuse_unit(&mut self, e: &Error, ready: bool) {
        self.send_error(e);
        // No server will answer it: the next unit's time starts afresh.
        self.unit_started = None;
        if e.severity() == Severity::Fatal {
            // The session ends after this error (see `Session::run`); the connection it held is
            // closed, not given back.
            self.held = None;
            self.state.on_connection_gone();
            self.fatal = true;
            return;
        }
        if ready {
            messages::ready_for_query(self.client.out(), self.state.txn.byte());
        }
    }
}

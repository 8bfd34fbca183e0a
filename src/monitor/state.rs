//! Everything the monitor derives from probe results, as plain state and functions: no I/O, no
//! clock (every call is given `now`), so the derivation is tested sample by sample.

use std::time::{Duration, Instant};

use super::lag::{observe_primary, on_old_timeline, LagLimits, LsnHistory};
use super::probe::{ProbeError, Sample};
use crate::backend::view::{ClusterView, Lsn, NodeView, Primary};

/// Consecutive inconclusive probe failures (timeouts, query errors) before a node counts as
/// unreachable. A refused connection counts at once.
pub const FAILURES_TO_MARK_DOWN: u32 = 3;

/// A change in a node's reachability that the caller acts on (node health, pools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    Up,
    Down(ProbeError),
}

/// The monitor's knowledge of the cluster.
pub struct State {
    names: Vec<String>,
    check_interval: Duration,
    limits: LagLimits,
    nodes: Vec<NodeView>,
    probed: Vec<bool>,
    /// When each node's last successful probe was sent.
    asked_at: Vec<Option<Instant>>,
    /// Consecutive failed probes per node.
    failures: Vec<u32>,
    /// Removed from the config by a reload: no longer probed, never primary nor a replica.
    removed: Vec<bool>,
    /// Every node had answered (or failed) once; stays true when a reload adds a node.
    observed: bool,
    history: LsnHistory,
    primary: Primary,
    primary_missing_since: Option<Instant>,
    /// When the primary last answered a probe: replicas cannot be known to be fresher than that.
    primary_seen_at: Option<Instant>,
    /// The newest timeline each node has been seen on, in either role (`None`: never; kept for
    /// removed nodes). Their maximum is the cluster's newest timeline: a node on an older one is
    /// fenced (a claimant) or takes no reads (a replica). Kept in memory only: a restart of
    /// pgroute starts without history.
    seen_timeline: Vec<Option<u32>>,
    /// The node's timeline was read as its current one (not only from its last checkpoint)
    /// since it took its present role: only then can it be found on an old timeline.
    timeline_current: Vec<bool>,
    /// Nodes fenced since the caller last asked ([`State::take_fenced`]).
    newly_fenced: Vec<usize>,
    /// Since when several nodes claim to be primary on the newest timeline.
    conflict_since: Option<Instant>,
}

impl State {
    /// New lag limits (a reload): the next views use them.
    pub fn set_limits(&mut self, limits: LagLimits) {
        self.limits = limits;
    }

    /// Before any probe: `primary` is the configured one.
    pub fn new(
        names: Vec<String>,
        check_interval: Duration,
        limits: LagLimits,
        primary: Primary,
    ) -> Self {
        let n = names.len();
        State {
            names,
            check_interval,
            limits,
            nodes: vec![NodeView::default(); n],
            probed: vec![false; n],
            asked_at: vec![None; n],
            failures: vec![0; n],
            removed: vec![false; n],
            observed: false,
            history: LsnHistory::default(),
            primary,
            primary_missing_since: None,
            primary_seen_at: None,
            seen_timeline: vec![None; n],
            timeline_current: vec![false; n],
            newly_fenced: Vec::new(),
            conflict_since: None,
        }
    }

    /// A node added by a reload (its id is the next one). Until its first probe it is
    /// unreachable: it takes no work, and the primary stays as observed.
    pub fn add(&mut self, name: String) -> usize {
        self.names.push(name);
        self.nodes.push(NodeView::default());
        self.probed.push(false);
        self.asked_at.push(None);
        self.failures.push(0);
        self.removed.push(false);
        self.seen_timeline.push(None);
        self.timeline_current.push(false);
        self.names.len() - 1
    }

    /// A node removed by a reload: from now on it is as if unreachable, and late probe results
    /// for it are ignored.
    pub fn remove(&mut self, id: usize) {
        if let Some(r) = self.removed.get_mut(id) {
            *r = true;
            self.nodes[id] = NodeView::default();
            self.probed[id] = true;
            // Its timeline history stays: the cluster went through that timeline whatever the
            // config lists now, and forgetting it could unfence an old primary.
        }
    }

    /// The configured primary changed (a reload): until every node has been observed, it is
    /// the one that takes writes.
    pub fn configured_primary(&mut self, id: usize) {
        if !self.observed {
            self.primary = Primary::Known(id);
        }
    }

    /// How long an answer may be missing before the time without one counts as lag.
    fn grace(&self) -> Duration {
        self.check_interval * 2
    }

    /// Folds one probe result into the node's state (health, role, replay position). Returns
    /// the change in the node's reachability, if any.
    pub fn record(
        &mut self,
        id: usize,
        result: Result<Sample, ProbeError>,
    ) -> Option<Reachability> {
        if self.removed.get(id).is_none_or(|r| *r) {
            return None;
        }
        let first_probe = !self.probed[id];
        self.probed[id] = true;
        match result {
            Ok(sample) => {
                self.failures[id] = 0;
                let change = (!self.nodes[id].reachable).then_some(Reachability::Up);
                self.record_sample(id, &sample);
                change
            }
            Err(e) => {
                self.failures[id] += 1;
                let down = e.conclusive || self.failures[id] >= FAILURES_TO_MARK_DOWN;
                if !down && !first_probe {
                    tracing::debug!(node = %self.names[id], error = %e, "probe failed");
                    return None;
                }
                let nv = &mut self.nodes[id];
                let change = (nv.reachable || first_probe).then_some(Reachability::Down(e));
                nv.reachable = false;
                change
            }
        }
    }

    fn record_sample(&mut self, id: usize, sample: &Sample) {
        let nv = &mut self.nodes[id];
        nv.reachable = true;
        let role_changed = nv.in_recovery.is_some_and(|r| r != sample.in_recovery);
        if role_changed {
            tracing::warn!(node = %self.names[id], in_recovery = sample.in_recovery, "node changed role");
            nv.replay_lsn = None;
        }
        nv.in_recovery = Some(sample.in_recovery);
        // A replica never goes back to an older timeline: a reading from its last restartpoint
        // (no WAL receiver at the moment) does not undo a current one.
        let kept = !role_changed && self.timeline_current[id];
        (nv.timeline, self.timeline_current[id]) = match sample.timeline {
            Some(t) => (Some(t), true),
            None if kept => (nv.timeline.max(sample.checkpoint_timeline), true),
            None => (sample.checkpoint_timeline, false),
        };
        self.seen_timeline[id] = self.seen_timeline[id].max(nv.timeline);
        self.asked_at[id] = Some(sample.asked_at);
        if sample.in_recovery {
            // Replay positions only move forward: keep the highest seen.
            nv.replay_lsn = Some(nv.replay_lsn.map_or(sample.lsn, |l| l.max(sample.lsn)));
        } else {
            nv.replay_lsn = Some(sample.lsn);
            if self.primary == Primary::Known(id) {
                // The primary had reached this position by the time it answered.
                self.history.record(sample.answered_at, sample.lsn);
                self.primary_seen_at = Some(sample.answered_at);
            }
        }
    }

    /// Recomputes primary, lag and eligibility from the node states.
    pub fn derive(&mut self, now: Instant) -> ClusterView {
        self.observed = self.observed || self.probed.iter().all(|p| *p);
        let observed = self.observed;
        self.mark_old_timelines();
        // Until every node answered once, the configured primary stands.
        let primary = match &self.primary {
            _ if observed => observe_primary(&self.nodes),
            // Even then, not one already seen on an old timeline.
            Primary::Known(p) if self.nodes.get(*p).is_some_and(NodeView::fenced) => {
                Primary::Missing
            }
            configured => configured.clone(),
        };
        if primary != self.primary {
            self.on_primary_change(&primary, now);
            self.primary = primary.clone();
        }
        let primary_lsn = match primary {
            Primary::Known(p) => self.nodes[p].replay_lsn,
            _ => None,
        };
        for id in 0..self.nodes.len() {
            let (bytes, time) = if self.nodes[id].in_recovery == Some(true) {
                self.replica_lag(id, primary_lsn, now)
            } else {
                (0, Duration::ZERO)
            };
            self.set_lag(id, bytes, time);
        }
        ClusterView {
            observed,
            primary,
            primary_lsn,
            nodes: self.nodes.clone(),
        }
    }

    /// Sets every node's `old_timeline` against the newest timeline seen, logging each change
    /// once.
    fn mark_old_timelines(&mut self) {
        let newest = self.seen_timeline.iter().copied().max().flatten();
        for id in 0..self.nodes.len() {
            let nv = &self.nodes[id];
            // An unreachable node takes nothing anyway; it is judged when it answers again.
            // One known only from its last checkpoint may well have moved on since.
            let old = nv.reachable && self.timeline_current[id] && on_old_timeline(nv, newest);
            let was_fenced = nv.fenced();
            let was_old = nv.old_timeline;
            self.nodes[id].old_timeline = old;
            let nv = &self.nodes[id];
            let (name, timeline) = (&self.names[id], nv.timeline);
            if nv.fenced() && !was_fenced {
                tracing::warn!(node = %name, ?timeline, ?newest, "node claims to be primary on an old timeline: fenced, it takes no writes and no reads until it is back in recovery");
                self.newly_fenced.push(id);
            } else if old && !was_old {
                tracing::warn!(node = %name, ?timeline, ?newest, "replica on an old timeline: no reads until it follows the newest one");
            } else if was_old && !old {
                tracing::info!(node = %name, ?timeline, in_recovery = ?nv.in_recovery, "node is on the newest timeline again");
            }
        }
    }

    /// The nodes fenced since the last call (their pools are to be emptied).
    pub fn take_fenced(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.newly_fenced)
    }

    /// A replica's lag in bytes and time.
    ///
    /// Time: how long before the replica was measured the primary was first seen past its
    /// replay position. A replica measured at the primary's previous position, before the
    /// primary was seen at the next one, is not behind as far as anyone knows. Time without an
    /// answer beyond [`State::grace`] counts as lag, from the replica (while the primary has
    /// moved past it) as from a reachable primary (whose writes since are unknown).
    ///
    /// While several nodes claim to be primary on the newest timeline there is no primary to
    /// measure against: which claimant a replica follows is unknown, so is what either has
    /// written since. Counting that time as lag would take every replica out of reads after
    /// `lag.max_time`, when reads are all pgroute can still serve; measuring against one
    /// claimant (the newest timeline's does not exist: they share it) would be a guess. So lag
    /// is measured as of the moment the conflict began, against the last primary's history:
    /// unknown since then, but not growing. A replica that was behind stays behind until it
    /// replays what that primary had written (its replay position still counts), one that was
    /// within the limits keeps taking reads. pgroute itself sends no writes meanwhile, so no
    /// session's read-your-writes position can move past the replicas (that check still holds:
    /// replay positions only move forward); writes made straight to a claimant are not seen.
    fn replica_lag(&self, id: usize, primary_lsn: Option<Lsn>, now: Instant) -> (u64, Duration) {
        let replay = self.nodes[id].replay_lsn.unwrap_or_default();
        let bytes = match (&self.primary, primary_lsn) {
            (Primary::Conflict(_), _) => self.history.latest().map_or(0, |p| p.bytes_since(replay)),
            (_, p) => p.map_or(0, |p| p.bytes_since(replay)),
        };
        let stale_from = now.checked_sub(self.grace());
        let mut measured = match (self.asked_at[id], stale_from) {
            (Some(asked), Some(stale)) => asked.max(stale),
            (Some(asked), None) => asked,
            (None, _) => now,
        };
        if let Some(since) = self.conflict_since {
            measured = measured.min(since);
        }
        // Only while there is a primary to hear from: once it is found unreachable, counting
        // every replica as lagging would leave reads nowhere to go.
        let primary_unknown = match (&self.primary, self.primary_seen_at) {
            (Primary::Known(_), Some(t)) => now
                .saturating_duration_since(t)
                .saturating_sub(self.grace()),
            _ => Duration::ZERO,
        };
        (
            bytes,
            self.history.time_lag(replay, measured).max(primary_unknown),
        )
    }

    /// Stores a node's lag and decides, with hysteresis, whether it lags.
    fn set_lag(&mut self, id: usize, bytes: u64, time: Duration) {
        let nv = &mut self.nodes[id];
        nv.lag_bytes = bytes;
        nv.lag_time = time;
        let lagging = nv.in_recovery == Some(true) && self.limits.lagging(nv.lagging, bytes, time);
        if lagging != nv.lagging {
            let name = &self.names[id];
            if lagging {
                tracing::warn!(node = %name, lag_bytes = bytes, lag_time = ?time, "replica lags: no new reads");
            } else if nv.in_recovery == Some(true) {
                tracing::info!(node = %name, lag_bytes = bytes, lag_time = ?time, "replica caught up: takes reads again");
            }
        }
        nv.lagging = lagging;
    }

    fn on_primary_change(&mut self, primary: &Primary, now: Instant) {
        let names = |ids: &[usize]| {
            ids.iter()
                .map(|i| {
                    format!(
                        "{} (timeline {:?})",
                        self.names[*i], self.nodes[*i].timeline
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match primary {
            Primary::Known(n) => {
                tracing::info!(primary = %names(&[*n]), "primary observed");
                self.history.clear();
                self.primary_seen_at = None;
                self.primary_missing_since = None;
                self.conflict_since = None;
            }
            Primary::Missing => {
                tracing::error!("no reachable primary: writes fail until one is back or promoted");
                self.primary_missing_since = Some(now);
                self.conflict_since = None;
            }
            Primary::Conflict(ids) => {
                // Only nodes on the same (newest) timeline, or whose timeline is unknown, get
                // here: an older one would be fenced. Nothing tells which one is current.
                tracing::error!(
                    nodes = %names(ids),
                    "several nodes claim to be primary on the same timeline: writes refused until one steps down; reads go on on the replicas"
                );
                self.conflict_since.get_or_insert(now);
            }
        }
    }

    /// The replica to promote once the primary has been missing for `after`: the most
    /// advanced reachable one. Asked once per outage: a second call returns `None`.
    pub fn promotion_due(&mut self, now: Instant, after: Duration) -> Option<usize> {
        let since = self.primary_missing_since?;
        if now.saturating_duration_since(since) < after {
            return None;
        }
        let best = self
            .nodes
            .iter()
            .enumerate()
            // One on an old timeline would start a second history beside the newest one.
            .filter(|(_, n)| n.reachable && n.in_recovery == Some(true) && !n.old_timeline)
            .max_by_key(|(_, n)| n.replay_lsn)
            .map(|(i, _)| i)?;
        self.primary_missing_since = None;
        Some(best)
    }
}

#[cfg(test)]
mod tests;

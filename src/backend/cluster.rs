//! The nodes pgroute knows and what it has observed about each: health and outstanding work.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::view::{ClusterView, Primary};
use crate::config::{Config, NodeConfig, Role};
use crate::router::rules::{GroupSet, RuleSet};

/// Backoff after a failed connection: doubles per consecutive failure up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Health {
    down_until: Option<Instant>,
    /// Failures since the node was last up: each one after a backoff window has passed doubles
    /// the next window.
    failures: u32,
}

/// What one failure did to a node's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The node was up: it is down now, for `backoff`.
    NewOutage { backoff: Duration },
    /// A retry after the backoff failed: down again, for a longer `backoff`.
    FailedRetry { backoff: Duration },
    /// Another failure inside the current window (a checkout that began before the node was
    /// marked down): changes nothing.
    InWindow,
}

impl Health {
    fn fail(&mut self, now: Instant) -> Failure {
        if self.down_until.is_some_and(|t| now < t) {
            return Failure::InWindow;
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = BACKOFF_MIN
            .saturating_mul(1u32 << (self.failures - 1).min(5))
            .min(BACKOFF_MAX);
        self.down_until = Some(now + backoff);
        if self.failures == 1 {
            Failure::NewOutage { backoff }
        } else {
            Failure::FailedRetry { backoff }
        }
    }

    /// A success. Returns whether the node was down.
    fn recover(&mut self) -> bool {
        let was_down = self.failures > 0;
        *self = Health::default();
        was_down
    }
}

/// One PostgreSQL server from `[[nodes]]`.
#[derive(Debug)]
pub struct Node {
    pub id: usize,
    pub name: String,
    pub addr: Arc<str>,
    /// The role the config expects; the monitor observes the real one.
    pub configured_role: Role,
    /// `weight`, `drain` and `groups` from the config (changed by a reload).
    weight: AtomicU32,
    drain: AtomicBool,
    groups: AtomicU64,
    /// Clients currently holding a connection to this node (for least-outstanding balancing).
    outstanding: AtomicUsize,
    /// Router sequence number of the last executing read routed here (tie-break between
    /// equally loaded replicas).
    last_served: AtomicU64,
    health: Mutex<Health>,
}

impl Node {
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Takes no new reads (`drain = true`).
    pub fn drained(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
    }

    pub fn groups(&self) -> GroupSet {
        GroupSet(self.groups.load(Ordering::Relaxed))
    }

    /// Applies the node's reloadable settings; returns whether `drain` was just turned on.
    pub fn configure(&self, cfg: &NodeConfig, rules: &RuleSet) -> bool {
        let groups = cfg
            .groups
            .iter()
            .filter_map(|g| rules.group(g))
            .fold(GroupSet::default(), GroupSet::with);
        self.weight.store(cfg.weight, Ordering::Relaxed);
        self.groups.store(groups.0, Ordering::Relaxed);
        !self.drain.swap(cfg.drain, Ordering::Relaxed) && cfg.drain
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn last_served(&self) -> u64 {
        self.last_served.load(Ordering::Relaxed)
    }

    pub(crate) fn set_last_served(&self, seq: u64) {
        self.last_served.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn begin_work(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_work(&self) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }

    /// False while the node is in its backoff window after a failure.
    pub fn is_up(&self) -> bool {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.down_until.is_none_or(|t| Instant::now() >= t)
    }

    /// Marks the node down after a failed connection or probe; it is retried after a backoff.
    /// Logged once when the node goes down (warn) and when it is back (info); failures while
    /// it is down log at debug.
    pub fn mark_down(&self, why: &dyn std::fmt::Display) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match h.fail(Instant::now()) {
            Failure::NewOutage { backoff } => {
                tracing::warn!(node = %self.name, ?backoff, error = %why, "node marked down");
            }
            Failure::FailedRetry { backoff } => {
                tracing::debug!(node = %self.name, failures = h.failures, ?backoff, error = %why, "node still down");
            }
            Failure::InWindow => {
                tracing::debug!(node = %self.name, error = %why, "node already down");
            }
        }
    }

    /// Records a successful connection or probe.
    pub fn mark_up(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if h.recover() {
            tracing::info!(node = %self.name, "node is up again");
        }
    }
}

/// All nodes, indexed by position in `[[nodes]]`, and the monitor's latest view of them.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Arc<Node>>,
    /// The node the config names as primary (used until the monitor has observed roles).
    configured_primary: usize,
    view: ArcSwap<ClusterView>,
    /// Woken whenever a new view is published (reads waiting for a replica to catch up).
    changed: tokio::sync::Notify,
}

impl Cluster {
    pub fn from_config(cfg: &Config, rules: &RuleSet) -> Self {
        let nodes: Vec<Arc<Node>> = cfg
            .nodes
            .iter()
            .enumerate()
            .map(|(id, n)| {
                let node = Node {
                    id,
                    name: n.name.clone(),
                    addr: n.addr.as_str().into(),
                    configured_role: n.role,
                    weight: AtomicU32::new(0),
                    drain: AtomicBool::new(false),
                    groups: AtomicU64::new(0),
                    outstanding: AtomicUsize::new(0),
                    last_served: AtomicU64::new(0),
                    health: Mutex::new(Health::default()),
                };
                node.configure(n, rules);
                Arc::new(node)
            })
            .collect();
        let primary = nodes
            .iter()
            .position(|n| n.configured_role == Role::Primary)
            .unwrap_or(0);
        let view = ClusterView::configured(nodes.len(), primary);
        Cluster {
            nodes,
            configured_primary: primary,
            view: ArcSwap::from_pointee(view),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The latest snapshot; cheap, lock-free.
    pub fn view(&self) -> arc_swap::Guard<Arc<ClusterView>> {
        self.view.load()
    }

    pub fn publish(&self, view: ClusterView) {
        self.view.store(Arc::new(view));
        self.changed.notify_waiters();
    }

    /// Resolves at the next published view.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The node believed to be primary: the observed one, else the configured one.
    pub fn primary(&self) -> usize {
        match self.view.load().primary {
            Primary::Known(n) => n,
            _ => self.configured_primary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_failing_node_goes_down_once_and_backs_off_longer_per_failed_retry() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(
            h.fail(t0),
            Failure::NewOutage {
                backoff: BACKOFF_MIN
            }
        );
        // 36 more checkouts fail within the same 40 ms: one outage, not 37.
        for i in 1..=36 {
            assert_eq!(h.fail(t0 + i * MS), Failure::InWindow, "failure {i}");
        }
        assert_eq!(h.down_until, Some(t0 + BACKOFF_MIN));
        // The retry after the window fails: down again, twice as long.
        let retry = t0 + BACKOFF_MIN;
        assert_eq!(
            h.fail(retry),
            Failure::FailedRetry {
                backoff: 2 * BACKOFF_MIN
            }
        );
        let mut at = retry + 2 * BACKOFF_MIN;
        for _ in 0..10 {
            if let Failure::FailedRetry { backoff } = h.fail(at) {
                at += backoff;
            }
        }
        assert_eq!(
            h.fail(at),
            Failure::FailedRetry {
                backoff: BACKOFF_MAX
            }
        );
        assert!(h.recover(), "the success ends an outage");
        assert!(!h.recover(), "and only once");
        assert_eq!(
            h.fail(at),
            Failure::NewOutage {
                backoff: BACKOFF_MIN
            }
        );
    }
}

//! The nodes pgroute knows and what it has observed about each: health and outstanding work.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::{Config, Role};
use crate::monitor::view::{ClusterView, Primary};

/// Backoff after a failed connection: doubles per consecutive failure up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Health {
    down_until: Option<Instant>,
    failures: u32,
}

/// One PostgreSQL server from `[[nodes]]`.
#[derive(Debug)]
pub struct Node {
    pub id: usize,
    pub name: String,
    pub addr: Arc<str>,
    /// The role the config expects; the monitor observes the real one.
    pub configured_role: Role,
    pub weight: u32,
    /// Clients currently holding a connection to this node (for least-outstanding balancing).
    outstanding: AtomicUsize,
    /// Router sequence number of the last executing read routed here (tie-break between
    /// equally loaded replicas).
    last_served: AtomicU64,
    health: Mutex<Health>,
}

impl Node {
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
    pub fn mark_down(&self, why: &dyn std::fmt::Display) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.failures = h.failures.saturating_add(1);
        let backoff = BACKOFF_MIN
            .saturating_mul(1u32 << (h.failures - 1).min(5))
            .min(BACKOFF_MAX);
        h.down_until = Some(Instant::now() + backoff);
        tracing::warn!(node = %self.name, failures = h.failures, ?backoff, error = %why, "node marked down");
    }

    /// Records a successful connection or probe.
    pub fn mark_up(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if h.failures > 0 {
            tracing::info!(node = %self.name, "node is up again");
        }
        *h = Health::default();
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
    pub fn from_config(cfg: &Config) -> Self {
        let nodes: Vec<Arc<Node>> = cfg
            .nodes
            .iter()
            .enumerate()
            .map(|(id, n)| {
                Arc::new(Node {
                    id,
                    name: n.name.clone(),
                    addr: n.addr.as_str().into(),
                    configured_role: n.role,
                    weight: n.weight,
                    outstanding: AtomicUsize::new(0),
                    last_served: AtomicU64::new(0),
                    health: Mutex::new(Health::default()),
                })
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

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
    /// Taken out of `[[nodes]]` by a reload: gets no new work of any kind; running units
    /// finish. Its id is never reused.
    removed: AtomicBool,
    /// Clients currently holding a connection to this node (for least-outstanding balancing).
    outstanding: AtomicUsize,
    /// Router sequence number of the last executing read routed here (tie-break between
    /// equally loaded replicas).
    last_served: AtomicU64,
    /// Clients waiting for a free connection in one of this node's pools.
    waiting: AtomicUsize,
    health: Mutex<Health>,
}

impl Node {
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Takes no new reads (`drain = true`, or removed from the config).
    pub fn drained(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
    }

    /// Removed from `[[nodes]]` by a reload.
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
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

    /// Clients waiting for a free connection in one of this node's pools.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Counts a client waiting for room in one of the node's pools, until the guard drops.
    pub(crate) fn wait_for_room(&self) -> WaitingGuard<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(self)
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

/// A client counted in [`Node::waiting`].
pub(crate) struct WaitingGuard<'a>(&'a Node);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every node pgroute has known since it started, indexed by id: the position at which it was
/// added. A reload appends nodes and marks removed ones ([`Node::removed`]); an id is never
/// reused, so a session's held connection, its pools and the monitor's samples always name the
/// node they meant.
#[derive(Debug)]
pub struct Members {
    pub nodes: Vec<Arc<Node>>,
    /// `nodes[i].name`, for messages that name nodes by id.
    pub names: Vec<String>,
}

impl Members {
    /// The nodes still in the config.
    pub fn live(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.iter().filter(|n| !n.removed())
    }
}

/// What a reload changed in [`Members`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MembershipChange {
    pub added: Vec<usize>,
    pub removed: Vec<usize>,
    /// Nodes whose `drain` was just turned on.
    pub drained: Vec<usize>,
}

impl MembershipChange {
    pub fn nodes_changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// All nodes and the monitor's latest view of them.
#[derive(Debug)]
pub struct Cluster {
    members: ArcSwap<Members>,
    /// Serialises reloads' changes to `members`.
    reconfigure: Mutex<()>,
    /// The node the config names as primary (used until the monitor has observed roles).
    configured_primary: AtomicUsize,
    view: ArcSwap<ClusterView>,
    /// Woken whenever a new view is published (reads waiting for a replica to catch up).
    changed: tokio::sync::Notify,
}

impl Node {
    fn new(id: usize, cfg: &NodeConfig, rules: &RuleSet) -> Arc<Node> {
        let node = Node {
            id,
            name: cfg.name.clone(),
            addr: cfg.addr.as_str().into(),
            configured_role: cfg.role,
            weight: AtomicU32::new(0),
            drain: AtomicBool::new(false),
            groups: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            last_served: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            health: Mutex::new(Health::default()),
        };
        node.configure(cfg, rules);
        Arc::new(node)
    }

    /// The same node as `cfg` describes: name, address and role. A node whose address or role
    /// changes is another node (a new id): its connections and history do not carry over.
    fn is(&self, cfg: &NodeConfig) -> bool {
        self.name == cfg.name && *self.addr == *cfg.addr && self.configured_role == cfg.role
    }
}

impl Cluster {
    pub fn from_config(cfg: &Config, rules: &RuleSet) -> Self {
        let nodes: Vec<Arc<Node>> = cfg
            .nodes
            .iter()
            .enumerate()
            .map(|(id, n)| Node::new(id, n, rules))
            .collect();
        let primary = configured_primary(&nodes);
        let view = ClusterView::configured(nodes.len(), primary);
        let names = nodes.iter().map(|n| n.name.clone()).collect();
        Cluster {
            members: ArcSwap::from_pointee(Members { nodes, names }),
            reconfigure: Mutex::new(()),
            configured_primary: AtomicUsize::new(primary),
            view: ArcSwap::from_pointee(view),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Every node ever known, by id (removed ones included); cheap, lock-free.
    pub fn members(&self) -> arc_swap::Guard<Arc<Members>> {
        self.members.load()
    }

    /// The node with this id.
    pub fn node(&self, id: usize) -> Option<Arc<Node>> {
        self.members.load().nodes.get(id).cloned()
    }

    /// Applies a reloaded `[[nodes]]`: a node with the same name, address and role keeps its
    /// id and takes the new weight, groups and drain; any other entry is a new node; a known
    /// node no longer listed is marked removed.
    pub fn reconfigure(&self, cfg: &Config, rules: &RuleSet) -> MembershipChange {
        let _serial = self.reconfigure.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.members.load_full();
        let mut nodes = old.nodes.clone();
        let mut change = MembershipChange::default();
        let mut kept = vec![false; nodes.len()];
        for n in &cfg.nodes {
            match old.nodes.iter().find(|m| !m.removed() && m.is(n)) {
                Some(m) => {
                    kept[m.id] = true;
                    if m.configure(n, rules) {
                        change.drained.push(m.id);
                    }
                }
                None => {
                    let id = nodes.len();
                    nodes.push(Node::new(id, n, rules));
                    change.added.push(id);
                }
            }
        }
        for m in old.nodes.iter().filter(|m| !m.removed() && !kept[m.id]) {
            m.drain.store(true, Ordering::Relaxed);
            m.removed.store(true, Ordering::Relaxed);
            change.removed.push(m.id);
        }
        if change.nodes_changed() {
            self.configured_primary
                .store(configured_primary(&nodes), Ordering::Relaxed);
            let names = nodes.iter().map(|n| n.name.clone()).collect();
            self.members.store(Arc::new(Members { nodes, names }));
        }
        change
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
            _ => self.configured_primary(),
        }
    }

    /// The live node `[[nodes]]` names as primary.
    pub fn configured_primary(&self) -> usize {
        self.configured_primary.load(Ordering::Relaxed)
    }
}

/// The live node the config names as primary (validation requires one).
fn configured_primary(nodes: &[Arc<Node>]) -> usize {
    nodes
        .iter()
        .position(|n| !n.removed() && n.configured_role == Role::Primary)
        .unwrap_or(0)
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

    fn config(nodes: &[(&str, u16, &str)]) -> (Config, RuleSet) {
        let mut toml = String::from("[[users]]\nname = \"app\"\npassword = \"x\"\n");
        for (name, port, role) in nodes {
            toml += &format!(
                "[[nodes]]\nname = \"{name}\"\naddr = \"127.0.0.1:{port}\"\nrole = \"{role}\"\n"
            );
        }
        let cfg = crate::config::from_toml_str(&toml).expect("config loads");
        let rules = RuleSet::compile(&cfg).expect("rules compile");
        (cfg, rules)
    }

    #[test]
    fn a_reload_keeps_ids_appends_new_nodes_and_marks_removed_ones() {
        let (cfg, rules) = config(&[("pg1", 5432, "primary"), ("pg2", 5433, "replica")]);
        let cluster = Cluster::from_config(&cfg, &rules);
        let pg2 = cluster.node(1).expect("pg2");
        // pg2 readdressed, pg3 added, listed in another order.
        let (cfg, rules) = config(&[
            ("pg3", 5435, "replica"),
            ("pg2", 5434, "replica"),
            ("pg1", 5432, "primary"),
        ]);
        let change = cluster.reconfigure(&cfg, &rules);
        assert_eq!(
            change,
            MembershipChange {
                added: vec![2, 3],
                removed: vec![1],
                drained: vec![],
            }
        );
        let members = cluster.members();
        assert_eq!(members.names, ["pg1", "pg2", "pg3", "pg2"]);
        assert!(
            pg2.removed() && pg2.drained(),
            "the old pg2 takes no new work"
        );
        assert_eq!(&*members.nodes[3].addr, "127.0.0.1:5434");
        assert_eq!(members.live().map(|n| n.id).collect::<Vec<_>>(), [0, 2, 3]);
        assert_eq!(cluster.configured_primary(), 0);
        // Unchanged nodes: nothing changes, even the order.
        drop(members);
        let (cfg, rules) = config(&[
            ("pg1", 5432, "primary"),
            ("pg2", 5434, "replica"),
            ("pg3", 5435, "replica"),
        ]);
        assert_eq!(
            cluster.reconfigure(&cfg, &rules),
            MembershipChange::default()
        );
        assert_eq!(cluster.members().nodes.len(), 4);
        // The primary replaced: the configured primary follows (until the monitor has seen roles).
        let (cfg, rules) = config(&[("pg9", 5440, "primary"), ("pg3", 5435, "replica")]);
        let change = cluster.reconfigure(&cfg, &rules);
        assert_eq!((change.added, change.removed), (vec![4], vec![0, 3]));
        assert_eq!(cluster.configured_primary(), 4);
        assert_eq!(
            cluster.primary(),
            0,
            "the view still names the primary it observed"
        );
    }
}

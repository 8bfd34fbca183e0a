//! The monitor: probes every node's role and WAL position every `lag.check_interval`, derives lag
//! in bytes and time, decides which replicas may take reads and which node is primary, and
//! publishes the result as an immutable [`ClusterView`](crate::backend::view::ClusterView) that
//! the router reads lock-free.
//!
//! One prober task per node ([`probe`]; a hung node cannot delay the others) sends samples to
//! one aggregator, which folds them into [`state::State`] — plain state and pure functions over
//! [`lag`] — and acts on what it derives: publishes the view, marks nodes up or down, purges a
//! lost node's pools, promotes a replica when told to.

pub mod lag;
mod probe;
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Cluster, Pools};
use crate::config::Config;
pub use lag::LagLimits;
use probe::ProbeResult;
use state::{Reachability, State};

/// What the monitor needs from the configuration.
#[derive(Clone)]
pub struct Settings {
    pub check_interval: Duration,
    pub limits: LagLimits,
    /// `failover.auto_promote`.
    pub auto_promote: bool,
    pub promote_after: Duration,
    /// `None` when no monitor login is configured (no node is probed then).
    pub login: Option<MonitorLogin>,
    /// In `[[nodes]]` order.
    pub nodes: Vec<NodeTarget>,
}

/// How the monitor logs into every node.
#[derive(Clone)]
pub struct MonitorLogin {
    pub user: String,
    pub password: String,
    pub database: String,
}

/// Where one node is.
#[derive(Debug, Clone)]
pub struct NodeTarget {
    pub name: String,
    /// `None` when the address does not parse.
    pub host_port: Option<(String, u16)>,
}

impl NodeTarget {
    fn of(name: &str, addr: &str) -> Self {
        NodeTarget {
            name: name.to_owned(),
            host_port: crate::config::split_host_port(addr).map(|(h, p)| (h.to_owned(), p)),
        }
    }
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Self {
        let lag = &cfg.lag;
        Settings {
            check_interval: lag.check_interval,
            limits: LagLimits {
                max_bytes: lag.max_bytes.as_u64(),
                max_time: lag.max_time,
                recover_ratio: lag.recover_ratio,
            },
            auto_promote: cfg.failover.auto_promote,
            promote_after: cfg.failover.promote_after,
            login: cfg.monitor_login().map(|(user, password)| MonitorLogin {
                user: user.to_owned(),
                password: password.to_owned(),
                database: cfg.monitor.database.clone(),
            }),
            nodes: cfg
                .nodes
                .iter()
                .map(|n| NodeTarget::of(&n.name, &n.addr))
                .collect(),
        }
    }
}

/// Starts the monitor; it runs until `shutdown`. `pools` are purged of a node found down.
/// `reloaded` carries the `[lag]` limits; each change (a reload) also makes the monitor start
/// probing nodes the reload added and stop probing removed ones.
pub fn spawn(
    cluster: Arc<Cluster>,
    pools: Arc<Pools>,
    settings: Settings,
    reloaded: tokio::sync::watch::Receiver<LagLimits>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::channel(64);
    let members = cluster.members();
    let names = members.nodes.iter().map(|n| n.name.clone()).collect();
    drop(members);
    let state = State::new(
        names,
        settings.check_interval,
        settings.limits,
        cluster.view().primary.clone(),
    );
    let mut aggregator = Aggregator {
        cluster,
        pools,
        settings,
        state,
        reloaded,
        probes: Vec::new(),
        tx,
        shutdown: shutdown.clone(),
    };
    for node in 0..aggregator.settings.nodes.len() {
        aggregator.start_probe(node);
    }
    tokio::spawn(aggregator.run(rx, shutdown))
}

/// Applies what [`State`] derives from each probe result.
struct Aggregator {
    cluster: Arc<Cluster>,
    pools: Arc<Pools>,
    settings: Settings,
    state: State,
    /// `[lag]` limits; a change means the config was reloaded.
    reloaded: tokio::sync::watch::Receiver<LagLimits>,
    /// Each node's prober, by id (`None`: removed, or its pool could not be made).
    probes: Vec<Option<CancellationToken>>,
    tx: mpsc::Sender<ProbeResult>,
    shutdown: CancellationToken,
}

impl Aggregator {
    async fn run(mut self, mut rx: mpsc::Receiver<ProbeResult>, shutdown: CancellationToken) {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = self.reloaded.changed() => {
                    if changed.is_ok() {
                        self.on_reload();
                    }
                    continue;
                }
                m = rx.recv() => m,
            };
            let Some((id, result)) = msg else { return };
            match self.state.record(id, result) {
                Some(Reachability::Up) => self.node(id, |n| n.mark_up()),
                Some(Reachability::Down(e)) => {
                    self.node(id, |n| n.mark_down(&e));
                    self.pools.purge_node(id);
                }
                None => {}
            }
            self.cluster.publish(self.state.derive(Instant::now()));
            // Idle connections to a fenced node go at once; none is handed out any more.
            for fenced in self.state.take_fenced() {
                self.pools.purge_node(fenced);
            }
            if self.settings.auto_promote {
                let due = self
                    .state
                    .promotion_due(Instant::now(), self.settings.promote_after);
                if let Some(node) = due {
                    self.promote(node).await;
                }
            }
        }
    }

    fn node(&self, id: usize, f: impl FnOnce(&crate::backend::Node)) {
        if let Some(node) = self.cluster.node(id) {
            f(&node);
        }
    }

    /// Spawns the prober of node `id` (an entry of `settings.nodes`).
    fn start_probe(&mut self, id: usize) {
        let token = match probe::monitor_pool(&self.settings, id) {
            Ok(pool) => {
                let token = self.shutdown.child_token();
                tokio::spawn(probe::probe_loop(
                    id,
                    pool,
                    self.settings.check_interval,
                    self.tx.clone(),
                    token.clone(),
                ));
                Some(token)
            }
            Err(e) => {
                tracing::error!(node = id, error = %e, "cannot create the monitor's pool");
                None
            }
        };
        self.probes.push(token);
    }

    /// A reload: new lag limits; probes for added nodes, none for removed ones.
    fn on_reload(&mut self) {
        let limits = *self.reloaded.borrow_and_update();
        self.state.set_limits(limits);
        let members = self.cluster.members().clone();
        for node in &members.nodes[self.settings.nodes.len().min(members.nodes.len())..] {
            let id = self.state.add(node.name.clone());
            debug_assert_eq!(id, node.id);
            self.settings
                .nodes
                .push(NodeTarget::of(&node.name, &node.addr));
            self.start_probe(node.id);
            tracing::info!(node = %node.name, addr = %node.addr, "node added: probing it");
        }
        for node in members.nodes.iter().filter(|n| n.removed()) {
            if let Some(token) = self.probes.get_mut(node.id).and_then(Option::take) {
                token.cancel();
                self.state.remove(node.id);
                self.pools.purge_node(node.id);
                tracing::info!(node = %node.name, "node removed: no new work; running units finish");
            }
        }
        self.state
            .configured_primary(self.cluster.configured_primary());
        self.cluster.publish(self.state.derive(Instant::now()));
    }

    /// `failover.auto_promote`: promotes the most advanced reachable replica.
    async fn promote(&self, node: usize) {
        let Some(name) = self.cluster.node(node).map(|n| n.name.clone()) else {
            return;
        };
        tracing::warn!(node = %name, "auto_promote: promoting the most advanced replica");
        let result = async {
            let pool = probe::monitor_pool(&self.settings, node)?;
            let client = pool.get().await?;
            client.execute("SELECT pg_promote(true, 30)", &[]).await?;
            Ok::<_, probe::MonitorError>(())
        };
        if let Err(e) = result.await {
            tracing::error!(node = %name, error = %e, "promotion failed");
        }
    }
}

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
                .map(|n| NodeTarget {
                    name: n.name.clone(),
                    host_port: n.host_port().map(|(h, p)| (h.to_owned(), p)),
                })
                .collect(),
        }
    }
}

/// Starts the monitor; it runs until `shutdown`. `pools` are purged of a node found down.
pub fn spawn(
    cluster: Arc<Cluster>,
    pools: Arc<Pools>,
    settings: Settings,
    limits: tokio::sync::watch::Receiver<LagLimits>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::channel(64);
    for node in 0..cluster.nodes.len() {
        match probe::monitor_pool(&settings, node) {
            Ok(pool) => {
                tokio::spawn(probe::probe_loop(
                    node,
                    pool,
                    settings.check_interval,
                    tx.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => tracing::error!(node, error = %e, "cannot create the monitor's pool"),
        }
    }
    let names = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let state = State::new(
        names,
        settings.check_interval,
        settings.limits,
        cluster.view().primary.clone(),
    );
    let aggregator = Aggregator {
        cluster,
        pools,
        settings,
        state,
        limits,
    };
    tokio::spawn(aggregator.run(rx, shutdown))
}

/// Applies what [`State`] derives from each probe result.
struct Aggregator {
    cluster: Arc<Cluster>,
    pools: Arc<Pools>,
    settings: Settings,
    state: State,
    /// `[lag]` limits, changed by a reload.
    limits: tokio::sync::watch::Receiver<LagLimits>,
}

impl Aggregator {
    async fn run(mut self, mut rx: mpsc::Receiver<ProbeResult>, shutdown: CancellationToken) {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = rx.recv() => m,
            };
            let Some((id, result)) = msg else { return };
            if self.limits.has_changed().unwrap_or(false) {
                let limits = *self.limits.borrow_and_update();
                self.state.set_limits(limits);
            }
            match self.state.record(id, result) {
                Some(Reachability::Up) => self.cluster.nodes[id].mark_up(),
                Some(Reachability::Down(e)) => {
                    self.cluster.nodes[id].mark_down(&e);
                    self.pools.purge_node(id);
                }
                None => {}
            }
            self.cluster.publish(self.state.derive(Instant::now()));
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

    /// `failover.auto_promote`: promotes the most advanced reachable replica.
    async fn promote(&self, node: usize) {
        let name = &self.cluster.nodes[node].name;
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

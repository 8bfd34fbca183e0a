//! The monitor: probes every node's role and WAL position every `lag.check_interval`, derives lag
//! in bytes and time, decides which replicas may take reads and which node is primary, and
//! publishes the result as an immutable [`view::ClusterView`] that the router reads lock-free.
//!
//! One prober task per node (so a hung node cannot delay the others) sends samples to one
//! aggregator, which owns all derived state; the decisions themselves are pure functions in
//! [`view`].

pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use view::{
    observe_primary, parse_lsn, ClusterView, LagLimits, LsnHistory, NodeView, Primary, Sample,
};

/// One query per node per tick: role, WAL position, timeline.
const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
     (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text, \
     (SELECT timeline_id FROM pg_control_checkpoint())";

/// A probe that takes longer than this marks the node down.
fn probe_timeout(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(1))
}

/// Starts the monitor; it runs until `shutdown`.
pub fn spawn(proxy: Arc<Proxy>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::channel(64);
    let interval = proxy.config.lag.check_interval;
    for node in 0..proxy.cluster.nodes.len() {
        match monitor_pool(&proxy, node) {
            Ok(pool) => {
                tokio::spawn(probe_loop(
                    node,
                    pool,
                    interval,
                    tx.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => tracing::error!(node, error = %e, "cannot create the monitor's pool"),
        }
    }
    tokio::spawn(Aggregator::new(proxy).run(rx, shutdown))
}

fn monitor_pool(proxy: &Proxy, node: usize) -> Result<Pool, String> {
    let cfg = &proxy.config;
    let (user, password) = cfg
        .monitor_login()
        .ok_or_else(|| "no monitor login configured".to_owned())?;
    let (host, port) = cfg.nodes[node]
        .host_port()
        .ok_or_else(|| "bad node address".to_owned())?;
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .port(port)
        .user(user)
        .password(password)
        .dbname(&cfg.monitor.database)
        .application_name("pgroute-monitor")
        .connect_timeout(probe_timeout(cfg.lag.check_interval));
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(1)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}

/// Consecutive inconclusive probe failures (timeouts, query errors) before a node counts as
/// unreachable. A refused connection counts at once.
const FAILURES_TO_MARK_DOWN: u32 = 3;

/// Why a probe failed.
#[derive(Debug)]
struct ProbeError {
    /// The node answered that it is not there (connection refused, shutting down).
    conclusive: bool,
    message: String,
}

impl ProbeError {
    fn from_error(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut conclusive = false;
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                conclusive |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            if let Some(db) = err.downcast_ref::<tokio_postgres::error::DbError>() {
                conclusive |= db.code() == &tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW
                    || db.code() == &tokio_postgres::error::SqlState::ADMIN_SHUTDOWN;
            }
            cur = err.source();
        }
        ProbeError {
            conclusive,
            message: e.to_string(),
        }
    }

    fn inconclusive(message: String) -> Self {
        ProbeError {
            conclusive: false,
            message,
        }
    }
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type ProbeResult = (usize, Result<Sample, ProbeError>);

async fn probe_loop(
    node: usize,
    pool: Pool,
    interval: Duration,
    tx: mpsc::Sender<ProbeResult>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = match tokio::time::timeout(probe_timeout(interval), probe(&pool)).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::inconclusive(format!(
                "probe timed out after {:?}",
                probe_timeout(interval)
            ))),
        };
        if tx.send((node, result)).await.is_err() {
            return;
        }
    }
}

async fn probe(pool: &Pool) -> Result<Sample, ProbeError> {
    let client = pool.get().await.map_err(|e| ProbeError::from_error(&e))?;
    let row = client
        .query_one(PROBE_SQL, &[])
        .await
        .map_err(|e| ProbeError::from_error(&e))?;
    let in_recovery: bool = row.try_get(0).map_err(|e| ProbeError::from_error(&e))?;
    // A replica that has replayed nothing yet reports NULL.
    let lsn: Option<String> = row.try_get(1).map_err(|e| ProbeError::from_error(&e))?;
    let timeline: Option<i32> = row.try_get(2).ok().flatten();
    Ok(Sample {
        at: Instant::now(),
        in_recovery,
        lsn: lsn.as_deref().and_then(parse_lsn).unwrap_or(0),
        timeline: timeline.and_then(|t| u32::try_from(t).ok()),
    })
}

/// Owns everything derived from samples; publishes a new view after each one.
struct Aggregator {
    proxy: Arc<Proxy>,
    limits: LagLimits,
    nodes: Vec<NodeView>,
    probed: Vec<bool>,
    /// Consecutive failed probes per node.
    failures: Vec<u32>,
    history: LsnHistory,
    primary: Primary,
    primary_missing_since: Option<Instant>,
    /// When the primary last answered a probe: replicas cannot be known to be fresher than that.
    primary_seen_at: Option<Instant>,
}

impl Aggregator {
    fn new(proxy: Arc<Proxy>) -> Self {
        let lag = &proxy.config.lag;
        let limits = LagLimits {
            max_bytes: lag.max_bytes.as_u64(),
            max_time: lag.max_time,
            recover_ratio: lag.recover_ratio,
        };
        let n = proxy.cluster.nodes.len();
        let primary = proxy.cluster.view().primary.clone();
        Aggregator {
            proxy,
            limits,
            nodes: vec![NodeView::default(); n],
            probed: vec![false; n],
            failures: vec![0; n],
            history: LsnHistory::default(),
            primary,
            primary_missing_since: None,
            primary_seen_at: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<ProbeResult>, shutdown: CancellationToken) {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = rx.recv() => m,
            };
            let Some((node, result)) = msg else { return };
            self.record(node, result);
            let view = self.derive(Instant::now());
            self.proxy.cluster.publish(view);
            self.maybe_promote().await;
        }
    }

    /// Folds one probe result into the node's state (health, role, replay position).
    fn record(&mut self, id: usize, result: Result<Sample, ProbeError>) {
        let node = &self.proxy.cluster.nodes[id];
        let first_probe = !self.probed[id];
        self.probed[id] = true;
        let nv = &mut self.nodes[id];
        match result {
            Ok(sample) => {
                self.failures[id] = 0;
                if !nv.reachable {
                    node.mark_up();
                }
                nv.reachable = true;
                if nv.in_recovery != Some(sample.in_recovery) && nv.in_recovery.is_some() {
                    tracing::warn!(node = %node.name, in_recovery = sample.in_recovery, "node changed role");
                    nv.replay_lsn = None;
                }
                nv.in_recovery = Some(sample.in_recovery);
                nv.timeline = sample.timeline;
                if sample.in_recovery {
                    // Replay positions only move forward: keep the highest seen.
                    nv.replay_lsn = Some(nv.replay_lsn.map_or(sample.lsn, |l| l.max(sample.lsn)));
                } else {
                    nv.replay_lsn = Some(sample.lsn);
                    if self.primary == Primary::Known(id) {
                        self.history.record(sample.at, sample.lsn);
                        self.primary_seen_at = Some(sample.at);
                    }
                }
            }
            Err(e) => {
                self.failures[id] += 1;
                let down = e.conclusive || self.failures[id] >= FAILURES_TO_MARK_DOWN;
                if !down && !first_probe {
                    tracing::debug!(node = %node.name, error = %e, "probe failed");
                    return;
                }
                if nv.reachable || first_probe {
                    node.mark_down(&e);
                    self.proxy.pools.purge_node(id);
                }
                nv.reachable = false;
            }
        }
    }

    /// Recomputes primary, lag and eligibility from the node states.
    fn derive(&mut self, now: Instant) -> ClusterView {
        let observed = self.probed.iter().all(|p| *p);
        // Until every node answered once, the configured primary stands.
        let primary = if observed {
            observe_primary(&self.nodes)
        } else {
            self.primary.clone()
        };
        if primary != self.primary {
            self.on_primary_change(&primary);
            self.primary = primary.clone();
        }
        let primary_lsn = match primary {
            Primary::Known(p) => self.nodes[p].replay_lsn,
            _ => None,
        };
        for (id, nv) in self.nodes.iter_mut().enumerate() {
            if nv.in_recovery != Some(true) {
                nv.lag_bytes = 0;
                nv.lag_time = Duration::ZERO;
                nv.lagging = false;
                continue;
            }
            let replay = nv.replay_lsn.unwrap_or(0);
            nv.lag_bytes = primary_lsn.map_or(0, |p| p.saturating_sub(replay));
            // If the primary's own samples are late (a slow probe), what it wrote since is
            // unknown: a replica counts as at least that far behind.
            let unknown = self.primary_seen_at.map_or(Duration::ZERO, |t| {
                now.saturating_duration_since(t)
                    .saturating_sub(self.proxy.config.lag.check_interval * 2)
            });
            nv.lag_time = self.history.time_lag(replay, now).max(unknown);
            let lagging = self.limits.lagging(nv.lagging, nv.lag_bytes, nv.lag_time);
            if lagging != nv.lagging {
                let name = &self.proxy.cluster.nodes[id].name;
                if lagging {
                    tracing::warn!(node = %name, lag_bytes = nv.lag_bytes, lag_time = ?nv.lag_time, "replica lags: no new reads");
                } else {
                    tracing::info!(node = %name, lag_bytes = nv.lag_bytes, lag_time = ?nv.lag_time, "replica caught up: takes reads again");
                }
            }
            nv.lagging = lagging;
        }
        ClusterView {
            observed,
            primary,
            primary_lsn,
            nodes: self.nodes.clone(),
        }
    }

    fn on_primary_change(&mut self, primary: &Primary) {
        let names = |ids: &[usize]| {
            ids.iter()
                .map(|i| {
                    let n = &self.proxy.cluster.nodes[*i];
                    format!("{} (timeline {:?})", n.name, self.nodes[*i].timeline)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match primary {
            Primary::Known(n) => {
                tracing::info!(primary = %names(&[*n]), "primary observed");
                self.history.clear();
                self.primary_missing_since = None;
            }
            Primary::Missing => {
                tracing::error!("no reachable primary: writes fail until one is back or promoted");
                self.primary_missing_since = Some(Instant::now());
            }
            Primary::Conflict(ids) => {
                let newest = ids.iter().max_by_key(|i| self.nodes[**i].timeline).copied();
                tracing::error!(
                    nodes = %names(ids),
                    likely_current = ?newest.map(|i| &self.proxy.cluster.nodes[i].name),
                    "several nodes claim to be primary: writes refused until one steps down"
                );
            }
        }
    }

    /// With `failover.auto_promote`, promotes the most advanced reachable replica once the
    /// primary has been missing for `promote_after`.
    async fn maybe_promote(&mut self) {
        let failover = &self.proxy.config.failover;
        let Some(since) = self.primary_missing_since else {
            return;
        };
        if !failover.auto_promote || since.elapsed() < failover.promote_after {
            return;
        }
        let best = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.reachable && n.in_recovery == Some(true))
            .max_by_key(|(_, n)| n.replay_lsn)
            .map(|(i, _)| i);
        let Some(node) = best else { return };
        self.primary_missing_since = None;
        let name = self.proxy.cluster.nodes[node].name.clone();
        tracing::warn!(node = %name, "auto_promote: promoting the most advanced replica");
        match monitor_pool(&self.proxy, node) {
            Ok(pool) => match pool.get().await {
                Ok(client) => {
                    if let Err(e) = client.execute("SELECT pg_promote(true, 30)", &[]).await {
                        tracing::error!(node = %name, error = %e, "promotion failed");
                    }
                }
                Err(e) => tracing::error!(node = %name, error = %e, "promotion failed"),
            },
            Err(e) => tracing::error!(node = %name, error = %e, "promotion failed"),
        }
    }
}

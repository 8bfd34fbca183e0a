//! The process-wide state every session shares: configuration, the cluster and its pools, the
//! router, the statement caches and the cancel registry; and the reload that replaces the
//! configuration while clients stay connected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::admin::Metrics;
use crate::backend::pool::PoolSettings;
use crate::backend::{Cluster, Pools};
use crate::catalog::FunctionCatalog;
use crate::config::{Config, UserConfig};
use crate::monitor::LagLimits;
use crate::router::decision::Policy;
use crate::router::rules::RuleSet;
use crate::router::Router;
use crate::session::cancel;
use crate::session::startup::ScramSecret;
use crate::session::statements::{ClassCache, Registry};

/// Distinct statement texts whose classification is kept.
const CLASS_CACHE_SIZE: usize = 10_000;

/// State shared by every session.
pub struct Proxy {
    /// The configuration in force (replaced as a whole by [`Proxy::reload`]).
    config: ArcSwap<Config>,
    pub cluster: Arc<Cluster>,
    pub router: Router,
    pub pools: Arc<Pools>,
    pub registry: Registry,
    pub classes: ClassCache,
    /// Whether the functions reads call are VOLATILE (the primary's `pg_proc`, cached).
    pub functions: FunctionCatalog,
    pub cancels: Arc<cancel::Registry>,
    /// What sessions count for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The client listener's accept loop runs (for `/ready`).
    accepting: AtomicBool,
    /// Sessions per user and database (`[limits]`).
    pub slots: Arc<crate::session::slots::Slots>,
    /// The `[lag]` limits, for the monitor.
    lag_limits: tokio::sync::watch::Sender<LagLimits>,
    scram: Mutex<HashMap<String, Arc<ScramSecret>>>,
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Proxy {
    pub fn new(config: Config) -> Arc<Self> {
        let rules =
            Arc::new(RuleSet::compile(&config).expect("a validated config compiles its rules"));
        let cluster = Arc::new(Cluster::from_config(&config, &rules));
        let settings = PoolSettings {
            max_size: config.pool.max_size,
            connect_timeout: config.pool.connect_timeout,
            checkout_timeout: config.pool.checkout_timeout,
            idle_timeout: config.pool.idle_timeout,
            lifetime: config.limits.server_lifetime,
        };
        let (lag_limits, _) = tokio::sync::watch::channel(lag_limits(&config));
        Arc::new(Proxy {
            router: Router::new(cluster.clone(), Policy::new(&config, rules)),
            functions: FunctionCatalog::new(&config, cluster.clone()),
            cluster,
            pools: Arc::new(Pools::new(settings)),
            registry: Registry::default(),
            classes: ClassCache::new(CLASS_CACHE_SIZE),
            cancels: Arc::new(cancel::Registry::default()),
            metrics: Arc::new(Metrics::default()),
            accepting: AtomicBool::new(false),
            slots: Arc::default(),
            lag_limits,
            scram: Mutex::new(HashMap::new()),
            config: ArcSwap::from_pointee(config),
        })
    }

    /// The configuration in force (read at login and by the server, not per statement).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Whether the client listener accepts connections.
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Set by the accept loop as it starts and stops.
    pub fn set_accepting(&self, on: bool) {
        self.accepting.store(on, Ordering::Relaxed);
    }

    /// Follows changes of the `[lag]` limits (for the monitor).
    pub fn lag_limits(&self) -> tokio::sync::watch::Receiver<LagLimits> {
        self.lag_limits.subscribe()
    }

    /// The user's SCRAM secret, derived once (PBKDF2 is deliberately slow).
    pub fn scram_secret(&self, user: &UserConfig) -> Arc<ScramSecret> {
        let mut map = self.scram.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(user.name.clone())
            .or_insert_with(|| Arc::new(ScramSecret::new(&user.password)))
            .clone()
    }

    /// Installs a new, validated configuration. Rules, groups, node weights, groups and drain,
    /// lag limits, balance and routing settings apply to units routed from now on; users and
    /// consistency settings to sessions that log in from now on. Running units, held
    /// transactions and client connections are not touched. Keys only a restart applies
    /// (`listen`, `max_client_conn`, `[pool]`, `[monitor]`, `[failover]`, `admin.listen`) are
    /// logged when they differ. Counted in `pgroute_config_reloads_total` either way. A node with the same name, address and role keeps its connections; a new
    /// entry is probed, and takes work once the monitor has seen it; a node no longer listed
    /// gets no new work and its idle connections close (see [`Cluster::reconfigure`]).
    pub fn reload(&self, new: Config) -> Result<(), ReloadError> {
        let result = self.install(new);
        self.metrics.reload(result.is_ok());
        result
    }

    fn install(&self, new: Config) -> Result<(), ReloadError> {
        let old = self.config();
        let rules = Arc::new(RuleSet::compile(&new)?);
        // The policy first: a group a node is newly in exists once the node joins it.
        self.router.set_policy(Policy::new(&new, rules.clone()));
        let change = self.cluster.reconfigure(&new, &rules);
        for &id in change.drained.iter().chain(&change.removed) {
            if let Some(node) = self.cluster.node(id) {
                if node.removed() {
                    tracing::info!(node = %node.name, "node removed from the config");
                } else {
                    tracing::info!(node = %node.name, "node drained: no new reads; idle connections closed");
                }
            }
            self.pools.purge_node(id);
        }
        for &id in &change.added {
            if let Some(node) = self.cluster.node(id) {
                tracing::info!(node = %node.name, addr = %node.addr, "node added to the config");
            }
        }
        self.functions.reconfigure(&new);
        // Also tells the monitor to probe added nodes and stop probing removed ones.
        self.lag_limits.send_replace(lag_limits(&new));
        for (key, same) in [
            ("listen", old.listen == new.listen),
            (
                "max_client_conn",
                old.max_client_conn == new.max_client_conn,
            ),
            ("pool", old.pool == new.pool),
            ("monitor", old.monitor == new.monitor),
            ("failover", old.failover == new.failover),
            ("admin.listen", old.admin.listen == new.admin.listen),
            (
                "limits.server_lifetime",
                old.limits.server_lifetime == new.limits.server_lifetime,
            ),
            (
                "lag.check_interval",
                old.lag.check_interval == new.lag.check_interval,
            ),
        ] {
            if !same {
                tracing::warn!(key, "changed in the file, but only a restart applies it");
            }
        }
        self.scram.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.config.store(Arc::new(new));
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

fn lag_limits(config: &Config) -> LagLimits {
    LagLimits {
        max_bytes: config.lag.max_bytes.as_u64(),
        max_time: config.lag.max_time,
        recover_ratio: config.lag.recover_ratio,
    }
}

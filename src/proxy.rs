//! The process-wide state every session shares: configuration, the cluster and its pools, the
//! router, the statement caches and the cancel registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::pool::PoolSettings;
use crate::backend::{Cluster, Pools};
use crate::catalog::FunctionCatalog;
use crate::config::{Config, UserConfig};
use crate::router::decision::Policy;
use crate::router::Router;
use crate::session::cancel;
use crate::session::startup::ScramSecret;
use crate::session::statements::{ClassCache, Registry};

/// Distinct statement texts whose classification is kept.
const CLASS_CACHE_SIZE: usize = 10_000;

/// State shared by every session.
pub struct Proxy {
    pub config: Arc<Config>,
    pub cluster: Arc<Cluster>,
    pub router: Router,
    pub pools: Arc<Pools>,
    pub registry: Registry,
    pub classes: ClassCache,
    /// Whether the functions reads call are VOLATILE (the primary's `pg_proc`, cached).
    pub functions: FunctionCatalog,
    pub cancels: Arc<cancel::Registry>,
    scram: Mutex<HashMap<String, Arc<ScramSecret>>>,
}

impl Proxy {
    pub fn new(config: Config) -> Arc<Self> {
        let cluster = Arc::new(Cluster::from_config(&config));
        let settings = PoolSettings {
            max_size: config.pool.max_size,
            connect_timeout: config.pool.connect_timeout,
            checkout_timeout: config.pool.checkout_timeout,
            idle_timeout: config.pool.idle_timeout,
        };
        Arc::new(Proxy {
            router: Router::new(
                cluster.clone(),
                Policy {
                    read_only_transactions: config.routing.read_only_transactions,
                    balance: config.routing.balance,
                    when_all_lagging: config.lag.when_all_lagging,
                    max_wait: config.consistency.max_wait,
                },
            ),
            functions: FunctionCatalog::new(&config, cluster.clone()),
            cluster,
            pools: Arc::new(Pools::new(settings)),
            registry: Registry::default(),
            classes: ClassCache::new(CLASS_CACHE_SIZE),
            cancels: Arc::new(cancel::Registry::default()),
            scram: Mutex::new(HashMap::new()),
            config: Arc::new(config),
        })
    }

    /// The user's SCRAM secret, derived once (PBKDF2 is deliberately slow).
    pub fn scram_secret(&self, user: &UserConfig) -> Arc<ScramSecret> {
        let mut map = self.scram.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(user.name.clone())
            .or_insert_with(|| Arc::new(ScramSecret::new(&user.password)))
            .clone()
    }
}

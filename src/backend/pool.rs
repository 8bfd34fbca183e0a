//! Server connection pools, one per (node, user, database).
//!
//! A pool hands out a connection for one transaction (or one statement outside a transaction);
//! the session gives it back only when the server said ReadyForQuery 'I' with nothing pending.
//! A connection that is dropped instead of released is closed, so a dirty connection never
//! returns to the pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{BackendError, Cluster, Login, Node, ServerConn};

/// Limits shared by every pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    pub connect_timeout: Duration,
    pub checkout_timeout: Duration,
    pub idle_timeout: Duration,
    /// A connection older than this is closed when given back or found idle
    /// (`limits.server_lifetime`).
    pub lifetime: Duration,
}

/// Connections to one node for one (user, database).
#[derive(Debug)]
pub struct Pool {
    pub node: Arc<Node>,
    user: String,
    password: String,
    database: String,
    settings: PoolSettings,
    idle: Mutex<Vec<ServerConn>>,
    permits: Arc<Semaphore>,
    /// The ParameterStatus values of the last connection this pool opened: a client's login is
    /// answered from them, so it needs no free server connection.
    reported: Mutex<Option<Arc<BTreeMap<String, String>>>>,
}

impl Pool {
    /// Takes an idle connection or opens a new one, waiting at most `checkout_timeout` for room.
    pub async fn acquire(self: &Arc<Self>) -> Result<PooledConn, BackendError> {
        self.acquire_within(self.settings.checkout_timeout).await
    }

    /// The pool's whole wait bound (`pool.checkout_timeout`).
    pub fn checkout_timeout(&self) -> Duration {
        self.settings.checkout_timeout
    }

    /// [`Pool::acquire`], waiting at most `wait` for room (a unit that already waited on
    /// another node's pool gets only what is left of its one `checkout_timeout`).
    pub async fn acquire_within(
        self: &Arc<Self>,
        wait: Duration,
    ) -> Result<PooledConn, BackendError> {
        // The common case needs no timer.
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = self.node.wait_for_room();
                tokio::time::timeout(wait, self.permits.clone().acquire_owned())
                    .await
                    .map_err(|_| BackendError::PoolTimeout(wait))?
                    .map_err(|_| BackendError::PoolTimeout(wait))?
            }
        };
        let conn = match self.take_idle() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        self.node.begin_work();
        Ok(PooledConn {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }

    fn take_idle(&self) -> Option<ServerConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            let idle_for = conn.last_used.elapsed();
            if idle_for >= self.settings.idle_timeout
                || conn.created.elapsed() >= self.settings.lifetime
            {
                continue;
            }
            // Checking the socket costs a system call; a connection used moments ago is alive
            // or, if its node just died, fails like an in-flight statement would (and the
            // monitor purges the pool of a node it finds down).
            if idle_for < RECENTLY_USED || conn.idle_socket_open() {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<ServerConn, BackendError> {
        let login = Login {
            addr: &self.node.addr,
            user: &self.user,
            password: &self.password,
            database: &self.database,
            timeout: self.settings.connect_timeout,
        };
        match ServerConn::connect(&login).await {
            Ok(conn) => {
                self.node.mark_up();
                *self.reported.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(conn.server_params.clone()));
                tracing::debug!(node = %self.node.name, conn = conn.id, "server connection opened");
                Ok(conn)
            }
            // "The database system is starting up / shutting down" (57P0x) is the node's state;
            // any other refusal (password, database) says nothing about the node's health.
            Err(BackendError::Refused(frame))
                if crate::protocol::messages::error_code(&frame)
                    .is_some_and(|c| c.starts_with("57P")) =>
            {
                let e = BackendError::Unavailable(frame);
                self.node.mark_down(&e);
                Err(e)
            }
            Err(e @ BackendError::Refused(_)) => Err(e),
            Err(e) => {
                self.node.mark_down(&e);
                Err(e)
            }
        }
    }

    /// What the server reported (ParameterStatus) when this pool last opened a connection;
    /// None until one was opened, which proves that this user can log into this database.
    pub fn server_params(&self) -> Option<Arc<BTreeMap<String, String>>> {
        self.reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Idle connections kept now.
    pub fn idle_len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Closes every idle connection (after the node failed).
    pub fn purge(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn put(&self, mut conn: ServerConn) {
        if self.node.drained() || conn.created.elapsed() >= self.settings.lifetime {
            // A drained node keeps no idle connections; an old one is recycled.
            return;
        }
        conn.last_used = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

/// Idle connections younger than this are handed out without checking their socket.
const RECENTLY_USED: Duration = Duration::from_millis(500);

/// A connection lent to one client.
#[derive(Debug)]
pub struct PooledConn {
    conn: Option<ServerConn>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConn {
    pub fn node(&self) -> &Arc<Node> {
        &self.pool.node
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Gives a clean connection (ReadyForQuery 'I', nothing pending) back to its pool.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put(conn);
        }
    }
}

impl std::ops::Deref for PooledConn {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        // `conn` is only None after `release`, which consumes self.
        self.conn
            .as_ref()
            .expect("pooled connection used after release")
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("pooled connection used after release")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        self.pool.node.end_work();
        if let Some(conn) = &self.conn {
            tracing::debug!(node = %self.pool.node.name, conn = conn.id, "server connection closed");
        }
    }
}

/// Every pool, created on first use.
#[derive(Debug)]
pub struct Pools {
    settings: PoolSettings,
    pools: Mutex<HashMap<(usize, String, String), Arc<Pool>>>,
}

impl Pools {
    pub fn new(settings: PoolSettings) -> Self {
        Pools {
            settings,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The pool for `node` as `user` (logging in with `password`) on `database`.
    pub fn get(&self, node: &Arc<Node>, user: &str, password: &str, database: &str) -> Arc<Pool> {
        let key = (node.id, user.to_owned(), database.to_owned());
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Pool {
                    node: node.clone(),
                    user: user.to_owned(),
                    password: password.to_owned(),
                    database: database.to_owned(),
                    settings: self.settings.clone(),
                    idle: Mutex::new(Vec::new()),
                    permits: Arc::new(Semaphore::new(self.settings.max_size)),
                    reported: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Idle connections kept for each node id below `nodes` (for metrics, at scrape time).
    pub fn idle_by_node(&self, nodes: usize) -> Vec<usize> {
        let mut idle = vec![0; nodes];
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        for pool in pools.values() {
            if let Some(n) = idle.get_mut(pool.node.id) {
                *n += pool.idle_len();
            }
        }
        idle
    }

    /// Closes the idle connections of every pool of `node`.
    pub fn purge_node(&self, node: usize) {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        for pool in pools.values().filter(|p| p.node.id == node) {
            pool.purge();
        }
    }
}

/// One login's pools (user, database), by node id. A node a reload added gets its pool on
/// first use; a removed node's pool stays, unused, until the session ends.
#[derive(Debug)]
pub struct LoginPools {
    user: String,
    password: String,
    database: String,
    by_node: Vec<Arc<Pool>>,
}

impl LoginPools {
    pub fn new(
        pools: &Pools,
        cluster: &Cluster,
        user: &str,
        password: &str,
        database: &str,
    ) -> Self {
        let mut login = LoginPools {
            user: user.to_owned(),
            password: password.to_owned(),
            database: database.to_owned(),
            by_node: Vec::new(),
        };
        login.extend(pools, cluster);
        login
    }

    /// The pool of node `id`; `None` only for an id no node has.
    pub fn get(&mut self, pools: &Pools, cluster: &Cluster, id: usize) -> Option<&Arc<Pool>> {
        if id >= self.by_node.len() {
            self.extend(pools, cluster);
        }
        self.by_node.get(id)
    }

    /// The pools of the nodes still configured, by id.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Arc<Pool>)> {
        self.by_node
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.node.removed())
    }

    fn extend(&mut self, pools: &Pools, cluster: &Cluster) {
        let members = cluster.members();
        for node in &members.nodes[self.by_node.len().min(members.nodes.len())..] {
            self.by_node
                .push(pools.get(node, &self.user, &self.password, &self.database));
        }
    }
}

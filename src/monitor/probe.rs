//! Probing one node: its role, WAL position and timeline, over the monitor's own connection.

use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use super::Settings;
use crate::backend::view::Lsn;

/// One query per node per tick: role, WAL position, current timeline.
///
/// The primary reports its *flushed* position, not `pg_current_wal_lsn()` (written): the
/// walsender sends only flushed WAL ("it's unsafe to send WAL that is not securely down to disk
/// on the primary", walsender.c), so a replica is measured against what it could have
/// received, not against WAL the primary has written out but not yet flushed.
///
/// The timeline is the current one, not `pg_control_checkpoint()`'s, which changes only at the
/// next checkpoint (a promoted replica would report its old timeline until then; pgroute never
/// forces a checkpoint to learn it). A primary's is the first 8 hex digits of the name of the
/// WAL file it writes; `pg_walfile_name` "cannot be executed during recovery", so the CASE
/// keeps it off replicas. A replica's is the timeline its WAL receiver last received
/// (`received_tli`, visible to roles with `pg_read_all_stats`, which `pg_monitor` includes).
/// When it has no receiver (not streaming now) or the role may not see it, the fourth column,
/// the last checkpoint's (restartpoint's) timeline, is all there is: a lower bound.
const PROBE_SQL: &str = "SELECT pg_is_in_recovery(), \
     (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
      ELSE pg_current_wal_flush_lsn() END)::text, \
     (CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver) \
      ELSE ('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::int END), \
     (SELECT timeline_id FROM pg_control_checkpoint())";

/// What one probe of one node returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When the probe's query was sent: the position was read after this.
    pub asked_at: Instant,
    /// When its answer arrived: the node had reached the position by then.
    pub answered_at: Instant,
    pub in_recovery: bool,
    /// Primary: flushed WAL position. Replica: last replayed position.
    pub lsn: Lsn,
    /// The node's current timeline, when known (see [`PROBE_SQL`]).
    pub timeline: Option<u32>,
    /// The timeline of its last checkpoint or restartpoint: at most the current one.
    pub checkpoint_timeline: Option<u32>,
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    /// The node answered that it is not there (connection refused, shutting down).
    pub conclusive: bool,
    pub message: String,
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
                conclusive |= db.code() == &SqlState::CANNOT_CONNECT_NOW
                    || db.code() == &SqlState::ADMIN_SHUTDOWN;
            }
            cur = err.source();
        }
        ProbeError {
            conclusive,
            message: e.to_string(),
        }
    }

    pub fn inconclusive(message: String) -> Self {
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

pub type ProbeResult = (usize, Result<Sample, ProbeError>);

/// A probe that takes longer than this marks the node down.
pub fn probe_timeout(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(1))
}

/// Why the monitor could not use its own connection to a node.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("no monitor login configured")]
    NoLogin,
    #[error("bad node address")]
    BadAddress,
    #[error(transparent)]
    Build(#[from] deadpool_postgres::BuildError),
    #[error(transparent)]
    Checkout(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
}

/// The monitor's own one-connection pool to `node`.
pub fn monitor_pool(settings: &Settings, node: usize) -> Result<Pool, MonitorError> {
    let login = settings.login.as_ref().ok_or(MonitorError::NoLogin)?;
    let (host, port) = settings
        .nodes
        .get(node)
        .and_then(|n| n.host_port.as_ref())
        .ok_or(MonitorError::BadAddress)?;
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .port(*port)
        .user(&login.user)
        .password(&login.password)
        .dbname(&login.database)
        .application_name("pgroute-monitor")
        .connect_timeout(probe_timeout(settings.check_interval));
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
        .map_err(MonitorError::from)
}

/// Probes `node` every `interval` until `shutdown` (or until the aggregator is gone).
pub async fn probe_loop(
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
    let asked_at = Instant::now();
    let row = client
        .query_one(PROBE_SQL, &[])
        .await
        .map_err(|e| ProbeError::from_error(&e))?;
    let answered_at = Instant::now();
    let in_recovery: bool = row.try_get(0).map_err(|e| ProbeError::from_error(&e))?;
    // A replica that has replayed nothing yet reports NULL.
    let lsn: Option<String> = row.try_get(1).map_err(|e| ProbeError::from_error(&e))?;
    let timeline = |i| {
        row.try_get::<_, Option<i32>>(i)
            .ok()
            .flatten()
            .and_then(|t| u32::try_from(t).ok())
    };
    Ok(Sample {
        asked_at,
        answered_at,
        in_recovery,
        lsn: lsn.as_deref().and_then(Lsn::parse).unwrap_or_default(),
        timeline: timeline(2),
        checkpoint_timeline: timeline(3),
    })
}

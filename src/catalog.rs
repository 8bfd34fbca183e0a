//! The function catalog: whether a function a read calls is VOLATILE, asked of the primary's
//! `pg_proc` once per name and database, so that `SELECT my_fn()` with a `my_fn` that writes
//! goes to the primary instead of failing on a replica with 25006.
//!
//! The classifier reports the functions a read calls that it does not know as built-ins
//! ([`crate::classify::Classification::functions`]); the session asks [`FunctionCatalog::target`]
//! before routing. `routing.write_functions` and `routing.read_functions` decide first; then,
//! with `routing.functions = "catalog"`, the cached answer for the name, or one lookup for it:
//!
//! - A name written with a schema is looked up in that schema only; a name without one in every
//!   schema. pgroute does not follow the client's `search_path` nor match argument types, so a
//!   name counts as VOLATILE when *any* function of that name (any overload, any schema) outside
//!   `pg_catalog` is VOLATILE: the safe side, as a needless trip to the primary only costs
//!   latency.
//! - Functions in `pg_catalog` are built-ins: they make a read a write only when they are one of
//!   [`crate::classify::functions::SIDE_EFFECT_FUNCTIONS`], which the classifier already knows.
//! - A name found nowhere, or one whose lookup failed (primary down), sends the read to the
//!   primary. A failed lookup is not cached: the next read calling it after a short pause asks
//!   again. The error is logged once, until lookups work again.
//!
//! Answers are kept per database (`pg_proc` belongs to one) until [`FunctionCatalog::clear`]:
//! after a `CREATE/ALTER/DROP FUNCTION|PROCEDURE` (and the like, see
//! [`crate::classify::Classification::changes_functions`]) passes through pgroute, and on a
//! config reload ([`FunctionCatalog::reconfigure`]). DDL run on the primary directly, not
//! through pgroute, is not seen until then.
//!
//! A lookup never blocks other sessions: sessions asking for the same name share one lookup
//! (the cache's placeholder), other names and sessions go on. Lookups use one small connection
//! per database to the current primary, logged in as the monitor is (`[monitor]`), opened
//! within `pool.connect_timeout`; concurrent lookups share it (tokio-postgres pipelines them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_postgres::NoTls;

use crate::backend::view::Primary;
use crate::backend::Cluster;
use crate::classify::{FnName, Target};
use crate::config::{split_host_port, Config, FunctionLookup};

/// Distinct function names whose answer is kept, per database.
const ANSWERS_PER_DATABASE: usize = 10_000;

/// After a failed lookup, reads calling a function not cached yet go to the primary without
/// asking for this long, so that a primary that is down does not make each of them wait for a
/// connection attempt.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How many functions of the name exist outside `pg_catalog` and in it, and whether one outside
/// is VOLATILE (`provolatile = 'v'`).
const LOOKUP_SQL: &str = "SELECT count(*) FILTER (WHERE n.nspname <> 'pg_catalog'), \
     count(*) FILTER (WHERE n.nspname = 'pg_catalog'), \
     coalesce(bool_or(p.provolatile = 'v') FILTER (WHERE n.nspname <> 'pg_catalog'), false) \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     WHERE p.proname = ($1::text)::name AND ($2::text IS NULL OR n.nspname = ($2::text)::name)";

/// What the primary's catalog says about a function name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    /// A function of that name outside `pg_catalog` is VOLATILE: it may write.
    Volatile,
    /// Every function of that name is STABLE or IMMUTABLE, or a built-in in `pg_catalog`.
    NotVolatile,
    /// No function has that name: the read fails wherever it runs, or calls a function pgroute
    /// cannot see yet.
    Absent,
}

impl Volatility {
    /// From the counts [`LOOKUP_SQL`] returns.
    fn from_counts(outside: i64, builtin: i64, volatile_outside: bool) -> Self {
        if volatile_outside {
            Volatility::Volatile
        } else if outside > 0 || builtin > 0 {
            Volatility::NotVolatile
        } else {
            Volatility::Absent
        }
    }

    /// Where a read calling such a function may run.
    pub fn target(self) -> Target {
        match self {
            Volatility::NotVolatile => Target::Read,
            Volatility::Volatile | Volatility::Absent => Target::Write,
        }
    }
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no monitor login configured")]
    NoLogin,
    #[error("no primary is known")]
    NoPrimary,
    #[error("bad primary address {0:?}")]
    BadAddress(String),
    #[error("lookup timed out after {0:?}")]
    Timeout(Duration),
    #[error("not tried again yet after a failed lookup")]
    Pausing,
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// A `routing.write_functions` / `routing.read_functions` entry: a name, in any schema or in
/// one, matched ASCII case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnPattern {
    schema: Option<String>,
    name: String,
}

impl FnPattern {
    /// `"name"` or `"schema.name"` as in the config file.
    pub fn parse(entry: &str) -> Self {
        match entry.rsplit_once('.') {
            Some((schema, name)) => FnPattern {
                schema: Some(schema.to_owned()),
                name: name.to_owned(),
            },
            None => FnPattern {
                schema: None,
                name: entry.to_owned(),
            },
        }
    }

    /// Whether a call of `f` is this function: same name, and the same schema when the entry
    /// names one (a call written without a schema does not match `schema.name`).
    pub fn matches(&self, f: &FnName) -> bool {
        self.name.eq_ignore_ascii_case(&f.name)
            && self.schema.as_deref().is_none_or(|schema| {
                f.schema
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(schema))
            })
    }
}

/// What the catalog needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: FunctionLookup,
    pub write_functions: Vec<FnPattern>,
    pub read_functions: Vec<FnPattern>,
    /// User and password lookups log in with (the monitor's).
    pub login: Option<(String, String)>,
    pub connect_timeout: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        let routing = &config.routing;
        Settings {
            mode: routing.functions,
            write_functions: routing
                .write_functions
                .iter()
                .map(|e| FnPattern::parse(e))
                .collect(),
            read_functions: routing
                .read_functions
                .iter()
                .map(|e| FnPattern::parse(e))
                .collect(),
            login: config
                .monitor_login()
                .map(|(user, password)| (user.to_owned(), password.to_owned())),
            connect_timeout: config.pool.connect_timeout,
        }
    }

    /// What the config lists say about `f`, if anything: `write_functions` first.
    pub fn overridden(&self, f: &FnName) -> Option<Target> {
        if self.write_functions.iter().any(|p| p.matches(f)) {
            Some(Target::Write)
        } else if self.read_functions.iter().any(|p| p.matches(f)) {
            Some(Target::Read)
        } else {
            None
        }
    }
}

type Answers = quick_cache::sync::Cache<FnName, Volatility>;

/// The process-wide function catalog (one per [`crate::proxy::Proxy`]).
pub struct FunctionCatalog {
    cluster: Arc<Cluster>,
    settings: ArcSwap<Settings>,
    databases: Mutex<HashMap<String, Arc<DatabaseFunctions>>>,
}

/// The answers about one database's functions, and its lookup connection.
pub struct DatabaseFunctions {
    database: String,
    /// Replaced whole by [`FunctionCatalog::clear`]: a lookup still running then fills the
    /// old cache, which nobody asks any more.
    answers: ArcSwap<Answers>,
    conn: tokio::sync::Mutex<Option<CatalogConn>>,
    /// After a failed lookup: when the next may be tried.
    retry_at: Mutex<Option<Instant>>,
    /// Lookups are failing: set when the failure is logged, cleared (and logged) when one works.
    failing: AtomicBool,
}

/// The lookup connection to one node.
struct CatalogConn {
    node: usize,
    client: Arc<tokio_postgres::Client>,
}

impl FunctionCatalog {
    pub fn new(config: &Config, cluster: Arc<Cluster>) -> Self {
        FunctionCatalog {
            cluster,
            settings: ArcSwap::from_pointee(Settings::from_config(config)),
            databases: Mutex::new(HashMap::new()),
        }
    }

    /// The answers for `database` (a session takes this once, at login).
    pub fn database(&self, database: &str) -> Arc<DatabaseFunctions> {
        let mut map = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(database.to_owned())
            .or_insert_with(|| {
                Arc::new(DatabaseFunctions {
                    database: database.to_owned(),
                    answers: ArcSwap::from_pointee(Answers::new(ANSWERS_PER_DATABASE)),
                    conn: tokio::sync::Mutex::new(None),
                    retry_at: Mutex::new(None),
                    failing: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Forgets every cached answer: functions may have changed.
    pub fn clear(&self) {
        let map = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        for db in map.values() {
            db.answers
                .store(Arc::new(Answers::new(ANSWERS_PER_DATABASE)));
            *db.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        tracing::debug!("function catalog cleared");
    }

    /// Takes a reloaded configuration: its mode, lists and login; every answer is forgotten and
    /// lookup connections are opened anew.
    pub fn reconfigure(&self, config: &Config) {
        self.settings.store(Arc::new(Settings::from_config(config)));
        self.clear();
        let map = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        for db in map.values() {
            if let Ok(mut conn) = db.conn.try_lock() {
                *conn = None;
            }
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Where a read calling `functions` (not known built-ins, from its classification) may
    /// run: `Write` when one of them may write. Awaits a lookup only for a name not cached.
    pub async fn target(&self, db: &DatabaseFunctions, functions: &[FnName]) -> Target {
        let settings = self.settings.load_full();
        for f in functions {
            let target = match settings.overridden(f) {
                Some(target) => target,
                None if settings.mode == FunctionLookup::Builtin => Target::Read,
                None => self.volatility(db, f, &settings).await.target(),
            };
            if target == Target::Write {
                return Target::Write;
            }
        }
        Target::Read
    }

    /// The cached answer for `f`, or one lookup shared by everyone asking meanwhile. A failed
    /// lookup answers `Absent` (to the primary) and is not cached.
    async fn volatility(
        &self,
        db: &DatabaseFunctions,
        f: &FnName,
        settings: &Settings,
    ) -> Volatility {
        if let Some(v) = db.answers.load().get(f) {
            return v;
        }
        let answers = db.answers.load_full();
        let guard = match answers.get_value_or_guard_async(f).await {
            Ok(v) => return v,
            Err(guard) => guard,
        };
        match self.look_up(db, f, settings).await {
            Ok(v) => {
                if db.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(database = %db.database, "function lookups work again");
                }
                tracing::debug!(
                    database = %db.database, function = %f, answer = ?v,
                    "function looked up"
                );
                let _ = guard.insert(v);
                v
            }
            Err(e) => {
                drop(guard);
                if !matches!(e, LookupError::Pausing) {
                    db.pause();
                    // A connection that failed a lookup (or timed out) is not trusted again.
                    if let Ok(mut conn) = db.conn.try_lock() {
                        *conn = None;
                    }
                    if !db.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            database = %db.database, function = %f, error = %chain(&e),
                            "cannot look functions up in the primary's catalog: reads calling \
                             functions not looked up yet go to the primary"
                        );
                    }
                }
                Volatility::Absent
            }
        }
    }

    async fn look_up(
        &self,
        db: &DatabaseFunctions,
        f: &FnName,
        settings: &Settings,
    ) -> Result<Volatility, LookupError> {
        if db.pausing() {
            return Err(LookupError::Pausing);
        }
        let timeout = settings.connect_timeout;
        let ask = async {
            let client = self.client(db, settings).await?;
            let row = client.query_one(LOOKUP_SQL, &[&f.name, &f.schema]).await?;
            let outside: i64 = row.try_get(0)?;
            let builtin: i64 = row.try_get(1)?;
            let volatile: bool = row.try_get(2)?;
            Ok(Volatility::from_counts(outside, builtin, volatile))
        };
        tokio::time::timeout(timeout, ask)
            .await
            .unwrap_or(Err(LookupError::Timeout(timeout)))
    }

    /// The lookup connection to the current primary, opened (again) if there is none, it is
    /// closed or it goes to a node that is no longer the primary.
    async fn client(
        &self,
        db: &DatabaseFunctions,
        settings: &Settings,
    ) -> Result<Arc<tokio_postgres::Client>, LookupError> {
        let primary = match self.cluster.view().primary {
            Primary::Known(n) => n,
            Primary::Missing | Primary::Conflict(_) => return Err(LookupError::NoPrimary),
        };
        let mut conn = db.conn.lock().await;
        if let Some(c) = conn
            .as_ref()
            .filter(|c| c.node == primary && !c.client.is_closed())
        {
            return Ok(c.client.clone());
        }
        *conn = None;
        let client = Arc::new(self.connect(&db.database, primary, settings).await?);
        *conn = Some(CatalogConn {
            node: primary,
            client: client.clone(),
        });
        Ok(client)
    }

    async fn connect(
        &self,
        database: &str,
        node: usize,
        settings: &Settings,
    ) -> Result<tokio_postgres::Client, LookupError> {
        let (user, password) = settings.login.as_ref().ok_or(LookupError::NoLogin)?;
        let addr = self
            .cluster
            .node(node)
            .map(|n| n.addr.clone())
            .ok_or(LookupError::NoPrimary)?;
        let (host, port) =
            split_host_port(&addr).ok_or_else(|| LookupError::BadAddress(addr.to_string()))?;
        let mut pg = tokio_postgres::Config::new();
        pg.host(host)
            .port(port)
            .user(user)
            .password(password)
            .dbname(database)
            .application_name("pgroute-catalog")
            .connect_timeout(settings.connect_timeout);
        let (client, connection) = pg.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "function lookup connection closed");
            }
        });
        Ok(client)
    }
}

/// An error with its causes (tokio-postgres says only "db error" at the top).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl DatabaseFunctions {
    fn pausing(&self) -> bool {
        let retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        retry_at.is_some_and(|at| Instant::now() < at)
    }

    fn pause(&self) {
        *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + RETRY_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(schema: Option<&str>, name: &str) -> FnName {
        FnName::new(schema, name)
    }

    #[test]
    fn a_volatile_function_outside_pg_catalog_makes_the_read_a_write() {
        assert_eq!(Volatility::from_counts(2, 0, true), Volatility::Volatile);
        assert_eq!(Volatility::from_counts(1, 3, true).target(), Target::Write);
        assert_eq!(Volatility::from_counts(1, 0, false).target(), Target::Read);
        // Only built-ins of that name: SIDE_EFFECT_FUNCTIONS decided already.
        assert_eq!(Volatility::from_counts(0, 1, false).target(), Target::Read);
        // Found nowhere: the safe side.
        assert_eq!(Volatility::from_counts(0, 0, false), Volatility::Absent);
        assert_eq!(Volatility::Absent.target(), Target::Write);
    }

    #[test]
    fn an_entry_without_a_schema_matches_the_name_in_any_schema() {
        let p = FnPattern::parse("Log_It");
        assert!(p.matches(&f(None, "log_it")));
        assert!(p.matches(&f(Some("audit"), "log_it")));
        assert!(p.matches(&f(None, "LOG_IT")));
        assert!(!p.matches(&f(None, "log_it2")));
    }

    #[test]
    fn an_entry_with_a_schema_matches_only_calls_naming_that_schema() {
        let p = FnPattern::parse("Audit.log_it");
        assert!(p.matches(&f(Some("audit"), "log_it")));
        assert!(p.matches(&f(Some("AUDIT"), "Log_It")));
        assert!(!p.matches(&f(None, "log_it")));
        assert!(!p.matches(&f(Some("public"), "log_it")));
    }

    #[test]
    fn write_functions_win_over_read_functions() {
        let settings = Settings {
            mode: FunctionLookup::Catalog,
            write_functions: vec![FnPattern::parse("audit.touch")],
            read_functions: vec![FnPattern::parse("touch"), FnPattern::parse("cheap")],
            login: None,
            connect_timeout: Duration::from_secs(1),
        };
        assert_eq!(
            settings.overridden(&f(Some("audit"), "touch")),
            Some(Target::Write)
        );
        assert_eq!(settings.overridden(&f(None, "touch")), Some(Target::Read));
        assert_eq!(settings.overridden(&f(None, "CHEAP")), Some(Target::Read));
        assert_eq!(settings.overridden(&f(None, "other")), None);
    }
}

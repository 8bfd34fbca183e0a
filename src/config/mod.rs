//! Configuration: the `pgroute.toml` shape, its defaults, loading and validation.
//!
//! Values are layered defaults → TOML file → environment (`PGROUTE_<SECTION>__<KEY>`, see
//! [`load`]), deserialized into [`Config`], then checked by [`Config::validate`], whose errors
//! name the offending key (`nodes[1].addr: "localhost" is not host:port`).
//!
//! `config/pgroute.toml` in the repository documents every key with its default.

mod limits;
mod load;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

pub use limits::LimitsConfig;
pub use load::{from_toml_str, load, ENV_PREFIX};
pub use validate::split_host_port;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a value has the wrong type or an unknown key.
    ///
    /// The `config` crate's message is part of this one and not also offered as the error's
    /// source, so a printed error chain says it once.
    #[error("cannot load configuration: {cause}")]
    Load {
        /// What the `config` crate reported (it names the bad key).
        cause: config::ConfigError,
    },
    /// The values were read but do not make a usable configuration.
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted path of the bad key, e.g. `nodes[1].addr` or `lag.check_interval`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<config::ConfigError> for ConfigError {
    fn from(source: config::ConfigError) -> Self {
        Self::Load { cause: source }
    }
}

/// The whole proxy configuration (the top level of `pgroute.toml`).
///
/// `Config::default()` has no users and no nodes, so it does not validate on its own.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address clients connect to, as `ip:port`. Default `"127.0.0.1:6432"`.
    pub listen: String,
    /// Most client connections accepted at once; more are refused. Default `1000`.
    pub max_client_conn: usize,
    /// `[[users]]`: who may connect and how pgroute logs into the servers for them.
    /// No default: at least one is required. File only (not settable from the environment).
    pub users: Vec<UserConfig>,
    /// `[[nodes]]`: the PostgreSQL servers. No default: at least one is required, and exactly
    /// one must be expected to be the primary. File only (not settable from the environment).
    pub nodes: Vec<NodeConfig>,
    /// `[pool]`: server connection pools.
    pub pool: PoolConfig,
    /// `[lag]`: when a replica is too far behind to take reads.
    pub lag: LagConfig,
    /// `[routing]`: how reads are spread over replicas.
    pub routing: RoutingConfig,
    /// `[consistency]`: read-your-writes.
    pub consistency: ConsistencyConfig,
    /// `[monitor]`: how the background monitor logs into the nodes.
    pub monitor: MonitorConfig,
    /// `[failover]`: optional automatic promotion.
    pub failover: FailoverConfig,
    /// `[admin]`: the metrics and health HTTP endpoint.
    pub admin: AdminConfig,
    /// `[groups.<name>]`: replica groups (analytics isolation). File only.
    pub groups: BTreeMap<String, GroupConfig>,
    /// `[[rules]]`: routing rules, in order; the first whose matchers all match decides.
    /// File only.
    pub rules: Vec<RuleConfig>,
    /// `[limits]`: client timeouts, message size and per-user/database connection limits.
    pub limits: LimitsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6432".to_owned(),
            max_client_conn: 1000,
            users: Vec::new(),
            nodes: Vec::new(),
            pool: PoolConfig::default(),
            lag: LagConfig::default(),
            routing: RoutingConfig::default(),
            consistency: ConsistencyConfig::default(),
            monitor: MonitorConfig::default(),
            failover: FailoverConfig::default(),
            admin: AdminConfig::default(),
            groups: BTreeMap::new(),
            rules: Vec::new(),
            limits: LimitsConfig::default(),
        }
    }
}

// Hand-written so that `{:?}` of a config never prints a password.
// Every field is named in the pattern, so a new section cannot be left out of the output.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            listen,
            max_client_conn,
            users,
            nodes,
            pool,
            lag,
            routing,
            consistency,
            monitor,
            failover,
            admin,
            groups,
            rules,
            limits,
        } = self;
        f.debug_struct("Config")
            .field("listen", listen)
            .field("max_client_conn", max_client_conn)
            .field("users", users)
            .field("nodes", nodes)
            .field("pool", pool)
            .field("lag", lag)
            .field("routing", routing)
            .field("consistency", consistency)
            .field("monitor", monitor)
            .field("failover", failover)
            .field("admin", admin)
            .field("groups", groups)
            .field("rules", rules)
            .field("limits", limits)
            .finish()
    }
}

impl Config {
    /// The node configured with `role = "primary"` (exactly one after [`Config::validate`]).
    pub fn primary(&self) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.role == Role::Primary)
    }

    /// The `[[users]]` entry called `name`.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// User name and password the monitor logs in with: `[monitor]` user/password, falling back
    /// to the first `[[users]]` entry and to that user's server password. Always `Some` after
    /// [`Config::validate`].
    pub fn monitor_login(&self) -> Option<(&str, &str)> {
        let user = match &self.monitor.user {
            Some(user) => user.as_str(),
            None => self.users.first()?.name.as_str(),
        };
        let password = match &self.monitor.password {
            Some(password) => password.as_str(),
            None => self.user(user)?.server_password(),
        };
        Some((user, password))
    }
}

/// One `[[users]]` entry.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name, both for clients and on the servers. Required.
    pub name: String,
    /// Password clients authenticate with. Required unless `auth = "trust"`.
    #[serde(default)]
    pub password: String,
    /// Password pgroute uses to log into the servers as this user. Default: `password`.
    #[serde(default)]
    pub server_password: Option<String>,
    /// How clients authenticate: `"scram-sha-256"` (default), `"md5"` or `"trust"`.
    #[serde(default)]
    pub auth: AuthMethod,
}

impl UserConfig {
    /// Password to log into the servers with: `server_password`, or else `password`.
    pub fn server_password(&self) -> &str {
        self.server_password.as_deref().unwrap_or(&self.password)
    }
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &Redacted)
            .field(
                "server_password",
                &self.server_password.as_ref().map(|_| Redacted),
            )
            .field("auth", &self.auth)
            .finish()
    }
}

/// One `[[nodes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Name used in logs, errors and the admin console; unique. Required.
    pub name: String,
    /// Server address as `host:port` (`[ipv6]:port` for IPv6 literals). Required.
    pub addr: String,
    /// Expected role, `"primary"` or `"replica"`; the monitor checks the real one. Required.
    pub role: Role,
    /// Share of reads relative to the other replicas; `0` takes no reads. Default `1`.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Replica groups this node belongs to (names of `[groups.<name>]`). Default: none.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Takes no new reads (nor new transactions); running work finishes and its idle pooled
    /// connections close. Refused for the primary. Default `false`.
    #[serde(default)]
    pub drain: bool,
}

fn default_weight() -> u32 {
    1
}

impl NodeConfig {
    /// Host and port of `addr`, brackets removed from an IPv6 literal. Always `Some` after
    /// [`Config::validate`].
    pub fn host_port(&self) -> Option<(&str, u16)> {
        split_host_port(&self.addr)
    }
}

/// `[pool]`: server connection pools.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// When a client gives its server connection back: `"transaction"` (default) or `"session"`.
    pub mode: PoolMode,
    /// Most server connections per (node, user, database). Default `20`.
    pub max_size: usize,
    /// How long opening and authenticating a server connection may take. Default `"5s"`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a client waits for a free server connection before it gets SQLSTATE 53300
    /// (too_many_connections). Default `"5s"`.
    #[serde(with = "humantime_serde")]
    pub checkout_timeout: Duration,
    /// An unused server connection is closed after this long. Default `"10m"`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            mode: PoolMode::default(),
            max_size: 20,
            connect_timeout: Duration::from_secs(5),
            checkout_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// `[lag]`: when a replica is too far behind to take reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LagConfig {
    /// A replica whose replay position is more than this many WAL bytes behind the primary
    /// takes no reads. Default `"16MB"` (decimal: 16,000,000 bytes; `"16MiB"` is 16 × 2^20).
    pub max_bytes: ByteSize,
    /// A replica that replays what the primary wrote longer ago than this takes no reads.
    /// Default `"1s"`.
    #[serde(with = "humantime_serde")]
    pub max_time: Duration,
    /// How often the monitor samples roles and LSNs. Default `"100ms"`; at least `"10ms"`.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Where reads go when every replica lags: `"primary"` (default), `"least_lagged"` or
    /// `"error"`.
    pub when_all_lagging: WhenAllLagging,
    /// A lagging replica takes reads again only once its lag is below `recover_ratio` times the
    /// limits above, so it does not flap around them. Default `0.5`; must be in (0, 1].
    pub recover_ratio: f64,
}

impl Default for LagConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize::mb(16),
            max_time: Duration::from_secs(1),
            check_interval: Duration::from_millis(100),
            when_all_lagging: WhenAllLagging::default(),
            recover_ratio: 0.5,
        }
    }
}

/// `[routing]`: how reads are spread over replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// How a replica is picked for a read: `"least_outstanding"` (default), `"round_robin"` or
    /// `"random"`; each honours node weights.
    pub balance: Balance,
    /// Where `BEGIN READ ONLY` transactions go: `"primary"` (default) or `"replica"`.
    pub read_only_transactions: ReadOnlyTxnRoute,
    /// How pgroute tells whether a function a read calls writes: `"catalog"` (default: asks the
    /// primary's `pg_proc` once per name and sends reads calling a VOLATILE function to the
    /// primary) or `"builtin"` (only the built-in side-effecting functions it knows by name).
    pub functions: FunctionLookup,
    /// Functions that always send a read calling them to the primary, whatever the catalog
    /// says: `"name"` (in any schema) or `"schema.name"`, matched case-insensitively.
    /// Default: none.
    pub write_functions: Vec<String>,
    /// Functions a read may call on a replica although the catalog says VOLATILE (they do not
    /// write): same form as `write_functions`, which wins when both name a function. They
    /// cannot make a built-in side-effecting function (`nextval`, …) a read. Default: none.
    pub read_functions: Vec<String>,
}

/// `[consistency]`: read-your-writes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistencyConfig {
    /// How a session is guaranteed to see its own writes: `"lsn"` (default), `"time"`,
    /// `"session"` or `"off"`.
    pub read_your_writes: RywMode,
    /// With `"lsn"`: how long a read may wait for a replica to replay the session's last write
    /// before it goes to the primary instead. Default `"0ms"` (go to the primary at once).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// With `"time"`: how long after a write the session's reads go to the primary.
    /// Default `"1s"`.
    #[serde(with = "humantime_serde")]
    pub stick_for: Duration,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        Self {
            read_your_writes: RywMode::default(),
            max_wait: Duration::ZERO,
            stick_for: Duration::from_secs(1),
        }
    }
}

/// `[failover]`: what pgroute does itself when the primary disappears.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// Promote the most advanced replica (`pg_promote()`) after the primary has been
    /// unreachable for `promote_after`. Default `false`: an external manager (Patroni, repmgr)
    /// should decide, because a primary that is only cut off from pgroute would keep taking
    /// writes from other clients while the promoted replica takes pgroute's (split brain).
    pub auto_promote: bool,
    /// How long the primary must be unreachable before `auto_promote` acts. Default `"10s"`.
    #[serde(with = "humantime_serde")]
    pub promote_after: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            auto_promote: false,
            promote_after: Duration::from_secs(10),
        }
    }
}

/// `[admin]`: the HTTP endpoint for Prometheus and health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the HTTP endpoint serving `GET /metrics`, `/health` and `/ready`, as
    /// `ip:port`. Default: none (the endpoint is off). Only a restart applies a change.
    pub listen: Option<String>,
}

/// `[monitor]`: how the background monitor logs into the nodes.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// User the monitor logs in as. Default: the first `[[users]]` entry.
    pub user: Option<String>,
    /// Its password. Default: the server password of the `[[users]]` entry named `user`
    /// (required when `user` is not one of them).
    pub password: Option<String>,
    /// Database the monitor connects to. Default `"postgres"`.
    pub database: String,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            user: None,
            password: None,
            database: "postgres".to_owned(),
        }
    }
}

impl fmt::Debug for MonitorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| Redacted))
            .field("database", &self.database)
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Defines a config enum with its spelling in the file, `as_str` and `Display`.
macro_rules! config_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
        $(default = $default:ident)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// The value as written in the config file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        $(
            impl Default for $name {
                fn default() -> Self {
                    Self::$default
                }
            }
        )?

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

config_enum! {
    /// How clients authenticate to pgroute (`users[].auth`).
    AuthMethod {
        /// SCRAM-SHA-256, as PostgreSQL's own default.
        ScramSha256 = "scram-sha-256",
        /// MD5 password hash, for old drivers.
        Md5 = "md5",
        /// No password asked.
        Trust = "trust",
    }
    default = ScramSha256
}

config_enum! {
    /// Expected role of a node (`nodes[].role`).
    Role {
        /// Accepts writes.
        Primary = "primary",
        /// Streaming replica; takes reads.
        Replica = "replica",
    }
}

config_enum! {
    /// When a client's server connection goes back to the pool (`pool.mode`).
    PoolMode {
        /// At the end of each transaction (or statement outside one).
        Transaction = "transaction",
        /// When the client disconnects.
        Session = "session",
    }
    default = Transaction
}

config_enum! {
    /// Where reads go when every replica lags (`lag.when_all_lagging`).
    WhenAllLagging {
        /// To the primary.
        Primary = "primary",
        /// To the replica that is least behind.
        LeastLagged = "least_lagged",
        /// Nowhere: the read fails with an error.
        Error = "error",
    }
    default = Primary
}

config_enum! {
    /// How a replica is picked for a read (`routing.balance`).
    Balance {
        /// The replica with the fewest reads in flight, relative to its weight.
        LeastOutstanding = "least_outstanding",
        /// Each replica in turn, in proportion to its weight.
        RoundRobin = "round_robin",
        /// At random, in proportion to weight.
        Random = "random",
    }
    default = LeastOutstanding
}

config_enum! {
    /// Where `BEGIN READ ONLY` transactions go (`routing.read_only_transactions`).
    ReadOnlyTxnRoute {
        /// To the primary, like every transaction.
        Primary = "primary",
        /// To a replica.
        Replica = "replica",
    }
    default = Primary
}

config_enum! {
    /// How pgroute finds the functions that write (`routing.functions`).
    FunctionLookup {
        /// Looks the functions a read calls up in the primary's `pg_proc`.
        Catalog = "catalog",
        /// Only the built-in side-effecting functions known by name.
        Builtin = "builtin",
    }
    default = Catalog
}

config_enum! {
    /// How read-your-writes is kept (`consistency.read_your_writes`).
    RywMode {
        /// A read goes to a replica only once it has replayed the session's last write.
        Lsn = "lsn",
        /// Reads go to the primary for `stick_for` after each write.
        Time = "time",
        /// After its first write, the session reads from the primary until it disconnects.
        Session = "session",
        /// No guarantee.
        Off = "off",
    }
    default = Lsn
}

// After `config_enum!`, which it uses.
mod routing;
pub use routing::{GroupConfig, RuleConfig, RuleKind, WhenGroupEmpty};

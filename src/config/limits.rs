//! `[limits]`: how long a client may take and how much it may send, and how many connections
//! one user or database may hold.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// `[limits]`: timeouts and size limits for clients. Every timeout is off when unset, except
/// `startup_timeout` and `server_lifetime`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// From TCP accept to an authenticated session; a client that takes longer is
    /// disconnected (as PostgreSQL's `authentication_timeout`). Default `"10s"`.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// A client idle outside a transaction this long is disconnected with FATAL 57P05
    /// (as PostgreSQL's `idle_session_timeout`). Default: off.
    #[serde(with = "humantime_serde")]
    pub client_idle_timeout: Option<Duration>,
    /// A client idle inside a transaction this long is disconnected with FATAL 25P03; its
    /// server connection is closed, which rolls the transaction back (as PostgreSQL's
    /// `idle_in_transaction_session_timeout`). Default: off.
    #[serde(with = "humantime_serde")]
    pub idle_in_transaction_timeout: Option<Duration>,
    /// A unit of work whose reply has not finished this long after it was sent is cancelled on
    /// its server (a CancelRequest); the client gets the server's 57014. Default: off.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Option<Duration>,
    /// A pooled server connection older than this is closed instead of reused. Default `"1h"`.
    #[serde(with = "humantime_serde")]
    pub server_lifetime: Duration,
    /// Most client connections one user may have open; more get FATAL 53300. Default `0`: no
    /// limit besides `max_client_conn`.
    pub max_connections_per_user: usize,
    /// Most client connections to one database; more get FATAL 53300. Default `0`: no limit.
    pub max_connections_per_database: usize,
    /// Longest message a client may send after login; a longer one ends the session with
    /// FATAL 54000 before it is read (so it is never buffered). Default `"64MiB"`.
    pub max_message_size: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            startup_timeout: Duration::from_secs(10),
            client_idle_timeout: None,
            idle_in_transaction_timeout: None,
            query_timeout: None,
            server_lifetime: Duration::from_secs(3600),
            max_connections_per_user: 0,
            max_connections_per_database: 0,
            max_message_size: ByteSize::mib(64),
        }
    }
}

//! `[groups.<name>]` and `[[rules]]`: what the file says about routing rules and replica
//! groups (compiled and checked in [`crate::router::rules`]).

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// One `[groups.<name>]` table: a set of replicas that reads can be routed to as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// Its nodes take only reads routed to the group (by a rule or a hint). Default `false`.
    pub exclusive: bool,
    /// Byte lag limit for reads routed to the group. Default: `lag.max_bytes`.
    pub max_bytes: Option<ByteSize>,
    /// Time lag limit for reads routed to the group. Default: `lag.max_time`.
    #[serde(with = "humantime_serde")]
    pub max_time: Option<Duration>,
    /// Where a read routed to the group goes when none of its nodes may take it.
    pub when_empty: WhenGroupEmpty,
}

/// One `[[rules]]` entry. Every matcher given must match; an absent one matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, shown in logs and `SHOW pgroute.last_route`. Required.
    pub name: String,
    /// Glob on the user name.
    #[serde(default)]
    pub user: Option<String>,
    /// Glob on the database name.
    #[serde(default)]
    pub database: Option<String>,
    /// Glob on the session's current `application_name`.
    #[serde(default)]
    pub application_name: Option<String>,
    /// CIDR the client's address is in (`10.1.0.0/16`, `::1/128`, or a single address).
    #[serde(default)]
    pub client_addr: Option<String>,
    /// Regular expression searched for in the statement text.
    #[serde(default)]
    pub query: Option<String>,
    /// Globs on the tables a statement reads or writes (`events_*`, `public.audit_log`).
    #[serde(default)]
    pub tables: Vec<String>,
    /// The kind of statement.
    #[serde(default)]
    pub kind: Option<RuleKind>,
    /// `"primary"`, `"replica"`, `"group:<name>"` or `"block"`. Required.
    pub route: String,
    /// With `route = "block"`: the error text the client gets (SQLSTATE 42501).
    #[serde(default)]
    pub message: Option<String>,
}

config_enum! {
    /// Where a read routed to a group goes when no node of the group may take it
    /// (`groups.<name>.when_empty`).
    WhenGroupEmpty {
        /// To the primary.
        Primary = "primary",
        /// To the replicas outside exclusive groups, as a read without a group would.
        Replicas = "replicas",
        /// Nowhere: the read fails with an error.
        Error = "error",
    }
    default = Primary
}

config_enum! {
    /// The kind of statement a rule matches (`rules[].kind`).
    RuleKind {
        /// Provably read-only.
        Read = "read",
        /// Anything else that is not DDL or transaction control.
        Write = "write",
        /// `CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `GRANT`, `REVOKE`, `COMMENT`, …
        Ddl = "ddl",
        /// Transaction control, and every statement inside a transaction block.
        Transaction = "transaction",
    }
}

//! pgroute: a PostgreSQL read/write routing proxy for a primary with streaming replicas.
//!
//! Clients connect with any PostgreSQL driver. A statement flows through the modules like this:
//!
//! - [`server`] accepts the TCP connection (connection limit, draining on shutdown) and spawns a
//!   [`session`] per client.
//! - [`session`] authenticates the client (SCRAM-SHA-256, md5 or trust, per `[[users]]`), then
//!   reads its messages. A simple Query, or an extended-protocol batch up to Sync/Flush, is one
//!   unit of work.
//! - [`classify`] decides, purely from the SQL text (sqlparser), whether a statement is provably
//!   a read; results are cached per statement text and per prepared statement. A read that
//!   calls functions it does not know as built-ins is checked against [`catalog`] (the
//!   primary's `pg_proc`, asked once per name) and goes to the primary when one is VOLATILE.
//! - [`router`] turns the class, the session's transaction state and the cluster's live state
//!   into a [`router::Route`]: the primary, or one replica chosen by weight and load.
//! - [`backend`] lends the session a raw, authenticated server connection from the pool of that
//!   node (transaction pooling); the client's own messages are forwarded, with prepared
//!   statements renamed so they work on whichever connection a later Bind lands on.
//! - The replies stream back as raw frames ([`protocol`]) until ReadyForQuery, when the
//!   connection returns to the pool unless a transaction is still open.
//!
//! Whatever fails is an [`error::Error`], which knows the SQLSTATE and message the client sees
//! and whether the unit may be retried on another node.
//!
//! [`admin`] counts what happens (cheap atomics on the hot path) and serves it on the optional
//! `[admin] listen` HTTP endpoint: `/metrics` for Prometheus, `/health` and `/ready`.
//!
//! [`config`] loads and validates the TOML file (overridable from `PGROUTE_*` variables), and
//! [`testbed`] starts a throwaway local cluster for `pgroute demo` and the tests.

pub mod admin;
pub mod backend;
pub mod catalog;
pub mod classify;
pub mod config;
pub mod consistency;
pub mod demo;
pub mod error;
pub mod monitor;
pub mod protocol;
pub mod proxy;
pub mod router;
pub mod server;
pub mod session;
pub mod testbed;

//! Server side of the proxy: raw authenticated connections to the nodes, their pools, each
//! node's live state (health, outstanding work) and the monitor's view of the cluster, which the
//! router reads.

pub mod cluster;
pub mod conn;
pub mod pool;
pub mod view;

use std::time::Duration;

use bytes::Bytes;

pub use cluster::{Cluster, Members, MembershipChange, Node};
pub use conn::{Login, ServerConn};
pub use pool::{LoginPools, Pool, PooledConn, Pools};

/// Something went wrong between pgroute and a server. What the client is told is decided by
/// [`crate::error::Error`].
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("could not connect to server: {0}")]
    Connect(#[source] std::io::Error),
    #[error("server connection failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("server refused the login")]
    /// The server's own ErrorResponse frame, passed to the client unchanged.
    Refused(Bytes),
    /// The node refused the login because it is not accepting connections (starting up,
    /// shutting down: 57P0x): a node problem, so a read may go elsewhere. The server's frame.
    #[error("server is not accepting connections")]
    Unavailable(Bytes),
    #[error("protocol error from server: {0}")]
    Protocol(&'static str),
    /// The server sent a reply pgroute did not expect: the connection is out of step (the
    /// relay logs what it was).
    #[error("protocol error from server: unexpected message from server")]
    OutOfStep,
    #[error(transparent)]
    Frame(#[from] crate::protocol::FrameError),
    #[error("no server connection free within {0:?}")]
    PoolTimeout(Duration),
    #[error("node {0} is marked down")]
    NodeDown(String),
}

//! Server side of the proxy: raw authenticated connections to the nodes, their pools, each
//! node's live state (health, outstanding work) and the monitor's view of the cluster, which the
//! router reads.

pub mod cluster;
pub mod conn;
pub mod pool;
pub mod view;

use std::time::Duration;

use bytes::Bytes;
use tokio_postgres::error::SqlState;

pub use cluster::{Cluster, Node};
pub use conn::{Login, ServerConn};
pub use pool::{Pool, PooledConn, Pools};

/// Something went wrong between pgroute and a server.
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
    #[error(transparent)]
    Frame(#[from] crate::protocol::FrameError),
    #[error("no server connection free within {0:?}")]
    PoolTimeout(Duration),
    #[error("node {0} is marked down")]
    NodeDown(String),
}

impl BackendError {
    /// The SQLSTATE a client sees when this error ends its statement or session.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            BackendError::PoolTimeout(_) => SqlState::TOO_MANY_CONNECTIONS,
            BackendError::Connect(_) | BackendError::NodeDown(_) | BackendError::Timeout(_) => {
                SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
            }
            BackendError::Refused(frame) | BackendError::Unavailable(frame) => {
                crate::protocol::messages::error_code(frame)
                    .map(SqlState::from_code)
                    .unwrap_or(SqlState::CONNECTION_FAILURE)
            }
            BackendError::Io(_)
            | BackendError::Closed
            | BackendError::Protocol(_)
            | BackendError::Frame(_) => SqlState::CONNECTION_FAILURE,
        }
    }
}

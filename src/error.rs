//! pgroute's one error type. Every failure a client can be told about is an [`Error`], which
//! knows its SQLSTATE, severity and message, where it came from ([`Origin`]) and whether the
//! unit of work may be retried on another node. [`Error::write_response`] is the one place
//! where an error becomes an ErrorResponse; a server's own refusal is relayed as the server
//! wrote it.
//!
//! Layer errors stay typed in their modules ([`BackendError`], [`RouteError`],
//! [`SettingError`], the client's protocol [`Violation`]) and become an [`Error`] through one
//! `From` each, or through the variant that says in what situation they happened (a server
//! failing a login, or a held connection).

use bytes::BytesMut;
use tokio_postgres::error::SqlState;

use crate::backend::BackendError;
use crate::consistency::SettingError;
use crate::protocol::messages::{self, Severity};
use crate::protocol::{BodyError, FrameError};
use crate::router::RouteError;

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client: what it sent, or its connection.
    Client,
    /// A PostgreSQL server, or pgroute's connection to it.
    Server,
    /// pgroute itself: its limits and its routing.
    Pgroute,
}

/// The client broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("incomplete message")]
    Incomplete,
    /// A message longer than pgroute accepts at this point (its declared length).
    #[error("invalid message length {0}")]
    TooLong(usize),
    #[error("unexpected message type {0:?}")]
    UnexpectedMessage(char),
    /// "At this point we should have no data already buffered": bytes that came with an
    /// SSLRequest or GSSENCRequest.
    #[error("received unencrypted data after {0}")]
    DataAfterEncryptionRequest(&'static str),
    #[error("expected a password message, got {0:?}")]
    ExpectedPassword(char),
    /// The SASL messages of a SCRAM exchange.
    #[error("{0}")]
    Sasl(&'static str),
    #[error(transparent)]
    Scram(Box<pgwire::error::PgWireError>),
}

/// A `[limits]` setting ended the session (each is FATAL, as PostgreSQL's own timeouts are).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    #[error("terminating connection due to idle-session timeout")]
    IdleSession,
    #[error("terminating connection due to idle-in-transaction timeout")]
    IdleInTransaction,
    #[error("too many connections for role \"{0}\"")]
    PerUser(String),
    #[error("too many connections for database \"{0}\"")]
    PerDatabase(String),
    #[error("message of {len} bytes exceeds limits.max_message_size ({max} bytes)")]
    MessageSize { len: usize, max: usize },
}

impl Limit {
    fn sqlstate(&self) -> SqlState {
        match self {
            Limit::IdleSession => SqlState::IDLE_SESSION_TIMEOUT,
            Limit::IdleInTransaction => SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            Limit::PerUser(_) | Limit::PerDatabase(_) => SqlState::TOO_MANY_CONNECTIONS,
            Limit::MessageSize { .. } => SqlState::PROGRAM_LIMIT_EXCEEDED,
        }
    }
}

/// Why a unit of work failed or a session ended, as the client is told.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The client.
    #[error("client connection failed: {0}")]
    Client(#[source] std::io::Error),
    #[error("client disconnected")]
    ClientGone,
    #[error("protocol violation: {0}")]
    Protocol(#[from] Violation),
    /// A StartupMessage whose parameter list does not end one byte before the packet does.
    #[error("invalid startup packet layout: expected terminator as last byte")]
    StartupLayout,
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedProtocol { major: i32, minor: i32 },
    #[error("role \"{0}\" does not exist")]
    UnknownRole(String),
    #[error("password authentication failed for user \"{0}\"")]
    WrongPassword(String),
    /// A `pgroute.*` startup parameter with a bad value: the login fails.
    #[error(transparent)]
    StartupSetting(SettingError),
    /// `SET pgroute.*` with a bad value: the statement fails.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// `SHOW` of a `pgroute.*` setting that does not exist.
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),
    /// The client closed its connection in the middle of COPY FROM STDIN.
    #[error("unexpected EOF on client connection with an open transaction")]
    EofInCopy,
    #[error("terminating connection because protocol synchronization was lost")]
    SyncLost,

    // pgroute.
    #[error("sorry, too many clients already")]
    TooManyClients,
    /// A `[limits]` timeout or limit.
    #[error(transparent)]
    Limit(#[from] Limit),
    /// The router found nowhere to send a unit of work.
    #[error("pgroute: {0}")]
    Route(#[from] RouteError),
    #[error("no node configured")]
    NoNode,
    /// A `route = "block"` rule matched the statement.
    #[error("{message}")]
    Blocked { rule: String, message: String },

    // The servers.
    /// A unit of work got no server connection. A server's refusal is reported by its own
    /// message (it ended pgroute's login, not this session).
    #[error("pgroute: {}", unit_message(.0))]
    Backend(#[from] BackendError),
    /// The client's login needed a server connection (to learn the server's parameters, and
    /// that pgroute can log in) and got none.
    #[error(transparent)]
    Login(BackendError),
    /// The session's server connection failed. Inside a transaction (or pinned) the session's
    /// server state is gone with it, and the session ends, as PostgreSQL's own would.
    #[error(
        "server connection to node {node} lost{}: {source}",
        if *in_transaction { " during a transaction" } else { "" }
    )]
    ServerLost {
        node: String,
        source: BackendError,
        in_transaction: bool,
    },
    /// The server ended the session's connection with a FATAL error, already relayed.
    #[error("server ended the connection")]
    ServerClosed,
}

/// What a client is told when its unit got no server connection because of `e`.
fn unit_message(e: &BackendError) -> String {
    match e {
        BackendError::Refused(frame) | BackendError::Unavailable(frame) => {
            messages::error_message(frame)
                .unwrap_or("server refused the login")
                .to_owned()
        }
        e => e.to_string(),
    }
}

impl Error {
    /// The SQLSTATE the client sees.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::Client(_)
            | Error::ClientGone
            | Error::EofInCopy
            | Error::NoNode
            | Error::ServerLost { .. }
            | Error::ServerClosed => SqlState::CONNECTION_FAILURE,
            Error::Protocol(_) | Error::StartupLayout | Error::SyncLost => {
                SqlState::PROTOCOL_VIOLATION
            }
            Error::UnsupportedProtocol { .. } => SqlState::FEATURE_NOT_SUPPORTED,
            Error::UnknownRole(_) => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            Error::WrongPassword(_) => SqlState::INVALID_PASSWORD,
            Error::StartupSetting(_) | Error::Setting(_) => SqlState::INVALID_PARAMETER_VALUE,
            Error::UnknownSetting(_) => SqlState::UNDEFINED_OBJECT,
            Error::TooManyClients => SqlState::TOO_MANY_CONNECTIONS,
            Error::Limit(l) => l.sqlstate(),
            Error::Blocked { .. } => SqlState::INSUFFICIENT_PRIVILEGE,
            // The cluster cannot serve this right now; retrying later may work.
            Error::Route(_) => SqlState::CANNOT_CONNECT_NOW,
            Error::Backend(e) | Error::Login(e) => match e {
                BackendError::PoolTimeout(_) => SqlState::TOO_MANY_CONNECTIONS,
                BackendError::Connect(_) | BackendError::NodeDown(_) | BackendError::Timeout(_) => {
                    SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
                }
                BackendError::Refused(frame) | BackendError::Unavailable(frame) => {
                    messages::error_code(frame)
                        .map(SqlState::from_code)
                        .unwrap_or(SqlState::CONNECTION_FAILURE)
                }
                BackendError::Io(_)
                | BackendError::Closed
                | BackendError::Protocol(_)
                | BackendError::OutOfStep
                | BackendError::Frame(_) => SqlState::CONNECTION_FAILURE,
            },
        }
    }

    /// ERROR when the statement fails and the session goes on; FATAL when the session ends.
    pub fn severity(&self) -> Severity {
        match self {
            // The session's transaction (or pinned state) is on a node that is fenced: like a
            // lost server connection inside a transaction, the session ends.
            Error::Route(RouteError::Fenced(_)) => Severity::Fatal,
            Error::Setting(_)
            | Error::UnknownSetting(_)
            | Error::EofInCopy
            | Error::Route(_)
            | Error::Blocked { .. }
            | Error::Backend(_)
            | Error::ServerLost {
                in_transaction: false,
                ..
            } => Severity::Error,
            Error::Client(_)
            | Error::ClientGone
            | Error::Protocol(_)
            | Error::StartupLayout
            | Error::UnsupportedProtocol { .. }
            | Error::UnknownRole(_)
            | Error::WrongPassword(_)
            | Error::StartupSetting(_)
            | Error::SyncLost
            | Error::TooManyClients
            | Error::Limit(_)
            | Error::NoNode
            | Error::Login(_)
            | Error::ServerLost {
                in_transaction: true,
                ..
            }
            | Error::ServerClosed => Severity::Fatal,
        }
    }

    /// Where the error came from.
    pub fn origin(&self) -> Origin {
        match self {
            Error::Client(_)
            | Error::ClientGone
            | Error::Protocol(_)
            | Error::StartupLayout
            | Error::UnsupportedProtocol { .. }
            | Error::UnknownRole(_)
            | Error::WrongPassword(_)
            | Error::StartupSetting(_)
            | Error::Setting(_)
            | Error::UnknownSetting(_)
            | Error::EofInCopy
            | Error::SyncLost => Origin::Client,
            Error::TooManyClients
            | Error::Limit(_)
            | Error::Route(_)
            | Error::NoNode
            | Error::Blocked { .. } => Origin::Pgroute,
            // pgroute's own pool limit, and its own record of a node's outage.
            Error::Backend(BackendError::PoolTimeout(_) | BackendError::NodeDown(_))
            | Error::Login(BackendError::PoolTimeout(_) | BackendError::NodeDown(_)) => {
                Origin::Pgroute
            }
            Error::Backend(_)
            | Error::Login(_)
            | Error::ServerLost { .. }
            | Error::ServerClosed => Origin::Server,
        }
    }

    /// Whether the unit of work may go to another node instead: the failure was the node's
    /// (unreachable, not accepting connections, its connection broken, its pool full), not a
    /// refusal of the login or a server out of step with pgroute, and no transaction's state
    /// was lost. The session adds what only it knows: nothing reached the client yet.
    pub fn retry(&self) -> bool {
        match self {
            Error::Backend(e)
            | Error::Login(e)
            | Error::ServerLost {
                source: e,
                in_transaction: false,
                ..
            } => !matches!(e, BackendError::Refused(_) | BackendError::OutOfStep),
            Error::Client(_)
            | Error::ClientGone
            | Error::Protocol(_)
            | Error::StartupLayout
            | Error::UnsupportedProtocol { .. }
            | Error::UnknownRole(_)
            | Error::WrongPassword(_)
            | Error::StartupSetting(_)
            | Error::Setting(_)
            | Error::UnknownSetting(_)
            | Error::EofInCopy
            | Error::SyncLost
            | Error::TooManyClients
            | Error::Limit(_)
            | Error::Route(_)
            | Error::NoNode
            | Error::Blocked { .. }
            | Error::ServerLost {
                in_transaction: true,
                ..
            }
            | Error::ServerClosed => false,
        }
    }

    /// Writes the ErrorResponse the client gets for this error to `out`.
    pub fn write_response(&self, out: &mut BytesMut) {
        match self {
            // The server's own refusal (bad database, pgroute's login refused) passes through
            // as PostgreSQL wrote it.
            Error::Login(BackendError::Refused(frame)) => out.extend_from_slice(frame),
            _ => {
                messages::error_response(out, self.severity(), &self.sqlstate(), &self.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! One raw, authenticated connection from pgroute to a PostgreSQL node.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BackendError;
use crate::protocol::{split_frame, Frames};

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Who pgroute logs in as, and where.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    pub addr: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
    pub timeout: Duration,
}

/// An authenticated server connection, idle at ReadyForQuery.
#[derive(Debug)]
pub struct ServerConn {
    /// Unique in this process; names the connection in logs.
    pub id: u64,
    stream: TcpStream,
    /// Bytes read from the server and not processed yet.
    buf: BytesMut,
    /// ParameterStatus values the server reported.
    pub server_params: BTreeMap<String, String>,
    /// Session parameters pgroute has set on this connection for the current client
    /// (startup parameters and SET), so the next client only re-sends what differs.
    pub session_params: BTreeMap<String, String>,
    /// pgroute's own prepared statements (by registry id) that exist on this connection.
    pub prepared: HashSet<u64>,
    /// BackendKeyData, for forwarding a client's CancelRequest.
    pub backend_pid: i32,
    pub backend_secret: i32,
    pub created: Instant,
    pub last_used: Instant,
}

impl ServerConn {
    /// Connects and authenticates (SCRAM-SHA-256, md5, cleartext or trust, as the node asks).
    pub async fn connect(login: &Login<'_>) -> Result<ServerConn, BackendError> {
        let fut = Self::connect_inner(login);
        match tokio::time::timeout(login.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout(login.timeout)),
        }
    }

    async fn connect_inner(login: &Login<'_>) -> Result<ServerConn, BackendError> {
        let stream = TcpStream::connect(login.addr)
            .await
            .map_err(BackendError::Connect)?;
        stream.set_nodelay(true).map_err(BackendError::Connect)?;
        let now = Instant::now();
        let mut conn = ServerConn {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            server_params: BTreeMap::new(),
            session_params: BTreeMap::new(),
            prepared: HashSet::new(),
            backend_pid: 0,
            backend_secret: 0,
            created: now,
            last_used: now,
        };
        let mut out = BytesMut::new();
        // No application_name: the server's default ('') is what a client that sets none must
        // see, in ParameterStatus and SHOW, and the session parameters a client sets are
        // replayed onto the connection from that default (params::sync_sql).
        let params = [("user", login.user), ("database", login.database)];
        frontend::startup_message(params.iter().copied(), &mut out).map_err(BackendError::Io)?;
        conn.write(&out).await?;
        conn.authenticate(login).await?;
        Ok(conn)
    }

    /// Writes `bytes` to the server (one write; the socket has no delay).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        self.stream.write_all(bytes).await.map_err(BackendError::Io)
    }

    /// Reads what the server sent next into the receive buffer; Ok(0) when it closed the
    /// connection. Cancel-safe: nothing is lost if the read is abandoned.
    #[inline]
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        self.stream.read_buf(&mut self.buf).await
    }

    /// The complete frames received and not processed yet, read where they lie.
    #[inline]
    pub fn frames(&mut self) -> Frames<'_> {
        Frames::new(&mut self.buf)
    }

    /// True unless the server has closed the socket (or sent something unasked) while the
    /// connection sat idle. Costs one system call.
    pub fn idle_socket_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Reads the next whole frame from the server.
    pub async fn read_frame(&mut self) -> Result<BytesMut, BackendError> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf)? {
                return Ok(frame);
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(BackendError::Io)?;
            if n == 0 {
                return Err(BackendError::Closed);
            }
        }
    }

    /// Answers the server's login messages until ReadyForQuery: authentication as the node
    /// asks, then the ParameterStatus and BackendKeyData it reports.
    async fn authenticate(&mut self, login: &Login<'_>) -> Result<(), BackendError> {
        let mut scram: Option<ScramSha256> = None;
        let mut out = BytesMut::new();
        loop {
            let mut frame = self.read_frame().await?;
            if frame[0] == b'E' {
                return Err(BackendError::Refused(frame.freeze()));
            }
            let msg = Message::parse(&mut frame)
                .map_err(BackendError::Io)?
                .ok_or(BackendError::Protocol("truncated startup message"))?;
            match msg {
                Message::AuthenticationOk | Message::NoticeResponse(_) => {}
                Message::ParameterStatus(body) => {
                    let name = body.name().map_err(BackendError::Io)?.to_owned();
                    let value = body.value().map_err(BackendError::Io)?.to_owned();
                    self.server_params.insert(name, value);
                }
                Message::BackendKeyData(body) => {
                    self.backend_pid = body.process_id();
                    self.backend_secret = body.secret_key();
                }
                Message::ReadyForQuery(_) => return Ok(()),
                msg => answer_auth(msg, login, &mut scram, &mut out)?,
            }
            if !out.is_empty() {
                self.write(&out).await?;
                out.clear();
            }
        }
    }
}

/// Writes pgroute's answer to one of the server's authentication requests to `out`.
fn answer_auth(
    msg: Message,
    login: &Login<'_>,
    scram: &mut Option<ScramSha256>,
    out: &mut BytesMut,
) -> Result<(), BackendError> {
    match msg {
        Message::AuthenticationCleartextPassword => {
            frontend::password_message(login.password.as_bytes(), out).map_err(BackendError::Io)
        }
        Message::AuthenticationMd5Password(body) => {
            let hash = postgres_protocol::authentication::md5_hash(
                login.user.as_bytes(),
                login.password.as_bytes(),
                body.salt(),
            );
            frontend::password_message(hash.as_bytes(), out).map_err(BackendError::Io)
        }
        Message::AuthenticationSasl(body) => {
            let mut mechs = body.mechanisms();
            let mut has_scram = false;
            while let Some(m) = mechs.next().map_err(BackendError::Io)? {
                has_scram |= m == SCRAM_SHA_256;
            }
            if !has_scram {
                return Err(BackendError::Protocol("server offers no SCRAM-SHA-256"));
            }
            let s = ScramSha256::new(login.password.as_bytes(), ChannelBinding::unsupported());
            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), out)
                .map_err(BackendError::Io)?;
            *scram = Some(s);
            Ok(())
        }
        Message::AuthenticationSaslContinue(body) => {
            let s = scram
                .as_mut()
                .ok_or(BackendError::Protocol("unexpected SASL"))?;
            s.update(body.data()).map_err(BackendError::Io)?;
            frontend::sasl_response(s.message(), out).map_err(BackendError::Io)
        }
        Message::AuthenticationSaslFinal(body) => {
            let s = scram
                .as_mut()
                .ok_or(BackendError::Protocol("unexpected SASL"))?;
            s.finish(body.data()).map_err(BackendError::Io)
        }
        _ => Err(BackendError::Protocol("unexpected message during login")),
    }
}
